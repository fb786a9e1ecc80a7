"""Microseconds per ``SiteMetrics.observe_request`` with cached label children, against ``.labels()`` on every call."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from cmg_protocol.clock import FakeClock
from mock_site.metrics import CMGServiceStats, SiteMetrics

ENDPOINT = "/CCM_Proxy_ServerAuth/{id}/CCM_STS"
REQUEST_URI = "/CCM_PROXY_SERVERAUTH/72057594037937981/CCM_STS"


def cached_children() -> Callable[[], None]:
    """The production path: children bound once, then reused."""
    metrics = SiteMetrics("cmg", registry=CollectorRegistry())

    def observe() -> None:
        metrics.observe_request(ENDPOINT, "POST", 200, 1974, 1566, 0.218)

    return observe


def labels_per_call() -> Callable[[], None]:
    """The naive path: the same four observations, each looking up its child with ``.labels()``."""
    metrics = SiteMetrics("cmg", registry=CollectorRegistry())
    families = metrics._families  # the same metric families, used the way the cache avoids

    def observe() -> None:
        families.requests.labels("cmg", ENDPOINT, "POST", "200").inc()
        families.request_size.labels("cmg", ENDPOINT).observe(1974)
        families.response_size.labels("cmg", ENDPOINT).observe(1566)
        families.duration.labels("cmg", ENDPOINT).observe(0.218)

    return observe


def cmgservice_record() -> Callable[[], None]:
    """The CMGService.log tally the CMG keeps next to the metrics for every request."""
    stats = CMGServiceStats(FakeClock())

    def record() -> None:
        stats.record(REQUEST_URI, 1974, 1566, 0.218)

    return record


def microseconds_each(fn: Callable[[], None], seconds: float) -> float:
    """Mean microseconds per call of ``fn`` over about ``seconds`` of wall time."""
    fn()  # bind children, warm caches
    calls, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(1000):
            fn()
        calls += 1000
        now = time.perf_counter()
        if now >= deadline:
            return (now - start) * 1e6 / calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per case (default 2)")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core: the figure is per core
    results = {}
    for name, factory in (
        ("observe_request, cached children", cached_children),
        ("same observations, .labels() per call", labels_per_call),
        ("CMGServiceStats.record", cmgservice_record),
    ):
        results[name] = microseconds_each(factory(), args.seconds)
        print(f"{name:<40} {results[name]:6.2f} us per request")
    cached, naive = results["observe_request, cached children"], results["same observations, .labels() per call"]
    print(f"{'saved by caching':<40} {naive - cached:6.2f} us per request ({naive / cached:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
