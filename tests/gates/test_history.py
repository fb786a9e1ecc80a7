"""The per-second history: cumulative Locust statistics sampled each second become deltas, and survive the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.gates import HistoryPoint, HistoryRecorder, ResultsError, StatsEntry
from harness.results.layout import ResultsDir

STS = "/CCM_Proxy_ServerAuth/72186325152220500/CCM_STS"


def cumulative(requests: int, times: dict[int, int], failures: int = 0) -> StatsEntry:
    return StatsEntry(method="POST", name=STS, num_requests=requests, num_failures=failures,
                      total_response_time=float(sum(ms * n for ms, n in times.items())), response_times=times)


def test_a_sample_holds_what_each_entry_added_since_the_previous_one() -> None:
    """Between two samples 5 more requests (1 failed, 3 at 40 ms) make a delta of exactly those."""
    recorder = HistoryRecorder()
    recorder.sample(1.0, [cumulative(10, {20: 10})])
    point = recorder.sample(2.0, [cumulative(15, {20: 12, 40: 3}, failures=1)])
    (delta,) = point.entries
    assert (delta.num_requests, delta.num_failures, dict(delta.response_times)) == (5, 1, {20: 2, 40: 3})
    assert delta.total_response_time == 2 * 20 + 3 * 40 and delta.max_response_time == 40


def test_entries_that_added_nothing_are_left_out() -> None:
    """A quiet second gives a point without entries."""
    recorder = HistoryRecorder()
    recorder.sample(1.0, [cumulative(10, {20: 10})])
    assert recorder.sample(2.0, [cumulative(10, {20: 10})]).entries == ()


def test_statistics_reset_mid_run_start_the_deltas_afresh() -> None:
    """When Locust's counts go down (Reset Stats), the new counts are the delta rather than negative numbers."""
    recorder = HistoryRecorder()
    recorder.sample(1.0, [cumulative(100, {20: 100})])
    (delta,) = recorder.sample(2.0, [cumulative(4, {20: 4})]).entries
    assert delta.num_requests == 4


def test_a_torn_last_line_is_ignored_but_a_torn_middle_line_is_refused(tmp_path: Path) -> None:
    """A run killed mid-write leaves a half line at the end: the history before it is still read."""
    good = HistoryPoint(t=1.0, entries=(cumulative(1, {5: 1}),)).to_json()
    path = tmp_path / "stats_history.jsonl"
    path.write_text(f"{good}\n{good}\n{{\"t\": 3, \"entr")
    assert len(ResultsDir(tmp_path).read_stats_history() or ()) == 2
    path.write_text(f"{good}\n{{\"t\": 3, \"entr\n{good}\n")
    with pytest.raises(ResultsError, match="line 2"):
        ResultsDir(tmp_path).read_stats_history()
