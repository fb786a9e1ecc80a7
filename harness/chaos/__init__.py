"""Chaos: fault schedules, the client for the site's fault API, fault windows as the load side sees them, verdicts
(expected versus unexpected outcomes), recovery after each window, and the fault control page.

Nothing here imports Locust; the follower in ``harness.chaos.watch`` imports gevent only when it starts.
"""

from __future__ import annotations

from harness.chaos.faultapi import FaultApiError, FaultClient
from harness.chaos.recovery import RecoveryError, recovery_report
from harness.chaos.schedule import Schedule, ScheduleError, ScheduleRunner, load_schedule, parse_schedule
from harness.chaos.timeline import FaultTimeline, TimelineError
from harness.chaos.verdictbook import VerdictBook
from harness.chaos.verdicts import FaultWindow, Verdict, VerdictSettings, VerdictTally, judge

__all__ = [
    "FaultApiError",
    "FaultClient",
    "FaultTimeline",
    "FaultWindow",
    "RecoveryError",
    "Schedule",
    "ScheduleError",
    "ScheduleRunner",
    "TimelineError",
    "Verdict",
    "VerdictBook",
    "VerdictSettings",
    "VerdictTally",
    "judge",
    "load_schedule",
    "parse_schedule",
    "recovery_report",
]
