"""Gate evaluation at its edges: tiny samples, empty spans, windows at the run's start and end, ``==`` thresholds over
windows, the result's JSON and exit code, and run counters with parts of the tally missing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from harness.gates import GATE_FAILED_EXIT, HistoryPoint, RunData, StatsEntry, evaluate, measure, parse_gate
from harness.gates._evaluate import Aggregate, run_value

STS = "/CCM_Proxy_ServerAuth/{id}/CCM_STS"
T0 = 1_700_000_000.0


def _entry(times: Mapping[int, int], *, failures: int = 0, name: str = STS, start: float = T0,
           end: float = T0 + 10) -> StatsEntry:
    return StatsEntry(method="POST", name=name, num_requests=sum(times.values()), num_failures=failures,
                      total_response_time=float(sum(ms * n for ms, n in times.items())),
                      max_response_time=float(max(times, default=0)), response_times=dict(times),
                      start_time=start, last_request_timestamp=end)


def _history(per_second: Sequence[Mapping[int, int]], *, before: Mapping[int, int] | None = None,
             step: float = 1.0) -> tuple[HistoryPoint, ...]:
    """A first point (carrying ``before``: what was counted before the history began), then one point per second."""
    first = HistoryPoint(T0, (_entry(before, end=T0),) if before else ())
    return (first, *(HistoryPoint(T0 + step * (i + 1), (_entry(times),) if times else ())
                     for i, times in enumerate(per_second)))


def _one(expression: str, data: RunData, *, live: bool = False):  # type: ignore[no-untyped-def]
    gate = parse_gate(f'thresholds:\n  "{STS}":\n    - {expression}\n')
    (result,) = evaluate(gate, data, latest_window_only=live).results
    return result


def _windowed(expression: str, seconds: int) -> str:
    return f"threshold: {expression}\n      window: {seconds}s"


# --- tiny samples and empty spans -----------------------------------------------------------------------------------


def test_one_request_is_enough_to_measure() -> None:
    """A single request has a failure ratio, a p95 and an average of its own (not 'nothing to measure')."""
    data = RunData(entries=(_entry({40: 1}, failures=1),))
    assert _one("failure_ratio < 0.5", data).measured == 1.0
    assert _one("p95 < 100", data).measured == 40
    assert _one("avg < 100", data).measured == 40.0


def test_requests_without_times_have_no_latency_to_judge() -> None:
    """Requests counted but never timed: latency thresholds fail as 'nothing to measure', never divide by zero."""
    untimed = StatsEntry(method="POST", name=STS, num_requests=3, start_time=T0, last_request_timestamp=T0 + 2)
    data = RunData(entries=(untimed,))
    for expression in ("avg < 100", "p95 < 100"):
        result = _one(expression, data)
        assert (result.measured, result.passed) == (None, False)
    assert _one("count == 3", data).passed


def test_a_rate_over_no_time_is_nothing_to_measure_and_a_short_span_is_a_rate() -> None:
    """rps over 0 s has no value; over half a second it is twice the count."""
    total = Aggregate()
    total.add(_entry({10: 4}))
    assert total.value("rps", 0.0) is None
    assert total.value("rps", 0.5) == 8.0
    assert total.value("failure_ratio", 1.0) == 0.0


# --- windows ----------------------------------------------------------------------------------------------------------


def test_what_was_counted_before_the_history_began_is_in_no_window() -> None:
    """The first history point carries everything before it; windows start after it, so it never counts."""
    data = RunData(entries=(), history=_history([{20: 10}] * 4, before={5000: 50}))
    result = _one(_windowed("p95 < 500", 2), data)
    assert (result.measured, result.passed) == (20, True)
    assert _one(_windowed("count <= 20", 2), data).measured == 20


def test_a_history_of_one_point_is_too_short_for_a_window() -> None:
    """One sample spans no time at all: the threshold fails and says the history is too short."""
    result = _one(_windowed("p95 < 500", 5), RunData(entries=(), history=_history([])))
    assert not result.passed and result.detail == "the per-second history is too short for a window"


def test_a_run_exactly_as_long_as_its_window_is_not_called_short() -> None:
    """5 s of history and a 5 s window: one full window, no 'shorter than the window' note; 4 s gets the note."""
    full = _one(_windowed("rps >= 5", 5), RunData(entries=(), history=_history([{20: 10}] * 5)))
    assert full.measured == pytest.approx(10.0) and "shorter" not in full.detail
    short = _one(_windowed("rps >= 5", 5), RunData(entries=(), history=_history([{20: 10}] * 4)))
    assert "shorter than the 5 s window" in short.detail


def test_a_short_run_is_measured_as_one_window_over_all_of_it() -> None:
    """4 s of history under a 30 s window: the one window covers all 4 s (50 + 3 x 10 requests → 20 per second)."""
    data = RunData(entries=(), history=_history([{20: 50}, {20: 10}, {20: 10}, {20: 10}]))
    assert _one(_windowed("rps >= 5", 30), data).measured == pytest.approx(20.0)


def test_a_window_over_samples_with_no_time_between_them_is_skipped() -> None:
    """Two samples taken at the same instant give no rate; the window that spans real time does."""
    history = (HistoryPoint(T0), HistoryPoint(T0, (_entry({20: 5}),)), HistoryPoint(T0 + 1, (_entry({20: 10}),)))
    assert _one(_windowed("rps >= 1", 1), RunData(entries=(), history=history)).measured == pytest.approx(10.0)


def test_live_evaluation_judges_the_very_last_window() -> None:
    """Live, the newest window decides: a slow last second fails it even when the one before was fine."""
    data = RunData(entries=(), history=_history([{20: 10}] * 5 + [{900: 10}]))
    result = _one(_windowed("p95 < 500", 1), data, live=True)
    assert (result.measured, result.passed) == (900, False)
    data = RunData(entries=(), history=_history([{20: 10}] * 4 + [{900: 10}, {20: 10}]))
    assert _one(_windowed("p95 < 500", 1), data, live=True).passed


def test_measure_judges_every_window_unless_told_it_is_live() -> None:
    """Called on its own, measure looks at every window, so an early slow stretch fails the threshold."""
    gate = parse_gate(f'thresholds:\n  "{STS}":\n    - {_windowed("p95 < 500", 1)}\n')
    data = RunData(entries=(), history=_history([{900: 10}] + [{20: 10}] * 5))
    assert not measure(gate.thresholds[0], data).passed


def test_a_window_selector_that_matches_nothing_says_so() -> None:
    """No matching request in any window: 'no requests matched <selector> in any window' (plus the short note)."""
    data = RunData(entries=(), history=_history([{20: 10}] * 3))
    gate = parse_gate(f'thresholds:\n  "/nowhere":\n    - {_windowed("p95 < 500", 2)}\n')
    (result,) = evaluate(gate, data).results
    assert result.detail == "no requests matched '/nowhere' in any window" and not result.passed
    gate = parse_gate(f'thresholds:\n  "/nowhere":\n    - {_windowed("p95 < 500", 9)}\n')
    (result,) = evaluate(gate, data).results
    assert result.detail == "no requests matched '/nowhere' in any window (the run was shorter than the 9 s window)"


def test_an_equality_over_windows_reports_the_first_window_that_breaks_it() -> None:
    """``p95 == 20`` over 1 s windows: the first window where it does not hold is reported, with where it ends."""
    data = RunData(entries=(), history=_history([{20: 10}, {20: 10}, {30: 10}, {40: 10}, {20: 10}]))
    result = _one(_windowed("p95 == 20", 1), data)
    assert (result.measured, result.at, result.passed) == (30, 3.0, False)


def test_an_equality_that_holds_in_every_window_reports_the_last() -> None:
    """When every window holds, the newest one is the one reported."""
    data = RunData(entries=(), history=_history([{20: 10}] * 3))
    result = _one(_windowed("p95 == 20", 1), data)
    assert (result.measured, result.at, result.passed) == (20, 3.0, True)


# --- the result as the CLI writes it -----------------------------------------------------------------------------------


def test_a_gate_result_lists_its_failures_exit_code_and_json() -> None:
    """Failures are the thresholds that did not hold; exit code 0 only when all held, else GATE_FAILED_EXIT; the
    JSON names each threshold with what was measured."""
    gate = parse_gate(f'thresholds:\n  "{STS}":\n    - p95 < 100\n    - p95 < 10\n')
    result = evaluate(gate, RunData(entries=(_entry({40: 10}),)))
    assert [r.threshold.limit for r in result.failures] == [10]
    assert (result.passed, result.exit_code) == (False, GATE_FAILED_EXIT)
    data = result.to_dict()
    assert (data["passed"], data["exit_code"], data["thresholds"], data["failed"]) == (False, GATE_FAILED_EXIT, 2, 1)
    first = data["results"][0]
    assert (first["selector"], first["metric"], first["operator"], first["limit"], first["measured"],
            first["passed"]) == (STS, "p95", "<", 100, 40, True)
    passing = evaluate(parse_gate(f'thresholds:\n  "{STS}":\n    - p95 < 100\n'), RunData(entries=(_entry({40: 1}),)))
    assert (passing.exit_code, passing.failures, passing.to_dict()["exit_code"]) == (0, (), 0)


# --- run counters ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("outcomes", [
    {"devices": {"started": 10}},
    {"devices": {"started": 0}, "lifecycles": {"failed": 0}},
    {"lifecycles": {"failed": 1}},
])
def test_a_success_ratio_needs_started_devices_and_a_failure_count(outcomes: dict) -> None:
    """Without both counts there is no success ratio (and no division by zero or by None)."""
    assert run_value("success_ratio", outcomes) == (None, "no device started")


def test_one_second_of_history_is_one_window() -> None:
    """Two samples a second apart are enough for a window: it measures that second."""
    result = _one(_windowed("rps >= 5", 1), RunData(entries=(), history=_history([{20: 10}])))
    assert (result.measured, result.passed) == (pytest.approx(10.0), True)
