"""The reports of a run, one family of self-contained HTML pages on one template base.

The run report (``write_run_report(results_dir)`` writes ``RESULTS_DIR/report.html``; every ``cmg-harness run`` ends
with it): charts over time with the fault windows, the CMGService table, lifecycles, verdicts, recovery, gates, the
capacity answer and the plan. The capacity-planning report of a step-load run: per-step statistics, the saturation
knee, a Universal Scalability Law fit and a sizing recommendation (``write_report(results_dir)`` writes
``RESULTS_DIR/capacity-report.html``). ``cmg-harness report`` writes both.
"""

from __future__ import annotations

from harness.report.capacity import CapacityReport, TimePoint, build_report, summary_lines
from harness.report.errors import ReportError
from harness.report.fit import FitError, UslFit, fit_usl
from harness.report.generator import Shortfall, cpu_warnings, throughput_shortfalls
from harness.report.history import HistoryError, StatsHistory, parse_history, read_history
from harness.report.html import save_report, write_report
from harness.report.knee import Knee, find_knee
from harness.report.recommend import (
    ObservedCapacity,
    Sizing,
    SizingError,
    observed_capacity,
    recommend,
    requests_per_client_hour,
    size_fleet,
)
from harness.report.results import RunFacts, RunResults, load_results
from harness.report.run_html import render_run, write_run_report
from harness.report.run_report import RunReport, RunReportError, build_run_report
from harness.report.steps import StepError, StepStats, split_steps

__all__ = [
    "CapacityReport",
    "FitError",
    "HistoryError",
    "Knee",
    "ObservedCapacity",
    "ReportError",
    "RunFacts",
    "RunReport",
    "RunReportError",
    "RunResults",
    "Shortfall",
    "Sizing",
    "SizingError",
    "StatsHistory",
    "StepError",
    "StepStats",
    "TimePoint",
    "UslFit",
    "build_report",
    "build_run_report",
    "cpu_warnings",
    "find_knee",
    "fit_usl",
    "load_results",
    "observed_capacity",
    "parse_history",
    "read_history",
    "recommend",
    "render_run",
    "requests_per_client_hour",
    "save_report",
    "size_fleet",
    "split_steps",
    "summary_lines",
    "throughput_shortfalls",
    "write_report",
    "write_run_report",
]
