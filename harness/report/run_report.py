"""The HTML report of one run (``report.html``): what ``cmg-harness run`` measured, told in one offline page.

Read from the results directory (:class:`harness.results.ResultsDir`): ``summary.json`` (required: the CMGService
table, lifecycle outcomes, stage times, verdicts, fault windows, recovery, the capacity search), ``run.json`` (the
plan), ``stats_history.jsonl`` (per second: requests, failures and the service and corrected latency histograms;
Locust's CSV history stands in without it), ``verdict_history.jsonl`` (cumulative verdict counts per second), the gate
verdicts (``gate*.json``, ``gate-abort.json``) and ``locust.log`` (Locust's version). The page is rendered by
:mod:`harness.report.run_html` from the same template base as the capacity report.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.chaos.verdicts import FaultWindow
from harness.client.stages import LIFECYCLE_REQUEST_TYPE
from harness.latency.histograms import CORRECTED, REQUEST, SERVICE, merged_counts, sparse_statistic_ms
from harness.report.errors import ReportError
from harness.report.history import read_history
from harness.results.errors import ResultsError
from harness.results.layout import (
    CAPACITY_REPORT,
    STATS_HISTORY,
    SUMMARY,
    ResultsDir,
    fault_windows,
    or_none,
)
from harness.results.stats import HistoryPoint

#: Seconds of requests behind each point of the p99 chart: one second holds too few requests for a stable p99.
P99_WINDOW = 5
#: Points per over-time chart; longer runs are thinned by summing (rates) or merging (histograms) neighbours.
MAX_POINTS = 600
_LOCUST_VERSION = re.compile(r"Starting Locust (\S+)")


class RunReportError(ReportError):
    """A results directory the run report cannot use; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class SecondPoint:
    """One point of the over-time charts, ``t`` seconds after the run started (the end of the interval it covers).

    Rates are over the interval since the previous point; the p99s over the last ``P99_WINDOW`` seconds (None when no
    request was answered then, or the history does not hold the measure).
    """

    t: float
    requests_per_s: float
    failures_per_s: float
    service_p99_ms: float | None
    corrected_p99_ms: float | None


@dataclass(frozen=True, slots=True)
class VerdictPoint:
    """Verdicts reached in the interval before ``t`` (seconds after the run started), per second."""

    t: float
    expected_per_s: float
    unexpected_per_s: float


@dataclass(frozen=True)
class RunReport:
    """Everything the run report shows."""

    title: str
    directory: Path
    summary: dict[str, Any]
    plan: dict[str, Any]
    versions: tuple[tuple[str, str], ...]
    run_start: float
    run_end: float
    series: tuple[SecondPoint, ...]
    series_source: str         # where the over-time figures come from, for the page's note
    verdict_series: tuple[VerdictPoint, ...] | None  # None: the run left no verdict history
    windows: tuple[FaultWindow, ...]
    gates: tuple[tuple[str, dict[str, Any]], ...]
    gate_abort: dict[str, Any] | None
    capacity_search: dict[str, Any] | None
    step_run: bool
    capacity_report: str | None  # the file name of the capacity report beside this one, when there is one


def build_run_report(results_dir: Path) -> RunReport:
    """Read ``results_dir``; RunReportError in one line when it is not a finished run's (no ``summary.json``) or a
    file it needs is broken."""
    results = ResultsDir(Path(results_dir))
    if not results.path.is_dir():
        raise RunReportError(f"results directory {str(results.path)!r} not found")
    try:
        summary = results.read_summary()
        if summary is None:
            raise RunReportError(f"{str(results.path)!r} has no {SUMMARY}: not the results of a finished "
                                 "cmg-harness run (it writes summary.json at its end, also when interrupted)")
        plan = or_none(results.read_plan_document) or dict(summary.get("plan") or {})
        windows = fault_windows(list(summary.get("fault_windows") or []), source=str(results.file(SUMMARY)))
        points = results.read_stats_history()
        verdicts = results.read_verdict_history()
        gates = tuple(results.read_gate_verdicts())
        gate_abort = results.read_gate_abort()
        capacity = summary.get("capacity_search") or results.read_capacity_search()
        locust_log = results.read_locust_log()
    except ResultsError as error:
        raise RunReportError(str(error)) from None
    start = _start(summary, points)
    if points:
        series, source = over_time(points, start), f"per-second request histograms ({STATS_HISTORY})"
        end = points[-1].t
    else:
        series, source, end = _from_csv(results, start)
    locustfile = str(plan.get("locustfile") or "")
    return RunReport(
        title=results.path.resolve().name, directory=results.path, summary=summary, plan=plan,
        versions=_versions(plan, locust_log), run_start=start, run_end=max(end, start),
        series=tuple(series), series_source=source,
        verdict_series=None if verdicts is None else tuple(verdict_rates(verdicts, start)), windows=windows,
        gates=gates, gate_abort=gate_abort, capacity_search=capacity or None,
        step_run=Path(locustfile).stem == "capacity" or bool(plan.get("steps")),
        capacity_report=CAPACITY_REPORT if results.file(CAPACITY_REPORT).is_file() else None)


def _start(summary: dict[str, Any], points: tuple[HistoryPoint, ...] | None) -> float:
    started = summary.get("test_started_at")
    if isinstance(started, (int, float)) and math.isfinite(started):
        return float(started)
    return points[0].t if points else 0.0


def over_time(points: tuple[HistoryPoint, ...] | list[HistoryPoint], start: float, *,
              max_points: int = MAX_POINTS, p99_window: int = P99_WINDOW) -> list[SecondPoint]:
    """Requests and failures per second, and service and corrected p99 of the HTTP requests, over the run.

    Each history point holds what was added since the previous one; the first point is the baseline. Runs longer
    than ``max_points`` seconds are thinned: neighbouring points are summed (counts) and merged (histograms).
    """
    groups = _thin(list(points), max_points)
    seconds: list[tuple[float, float, int, int, dict[int, int], dict[int, int]]] = []
    previous_t: float | None = None
    for group in groups:
        t = group[-1].t
        requests = failures = 0
        service: list[dict[int, int]] = []
        corrected: list[dict[int, int]] = []
        for point in group:
            for entry in point.entries:
                if entry.method != LIFECYCLE_REQUEST_TYPE:
                    requests += entry.num_requests
                    failures += entry.num_failures
            if point.latency is not None:
                for (kind, _name, measure), counts in point.latency.histograms.items():
                    if kind == REQUEST and measure == SERVICE:
                        service.append(counts)
                    elif kind == REQUEST and measure == CORRECTED:
                        corrected.append(counts)
        span = t - previous_t if previous_t is not None else 0.0
        seconds.append((t, span, requests, failures, merged_counts(service), merged_counts(corrected)))
        previous_t = t
    out = []
    for index, (t, span, requests, failures, _service, _corrected) in enumerate(seconds):
        if span <= 0:
            continue  # the baseline: nothing before it to make a rate of
        recent = [second for second in seconds[:index + 1] if second[0] > t - max(p99_window, span) - 1e-6]
        out.append(SecondPoint(t=t - start, requests_per_s=requests / span, failures_per_s=failures / span,
                               service_p99_ms=sparse_statistic_ms(merged_counts(s[4] for s in recent), 99.0),
                               corrected_p99_ms=sparse_statistic_ms(merged_counts(s[5] for s in recent), 99.0)))
    return out


def _thin(points: list[HistoryPoint], max_points: int) -> list[list[HistoryPoint]]:
    if not points:
        return []
    stride = max(1, math.ceil((len(points) - 1) / max_points))
    groups = [[points[0]]]
    rest = points[1:]
    groups += [rest[i:i + stride] for i in range(0, len(rest), stride)]
    return groups


def verdict_rates(counts: list[dict[str, float]], start: float) -> list[VerdictPoint]:
    """Verdicts per second from cumulative counts (a count that goes down — the web UI's reset — restarts)."""
    out = []
    for before, after in zip(counts, counts[1:], strict=False):
        span = after["t"] - before["t"]
        if span <= 0:
            continue
        out.append(VerdictPoint(t=after["t"] - start,
                                expected_per_s=max(after["expected"] - before["expected"], 0) / span,
                                unexpected_per_s=max(after["unexpected"] - before["unexpected"], 0) / span))
    return out


def _from_csv(results: ResultsDir, start: float) -> tuple[list[SecondPoint], str, float]:
    """Without the per-second histograms: rates and Locust's window p99 (service time only) from its CSV history."""
    path = results.locust_history_csv()
    if path is None:
        return [], "nothing: the run left neither stats_history.jsonl nor Locust's CSV history", start
    history = read_history(path)
    origin = start or history.start
    out = []
    for before, row in zip(history.rows, history.rows[1:], strict=False):
        span = row.timestamp - before.timestamp
        if span <= 0:
            continue
        out.append(SecondPoint(t=row.timestamp - origin, requests_per_s=max(row.requests - before.requests, 0) / span,
                               failures_per_s=max(row.failures - before.failures, 0) / span,
                               service_p99_ms=history.window_percentile(row, 0.99), corrected_p99_ms=None))
    return out, f"Locust's CSV history ({path.name}): window percentiles of response times, no corrected latency", \
        history.rows[-1].timestamp


def _versions(plan: dict[str, Any], locust_log: str | None) -> tuple[tuple[str, str], ...]:
    versions = plan.get("versions")
    rows = [(str(name), str(value)) for name, value in versions.items()] if isinstance(versions, dict) else []
    if locust_log is not None and not any(name.lower() == "locust" for name, _ in rows):
        found = _LOCUST_VERSION.search(locust_log)
        if found:
            rows.append(("Locust (from locust.log)", found.group(1)))
    return tuple(rows)
