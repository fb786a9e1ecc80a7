"""The device scheduler and the device numbers each user plays."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.fleet.scheduler import DeviceScheduler, SchedulerError, device_indexes


def test_scheduler_hands_out_the_earliest_due_device_first() -> None:
    """Devices come out in due-time order, whatever order they went in."""
    scheduler: DeviceScheduler[str] = DeviceScheduler()
    for name, due in (("c", 30.0), ("a", 10.0), ("b", 20.0)):
        scheduler.add(name, due)
    assert [scheduler.pop_due(100.0) for _ in range(3)] == [(10.0, "a"), (20.0, "b"), (30.0, "c")]


def test_scheduler_keeps_a_device_that_is_not_due_yet() -> None:
    """Before its due time a device stays scheduled and next_due says when it will be due."""
    scheduler: DeviceScheduler[str] = DeviceScheduler()
    scheduler.add("a", 10.0)
    assert scheduler.pop_due(9.99) is None
    assert scheduler.next_due() == 10.0
    assert len(scheduler) == 1


def test_scheduler_keeps_insertion_order_for_equal_due_times() -> None:
    """Devices due at the same moment run in the order they were added (no starvation by identity)."""
    scheduler: DeviceScheduler[int] = DeviceScheduler()
    for number in range(5):
        scheduler.add(number, 1.0)
    assert [scheduler.pop_due(1.0)[1] for _ in range(5)] == [0, 1, 2, 3, 4]  # type: ignore[index]


def test_an_empty_scheduler_has_no_next_due_time() -> None:
    """With no device left there is nothing to wait for."""
    scheduler: DeviceScheduler[int] = DeviceScheduler()
    assert scheduler.next_due() is None
    assert scheduler.pop_due(1e12) is None


def test_scheduler_refuses_a_nan_due_time() -> None:
    """NaN would silently break the heap order, so it is refused."""
    with pytest.raises(SchedulerError, match="nan"):
        DeviceScheduler[str]().add("a", float("nan"))


@given(workers=st.integers(1, 6), users=st.integers(1, 12), devices=st.integers(1, 9))
def test_device_ranges_of_all_users_of_all_workers_never_overlap(workers: int, users: int, devices: int) -> None:
    """No two users anywhere in a distributed run play the same device."""
    seen: set[int] = set()
    for worker, user in itertools.product(range(workers), range(users)):
        indexes = set(device_indexes(worker_index=worker, worker_count=workers, user_number=user,
                                     devices_per_user=devices))
        assert len(indexes) == devices
        assert not seen & indexes
        seen |= indexes


@given(workers=st.integers(1, 6), per_worker=st.integers(1, 10), devices=st.integers(1, 9))
def test_evenly_spread_users_play_a_compact_fleet(workers: int, per_worker: int, devices: int) -> None:
    """U users spread evenly over the workers play devices 0..U*D-1, so a seeded fleet of U*D covers them all."""
    played = set()
    for worker, user in itertools.product(range(workers), range(per_worker)):
        played |= set(device_indexes(worker_index=worker, worker_count=workers, user_number=user,
                                     devices_per_user=devices))
    assert played == set(range(workers * per_worker * devices))


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"worker_index": 2, "worker_count": 2}, "below the worker count"),
    ({"worker_count": 0}, "worker count"),
    ({"devices_per_user": 0}, "devices per user"),
    ({"user_number": -1}, "user number"),
    ({"worker_index": True}, "worker index"),
])
def test_device_indexes_refuse_bad_numbers(kwargs: dict[str, object], named: str) -> None:
    """Unusable worker or user numbers raise SchedulerError naming them."""
    arguments: dict[str, object] = {"worker_index": 0, "worker_count": 1, "user_number": 0, "devices_per_user": 1}
    arguments.update(kwargs)
    with pytest.raises(SchedulerError, match=named):
        device_indexes(**arguments)  # type: ignore[arg-type]
