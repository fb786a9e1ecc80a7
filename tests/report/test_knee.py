"""The saturation knee: where throughput stops growing with users or latency rises sharply."""

from __future__ import annotations

import pytest

from harness.report.knee import find_knee
from tests.report.steps_factory import step, steps


def test_linear_scaling_has_no_knee() -> None:
    """Throughput proportional to users and flat latency: every step still scales."""
    assert find_knee(steps([(10, 100.0, 10.0), (20, 200.0, 10.0), (30, 300.0, 11.0), (40, 400.0, 12.0)])) is None


def test_flattening_throughput_puts_the_knee_at_the_last_growing_step() -> None:
    """Added users that bring under half the first step's per-user throughput mark saturation."""
    knee = find_knee(steps([(10, 100.0, 10.0), (20, 200.0, 10.0), (30, 290.0, 10.0), (40, 310.0, 10.0)]))
    assert knee is not None
    assert (knee.step.users, knee.saturated.users) == (30, 40)
    assert knee.reason.startswith("throughput")


def test_a_sharp_latency_rise_puts_the_knee_before_it() -> None:
    """p95 more than doubling (by more than the floor) marks saturation even while throughput still grows."""
    knee = find_knee(steps([(10, 100.0, 40.0), (20, 200.0, 45.0), (30, 300.0, 120.0)]))
    assert knee is not None
    assert knee.step.users == 20
    assert knee.reason.startswith("latency")


def test_a_doubling_within_loopback_jitter_is_not_a_knee() -> None:
    """2 ms to 6 ms triples p95 but stays under the 20 ms floor: not queueing."""
    assert find_knee(steps([(10, 100.0, 2.0), (20, 200.0, 6.0), (30, 300.0, 6.0)])) is None


def test_without_p95_the_exact_mean_is_compared() -> None:
    """Steps with no window percentiles fall back to their mean latency."""
    rows = [step(10, 100.0, p95=None, mean=10.0, index=0), step(20, 200.0, p95=None, mean=100.0, index=1)]
    knee = find_knee(rows)
    assert knee is not None and "mean" in knee.reason


@pytest.mark.parametrize("count", [0, 1])
def test_fewer_than_two_steps_have_no_knee(count: int) -> None:
    """A knee needs a step to compare with."""
    assert find_knee(steps([(10, 100.0, 10.0)] * count)) is None
