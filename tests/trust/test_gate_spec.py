"""Gate files at their edges: the exit code scripts test for, which metrics take fractions or windows, the unit a
threshold reads in, and the longest window (how much history a live run keeps)."""

from __future__ import annotations

import pytest

from harness.gates import (
    GATE_FAILED_EXIT,
    Gate,
    GateFileError,
    RunData,
    StatsEntry,
    evaluate,
    load_gate,
    parse_gate,
)


def _threshold(expression: str, selector: str = "*"):  # type: ignore[no-untyped-def]
    (threshold,) = parse_gate(f'thresholds:\n  "{selector}":\n    - {expression}\n').thresholds
    return threshold


def test_a_crossed_threshold_exits_3() -> None:
    """CI scripts tell a crossed gate (3) from Locust's own error (1) and a usage error (2)."""
    assert GATE_FAILED_EXIT == 3


def test_latency_limits_may_be_fractions_and_counts_may_not() -> None:
    """``p95 == 82.5`` can hold (latencies are not whole numbers); ``count == 1.5`` and a run count of 0.5 cannot."""
    assert _threshold("p95 == 82.5").limit == 82.5
    for expression, selector in (("count == 1.5", "*"), ("unexpected_outcomes == 0.5", "run"),
                                 ("renewals == 0.5", "run"), ("registrations == 0.5", "run")):
        with pytest.raises(ValueError, match="can never hold"):
            _threshold(expression, selector)


def test_a_success_ratio_is_at_most_one() -> None:
    """``success_ratio <= 1`` always holds and ``> 1`` never does: both are refused; ``>= 1`` is a real demand."""
    with pytest.raises(ValueError, match="always holds"):
        _threshold("success_ratio <= 1", "run")
    with pytest.raises(ValueError, match="can never hold"):
        _threshold("success_ratio > 1", "run")
    assert _threshold("success_ratio >= 1", "run").limit == 1.0


@pytest.mark.parametrize(("expression", "selector", "unit"), [
    ("p95 < 500ms", "*", "ms"), ("failure_ratio < 1%", "*", "ratio"), ("rps > 5", "*", "rps"),
    ("count > 5", "*", "count"), ("unexpected_outcomes == 0", "run", "count"),
])
def test_a_threshold_reads_in_its_metrics_unit(expression: str, selector: str, unit: str) -> None:
    """The unit the report prints a measured value in comes from the metric."""
    assert _threshold(expression, selector).unit == unit


def test_the_longest_window_is_the_history_a_live_run_must_keep() -> None:
    """The largest window among the thresholds; 0 when none has one (or there are none)."""
    gate = parse_gate('thresholds:\n  "*":\n    - p95 < 500\n    - threshold: p95 < 500\n      window: 30s\n'
                      '    - threshold: rps > 1\n      window: 5s\n')
    assert gate.longest_window == 30.0
    assert parse_gate('thresholds:\n  "*":\n    - p95 < 500\n').longest_window == 0.0
    assert Gate(path="g.yaml", name="g", thresholds=()).longest_window == 0.0


@pytest.mark.parametrize(("expression", "selector", "message"), [
    ("p9 < 5", "*", "unknown metric 'p9' (known: p50, p90, p95, p99, max, avg, failure_ratio, success_ratio, rps, "
                    "count, unexpected_outcomes, renewals, registrations, "
                    + ", ".join(f"{measure}_{p}_ms" for measure in ("service", "corrected", "lateness")
                                for p in ("p50", "p90", "p95", "p99", "p999", "max"))
                    + ", achieved_rate_ratio); did you mean 'p99' or 'p95'?"),
    ("p95 < 5", "run", "metric 'p95' does not apply to selector 'run' (it takes: success_ratio, unexpected_outcomes, "
                       "renewals, registrations)"),
    ("count != 1.5", "*", "'count != 1.5' always holds, so it checks nothing: count is a whole count >= 0"),
    ("failure_ratio >= 0", "*", "'failure_ratio >= 0' always holds, so it checks nothing: failure_ratio is a ratio "
                                "from 0 to 1"),
    ("failure_ratio <= 1", "*", "'failure_ratio <= 1' always holds, so it checks nothing: failure_ratio is a ratio "
                                "from 0 to 1 (did you mean a fraction such as 0.01, or 1%?)"),
    ("p95 < 0", "*", "'p95 < 0' can never hold: p95 is a value >= 0 (ms)"),
])
def test_a_refused_threshold_says_what_the_metric_can_be(expression: str, selector: str, message: str) -> None:
    """The one-line error names the bad threshold, at most two close metric names, what the selector takes, and the
    metric's domain; the fraction hint only for a ratio limit of 1 or more."""
    with pytest.raises(ValueError) as refused:
        _threshold(expression, selector)
    assert str(refused.value) == f"<gate>:3: {message}"


def test_a_control_character_in_the_gate_file_is_a_gate_file_error() -> None:
    """A NUL byte (a binary file given as the gate) is refused as YAML on line 1, not a traceback."""
    with pytest.raises(GateFileError) as refused:
        parse_gate("name: a\x00\nthresholds: {}\n", "gate.yaml")
    assert str(refused.value).startswith("gate.yaml:1: not valid YAML: unacceptable character #x0000")


def test_a_key_written_twice_is_refused_with_both_lines_even_as_number_and_text() -> None:
    """``1:`` and ``"1":`` are the same selector: the second is refused, naming the line of the first."""
    with pytest.raises(GateFileError) as refused:
        parse_gate('thresholds:\n  1:\n    - count > 0\n  "1":\n    - count > 0\n')
    assert str(refused.value) == "<gate>:4: '1' appears twice in 'thresholds' (first on line 2)"


def test_a_run_wide_success_ratio_takes_no_window() -> None:
    """success_ratio can be windowed on a stage, but on the run it is one whole-run figure: a window is refused."""
    assert _threshold("threshold: success_ratio >= 0.9\n      window: 10s", "stage:policy cycle").window == 10.0
    with pytest.raises(GateFileError, match="whole-run count"):
        _threshold("threshold: success_ratio >= 0.9\n      window: 10s", "run")


def test_an_abort_without_a_delay_is_judged_from_the_start() -> None:
    """abort_on_fail without delay_abort_eval: no delay (0 s); with one, that many seconds."""
    assert _threshold("threshold: p95 < 500\n      abort_on_fail: true").delay_abort_eval == 0.0
    assert _threshold("threshold: p95 < 500\n      abort_on_fail: true\n      delay_abort_eval: 30s"
                      ).delay_abort_eval == 30.0


def test_a_gate_file_that_cannot_be_read_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A missing gate file is a GateFileError on line 1 of that path."""
    missing = tmp_path / "missing.yaml"
    with pytest.raises(GateFileError) as refused:
        load_gate(missing)
    assert str(refused.value).startswith(f"{missing}:1: cannot read the gate file")


def test_p99_is_the_99th_percentile_not_the_maximum() -> None:
    """101 requests, 100 at 10 ms and one at 20 ms: p99 is 10 ms (99 requests may be faster), max is 20 ms."""
    entry = StatsEntry(method="GET", name="/x", num_requests=101, total_response_time=1020.0, max_response_time=20.0,
                       response_times={10: 100, 20: 1}, start_time=1.0, last_request_timestamp=2.0)
    gate = parse_gate('thresholds:\n  "/x":\n    - p99 < 15\n    - max < 15\n')
    p99, maximum = evaluate(gate, RunData(entries=(entry,))).results
    assert (p99.measured, p99.passed, maximum.measured, maximum.passed) == (10, True, 20.0, False)


def test_equality_at_the_top_of_a_ratio_is_a_real_check() -> None:
    """``failure_ratio == 1`` (a chaos gate: everything must fail) and ``!= 1`` can each pass or fail: both accepted."""
    assert _threshold("failure_ratio == 1").limit == 1.0
    assert _threshold("failure_ratio != 1").limit == 1.0
