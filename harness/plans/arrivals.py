"""Open-model plans: when each device starts, from an arrival rate or from a fleet's size and poll interval.

Real ConfigMgr clients act on their own schedules whatever the latency of others, so an open-model run fixes *when*
work arrives and lets the system under test show how long it takes. Two shapes:

- an :class:`ArrivalPlan` (k6's constant- and ramping-arrival-rate): new devices start their life at a rate that is
  constant or ramps linearly from one stage's rate to the next; device ``n`` (0-based) starts at the moment the
  cumulative number of arrivals reaches ``n``;
- a :class:`FleetPlan`: ``size`` devices that each act once per ``poll_interval_s``, their phases spread evenly over
  one interval (with a seeded jitter), so the request rate follows from the fleet: 100,000 devices polling hourly
  make 27.8 policy cycles per second.

Devices are dealt to Locust users and workers by ``n % slots``, so every slot sees the same rate shape.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from harness.plans.search import SearchSettings

#: Far more arrivals than one run can start: a plan asking for more is refused rather than silently truncated.
MAX_ARRIVALS = 10_000_000_000


class ArrivalError(ValueError):
    """An arrival or fleet plan is unusable; the message names the bad value."""


@dataclass(frozen=True)
class ArrivalStage:
    """Ramp to ``rate_per_s`` new devices per second over ``duration_s`` (a constant stage starts at its rate)."""

    rate_per_s: float
    duration_s: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_per_s) and self.rate_per_s >= 0):
            raise ArrivalError(f"arrival rate must be a number >= 0 per second, got {self.rate_per_s!r}")
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ArrivalError(f"stage duration must be > 0 seconds, got {self.duration_s!r}")


@dataclass(frozen=True)
class ArrivalPlan:
    """Arrival stages after an initial rate: each stage ramps linearly from the rate before it to its own."""

    stages: tuple[ArrivalStage, ...]
    start_rate_per_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.stages:
            raise ArrivalError("an arrival plan needs at least one stage")
        if not (math.isfinite(self.start_rate_per_s) and self.start_rate_per_s >= 0):
            raise ArrivalError(f"start rate must be a number >= 0 per second, got {self.start_rate_per_s!r}")
        if self.total() > MAX_ARRIVALS:
            raise ArrivalError(f"the plan starts {self.total():,} devices; at most {MAX_ARRIVALS:,} per run")

    @classmethod
    def constant(cls, rate_per_s: float, duration_s: float) -> ArrivalPlan:
        """``rate_per_s`` new devices per second for ``duration_s``."""
        return cls((ArrivalStage(rate_per_s, duration_s),), start_rate_per_s=rate_per_s)

    @property
    def duration_s(self) -> float:
        """How long the plan lasts."""
        return sum(stage.duration_s for stage in self.stages)

    def _segments(self) -> Iterator[tuple[float, float, float, float, float]]:
        """(start offset, duration, rate at its start, rate at its end, arrivals before it) per stage."""
        offset, rate, before = 0.0, self.start_rate_per_s, 0.0
        for stage in self.stages:
            yield offset, stage.duration_s, rate, stage.rate_per_s, before
            before += (rate + stage.rate_per_s) / 2.0 * stage.duration_s
            offset += stage.duration_s
            rate = stage.rate_per_s

    def arrivals_by(self, seconds: float) -> float:
        """Cumulative arrivals (a real number) from the plan's start up to ``seconds`` into it."""
        total = 0.0
        for offset, length, r0, r1, before in self._segments():
            if seconds <= offset:
                return total
            tau = min(seconds - offset, length)
            total = before + r0 * tau + (r1 - r0) * tau * tau / (2.0 * length)
        return total

    def total(self) -> int:
        """How many devices the whole plan starts (device 0 starts at the first instant the rate allows)."""
        arrivals = self.arrivals_by(self.duration_s)
        # Device n starts when the cumulative count reaches n, so devices 0..floor(A) fit (a tiny epsilon keeps
        # 10/s for 1 s at 10 devices, not 11).
        return max(0, math.ceil(arrivals - 1e-9))

    def rate_at(self, seconds: float) -> float:
        """New devices per second ``seconds`` into the plan (0 after its end)."""
        for offset, length, r0, r1, _ in self._segments():
            if offset <= seconds < offset + length:
                return r0 + (r1 - r0) * (seconds - offset) / length
        return 0.0

    def start_of(self, n: int) -> float:
        """When device ``n`` (0-based) starts, in seconds from the plan's start."""
        if n < 0 or n >= self.total():
            raise ArrivalError(f"device {n} is outside the plan's {self.total()} arrivals")
        for offset, length, r0, r1, before in self._segments():
            if n >= before + (r0 + r1) / 2.0 * length:
                continue  # it arrives in a later stage
            need = n - before
            if need <= 0:
                return offset
            slope = (r1 - r0) / length
            # The smallest t >= 0 with r0*t + slope*t^2/2 = need (the quadratic's root in its cancellation-free form).
            return offset + 2.0 * need / (r0 + math.sqrt(max(0.0, r0 * r0 + 2.0 * slope * need)))
        return self.duration_s

    def starts(self, slot: int = 0, slots: int = 1) -> Iterator[tuple[int, float]]:
        """``(n, start offset)`` of the devices dealt to ``slot`` of ``slots`` (``n % slots == slot``)."""
        _check_slot(slot, slots)
        for n in range(slot, self.total(), slots):
            yield n, self.start_of(n)


@dataclass(frozen=True)
class FleetPlan:
    """``size`` devices acting once per ``poll_interval_s`` each, phases spread evenly with a seeded jitter."""

    size: int
    poll_interval_s: float
    seed: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 1 <= self.size <= MAX_ARRIVALS:
            raise ArrivalError(f"fleet size must be a whole number from 1 to {MAX_ARRIVALS:,}, got {self.size!r}")
        if not (math.isfinite(self.poll_interval_s) and self.poll_interval_s > 0):
            raise ArrivalError(f"poll interval must be > 0 seconds, got {self.poll_interval_s!r}")

    @property
    def rate_per_s(self) -> float:
        """The fleet's steady rate of policy cycles per second."""
        return self.size / self.poll_interval_s

    def start_of(self, n: int) -> float:
        """Device ``n``'s first action, within the first poll interval."""
        if not 0 <= n < self.size:
            raise ArrivalError(f"device {n} is outside the fleet of {self.size}")
        jitter = random.Random(f"{self.seed}/{n}").random()
        return (n + jitter) * self.poll_interval_s / self.size

    def starts(self, slot: int = 0, slots: int = 1) -> Iterator[tuple[int, float]]:
        """``(n, first action offset)`` of the devices dealt to ``slot`` of ``slots``."""
        _check_slot(slot, slots)
        for n in range(slot, self.size, slots):
            yield n, self.start_of(n)


def _check_slot(slot: int, slots: int) -> None:
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise ArrivalError(f"slots must be a whole number >= 1, got {slots!r}")
    if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < slots:
        raise ArrivalError(f"slot must be a whole number from 0 to {slots - 1}, got {slot!r}")


#: Outstanding requests per Locust process before new ones wait: high enough not to matter on a healthy site.
DEFAULT_MAX_IN_FLIGHT = 256


@dataclass(frozen=True)
class OpenModel:
    """What an open-model run asks for: new devices at a rate (``arrivals``) or a steady fleet (``fleet``), how many
    requests a process may have outstanding before later ones wait (and show it as lateness), and how many policy
    cycles each device runs (``None``: until the run ends)."""

    arrivals: ArrivalPlan | None = None
    fleet: FleetPlan | None = None
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    polls_per_device: int | None = None
    #: A capacity search: the arrival rate is set step by step by the search (``harness.plans.search``).
    search: SearchSettings | None = None

    def __post_init__(self) -> None:
        if sum(kind is not None for kind in (self.arrivals, self.fleet, self.search)) != 1:
            raise ArrivalError("an open model needs exactly one of an arrival rate (or ramp), a fleet size and a "
                               "capacity search")
        if isinstance(self.max_in_flight, bool) or not isinstance(self.max_in_flight, int) or self.max_in_flight < 1:
            raise ArrivalError(f"max in flight must be a whole number >= 1, got {self.max_in_flight!r}")
        if self.polls_per_device is not None and (isinstance(self.polls_per_device, bool)
                                                  or not isinstance(self.polls_per_device, int)
                                                  or self.polls_per_device < 1):
            raise ArrivalError(f"polls per device must be a whole number >= 1, got {self.polls_per_device!r}")

    def starts(self, slot: int, slots: int) -> Iterator[tuple[int, float]]:
        """The devices of ``slot`` of ``slots`` with their start offsets (seconds after the test started)."""
        if self.search is not None:
            raise ArrivalError("a capacity search sets its arrival rate as it goes: no fixed start times")
        plan: ArrivalPlan | FleetPlan = self.arrivals if self.arrivals is not None else self.fleet  # type: ignore[assignment]
        return plan.starts(slot, slots)

    def describe(self) -> str:
        """One line for the run header: what arrives, at what rate."""
        if self.search is not None:
            s = self.search
            return (f"open model, capacity search: new devices from {s.start_rate_per_s:g}/s, x{s.growth:g} per step "
                    f"up to {s.max_rate_per_s:g}/s, then bisection; a step fails at corrected p99 > "
                    f"{s.slo_corrected_p99_ms:g} ms, achieved < {s.min_achieved_ratio:.0%} of intended or errors > "
                    f"{s.max_error_ratio:.0%}; at most {self.max_in_flight} requests in flight per process")
        if self.fleet is not None:
            return (f"open model: a fleet of {self.fleet.size:,} devices, each acting every "
                    f"{self.fleet.poll_interval_s:g} s ({self.fleet.rate_per_s:.3g} policy cycles/s); "
                    f"at most {self.max_in_flight} requests in flight per process")
        assert self.arrivals is not None
        stages = ", ".join(f"{s.rate_per_s:g}/s over {s.duration_s:g} s" for s in self.arrivals.stages)
        return (f"open model: new devices arriving at {stages}; at most {self.max_in_flight} requests in flight "
                "per process")
