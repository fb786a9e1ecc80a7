"""The MP's reply SentTime, formatted once per second, still follows its clock."""

from __future__ import annotations

from mock_site.mp import SentTime


def test_the_reply_sent_time_follows_the_clock_across_seconds() -> None:
    now = [1_767_225_600.25]  # 2026-01-01T00:00:00.25Z
    sent_time = SentTime(lambda: now[0])
    assert sent_time() == "2026-01-01T00:00:00Z"
    now[0] += 0.5
    assert sent_time() == "2026-01-01T00:00:00Z"
    now[0] += 0.5
    assert sent_time() == "2026-01-01T00:00:01Z"
    now[0] = 1_767_225_600.0 + 86_400 * 31 + 59.999
    assert sent_time() == "2026-02-01T00:00:59Z"
