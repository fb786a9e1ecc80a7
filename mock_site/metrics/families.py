"""The site's Prometheus metric families: names, labels and buckets, registered once per registry."""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from mock_site.metrics.exposition import FastFamily

#: Request duration buckets; they hold every threshold the default gates use (5 ms .. 10 s).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Body size buckets: small CCM messages (~2 KB for CCM_STS) up to client content downloads.
BYTE_BUCKETS = (128.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0)
#: The label value that collects whatever falls outside a bounded set (endpoints, methods, status texts).
OTHER = "other"


@dataclass(frozen=True, slots=True)
class Families:
    """The metric families of one registry, shared by every role that reports into it."""

    requests: FastFamily
    request_size: FastFamily
    response_size: FastFamily
    duration: FastFamily
    in_flight: FastFamily
    fault_injections: Counter
    tokens_issued: Counter
    tokens_rejected: Counter
    registrations: Counter
    crl_fetches: Counter
    forward_errors: Counter
    error_responses: Counter


# Several roles run in one process with one registry; a family may be registered there only once.
_FAMILIES: weakref.WeakKeyDictionary[CollectorRegistry, Families] = weakref.WeakKeyDictionary()
_FAMILIES_LOCK = threading.Lock()


def families_of(registry: CollectorRegistry) -> Families:
    with _FAMILIES_LOCK:
        families = _FAMILIES.get(registry)
        if families is None:
            r = registry
            families = Families(
                requests=FastFamily(
                    "counter", "cmg_requests", "Requests answered, by route template.",
                    ["role", "endpoint", "method", "status"], r,
                ),
                request_size=FastFamily(
                    "histogram", "cmg_request_size_bytes", "Request body size.", ["role", "endpoint"], r,
                    buckets=BYTE_BUCKETS,
                ),
                response_size=FastFamily(
                    "histogram", "cmg_response_size_bytes", "Response body size.", ["role", "endpoint"], r,
                    buckets=BYTE_BUCKETS,
                ),
                duration=FastFamily(
                    "histogram", "cmg_request_duration_seconds", "Time from request start to response end.",
                    ["role", "endpoint"], r, buckets=DURATION_BUCKETS,
                ),
                in_flight=FastFamily("gauge", "cmg_requests_in_flight", "Requests being handled now.", ["role"], r),
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
