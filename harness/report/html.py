"""The capacity report as one self-contained HTML page: inline CSS and SVG, no scripts, no external references.

The page is rendered from Jinja2 templates (``templates/capacity.html.j2`` extends ``templates/base.html.j2``, the
shared look of the report family) with autoescaping on: text from a results directory (its name, the locustfile, fault
names, warnings) is escaped by the template, never concatenated into markup. This module only computes what the
template shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from harness.report.capacity import SOURCES, CapacityReport, build_report
from harness.report.fit import MIN_POINTS
from harness.report.knee import LATENCY_FACTOR, LATENCY_FLOOR_MS, MIN_MARGINAL_EFFICIENCY
from harness.report.recommend import (
    CLIENTS_PER_MANAGEMENT_POINT,
    CONNECTION_POINT_PORTS,
    DEFAULT_LATENCY_TARGET_MS,
    DEFAULT_TARGET_CLIENTS,
    INSTANCES_PER_CONNECTION_POINT,
    MAX_FAILURE_RATIO,
    MAX_INSTANCES_PER_CMG,
    MAX_MANAGEMENT_POINTS_PER_PRIMARY,
    MIN_CONNECTION_POINTS,
    meets_target,
)
from harness.report.steps import DEFAULT_SETTLE
from harness.report.svg import PALETTE, Band, Rule, Series, chart
from harness.results.layout import CAPACITY_REPORT, ResultsDir

#: The page a capacity report renders; it extends ``BASE_TEMPLATE`` like every report of the family.
TEMPLATE = "capacity.html.j2"
BASE_TEMPLATE = "base.html.j2"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def _r2(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


#: Filters the report templates format numbers with: ``x|fmt(",.1f")`` is ``format(x, ",.1f")``.
FILTERS: dict[str, Callable[..., str]] = {"fmt": format, "ms": _ms, "r2": _r2}


@cache
def environment() -> Environment:
    """The Jinja2 environment of the report templates (package data of ``harness.report``), autoescaping every page.

    Undefined names fail loudly instead of rendering as empty text, so a template and its context cannot drift apart
    unnoticed.
    """
    env = Environment(loader=PackageLoader("harness.report", "templates"),
                      autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=True,
                                                   default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(FILTERS)
    return env


def render(report: CapacityReport) -> str:
    """The whole report page."""
    return environment().get_template(TEMPLATE).render(_context(report))


def _context(report: CapacityReport) -> dict[str, Any]:
    top = max(step.users for step in report.steps)
    windows = None if report.fault_windows is None else [
        (w.name, w.role or "all", w.start - report.run_start, _window_end(w.end - report.run_start))
        for w in report.fault_windows]
    latency_svg, latency_target_drawn = _latency_chart(report)
    return {
        "report": report,
        "run_start": _when(report.run_start),
        "run_end": _when(report.run_end),
        "locustfile": report.facts.locustfile.replace("\\", "/").rsplit("/", 1)[-1],
        "key_cells": key_figures(report),
        "rules": {"max_instances_per_cmg": MAX_INSTANCES_PER_CMG,
                  "instances_per_connection_point": INSTANCES_PER_CONNECTION_POINT,
                  "min_connection_points": MIN_CONNECTION_POINTS, "connection_point_ports": CONNECTION_POINT_PORTS,
                  "clients_per_management_point": CLIENTS_PER_MANAGEMENT_POINT,
                  "max_management_points_per_primary": MAX_MANAGEMENT_POINTS_PER_PRIMARY,
                  "max_failure_ratio": MAX_FAILURE_RATIO},
        "limits": {"min_marginal_efficiency": MIN_MARGINAL_EFFICIENCY, "latency_factor": LATENCY_FACTOR,
                   "latency_floor_ms": LATENCY_FLOOR_MS, "min_points": MIN_POINTS},
        "bound_word": "" if report.observed is None else _bound_word(report.observed.bound),
        "charts": {"throughput": _throughput_chart(report), "latency": latency_svg,
                   "latency_target_drawn": latency_target_drawn, "percentiles": _percentile_time_chart(report),
                   "failures": _failure_chart(report)},
        "source": SOURCES[report.source],
        "windows": windows,
        "step_rows": [(step, meets_target(step, report.latency_target_ms)) for step in report.steps],
        "top_users": top,
        "run_rows": _run_rows(report),
        "assumptions": _assumptions(report),
    }


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def key_figures(report: CapacityReport) -> list[tuple[str, str, str]]:
    peak = max(report.steps, key=lambda step: step.throughput)
    cells = [("peak throughput", f"{peak.throughput:,.1f} req/s", f"at {peak.users} users")]
    if report.knee is not None:
        cells.append(("knee", f"{report.knee.step.users} users", f"{report.knee.step.throughput:,.1f} req/s"))
    else:
        cells.append(("knee", "not reached", "every step still scaled"))
    if report.fit is not None and report.fit.peak_users is not None:
        cells.append(("USL peak concurrency", f"{report.fit.peak_users:,.0f} users",
                      f"R² {_r2(report.fit.r_squared)}"))
    elif report.fit is not None:
        cells.append(("USL peak concurrency", "none", "κ = 0: no retrograde region"))
    if report.observed is not None:
        observed = report.observed
        cells.append((f"clients within p95 ≤ {observed.latency_target_ms:g} ms",
                      f"{_bound_word(observed.bound)}{observed.clients:,.0f}",
                      f"{observed.clients_per_instance:,.0f} per CMG instance"))
    return cells


def _bound_word(bound: str) -> str:
    return {"at least": "≥ ", "below": "< "}.get(bound, "")


def _throughput_chart(report: CapacityReport) -> str:
    steps = report.steps
    measured = Series("measured (per step)", tuple((float(s.users), s.throughput) for s in steps),
                      PALETTE[0], markers=True)
    first = steps[0]
    top = max(s.users for s in steps)
    linear = Series("linear from the first step", ((0.0, 0.0), (float(top), first.throughput / first.users * top)),
                    "#8c959f", dashed=True)
    series = [measured, linear]
    if report.fit is not None:
        fit = report.fit
        end = float(top)
        if fit.peak_users is not None and fit.peak_users <= 2 * top:
            end = max(top, fit.peak_users * 1.2)
        curve = tuple((1 + (end - 1) * i / 80, fit.throughput(1 + (end - 1) * i / 80)) for i in range(81))
        series.append(Series("USL fit", curve, PALETTE[1], dashed=True))
    rules = [Rule(float(report.knee.step.users), "knee")] if report.knee is not None else []
    return chart(title="Throughput vs users", x_label="Locust users", y_label="requests/s", series=series,
                 x_rules=rules)


def _latency_chart(report: CapacityReport) -> tuple[str, bool]:
    """The chart, and whether it draws the latency target (not when every step stayed far below it)."""
    steps = report.steps
    series = [Series(name, tuple((s.throughput, getattr(s, attr)) for s in steps), color, markers=True)
              for name, attr, color in (("p50", "p50_ms", PALETTE[2]), ("p95", "p95_ms", PALETTE[0]),
                                        ("p99", "p99_ms", PALETTE[1]))]
    highest = max((s.p99_ms or s.p95_ms or 0.0) for s in steps)
    drawn = highest * 3 >= report.latency_target_ms
    rules = [Rule(report.latency_target_ms, f"target p95 {report.latency_target_ms:g} ms")] if drawn else []
    return chart(title="Latency percentiles vs throughput", x_label="requests/s", y_label="ms", series=series,
                 y_rules=rules), drawn


def _step_rules(report: CapacityReport) -> list[Rule]:
    rules = [Rule(step.start - report.run_start, f"{step.users}") for step in report.steps]
    if len(rules) > 12:  # keep labels legible: mark every few steps
        rules = rules[::len(rules) // 12 + 1]
    return rules


def _percentile_time_chart(report: CapacityReport) -> str:
    series = [Series(name, tuple((p.t, getattr(p, attr)) for p in report.series), color)
              for name, attr, color in (("p50", "p50_ms", PALETTE[2]), ("p95", "p95_ms", PALETTE[0]),
                                        ("p99", "p99_ms", PALETTE[1]))]
    return chart(title="Latency percentiles over time", x_label="seconds since the run started (lines: step "
                 "starts, labelled with users)", y_label="ms", series=series, x_rules=_step_rules(report))


def _failure_chart(report: CapacityReport) -> str:
    series = [Series("requests/s", tuple((p.t, p.requests_per_s) for p in report.series), PALETTE[0]),
              Series("failures/s", tuple((p.t, p.failures_per_s) for p in report.series), PALETTE[1])]
    bands = [Band(w.start - report.run_start, w.end - report.run_start, w.name + (f" ({w.role})" if w.role else ""))
             for w in report.fault_windows or ()]
    return chart(title="Requests, failures and fault windows over time", x_label="seconds since the run started",
                 y_label="per second", series=series, bands=bands)


def _window_end(seconds: float) -> str:
    return "end of run" if math.isinf(seconds) else f"{seconds:,.0f}"


def _run_rows(report: CapacityReport) -> list[tuple[str, str]]:
    facts = report.facts
    interval = "not recorded"
    if facts.policy_interval_s is not None:
        interval = (f"{facts.policy_interval_s:g} s in the run = {facts.policy_interval_s * facts.time_scale / 60:g} "
                    "min of site time")
    return [("results", report.title), ("locustfile", facts.locustfile),
            ("Locust workers", str(facts.workers) if facts.workers else "none (one process)"),
            ("time scale", f"{facts.time_scale:g} (site time runs {facts.time_scale:g}× faster)"),
            ("devices per Locust user", str(facts.devices_per_user)), ("policy interval", interval),
            ("CMG instances in the run", str(facts.cmg_instances)),
            ("statistics source", SOURCES[report.source]),
            ("settle period per step", f"{report.settle:g} s (at most half a step)"),
            ("latency target", f"p95 ≤ {report.latency_target_ms:g} ms and ≤ {MAX_FAILURE_RATIO:.0%} failures")]


def _assumptions(report: CapacityReport) -> list[str]:
    facts = report.facts
    items = [
        ("Load model: closed at the Locust user — each user waits for a reply before its next request — while each "
        f"user plays {facts.devices_per_user} device(s) on policy-interval timers. As long as replies are fast, "
        "requests follow the devices' schedule (open-like arrivals); once a user falls behind, the load turns closed "
        "and throughput is capped at users ÷ response time."),
        (f"Time scale: the run compresses time {facts.time_scale:g}×, so one second of the run carries the requests "
        f"of {facts.time_scale:g} seconds of a real fleet; the clients figures are real-time clients."),
        ("Polling model: r = requests in the measured parts ÷ Σ(devices × seconds) × 3600 ÷ time scale requests per "
        "client per hour; a throughput X supports C = X × 3600 ÷ r clients."),
        ("The documented per-instance figures count simultaneous client connections; the run measures request "
        "throughput and latency. The notification channel each client holds open is not simulated: the port rule "
        "of the connection points stands in for it."),
        (f"The measured figure is of the system under test on this machine with {facts.cmg_instances} CMG "
        "instance(s); it transfers to Azure VM sizes only as a ceiling the proxy chain itself imposes."),
    ]
    items += list(facts.assumptions)
    return items


def write_report(results_dir: Path, *, out: Path | None = None, target_clients: int = DEFAULT_TARGET_CLIENTS,
                 latency_target_ms: float = DEFAULT_LATENCY_TARGET_MS, settle: float = DEFAULT_SETTLE) -> Path:
    """Write the capacity report of ``results_dir`` (default ``RESULTS_DIR/capacity-report.html``); its path."""
    report = build_report(results_dir, target_clients=target_clients, latency_target_ms=latency_target_ms,
                          settle=settle)
    return save_report(report, Path(out) if out is not None else ResultsDir(Path(results_dir)).file(CAPACITY_REPORT))


def save_report(report: CapacityReport, path: Path) -> Path:
    """Write ``report`` as HTML to ``path``; the path."""
    path = Path(path)
    path.write_text(render(report), encoding="utf-8")
    return path
