"""Locust integration: users that play simulated ConfigMgr clients, load shapes, listeners, the web UI tabs, and
``cmg-harness run``.

Names are imported on first use: Locust monkey-patches the process with gevent when it is imported, so importing
``harness.load`` (or ``harness``) must not import it. Only the Locust-facing names (``install``, the users and
shapes) pull Locust in, and only inside a Locust process.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, tuple[str, str]] = {
    "DeviceScheduler": ("harness.load.scheduler", "DeviceScheduler"),
    "FaultTimeline": ("harness.chaos.timeline", "FaultTimeline"),
    "FleetDriver": ("harness.load.driver", "FleetDriver"),
    "LifecycleUser": ("harness.load.users", "LifecycleUser"),
    "LoadOptionError": ("harness.load.context", "LoadOptionError"),
    "LoadOptions": ("harness.load.context", "LoadOptions"),
    "OutcomeTally": ("harness.load.tally", "OutcomeTally"),
    "PlanError": ("harness.load.plans", "PlanError"),
    "RunContext": ("harness.load.context", "RunContext"),
    "RunPlan": ("harness.load.headless", "RunPlan"),
    "SeededFleet": ("harness.load.seeded", "SeededFleet"),
    "SoakLoadShape": ("harness.load.shapes", "SoakLoadShape"),
    "SoakPlan": ("harness.load.plans", "SoakPlan"),
    "SpikeLoadShape": ("harness.load.shapes", "SpikeLoadShape"),
    "SpikePlan": ("harness.load.plans", "SpikePlan"),
    "SteadyStateUser": ("harness.load.users", "SteadyStateUser"),
    "StepLoadShape": ("harness.load.shapes", "StepLoadShape"),
    "StepPlan": ("harness.load.plans", "StepPlan"),
    "VerdictBook": ("harness.chaos.verdictbook", "VerdictBook"),
    "cmgservice_table": ("harness.load.tally", "cmgservice_table"),
    "device_indexes": ("harness.load.scheduler", "device_indexes"),
    "execute_run": ("harness.load.headless", "execute"),
    "install": ("harness.load.listeners", "install"),
    "install_shapes": ("harness.load.shapes", "install"),
    "recovery_report": ("harness.chaos.recovery", "recovery_report"),
}

__all__ = [
    "DeviceScheduler",
    "FaultTimeline",
    "FleetDriver",
    "LifecycleUser",
    "LoadOptionError",
    "LoadOptions",
    "OutcomeTally",
    "PlanError",
    "RunContext",
    "RunPlan",
    "SeededFleet",
    "SoakLoadShape",
    "SoakPlan",
    "SpikeLoadShape",
    "SpikePlan",
    "SteadyStateUser",
    "StepLoadShape",
    "StepPlan",
    "VerdictBook",
    "cmgservice_table",
    "device_indexes",
    "execute_run",
    "install",
    "install_shapes",
    "recovery_report",
]


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'harness.load' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
