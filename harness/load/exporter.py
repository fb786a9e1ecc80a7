"""Client-side Prometheus metrics of a load run, served by the Locust master (or the single local process).

``--metrics-port N`` (0, the default, serves nothing) exposes ``/metrics`` on 127.0.0.1 from an own
``CollectorRegistry``. Every scrape reads the live numbers: Locust's statistics (the master's are the workers'
merged), the outcome tally, and the gate's latest verdicts. Names follow the client contract in
docs/observability.md; the gate adds ``cmg_client_gate_*``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from harness.fleet.tally import LIFECYCLE_REQUEST_TYPE
from harness.gates import GateResult, StatsEntry
from harness.latency.histograms import ExportBuckets
from mock_site.metrics import DURATION_BUCKETS

log = logging.getLogger("harness.load.exporter")

DEFAULT_METRICS_HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class ClientView:
    """What one scrape shows: statistics entries (cumulative), the outcome tally snapshot, the gate verdicts."""

    entries: Sequence[StatsEntry]
    outcomes: Mapping[str, Any]
    gate: GateResult | None = None
    #: The run's latency measures in Prometheus's buckets, by (kind, name, measure) (``LatencyBook.exported()``).
    latency: Mapping[tuple[str, str, str], ExportBuckets] = field(default_factory=dict)


def _histogram_buckets(times: Mapping[int, int], bounds: Sequence[float]) -> list[tuple[str, float]]:
    """Cumulative Prometheus buckets (seconds) from a Locust response time histogram (milliseconds)."""
    keys = sorted(times)
    buckets = []
    index = 0
    cumulative = 0
    for bound in bounds:
        while index < len(keys) and keys[index] <= bound * 1000.0:
            cumulative += times[keys[index]]
            index += 1
        buckets.append((repr(bound), float(cumulative)))
    buckets.append(("+Inf", float(sum(times.values()))))
    return buckets


#: The latency measures exported as histograms: metric name and help text by measure.
LATENCY_FAMILIES = {
    "service_ms": ("cmg_client_service_seconds", "Service time: from when a request was sent to its answer."),
    "lateness_ms": ("cmg_client_lateness_seconds",
                    "Lateness: from when a device meant to send a request to when the load generator sent it."),
    "corrected_ms": ("cmg_client_corrected_seconds",
                     "Corrected latency: from when a device meant to send a request to its answer."),
}


def outcome_counts(outcomes: Mapping[str, Any]) -> dict[tuple[str, str], int]:
    """Lifecycle outcomes by (reason, verdict): the tally's verdicts when it has them, else derived from its counts.

    Without verdicts, an outcome is ``unexpected`` as often as the tally counted that reason unexpected, and
    ``expected`` for the rest of the lifecycles that ended so.
    """
    verdicts = outcomes.get("verdicts")
    reasons = verdicts.get("reasons") if isinstance(verdicts, Mapping) else None
    counts: dict[tuple[str, str], int] = {}
    if isinstance(reasons, Mapping):
        for reason, by_verdict in reasons.items():
            for verdict in ("expected", "unexpected"):
                counts[(str(reason), verdict)] = int(by_verdict.get(verdict, 0))
        return counts
    ended = outcomes.get("outcomes") or {}
    unexpected = outcomes.get("unexpected") or {}
    for reason in sorted(set(ended) | set(unexpected)):
        surprise = int(unexpected.get(reason, 0))
        counts[(str(reason), "expected")] = max(int(ended.get(reason, 0)) - surprise, 0)
        counts[(str(reason), "unexpected")] = surprise
    return counts


class ClientCollector(Collector):
    """A Prometheus collector that reads a :class:`ClientView` at every scrape."""

    def __init__(self, view: Callable[[], ClientView], buckets: Sequence[float] = DURATION_BUCKETS) -> None:
        self._view = view
        self._buckets = tuple(buckets)
        # Counters must not go down: derived outcome counts can (a stage failure turns one unexpected), so each
        # series is held at its highest value until the tally starts afresh.
        self._outcome_floor: dict[tuple[str, str], int] = {}
        self._started = 0

    def describe(self) -> list[Metric]:
        return []  # read at scrape time only; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        view = self._view()
        yield from self._requests(view.entries)
        yield from self._latency(view.latency)
        yield from self._outcomes(view.outcomes)
        if view.gate is not None:
            yield from self._gate(view.gate)

    def _requests(self, entries: Sequence[StatsEntry]) -> Iterator[Metric]:
        by_name: dict[str, list[StatsEntry]] = {}
        by_stage: dict[str, list[StatsEntry]] = {}
        for entry in entries:
            (by_stage if entry.method == LIFECYCLE_REQUEST_TYPE else by_name).setdefault(entry.name, []).append(entry)
        requests = CounterMetricFamily("cmg_client_requests", "Requests the simulated clients sent, by result.",
                                       labels=["name", "result"])
        durations = HistogramMetricFamily("cmg_client_request_duration_seconds",
                                          "Request duration as the client measured it (network and TLS included).",
                                          labels=["name"])
        for name, group in sorted(by_name.items()):
            failures = sum(entry.num_failures for entry in group)
            requests.add_metric([name, "success"], sum(entry.num_requests for entry in group) - failures)
            requests.add_metric([name, "failure"], failures)
            durations.add_metric([name], *self._histogram(group))
        stages = HistogramMetricFamily("cmg_client_lifecycle_stage_seconds",
                                       "Duration of each lifecycle stage, from its first request to its last reply.",
                                       labels=["stage"])
        for stage, group in sorted(by_stage.items()):
            stages.add_metric([stage], *self._histogram(group))
        yield from (requests, durations, stages)

    def _latency(self, exported: Mapping[tuple[str, str, str], ExportBuckets]) -> Iterator[Metric]:
        """Service time, lateness and corrected latency per request name and lifecycle stage."""
        families = {measure: HistogramMetricFamily(name, what, labels=["kind", "name"])
                    for measure, (name, what) in LATENCY_FAMILIES.items()}
        for (kind, name, measure), buckets in sorted(exported.items(), key=lambda item: item[0]):
            family = families.get(measure)
            if family is not None:
                family.add_metric([kind, name], *buckets.cumulative())
        yield from families.values()

    def _histogram(self, group: Sequence[StatsEntry]) -> tuple[list[tuple[str, float]], float]:
        times: dict[int, int] = {}
        for entry in group:
            for key, count in entry.response_times.items():
                times[key] = times.get(key, 0) + count
        total_seconds = sum(entry.total_response_time for entry in group) / 1000.0
        return _histogram_buckets(times, self._buckets), total_seconds

    def _outcomes(self, outcomes: Mapping[str, Any]) -> Iterator[Metric]:
        devices = outcomes.get("devices") or {}
        lifecycles = outcomes.get("lifecycles") or {}
        started = int(devices.get("started", 0))
        if started < self._started:  # the tally was reset: a new test
            self._outcome_floor = {}
        self._started = started
        family = CounterMetricFamily("cmg_client_outcomes", "Lifecycle outcomes by reason code and verdict.",
                                     labels=["reason", "verdict"])
        for key, count in sorted(outcome_counts(outcomes).items()):
            value = max(count, self._outcome_floor.get(key, 0))
            self._outcome_floor[key] = value
            family.add_metric(list(key), value)
        yield family
        ended = int(lifecycles.get("succeeded", 0)) + int(lifecycles.get("failed", 0))
        yield GaugeMetricFamily("cmg_client_devices_active", "Simulated devices running now.",
                                value=max(started - ended, 0))
        renewals = CounterMetricFamily("cmg_client_renewals", "CCM token renewals.")
        renewals.add_metric([], int((outcomes.get("events") or {}).get("renewed", 0)))
        yield renewals

    def _gate(self, gate: GateResult) -> Iterator[Metric]:
        passed = GaugeMetricFamily("cmg_client_gate_passed", "1 while every gate threshold holds, else 0.",
                                   value=1 if gate.passed else 0)
        ok = GaugeMetricFamily("cmg_client_gate_threshold_ok", "1 while the gate threshold holds, else 0.",
                               labels=["threshold"])
        measured = GaugeMetricFamily("cmg_client_gate_threshold_measured",
                                     "The value the gate threshold measures now (ms, ratio, per second or count).",
                                     labels=["threshold"])
        limit = GaugeMetricFamily("cmg_client_gate_threshold_limit", "The gate threshold's limit, in its unit.",
                                  labels=["threshold"])
        for result in gate.results:
            label = [result.threshold.id]
            ok.add_metric(label, 1 if result.passed else 0)
            limit.add_metric(label, result.threshold.limit)
            if result.measured is not None:
                measured.add_metric(label, result.measured)
        yield from (passed, ok, measured, limit)


def metrics_registry(view: Callable[[], ClientView]) -> CollectorRegistry:
    """An own registry holding only the client collector (never the process-global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClientCollector(view))
    return registry


def add_arguments(parser: Any) -> None:
    """The exporter's Locust options."""
    parser.add_argument("--metrics-port", type=int, default=0, include_in_web_ui=False,
                        help="serve client metrics for Prometheus on this port (default 0: off); master or "
                             "single process only")
    parser.add_argument("--metrics-host", default=DEFAULT_METRICS_HOST, include_in_web_ui=False,
                        help=f"address of the metrics listener (default {DEFAULT_METRICS_HOST})")


class Exporter:
    """Serves ``/metrics`` from a gevent WSGI server in the Locust process, each scrape reading ``view()``.

    One per environment, made and fed its events by the environment's plugin (``harness.load.listeners``).
    """

    def __init__(self, view: Callable[[], ClientView]) -> None:
        self._view = view
        self.server: Any = None

    def on_init(self, environment: Any, **_: Any) -> None:
        """Start serving when ``--metrics-port`` is set, on the master or the single process only."""
        from gevent.pywsgi import WSGIServer
        from locust.runners import WorkerRunner
        from prometheus_client import make_wsgi_app

        options = environment.parsed_options
        port = int(getattr(options, "metrics_port", 0) or 0) if options is not None else 0
        if not port or isinstance(environment.runner, WorkerRunner):
            return
        host = str(getattr(options, "metrics_host", DEFAULT_METRICS_HOST) or DEFAULT_METRICS_HOST)
        if not 0 < port < 65536:
            raise SystemExit(f"cmg-harness: --metrics-port must be 1..65535 (or 0: off), got {port}")
        server = WSGIServer((host, port), make_wsgi_app(metrics_registry(self._view)), log=None, error_log=log)
        try:
            server.start()
        except OSError as error:
            raise SystemExit(f"cmg-harness: --metrics-port {port}: cannot listen on {host}: {error}") from None
        self.server = server
        log.info("client metrics on http://%s:%d/metrics", host, port)

    def on_quit(self, **_: Any) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.stop(timeout=1)

