"""Knee detection on plain, hand-made series: the answer can be worked out on paper."""

from __future__ import annotations

from harness.report.knee import find_knee
from tests.report.steps_factory import steps


def test_p95_rising_10_18_30_50_ms_puts_the_knee_between_the_second_and_third_step() -> None:
    """Throughput linear in users; p95 10, 18, 30, 50 ms: 30 is more than twice 10 and 20 ms above it."""
    series = steps([(10, 100.0, 10.0), (20, 200.0, 18.0), (30, 300.0, 30.0), (40, 400.0, 50.0)])
    knee = find_knee(series)
    assert knee is not None
    assert (knee.step.users, knee.saturated.users) == (20, 30)
    assert knee.reason.startswith("latency: p95 30 ms at 30 users")


def test_linear_throughput_and_flat_latency_have_no_knee() -> None:
    """Everything scales: no knee."""
    assert find_knee(steps([(10, 100.0, 10.0), (20, 200.0, 11.0), (30, 300.0, 12.0)])) is None


def test_throughput_that_stops_growing_is_a_knee() -> None:
    """Users 10, 20, 30 at 100, 200, 240 req/s: the third step adds 40 % of the first step's per-user rate."""
    knee = find_knee(steps([(10, 100.0, 10.0), (20, 200.0, 10.0), (30, 240.0, 10.0)]))
    assert knee is not None and (knee.step.users, knee.saturated.users) == (20, 30)
    assert knee.reason.startswith("throughput: the 10 users added at 30 users brought 40%")


def test_exactly_half_the_per_user_rate_still_scales() -> None:
    """The marginal-efficiency rule is 'less than half': exactly half is not a knee, just under is."""
    assert find_knee(steps([(10, 100.0, 10.0), (20, 150.0, 10.0)])) is None
    assert find_knee(steps([(10, 100.0, 10.0), (20, 149.0, 10.0)])) is not None


def test_the_latency_rule_needs_both_the_factor_and_the_floor() -> None:
    """p95 exactly twice the first step's is not a knee; 3x but only 18 ms higher is not either (below the floor)."""
    assert find_knee(steps([(10, 100.0, 20.0), (20, 200.0, 40.0)])) is None  # 2x, +20 ms: factor not exceeded
    assert find_knee(steps([(10, 100.0, 9.0), (20, 200.0, 27.0)])) is None  # 3x, +18 ms: under the floor
    knee = find_knee(steps([(10, 100.0, 10.0), (20, 200.0, 30.0)]))  # 3x, +20 ms: both
    assert knee is not None and knee.saturated.users == 20


def test_fewer_than_two_steps_or_no_throughput_have_no_knee() -> None:
    """One step, or a first step that carried nothing, gives no knee."""
    assert find_knee(steps([(10, 100.0, 10.0)])) is None
    assert find_knee(steps([(10, 0.0, 10.0), (20, 0.0, 99.0)])) is None


def test_steps_without_p95_compare_the_mean() -> None:
    """With no p95 the rule reads the exact mean and says so."""
    from tests.report.steps_factory import step

    series = [step(10, 100.0, p95=None, mean=10.0, index=0), step(20, 200.0, p95=None, mean=40.0, index=1)]
    knee = find_knee(series)
    assert knee is not None and knee.reason.startswith("latency: mean 40 ms")


def test_the_latency_floor_is_twenty_milliseconds() -> None:
    """+19.5 ms at nearly 3x is still jitter; +20 ms is queueing."""
    assert find_knee(steps([(10, 100.0, 10.0), (20, 200.0, 29.5)])) is None
    assert find_knee(steps([(10, 100.0, 10.0), (20, 200.0, 30.0)])) is not None


def test_a_small_but_positive_first_throughput_is_judged() -> None:
    """A first step of 0.5 req/s is a baseline like any other: a second step adding 20 % of its rate is a knee."""
    knee = find_knee(steps([(10, 0.5, 10.0), (20, 0.6, 10.0)]))
    assert knee is not None and knee.reason.startswith("throughput")


def test_only_the_first_steps_throughput_decides_whether_there_is_a_baseline() -> None:
    """A first step that carried nothing gives no knee, whatever the later steps carried."""
    assert find_knee(steps([(10, 0.0, 10.0), (20, 100.0, 10.0), (30, 100.0, 10.0)])) is None


def test_a_step_without_added_users_is_judged_on_latency_only() -> None:
    """Same users twice (a hold step): no throughput rule (no division by zero users); one user added is judged."""
    assert find_knee(steps([(10, 100.0, 10.0), (10, 90.0, 10.0)])) is None
    knee = find_knee(steps([(10, 100.0, 10.0), (11, 100.0, 10.0)]))
    assert knee is not None and knee.reason.startswith("throughput: the 1 users added")


def test_the_reason_says_mean_when_the_first_step_had_no_p95() -> None:
    """p95 is compared only when both steps have one; otherwise the reason names the mean."""
    from tests.report.steps_factory import step

    series = [step(10, 100.0, p95=None, mean=10.0, index=0), step(20, 200.0, p95=40.0, mean=40.0, index=1)]
    knee = find_knee(series)
    assert knee is not None and knee.reason.startswith("latency: mean")
