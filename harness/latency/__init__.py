"""Measuring a load run the way wrk2 and HdrHistogram taught: every request timed from when its device meant to send it.

``histograms``: service time, lateness and corrected latency per endpoint and stage, in mergeable HdrHistograms.
Pure: no Locust, no clock of its own; the fleet driver (``harness.fleet``) feeds it.
"""

from __future__ import annotations

from harness.latency.histograms import (
    CORRECTED,
    EXPORT_BOUNDS_S,
    INTENDED,
    LATENESS,
    MEASURES,
    PERCENTILES,
    REPORT,
    REQUEST,
    SENT,
    SERVICE,
    STAGE,
    ExportBuckets,
    LatencyBook,
    LatencyDelta,
    LatencyError,
    decode_histograms,
    new_histogram,
    percentiles_ms,
    sparse_statistic_ms,
)

__all__ = [
    "CORRECTED",
    "EXPORT_BOUNDS_S",
    "INTENDED",
    "LATENESS",
    "MEASURES",
    "PERCENTILES",
    "REPORT",
    "REQUEST",
    "SENT",
    "SERVICE",
    "STAGE",
    "ExportBuckets",
    "LatencyBook",
    "LatencyDelta",
    "LatencyError",
    "decode_histograms",
    "new_histogram",
    "percentiles_ms",
    "sparse_statistic_ms",
]
