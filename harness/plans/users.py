"""Load plans: how many Locust users to run at each moment of a step, soak or spike run (pure, no Locust import).

The Locust ``LoadTestShape`` classes in ``harness.load.shapes`` only ask a plan for ``tick(run_time)``; keeping the
arithmetic here lets it be tested without starting Locust (which monkey-patches the process with gevent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class PlanError(ValueError):
    """A load plan parameter is unusable; the message names it and its value."""


def _positive(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise PlanError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def _whole(name: str, value: int, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise PlanError(f"{name} must be a whole number >= {low}, got {value!r}")
    return value


Tick = tuple[int, float]
"""What a plan asks Locust for: (user count, spawn rate in users per second)."""


@dataclass(frozen=True, slots=True)
class StepPlan:
    """Steps of users for a capacity run: ``start_users``, then ``step_users`` more per step, each held ``hold`` s."""

    step_users: int = 10
    steps: int = 5
    hold: float = 60.0
    start_users: int = 0
    spawn_rate: float = 0.0  # 0: reach each step within ~1 s (one step's users per second)

    def __post_init__(self) -> None:
        _whole("step users", self.step_users, 1)
        _whole("steps", self.steps, 1)
        _positive("step hold (s)", self.hold)
        _whole("start users", self.start_users, 0)
        if self.spawn_rate != 0.0:
            _positive("step spawn rate", self.spawn_rate)

    @property
    def duration(self) -> float:
        """Seconds from the first step's start to the end of the last one."""
        return self.steps * self.hold

    def step_index(self, run_time: float) -> int | None:
        """Which step (0-based) runs at ``run_time``, or None once every step has been held."""
        if run_time < 0:
            raise PlanError(f"run time must be >= 0, got {run_time!r}")
        index = int(run_time // self.hold)
        return index if index < self.steps else None

    def users_at_step(self, index: int) -> int:
        """The user count of step ``index``."""
        return self.start_users + (index + 1) * self.step_users

    def tick(self, run_time: float) -> Tick | None:
        """Users and spawn rate at ``run_time``; None ends the run."""
        index = self.step_index(run_time)
        if index is None:
            return None
        return self.users_at_step(index), self.spawn_rate or float(self.step_users)


@dataclass(frozen=True, slots=True)
class SoakPlan:
    """A long run at one load: ramp to ``users`` over ``ramp`` s, then hold them until ``duration`` s have passed."""

    users: int = 50
    duration: float = 3600.0
    ramp: float = 30.0

    def __post_init__(self) -> None:
        _whole("soak users", self.users, 1)
        _positive("soak duration (s)", self.duration)
        _positive("soak ramp (s)", self.ramp)
        if self.ramp >= self.duration:
            raise PlanError(f"soak ramp ({self.ramp:g} s) must be shorter than the soak duration ({self.duration:g} s)")

    def tick(self, run_time: float) -> Tick | None:
        """Users and spawn rate at ``run_time``; None ends the run."""
        if run_time >= self.duration:
            return None
        return self.users, self.users / self.ramp


@dataclass(frozen=True, slots=True)
class SpikePlan:
    """A baseline load with one sudden spike: ``peak_users`` from ``at`` s for ``length`` s, then back to baseline."""

    base_users: int = 10
    peak_users: int = 100
    at: float = 60.0
    length: float = 30.0
    duration: float = 180.0

    def __post_init__(self) -> None:
        _whole("spike base users", self.base_users, 0)
        _whole("spike peak users", self.peak_users, 1)
        if self.peak_users <= self.base_users:
            raise PlanError(f"spike peak users ({self.peak_users}) must exceed the base users ({self.base_users})")
        if not (isinstance(self.at, (int, float)) and math.isfinite(self.at) and self.at >= 0):
            raise PlanError(f"spike start (s) must be a number >= 0, got {self.at!r}")
        _positive("spike length (s)", self.length)
        _positive("spike run duration (s)", self.duration)
        if self.at + self.length > self.duration:
            raise PlanError(f"the spike ({self.at:g} s + {self.length:g} s) must end within the run "
                            f"({self.duration:g} s)")

    def tick(self, run_time: float) -> Tick | None:
        """Users and spawn rate at ``run_time``; None ends the run."""
        if run_time >= self.duration:
            return None
        # A spike arrives all at once: spawn the whole difference within one second, both ways.
        rate = float(self.peak_users - self.base_users)
        if self.at <= run_time < self.at + self.length:
            return self.peak_users, rate
        return self.base_users, max(rate, float(self.base_users))
