"""CMGService statistics at their edges: a window with no requests, paths that need no encoding (or are empty), and
the bound on how many request URIs one window keeps."""

from __future__ import annotations

import pytest

from cmg_protocol.clock import FakeClock
from mock_site.metrics.traffic import CMGServiceLine, CMGServiceStats, ConnectionPointReport


def test_a_line_without_requests_averages_zero_milliseconds() -> None:
    """AverageElapsedTime of a URI with no requests in the window is 0, not a division by zero."""
    line = CMGServiceLine("/x", 0, 0, 0, 0, 0.0, 0.0, 1.0)
    assert line.average_elapsed_ms == 0
    assert line.text().endswith("AverageElapsedTime: 0 ms")


def test_a_plain_path_is_kept_as_sent_and_an_empty_one_reads_as_root() -> None:
    """Printable paths without spaces are logged unchanged; a space is encoded; an empty path is '/'."""
    stats = CMGServiceStats(FakeClock())
    for uri in ("/CCM_Proxy_ServerAuth/1/CCM_STS", "", "/a b"):
        stats.record(uri, 1, 1, 0.001)
    assert [line.request_uri for line in stats.drain()] == ["/CCM_Proxy_ServerAuth/1/CCM_STS", "/", "/a%20b"]


def test_the_bound_on_request_uris_must_keep_at_least_one() -> None:
    """max_request_uris 1 keeps one URI and folds the rest; 0 is refused by value."""
    stats = CMGServiceStats(FakeClock(), max_request_uris=1)
    stats.record("/a", 1, 1, 0.001)
    stats.record("/b", 1, 1, 0.001)
    assert [line.request_uri for line in stats.drain()] == ["/a", "(other)"]
    with pytest.raises(ValueError, match="max_request_uris must be >= 1, got 0"):
        CMGServiceStats(FakeClock(), max_request_uris=0)


def test_max_concurrency_counts_what_is_open_after_earlier_requests_ended() -> None:
    """One request ends, two more open: the connection point report's MaxConcurrentRequests is 2."""
    report = ConnectionPointReport()
    report.begin("CCM_STS", True, 1).end(1)
    report.begin("CCM_STS", True, 1)
    report.begin("CCM_STS", True, 1)
    (row,) = report.drain()
    assert row.max_concurrent_requests == 2


def test_a_new_window_starts_without_the_endpoints_that_had_nothing_open() -> None:
    """Only endpoints with requests still open carry over, so last window's endpoints do not fill this one's bound."""
    report = ConnectionPointReport(max_endpoints=1)
    report.begin("CCM_STS", True, 1).end(1)
    report.drain()
    report.begin("SMS_MP/.sms_pol", True, 1).end(1)
    assert [row.endpoint for row in report.drain()] == ["SMS_MP/.sms_pol"]
