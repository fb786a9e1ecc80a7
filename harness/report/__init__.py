"""Capacity-planning report of a step-load run: per-step statistics, the saturation knee, a Universal Scalability
Law fit, a sizing recommendation for a target fleet, and one self-contained HTML file with charts.

``write_report(results_dir)`` writes ``RESULTS_DIR/capacity-report.html``; ``cmg-harness report`` calls it.
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
from harness.report.steps import StepError, StepStats, split_steps

__all__ = [
    "CapacityReport",
    "FitError",
    "HistoryError",
    "Knee",
    "ObservedCapacity",
    "ReportError",
    "RunFacts",
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
    "cpu_warnings",
    "find_knee",
    "fit_usl",
    "load_results",
    "observed_capacity",
    "parse_history",
    "read_history",
    "recommend",
    "requests_per_client_hour",
    "save_report",
    "size_fleet",
    "split_steps",
    "summary_lines",
    "throughput_shortfalls",
    "write_report",
]
