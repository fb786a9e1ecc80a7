"""Latency histograms that do not lie: service time, lateness and corrected latency per endpoint and per stage.

Every request a simulated device sends has three instants: when its device's schedule *intended* it to go (a policy
poll due, a renewal due, a retry's back-off over, or the previous answer of the same exchange chain arriving), when the
load generator really *sent* it, and when the answer came. From them:

- **service time** = sent -> answered: what the system under test took once it had the request;
- **lateness** = intended -> sent: how long the request waited in the generator (a busy process, the in-flight limit);
- **corrected latency** = intended -> answered: what the device experienced, the measure that survives coordinated
  omission (a stalled server delays the requests queued behind it, and their wait is counted, not lost).

The values go into HdrHistograms (microsecond resolution, 3 significant digits, up to one hour), which merge exactly:
the percentiles of merged worker histograms equal those of one histogram of all samples. What is recorded between two
readings is a :class:`LatencyDelta`: sparse histograms over the same buckets (bucket value -> count), plus counts of
requests by the second they were sent and the second they were intended, so a rate over any window can be set
against the rate the devices' schedules asked for. Workers ship :meth:`LatencyBook.drain` (JSON-safe) and the master
:meth:`LatencyBook.merge` s it; the whole run's histograms are kept as full HdrHistograms (:meth:`LatencyBook.encoded`
gives them in HdrHistogram's own compressed base64 form).
"""

from __future__ import annotations

import math
from bisect import bisect_left
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
HIGHEST_US = 3_600_000_000  # one hour: a longer wait is recorded as an hour
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


#: The book's own pending set, drained into each Locust worker report; other readers open channels of their own.
REPORT = "report"
#: The per-second counts a delta keeps besides its histograms: requests by the second they went out, and by the
#: second their device meant them to (what an achieved-versus-intended rate over a window needs).
SENT = "sent"
INTENDED = "intended"
TIMELINES = (SENT, INTENDED)

_Key = tuple[str, str, str]


def _check_kind(kind: str, measure: str, row: Any) -> None:
    if kind not in KINDS or measure not in MEASURES:
        raise LatencyError(f"latency histogram key {row!r} is unknown")


#: Maps a value to its HdrHistogram bucket; one histogram's layout serves every delta (they all share it).
_LAYOUT = new_histogram()


def bucket_us(value_us: int) -> int:
    """The lowest value of the HdrHistogram bucket ``value_us`` falls in: what a sparse histogram keys counts by."""
    return int(_LAYOUT.get_lowest_equivalent_value(value_us))


#: The layout every histogram of a run shares (:func:`new_histogram`), as hdrh finds a value's counter from it.
_SUB_BUCKET_MASK = _LAYOUT.sub_bucket_mask
_UNIT_MAGNITUDE = _LAYOUT.unit_magnitude
_HALF_COUNT_MAGNITUDE = _LAYOUT.sub_bucket_half_count_magnitude
_HALF_COUNT = _LAYOUT.sub_bucket_half_count


def _place(value_us: int) -> tuple[int, int]:
    """``value_us``'s HdrHistogram bucket (its lowest value, :func:`bucket_us`) and the index of its counter.

    hdrh's own arithmetic (``_get_bucket_index``, ``_get_sub_bucket_index``, ``_counts_index``,
    ``get_value_from_sub_bucket``) in one go: it takes eight Python calls for the two, and a book finds both three
    times a request. ``bit_length`` is hdrh's ``64 - clz``.
    """
    shift = (value_us | _SUB_BUCKET_MASK).bit_length() - _HALF_COUNT_MAGNITUDE - 1  # bucket index + unit magnitude
    sub_bucket = value_us >> shift
    index = ((shift - _UNIT_MAGNITUDE + 1) << _HALF_COUNT_MAGNITUDE) + sub_bucket - _HALF_COUNT
    return sub_bucket << shift, index


def _record_at(histogram: HdrHistogram, value_us: int, index: int) -> None:
    """``histogram.record_value(value_us)`` for a value in range whose counter index is known: what it does, less its
    four calls to find the index again (the values a book records are clamped into the histograms' range)."""
    histogram.counts[index] += 1
    histogram.total_count += 1
    if value_us < histogram.min_value:
        histogram.min_value = value_us
    if value_us > histogram.max_value:
        histogram.max_value = value_us


def bucket_top_us(value_us: int) -> int:
    """The highest value of the bucket ``value_us`` falls in (HdrHistogram reports percentiles as that value)."""
    return int(_LAYOUT.get_highest_equivalent_value(value_us))


def merged_counts(histograms: Iterable[Mapping[int, int]]) -> dict[int, int]:
    """One sparse histogram holding every count of ``histograms`` (exact: they share HdrHistogram's buckets)."""
    merged: dict[int, int] = {}
    for counts in histograms:
        for bucket, count in counts.items():
            merged[bucket] = merged.get(bucket, 0) + count
    return merged


def sparse_statistic_ms(counts: Mapping[int, int], percentile: float) -> float | None:
    """The ``percentile`` (100: the maximum) of a sparse histogram, in ms, computed exactly as HdrHistogram's
    ``get_value_at_percentile`` and ``get_max_value`` do on a full one; None when it is empty."""
    total = sum(counts.values())
    if total == 0:
        return None
    # A bucket counted 0 times (a worker report may carry one) holds no value: it is never the maximum.
    keys = sorted(key for key, count in counts.items() if count)
    if percentile >= 100.0:
        return round(bucket_top_us(keys[-1]) / 1000.0, 3)
    target = max(int(percentile * total / 100 + 0.5), 1)
    seen = 0
    for key in keys:
        seen += counts[key]
        if seen >= target:
            return round(bucket_top_us(key) / 1000.0, 3)
    return round(bucket_top_us(keys[-1]) / 1000.0, 3)


def decode_histograms(rows: Iterable[Any]) -> dict[_Key, HdrHistogram]:
    """Whole histograms from ``[kind, name, measure, base64]`` rows (:meth:`LatencyBook.encoded`); LatencyError
    naming a malformed row."""
    histograms: dict[_Key, HdrHistogram] = {}
    try:
        rows = list(rows)
    except TypeError as exc:
        raise LatencyError(f"latency histograms are malformed: {exc}") from None
    for row in rows:
        try:
            kind, name, measure, encoded = row
            histogram = HdrHistogram.decode(str(encoded).encode("ascii"))
        except Exception as exc:  # noqa: BLE001 - any decoding failure is one malformed row
            raise LatencyError(f"latency histogram {row[:3]!r} is malformed: {exc}") from None
        _check_kind(kind, measure, row[:3])
        key = (kind, str(name), measure)
        if key in histograms:
            histograms[key].add(histogram)
        else:
            histograms[key] = histogram
    return histograms


#: Prometheus bucket bounds (seconds) for the three measures: 1 ms to 60 s, as the site's own duration histograms.
EXPORT_BOUNDS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_EXPORT_BOUNDS_US = tuple(round(bound * 1_000_000) for bound in EXPORT_BOUNDS_S)


class ExportBuckets:
    """One measure's values counted in Prometheus's fixed buckets as they are recorded.

    Turning an HdrHistogram into Prometheus buckets at scrape time walks every one of its counters (a second or so per
    scrape for a few dozen names); counting into 16 buckets when a value arrives costs one bisection. Values are
    placed by their HdrHistogram bucket's lowest value, so a book fed by workers' sparse deltas counts exactly what
    one book of all samples would (a value within 0.1 % above a bound may count under it: the histograms' precision).
    """

    __slots__ = ("counts", "sum_us")

    def __init__(self) -> None:
        self.counts = [0] * (len(_EXPORT_BOUNDS_US) + 1)  # per bound, then the values above the last one
        self.sum_us = 0

    def observe(self, bucket: int, count: int = 1) -> None:
        """Count ``count`` values whose HdrHistogram bucket starts at ``bucket`` µs."""
        self.counts[bisect_left(_EXPORT_BOUNDS_US, bucket)] += count
        self.sum_us += bucket * count

    def cumulative(self) -> tuple[list[tuple[str, float]], float]:
        """Prometheus's cumulative ``(le, count)`` pairs, ``+Inf`` last, and the sum in seconds."""
        buckets, running = [], 0
        for bound, count in zip((*map(repr, EXPORT_BOUNDS_S), "+Inf"), self.counts, strict=True):
            running += count
            buckets.append((bound, float(running)))
        return buckets, self.sum_us / 1_000_000


#: One (kind, name)'s record targets: per measure (key, whole-run histogram, export buckets), then its two timeline keys.
_Slots = tuple[tuple[tuple[_Key, HdrHistogram, ExportBuckets], ...], tuple[_Key, _Key]]


class LatencyDelta:
    """What a book recorded over some span: the three measures by (kind, name, measure) as sparse histograms, late
    and unsent counts, and how many requests were sent and intended in each epoch second, by (kind, name).

    A sparse histogram maps the lowest value (µs) of each HdrHistogram bucket that was hit to its count: the same
    buckets as a full histogram, so merging them is exact, but a second with few requests costs a few numbers where a
    full histogram of this range holds some 22,000 counters (a run's per-second history would not fit in memory).
    """

    __slots__ = ("histograms", "late", "timelines", "unsent")

    def __init__(self) -> None:
        self.histograms: dict[_Key, dict[int, int]] = {}
        self.late = 0
        self.unsent = 0
        self.timelines: dict[_Key, dict[int, int]] = {}  # (kind, name, SENT | INTENDED) -> {epoch second: count}

    def record(self, kind: str, name: str, measure: str, value_us: int, count: int = 1) -> None:
        """Count ``count`` values of ``value_us`` in the sparse histogram of one measure."""
        self.record_bucket(kind, name, measure, bucket_us(value_us), count)

    def record_bucket(self, kind: str, name: str, measure: str, bucket: int, count: int = 1) -> None:
        """Count ``count`` values in the bucket whose lowest value is ``bucket`` (as :func:`bucket_us` gives)."""
        self._add(self.histograms, (kind, name, measure), bucket, count)

    def count(self, kind: str, name: str, timeline: str, second: int, count: int = 1) -> None:
        """Count ``count`` requests of ``(kind, name)`` sent or intended (``timeline``) in the epoch ``second``."""
        self._add(self.timelines, (kind, name, timeline), second, count)

    @staticmethod
    def _add(table: dict[_Key, dict[int, int]], key: _Key, value: int, count: int = 1) -> None:
        counts = table.get(key)
        if counts is None:
            counts = table[key] = {}
        counts[value] = counts.get(value, 0) + count

    def add(self, other: LatencyDelta) -> None:
        """Add everything ``other`` holds to this delta."""
        for into, source in ((self.histograms, other.histograms), (self.timelines, other.timelines)):
            for key, counts in source.items():
                mine = into.setdefault(key, {})
                for value, count in counts.items():
                    mine[value] = mine.get(value, 0) + count
        self.late += other.late
        self.unsent += other.unsent

    def to_json(self) -> dict[str, Any]:
        """JSON-safe: bucket values and seconds as text keys."""
        def rows(table: dict[_Key, dict[int, int]]) -> list[list[Any]]:
            return [[kind, name, what, {str(value): count for value, count in sorted(counts.items())}]
                    for (kind, name, what), counts in sorted(table.items())]
        return {"histograms": rows(self.histograms), "late": self.late, "unsent": self.unsent,
                "timelines": rows(self.timelines)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LatencyDelta:
        """The delta :meth:`to_json` wrote (``timelines`` may be absent); LatencyError naming what is malformed."""
        delta = cls()
        try:
            histograms = list(data.get("histograms", []))
            delta.late, delta.unsent = int(data.get("late", 0)), int(data.get("unsent", 0))
            timelines = list(data.get("timelines", []))
        except (TypeError, ValueError, AttributeError) as exc:
            raise LatencyError(f"latency report is malformed: {exc}") from None
        for what, table, known in (("histogram", histograms, MEASURES), ("timeline", timelines, TIMELINES)):
            for row in table:
                try:
                    kind, name, key, counts = row
                    parsed = {int(value): int(count) for value, count in counts.items()}
                except (TypeError, ValueError, AttributeError) as exc:
                    raise LatencyError(f"latency {what} {row!r} is malformed: {exc}") from None
                if kind not in KINDS or key not in known:
                    raise LatencyError(f"latency {what} key {row[:3]!r} is unknown")
                if any(count < 0 for count in parsed.values()) or what == "histogram" and any(
                        value < 0 or value > HIGHEST_US for value in parsed):
                    raise LatencyError(f"latency {what} {row[:3]!r} is malformed: a count or value out of range")
                for value, count in parsed.items():
                    if what == "histogram":
                        delta.record(kind, str(name), key, value, count)
                    else:
                        delta.count(kind, str(name), key, value, count)
        return delta


class LatencyBook:
    """The three measures per (kind, name), kept since the run began, and pending deltas for readers to take.

    Each reader has its own channel of pending records: the Locust worker report drains :data:`REPORT`; the gate's
    per-second history opens one of its own, so taking one never disturbs the other.
    """

    def __init__(self) -> None:
        self._total: dict[_Key, HdrHistogram] = {}
        #: The same values counted in Prometheus's fixed buckets as they arrive, so a scrape reads them for free.
        self._exported: dict[_Key, ExportBuckets] = {}
        self._channels: dict[str, LatencyDelta] = {REPORT: LatencyDelta()}
        #: Records not yet handed to the channels: each record goes here once, and every open channel gets it when one
        #: of them is taken or a new one opens (a request costs one delta's counting, not one per reader).
        self._pending = LatencyDelta()
        #: Per (kind, name): its three measures' keys, whole-run histograms and export buckets, then its timeline keys
        #: (histograms are only ever added to ``_total``, never replaced, so these stay the ones it holds).
        self._slots: dict[tuple[str, str], _Slots] = {}
        #: Requests and stages that started late (lateness above ``late_threshold_s``) and work never sent.
        self.late = 0
        self.unsent = 0
        self.late_threshold_s = LATE_AFTER_S

    def record(self, kind: str, name: str, *, intended: float, sent: float, answered: float) -> None:
        """Record one request or stage from its three instants (clock seconds)."""
        if kind not in KINDS:
            raise LatencyError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        service = _micros(answered - sent, "service time")
        lateness = _micros(sent - intended, "lateness")
        corrected = _micros(answered - intended, "corrected latency")
        late = kind == REQUEST and sent - intended > self.late_threshold_s
        sent_second, intended_second = math.floor(sent), math.floor(intended)
        slots = self._slots.get((kind, name))
        if slots is None:
            slots = self._slots_of(kind, name)
        measures, (sent_key, intended_key) = slots
        pending = self._pending
        add = LatencyDelta._add
        for (key, histogram, exported), value in zip(measures, (service, lateness, corrected), strict=True):
            bucket, index = _place(value)
            _record_at(histogram, value, index)
            exported.observe(bucket)
            add(pending.histograms, key, bucket)
        add(pending.timelines, sent_key, sent_second)
        add(pending.timelines, intended_key, intended_second)
        pending.late += late
        self.late += late

    def _slots_of(self, kind: str, name: str) -> _Slots:
        """The keys, whole-run histograms and export buckets one (kind, name) records into, made once."""
        measures = []
        for measure in MEASURES:
            key = (kind, name, measure)
            histogram = self._total.get(key)
            if histogram is None:
                histogram = self._total[key] = new_histogram()
                self._exported[key] = ExportBuckets()
            measures.append((key, histogram, self._exported[key]))
        slots: _Slots = (tuple(measures), ((kind, name, SENT), (kind, name, INTENDED)))
        self._slots[(kind, name)] = slots
        return slots

    def record_unsent(self, count: int = 1) -> None:
        """Count work the run's end left undone (a device was due, its request never went)."""
        if count < 0:
            raise LatencyError(f"unsent count must be >= 0, got {count}")
        self.unsent += count
        for channel in self._channels.values():
            channel.unsent += count

    # ------------------------------------------------------------------ channels: merging across Locust workers
    def open_channel(self, channel: str) -> None:
        """Start keeping a pending delta for ``channel`` from now on (no-op when it is open)."""
        if channel not in self._channels:
            self._hand_out()  # what came before belongs to the channels already open
            self._channels[channel] = LatencyDelta()

    def close_channel(self, channel: str) -> None:
        """Stop keeping ``channel`` (the worker report's own stays)."""
        if channel != REPORT:
            self._channels.pop(channel, None)

    def take(self, channel: str = REPORT) -> LatencyDelta:
        """What was recorded since ``channel`` was last taken (or opened); LatencyError for a channel not open."""
        if channel not in self._channels:
            raise LatencyError(f"latency channel {channel!r} is not open")
        self._hand_out()
        delta, self._channels[channel] = self._channels[channel], LatencyDelta()
        return delta

    def _hand_out(self) -> None:
        """Add the records not yet handed out to every open channel."""
        pending = self._pending
        if pending.histograms or pending.timelines or pending.late:
            for delta in self._channels.values():
                delta.add(pending)
            self._pending = LatencyDelta()

    def drain(self, channel: str = REPORT) -> dict[str, Any]:
        """What was recorded since the last drain, JSON-safe (sparse histograms: bucket value in µs -> count)."""
        return self.take(channel).to_json()

    def merge(self, delta: Mapping[str, Any]) -> None:
        """Add a worker's :meth:`drain` to this book (and to every open channel)."""
        self.add(LatencyDelta.from_json(delta))

    def add(self, delta: LatencyDelta) -> None:
        """Add a decoded delta to this book (and to every open channel)."""
        for key, counts in delta.histograms.items():
            total = self._total.get(key)
            if total is None:
                total = self._total[key] = new_histogram()
                self._exported[key] = ExportBuckets()
            exported = self._exported[key]
            for value, count in counts.items():
                total.record_value(value, count)
                exported.observe(value, count)
        for channel in self._channels.values():
            channel.add(delta)
        self.late += delta.late
        self.unsent += delta.unsent

    def reset(self) -> None:
        """Forget everything (Locust's statistics reset); open channels stay open, emptied."""
        channels = list(self._channels)
        self.__init__()  # type: ignore[misc]
        for channel in channels:
            self.open_channel(channel)

    # ------------------------------------------------------------------ reading
    def names(self, kind: str) -> list[str]:
        """The names recorded under ``kind``, sorted."""
        return sorted({name for k, name, _ in self._total if k == kind})

    def histogram(self, kind: str, name: str, measure: str) -> HdrHistogram:
        """The whole-run histogram of one measure (empty when nothing was recorded)."""
        return self._total.get((kind, name, measure)) or new_histogram()

    def totals(self) -> Mapping[_Key, HdrHistogram]:
        """Every whole-run histogram by (kind, name, measure): a live view, not a copy."""
        return self._total

    def exported(self) -> Mapping[_Key, ExportBuckets]:
        """Every whole-run histogram in Prometheus's buckets (:data:`EXPORT_BOUNDS_S`), by (kind, name, measure)."""
        return self._exported

    def encoded(self) -> list[list[str]]:
        """The whole-run histograms as ``[kind, name, measure, base64]`` rows (what ``outcomes.json`` keeps)."""
        return [[kind, name, measure, histogram.encode().decode("ascii")]
                for (kind, name, measure), histogram in sorted(self._total.items())]

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
