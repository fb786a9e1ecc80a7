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
    "LifecycleUser": ("harness.load.users", "LifecycleUser"),
    "LoadOptionError": ("harness.load.context", "LoadOptionError"),
    "LoadOptions": ("harness.load.context", "LoadOptions"),
    "RunContext": ("harness.load.context", "RunContext"),
    "RunPlan": ("harness.load.headless", "RunPlan"),
    "SoakLoadShape": ("harness.load.shapes", "SoakLoadShape"),
    "SpikeLoadShape": ("harness.load.shapes", "SpikeLoadShape"),
    "SteadyStateUser": ("harness.load.users", "SteadyStateUser"),
    "StepLoadShape": ("harness.load.shapes", "StepLoadShape"),
    "execute_run": ("harness.load.headless", "execute"),
    "install": ("harness.load.listeners", "install"),
    "install_shapes": ("harness.load.shapes", "install"),
}

__all__ = [
    "LifecycleUser",
    "LoadOptionError",
    "LoadOptions",
    "RunContext",
    "RunPlan",
    "SoakLoadShape",
    "SpikeLoadShape",
    "SteadyStateUser",
    "StepLoadShape",
    "execute_run",
    "install",
    "install_shapes",
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
