"""Prometheus metrics per site role, and the CMGService.log and connection point traffic numbers.

- ``families``: metric names, labels and buckets, registered once per ``CollectorRegistry``;
- ``site_metrics``: ``SiteMetrics`` (what one role records) and ``NullMetrics`` (metrics off);
- ``traffic``: the per-URI CMGService.log totals and the connection point's per-endpoint report;
- ``log_writer``: the periodic writers that drain those totals into the logs;
- ``exposition``: the lock-free hot-path series and the ``/metrics`` scrape page.
"""

from __future__ import annotations

from mock_site.metrics.exposition import exposition
from mock_site.metrics.families import BYTE_BUCKETS, DURATION_BUCKETS, OTHER, Families, families_of
from mock_site.metrics.log_writer import CMGServiceLogger, StatsLogger
from mock_site.metrics.site_metrics import KNOWN_METHODS, MAX_ENDPOINTS, TOKEN_KINDS, MetricLabelError, NullMetrics, SiteMetrics
from mock_site.metrics.traffic import (
    OTHER_REQUEST_URI,
    CMGServiceLine,
    CMGServiceStats,
    ConnectionPointEndpointStats,
    ConnectionPointExchange,
    ConnectionPointReport,
)

__all__ = [
    "BYTE_BUCKETS",
    "DURATION_BUCKETS",
    "KNOWN_METHODS",
    "MAX_ENDPOINTS",
    "OTHER",
    "OTHER_REQUEST_URI",
    "TOKEN_KINDS",
    "CMGServiceLine",
    "CMGServiceLogger",
    "CMGServiceStats",
    "ConnectionPointEndpointStats",
    "ConnectionPointExchange",
    "ConnectionPointReport",
    "Families",
    "MetricLabelError",
    "NullMetrics",
    "SiteMetrics",
    "StatsLogger",
    "exposition",
    "families_of",
]
