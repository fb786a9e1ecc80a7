"""Measuring a load run the way wrk2 and HdrHistogram taught: every request timed from when its device meant to send it.

``histograms``: service time, lateness and corrected latency per endpoint and stage, in mergeable HdrHistograms.
``arrivals``: open-model plans — when each new device starts its life (constant or ramping arrival rate) and the
request rate a steady fleet of a given size and poll interval makes. Pure: no Locust, no clock of its own.
"""

from __future__ import annotations

from harness.latency.histograms import (
    CORRECTED,
    LATENESS,
    MEASURES,
    PERCENTILES,
    REQUEST,
    SERVICE,
    STAGE,
    LatencyBook,
    LatencyError,
    new_histogram,
    percentiles_ms,
)

__all__ = [
    "CORRECTED",
    "LATENESS",
    "MEASURES",
    "PERCENTILES",
    "REQUEST",
    "SERVICE",
    "STAGE",
    "LatencyBook",
    "LatencyError",
    "new_histogram",
    "percentiles_ms",
]
