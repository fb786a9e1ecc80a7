"""ResultsDir: the file names of a run's results, read leniently where a file is optional, strictly where it is not."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import pytest

from harness.chaos.verdicts import FaultWindow
from harness.results.errors import ResultsError
from harness.results.layout import ResultsDir, default_results_path, fault_windows, or_none
from harness.results.stats import HistoryPoint, StatsEntry


def test_results_go_to_a_timestamped_folder() -> None:
    assert default_results_path(datetime(2024, 5, 17, 9, 3, 4)) == Path("results/20240517-090304")


def test_a_new_directory_is_unused_and_one_with_files_is_not(tmp_path: Path) -> None:
    assert ResultsDir(tmp_path / "new").is_unused()
    assert ResultsDir(tmp_path).is_unused()
    (tmp_path / "old.txt").write_text("x")
    assert not ResultsDir(tmp_path).is_unused()
    assert not ResultsDir(tmp_path / "old.txt").is_unused()


def test_run_files_lists_what_is_there_in_summary_order(tmp_path: Path) -> None:
    """summary.json and report.html count (they are written with the list); the rest only when present."""
    results = ResultsDir(tmp_path)
    (tmp_path / "locust.json").write_text("[]")
    (tmp_path / "site" / "logs").mkdir(parents=True)
    assert results.run_files() == ["report.html", "locust.json", "summary.json", "site/logs/"]


def test_missing_files_read_as_none_and_broken_ones_raise_naming_the_file(tmp_path: Path) -> None:
    results = ResultsDir(tmp_path)
    assert results.read_summary() is None and results.read_outcomes() is None
    assert results.read_stats_history() is None and results.read_locust_log() is None
    (tmp_path / "outcomes.json").write_text("[1]")
    with pytest.raises(ResultsError, match=r"outcomes\.json' must hold a JSON object"):
        results.read_outcomes()
    (tmp_path / "summary.json").write_text("{")
    with pytest.raises(ResultsError, match=r"run summary .*summary\.json' is not readable JSON"):
        results.read_summary()
    assert or_none(results.read_summary) is None


def test_locust_statistics_are_required_and_checked(tmp_path: Path) -> None:
    results = ResultsDir(tmp_path)
    with pytest.raises(ResultsError, match=r"locust\.json' not found"):
        results.read_locust_stats()
    (tmp_path / "locust.json").write_text('{"name": "x"}')
    with pytest.raises(ResultsError, match="list of statistics entries"):
        results.read_locust_stats()
    (tmp_path / "locust.json").write_text(json.dumps([{"method": "GET", "name": "/x", "num_requests": 3}]))
    assert results.read_locust_stats() == (StatsEntry("GET", "/x", num_requests=3),)


def test_the_summary_round_trips(tmp_path: Path) -> None:
    results = ResultsDir(tmp_path / "out")
    results.write_summary({"passed": True})
    assert results.read_summary() == {"passed": True}


def test_the_gate_verdict_is_written_next_to_the_results(tmp_path: Path) -> None:
    json_path, junit_path = ResultsDir(tmp_path).write_gate_verdict({"passed": False}, "<testsuites/>\n")
    assert (json_path.name, junit_path.name) == ("gate.json", "gate-junit.xml")
    assert json.loads(json_path.read_text()) == {"passed": False}
    with pytest.raises(ValueError):  # gate.json is strict JSON: no NaN
        ResultsDir(tmp_path).write_gate_verdict({"measured": math.nan}, "")


def test_the_stats_history_keeps_its_points(tmp_path: Path) -> None:
    point = HistoryPoint(t=1.0, entries=(StatsEntry("GET", "/x", num_requests=2, response_times={5: 2}),))
    (tmp_path / "stats_history.jsonl").write_text(point.to_json() + "\n")
    assert ResultsDir(tmp_path).read_stats_history() == (point,)


def test_the_locust_history_csv_is_found_under_another_prefix(tmp_path: Path) -> None:
    results = ResultsDir(tmp_path)
    assert results.locust_history_csv() is None
    (tmp_path / "run_stats_history.csv").write_text("")
    assert results.locust_history_csv() == tmp_path / "run_stats_history.csv"
    (tmp_path / "locust_stats_history.csv").write_text("")
    assert results.locust_history_csv() == tmp_path / "locust_stats_history.csv"


def test_fault_windows_come_from_the_summary_else_the_outcomes(tmp_path: Path) -> None:
    """The windows are chaos's FaultWindow; one still on at the end of the run ends at infinity."""
    results = ResultsDir(tmp_path)
    assert results.read_fault_windows() is None
    (tmp_path / "outcomes.json").write_text(json.dumps({"fault_windows": [
        {"name": "crl_unreachable", "role": "crl", "start": 10, "end": None, "params": {"x": 1}}]}))
    assert results.read_fault_windows() == (FaultWindow("crl_unreachable", "crl", 10.0, math.inf, {"x": 1}),)
    (tmp_path / "summary.json").write_text(json.dumps({"fault_windows": [{"name": "mp_down", "start": 1, "end": 2}]}))
    assert results.read_fault_windows() == (FaultWindow("mp_down", "", 1.0, 2.0),)


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "x", "start": 5}, r"fault_windows\[0\] needs name, start and end"),
    ({"name": "x", "start": 5, "end": 4}, r"fault_windows\[0\] ends before it starts"),
    ({"start": 5, "end": 6}, r"fault_windows\[0\] needs name"),
])
def test_a_broken_fault_window_is_named(entry: dict[str, object], message: str) -> None:
    with pytest.raises(ResultsError, match=message):
        fault_windows([entry], source="summary.json")
