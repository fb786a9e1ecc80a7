"""Measuring thresholds on a run: whole-run figures as Locust reports them, sliding windows, and run counters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.gates import HistoryPoint, RunData, evaluate, load_results, parse_gate, percentile
from tests.gates.results import OUTCOMES, POLICY, REAL_STS_ENTRY, STS, T0, entry, point, steady_history, write_results


def judge(folder: Path, *thresholds: str, selector: str = "*") -> list[Any]:
    lines = "".join(f"    - {text}\n" for text in thresholds)
    gate = parse_gate(f'thresholds:\n  "{selector}":\n{lines}')
    return list(evaluate(gate, load_results(folder)).results)


@pytest.mark.parametrize(("metric", "locust_value"), [("p50", 17), ("p90", 47), ("p95", 83), ("p99", 100)])
def test_percentiles_equal_the_ones_locust_reports(tmp_path: Path, metric: str, locust_value: int) -> None:
    """On a real CCM_STS entry, p50/p90/p95/p99 are the values in Locust's own stats CSV."""
    folder = write_results(tmp_path, [REAL_STS_ENTRY])
    (result,) = judge(folder, f"{metric} < 10000", selector=STS)
    assert result.measured == locust_value


def test_max_and_avg_are_exact_not_rounded(tmp_path: Path) -> None:
    """The whole-run maximum and mean come from Locust's exact totals, not its rounded histogram."""
    folder = write_results(tmp_path, [REAL_STS_ENTRY])
    maximum, average = judge(folder, "max < 104", "avg < 100", selector=STS)
    assert maximum.measured == pytest.approx(104.2428870000549) and not maximum.passed
    assert average.measured == pytest.approx(4769.024314005037 / 200) and average.passed


def test_a_selector_aggregates_every_matching_entry(tmp_path: Path) -> None:
    """``*`` merges requests of every name (and leaves lifecycle stages out)."""
    folder = write_results(tmp_path, [entry(STS, {10: 60}, method="POST"), entry(POLICY, {30: 40}),
                                      entry("policy cycle", {900: 100}, method="LIFECYCLE")])
    (count, p50, p99) = judge(folder, "count > 0", "p50 < 1000", "p99 < 1000")
    assert (count.measured, p50.measured, p99.measured) == (100, 10, 30)


def test_failure_ratio_counts_failures_among_all_requests(tmp_path: Path) -> None:
    """3 failed of 200 requests is a 1.5 % failure ratio: it crosses 1 % and holds under 2 %."""
    folder = write_results(tmp_path, [entry(STS, {10: 100}, failures=3), entry(POLICY, {10: 100})])
    strict, loose = judge(folder, "failure_ratio <= 1%", "failure_ratio < 0.02")
    assert strict.measured == pytest.approx(0.015)
    assert (strict.passed, loose.passed) == (False, True)


def test_rps_is_requests_over_the_run_from_first_to_last_request(tmp_path: Path) -> None:
    """600 requests between the run's first and last request 20 s apart is 30 requests per second."""
    folder = write_results(tmp_path, [entry(STS, {10: 200}, start=T0, end=T0 + 5),
                                      entry(POLICY, {10: 400}, start=T0 + 2, end=T0 + 20)])
    (rps,) = judge(folder, "rps >= 50")
    assert rps.measured == pytest.approx(30.0) and not rps.passed


def test_a_stage_selector_reads_the_lifecycle_entries_and_their_success_ratio(tmp_path: Path) -> None:
    """``stage:policy cycle`` measures the LIFECYCLE entry: 2 of 200 cycles failed is 99 % success."""
    folder = write_results(tmp_path, [entry("policy cycle", {80: 200}, method="LIFECYCLE", failures=2),
                                      entry(STS, {5: 10}, method="POST")])
    p95, success = judge(folder, "p95 < 100", "success_ratio >= 99.5%", selector="stage:policy cycle")
    assert (p95.measured, p95.passed) == (80, True)
    assert (success.measured, success.passed) == (pytest.approx(0.99), False)


@pytest.mark.parametrize("expression", ["p95 < 500", "failure_ratio < 0.1"])
def test_a_selector_that_matches_nothing_fails_instead_of_passing_silently(tmp_path: Path, expression: str) -> None:
    """A misspelt request name measures nothing, and nothing measured is a failure, not a pass."""
    folder = write_results(tmp_path, [REAL_STS_ENTRY])
    (result,) = judge(folder, expression, selector="/CCM_Proxy_ServerAuth/{id}/CCM_TSS")
    assert result.measured is None and not result.passed
    assert "no requests matched" in result.detail


def test_a_window_finds_the_worst_stretch_the_whole_run_hides(tmp_path: Path) -> None:
    """Three slow seconds in a minute pass p95 over the run but cross it in the 5 s window holding them."""
    seconds = [{20: 10}] * 60
    seconds[30:33] = [{900: 5}] * 3
    whole = [entry(STS, {20: 570, 900: 15}, method="POST", end=T0 + 60)]
    folder = write_results(tmp_path, whole, history=steady_history(60, seconds))
    overall, windowed = judge(folder, "p95 < 500", "threshold: p95 < 500\n      window: 5s")
    assert (overall.measured, overall.passed) == (20, True)
    assert (windowed.measured, windowed.passed) == (900, False)
    assert 31 <= (windowed.at or 0) <= 37  # a window that holds the slow seconds 31..33


def test_a_windowed_rps_floor_reports_the_slowest_window(tmp_path: Path) -> None:
    """A lull of 10 s with 1 request/s drags a 10 s window down to 1 request per second."""
    seconds = [{20: 10}] * 40
    seconds[10:20] = [{20: 1}] * 10
    folder = write_results(tmp_path, [entry(STS, {20: 310}, method="POST", end=T0 + 40)],
                           history=steady_history(40, seconds))
    (rps,) = judge(folder, "threshold: rps >= 5\n      window: 10s")
    assert rps.measured == pytest.approx(1.0) and not rps.passed


def test_a_run_shorter_than_its_window_is_judged_as_one_window(tmp_path: Path) -> None:
    """With 5 s of history a 30 s window measures those 5 s and says so."""
    folder = write_results(tmp_path, [entry(STS, {20: 50}, method="POST")], history=steady_history(5))
    (result,) = judge(folder, "threshold: rps >= 5\n      window: 30s")
    assert result.measured == pytest.approx(10.0) and result.passed
    assert "shorter than the 30 s window" in result.detail


def test_a_window_without_history_fails_naming_the_missing_file(tmp_path: Path) -> None:
    """Results without stats_history.jsonl cannot answer a window: the threshold fails and says why."""
    folder = write_results(tmp_path, [REAL_STS_ENTRY])
    (result,) = judge(folder, "threshold: p95 < 500\n      window: 10s")
    assert not result.passed and "stats_history.jsonl" in result.detail


def test_live_evaluation_judges_only_the_newest_window() -> None:
    """Live, a slow stretch that has left the newest window no longer counts against it."""
    seconds = [{900: 10}] * 5 + [{20: 10}] * 10
    history = steady_history(15, seconds)
    data = RunData(entries=(), history=tuple(HistoryPoint.from_json(json.dumps(line)) for line in history))
    gate = parse_gate('thresholds:\n  "*":\n    - threshold: p95 < 500\n      window: 5s\n')
    assert not evaluate(gate, data).passed
    assert evaluate(gate, data, latest_window_only=True).passed


@pytest.mark.parametrize(("outcomes", "measured", "detail"), [
    ({**OUTCOMES, "verdicts": {"expected": 90, "unexpected": 2}}, 2, "from the verdicts"),
    ({**OUTCOMES, "lifecycles": {"succeeded": 5, "failed": 4, "unexpected_failures": 1}}, 1, "not explained"),
    ({"lifecycles": {"succeeded": 5, "failed": 4}}, 4, "failed lifecycles"),
])
def test_unexpected_outcomes_prefer_verdicts_then_the_tallys_count(tmp_path: Path, outcomes: dict[str, Any],
                                                                 measured: int, detail: str) -> None:
    """The count comes from the verdicts section, else the unexpected failures, else every failed lifecycle."""
    folder = write_results(tmp_path, [REAL_STS_ENTRY], outcomes=outcomes)
    (result,) = judge(folder, "unexpected_outcomes == 0", selector="run")
    assert result.measured == measured and not result.passed and detail in result.detail


def test_run_counters_read_the_outcome_tally(tmp_path: Path) -> None:
    """Renewals, registrations and the lifecycle success ratio come from outcomes.json."""
    outcomes = {**OUTCOMES, "lifecycles": {"succeeded": 0, "failed": 5, "unexpected_failures": 0}}
    folder = write_results(tmp_path, [REAL_STS_ENTRY], outcomes=outcomes)
    renewals, registrations, success = judge(folder, "renewals >= 50", "registrations >= 100",
                                             "success_ratio >= 0.99", selector="run")
    assert (renewals.measured, renewals.passed) == (40, False)
    assert (registrations.measured, registrations.passed) == (100, True)
    assert (success.measured, success.passed) == (pytest.approx(0.95), False)


def test_run_counters_without_an_outcome_tally_fail(tmp_path: Path) -> None:
    """A run that left no outcomes.json cannot show it had no unexpected outcomes."""
    folder = write_results(tmp_path, [REAL_STS_ENTRY], outcomes=None)
    (result,) = judge(folder, "unexpected_outcomes == 0", selector="run")
    assert not result.passed and "outcomes.json" in result.detail


def test_a_threshold_that_aborted_the_run_fails_whatever_the_final_value(tmp_path: Path) -> None:
    """The abort record names the threshold; the run's final figures cannot turn it green again."""
    folder = write_results(tmp_path, [REAL_STS_ENTRY])
    (folder / "gate-abort.json").write_text('{"threshold": "*: p95 < 500", "elapsed_s": 12.5, '
                                            '"measured": 812.0, "detail": "measured 812 ms"}')
    (result,) = judge(folder, "p95 < 500")
    assert result.measured == 83 and not result.passed
    assert result.detail == "aborted the run after 12 s, measuring 812 ms then" and result.aborted is not None


@pytest.mark.parametrize(("times", "quantile", "expected"), [
    ({10: 1}, 0.99, 10), ({1: 50, 2: 50}, 0.5, 2), ({1: 51, 2: 49}, 0.5, 1), ({1: 99, 500: 1}, 0.99, 500),
    ({1: 99, 500: 1}, 0.95, 1),
])
def test_percentile_keeps_floor_n_times_q_requests_below_it(times: dict[int, int], quantile: float,
                                                           expected: int) -> None:
    """The answer is the largest time with at most floor(n·q) requests faster, as Locust computes it."""
    assert percentile(times, quantile) == expected


def test_history_points_carry_each_seconds_additions(tmp_path: Path) -> None:
    """A history line's entries are the requests of that second (a round trip through the file keeps them)."""
    folder = write_results(tmp_path, [REAL_STS_ENTRY], history=[point(T0), point(T0 + 1, ("POST", STS, {5: 2}, 1))])
    data = load_results(folder)
    assert [len(p.entries) for p in data.history] == [0, 1]
    assert data.history[1].entries[0].num_failures == 1
