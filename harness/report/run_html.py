"""The run report as one self-contained HTML page (``report.html``), rendered from ``templates/run.html.j2``.

The template extends ``base.html.j2`` like the capacity report (same look, inline CSS and SVG, no scripts, nothing
fetched), with the environment's autoescaping: names from the results (RequestUris, faults, devices, gate ids) are
escaped by the template. This module computes the charts and rows the template shows.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from harness.report.capacity import build_report
from harness.report.errors import ReportError
from harness.report.html import environment, key_figures
from harness.report.run_report import P99_WINDOW, RunReport, build_run_report
from harness.report.svg import PALETTE, Band, Series, chart
from harness.results.layout import CAPACITY_REPORT, RUN_REPORT, ResultsDir

TEMPLATE = "run.html.j2"
#: The over-time charts every run report has, by their headings (a test checks each is drawn).
CHART_TITLES = ("Requests per second", "p99 latency: corrected and service", "Errors per second",
                "Verdicts per second")
#: Percentile columns of the stage and RequestUri latency tables, as ``summary.json`` keys them.
PERCENTILE_KEYS = ("p50", "p90", "p99", "max")


def render_run(report: RunReport) -> str:
    """The whole page."""
    return environment().get_template(TEMPLATE).render(_context(report))


def write_run_report(results_dir: Path, *, out: Path | None = None) -> Path:
    """Write the run report of ``results_dir`` (default ``RESULTS_DIR/report.html``); its path."""
    report = build_run_report(results_dir)
    path = Path(out) if out is not None else ResultsDir(Path(results_dir)).file(RUN_REPORT)
    path.write_text(render_run(report), encoding="utf-8")
    return path


def _context(report: RunReport) -> dict[str, Any]:
    summary = report.summary
    latency = summary.get("latency") or {}
    verdicts = summary.get("verdicts") or {}
    return {
        "report": report,
        "summary": summary,
        "run_start": _when(report.run_start),
        "run_end": _when(report.run_end),
        "status": _status(summary),
        "key_cells": _key_cells(report),
        "charts": _charts(report),
        "p99_window": P99_WINDOW,
        "requests": summary.get("requests") or [],
        "stages": summary.get("stages") or [],
        "stage_latency": _latency_rows(latency.get("stages") or {}),
        "request_latency": _latency_rows(latency.get("requests") or {}),
        "all_latency": _latency_rows({"all requests": latency["all_requests"]})
        if _has_measures(latency.get("all_requests")) else [],
        "percentile_keys": PERCENTILE_KEYS,
        "counts": _count_rows(summary),
        "verdicts": verdicts,
        "examples": _examples(verdicts.get("examples") or {}),
        "windows": [(w.name, w.role or "all", w.start - report.run_start,
                     "end of run" if math.isinf(w.end) else f"{w.end - report.run_start:,.1f}")
                    for w in report.windows],
        "recovery": _recovery_rows(summary.get("recovery") or [], report.run_start),
        "gates": [(name, verdict, _gate_rows(verdict)) for name, verdict in report.gates],
        "capacity": _capacity(report),
        "plan_rows": _plan_rows(report.plan),
    }


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _status(summary: dict[str, Any]) -> tuple[str, str]:
    if summary.get("interrupted"):
        return "INTERRUPTED", "bad"
    return ("PASS", "ok") if summary.get("passed") else ("FAIL", "bad")


def _key_cells(report: RunReport) -> list[tuple[str, str, str]]:
    summary = report.summary
    devices = summary.get("devices") or {}
    verdicts = summary.get("verdicts") or {}
    requests = sum(int(row.get("request_count", 0)) for row in summary.get("requests") or [])
    all_requests = (summary.get("latency") or {}).get("all_requests") or {}
    corrected = (all_requests.get("corrected_ms") or {}).get("p99")
    status, _ = _status(summary)
    cells = [("run", status, "; ".join(summary.get("problems") or []) or "nothing unexpected"),
             ("devices", f"{devices.get('started', 0):,}", f"{devices.get('registered', 0):,} registered"),
             ("requests", f"{requests:,}", f"over {report.run_end - report.run_start:,.0f} s")]
    if corrected is not None:
        cells.append(("corrected p99", f"{corrected:,.1f} ms", "intended → answered, all requests"))
    cells.append(("unexpected verdicts", f"{verdicts.get('unexpected', 0):,}",
                  f"{verdicts.get('expected', 0):,} expected"))
    for name, verdict in report.gates:
        cells.append((f"gate {verdict.get('name') or name}", "PASS" if verdict.get("passed") else "FAIL",
                      f"{verdict.get('failed', 0)} of {verdict.get('thresholds', 0)} thresholds crossed"))
    return cells


def _bands(report: RunReport) -> list[Band]:
    return [Band(w.start - report.run_start, w.end - report.run_start, w.name + (f" ({w.role})" if w.role else ""))
            for w in report.windows]


def _charts(report: RunReport) -> list[tuple[str, str]]:
    points, bands = report.series, _bands(report)
    x_label = "seconds since the run started (shaded: fault windows)"
    requests = chart(title=CHART_TITLES[0], x_label=x_label, y_label="requests/s", bands=bands,
                     series=[Series("requests/s", tuple((p.t, p.requests_per_s) for p in points), PALETTE[0])])
    latency = chart(title=CHART_TITLES[1], x_label=x_label, y_label="ms", bands=bands, series=[
        Series("corrected p99 (intended → answered)", tuple((p.t, p.corrected_p99_ms) for p in points), PALETTE[1]),
        Series("service p99 (sent → answered)", tuple((p.t, p.service_p99_ms) for p in points), PALETTE[0])])
    errors = chart(title=CHART_TITLES[2], x_label=x_label, y_label="failed requests/s", bands=bands,
                   series=[Series("failures/s", tuple((p.t, p.failures_per_s) for p in points), PALETTE[1])])
    verdict_points = report.verdict_series or ()
    verdicts = chart(title=CHART_TITLES[3], x_label=x_label, y_label="verdicts/s", bands=bands, series=[
        Series("unexpected", tuple((v.t, v.unexpected_per_s) for v in verdict_points), "#b3261e"),
        Series("expected", tuple((v.t, v.expected_per_s) for v in verdict_points), PALETTE[2])])
    return list(zip(CHART_TITLES, (requests, latency, errors, verdicts), strict=True))


def _has_measures(values: Any) -> bool:
    return isinstance(values, dict) and "service_ms" in values and "corrected_ms" in values


def _latency_rows(table: dict[str, Any]) -> list[tuple[str, int, list[float | None], list[float | None]]]:
    rows = []
    for name, values in table.items():
        if not _has_measures(values):
            continue
        service, corrected = values["service_ms"], values["corrected_ms"]
        rows.append((name, int(service.get("count", 0)), [service.get(key) for key in PERCENTILE_KEYS],
                     [corrected.get(key) for key in PERCENTILE_KEYS]))
    return rows


def _count_rows(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    sections = (("devices", "devices"), ("events", "events"), ("lifecycles", "lifecycles"),
                ("outcomes", "lifecycle outcomes"), ("stage_failures", "failed stages"),
                ("unexpected", "unexpected outcomes"))
    return [(label, summary[key]) for key, label in sections if isinstance(summary.get(key), dict) and summary[key]]


def _examples(examples: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for kind, items in examples.items():
        for item in items if isinstance(items, list) else []:
            trail = " › ".join(f"{step[0]} {'-' if step[2] is None else step[2]} {step[4]}"
                               for step in item.get("trail") or [] if isinstance(step, list) and len(step) >= 5)
            rows.append((str(kind), str(item.get("device", "")), str(item.get("explanation", "")), trail))
    return rows


def _recovery_rows(recovery: list[dict[str, Any]], start: float) -> list[tuple[str, str, str, str, str, str, str]]:
    rows = []
    for row in recovery:
        where = f"{float(row.get('start', start)) - start:,.1f}"
        if "recovered" not in row:
            rows.append((str(row.get("name")), str(row.get("role") or "all"), where, "–", "–", "–",
                         str(row.get("note", "not measured"))))
            continue
        worst = row.get("worst_success_rate")
        rows.append((str(row["name"]), str(row.get("role") or "all"), where,
                     "–" if worst is None else f"{worst * 100:.1f}",
                     f"{row['recovery_s']:g}" if row["recovered"] else "not recovered",
                     f"{row.get('storm_rps', 0):g}", f"{row.get('storm_requests', 0)} requests, token storm "
                     f"{row.get('token_storm_rps', 0):g} req/s"))
    return rows


def _gate_rows(verdict: dict[str, Any]) -> list[tuple[str, str, bool, str]]:
    return [(str(result.get("id", "")), "–" if result.get("measured") is None else f"{result['measured']:g}",
             bool(result.get("passed")), str(result.get("detail") or ""))
            for result in verdict.get("results") or [] if isinstance(result, dict)]


def _capacity(report: RunReport) -> dict[str, Any] | None:
    """The capacity section: a search's steps and answer, or a step run's key figures; None for neither."""
    search = report.capacity_search
    if search:
        result = search.get("result") or {}
        return {"kind": "search", "describe": str(result.get("describe") or "no answer"),
                "hold": search.get("hold_seconds"), "steps": [
                    (number, step.get("intended_per_s"), step.get("achieved_per_s"), step.get("corrected_p99_ms"),
                     step.get("error_ratio"), bool(step.get("passed")), "; ".join(step.get("reasons") or []))
                    for number, step in enumerate(search.get("steps") or [], start=1)]}
    if report.step_run:
        try:
            cells = key_figures(build_report(report.directory))
        except ReportError as error:
            return {"kind": "steps", "cells": [], "error": str(error), "file": report.capacity_report}
        # A step run's capacity report is written right after this one (``cmg-harness run``, ``report``): link it.
        return {"kind": "steps", "cells": cells, "error": None, "file": report.capacity_report or CAPACITY_REPORT}
    return None


def _plan_rows(plan: dict[str, Any]) -> list[tuple[str, str]]:
    skip = {"schema", "versions"}
    rows = []
    for key, value in plan.items():
        if key in skip:
            continue
        if isinstance(value, list):
            value = " ".join(str(item) for item in value) or "none"
        rows.append((key.replace("_", " "), "–" if value in (None, "") else str(value)))
    return rows


def report_after_run(results_dir: Path, out: TextIO) -> Path | None:
    """Write the run report at the end of ``cmg-harness run``; a report that cannot be made says why on ``out`` and
    the run stands (its summary is written already)."""
    try:
        return write_run_report(results_dir)
    except (ReportError, OSError) as error:
        print(f"cmg-harness: no run report: {error}", file=out, flush=True)
        return None
