"""SiteMetrics: the Prometheus metrics one site role records, with label values checked and children cached."""

from __future__ import annotations

import re
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from mock_site.metrics.families import OTHER, families_of

TOKEN_KINDS = ("ccm", "entra")
#: HTTP methods kept as label values; anything else is counted as ``other``.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CCM_POST"})
#: At most this many endpoint label values per role: a caller that passes raw paths cannot blow up the series count.
MAX_ENDPOINTS = 128

# Label values that come from our own code (fault names, reasons, results, targets): short snake_case words.
_WORD = re.compile(r"[a-z][a-z0-9_]{0,47}")
_STATUS_TEXT = re.compile(r"[A-Za-z][A-Za-z_]{0,47}")


class MetricLabelError(ValueError):
    """A label value is outside the closed set the metric allows; the message names it."""


def _word(value: object, what: str) -> str:
    if not isinstance(value, str) or not _WORD.fullmatch(value):
        raise MetricLabelError(f"{what} must be a snake_case word of at most 48 characters: {value!r}")
    return value


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
        self._families = families_of(registry)
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
