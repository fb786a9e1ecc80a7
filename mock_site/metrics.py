"""Prometheus metrics per site role, and the CMGService.log and connection point traffic numbers."""

from __future__ import annotations

import asyncio
import bisect
import math
import re
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from cmg_protocol.clock import Clock
from cmg_protocol.logformat import cmgservice_text

#: Request duration buckets; they hold every threshold the default gates use (5 ms .. 10 s).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Body size buckets: small CCM messages (~2 KB for CCM_STS) up to client content downloads.
BYTE_BUCKETS = (128.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0)
TOKEN_KINDS = ("ccm", "entra")
#: HTTP methods kept as label values; anything else is counted as ``other``.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CCM_POST"})
#: At most this many endpoint label values per role: a caller that passes raw paths cannot blow up the series count.
MAX_ENDPOINTS = 128
OTHER = "other"
#: The CMGService row that collects request URIs beyond the bound.
OTHER_REQUEST_URI = "(other)"  # synthetic: not the public ConfigMgr format

# Label values that come from our own code (fault names, reasons, results, targets): short snake_case words.
_WORD = re.compile(r"[a-z][a-z0-9_]{0,47}")


class MetricLabelError(ValueError):
    """A label value is outside the closed set the metric allows; the message names it."""


_STATUS_TEXT = re.compile(r"[A-Za-z][A-Za-z_]{0,47}")


def _word(value: object, what: str) -> str:
    if not isinstance(value, str) or not _WORD.fullmatch(value):
        raise MetricLabelError(f"{what} must be a snake_case word of at most 48 characters: {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class _Families:
    """The metric families of one registry, shared by every role that reports into it."""

    requests: _FastFamily
    request_size: _FastFamily
    response_size: _FastFamily
    duration: _FastFamily
    in_flight: _FastFamily
    fault_injections: Counter
    tokens_issued: Counter
    tokens_rejected: Counter
    registrations: Counter
    crl_fetches: Counter
    forward_errors: Counter
    error_responses: Counter


class _FastChild:
    """One labelled series of a hot-path metric: a plain float, changed only from the site's event loop.

    prometheus_client takes a lock for every increment and walks the bucket list for every observation; the request
    path records some 15 observations per policy poll across CMG, connection point and MP, which cost 8–9 % of the
    chain's throughput that way. These children do the same bookkeeping without locks (one event loop mutates them;
    a scrape reads them on that same loop or reads a value a moment old) and find buckets by bisection.
    """

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount


class _FastHistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # Prometheus buckets are "less than or equal": the first bound >= value.
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value


class _FastFamily:
    """A counter, gauge or histogram family of :class:`_FastChild` series, exposed through a custom collector."""

    def __init__(self, kind: str, name: str, documentation: str, labelnames: list[str], registry: CollectorRegistry,
                 buckets: tuple[float, ...] = ()) -> None:
        self.kind = kind
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.bounds = tuple(float(b) for b in buckets if b != math.inf)
        self.children: dict[tuple[str, ...], Any] = {}
        registry.register(self)

    def labels(self, *values: str) -> Any:
        key = tuple(str(v) for v in values)
        child = self.children.get(key)
        if child is None:
            child = _FastHistogramChild(self.bounds) if self.kind == "histogram" else _FastChild()
            self.children[key] = child
        return child

    def describe(self) -> list[Any]:
        return list(self._families(()))

    def collect(self) -> list[Any]:
        return list(self._families(list(self.children.items())))

    def _families(self, items: Any) -> Any:
        if self.kind == "counter":
            family: Any = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
            for key, child in items:
                family.add_metric(list(key), child.value)
        elif self.kind == "gauge":
            family = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
            for key, child in items:
                family.add_metric(list(key), child.value)
        else:
            family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
            for key, child in items:
                running, buckets = 0, []
                for bound, count in zip(self.bounds + (math.inf,), child.counts, strict=True):
                    running += count
                    buckets.append((floatToGoString(bound), running))
                family.add_metric(list(key), buckets, child.sum)
        yield family


# Several roles run in one process with one registry; a family may be registered there only once.
_FAMILIES: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()
_FAMILIES_LOCK = threading.Lock()


def _families(registry: CollectorRegistry) -> _Families:
    with _FAMILIES_LOCK:
        families = _FAMILIES.get(registry)
        if families is None:
            r = registry
            families = _Families(
                requests=_FastFamily(
                    "counter", "cmg_requests", "Requests answered, by route template.",
                    ["role", "endpoint", "method", "status"], r,
                ),
                request_size=_FastFamily(
                    "histogram", "cmg_request_size_bytes", "Request body size.", ["role", "endpoint"], r,
                    buckets=BYTE_BUCKETS,
                ),
                response_size=_FastFamily(
                    "histogram", "cmg_response_size_bytes", "Response body size.", ["role", "endpoint"], r,
                    buckets=BYTE_BUCKETS,
                ),
                duration=_FastFamily(
                    "histogram", "cmg_request_duration_seconds", "Time from request start to response end.",
                    ["role", "endpoint"], r, buckets=DURATION_BUCKETS,
                ),
                in_flight=_FastFamily("gauge", "cmg_requests_in_flight", "Requests being handled now.", ["role"], r),
                fault_injections=Counter(
                    "cmg_fault_injections", "Faults injected into requests.", ["role", "fault"], registry=r
                ),
                tokens_issued=Counter("cmg_tokens_issued", "Tokens issued (ccm or entra).", ["role", "kind"], registry=r),
                tokens_rejected=Counter(
                    "cmg_tokens_rejected", "Tokens refused, by reason.", ["role", "reason"], registry=r
                ),
                registrations=Counter(
                    "cmg_registrations", "Client registration requests, by result.", ["role", "result"], registry=r
                ),
                crl_fetches=Counter("cmg_crl_fetches", "CRL downloads, by result.", ["role", "result"], registry=r),
                error_responses=Counter(
                    "cmg_error_responses", "Error answers (status >= 400) by endpoint, status and status text.",
                    ["role", "endpoint", "status", "status_text"], registry=r,
                ),
                forward_errors=Counter(
                    "cmg_forward_errors", "Requests that could not be forwarded to the next hop.",
                    ["role", "target", "reason"], registry=r,
                ),
            )
            _FAMILIES[registry] = families
        return families


class _RequestChildren:
    """The four pre-bound children one ``observe_request`` call touches."""

    __slots__ = ("count", "duration", "request_size", "response_size")

    def __init__(self, count: Counter, request_size: Histogram, response_size: Histogram, duration: Histogram) -> None:
        self.count = count
        self.request_size = request_size
        self.response_size = response_size
        self.duration = duration


class SiteMetrics:
    """The Prometheus metrics of one site role; label children are bound once and cached, never looked up per request."""

    def __init__(self, role: str, *, registry: CollectorRegistry) -> None:
        self.role = _word(role, "role")
        self._families = _families(registry)
        self.families = self._families
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], _RequestChildren] = {}
        self._errors: dict[tuple[str, int, str], Any] = {}
        self._endpoints: dict[str, tuple[Histogram, Histogram, Histogram]] = {}
        f = self._families
        self._in_flight = f.in_flight.labels(self.role)
        self._fault_injections = _BoundCounter(f.fault_injections, self.role, ("fault",))
        self._tokens_issued = _BoundCounter(f.tokens_issued, self.role, ("token kind",), TOKEN_KINDS)
        self._tokens_rejected = _BoundCounter(f.tokens_rejected, self.role, ("token rejection reason",))
        self._registrations = _BoundCounter(f.registrations, self.role, ("registration result",))
        self._crl_fetches = _BoundCounter(f.crl_fetches, self.role, ("CRL fetch result",))
        self._forward_errors = _BoundCounter(f.forward_errors, self.role, ("forward target", "forward error reason"))

    def observe_request(
        self, endpoint: str, method: str, status: int, request_bytes: int, response_bytes: int, seconds: float
    ) -> None:
        """Count one answered request; ``endpoint`` is the route template (ids folded), never the raw path."""
        children = self._requests.get((endpoint, method, status))
        if children is None:
            children = self._bind_request(endpoint, method, status)
        children.count.inc()
        children.request_size.observe(request_bytes)
        children.response_size.observe(response_bytes)
        children.duration.observe(seconds)

    def _bind_request(self, endpoint: str, method: str, status: int) -> _RequestChildren:
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            raise MetricLabelError(f"HTTP status must be an integer 100..599: {status!r}")
        if not isinstance(endpoint, str) or not endpoint:
            raise MetricLabelError(f"endpoint must be a non-empty route template: {endpoint!r}")
        canonical_method = method if method in KNOWN_METHODS else OTHER
        with self._lock:
            sizes = self._endpoints.get(endpoint)
            canonical_endpoint = endpoint
            if sizes is None and len(self._endpoints) >= MAX_ENDPOINTS:
                canonical_endpoint = OTHER
                sizes = self._endpoints.get(OTHER)
            if sizes is None:
                f = self._families
                sizes = (
                    f.request_size.labels(self.role, canonical_endpoint),
                    f.response_size.labels(self.role, canonical_endpoint),
                    f.duration.labels(self.role, canonical_endpoint),
                )
                self._endpoints[canonical_endpoint] = sizes
            key = (canonical_endpoint, canonical_method, status)
            children = self._requests.get(key)
            if children is None:
                count = self._families.requests.labels(self.role, canonical_endpoint, canonical_method, str(status))
                children = _RequestChildren(count, *sizes)
                self._requests[key] = children
        # Folded keys are not cached under their raw form, so hostile values cannot grow this dict either.
        return children

    def request_started(self) -> None:
        """One more request in flight."""
        self._in_flight.inc()

    def request_finished(self) -> None:
        """One request fewer in flight."""
        self._in_flight.dec()

    def fault_injected(self, fault: str) -> None:
        """Count one injection of a fault (a catalogue name such as ``latency``)."""
        self._fault_injections.inc(fault)

    def token_issued(self, kind: str) -> None:
        """Count one token handed out: ``ccm`` (by CCM_STS) or ``entra`` (by the mock Entra ID)."""
        self._tokens_issued.inc(kind)

    def token_rejected(self, reason: str) -> None:
        """Count one refused token (``reason``: e.g. a ``TokenRejected.kind`` such as ``expired``)."""
        self._tokens_rejected.inc(reason)

    def registration(self, result: str) -> None:
        """Count one client registration request by its result (e.g. ``created``, ``renewed``, ``rejected``)."""
        self._registrations.inc(result)

    def crl_fetch(self, result: str) -> None:
        """Count one CRL download by its result (e.g. ``ok``, ``refused``, ``expired``)."""
        self._crl_fetches.inc(result)

    def error_response(self, endpoint: str, status: int, status_text: str) -> None:
        """Count an error answer by its status text (``CMGService_Invalid_Token``, ``CMGConnector_…``)."""
        key = (endpoint, status, status_text)
        child = self._errors.get(key)
        if child is None:
            text = status_text if _STATUS_TEXT.fullmatch(status_text or "") else "other"
            if len(self._errors) >= 512:  # a closed set in practice; a flood of new texts folds into "other"
                text = "other"
            label = endpoint if endpoint in self._endpoints or len(self._endpoints) < MAX_ENDPOINTS else OTHER
            child = self._families.error_responses.labels(self.role, label, str(status), text)
            self._errors[key] = child
        child.inc()

    def forward_error(self, target: str, reason: str) -> None:
        """Count one request the role could not pass to ``target`` (e.g. ``cp``, ``mp``) and why (e.g. ``timeout``)."""
        self._forward_errors.inc(target, reason)


class NullMetrics:
    """SiteMetrics' interface doing nothing: a site with metrics off, to measure what instrumentation costs."""

    def __init__(self, role: str = "") -> None:
        self.role = role

    def observe_request(self, endpoint: str, method: str, status: int, request_bytes: int, response_bytes: int,
                        seconds: float) -> None:
        return None

    def _ignore(self, *args: object) -> None:
        return None

    request_started = request_finished = fault_injected = token_issued = token_rejected = _ignore
    registration = crl_fetch = error_response = forward_error = _ignore


class _BoundCounter:
    """A counter family seen from one role: label values are checked once, then their child is reused."""

    __slots__ = ("_allowed", "_children", "_family", "_lock", "_names", "_role")

    def __init__(self, family: Counter, role: str, names: tuple[str, ...], allowed: tuple[str, ...] | None = None) -> None:
        self._family = family
        self._role = role
        self._names = names
        self._allowed = allowed
        self._children: dict[tuple[str, ...], Counter] = {}
        self._lock = threading.Lock()

    def inc(self, *values: str) -> None:
        child = self._children.get(values)
        if child is None:
            child = self._bind(values)
        child.inc()

    def _bind(self, values: tuple[str, ...]) -> Counter:
        for name, value in zip(self._names, values, strict=True):
            if self._allowed is not None:
                if value not in self._allowed:
                    raise MetricLabelError(f"{name} must be one of {self._allowed}: {value!r}")
            else:
                _word(value, name)
        with self._lock:
            return self._children.setdefault(values, self._family.labels(self._role, *values))


# ---- CMGService.log traffic lines ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CMGServiceLine:
    """The CMGService.log numbers of one request URI over one window."""

    request_uri: str
    request_count: int
    request_size: int
    response_count: int
    response_size: int
    elapsed_seconds: float
    window_start: float
    window_end: float

    @property
    def average_elapsed_ms(self) -> int:
        """AverageElapsedTime: mean time per request in whole milliseconds, rounded."""
        if self.request_count == 0:
            return 0
        # Half up, not Python's half-to-even: 2.5 ms reads as 3 ms, as a person rounding would write it.
        return math.floor(self.elapsed_seconds * 1000.0 / self.request_count + 0.5)

    def text(self) -> str:
        """The line as CMGService.log shows it."""
        return cmgservice_text(
            self.request_uri,
            self.request_count,
            self.request_size,
            self.response_count,
            self.response_size,
            self.average_elapsed_ms,
        )


class _UriTotals:
    __slots__ = ("elapsed", "request_count", "request_size", "response_count", "response_size")

    def __init__(self) -> None:
        self.request_count = 0
        self.request_size = 0
        self.response_count = 0
        self.response_size = 0
        self.elapsed = 0.0


def _printable_uri(uri: str) -> str:
    # A decoded path may hold control characters (%0A) or spaces; write them percent-encoded so the log line keeps
    # its shape and nobody can forge a line.
    if uri.isprintable() and " " not in uri:
        return uri or "/"
    return "".join(
        c if c.isprintable() and c != " " else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
        for c in uri
    )


class CMGServiceStats:
    """Per-RequestUri totals (RequestCount, RequestSize, ResponseCount, ResponseSize, elapsed) for one log window."""

    def __init__(self, clock: Clock, *, max_request_uris: int = 10_000) -> None:
        if max_request_uris < 1:
            raise ValueError(f"max_request_uris must be >= 1, got {max_request_uris!r}")
        self._clock = clock
        self.max_request_uris = max_request_uris
        self._lock = threading.Lock()
        self._rows: dict[str, _UriTotals] = {}
        self._window_start = clock()

    def record(
        self, request_uri: str, request_bytes: int, response_bytes: int, elapsed_seconds: float, responded: bool = True
    ) -> None:
        """Add one request (``request_uri``: the path as the client sent it; a query part is dropped)."""
        uri = _printable_uri(request_uri.partition("?")[0])
        with self._lock:
            row = self._rows.get(uri)
            if row is None:
                # Past the bound, new URIs share one row: a client inventing paths cannot grow memory.
                if len(self._rows) >= self.max_request_uris + (OTHER_REQUEST_URI in self._rows):
                    uri = OTHER_REQUEST_URI
                row = self._rows.get(uri)
                if row is None:
                    row = self._rows[uri] = _UriTotals()
            row.request_count += 1
            row.request_size += request_bytes
            row.elapsed += elapsed_seconds
            if responded:
                row.response_count += 1
                row.response_size += response_bytes

    def drain(self) -> list[CMGServiceLine]:
        """The lines of the window that ends now (one per RequestUri, in first-seen order); starts a new window."""
        now = self._clock()
        with self._lock:
            rows, self._rows = self._rows, {}
            start, self._window_start = self._window_start, now
        lines = [
            CMGServiceLine(uri, r.request_count, r.request_size, r.response_count, r.response_size, r.elapsed, start, now)
            for uri, r in rows.items()
            if uri != OTHER_REQUEST_URI
        ]
        if OTHER_REQUEST_URI in rows:
            r = rows[OTHER_REQUEST_URI]
            lines.append(
                CMGServiceLine(
                    OTHER_REQUEST_URI, r.request_count, r.request_size, r.response_count, r.response_size, r.elapsed,
                    start, now,
                )
            )
        return lines


# ---- connection point traffic report --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionPointEndpointStats:
    """One endpoint's numbers in the connection point's periodic traffic report."""

    endpoint: str
    total_requests: int
    total_requests_with_bearer_token: int
    max_concurrent_requests: int
    total_request_bytes: int
    total_response_bytes: int
    failed_requests: int

    def text(self) -> str:
        """One report line; the field names are the documented ones, the layout is ours."""
        # synthetic: not the public ConfigMgr format
        return (
            f"EndpointName: {self.endpoint}  TotalRequests: {self.total_requests}  "
            f"TotalRequestsWithBearerToken: {self.total_requests_with_bearer_token}  "
            f"MaxConcurrentRequests: {self.max_concurrent_requests}  TotalRequestBytes: {self.total_request_bytes} Bytes  "
            f"TotalResponseBytes: {self.total_response_bytes} Bytes  FailedRequests: {self.failed_requests}"
        )


class _EndpointTotals:
    __slots__ = ("failed", "in_flight", "max_concurrent", "request_bytes", "requests", "response_bytes", "with_bearer")

    def __init__(self, in_flight: int = 0) -> None:
        self.requests = 0
        self.with_bearer = 0
        self.in_flight = in_flight
        self.max_concurrent = in_flight
        self.request_bytes = 0
        self.response_bytes = 0
        self.failed = 0


class ConnectionPointExchange:
    """One request through the connection point, open until ``end`` is called."""

    __slots__ = ("_endpoint", "_open", "_report")

    def __init__(self, report: ConnectionPointReport, endpoint: str) -> None:
        self._report = report
        self._endpoint = endpoint
        self._open = True

    def end(self, response_bytes: int, failed: bool = False) -> None:
        """Close the request with its response size; a second call changes nothing."""
        if self._open:
            self._open = False
            self._report._end(self._endpoint, response_bytes, failed)


class ConnectionPointReport:
    """Per-endpoint totals for the connection point's traffic report (TotalRequests .. FailedRequests)."""

    def __init__(self, *, max_endpoints: int = 256) -> None:
        self.max_endpoints = max_endpoints
        self._lock = threading.Lock()
        self._rows: dict[str, _EndpointTotals] = {}

    def begin(self, endpoint: str, has_bearer: bool, request_bytes: int) -> ConnectionPointExchange:
        """Open one request to ``endpoint`` (e.g. ``CCM_STS``); call ``end`` on the result when it is answered."""
        with self._lock:
            row = self._rows.get(endpoint)
            if row is None:
                if len(self._rows) >= self.max_endpoints + (OTHER in self._rows):
                    endpoint = OTHER
                row = self._rows.get(endpoint)
                if row is None:
                    row = self._rows[endpoint] = _EndpointTotals()
            row.requests += 1
            row.with_bearer += bool(has_bearer)
            row.request_bytes += request_bytes
            row.in_flight += 1
            row.max_concurrent = max(row.max_concurrent, row.in_flight)
        return ConnectionPointExchange(self, endpoint)

    def _end(self, endpoint: str, response_bytes: int, failed: bool) -> None:
        with self._lock:
            # drain() carries rows with open requests over, so the row is always there.
            row = self._rows[endpoint]
            row.in_flight -= 1
            row.response_bytes += response_bytes
            row.failed += bool(failed)

    def drain(self) -> list[ConnectionPointEndpointStats]:
        """The report of the window that ends now, one entry per endpoint that saw traffic; starts a new window."""
        with self._lock:
            rows = self._rows
            # Requests still open carry over: the next window starts with them in flight.
            self._rows = {name: _EndpointTotals(in_flight=r.in_flight) for name, r in rows.items() if r.in_flight > 0}
        return [
            ConnectionPointEndpointStats(
                name, r.requests, r.with_bearer, r.max_concurrent, r.request_bytes, r.response_bytes, r.failed
            )
            for name, r in rows.items()
            if r.requests or r.response_bytes or r.failed
        ]


# ---- periodic writers -----------------------------------------------------------------------------------------------


class _Line(Protocol):
    def text(self) -> str: ...


class _Drainable(Protocol):
    def drain(self) -> Sequence[_Line]: ...


class _LineSink(Protocol):
    def info(self, text: str, *, file: str = "") -> None: ...


class StatsLogger:
    """Writes a stats window to a log every period: CMGService.log lines, or the connection point report."""

    def __init__(self, stats: _Drainable, writer: _LineSink, period_seconds: float) -> None:
        if not period_seconds > 0:
            raise ValueError(f"log period must be > 0 seconds, got {period_seconds!r}")
        self.stats = stats
        self.writer = writer
        self.period_seconds = period_seconds

    async def run(self) -> None:
        """Write one line per entry every ``period_seconds`` (real seconds: pass ``config.scaled(...)``) until cancelled."""
        while True:
            await asyncio.sleep(self.period_seconds)
            self.flush()

    def flush(self) -> int:
        """Write what the current window holds now (at shutdown); returns the number of lines written."""
        lines = self.stats.drain()
        for line in lines:
            self.writer.info(line.text())
        return len(lines)


class CMGServiceLogger(StatsLogger):
    """Writes the CMGService.log traffic line of every RequestUri once per period."""

    def __init__(self, stats: CMGServiceStats, writer: _LineSink, period_seconds: float) -> None:
        super().__init__(stats, writer, period_seconds)
