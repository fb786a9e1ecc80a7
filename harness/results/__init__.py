"""A run's results directory and what it holds: the one owner of its file names (:class:`ResultsDir`), the plan a run
was asked to carry out (:class:`RunPlan`, kept as ``run.json``), and Locust's statistics as the gates and the capacity
report read them.

Nothing here imports Locust or the site; the Locust side writes some of these files, everyone else reads them here.
"""

from __future__ import annotations

from harness.results.errors import ResultsError
from harness.results.layout import FAULT_WINDOWS_KEY, ResultsDir, fault_windows, or_none
from harness.results.plan import RUN_PLAN_SCHEMA, PlanError, RunPlan
from harness.results.stats import HistoryPoint, StatsEntry, merge_times, parse_history_lines, percentile

__all__ = [
    "FAULT_WINDOWS_KEY",
    "RUN_PLAN_SCHEMA",
    "HistoryPoint",
    "PlanError",
    "ResultsDir",
    "ResultsError",
    "RunPlan",
    "StatsEntry",
    "fault_windows",
    "merge_times",
    "or_none",
    "parse_history_lines",
    "percentile",
]
