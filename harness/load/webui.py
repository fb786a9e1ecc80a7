"""Two extra tabs in Locust's web UI: the live CMGService-style table per RequestUri, and the lifecycle outcomes.

Locust's React UI shows extra tabs named in ``template_args["extended_tabs"]`` with the columns of
``template_args["extended_tables"]``, filled from ``extended_stats`` in each ``/stats/requests`` poll; we add that
list to the JSON in an ``after_request`` hook. The CMGService numbers come from Locust's own request statistics
(count, response bytes, elapsed time) plus the tally's request bytes and answered-request counts.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from harness.load.tally import MILESTONES, cmgservice_table

if TYPE_CHECKING:
    from harness.load.listeners import LoadPlugin

CMG_TAB = "cmg-traffic"
OUTCOMES_TAB = "lifecycle-outcomes"

EXTENDED_TABS = [{"title": "CMG traffic", "key": CMG_TAB}, {"title": "Lifecycle outcomes", "key": OUTCOMES_TAB}]
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
]


def outcome_rows(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """The lifecycle outcome tab's rows from a tally snapshot: milestones, lifecycle ends, then failures by reason."""
    devices, events, lifecycles = snapshot["devices"], snapshot["events"], snapshot["lifecycles"]
    rows = [{"measure": "devices started", "count": devices["started"]}]
    rows += [{"measure": f"devices {milestone}", "count": devices[milestone]} for milestone in MILESTONES]
    rows += [{"measure": "token renewals", "count": events["renewed"]},
             {"measure": "policy cycles", "count": events["polled"]},
             {"measure": "lifecycles succeeded", "count": lifecycles["succeeded"]},
             {"measure": "lifecycles failed", "count": lifecycles["failed"]},
             {"measure": "unexpected failures", "count": lifecycles["unexpected_failures"]}]
    rows += [{"measure": f"failed: {reason}", "count": count}
             for reason, count in snapshot["outcomes"].items() if reason != "success"]
    rows += [{"measure": f"failed stage: {stage}", "count": count}
             for stage, count in snapshot["stage_failures"].items()]
    return rows


def extended_stats(plugin: LoadPlugin, environment: Any) -> list[dict[str, Any]]:
    """The ``extended_stats`` list the UI polls: one entry of rows per extra tab."""
    snapshot = plugin.tally.snapshot()
    entries = []
    runner = environment.runner
    if runner is not None:
        for entry in runner.stats.entries.values():
            entries.append({"name": entry.name, "method": entry.method, "num_requests": entry.num_requests,
                            "total_content_length": entry.total_content_length,
                            "total_response_time": entry.total_response_time})
    return [{"key": CMG_TAB, "data": cmgservice_table(entries, snapshot["requests"])},
            {"key": OUTCOMES_TAB, "data": outcome_rows(snapshot)}]


def install(events: Any, plugin: LoadPlugin) -> None:
    """Add the tabs once the web UI exists (Locust's ``init`` event)."""

    def on_init(environment: Any, web_ui: Any = None, **_: Any) -> None:
        web_ui = web_ui or environment.web_ui
        if web_ui is None:
            return
        web_ui.template_args["extended_tabs"] = EXTENDED_TABS
        web_ui.template_args["extended_tables"] = EXTENDED_TABLES

        @web_ui.app.after_request
        def add_extended_stats(response: Any) -> Any:
            from flask import request

            if not request.path.endswith("/stats/requests") or response.status_code != 200:
                return response
            data = response.get_json(silent=True)
            if not isinstance(data, dict):
                return response
            data["extended_stats"] = extended_stats(plugin, environment)
            response.set_data(json.dumps(data))
            return response

    events.init.add_listener(on_init)
