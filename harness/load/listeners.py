"""Locust event listeners: the cmg-harness options, the per-process run context, and the outcome tally.

Workers send their tally deltas with each stats report (``report_to_master``), the master merges them
(``worker_report``), and the master (or the single process) writes ``outcomes.json`` to ``--results-dir`` when the
test stops and again, complete with the workers' last reports, when Locust quits.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from locust.runners import MasterRunner, WorkerRunner

from harness.load.context import DEFAULT_DEVICES_PER_USER, DEFAULT_SITE, LoadOptionError, RunContext, load_site_manifest
from harness.load.tally import OutcomeTally

log = logging.getLogger("harness.load")

#: The key of the tally delta in a worker's stats report.
TALLY_KEY = "cmg_harness_tally"
OUTCOMES_FILE = "outcomes.json"


def add_arguments(parser: Any) -> None:
    """The cmg-harness options of a Locust run; all but the internal ones show in the web UI's start form."""
    # On the parser itself, not a group: only Locust's own add_argument knows include_in_web_ui.
    group = parser
    group.add_argument("--site", default=os.environ.get("CMG_HARNESS_SITE", DEFAULT_SITE),
                       help="the site manifest written by `cmg-harness up` (site.json)")
    group.add_argument("--time-scale", type=float, default=0.0,
                       help="for reference: the site's time scale decides (0: take the site's)")
    group.add_argument("--fleet-mix", default="",
                       help="device traits by share, e.g. wpj_missing=0.2,root_ca_missing=0.05")
    group.add_argument("--fleet-seed", type=int, default=1, help="the same seed plays the same devices")
    group.add_argument("--devices-per-user", type=int, default=DEFAULT_DEVICES_PER_USER,
                       help="simulated devices each Locust user plays")
    group.add_argument("--results-dir", default="", include_in_web_ui=False,
                       help="write outcomes.json here when the test stops")
    # Set by the master at test start so workers hand out device numbers that never collide.
    group.add_argument("--fleet-workers", type=int, default=1, include_in_web_ui=False, help="(internal)")


class LoadPlugin:
    """The listeners of one Locust process, with the state they share (tally, run context)."""

    def __init__(self) -> None:
        self.environment: Any = None
        self.tally = OutcomeTally()
        self.context: RunContext | None = None
        self._installed: set[int] = set()

    def install(self, events: Any) -> None:
        """Register every listener on ``events`` (safe to call again: a locustfile may be loaded twice)."""
        if id(events) in self._installed:
            return
        self._installed.add(id(events))
        events.init_command_line_parser.add_listener(add_arguments)
        events.init.add_listener(self.on_init)
        events.test_start.add_listener(self.on_test_start)
        events.test_stop.add_listener(self.on_test_stop)
        events.reset_stats.add_listener(self.on_reset_stats)
        events.report_to_master.add_listener(self.on_report_to_master)
        events.worker_report.add_listener(self.on_worker_report)
        events.quit.add_listener(self.on_quit)
        from harness.load import webui

        webui.install(events, self)

    # ------------------------------------------------------------------------------------------ lifecycle of a run
    def on_init(self, environment: Any, **_: Any) -> None:
        """Point Locust at the site's CMG unless a host was given (a proxy under test, say)."""
        self.environment = environment
        options = environment.parsed_options
        if options is None or isinstance(environment.runner, WorkerRunner) or environment.host:
            return
        try:
            environment.host = load_site_manifest(Path(options.site))["cmg_url"]
        except LoadOptionError as error:
            log.error("%s", error)
            if getattr(options, "headless", False):
                raise SystemExit(f"cmg-harness: {error}") from None

    def on_test_start(self, environment: Any, **_: Any) -> None:
        """Start counting afresh and build this process's run context from the (possibly web-UI-edited) options."""
        self.environment = environment
        runner = environment.runner
        if isinstance(runner, MasterRunner):
            # Sent to the workers with the spawn message, before any user starts.
            environment.parsed_options.fleet_workers = max(runner.worker_count, 1)
        self.tally.reset()
        if self.context is not None:
            self.context.close()
            self.context = None
        try:
            self.context = self.build_context(environment)
        except LoadOptionError as error:
            log.error("cmg-harness: %s", error)

    def build_context(self, environment: Any) -> RunContext:
        """The run context for ``environment``'s options; the CMG URL follows the host Locust was given."""
        options = environment.parsed_options
        worker_index = max(getattr(environment.runner, "worker_index", 0), 0)
        context = RunContext.from_options(options, worker_index=worker_index, tally=self.tally,
                                          cmg_url=environment.host or None)
        if context.options.time_scale and context.options.time_scale != context.manifest.get("time_scale"):
            log.warning("--time-scale %s differs from the site's %s; the site's applies", context.options.time_scale,
                        context.manifest.get("time_scale"))
        return context

    def on_test_stop(self, environment: Any, **_: Any) -> None:
        self.write_outcomes(environment)

    def on_quit(self, exit_code: int = 0, **_: Any) -> None:
        if self.environment is not None:
            self.write_outcomes(self.environment)
        if self.context is not None:
            self.context.close()

    def on_reset_stats(self, **_: Any) -> None:
        self.tally.reset()

    # ------------------------------------------------------------------------------------------ distributed tally
    def on_report_to_master(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        data[TALLY_KEY] = self.tally.drain()

    def on_worker_report(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        delta = data.get(TALLY_KEY)
        if delta:
            self.tally.merge(delta)

    # ------------------------------------------------------------------------------------------ results
    def write_outcomes(self, environment: Any) -> Path | None:
        """Write ``outcomes.json`` to ``--results-dir`` (master or single process only); returns its path."""
        options = environment.parsed_options
        results = getattr(options, "results_dir", "") if options is not None else ""
        if not results or isinstance(environment.runner, WorkerRunner):
            return None
        path = Path(results) / OUTCOMES_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.tally.snapshot(), indent=2))
        tmp.replace(path)
        return path


#: The plugin of this process (Locust runs one environment per process).
plugin = LoadPlugin()


def install(events: Any) -> None:
    """Register the cmg-harness options, listeners and web UI tabs on Locust's ``events``."""
    plugin.install(events)


def current_context(environment: Any) -> RunContext:
    """This process's run context (built at test start; built now if a user starts first)."""
    if plugin.context is None:
        plugin.context = plugin.build_context(environment)
    return plugin.context
