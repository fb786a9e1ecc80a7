"""cmg-harness: the simulated ConfigMgr client, chaos schedules and verdicts, and the tooling around Locust runs.

Importing ``harness`` imports nothing else: names load on first use. Locust (and its gevent monkey-patching) belongs to
Locust processes only; the Locust integration lives in ``harness.load``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "FaultApiError": "harness.chaos",
    "FaultClient": "harness.chaos",
    "FaultWindow": "harness.chaos",
    "Schedule": "harness.chaos",
    "ScheduleError": "harness.chaos",
    "ScheduleRunner": "harness.chaos",
    "Verdict": "harness.chaos",
    "VerdictSettings": "harness.chaos",
    "VerdictTally": "harness.chaos",
    "judge": "harness.chaos",
    "load_schedule": "harness.chaos",
    "parse_schedule": "harness.chaos",
}

__all__ = [
    "FaultApiError",
    "FaultClient",
    "FaultWindow",
    "Schedule",
    "ScheduleError",
    "ScheduleRunner",
    "Verdict",
    "VerdictSettings",
    "VerdictTally",
    "judge",
    "load_schedule",
    "parse_schedule",
]


def __getattr__(name: str) -> Any:
    try:
        module_name = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'harness' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
