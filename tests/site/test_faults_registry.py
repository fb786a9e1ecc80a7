"""Specification of the fault registry: validation, expiry, probability draws, injection counts, listeners."""

from __future__ import annotations

import json
import math
import random
import threading

import pytest
from prometheus_client import CollectorRegistry

from cmg_protocol.clock import FakeClock
from mock_site.faults import (
    CATALOGUE,
    DEFAULT_DURATION,
    MAX_DURATION,
    FaultError,
    FaultEvent,
    FaultRegistry,
    UnknownFault,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def faults(clock: FakeClock) -> FaultRegistry:
    return FaultRegistry(clock, random.Random(1234))


def test_set_fills_in_catalogue_defaults(faults: FaultRegistry, clock: FakeClock) -> None:
    """A fault set by name alone gets the default role, probability 1, default duration and default parameters."""
    fault = faults.set("latency")
    assert (fault.name, fault.role, fault.probability) == ("latency", "cmg", 1.0)
    assert fault.ends_at - fault.started_at == DEFAULT_DURATION
    assert fault.started_at == clock.now
    assert dict(fault.params) == {"mean_ms": 500.0, "jitter_ms": 0.0}


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"name": "no_such_fault"}, "'no_such_fault'"),
        ({"name": "wpj_missing"}, "'wpj_missing'"),
        ({"name": "latency", "role": "router"}, "'router'"),
        ({"name": "latency", "role": "crl"}, "'crl'"),
        ({"name": "latency", "probability": -0.1}, "-0.1"),
        ({"name": "latency", "probability": 1.5}, "1.5"),
        ({"name": "latency", "probability": "half"}, "'half'"),
        ({"name": "latency", "probability": True}, "True"),
        ({"name": "latency", "probability": math.nan}, "nan"),
        ({"name": "latency", "duration": 0}, "got 0"),
        ({"name": "latency", "duration": -5}, "-5"),
        ({"name": "latency", "duration": MAX_DURATION + 1}, "86401"),
        ({"name": "latency", "duration": math.inf}, "inf"),
        ({"name": "latency", "duration": "10"}, "'10'"),
        ({"name": "latency", "params": ["mean_ms"]}, "['mean_ms']"),
        ({"name": "latency", "params": {"mean_ms": -3}}, "-3"),
        ({"name": "latency", "params": {"median_ms": 3}}, "'median_ms'"),
    ],
)
def test_bad_settings_raise_fault_error_naming_the_value(
    faults: FaultRegistry, kwargs: dict[str, object], fragment: str
) -> None:
    """Every kind of bad setting raises FaultError (a ValueError) whose message names the bad value."""
    name = kwargs.pop("name")
    with pytest.raises(FaultError) as error:
        faults.set(name, **kwargs)  # type: ignore[arg-type]
    assert isinstance(error.value, ValueError)
    assert fragment in str(error.value)


def test_bad_setting_keeps_the_fault_already_on(faults: FaultRegistry) -> None:
    """A refused change leaves the fault that was on untouched."""
    before = faults.set("latency", params={"mean_ms": 100})
    with pytest.raises(FaultError):
        faults.set("latency", params={"mean_ms": -1})
    assert faults.active() == [before]


def test_longest_duration_is_accepted(faults: FaultRegistry) -> None:
    """A duration of exactly the maximum (24 h) is allowed."""
    fault = faults.set("reset", duration=MAX_DURATION)
    assert fault.ends_at - fault.started_at == MAX_DURATION


def test_fault_vanishes_when_its_duration_ends(faults: FaultRegistry, clock: FakeClock) -> None:
    """A fault is on until its end and gone from every read from then on."""
    faults.set("reset", duration=10)
    clock.advance(9.9)
    assert faults.trigger("reset", "cmg") is not None
    clock.advance(0.1)
    assert faults.trigger("reset", "cmg") is None
    assert faults.active() == []
    assert faults.snapshot() == []


def test_fault_without_duration_ends_after_the_catalogue_default(faults: FaultRegistry, clock: FakeClock) -> None:
    """No fault lingers: without a duration it ends after the catalogue's default."""
    faults.set("mp_down")
    clock.advance(CATALOGUE["mp_down"].default_duration)
    assert faults.active() == []


def test_setting_again_replaces_the_fault_at_that_role(faults: FaultRegistry) -> None:
    """Setting a fault that is on at the same role replaces it."""
    faults.set("latency", params={"mean_ms": 100})
    faults.set("latency", params={"mean_ms": 200})
    assert [f.params["mean_ms"] for f in faults.active()] == [200.0]


def test_same_fault_can_be_on_at_several_roles(faults: FaultRegistry) -> None:
    """One fault may be on at different roles at the same time, each with its own parameters."""
    faults.set("latency", role="cmg", params={"mean_ms": 100})
    faults.set("latency", role="mp", params={"mean_ms": 300})
    assert [(f.role, f.params["mean_ms"]) for f in faults.active()] == [("cmg", 100.0), ("mp", 300.0)]


def test_active_filters_by_role(faults: FaultRegistry) -> None:
    """active(role) lists only the faults on at that role."""
    faults.set("latency", role="cp")
    faults.set("mp_down")
    assert [f.name for f in faults.active("mp")] == ["mp_down"]


def test_active_refuses_an_unknown_role(faults: FaultRegistry) -> None:
    """active() with a role that does not exist raises naming it."""
    with pytest.raises(FaultError, match="'gateway'"):
        faults.active("gateway")


def test_clear_without_role_clears_every_role(faults: FaultRegistry) -> None:
    """clear(name) switches the fault off at every role and returns what was on."""
    faults.set("latency", role="cmg")
    faults.set("latency", role="mp")
    faults.set("reset")
    cleared = faults.clear("latency")
    assert sorted(f.role for f in cleared) == ["cmg", "mp"]
    assert [f.name for f in faults.active()] == ["reset"]


def test_clear_with_role_clears_only_that_role(faults: FaultRegistry) -> None:
    """clear(name, role) leaves the fault on at other roles."""
    faults.set("latency", role="cmg")
    faults.set("latency", role="mp")
    faults.clear("latency", "cmg")
    assert [f.role for f in faults.active()] == ["mp"]


def test_clear_of_a_fault_that_is_off_returns_nothing(faults: FaultRegistry) -> None:
    """Clearing a fault that is not on changes nothing and returns an empty list."""
    assert faults.clear("latency") == []


def test_clear_refuses_an_unknown_name(faults: FaultRegistry) -> None:
    """Clearing a name not in the catalogue raises UnknownFault naming it."""
    with pytest.raises(UnknownFault, match="'latencyy'"):
        faults.clear("latencyy")


def test_reset_clears_all_and_keeps_injection_totals(faults: FaultRegistry) -> None:
    """reset() switches every fault off; injection totals stay, like counters."""
    faults.set("reset")
    faults.set("mp_down")
    faults.trigger("reset", "cmg")
    assert len(faults.reset()) == 2
    assert faults.active() == []
    assert faults.injections()["reset"] == 1


@pytest.mark.parametrize(("probability", "expected_hits"), [(0.0, 0), (1.0, 200)])
def test_probability_bounds_never_and_always_inject(
    faults: FaultRegistry, probability: float, expected_hits: int
) -> None:
    """Probability 0 never draws the fault and probability 1 always does."""
    faults.set("http_error", probability=probability)
    hits = sum(faults.trigger("http_error", "cmg") is not None for _ in range(200))
    assert hits == expected_hits


def test_half_probability_injects_about_half_the_time(faults: FaultRegistry) -> None:
    """Probability 0.5 over 1000 draws injects within a wide band around 500."""
    faults.set("http_error", probability=0.5)
    hits = sum(faults.trigger("http_error", "cmg") is not None for _ in range(1000))
    assert 400 <= hits <= 600


def test_draws_are_reproducible_with_a_seeded_rng(clock: FakeClock) -> None:
    """Two registries with the same seed draw the same sequence of hits and misses."""

    def draws(seed: int) -> list[bool]:
        faults = FaultRegistry(clock, random.Random(seed))
        faults.set("reset", probability=0.3)
        return [faults.trigger("reset", "cmg") is not None for _ in range(100)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)


def test_trigger_at_another_role_is_a_miss(faults: FaultRegistry) -> None:
    """A fault on at one role is not injected at another."""
    faults.set("latency", role="mp")
    assert faults.trigger("latency", "cmg") is None


@pytest.mark.parametrize(("name", "role", "error"), [("nope", "cmg", UnknownFault), ("latency", "router", FaultError)])
def test_trigger_refuses_unknown_names_and_roles(
    faults: FaultRegistry, name: str, role: str, error: type[Exception]
) -> None:
    """trigger() with a name or role that does not exist raises, catching typos in role apps."""
    with pytest.raises(error, match=repr(name if error is UnknownFault else role)):
        faults.trigger(name, role)


def test_injections_count_only_hits(faults: FaultRegistry) -> None:
    """injections() counts the draws that injected, per fault name, every catalogue name included."""
    faults.set("reset", probability=1.0)
    faults.set("mp_down", probability=0.0)
    for _ in range(3):
        faults.trigger("reset", "cmg")
        faults.trigger("mp_down", "mp")
    counts = faults.injections()
    assert set(counts) == set(CATALOGUE)
    assert (counts["reset"], counts["mp_down"], counts["latency"]) == (3, 0, 0)


def test_get_neither_draws_nor_counts(faults: FaultRegistry) -> None:
    """get() returns the active fault without counting an injection."""
    fault = faults.set("ccm_token_lifetime", params={"seconds": 60})
    assert faults.get("ccm_token_lifetime", "sts") == fault
    assert faults.injections()["ccm_token_lifetime"] == 0


def test_injections_feed_the_prometheus_counter(clock: FakeClock) -> None:
    """Each injection increments cmg_fault_injections_total for its role and fault."""
    metrics = CollectorRegistry()
    faults = FaultRegistry(clock, random.Random(0), metrics)
    faults.set("latency", role="cp")
    for _ in range(3):
        faults.trigger("latency", "cp")
    assert metrics.get_sample_value("cmg_fault_injections_total", {"role": "cp", "fault": "latency"}) == 3.0


def test_snapshot_is_json_ready_with_times_and_injections(faults: FaultRegistry, clock: FakeClock) -> None:
    """snapshot() gives each active fault's settings, times, remaining seconds and injections since it was set."""
    faults.set("http_error", role="mp", probability=0.25, duration=60, params={"status": 502})
    faults.set("reset")
    faults.trigger("reset", "cmg")
    clock.advance(15)
    snapshot = json.loads(json.dumps(faults.snapshot()))
    assert snapshot[0] == {
        "name": "http_error",
        "role": "mp",
        "probability": 0.25,
        "params": {"status": 502, "status_text": None},
        "started_at": clock.now - 15,
        "ends_at": clock.now + 45,
        "remaining_s": 45.0,
        "injections": 0,
    }
    assert (snapshot[1]["name"], snapshot[1]["injections"]) == ("reset", 1)


def test_setting_again_restarts_the_per_fault_count(faults: FaultRegistry) -> None:
    """A replaced fault starts with no injections of its own, while the total keeps counting."""
    faults.set("reset")
    faults.trigger("reset", "cmg")
    faults.set("reset")
    assert faults.snapshot()[0]["injections"] == 0
    assert faults.injections()["reset"] == 1


def test_concurrent_triggers_are_all_counted(faults: FaultRegistry) -> None:
    """Triggers from several threads at once lose no count."""
    faults.set("reset")

    def hammer() -> None:
        for _ in range(2000):
            faults.trigger("reset", "cmg")

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert faults.injections()["reset"] == 8000


def test_listeners_hear_set_clear_and_reset(faults: FaultRegistry) -> None:
    """Subscribers get one event per change, saying whether the fault is now on."""
    events: list[FaultEvent] = []
    faults.subscribe(events.append)
    faults.set("cmg_cert_revoked")
    faults.clear("cmg_cert_revoked")
    faults.set("mp_down")
    faults.reset()
    assert [(e.action, e.fault.name, e.active) for e in events] == [
        ("set", "cmg_cert_revoked", True),
        ("clear", "cmg_cert_revoked", False),
        ("set", "mp_down", True),
        ("reset", "mp_down", False),
    ]


def test_listeners_hear_expiry_on_the_next_read(faults: FaultRegistry, clock: FakeClock) -> None:
    """An expired fault is reported to listeners as an expire event when the registry next looks."""
    events: list[FaultEvent] = []
    faults.subscribe(events.append)
    faults.set("cmg_cert_revoked", duration=5)
    clock.advance(5)
    assert [f.name for f in faults.purge()] == ["cmg_cert_revoked"]
    assert [(e.action, e.active) for e in events] == [("set", True), ("expire", False)]


def test_unsubscribed_listener_hears_nothing_more(faults: FaultRegistry) -> None:
    """The function subscribe() returns stops the callbacks."""
    events: list[FaultEvent] = []
    unsubscribe = faults.subscribe(events.append)
    unsubscribe()
    faults.set("reset")
    assert events == []


def test_failing_listener_neither_blocks_others_nor_the_change(faults: FaultRegistry) -> None:
    """A listener that raises is logged; the change stands and later listeners still run."""
    heard: list[str] = []

    def broken(event: FaultEvent) -> None:
        raise RuntimeError("listener bug")

    faults.subscribe(broken)
    faults.subscribe(lambda event: heard.append(event.fault.name))
    faults.set("reset")
    assert heard == ["reset"]
    assert [f.name for f in faults.active()] == ["reset"]


def test_listener_may_read_the_registry(faults: FaultRegistry) -> None:
    """Listeners run outside the registry's lock, so they can read it without deadlock."""
    seen: list[list[str]] = []
    faults.subscribe(lambda event: seen.append([f.name for f in faults.active()]))
    faults.set("reset")
    assert seen == [["reset"]]


def test_a_worker_registry_follows_the_state_file_the_control_registry_publishes(tmp_path, clock: FakeClock) -> None:
    """Set, change and clear on the control process's registry reach a worker's registry through faults.json; an
    unchanged fault keeps the worker's injection count, and a certificate listener hears set and clear."""
    from mock_site.faults.state_file import FaultFollower, FaultStateFile

    control = FaultRegistry(clock, random.Random(1))
    worker = FaultRegistry(clock, random.Random(2))
    heard: list[tuple[str, str]] = []
    worker.subscribe(lambda event: heard.append((event.action, event.fault.name)))
    FaultStateFile(tmp_path / "faults.json").follow_from(control)
    follower = FaultFollower(FaultStateFile(tmp_path / "faults.json"), worker)
    assert follower.poll() and worker.active() == []
    control.set("latency", params={"mean_ms": 50}, duration=60)
    assert follower.poll() and not follower.poll()  # one change, one new version
    assert worker.active() == control.active()
    assert worker.trigger("latency", "cmg") is not None
    control.set("http_error", duration=30)
    assert follower.poll()
    assert worker.describe(worker.get("latency", "cmg"))["injections"] == 1  # unchanged: its count kept
    control.clear("latency")
    assert follower.poll() and [fault.name for fault in worker.active()] == ["http_error"]
    assert heard == [("set", "latency"), ("set", "http_error"), ("clear", "latency")]


def test_injections_counted_by_workers_show_in_the_control_registry(tmp_path, clock: FakeClock) -> None:
    """Workers' injection files add to the control registry's totals and to the active fault they were made under;
    counts made under an earlier instance of the same fault do not follow it to the next one."""
    from mock_site.faults.state_file import FaultFollower, FaultStateFile, injections_in, write_injections

    control = FaultRegistry(clock, random.Random(1))
    FaultStateFile(tmp_path / "faults.json").follow_from(control)
    control.count_elsewhere(lambda: injections_in(tmp_path))
    control.set("reset", duration=60)
    for pid in (1, 2):
        worker = FaultRegistry(clock, random.Random(pid))
        FaultFollower(FaultStateFile(tmp_path / "faults.json"), worker).poll()
        for _ in range(pid):
            assert worker.trigger("reset", "cmg") is not None
        write_injections(worker, tmp_path / f"injections-{pid}.json")
    assert control.injections()["reset"] == 3
    assert control.snapshot()[0]["injections"] == 3
    clock.advance(1)
    control.set("reset", duration=60)  # a new instance: the old counts stay in the totals only
    assert control.snapshot()[0]["injections"] == 0 and control.injections()["reset"] == 3
