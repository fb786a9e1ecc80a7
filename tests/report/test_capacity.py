"""Assembling the report: the over-time series and the terminal summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.report import ReportError, build_report, summary_lines
from harness.report.capacity import time_series
from harness.report.history import parse_history
from harness.report.requestlog import read_request_log
from tests.report.synthetic import Step, history_csv, request_log, results_dir

STEPS = [Step(4, 20, 10, 5.0), Step(8, 20, 30, 5.0)]


@pytest.mark.parametrize("with_log", [True, False])
def test_request_rates_over_time_follow_the_steps(tmp_path: Path, with_log: bool) -> None:
    """Requests per second over time are each interval's own, from the histograms or the CSV alike."""
    history = parse_history(history_csv(STEPS))
    log_path = tmp_path / "stats_history.jsonl"
    log_path.write_text(request_log(STEPS))
    series = time_series(history, read_request_log(log_path) if with_log else None)
    rates = {point.users: point.requests_per_s for point in series if point.t > 5 and point.users}
    assert rates == {4: pytest.approx(10.0), 8: pytest.approx(30.0)}


def test_long_runs_are_thinned_for_the_charts() -> None:
    """A long history keeps at most max_points points, the last row included."""
    history = parse_history(history_csv([Step(4, 300, 10, 5.0)]))
    series = time_series(history, max_points=50)
    assert len(series) <= 51
    assert series[-1].t == history.rows[-1].timestamp - history.start


def test_the_terminal_summary_names_knee_fit_and_capacity(tmp_path: Path) -> None:
    """The lines printed after the report: steps, knee, USL, and the clients at the latency target."""
    steps = [Step(10 * (i + 1), 30, rate, 5.0) for i, rate in enumerate((100, 200, 300, 310))]
    lines = summary_lines(build_report(results_dir(tmp_path / "run", steps)))
    assert lines[0] == "4 steps, 10..40 users, peak 310.0 req/s"
    assert lines[1].startswith("knee at 30 users")
    assert lines[2].startswith("USL: sigma")
    assert lines[3].startswith("within p95 <= 1000 ms: at least 310.0 req/s")


def test_a_history_without_users_is_refused(tmp_path: Path) -> None:
    """A run that never started a user has no step to report on."""
    directory = results_dir(tmp_path / "run", [])
    with pytest.raises(ReportError, match="no step"):
        build_report(directory)
