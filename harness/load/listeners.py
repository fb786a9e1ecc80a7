"""Locust event listeners: the cmg-harness options, the per-process run context, and the outcome tally.

Workers send their tally and verdict deltas with each stats report (``report_to_master``), the master merges them
(``worker_report``), and the master (or the single process) writes ``outcomes.json`` to ``--results-dir`` when the
test stops and again, complete with the workers' last reports, when Locust quits. Every process follows the site's
faults and judges its devices' outcomes against them; the master (or the single process) runs the ``--chaos``
schedule from test start, and resets the site's faults when the test stops or Locust quits.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from locust.runners import MasterRunner, WorkerRunner

from harness.chaos.recovery import RecoveryError, recovery_report
from harness.chaos.verdictbook import VerdictBook
from harness.chaos.watch import FaultFollower, FaultWatch
from harness.client.device import DeviceProfile
from harness.load.context import (
    DEFAULT_DEVICES_PER_USER,
    DEFAULT_SITE,
    LoadOptionError,
    LoadOptions,
    RunContext,
    load_site_manifest,
)
from harness.load.tally import OutcomeTally

log = logging.getLogger("harness.load")

#: The keys of the tally and verdict deltas in a worker's stats report.
TALLY_KEY = "cmg_harness_tally"
VERDICTS_KEY = "cmg_harness_verdicts"
OUTCOMES_FILE = "outcomes.json"
#: Seconds the fault poller waits for the site's control API.
FAULT_API_TIMEOUT = 5.0
#: The master's message to the workers with the fault list it read, and how long a worker trusts one.
FAULTS_MESSAGE = "cmg_harness_faults"
RELAY_MAX_AGE = 5.0


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
    group.add_argument("--chaos", default="",
                       help="a chaos schedule (YAML, see scenarios/): timed faults from test start, device shares "
                            "join the fleet mix")
    group.add_argument("--ca-file", default="",
                       help="trust this CA (PEM) for the CMG-style proxy's server certificate instead of the site CA")
    group.add_argument("--results-dir", default="", include_in_web_ui=False,
                       help="write outcomes.json here when the test stops")
    # Set by the master at test start so workers hand out device numbers that never collide.
    group.add_argument("--fleet-workers", type=int, default=1, include_in_web_ui=False, help="(internal)")


class LoadPlugin:
    """The listeners of one Locust process, with the state they share (tally, run context)."""

    def __init__(self) -> None:
        self.environment: Any = None
        self.tally = OutcomeTally()
        self.verdicts = VerdictBook(tally=self.tally)
        self.tally.verdicts = self.verdicts.snapshot
        self.context: RunContext | None = None
        self.watch: FaultWatch | None = None
        self.started_at: float | None = None  # when this process's current test started (epoch seconds)
        self._fault_clients: list[Any] = []
        self._recovery: list[dict[str, Any]] = []
        self._relayed: tuple[float, dict[str, Any]] | None = None
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
        from harness.load import gate_listener  # the gate monitor and the metrics exporter

        gate_listener.install(events, self)

    # ------------------------------------------------------------------------------------------ lifecycle of a run
    def on_init(self, environment: Any, **_: Any) -> None:
        """Check the options (a bad --chaos schedule stops a headless run at once) and point Locust at the site's
        CMG unless a host was given (a proxy under test, say)."""
        self.environment = environment
        if isinstance(environment.runner, WorkerRunner):
            environment.runner.register_message(FAULTS_MESSAGE, self.on_relayed_faults)
        options = environment.parsed_options
        if options is None or isinstance(environment.runner, WorkerRunner):
            return
        try:
            LoadOptions.from_namespace(options)
            if not environment.host:
                environment.host = load_site_manifest(Path(options.site)).cmg_url
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
        self._stop_watch()  # an earlier test's, if it is still going: its last verdicts land before the reset
        self.started_at = time.time()
        self._recovery = []
        self.tally.reset()
        self.verdicts.reset()
        if self.context is not None:
            self.context.close()
            self.context = None
        try:
            self.context = self.build_context(environment)
        except LoadOptionError as error:
            log.error("cmg-harness: %s", error)
            return
        self.watch = self._watch(self.context, runner)
        self.watch.start()

    def _watch(self, context: RunContext, runner: Any) -> FaultWatch:
        """Follow the site's faults; on the master (or a single process) also run the chaos schedule."""
        from harness.chaos.faultapi import FaultClient

        manifest = context.manifest
        worker = isinstance(runner, WorkerRunner)
        poller = FaultClient(manifest.faults_url, manifest.faults_token, timeout=FAULT_API_TIMEOUT)
        relay = (lambda document: runner.send_message(FAULTS_MESSAGE, document)) \
            if isinstance(runner, MasterRunner) else None
        follower = FaultFollower(poller.list, context.timeline, self.verdicts, context.verdict_settings,
                                 clock=time.time, relay=relay, fallback=self.relayed_faults if worker else None)
        schedule = None if worker else context.options.schedule
        switcher = FaultClient(manifest.faults_url, manifest.faults_token) if schedule is not None else None
        self._fault_clients = [client for client in (poller, switcher) if client is not None]
        return FaultWatch(follower, schedule=schedule, faults=switcher, clock=time.time)

    def _stop_watch(self) -> None:
        if self.watch is not None:
            self.watch.stop()
        for client in self._fault_clients:
            client.close()
        self._fault_clients = []

    def build_context(self, environment: Any) -> RunContext:
        """The run context for ``environment``'s options; the CMG URL follows the host Locust was given."""
        options = environment.parsed_options
        worker_index = max(getattr(environment.runner, "worker_index", 0), 0)
        context = RunContext.from_options(options, worker_index=worker_index, tally=self.tally,
                                          cmg_url=environment.host or None)
        if context.options.time_scale and context.options.time_scale != context.manifest.time_scale:
            log.warning("--time-scale %s differs from the site's %s; the site's applies", context.options.time_scale,
                        context.manifest.time_scale)
        return context

    def on_test_stop(self, environment: Any, **_: Any) -> None:
        self._stop_watch()  # stops the schedule (resetting the site's faults) and judges what is left
        self.write_outcomes(environment)

    def on_quit(self, exit_code: int = 0, **_: Any) -> None:
        self._stop_watch()
        if self.environment is not None:
            self.write_outcomes(self.environment)
        if self.context is not None:
            self.context.close()

    def on_reset_stats(self, **_: Any) -> None:
        self.tally.reset()
        self.verdicts.reset()

    def on_relayed_faults(self, environment: Any = None, msg: Any = None, **_: Any) -> None:
        """A worker keeps the fault list the master read last (used when it cannot reach the site's API)."""
        if msg is not None and isinstance(msg.data, dict):
            self._relayed = (time.time(), msg.data)

    def relayed_faults(self) -> dict[str, Any] | None:
        """The master's latest fault list, if it is recent enough to stand for the site's."""
        if self._relayed is None or time.time() - self._relayed[0] > RELAY_MAX_AGE:
            return None
        return self._relayed[1]

    # ------------------------------------------------------------------------------------------ distributed tally
    def on_report_to_master(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        data[TALLY_KEY] = self.tally.drain()
        data[VERDICTS_KEY] = self.verdicts.drain()

    def on_worker_report(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        delta = data.get(TALLY_KEY)
        if delta:
            self.tally.merge(delta)
        verdicts = data.get(VERDICTS_KEY)
        if verdicts:
            try:
                self.verdicts.merge(verdicts)
            except (AttributeError, TypeError, ValueError) as exc:
                log.error("cmg-harness: worker %s sent unreadable verdicts: %s", client_id, exc)

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
        tmp.write_text(json.dumps(self.outcomes(environment), indent=2))
        tmp.replace(path)
        return path

    def outcomes(self, environment: Any) -> dict[str, Any]:
        """What ``outcomes.json`` holds: the tally with its verdicts, the fault windows, recovery, the schedule."""
        document = self.tally.snapshot()
        document["test_started_at"] = self.started_at
        context = self.context
        windows = context.timeline.to_list() if context is not None else []
        document["fault_windows"] = windows
        try:
            entries = [{"name": e.name, "method": e.method, "num_reqs_per_sec": e.num_reqs_per_sec,
                        "num_fail_per_sec": e.num_fail_per_sec} for e in environment.runner.stats.entries.values()]
            # Locust's --json-file empties the entries when it writes them (before quit): keep what was measured.
            if any(entry["num_reqs_per_sec"] for entry in entries):
                self._recovery = recovery_report(windows, entries, run_end=time.time())
        except (AttributeError, RecoveryError) as exc:
            log.error("cmg-harness: recovery measures not available: %s", exc)
        document["recovery"] = self._recovery
        runner = self.watch.runner if self.watch is not None else None
        document["chaos"] = {
            "schedule": str(context.options.chaos) if context is not None and context.options.chaos else None,
            "applied": [{"name": fault.name, "role": fault.role, "at": at, "line": fault.line}
                        for at, fault in runner.applied] if runner is not None else [],
            "errors": list(runner.errors) if runner is not None else [],
        }
        return document


#: The plugin of this process (Locust runs one environment per process).
plugin = LoadPlugin()


def install(events: Any) -> None:
    """Register the cmg-harness options, listeners and web UI tabs on Locust's ``events``."""
    plugin.install(events)


def judge(profile: DeviceProfile, outcome: str | None, start: float, end: float, trail: Any) -> None:
    """The fleet driver's verdict hook: queue the outcome until this process's fault timeline has caught up."""
    plugin.verdicts.submit(profile, outcome, start=start, end=end, trail=trail)


def current_context(environment: Any) -> RunContext:
    """This process's run context (built at test start; built now if a user starts first)."""
    if plugin.context is None:
        plugin.context = plugin.build_context(environment)
    return plugin.context
