"""The edges of the open model's schedule: when the plan's first and last devices start, the rate at stage edges, the
largest plan, and the checks on slots, fleets and the open model itself (each refusal pinned by its message)."""

from __future__ import annotations

import math
import random

import pytest

from harness.plans.arrivals import (
    DEFAULT_MAX_IN_FLIGHT,
    MAX_ARRIVALS,
    ArrivalError,
    ArrivalPlan,
    ArrivalStage,
    FleetPlan,
    OpenModel,
)
from harness.plans.search import SearchSettings


def test_a_pause_stage_and_a_fractional_rate_are_plans() -> None:
    """Rate 0 holds arrivals off for a while; 0.5/s is one device every two seconds."""
    plan = ArrivalPlan((ArrivalStage(0.0, 10.0), ArrivalStage(0.5, 4.0)), start_rate_per_s=0.0)
    assert plan.total() == 1  # the ramp 0 -> 0.5/s over 4 s brings one arrival, at the start of the ramp
    assert plan.start_of(0) == 10.0
    assert ArrivalPlan.constant(0.5, 4.0).total() == 2


@pytest.mark.parametrize("rate", [-0.5, math.nan, math.inf])
def test_a_start_rate_below_zero_or_not_finite_is_refused(rate: float) -> None:
    with pytest.raises(ArrivalError, match=rf"^start rate must be a number >= 0 per second, got {rate!r}$"):
        ArrivalPlan((ArrivalStage(1.0, 1.0),), start_rate_per_s=rate)


def test_the_largest_plan_is_taken_and_one_device_more_is_refused() -> None:
    assert ArrivalPlan.constant(float(MAX_ARRIVALS), 1.0).total() == MAX_ARRIVALS == 10_000_000_000
    with pytest.raises(ArrivalError, match=r"^the plan starts 10,000,000,001 devices; at most 10,000,000,000 per run$"):
        ArrivalPlan.constant(float(MAX_ARRIVALS + 1), 1.0)


def test_no_arrivals_before_the_plan_starts_and_none_in_a_plan_of_rate_zero() -> None:
    plan = ArrivalPlan.constant(10.0, 5.0)
    assert (plan.arrivals_by(-1.0), plan.arrivals_by(0.0)) == (0.0, 0.0)
    assert ArrivalPlan.constant(0.0, 10.0).total() == 0
    assert list(ArrivalPlan.constant(0.0, 10.0).starts()) == []


def test_the_rate_holds_from_a_stage_start_and_drops_to_zero_at_the_plan_end() -> None:
    plan = ArrivalPlan((ArrivalStage(4.0, 10.0), ArrivalStage(8.0, 10.0)), start_rate_per_s=2.0)
    assert plan.rate_at(0.0) == 2.0  # the first instant is the first stage's
    assert plan.rate_at(10.0) == 4.0  # the second stage starts from the first one's end rate
    assert plan.rate_at(19.999) == pytest.approx(8.0, abs=0.001)
    assert (plan.rate_at(20.0), plan.rate_at(25.0), plan.rate_at(-1.0)) == (0.0, 0.0, 0.0)


def test_a_slow_ramp_from_zero_starts_its_first_devices_late() -> None:
    """0 -> 1/s over 10 s: A(t) = t^2/20, so device 1 starts at sqrt(20) s and device 4 at sqrt(80) s."""
    plan = ArrivalPlan((ArrivalStage(1.0, 10.0),))
    assert plan.total() == 5
    assert [plan.start_of(n) for n in (0, 1, 4)] == pytest.approx([0.0, math.sqrt(20.0), math.sqrt(80.0)])


def test_a_device_at_a_stage_edge_starts_at_that_edge() -> None:
    plan = ArrivalPlan((ArrivalStage(10.0, 1.0), ArrivalStage(20.0, 1.0)), start_rate_per_s=10.0)
    assert plan.start_of(10) == 1.0  # the first device of the second stage
    assert plan.start_of(9) == pytest.approx(0.9)


@pytest.mark.parametrize("n", [-1, 30])
def test_a_device_outside_the_plan_has_no_start(n: int) -> None:
    with pytest.raises(ArrivalError, match=rf"^device {n} is outside the plan's 30 arrivals$"):
        ArrivalPlan.constant(10.0, 3.0).start_of(n)


def test_one_slot_by_default_takes_every_device_from_the_first() -> None:
    plan = ArrivalPlan.constant(4.0, 1.0)
    assert [n for n, _ in plan.starts()] == [0, 1, 2, 3]
    fleet = FleetPlan(3, 30.0)
    assert [n for n, _ in fleet.starts()] == [0, 1, 2]


def test_a_fleet_phases_its_devices_with_seed_one_unless_told() -> None:
    fleet = FleetPlan(10, 60.0)
    assert fleet.start_of(3) == pytest.approx((3 + random.Random("1/3").random()) * 6.0, rel=1e-12)
    assert fleet.start_of(3) != FleetPlan(10, 60.0, seed=2).start_of(3)


def test_the_smallest_and_largest_fleets_are_taken() -> None:
    assert FleetPlan(1, 0.5).rate_per_s == 2.0
    assert FleetPlan(MAX_ARRIVALS, 3600.0).size == MAX_ARRIVALS
    for size in (0, MAX_ARRIVALS + 1, True, 2.0):
        with pytest.raises(ArrivalError, match=rf"^fleet size must be a whole number from 1 to 10,000,000,000, got "
                                               rf"{size!r}$"):
            FleetPlan(size, 60.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [-1, 5])
def test_a_device_outside_the_fleet_has_no_start(n: int) -> None:
    assert FleetPlan(5, 60.0).start_of(0) < 12.0
    with pytest.raises(ArrivalError, match=rf"^device {n} is outside the fleet of 5$"):
        FleetPlan(5, 60.0).start_of(n)


@pytest.mark.parametrize(("slot", "slots", "message"), [
    (0, 0, "slots must be a whole number >= 1, got 0"),
    (0, True, "slots must be a whole number >= 1, got True"),
    (0, 1.0, "slots must be a whole number >= 1, got 1.0"),
    (-1, 2, "slot must be a whole number from 0 to 1, got -1"),
    (2, 2, "slot must be a whole number from 0 to 1, got 2"),
    (True, 2, "slot must be a whole number from 0 to 1, got True"),
])
def test_slots_outside_the_range_are_refused(slot: int, slots: int, message: str) -> None:
    for plan in (ArrivalPlan.constant(4.0, 1.0), FleetPlan(4, 60.0)):
        with pytest.raises(ArrivalError, match=f"^{message}$"):
            list(plan.starts(slot, slots))


def test_the_last_slot_gets_its_share() -> None:
    assert [n for n, _ in ArrivalPlan.constant(4.0, 1.0).starts(1, 2)] == [1, 3]


SEARCH = SearchSettings()


def test_an_open_model_is_exactly_one_kind() -> None:
    plan, fleet = ArrivalPlan.constant(1.0, 1.0), FleetPlan(2, 60.0)
    for kinds in ({}, {"arrivals": plan, "fleet": fleet}, {"fleet": fleet, "search": SEARCH},
                  {"arrivals": plan, "fleet": fleet, "search": SEARCH}):
        with pytest.raises(ArrivalError, match="^an open model needs exactly one of an arrival rate"):
            OpenModel(**kinds)  # type: ignore[arg-type]
    assert OpenModel(search=SEARCH).max_in_flight == DEFAULT_MAX_IN_FLIGHT == 256


@pytest.mark.parametrize("value", [0, True, 1.5])
def test_max_in_flight_is_a_whole_number_from_one(value: object) -> None:
    assert OpenModel(arrivals=ArrivalPlan.constant(1.0, 1.0), max_in_flight=1).max_in_flight == 1
    with pytest.raises(ArrivalError, match=rf"^max in flight must be a whole number >= 1, got {value!r}$"):
        OpenModel(arrivals=ArrivalPlan.constant(1.0, 1.0), max_in_flight=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, True, 2.0])
def test_polls_per_device_is_a_whole_number_from_one(value: object) -> None:
    assert OpenModel(fleet=FleetPlan(2, 60.0), polls_per_device=1).polls_per_device == 1
    assert OpenModel(fleet=FleetPlan(2, 60.0)).polls_per_device is None
    with pytest.raises(ArrivalError, match=rf"^polls per device must be a whole number >= 1, got {value!r}$"):
        OpenModel(fleet=FleetPlan(2, 60.0), polls_per_device=value)  # type: ignore[arg-type]


def test_an_open_model_starts_the_devices_of_its_plan() -> None:
    plan, fleet = ArrivalPlan.constant(3.0, 1.0), FleetPlan(4, 60.0, seed=7)
    assert list(OpenModel(arrivals=plan).starts(0, 2)) == list(plan.starts(0, 2)) == [(0, 0.0), (2, 2 / 3)]
    assert list(OpenModel(fleet=fleet).starts(1, 2)) == list(fleet.starts(1, 2))
    with pytest.raises(ArrivalError, match="^a capacity search sets its arrival rate as it goes"):
        OpenModel(search=SEARCH).starts(0, 1)


def test_each_kind_of_open_model_describes_itself() -> None:
    ramp = OpenModel(arrivals=ArrivalPlan((ArrivalStage(5.0, 30.0), ArrivalStage(10.0, 60.0))), max_in_flight=8)
    assert ramp.describe() == ("open model: new devices arriving at 5/s over 30 s, 10/s over 60 s; at most 8 requests "
                               "in flight per process")
    fleet = OpenModel(fleet=FleetPlan(100_000, 3600.0))
    assert fleet.describe() == ("open model: a fleet of 100,000 devices, each acting every 3600 s (27.8 policy "
                                "cycles/s); at most 256 requests in flight per process")
    search = OpenModel(search=SEARCH).describe()
    assert search.startswith(f"open model, capacity search: new devices from {SEARCH.start_rate_per_s:g}/s, "
                             f"x{SEARCH.growth:g} per step up to {SEARCH.max_rate_per_s:g}/s, then bisection; ")
    assert search.endswith("at most 256 requests in flight per process")
