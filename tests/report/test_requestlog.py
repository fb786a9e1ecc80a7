"""The per-second request histograms: HTTP requests of any stretch of the run, exact percentiles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.report.errors import ReportError
from harness.report.history import parse_history
from harness.report.requestlog import Interval, read_request_log
from harness.report.steps import split_steps
from tests.report.synthetic import START, Step, history_csv, request_log


def _log(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stats_history.jsonl"
    path.write_text(text)
    return path


def test_lifecycle_entries_are_left_out(tmp_path: Path) -> None:
    """Only HTTP entries count: 10 requests a second, not the 15 with the lifecycle stage entries."""
    log = read_request_log(_log(tmp_path, request_log([Step(2, 5, 10, 4.0)], idle=0)))
    assert log.between(START - 1, START + 4).requests == 50


def test_between_takes_lines_after_start_up_to_and_including_end(tmp_path: Path) -> None:
    """(start, end]: the line stamped at start belongs to the stretch before."""
    log = read_request_log(_log(tmp_path, request_log([Step(2, 5, 10, 4.0)], idle=0)))
    assert log.between(START, START + 2).requests == 20


def test_percentiles_are_computed_as_locust_does() -> None:
    """Nine requests at 4 ms and one at 12 ms: p50 4 ms, p95 12 ms (floor(n·q) requests below the answer)."""
    interval = Interval(requests=10, histogram={4: 9, 12: 1})
    assert (interval.percentile(0.5), interval.percentile(0.95)) == (4.0, 12.0)


def test_an_empty_interval_has_no_percentile_or_mean() -> None:
    """No requests, no figures (rather than zeros)."""
    assert (Interval().percentile(0.95), Interval().mean_ms) == (None, None)


def test_a_torn_last_line_is_left_out(tmp_path: Path) -> None:
    """A run killed mid-write leaves half a line at the end: the rest still reads."""
    text = request_log([Step(2, 5, 10, 4.0)], idle=0) + '{"t": 1800000099.0, "entr'
    assert read_request_log(_log(tmp_path, text)).between(0, 2e9).requests == 50


def test_a_malformed_line_in_the_middle_is_refused_by_number(tmp_path: Path) -> None:
    """Damage before the end is an error naming the line."""
    lines = request_log([Step(2, 5, 10, 4.0)], idle=0).splitlines()
    lines[1] = json.dumps({"t": "later"})
    with pytest.raises(ReportError, match="line 2"):
        read_request_log(_log(tmp_path, "\n".join(lines) + "\n"))


def test_steps_from_histograms_have_their_own_exact_percentiles(tmp_path: Path) -> None:
    """A tenth of requests at 3× latency: p50 is the latency, p95 and p99 the slow tenth, even in a short step."""
    steps = [Step(4, 8, 20, 5.0, tail=True), Step(8, 8, 40, 7.0, tail=True)]
    log = read_request_log(_log(tmp_path, request_log(steps)))
    measured = split_steps(parse_history(history_csv(steps)), requests=log)
    assert [(s.p50_ms, s.p95_ms, s.p99_ms) for s in measured] == [(5.0, 15.0, 15.0), (7.0, 21.0, 21.0)]
    assert all(s.percentiles_inside for s in measured)


def test_histogram_and_csv_counts_agree(tmp_path: Path) -> None:
    """Both sources describe the same requests: per-step counts, failures and means match."""
    steps = [Step(4, 20, 20, 5.0, failure_ratio=0.1, burst=50), Step(8, 20, 40, 7.0)]
    history = parse_history(history_csv(steps))
    from_log = split_steps(history, requests=read_request_log(_log(tmp_path, request_log(steps))))
    from_csv = split_steps(history)
    assert [(s.requests, s.failures) for s in from_log] == [(s.requests, s.failures) for s in from_csv]
    assert [s.mean_ms for s in from_log] == pytest.approx([s.mean_ms for s in from_csv])
