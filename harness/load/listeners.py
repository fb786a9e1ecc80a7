"""Locust event listeners: the cmg-harness options, and the per-environment plugin that holds a run's state.

``install(events)`` registers the options and an ``init`` listener; at ``init`` each Locust ``Environment`` gets its
own :class:`LoadPlugin` (``plugin_of(environment)``): the outcome tally and verdict book, the current test's run
context, the fault watch, the gate monitor and the metrics exporter. Users, the web UI tabs, the gate and the
exporter get what they need from that object, never from a module global, so two environments in one process (as
tests create them) share nothing.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any
from weakref import WeakSet

from locust.runners import MasterRunner, WorkerRunner

from harness.chaos.faultapi import FaultClient
from harness.chaos.recovery import RecoveryError, recovery_report
from harness.chaos.verdictbook import VerdictBook
from harness.chaos.watch import FaultFollower, FaultWatch
from harness.client.device import DeviceProfile
from harness.fleet.tally import OutcomeTally
from harness.latency.histograms import LatencyBook, LatencyError
from harness.load.collector import settle_heap
from harness.load.context import (
    DEFAULT_DEVICES_PER_USER,
    DEFAULT_SITE,
    LoadOptionError,
    LoadOptions,
    RunContext,
    load_site_manifest,
)
from harness.load.exporter import ClientView, Exporter
from harness.load.exporter import add_arguments as add_exporter_arguments
from harness.load.gate_listener import GateMonitor, stats_entries
from harness.load.gate_listener import add_arguments as add_gate_arguments
from harness.load.open_model import CLOSED, OPEN
from harness.load.open_model import add_arguments as add_open_model_arguments
from harness.load.progress import ProgressMonitor
from harness.load.webui import TabData
from harness.load.webui import install as install_tabs

log = logging.getLogger("harness.load")

#: The keys of the tally and verdict deltas in a worker's stats report.
TALLY_KEY = "cmg_harness_tally"
LATENCY_KEY = "cmg_harness_latency"
VERDICTS_KEY = "cmg_harness_verdicts"
OUTCOMES_FILE = "outcomes.json"
#: Seconds the fault poller waits for the site's control API.
FAULT_API_TIMEOUT = 5.0
#: The master's message to the workers with the fault list it read, and how long a worker trusts one.
FAULTS_MESSAGE = "cmg_harness_faults"
#: The master's message to the workers with the capacity search's arrival rate.
RATE_MESSAGE = "cmg_harness_rate"
BACKLOG_KEY = "cmg_harness_backlog"
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
    add_open_model_arguments(group)
    # Set by the master at test start so workers hand out device numbers that never collide.
    group.add_argument("--fleet-workers", type=int, default=1, include_in_web_ui=False, help="(internal)")


#: The attribute of a Locust ``Environment`` that holds its plugin.
PLUGIN_ATTRIBUTE = "cmg_harness"


class LoadPlugin:
    """The cmg-harness state of one Locust environment (one per process in a Locust run), and its listeners."""

    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self.tally = OutcomeTally()
        #: Service time, lateness and corrected latency per request and stage (merged from workers on the master).
        self.latency = LatencyBook()
        self.verdicts = VerdictBook(tally=self.tally)
        self.tally.verdicts = self.verdicts.snapshot
        self.context: RunContext | None = None
        self.watch: FaultWatch | None = None
        self.started_at: float | None = None  # when this process's current test started (epoch seconds)
        self.monitor = GateMonitor(self.tally.snapshot, latency=self.latency)
        self.exporter = Exporter(self.client_view)
        #: Writes the live status (``progress.json``) that ``cmg-harness run`` shows while it waits.
        self.progress = ProgressMonitor(self)
        self._fault_clients: list[Any] = []
        self._in_flight: tuple[int, Any] | None = None
        #: The open-model users of this process (their backlog is the capacity search's measure of falling behind).
        self.open_users: WeakSet[Any] = WeakSet()
        #: The arrival rate a capacity search asks for now (new devices per second, over the whole run).
        self.target_rate_per_s = 0.0
        self._recovery: list[dict[str, Any]] = []
        self._relayed: tuple[float, dict[str, Any]] | None = None
        self._worker_backlogs: dict[str, int] = {}

    def bind(self, events: Any) -> None:
        """Register this environment's listeners on ``events``.

        Locust fires some events without naming the environment (reset, reports, quit): an events object shared by two
        environments would deliver those to both, so give each environment its own (``Environment()`` does).
        """
        listen = self._listen
        listen(events.test_start, self.on_test_start, self.monitor.on_test_start, self.progress.on_test_start)
        listen(events.test_stop, self.on_test_stop, self.monitor.on_test_stop, self.progress.on_test_stop)
        listen(events.reset_stats, self.on_reset_stats)
        listen(events.report_to_master, self.on_report_to_master)
        listen(events.worker_report, self.on_worker_report)
        listen(events.quit, self.on_quit, self.monitor.on_quit, self.exporter.on_quit, self.progress.on_quit)

    def _listen(self, hook: Any, *handlers: Callable[..., None]) -> None:
        for handler in handlers:
            hook.add_listener(self._own(handler))

    def _own(self, handler: Callable[..., None]) -> Callable[..., None]:
        """``handler``, called only for this environment's events (and for those that name no environment)."""
        def listener(**kwargs: Any) -> None:
            if kwargs.get("environment", self.environment) is self.environment:
                handler(**kwargs)
        return listener

    # ------------------------------------------------------------------------------------------ lifecycle of a run
    def on_init(self, web_ui: Any = None) -> None:
        """Check the options (a bad --chaos schedule stops a headless run at once), point Locust at the site's
        CMG unless a host was given (a proxy under test, say), add the web UI tabs, and start the gate and the
        metrics exporter."""
        environment = self.environment
        # The fault follower asks the site's control API every second: one httpx INFO line each would bury Locust's.
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._check_options(environment)
        web_ui = web_ui or getattr(environment, "web_ui", None)
        if web_ui is not None:
            install_tabs(web_ui, environment, self.tab_data)
        self.monitor.on_init(environment)
        self.exporter.on_init(environment)

    def _check_options(self, environment: Any) -> None:
        if isinstance(environment.runner, WorkerRunner):
            environment.runner.register_message(FAULTS_MESSAGE, self.on_relayed_faults)
            environment.runner.register_message(RATE_MESSAGE, self.on_rate)
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
        runner = environment.runner
        if isinstance(runner, MasterRunner):
            # Sent to the workers with the spawn message, before any user starts.
            environment.parsed_options.fleet_workers = max(runner.worker_count, 1)
        self._stop_watch()  # an earlier test's, if it is still going: its last verdicts land before the reset
        self.started_at = time.time()
        self._recovery = []
        self.tally.reset()
        self.latency.reset()
        self.verdicts.reset()
        if self.context is not None:
            self.context.close()
            self.context = None
        try:
            self.context = self.build_context()
        except LoadOptionError as error:
            log.error("cmg-harness: %s", error)
            return
        self.watch = self._watch(self.context, runner)
        self.watch.start()
        settle_heap()  # the heap built so far is never scanned again: collector pauses would read as lateness

    def _watch(self, context: RunContext, runner: Any) -> FaultWatch:
        """Follow the site's faults; on the master (or a single process) also run the chaos schedule."""
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

    def build_context(self) -> RunContext:
        """The run context for the environment's options; the CMG URL follows the host Locust was given."""
        environment = self.environment
        options = environment.parsed_options
        worker_index = max(getattr(environment.runner, "worker_index", 0), 0)
        context = RunContext.from_options(options, worker_index=worker_index, tally=self.tally,
                                          cmg_url=environment.host or None)
        if context.options.time_scale and context.options.time_scale != context.manifest.time_scale:
            log.warning("--time-scale %s differs from the site's %s; the site's applies", context.options.time_scale,
                        context.manifest.time_scale)
        return context

    def current_context(self) -> RunContext:
        """This process's run context (built at test start; built now if a user starts first)."""
        if self.context is None:
            self.context = self.build_context()
        return self.context

    def judge(self, profile: DeviceProfile, outcome: str | None, start: float, end: float, trail: Any) -> None:
        """The fleet driver's verdict hook: queue the outcome until this process's fault timeline has caught up."""
        self.verdicts.submit(profile, outcome, start=start, end=end, trail=trail)

    def on_test_stop(self, environment: Any, **_: Any) -> None:
        self._stop_watch()  # stops the schedule (resetting the site's faults) and judges what is left
        self.write_outcomes()

    def on_quit(self, exit_code: int = 0, **_: Any) -> None:
        self._stop_watch()
        self.write_outcomes()
        if self.context is not None:
            self.context.close()

    def on_reset_stats(self, **_: Any) -> None:
        self.tally.reset()
        self.latency.reset()
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
        data[LATENCY_KEY] = self.latency.drain()
        data[BACKLOG_KEY] = self.backlog()
        data[VERDICTS_KEY] = self.verdicts.drain()

    def on_worker_report(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        delta = data.get(TALLY_KEY)
        if delta:
            self.tally.merge(delta)
        backlog = data.get(BACKLOG_KEY)
        if isinstance(backlog, int):
            self._worker_backlogs[client_id] = backlog
        latency = data.get(LATENCY_KEY)
        if latency:
            try:
                self.latency.merge(latency)
            except LatencyError as exc:
                log.error("cmg-harness: worker %s sent unreadable latency histograms: %s", client_id, exc)
        verdicts = data.get(VERDICTS_KEY)
        if verdicts:
            try:
                self.verdicts.merge(verdicts)
            except (AttributeError, TypeError, ValueError) as exc:
                log.error("cmg-harness: worker %s sent unreadable verdicts: %s", client_id, exc)

    def set_target_rate(self, rate_per_s: float) -> None:
        """Ask this process's open users (and, from a master, every worker's) for ``rate_per_s`` arrivals a second."""
        self.target_rate_per_s = rate_per_s
        runner = self.environment.runner
        if isinstance(runner, MasterRunner):
            runner.send_message(RATE_MESSAGE, {"rate_per_s": rate_per_s})

    def on_rate(self, environment: Any = None, msg: Any = None, **_: Any) -> None:
        """A worker takes the master's arrival rate."""
        if msg is not None and isinstance(msg.data, dict) and isinstance(msg.data.get("rate_per_s"), (int, float)):
            self.target_rate_per_s = float(msg.data["rate_per_s"])

    def backlog(self) -> int:
        """Due work not yet sent, over this process's open users and (on a master) the workers' last reports."""
        return sum(user.backlog() for user in list(self.open_users)) + sum(self._worker_backlogs.values())

    def in_flight_slots(self, limit: int) -> Any:
        """The process's semaphore of ``limit`` outstanding requests (open model), shared by all its users."""
        if self._in_flight is None or self._in_flight[0] != limit:
            from gevent.lock import BoundedSemaphore  # only in a Locust process, which gevent already patched

            self._in_flight = (limit, BoundedSemaphore(limit))
        return self._in_flight[1]

    # ------------------------------------------------------------------------------------------ what others read
    def tab_data(self) -> TabData:
        """What the web UI's extra tabs show now."""
        context = self.context
        return TabData(snapshot=self.tally.snapshot(), windows=context.timeline.to_list() if context else [],
                       started_at=self.started_at, schedule=context.options.schedule if context else None)

    def client_view(self) -> ClientView:
        """What a scrape of the metrics exporter shows now: Locust's statistics, the tally, the gate's verdicts."""
        return ClientView(entries=stats_entries(self.environment.runner.stats), outcomes=self.tally.snapshot(),
                          gate=self.monitor.latest, latency=self.latency.exported())

    def measures(self) -> dict[str, Any]:
        """The run's model and its three measures (service, lateness, corrected) with achieved versus intended rates."""
        context = self.context
        model = context.open_model if context is not None else None
        summary = self.latency.summary()
        elapsed = max(time.time() - self.started_at, 1e-9) if self.started_at is not None else None
        sent = sum(values["service_ms"]["count"] for values in summary["requests"].values())
        intended = sent + summary["unsent"]
        rates: dict[str, Any] = {
            "requests_sent": sent,
            "requests_intended": intended,
            "achieved_rate_ratio": round(sent / intended, 4) if intended else 1.0,
            "achieved_per_s": round(sent / elapsed, 3) if elapsed else None,
            "intended_per_s": round(intended / elapsed, 3) if elapsed else None,
        }
        if model is not None and model.arrivals is not None and elapsed is not None:
            rates["devices_intended"] = min(model.arrivals.total(), round(model.arrivals.arrivals_by(elapsed)))
        rates["devices_started"] = self.tally.snapshot()["devices"].get("started", 0)
        return {
            "model": OPEN if model is not None else CLOSED,
            "model_description": model.describe() if model is not None else
            "closed model: each Locust user plays its devices one after another",
            # The whole-run histograms too, so a gate merges any set of names exactly.
            "latency": {**summary, "histograms": self.latency.encoded()},
            "rates": rates,
        }

    # ------------------------------------------------------------------------------------------ results
    def write_outcomes(self) -> Path | None:
        """Write ``outcomes.json`` to ``--results-dir`` (master or single process only); returns its path."""
        environment = self.environment
        options = environment.parsed_options
        results = getattr(options, "results_dir", "") if options is not None else ""
        if not results or isinstance(environment.runner, WorkerRunner):
            return None
        path = Path(results) / OUTCOMES_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.outcomes(), indent=2))
        tmp.replace(path)
        return path

    def outcomes(self) -> dict[str, Any]:
        """What ``outcomes.json`` holds: the tally with its verdicts, the fault windows, recovery, the schedule."""
        document = self.tally.snapshot()
        document["test_started_at"] = self.started_at
        context = self.context
        windows = context.timeline.to_list() if context is not None else []
        document["fault_windows"] = windows
        try:
            entries = [{"name": e.name, "method": e.method, "num_reqs_per_sec": e.num_reqs_per_sec,
                        "num_fail_per_sec": e.num_fail_per_sec}
                       for e in self.environment.runner.stats.entries.values()]
            # Locust's --json-file empties the entries when it writes them (before quit): keep what was measured.
            if any(entry["num_reqs_per_sec"] for entry in entries):
                self._recovery = recovery_report(windows, entries, run_end=time.time())
        except (AttributeError, RecoveryError) as exc:
            log.error("cmg-harness: recovery measures not available: %s", exc)
        document["recovery"] = self._recovery
        document.update(self.measures())
        runner = self.watch.runner if self.watch is not None else None
        document["chaos"] = {
            "schedule": str(context.options.chaos) if context is not None and context.options.chaos else None,
            "applied": [{"name": fault.name, "role": fault.role, "at": at, "line": fault.line}
                        for at, fault in runner.applied] if runner is not None else [],
            "errors": list(runner.errors) if runner is not None else [],
        }
        return document


#: The events objects install() has registered on (a locustfile may be loaded twice; Locust keeps one per process).
_installed: WeakSet[Any] = WeakSet()


def install(events: Any) -> None:
    """Register the cmg-harness options and, at Locust's ``init``, one :class:`LoadPlugin` per environment."""
    if events in _installed:
        return
    _installed.add(events)
    for add in (add_arguments, add_gate_arguments, add_exporter_arguments):
        events.init_command_line_parser.add_listener(add)
    events.init.add_listener(on_init)


def on_init(environment: Any, web_ui: Any = None, **_: Any) -> None:
    """Locust's ``init``: give ``environment`` its plugin and set it up (options checked, tabs, gate, exporter)."""
    plugin_of(environment).on_init(web_ui=web_ui)


def plugin_of(environment: Any) -> LoadPlugin:
    """The plugin of ``environment``: made (and its listeners bound) at Locust's ``init``, or on first use."""
    plugin = getattr(environment, PLUGIN_ATTRIBUTE, None)
    if not isinstance(plugin, LoadPlugin):
        plugin = LoadPlugin(environment)
        setattr(environment, PLUGIN_ATTRIBUTE, plugin)
        plugin.bind(environment.events)
    return plugin
