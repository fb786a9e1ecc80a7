"""Which simulated device acts next: a heap of devices by the time each next needs the network (pure, no Locust).

One Locust user drives many devices, as real clients hold no connection between policy polls: the user sleeps until
the earliest device is due, runs that device until it waits again, and puts it back. Device numbers are handed out so
that no two users, and no two Locust workers, ever play the same device.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Generic, TypeVar

T = TypeVar("T")


class SchedulerError(ValueError):
    """A device range or due time is unusable; the message names the bad value."""


class DeviceScheduler(Generic[T]):
    """Devices ordered by due time (epoch seconds); ties keep the order they were added in."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, device: T, due: float) -> None:
        """Schedule ``device`` to act at ``due``."""
        if math.isnan(due):  # NaN would break the heap order silently
            raise SchedulerError(f"due time must be a number, got {due!r}")
        heapq.heappush(self._heap, (due, next(self._order), device))

    def next_due(self) -> float | None:
        """When the earliest device is due, or None when no device is scheduled."""
        return self._heap[0][0] if self._heap else None

    def count_due(self, now: float) -> int:
        """How many devices are due at ``now`` (scheduled at or before it)."""
        return sum(1 for due, _, _ in self._heap if due <= now)

    def pop_due(self, now: float) -> tuple[float, T] | None:
        """Take the earliest device if it is due at ``now`` (its due time and the device), else None."""
        if not self._heap or self._heap[0][0] > now:
            return None
        due, _, device = heapq.heappop(self._heap)
        return due, device


def device_indexes(*, worker_index: int, worker_count: int, user_number: int, devices_per_user: int) -> range:
    """The fleet indexes one user plays: users of all workers interleave, so a run of U users uses 0..U*D-1.

    ``user_number`` counts the users of one worker process from 0; ``worker_index`` is Locust's worker index (0 in a
    single process) and ``worker_count`` how many workers share the run.
    """
    for name, value, low in (("worker count", worker_count, 1), ("devices per user", devices_per_user, 1),
                             ("worker index", worker_index, 0), ("user number", user_number, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise SchedulerError(f"{name} must be a whole number >= {low}, got {value!r}")
    if worker_index >= worker_count:
        raise SchedulerError(f"worker index must be below the worker count ({worker_count}), got {worker_index}")
    slot = user_number * worker_count + worker_index
    return range(slot * devices_per_user, (slot + 1) * devices_per_user)
