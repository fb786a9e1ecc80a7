"""Per-step statistics: split by user count, settle dropped, figures from differences within each step."""

from __future__ import annotations

import pytest

from harness.report.history import parse_history
from harness.report.steps import StepError, StepStats, split_steps
from tests.report.synthetic import Step, history_csv


def _steps(steps: list[Step], settle: float = 5.0) -> list[StepStats]:
    return split_steps(parse_history(history_csv(steps)), settle=settle)


@pytest.mark.parametrize("count", [1, 3, 6])
def test_one_step_per_user_count(count: int) -> None:
    """Each run of rows with one user count is one step; idle rows before and after are not."""
    steps = _steps([Step(users=5 * (i + 1), seconds=20, rate=10, latency_ms=5.0) for i in range(count)])
    assert [step.users for step in steps] == [5 * (i + 1) for i in range(count)]


def test_throughput_is_per_step_not_cumulative() -> None:
    """Each step's req/s is its own rate, although Locust's run totals average over all steps."""
    steps = _steps([Step(4, 20, 10, 5.0), Step(8, 20, 20, 5.0), Step(12, 20, 40, 5.0)])
    assert [step.throughput for step in steps] == pytest.approx([10.0, 20.0, 40.0])


def test_the_settle_period_drops_the_burst_at_the_start_of_a_step() -> None:
    """Installs at a step's start (a burst of slow requests) fall in the settle period and do not count."""
    steps = _steps([Step(4, 20, 10, 5.0, burst=200, burst_ms=800.0)], settle=5.0)
    assert steps[0].mean_ms == pytest.approx(5.0)
    assert steps[0].throughput == pytest.approx(10.0)


def test_without_settling_the_burst_counts() -> None:
    """With settle 0 the first second's burst is part of the step (the base is the step's first row)."""
    unsettled = _steps([Step(4, 20, 10, 5.0, burst=200, burst_ms=800.0)], settle=0.0)[0]
    settled = _steps([Step(4, 20, 10, 5.0, burst=200, burst_ms=800.0)], settle=5.0)[0]
    assert unsettled.measured_from < settled.measured_from


def test_settle_never_takes_more_than_half_a_step() -> None:
    """A 10 s step with a 30 s settle keeps its second half."""
    step = _steps([Step(4, 10, 10, 5.0)], settle=30.0)[0]
    assert step.measured_from - step.start <= (step.end - step.start) / 2
    assert step.duration >= (step.end - step.start) / 2


def test_percentiles_come_from_windows_inside_the_step() -> None:
    """A step long enough for settle + the 10 s window reports its own p50/p95/p99 and says they are inside."""
    step = _steps([Step(4, 30, 10, 5.0)])[0]
    assert (step.p50_ms, step.p95_ms, step.p99_ms) == pytest.approx((5.0, 10.0, 15.0))
    assert step.percentiles_inside


def test_a_short_step_says_its_percentile_windows_reach_outside() -> None:
    """Shorter than settle + window: percentiles still given, flagged as not inside."""
    step = _steps([Step(4, 8, 10, 5.0)])[0]
    assert step.p95_ms is not None
    assert not step.percentiles_inside


def test_failure_ratio_is_per_step() -> None:
    """Failures of one step do not leak into the next."""
    steps = _steps([Step(4, 20, 100, 5.0, failure_ratio=0.1), Step(8, 20, 100, 5.0)])
    assert [step.failure_ratio for step in steps] == pytest.approx([0.1, 0.0])


def test_the_same_user_count_after_another_is_a_new_step() -> None:
    """A shape that returns to an earlier user count yields two separate steps."""
    steps = _steps([Step(4, 20, 10, 5.0), Step(8, 20, 20, 5.0), Step(4, 20, 10, 5.0)])
    assert [step.users for step in steps] == [4, 8, 4]


def test_a_one_row_step_is_left_out() -> None:
    """A transient user count seen for one second (a ramp) cannot be measured and is not a step."""
    steps = _steps([Step(4, 20, 10, 5.0), Step(6, 1, 10, 5.0), Step(8, 20, 20, 5.0)])
    assert [step.users for step in steps] == [4, 8]


@pytest.mark.parametrize("settle", [-1.0, float("nan"), float("inf")])
def test_a_bad_settle_is_refused(settle: float) -> None:
    """Settle must be a finite number of seconds >= 0."""
    with pytest.raises(StepError, match="settle"):
        _steps([Step(4, 20, 10, 5.0)], settle=settle)
