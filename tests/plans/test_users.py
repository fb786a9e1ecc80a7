"""Load plans: the user counts the step, soak and spike shapes ask Locust for at each moment of a run."""

from __future__ import annotations

import pytest

from harness.plans.users import PlanError, SoakPlan, SpikePlan, StepPlan


@pytest.mark.parametrize(("run_time", "users"), [(0.0, 15), (9.99, 15), (10.0, 25), (29.9, 35)])
def test_step_plan_adds_step_users_per_held_step(run_time: float, users: int) -> None:
    """Each step adds ``step_users`` on top of ``start_users`` and lasts ``hold`` seconds."""
    plan = StepPlan(step_users=10, steps=3, hold=10.0, start_users=5)
    assert plan.tick(run_time) == (users, 10.0)


def test_step_plan_ends_after_the_last_step() -> None:
    """Once every step has been held the plan ends the run (None)."""
    plan = StepPlan(step_users=10, steps=3, hold=10.0)
    assert plan.tick(29.99) is not None
    assert plan.tick(30.0) is None
    assert plan.duration == 30.0


def test_step_plan_uses_an_explicit_spawn_rate() -> None:
    """A given spawn rate replaces the default of one step's users per second."""
    assert StepPlan(step_users=10, spawn_rate=2.5).tick(0.0) == (10, 2.5)


@pytest.mark.parametrize(("field", "value", "named"), [
    ("step_users", 0, "step users"), ("steps", -1, "steps"), ("hold", 0.0, "step hold"),
    ("start_users", -5, "start users"), ("spawn_rate", -1.0, "step spawn rate"), ("steps", 2.5, "steps"),
])
def test_step_plan_refuses_bad_values_by_name(field: str, value: object, named: str) -> None:
    """An unusable parameter raises PlanError naming it and its value."""
    with pytest.raises(PlanError, match=named) as caught:
        StepPlan(**{field: value})  # type: ignore[arg-type]
    assert repr(value) in str(caught.value)


def test_step_plan_refuses_a_negative_run_time() -> None:
    """A run time before the start is a caller error, not step 0."""
    with pytest.raises(PlanError, match="run time"):
        StepPlan().tick(-1.0)


@pytest.mark.parametrize(("run_time", "expected"), [(0.0, (50, 5.0)), (99.0, (50, 5.0)), (100.0, None)])
def test_soak_plan_holds_its_users_until_the_duration(run_time: float, expected: object) -> None:
    """A soak run ramps over ``ramp`` seconds and holds the users until ``duration``."""
    assert SoakPlan(users=50, duration=100.0, ramp=10.0).tick(run_time) == expected


def test_soak_plan_refuses_a_ramp_longer_than_the_run() -> None:
    """The ramp must end before the soak does."""
    with pytest.raises(PlanError, match="soak ramp"):
        SoakPlan(users=5, duration=10.0, ramp=10.0)


@pytest.mark.parametrize(("run_time", "users"), [(0.0, 10), (59.9, 10), (60.0, 100), (89.9, 100), (90.0, 10)])
def test_spike_plan_jumps_to_the_peak_for_its_length(run_time: float, users: int) -> None:
    """The spike holds ``peak_users`` from ``at`` for ``length`` seconds, baseline before and after."""
    tick = SpikePlan(base_users=10, peak_users=100, at=60.0, length=30.0, duration=180.0).tick(run_time)
    assert tick is not None and tick[0] == users


def test_spike_plan_spawns_the_whole_spike_within_a_second() -> None:
    """A spike arrives at once: the spawn rate covers the whole difference."""
    assert SpikePlan(base_users=10, peak_users=100).tick(60.0) == (100, 90.0)


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"base_users": 50, "peak_users": 50}, "must exceed"),
    ({"at": 170.0, "length": 30.0, "duration": 180.0}, "must end within"),
    ({"at": -1.0}, "spike start"),
])
def test_spike_plan_refuses_inconsistent_settings(kwargs: dict[str, float], named: str) -> None:
    """A spike that is no spike, or ends after the run, is refused with the reason."""
    with pytest.raises(PlanError, match=named):
        SpikePlan(**kwargs)  # type: ignore[arg-type]
