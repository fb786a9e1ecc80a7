"""The content-enabled CMG's storage egress: bytes served, distinct clients, and egress per client per month.

The sizing guidance states cloud storage egress as 100–300 MB per client per month; this collector puts the same
number on the running site, so a capacity run can set its traffic against it. A month is site time (30 days), so a
time-scaled run extrapolates over its compressed hours the way the site's lifetimes are compressed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

#: A month of site time, in site seconds.
MONTH_SITE_SECONDS = 30 * 86400.0
#: Distinct clients tracked at most (beyond it every new client still counts, but under one shared slot).
MAX_TRACKED_CLIENTS = 1_000_000


class StorageEgress(Collector):
    """Bytes the storage served, per client, since ``started``; ``time_scale`` site seconds pass per real second."""

    def __init__(self, *, clock: Callable[[], float], time_scale: float = 1.0) -> None:
        if not time_scale > 0:
            raise ValueError(f"time scale must be > 0, got {time_scale!r}")
        self._clock = clock
        self._time_scale = time_scale
        self._started = clock()
        self._lock = threading.Lock()
        self._clients: set[str] = set()
        self._overflow = False
        self.bytes_total = 0
        self.downloads = 0

    def served(self, client_id: str, size: int) -> None:
        """One download of ``size`` bytes to ``client_id``."""
        with self._lock:
            self.bytes_total += size
            self.downloads += 1
            if client_id not in self._clients:
                if len(self._clients) < MAX_TRACKED_CLIENTS:
                    self._clients.add(client_id)
                else:
                    self._overflow = True

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients) + (1 if self._overflow else 0)

    def per_client_month(self) -> float:
        """Bytes per client per 30 site days at the rate seen so far (0 before the first download)."""
        with self._lock:
            clients = len(self._clients) + (1 if self._overflow else 0)
            total = self.bytes_total
        site_seconds = max(self._clock() - self._started, 1.0) * self._time_scale
        if clients == 0:
            return 0.0
        return total / clients * (MONTH_SITE_SECONDS / site_seconds)

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        served = CounterMetricFamily("cmg_storage_egress_bytes", "Content bytes the CMG's storage served")
        served.add_metric([], float(self.bytes_total))
        yield served
        downloads = CounterMetricFamily("cmg_storage_downloads", "Downloads the CMG's storage served in full")
        downloads.add_metric([], float(self.downloads))
        yield downloads
        clients = GaugeMetricFamily("cmg_storage_clients", "Distinct clients the CMG's storage has served")
        clients.add_metric([], float(self.clients))
        yield clients
        month = GaugeMetricFamily("cmg_storage_egress_per_client_month_bytes",
                                  "Storage egress per client per 30 site days at the rate seen so far "
                                  "(sizing guidance: 100-300 MB)")
        month.add_metric([], self.per_client_month())
        yield month
