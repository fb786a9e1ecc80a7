"""cmg-harness: the simulated ConfigMgr client, chaos schedules and verdicts, and the tooling around Locust runs.

Importing ``harness`` never imports Locust (its gevent monkey-patching belongs to Locust processes only); the Locust
integration lives in ``harness.load``.
"""

from __future__ import annotations

from harness.chaos import FaultApiError, FaultClient
from harness.schedule import Schedule, ScheduleError, ScheduleRunner, load_schedule, parse_schedule
from harness.verdicts import FaultWindow, Verdict, VerdictSettings, VerdictTally, judge

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
