"""The capacity-planning report of a step-load run: assembled from a results directory, written as one HTML file."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from harness.chaos.verdicts import FaultWindow
from harness.report.errors import ReportError
from harness.report.fit import MIN_POINTS, FitError, UslFit, fit_usl
from harness.report.generator import MIN_JUDGED_SECONDS, cpu_warnings, throughput_shortfalls
from harness.report.history import PERCENTILE_WINDOW, StatsHistory
from harness.report.knee import Knee, find_knee
from harness.report.recommend import (
    DEFAULT_LATENCY_TARGET_MS,
    DEFAULT_TARGET_CLIENTS,
    ObservedCapacity,
    Sizing,
    observed_capacity,
    recommend,
)
from harness.report.requestlog import RequestLog
from harness.report.results import RunFacts, load_results
from harness.report.steps import DEFAULT_SETTLE, StepStats, split_steps

#: Where a report's request figures come from, best first.
SOURCES = {
    "histograms": "per-second request histograms (stats_history.jsonl): exact per step, HTTP requests only",
    "endpoints": "per-endpoint CSV history: exact counts, window percentiles, HTTP requests only",
    "aggregated": "Aggregated CSV history: window percentiles, lifecycle stage entries included",
}
#: Points per time-series chart; longer runs are thinned (rates then average over the wider intervals).
MAX_SERIES_POINTS = 600


@dataclass(frozen=True, slots=True)
class TimePoint:
    """One point of the over-time charts: seconds since the run started, users, rates and window percentiles."""

    t: float
    users: int
    requests_per_s: float | None
    failures_per_s: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class CapacityReport:
    """Everything the HTML shows."""

    title: str
    facts: RunFacts
    run_start: float
    run_end: float
    source: str          # where the request figures come from (see ``SOURCES``)
    settle: float
    target_clients: int
    latency_target_ms: float
    steps: tuple[StepStats, ...]
    knee: Knee | None
    fit: UslFit | None
    fit_note: str
    observed: ObservedCapacity | None
    sizing: tuple[Sizing, ...]
    series: tuple[TimePoint, ...]
    fault_windows: tuple[FaultWindow, ...] | None
    warnings: tuple[str, ...]


def build_report(results_dir: Path, *, target_clients: int = DEFAULT_TARGET_CLIENTS,
                 latency_target_ms: float = DEFAULT_LATENCY_TARGET_MS, settle: float = DEFAULT_SETTLE) -> CapacityReport:
    """Read ``results_dir`` and compute the report's figures."""
    results = load_results(results_dir)
    history, facts, requests = results.history, results.facts, results.requests
    steps = tuple(split_steps(history, settle=settle, requests=requests))
    if not steps:
        raise ReportError(f"stats history {history.source} holds no step with users long enough to measure")
    warnings = _generator_warnings(results.locust_log, steps)
    if requests is None and not history.per_endpoint:
        warnings.append("no per-second request histograms (stats_history.jsonl) and only Aggregated rows in the "
                        "stats history (Locust ran without --csv-full-history): request counts and percentiles "
                        "include the LIFECYCLE stage entries, not HTTP requests alone")
    brief = [str(step.users) for step in steps if step.duration < MIN_JUDGED_SECONDS]
    if brief:
        warnings.append(f"steps at {', '.join(brief)} users were measured for under {MIN_JUDGED_SECONDS:g} s after "
                        "settling: their throughput follows the devices' polling rhythm as much as the load, so the "
                        "knee is unreliable and the generator check skips them — hold steps longer (--step-hold)")
    if not all(step.percentiles_inside for step in steps):
        short = [str(step.users) for step in steps if not step.percentiles_inside]
        warnings.append(f"steps at {', '.join(short)} users are shorter than the settle period plus Locust's "
                        f"{PERCENTILE_WINDOW:g} s percentile window: their percentiles include responses from "
                        "before the measured part")
    fit, fit_note = _fit(steps)
    observed = observed_capacity(steps, latency_target_ms=latency_target_ms,
                                 devices_per_user=facts.devices_per_user, time_scale=facts.time_scale,
                                 instances=facts.cmg_instances) if any(step.requests for step in steps) else None
    return CapacityReport(
        title=results.directory.resolve().name, facts=facts, run_start=history.start,
        run_end=history.rows[-1].timestamp, source=_source(history, requests), settle=settle,
        target_clients=target_clients, latency_target_ms=latency_target_ms, steps=steps, knee=find_knee(steps),
        fit=fit, fit_note=fit_note, observed=observed, sizing=tuple(recommend(target_clients, observed)),
        series=tuple(time_series(history, requests)), fault_windows=results.fault_windows, warnings=tuple(warnings))


def time_series(history: StatsHistory, requests: RequestLog | None = None, *,
                max_points: int = MAX_SERIES_POINTS) -> list[TimePoint]:
    """Per-row (thinned to ``max_points``) users, request and failure rates, and percentiles of the last ~10 s.

    With the request histograms the percentiles are exact over the 10 s before each point; without, they are
    Locust's window percentiles.
    """
    rows = history.rows
    stride = max(1, math.ceil(len(rows) / max_points))
    kept = list(rows[::stride])
    if kept[-1] is not rows[-1]:
        kept.append(rows[-1])
    points = []
    previous = None
    for row in kept:
        requests_rate = failures_rate = None
        if previous is not None and row.timestamp > previous.timestamp:
            seconds = row.timestamp - previous.timestamp
            if requests is not None:
                interval = requests.between(previous.timestamp, row.timestamp)
                added, failed = interval.requests, interval.failures
            else:
                added, failed = row.requests - previous.requests, row.failures - previous.failures
            requests_rate, failures_rate = max(added, 0) / seconds, max(failed, 0) / seconds
        if requests is not None:
            window = requests.between(row.timestamp - PERCENTILE_WINDOW, row.timestamp)
            p50, p95, p99 = (window.percentile(level) for level in (0.5, 0.95, 0.99))
        else:
            p50, p95, p99 = (history.window_percentile(row, level) for level in (0.5, 0.95, 0.99))
        points.append(TimePoint(t=row.timestamp - history.start, users=row.users, requests_per_s=requests_rate,
                                failures_per_s=failures_rate, p50_ms=p50, p95_ms=p95, p99_ms=p99))
        previous = row
    return points


def _source(history: StatsHistory, requests: RequestLog | None) -> str:
    if requests is not None:
        return "histograms"
    return "endpoints" if history.per_endpoint else "aggregated"


def summary_lines(report: CapacityReport) -> list[str]:
    """A few lines for the terminal: steps, knee, fit, the capacity at the latency target, and warnings."""
    lines = [(f"{len(report.steps)} steps, {report.steps[0].users}..{report.steps[-1].users} users, "
             f"peak {max(step.throughput for step in report.steps):.1f} req/s")]
    if report.knee is not None:
        lines.append(f"knee at {report.knee.step.users} users ({report.knee.step.throughput:.1f} req/s): "
                     f"{report.knee.reason}")
    else:
        lines.append("knee: not reached within the run")
    if report.fit is not None:
        peak = report.fit.peak_users
        lines.append(f"USL: sigma {report.fit.sigma:.4f}, kappa {report.fit.kappa:.3g}, "
                     f"peak {'none (kappa = 0)' if peak is None else f'{peak:.0f} users'}, "
                     f"R^2 {report.fit.r_squared if report.fit.r_squared is None else round(report.fit.r_squared, 3)}")
    else:
        lines.append(f"USL: {report.fit_note}")
    if report.observed is not None:
        observed = report.observed
        lines.append(f"within p95 <= {observed.latency_target_ms:g} ms: {observed.bound} {observed.throughput:.1f} "
                     f"req/s = {observed.clients:,.0f} clients ({observed.clients_per_instance:,.0f} per instance)")
    lines += [f"warning: {warning}" for warning in report.warnings]
    return lines


def _fit(steps: tuple[StepStats, ...]) -> tuple[UslFit | None, str]:
    try:
        return fit_usl([(step.users, step.throughput) for step in steps]), ""
    except FitError as error:
        note = str(error)
        if len({step.users for step in steps}) < MIN_POINTS:
            note = f"not fitted: {error} (run more --steps)"
        return None, note


def _generator_warnings(locust_log: str | None, steps: tuple[StepStats, ...]) -> list[str]:
    warnings = []
    if locust_log is None:
        warnings.append("no locust.log in the results: Locust's CPU warnings could not be checked")
    elif cpu_warnings(locust_log):
        warnings.append("the load generator was CPU-bound (Locust logged a CPU usage warning): the figures describe "
                        "the generator, not the system under test — add Locust workers (--workers) or load hosts")
    shortfalls = throughput_shortfalls(steps)
    if shortfalls:
        first = shortfalls[0]
        warnings.append(f"from {first.step.users} users on, throughput stayed well below what the users and their "
                        f"response times allow ({first.step.throughput:.1f} req/s against "
                        f"{first.expected_throughput:.1f} at {first.step.users} users): the load generator did not "
                        "send on schedule, so those steps describe it, not the system")
    return warnings
