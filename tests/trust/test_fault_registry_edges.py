"""The fault registry's bookkeeping: clearing one role, what expiry and clearing leave behind for the request path's
fast lookups, injections counted into a shared counter, a fault replaced between lookup and draw, and its report."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Counter

from cmg_protocol.clock import FakeClock
from mock_site.faults.catalogue import FaultError
from mock_site.faults.registry import FaultRegistry


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def faults(clock: FakeClock) -> FaultRegistry:
    return FaultRegistry(clock, random.Random(7))


def test_a_fault_reports_the_time_left_and_none_after_its_end(faults: FaultRegistry, clock: FakeClock) -> None:
    """remaining() counts down to 0 and stays there; a fault described with no injections says 0."""
    fault = faults.set("cp_disconnected", duration=10)
    assert fault.remaining(clock() + 9.5) == 0.5
    assert fault.remaining(clock() + 10) == 0.0 and fault.remaining(clock() + 50) == 0.0
    assert fault.to_dict(clock())["injections"] == 0


def test_clearing_one_role_leaves_the_fault_on_at_the_others(faults: FaultRegistry) -> None:
    """ccm_token_expired at the CMG and at CCM_STS: clearing it at sts leaves the CMG's; no role clears both."""
    faults.set("ccm_token_expired", role="cmg", duration=60)
    faults.set("ccm_token_expired", role="sts", duration=60)
    assert [f.role for f in faults.clear("ccm_token_expired", "sts")] == ["sts"]
    assert faults.get("ccm_token_expired", "cmg") is not None and faults.get("ccm_token_expired", "sts") is None
    faults.set("ccm_token_expired", role="sts", duration=60)
    assert sorted(f.role for f in faults.clear("ccm_token_expired")) == ["cmg", "sts"]


def test_clearing_at_a_role_the_fault_does_not_have_is_refused(faults: FaultRegistry) -> None:
    """A role the fault cannot be on at is an error naming it, not a silent no-op."""
    with pytest.raises(FaultError):
        faults.clear("cp_disconnected", "mp")


def test_a_cleared_fault_is_gone_from_the_request_paths_lookups(faults: FaultRegistry) -> None:
    """After clear, get() finds nothing and the role has no fault on (the fast exit the middleware takes)."""
    faults.set("cp_disconnected", duration=60)
    assert faults.any_active("cmg") is True
    faults.clear("cp_disconnected")
    assert faults.get("cp_disconnected", "cmg") is None
    assert faults.any_active("cmg") is False


def test_an_expired_fault_is_gone_from_the_request_paths_lookups(faults: FaultRegistry, clock: FakeClock) -> None:
    """Once its end passes and the registry purges, the role has no fault on."""
    faults.set("cp_disconnected", duration=5)
    clock.advance(5)
    assert faults.active() == []
    assert faults.any_active("cmg") is False


def test_injections_count_into_a_counter_the_site_already_has(clock: FakeClock) -> None:
    """A site that owns cmg_fault_injections_total hands it in; the registry counts there, and creates no second one."""
    registry = CollectorRegistry()
    counter = Counter("cmg_fault_injections", "Faults injected", ["role", "fault"], registry=registry)
    faults = FaultRegistry(clock, random.Random(1), registry, counter=counter)
    faults.set("cp_disconnected", duration=60)
    faults.trigger("cp_disconnected", "cmg")
    faults.trigger("cp_disconnected", "cmg")
    assert registry.get_sample_value("cmg_fault_injections_total", {"role": "cmg", "fault": "cp_disconnected"}) == 2
    alone = FaultRegistry(clock, random.Random(1), None, counter=counter)
    alone.set("cp_disconnected", duration=60)
    alone.trigger("cp_disconnected", "cmg")
    assert registry.get_sample_value("cmg_fault_injections_total", {"role": "cmg", "fault": "cp_disconnected"}) == 3


def test_a_fault_replaced_or_cleared_between_lookup_and_draw(faults: FaultRegistry,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """trigger() uses the fault that is on when it draws: the replacement if it was replaced, none if cleared."""
    faults.set("tenant_not_onboarded", duration=60)
    stale = faults.get("tenant_not_onboarded", "cmg")
    current = faults.set("tenant_not_onboarded", duration=60, params={"tenant_id": "c8c82542-203c-4df9-9d86-cdd4dae67e0a"})
    monkeypatch.setattr(faults, "get", lambda name, role: stale)
    assert faults.trigger("tenant_not_onboarded", "cmg") is current
    assert faults.describe(current)["injections"] == 1
    faults.clear("tenant_not_onboarded")
    assert faults.trigger("tenant_not_onboarded", "cmg") is None


def test_a_description_counts_the_injections_of_that_fault_only(faults: FaultRegistry, clock: FakeClock) -> None:
    """describe() gives the fault's data with its injections; a fault since replaced reports none."""
    old = faults.set("cp_disconnected", duration=60)
    faults.trigger("cp_disconnected", "cmg")
    faults.trigger("cp_disconnected", "cmg")
    described = faults.describe(old)
    assert (described["name"], described["role"], described["injections"], described["remaining_s"]) == (
        "cp_disconnected", "cmg", 2, 60.0)
    faults.set("cp_disconnected", duration=60)
    assert faults.describe(old)["injections"] == 0


def test_shared_draws_come_from_the_injected_random(clock: FakeClock) -> None:
    """random() draws from the registry's seeded rng, so a run with the same seed draws the same jitter."""
    faults = FaultRegistry(clock, random.Random(42))
    expected = random.Random(42)
    assert [faults.random() for _ in range(3)] == [expected.random() for _ in range(3)]


def test_a_fault_may_last_less_than_a_second(faults: FaultRegistry) -> None:
    """Any positive duration is accepted (a time-scaled site uses sub-second faults); zero is refused."""
    assert faults.set("cp_disconnected", duration=0.5).remaining(faults.clock()) == 0.5
    assert faults.set("cp_disconnected", duration=1).remaining(faults.clock()) == 1.0
    with pytest.raises(FaultError, match="duration"):
        faults.set("cp_disconnected", duration=0)
