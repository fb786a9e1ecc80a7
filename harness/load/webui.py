"""Extra tabs in Locust's web UI — the live CMGService-style table per RequestUri, the lifecycle outcomes, the chaos
verdicts, the fault windows — and the fault controls tab (``harness.load.faultpanel`` holds its routes).

Table tabs are the way Locust documents for a locustfile: tabs named in ``template_args["extended_tabs"]`` with the
columns of ``template_args["extended_tables"]``, filled from ``extended_stats`` in each ``/stats/requests`` poll; we add
that list to the JSON in an ``after_request`` hook. The CMGService numbers come from Locust's own request statistics
(count, response bytes, elapsed time) plus the tally's request bytes and answered-request counts.

Table cells are text, so the fault controls (buttons, a form) are a tab of our own build of Locust's UI: the
``locust-ui`` library with one more tab (React), as Locust documents for custom tabs (``webui_app/``, built into
``webui_build/``). Its page is served as Locust's ``index.html`` — what ``--build-path`` does, set here at ``init``
unless the user gave a ``--build-path`` of their own (then the plain page ``cmg/faults`` is the fallback). The tab
reads the chaos schedule's upcoming switches from ``extended_stats`` too.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.chaos.schedule import Schedule
from harness.chaos.verdicts import OVERLAP
from harness.fleet.tally import MILESTONES, cmgservice_table
from harness.load.faultpanel import ManifestFaultClient
from harness.load.faultpanel import install as install_fault_panel
from mock_site.faults import CATALOGUE
from mock_site.manifest import SiteManifest

logger = logging.getLogger(__name__)

CMG_TAB = "cmg-traffic"
OUTCOMES_TAB = "lifecycle-outcomes"
VERDICTS_TAB = "chaos-verdicts"
FAULTS_TAB = "cmg-faults"
#: The fault controls tab of our UI build; its ``extended_stats`` entry holds the schedule's upcoming switches.
CONTROLS_TAB = "cmg-fault-controls"
#: Our build of Locust's UI: ``index.html`` (a Jinja template, as Locust's) and the bundle it loads.
BUILD_DIR = Path(__file__).with_name("webui_build")
BUNDLE = "cmg-harness-ui.js"
#: Where the bundle is served, under Locust's ``--web-base-path``.
BUNDLE_PATH = "/cmg/ui"
#: Upcoming schedule switches the tab lists at most.
MAX_UPCOMING = 20

EXTENDED_TABS = [{"title": "CMG traffic", "key": CMG_TAB}, {"title": "Lifecycle outcomes", "key": OUTCOMES_TAB},
                 {"title": "Chaos verdicts", "key": VERDICTS_TAB}, {"title": "Fault windows", "key": FAULTS_TAB}]
# Keys are snake_case: the UI turns both these and the row keys into camelCase before matching them.
EXTENDED_TABLES = [
    {"key": CMG_TAB, "structure": [
        {"key": "request_uri", "title": "RequestUri"},
        {"key": "request_count", "title": "RequestCount"},
        {"key": "request_size", "title": "RequestSize (bytes)"},
        {"key": "response_count", "title": "ResponseCount"},
        {"key": "response_size", "title": "ResponseSize (bytes)"},
        {"key": "average_elapsed_time", "title": "AverageElapsedTime (ms)"},
    ]},
    {"key": OUTCOMES_TAB, "structure": [
        {"key": "measure", "title": "Measure"},
        {"key": "count", "title": "Count"},
    ]},
    {"key": VERDICTS_TAB, "structure": [
        {"key": "kind", "title": "Kind"},
        {"key": "name", "title": "Fault / reason / example"},
        {"key": "expected", "title": "Expected"},
        {"key": "unexpected", "title": "Unexpected"},
        {"key": "detail", "title": "Detail"},
    ]},
    {"key": FAULTS_TAB, "structure": [
        {"key": "fault", "title": "Fault"},
        {"key": "role", "title": "Role"},
        {"key": "state", "title": "State"},
        {"key": "from_s", "title": "From (s into the test)"},
        {"key": "to_s", "title": "To (s)"},
        {"key": "injections", "title": "Injections"},
    ]},
]


def outcome_rows(snapshot: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The lifecycle outcome tab's rows from a tally snapshot: milestones, lifecycle ends, then failures by reason."""
    devices, events, lifecycles = snapshot["devices"], snapshot["events"], snapshot["lifecycles"]
    rows = [{"measure": "devices started", "count": devices["started"]}]
    rows += [{"measure": f"devices {milestone}", "count": devices[milestone]} for milestone in MILESTONES]
    rows += [{"measure": "token renewals", "count": events["renewed"]},
             {"measure": "policy cycles", "count": events["polled"]},
             {"measure": "lifecycles succeeded", "count": lifecycles["succeeded"]},
             {"measure": "lifecycles failed", "count": lifecycles["failed"]},
             {"measure": "unexpected failures", "count": lifecycles["unexpected_failures"]},
             {"measure": "unexpected successes", "count": lifecycles["unexpected_successes"]}]
    rows += [{"measure": f"failed: {reason}", "count": count}
             for reason, count in snapshot["outcomes"].items() if reason != "success"]
    rows += [{"measure": f"failed stage: {stage}", "count": count}
             for stage, count in snapshot["stage_failures"].items()]
    return rows


def trail_text(trail: Any) -> str:
    """A request trail (``[step, request URI, status, ms, result]`` entries) as one line."""
    return " > ".join(f"{step} {'-' if status is None else status} {result}"
                      for step, _name, status, _ms, result in trail)


def verdict_rows(verdicts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The chaos verdict tab's rows: totals, per fault set, per reason, then the first examples of each unexpected kind.

    Each judged outcome is in one fault-set row (faults on together are one row, "a + b"), so those rows add up to the
    total row."""
    rows = [{"kind": "total", "name": "all judged outcomes", "expected": verdicts.get("expected", 0),
             "unexpected": verdicts.get("unexpected", 0),
             "detail": f"{verdicts.get('pending', 0)} waiting for the fault timeline"}]
    rows += [{"kind": "faults on", "name": faults, "expected": counts.get("expected", 0),
              "unexpected": counts.get("unexpected", 0), "detail": _fault_set_detail(faults)}
             for faults, counts in verdicts.get("faults", {}).items()]
    rows += [{"kind": "reason", "name": reason, "expected": counts.get("expected", 0),
              "unexpected": counts.get("unexpected", 0), "detail": ""}
             for reason, counts in verdicts.get("reasons", {}).items()]
    for key, examples in verdicts.get("examples", {}).items():
        rows += [{"kind": "example", "name": key, "expected": "", "unexpected": "",
                  "detail": f"{example.get('device', '')}: {example.get('explanation', '')}; trail: "
                            f"{trail_text(example.get('trail', []))}"} for example in examples]
    return rows


def _fault_set_detail(faults: str) -> str:
    if faults == "none":
        return "no fault"
    count = len(faults.split(OVERLAP))
    return f"overlap: {count} faults on together" if count > 1 else ""


def fault_rows(windows: list[dict[str, Any]], *, started_at: float | None) -> list[dict[str, Any]]:
    """The fault window tab's rows: each fault window seen in this test, with its injections."""
    origin = started_at if started_at is not None else min((w["start"] for w in windows), default=0.0)
    return [{"fault": w["name"], "role": w["role"], "state": "inferred" if w["inferred"] else
             ("on" if w["end"] is None else "ended"), "from_s": round(w["start"] - origin, 1),
             "to_s": "" if w["end"] is None else round(w["end"] - origin, 1), "injections": w["injections"]}
            for w in windows]


def upcoming_rows(schedule: Schedule | None, *, started_at: float | None, now: float,
                  limit: int = MAX_UPCOMING) -> list[dict[str, Any]]:
    """The chaos schedule's switches still to come, soonest first: seconds from now (``in``; all of them, counted from
    the start, before the test starts), seconds into the test (``at``), on or off, the fault, its role, its line."""
    if schedule is None:
        return []
    elapsed = 0.0 if started_at is None else now - started_at
    switches = []
    for fault in schedule.timed:
        role = fault.role or (CATALOGUE[fault.name].default_role if fault.name in CATALOGUE else "")
        for at, switch in ((fault.start, "on"), (fault.end, "off")):
            if at >= elapsed:
                switches.append({"in": round(at - elapsed, 1), "at": round(at, 1), "switch": switch,
                                 "fault": fault.name, "role": role, "line": fault.line})
    switches.sort(key=lambda row: (row["at"], row["switch"] == "on"))  # an "off" first when both fall together
    return switches[:limit]


@dataclass(frozen=True, slots=True)
class TabData:
    """What the tabs show besides Locust's statistics: the tally snapshot (with its verdicts), the fault windows of
    this test, when it started (epoch seconds; None before the first test) and its chaos schedule (if any)."""

    snapshot: Mapping[str, Any]
    windows: list[dict[str, Any]]
    started_at: float | None
    schedule: Schedule | None = None


def extended_stats(environment: Any, data: TabData, *, now: float) -> list[dict[str, Any]]:
    """The ``extended_stats`` list the UI polls: one entry of rows per extra tab (``now``: epoch seconds)."""
    snapshot = data.snapshot
    entries = []
    runner = environment.runner
    if runner is not None:
        for entry in runner.stats.entries.values():
            entries.append({"name": entry.name, "method": entry.method, "num_requests": entry.num_requests,
                            "total_content_length": entry.total_content_length,
                            "total_response_time": entry.total_response_time})
    return [{"key": CMG_TAB, "data": cmgservice_table(entries, snapshot["requests"])},
            {"key": OUTCOMES_TAB, "data": outcome_rows(snapshot)},
            {"key": VERDICTS_TAB, "data": verdict_rows(snapshot.get("verdicts", {}))},
            {"key": FAULTS_TAB, "data": fault_rows(data.windows, started_at=data.started_at)},
            {"key": CONTROLS_TAB, "data": upcoming_rows(data.schedule, started_at=data.started_at, now=now)}]


def install(web_ui: Any, environment: Any, tab_data: Callable[[], TabData], *,
            clock: Callable[[], float] = time.time) -> None:
    """Add the tabs, the fault controls tab and its routes to ``environment``'s web UI (at Locust's ``init``); each
    statistics poll reads ``tab_data()``."""
    web_ui.template_args["extended_tabs"] = EXTENDED_TABS
    web_ui.template_args["extended_tables"] = EXTENDED_TABLES
    options = environment.parsed_options
    base_path = str(getattr(options, "web_base_path", "") or "").rstrip("/")
    install_fault_panel(web_ui, ManifestFaultClient(lambda: _manifest(environment)), base_path=base_path)
    if getattr(options, "build_path", None):
        logger.warning("--build-path %s: Locust shows that UI, without the fault controls tab; the plain fault "
                       "controls page is at %s/cmg/faults", options.build_path, base_path)
    else:
        use_our_build(web_ui, base_path=base_path)

    @web_ui.app.after_request
    def add_extended_stats(response: Any) -> Any:
        from flask import request

        if not request.path.endswith("/stats/requests") or response.status_code != 200:
            return response
        data = response.get_json(silent=True)
        if not isinstance(data, dict):
            return response
        data["extended_stats"] = extended_stats(environment, tab_data(), now=clock())
        response.set_data(json.dumps(data))
        return response


def use_our_build(web_ui: Any, *, base_path: str = "") -> None:
    """Serve our build of the UI as Locust's page, as ``--build-path`` would: its ``index.html`` first in the template
    search (Locust's other templates, e.g. the login page and the report, still come from Locust), its bundle under
    ``cmg/ui``. Flask reads the template folder when it first renders, after Locust's ``init``."""
    from flask import Blueprint, send_from_directory
    from jinja2 import ChoiceLoader, FileSystemLoader

    app = web_ui.app
    loaders = [FileSystemLoader(str(BUILD_DIR))] + ([app.jinja_loader] if app.jinja_loader is not None else [])
    app.jinja_loader = ChoiceLoader(loaders)
    blueprint = Blueprint("cmg_harness_ui", __name__, url_prefix=base_path or None)

    @blueprint.route(f"{BUNDLE_PATH}/{BUNDLE}")
    @web_ui.auth_required_if_enabled
    def bundle() -> Any:
        return send_from_directory(BUILD_DIR, BUNDLE, mimetype="text/javascript", max_age=0)

    app.register_blueprint(blueprint)


def _manifest(environment: Any) -> SiteManifest:
    from harness.load.context import DEFAULT_SITE, load_site_manifest

    options = environment.parsed_options
    return load_site_manifest(Path(str(getattr(options, "site", "") or DEFAULT_SITE)))
