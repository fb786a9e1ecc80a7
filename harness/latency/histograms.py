"""Latency histograms that do not lie: service time, lateness and corrected latency per endpoint and per stage.

Every request a simulated device sends has three instants: when its device's schedule *intended* it to go (a policy
poll due, a renewal due, a retry's back-off over, or the previous answer of the same exchange chain arriving), when the
load generator really *sent* it, and when the answer came. From them:

- **service time** = sent -> answered: what the system under test took once it had the request;
- **lateness** = intended -> sent: how long the request waited in the generator (a busy process, the in-flight limit);
- **corrected latency** = intended -> answered: what the device experienced, the measure that survives coordinated
  omission (a stalled server delays the requests queued behind it, and their wait is counted, not lost).

The values go into HdrHistograms (microsecond resolution, 3 significant digits, up to one hour), which merge exactly:
the percentiles of merged worker histograms equal those of one histogram of all samples. Workers ship
:meth:`LatencyBook.drain` (compressed, base64 text, JSON-safe) and the master :meth:`LatencyBook.merge` s it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from hdrh.histogram import HdrHistogram

#: The three measures recorded for every request and every lifecycle stage.
SERVICE = "service_ms"
LATENESS = "lateness_ms"
CORRECTED = "corrected_ms"
MEASURES = (SERVICE, LATENESS, CORRECTED)
#: What a histogram key names: one RequestUri (Locust entry name) or one lifecycle stage.
REQUEST = "request"
STAGE = "stage"
KINDS = (REQUEST, STAGE)
#: Percentiles every summary reports, by their key in ``summary.json``.
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: a longer wait is recorded as an hour (and counted in ``clamped``)
SIGNIFICANT_DIGITS = 3
#: A request sent more than this after its intended time counts as ``late`` (generator jitter stays well below it).
LATE_AFTER_S = 0.1


class LatencyError(ValueError):
    """A value or a worker's histogram report is unusable; the message names it."""


def new_histogram() -> HdrHistogram:
    """An empty histogram with the range and precision every part of a run uses (so they merge)."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def _micros(seconds: float, what: str) -> int:
    if not math.isfinite(seconds):
        raise LatencyError(f"{what} must be a finite number of seconds, got {seconds!r}")
    # Clock steps between two readings can make a tiny negative: nothing waited, so it is recorded as the floor.
    return min(HIGHEST_US, max(LOWEST_US, round(seconds * 1_000_000)))


def percentiles_ms(histogram: HdrHistogram) -> dict[str, float | int]:
    """``p50 p90 p99 p999 max`` in milliseconds and ``count`` of one histogram (zeros when it is empty)."""
    count = histogram.get_total_count()
    if count == 0:
        return {**{key: 0.0 for key, _ in PERCENTILES}, "max": 0.0, "count": 0}
    values: dict[str, float | int] = {
        key: round(histogram.get_value_at_percentile(q) / 1000.0, 3) for key, q in PERCENTILES}
    values["max"] = round(histogram.get_max_value() / 1000.0, 3)
    values["count"] = int(count)
    return values


class LatencyBook:
    """The three measures per (kind, name), kept since the run began, with a pending copy for the next drain."""

    def __init__(self) -> None:
        self._total: dict[tuple[str, str, str], HdrHistogram] = {}
        self._pending: dict[tuple[str, str, str], HdrHistogram] = {}
        #: Requests and stages that started late (lateness above ``late_threshold_s``) and work never sent.
        self.late = 0
        self.unsent = 0
        self._pending_late = 0
        self._pending_unsent = 0
        self.late_threshold_s = LATE_AFTER_S
        #: Other books that see every record and merge too (a capacity step measuring its own window).
        self.taps: list[LatencyBook] = []

    def _histograms(self, book: dict[tuple[str, str, str], HdrHistogram], key: tuple[str, str, str]) -> HdrHistogram:
        histogram = book.get(key)
        if histogram is None:
            histogram = book[key] = new_histogram()
        return histogram

    def record(self, kind: str, name: str, *, intended: float, sent: float, answered: float) -> None:
        """Record one request or stage from its three instants (clock seconds)."""
        if kind not in KINDS:
            raise LatencyError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        service = _micros(answered - sent, "service time")
        lateness = _micros(sent - intended, "lateness")
        corrected = _micros(answered - intended, "corrected latency")
        for measure, value in ((SERVICE, service), (LATENESS, lateness), (CORRECTED, corrected)):
            key = (kind, name, measure)
            self._histograms(self._total, key).record_value(value)
            self._histograms(self._pending, key).record_value(value)
        if kind == REQUEST and sent - intended > self.late_threshold_s:
            self.late += 1
            self._pending_late += 1
        for tap in self.taps:
            tap.record(kind, name, intended=intended, sent=sent, answered=answered)

    def record_unsent(self, count: int = 1) -> None:
        """Count work the run's end left undone (a device was due, its request never went)."""
        if count < 0:
            raise LatencyError(f"unsent count must be >= 0, got {count}")
        self.unsent += count
        self._pending_unsent += count

    # ------------------------------------------------------------------ merging across Locust workers
    def drain(self) -> dict[str, Any]:
        """What was recorded since the last drain, JSON-safe (histograms compressed and base64-encoded)."""
        histograms = [[kind, name, measure, histogram.encode().decode("ascii")]
                      for (kind, name, measure), histogram in sorted(self._pending.items())]
        delta = {"histograms": histograms, "late": self._pending_late, "unsent": self._pending_unsent}
        self._pending = {}
        self._pending_late = self._pending_unsent = 0
        return delta

    def merge(self, delta: Mapping[str, Any]) -> None:
        """Add a worker's :meth:`drain` to this book."""
        try:
            rows = list(delta.get("histograms", []))
            late, unsent = int(delta.get("late", 0)), int(delta.get("unsent", 0))
        except (TypeError, ValueError, AttributeError) as exc:
            raise LatencyError(f"latency report is malformed: {exc}") from None
        for row in rows:
            try:
                kind, name, measure, encoded = row
                histogram = HdrHistogram.decode(str(encoded).encode("ascii"))
            except Exception as exc:  # noqa: BLE001 - any decoding failure is one malformed report
                raise LatencyError(f"latency histogram {row[:3]!r} is malformed: {exc}") from None
            if kind not in KINDS or measure not in MEASURES:
                raise LatencyError(f"latency histogram key {row[:3]!r} is unknown")
            for book in (self._total, self._pending):
                self._histograms(book, (kind, str(name), measure)).add(histogram)
        self.late += late
        self.unsent += unsent
        self._pending_late += late
        self._pending_unsent += unsent
        for tap in self.taps:
            tap.merge(delta)

    def reset(self) -> None:
        """Forget everything (Locust's statistics reset); taps stay attached."""
        taps = self.taps
        self.__init__()  # type: ignore[misc]
        self.taps = taps

    # ------------------------------------------------------------------ reading
    def names(self, kind: str) -> list[str]:
        """The names recorded under ``kind``, sorted."""
        return sorted({name for k, name, _ in self._total if k == kind})

    def histogram(self, kind: str, name: str, measure: str) -> HdrHistogram:
        """The whole-run histogram of one measure (empty when nothing was recorded)."""
        return self._total.get((kind, name, measure)) or new_histogram()

    def combined(self, kind: str, measure: str, names: Iterable[str] | None = None) -> HdrHistogram:
        """One histogram of a measure over several names (all of ``kind`` by default)."""
        merged = new_histogram()
        wanted = None if names is None else set(names)
        for (k, name, m), histogram in self._total.items():
            if k == kind and m == measure and (wanted is None or name in wanted):
                merged.add(histogram)
        return merged

    def summary(self) -> dict[str, Any]:
        """``{"requests": {name: {measure: percentiles}}, "stages": {...}, "all_requests": {...}, late, unsent}``."""
        def section(kind: str) -> dict[str, dict[str, dict[str, float | int]]]:
            return {name: {m: percentiles_ms(self.histogram(kind, name, m)) for m in MEASURES}
                    for name in self.names(kind)}
        return {
            "requests": section(REQUEST),
            "stages": section(STAGE),
            "all_requests": {m: percentiles_ms(self.combined(REQUEST, m)) for m in MEASURES},
            "late": self.late,
            "unsent": self.unsent,
        }
