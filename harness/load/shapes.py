"""Locust load shapes for capacity (step), soak and spike runs; the arithmetic lives in ``harness.plans.users``.

Each shape reads its plan from the run's options on every tick, so a value edited in the web UI's start form
applies to the next run. An unusable value stops the run with the option named in the log.
"""

from __future__ import annotations

import logging
from typing import Any
from weakref import WeakSet

from locust import LoadTestShape

from harness.load.progress import StepStatus, step_run_status
from harness.plans.users import PlanError, SoakPlan, SpikePlan, StepPlan, Tick

log = logging.getLogger("harness.load")
# The plans' defaults are the options' defaults.
_STEP, _SOAK, _SPIKE = StepPlan(), SoakPlan(), SpikePlan()
#: The events objects install() has registered the options on (a locustfile may be loaded twice).
_installed: WeakSet[Any] = WeakSet()


def add_arguments(parser: Any) -> None:
    """The options of the step, soak and spike shapes (they show in the web UI's start form)."""
    group = parser  # not an argument group: Locust shows only the parser's own arguments in the web UI
    group.add_argument("--step-users", type=int, default=_STEP.step_users, help="step shape: users added per step")
    group.add_argument("--steps", type=int, default=_STEP.steps, help="step shape: number of steps")
    group.add_argument("--step-hold", type=float, default=_STEP.hold,
                       help="step shape: seconds each step is held (long enough for polls and renewals to settle)")
    group.add_argument("--step-start-users", type=int, default=_STEP.start_users,
                       help="step shape: users before the first step")
    group.add_argument("--soak-users", type=int, default=_SOAK.users, help="soak shape: users held")
    group.add_argument("--soak-duration", type=float, default=_SOAK.duration, help="soak shape: seconds in all")
    group.add_argument("--soak-ramp", type=float, default=_SOAK.ramp, help="soak shape: seconds to reach the users")
    group.add_argument("--spike-base-users", type=int, default=_SPIKE.base_users, help="spike shape: baseline users")
    group.add_argument("--spike-peak-users", type=int, default=_SPIKE.peak_users, help="spike shape: users at the peak")
    group.add_argument("--spike-at", type=float, default=_SPIKE.at, help="spike shape: seconds before the spike")
    group.add_argument("--spike-length", type=float, default=_SPIKE.length, help="spike shape: seconds it lasts")
    group.add_argument("--spike-duration", type=float, default=_SPIKE.duration, help="spike shape: seconds in all")


def install(events: Any) -> None:
    """Register the shape options on Locust's ``events`` (locustfiles that use a shape call this)."""
    if events not in _installed:
        _installed.add(events)
        events.init_command_line_parser.add_listener(add_arguments)


class _PlannedShape(LoadTestShape):
    abstract = True

    def plan(self, options: Any) -> Any:
        raise NotImplementedError

    def tick(self) -> Tick | None:
        options = self.runner.environment.parsed_options if self.runner is not None else None
        try:
            plan = self.plan(options)
        except PlanError as error:
            log.error("cmg-harness: %s; stopping", error)
            return None
        return plan.tick(self.get_run_time())


class StepLoadShape(_PlannedShape):
    """Capacity runs: ``--step-users`` more users every ``--step-hold`` seconds, ``--steps`` times, then stop."""

    def plan(self, options: Any) -> StepPlan:
        return StepPlan(step_users=_option(options, "step_users", _STEP.step_users),
                        steps=_option(options, "steps", _STEP.steps),
                        hold=_option(options, "step_hold", _STEP.hold),
                        start_users=_option(options, "step_start_users", _STEP.start_users))

    def status(self) -> StepStatus | None:
        """The step now (n of N, its users, settling or measuring) for the run's progress line."""
        plan = self.plan(self.runner.environment.parsed_options if self.runner is not None else None)
        run_time = self.get_run_time()
        index = plan.step_index(run_time)
        return step_run_status(index, plan.steps, plan.users_at_step(index) if index is not None else 0, plan.hold,
                               run_time)


class SoakLoadShape(_PlannedShape):
    """Soak runs: ``--soak-users`` users, reached over ``--soak-ramp`` s and held until ``--soak-duration`` s."""

    def plan(self, options: Any) -> SoakPlan:
        return SoakPlan(users=_option(options, "soak_users", _SOAK.users),
                        duration=_option(options, "soak_duration", _SOAK.duration),
                        ramp=_option(options, "soak_ramp", _SOAK.ramp))


class SpikeLoadShape(_PlannedShape):
    """Spike runs: ``--spike-base-users``, then ``--spike-peak-users`` from ``--spike-at`` s for ``--spike-length`` s."""

    def plan(self, options: Any) -> SpikePlan:
        return SpikePlan(base_users=_option(options, "spike_base_users", _SPIKE.base_users),
                         peak_users=_option(options, "spike_peak_users", _SPIKE.peak_users),
                         at=_option(options, "spike_at", _SPIKE.at),
                         length=_option(options, "spike_length", _SPIKE.length),
                         duration=_option(options, "spike_duration", _SPIKE.duration))


def _option(options: Any, name: str, default: Any) -> Any:
    return default if options is None else getattr(options, name, default)
