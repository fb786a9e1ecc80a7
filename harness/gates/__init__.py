"""CI performance gates: a YAML file of thresholds, measured on a load run, reported as ✓/✗, JUnit XML and JSON.

``cmg-harness run --gate FILE`` and ``cmg-harness gate FILE RESULTS_DIR`` use it; the Locust master watches the same
thresholds live (``harness.load.gate_listener``) to abort a run early and to export the verdicts as metrics.
"""

from __future__ import annotations

from harness.gates._data import HistoryRecorder, RunData, load_results
from harness.gates._evaluate import GateResult, ThresholdResult, evaluate, measure
from harness.gates._report import (
    check,
    describe,
    format_results,
    junit_xml,
    run_exit_code,
    write_outputs,
)
from harness.gates._spec import (
    GATE_FAILED_EXIT,
    METRICS,
    STAGES,
    Gate,
    GateFileError,
    Metric,
    Selector,
    Threshold,
    load_gate,
    parse_expression,
    parse_gate,
    parse_selector,
)
from harness.results.errors import ResultsError
from harness.results.layout import GATE_ABORT, GATE_JSON, GATE_JUNIT, STATS_HISTORY
from harness.results.stats import HistoryPoint, StatsEntry, percentile

__all__ = [
    "GATE_ABORT",
    "GATE_FAILED_EXIT",
    "GATE_JSON",
    "GATE_JUNIT",
    "METRICS",
    "STAGES",
    "STATS_HISTORY",
    "Gate",
    "GateFileError",
    "GateResult",
    "HistoryPoint",
    "HistoryRecorder",
    "Metric",
    "ResultsError",
    "RunData",
    "Selector",
    "StatsEntry",
    "Threshold",
    "ThresholdResult",
    "check",
    "describe",
    "evaluate",
    "format_results",
    "junit_xml",
    "load_gate",
    "load_results",
    "measure",
    "parse_expression",
    "parse_gate",
    "parse_selector",
    "percentile",
    "run_exit_code",
    "write_outputs",
]
