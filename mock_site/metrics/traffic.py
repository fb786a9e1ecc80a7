"""The traffic numbers the site logs: CMGService.log lines per request URI, the connection point report per endpoint."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from cmg_protocol.clock import Clock
from cmg_protocol.logformat import cmgservice_text
from mock_site.metrics.families import OTHER

#: The CMGService row that collects request URIs beyond the bound.
OTHER_REQUEST_URI = "(other)"  # synthetic: not the public ConfigMgr format


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

    def add(self, request_uri: str, request_count: int, request_size: int, response_count: int, response_size: int,
            elapsed_seconds: float) -> None:
        """Add another window's totals of one RequestUri (a worker process's), as they stand, to this window."""
        with self._lock:
            row = self._rows.get(request_uri)
            if row is None:
                row = self._rows[request_uri] = _UriTotals()
            row.request_count += request_count
            row.request_size += request_size
            row.response_count += response_count
            row.response_size += response_size
            row.elapsed += elapsed_seconds

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
