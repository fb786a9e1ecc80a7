"""Open-model plans: arrival times from a constant or ramping rate, and a fleet's rate from its size and interval."""

from __future__ import annotations

import pytest

from harness.plans.arrivals import ArrivalError, ArrivalPlan, ArrivalStage, FleetPlan


def test_a_constant_rate_starts_device_n_at_n_over_the_rate() -> None:
    """10 devices/s for 3 s: 30 devices, device n at n/10 s."""
    plan = ArrivalPlan.constant(10.0, 3.0)
    assert plan.total() == 30
    assert [plan.start_of(n) for n in (0, 1, 29)] == pytest.approx([0.0, 0.1, 2.9])


def test_a_linear_ramp_from_zero_places_arrivals_on_the_square_root_curve() -> None:
    """Ramping 0 -> 10/s over 10 s gives 50 devices; device n starts at sqrt(2n) s (A(t) = t^2/2)."""
    plan = ArrivalPlan((ArrivalStage(10.0, 10.0),))
    assert plan.total() == 50
    for n in (1, 8, 32, 49):
        assert plan.start_of(n) == pytest.approx((2 * n) ** 0.5)


def test_ramp_stages_continue_from_the_rate_before_them() -> None:
    """10/s:1m then 50/s:2m from 10/s: 600 in the first minute, then a ramp 10 -> 50 adding 3600."""
    plan = ArrivalPlan((ArrivalStage(10.0, 60.0), ArrivalStage(50.0, 120.0)), start_rate_per_s=10.0)
    assert plan.total() == 600 + 3600
    assert plan.start_of(600) == pytest.approx(60.0)
    assert plan.rate_at(120.0) == pytest.approx(30.0)
    assert plan.arrivals_by(120.0) == pytest.approx(600 + 10 * 60 + 40 / 120 * 60 * 60 / 2)


def test_start_times_increase_and_match_the_cumulative_count() -> None:
    """Every device of a ramp up and down starts at the instant the cumulative arrivals reach its number."""
    plan = ArrivalPlan((ArrivalStage(40.0, 5.0), ArrivalStage(5.0, 5.0), ArrivalStage(5.0, 2.0)), start_rate_per_s=0)
    starts = [plan.start_of(n) for n in range(plan.total())]
    assert starts == sorted(starts)
    for n in (3, 77, plan.total() - 1):
        assert plan.arrivals_by(starts[n]) == pytest.approx(n, abs=1e-6)


def test_slots_deal_devices_round_robin_and_together_cover_the_plan() -> None:
    """Three slots each get every third device; together they are the whole plan, each once."""
    plan = ArrivalPlan.constant(7.0, 2.0)
    dealt = [n for slot in range(3) for n, _ in plan.starts(slot, 3)]
    assert sorted(dealt) == list(range(plan.total()))
    assert [n for n, _ in plan.starts(1, 3)][:3] == [1, 4, 7]


def test_a_fleet_polling_hourly_makes_its_documented_rate() -> None:
    """100,000 devices polling every 60 minutes: 27.8 policy cycles per second."""
    assert FleetPlan(100_000, 3600.0).rate_per_s == pytest.approx(27.78, abs=0.01)


def test_a_fleet_spreads_its_first_actions_over_one_interval_reproducibly() -> None:
    """Phases lie within one interval, one per 1/size of it, the same for the same seed and different for another."""
    fleet = FleetPlan(1000, 60.0, seed=3)
    starts = [fleet.start_of(n) for n in range(1000)]
    assert all(n * 0.06 <= start < (n + 1) * 0.06 for n, start in enumerate(starts))
    assert starts == [FleetPlan(1000, 60.0, seed=3).start_of(n) for n in range(1000)]
    assert starts != [FleetPlan(1000, 60.0, seed=4).start_of(n) for n in range(1000)]


@pytest.mark.parametrize(("make", "message"), [
    (lambda: ArrivalStage(-1.0, 1.0), "rate"),
    (lambda: ArrivalStage(float("inf"), 1.0), "rate"),
    (lambda: ArrivalStage(1.0, 0.0), "duration"),
    (lambda: ArrivalPlan(()), "at least one stage"),
    (lambda: ArrivalPlan.constant(1e9, 1e9), "at most"),
    (lambda: FleetPlan(0, 60.0), "fleet size"),
    (lambda: FleetPlan(10, 0.0), "poll interval"),
    (lambda: list(ArrivalPlan.constant(1.0, 1.0).starts(3, 3)), "slot"),
    (lambda: ArrivalPlan.constant(1.0, 2.0).start_of(2), "outside"),
])
def test_unusable_plans_are_refused_naming_the_value(make: object, message: str) -> None:
    """Each unusable value raises ArrivalError naming what is wrong."""
    with pytest.raises(ArrivalError, match=message):
        make()  # type: ignore[operator]
