"""Locust's stats history (``<prefix>_stats_history.csv``) read into per-second rows of HTTP request counts.

Locust writes one row per entry and second: cumulative request and failure counts, the cumulative mean, and
percentiles over a sliding window of about ten seconds (``CURRENT_RESPONSE_TIME_PERCENTILE_WINDOW``). Its
``Aggregated`` row also counts our ``LIFECYCLE`` entries (whole lifecycle stages, not HTTP requests), so when the
per-endpoint rows are there (``--csv-full-history``) the request figures are summed from the HTTP endpoints alone.
"""

from __future__ import annotations

import bisect
import csv
import io
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

from harness.client.stages import LIFECYCLE_REQUEST_TYPE
from harness.report.errors import ReportError

AGGREGATED = "Aggregated"
#: Seconds of responses behind each percentile of a history row (Locust's percentile window).
PERCENTILE_WINDOW = 10.0
_REQUIRED = ("Timestamp", "User Count", "Type", "Name", "Total Request Count", "Total Failure Count",
             "Total Average Response Time")
_PERCENT_COLUMN = re.compile(r"^(\d+(?:\.\d+)?)%$")


class HistoryError(ReportError):
    """The stats history file is missing, malformed or empty; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class EndpointSample:
    """One entry of one history row: cumulative counts and mean, and the window percentiles (None when N/A)."""

    method: str
    name: str
    requests: int
    failures: int
    average_ms: float
    percentiles_ms: tuple[float, ...] | None

    @property
    def latency_sum_ms(self) -> float:
        return self.average_ms * self.requests


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One second of the run: the Locust user count and the HTTP entries (lifecycle entries left out)."""

    timestamp: float
    users: int
    aggregated: EndpointSample
    endpoints: tuple[EndpointSample, ...]
    per_endpoint: bool

    @property
    def requests(self) -> int:
        """Cumulative HTTP requests."""
        if not self.per_endpoint:
            return self.aggregated.requests
        return sum(entry.requests for entry in self.endpoints)

    @property
    def failures(self) -> int:
        """Cumulative failed HTTP requests."""
        if not self.per_endpoint:
            return self.aggregated.failures
        return sum(entry.failures for entry in self.endpoints)

    @property
    def latency_sum_ms(self) -> float:
        """Cumulative sum of HTTP response times (mean × count), so differences give exact per-interval means."""
        if not self.per_endpoint:
            return self.aggregated.latency_sum_ms
        return sum(entry.latency_sum_ms for entry in self.endpoints)


class StatsHistory:
    """The rows of a stats history in time order, with window percentiles that leave lifecycle entries out."""

    def __init__(self, rows: list[HistoryRow], percentile_levels: tuple[float, ...], source: str = "") -> None:
        if not rows:
            raise HistoryError(f"stats history {source or '<text>'} has no rows")
        self.rows = tuple(rows)
        self.levels = percentile_levels
        self.source = source
        self.per_endpoint = rows[-1].per_endpoint
        self._times = [row.timestamp for row in self.rows]

    @property
    def start(self) -> float:
        return self.rows[0].timestamp

    def row_at_or_before(self, timestamp: float) -> HistoryRow | None:
        """The last row written at or before ``timestamp``."""
        index = bisect.bisect_right(self._times, timestamp) - 1
        return self.rows[index] if index >= 0 else None

    def window_percentile(self, row: HistoryRow, level: float) -> float | None:
        """The ``level`` (0–1) response-time percentile in ms of the window ending at ``row``, HTTP requests only.

        Per-endpoint window percentiles are mixed by each endpoint's requests in the window (piecewise-linear
        distributions between Locust's percentile points); without per-endpoint rows it is the Aggregated figure.
        """
        if not 0.0 < level <= 1.0:
            raise HistoryError(f"percentile level must be in (0, 1], got {level!r}")
        if not row.per_endpoint:
            points = row.aggregated.percentiles_ms
            return None if points is None or row.aggregated.requests == 0 else _quantile(self.levels, points, level)
        before = self.row_at_or_before(row.timestamp - PERCENTILE_WINDOW)
        earlier = {} if before is None else {(e.method, e.name): e.requests for e in before.endpoints}
        parts = []
        for entry in row.endpoints:
            weight = entry.requests - earlier.get((entry.method, entry.name), 0)
            if weight > 0 and entry.percentiles_ms is not None:
                parts.append((float(weight), entry.percentiles_ms))
        return mixture_quantile(self.levels, parts, level) if parts else None


def _quantile(levels: tuple[float, ...], points: tuple[float, ...], level: float) -> float:
    return mixture_quantile(levels, [(1.0, points)], level)


def mixture_quantile(levels: tuple[float, ...], parts: list[tuple[float, tuple[float, ...]]], level: float) -> float:
    """The ``level`` quantile of a weighted mixture of distributions, each given by its values at ``levels``.

    Each distribution is taken as piecewise linear through (0, 0 ms) and its percentile points; the mixture's
    distribution is then piecewise linear between the union of all points, so the crossing is found exactly.
    """
    if not parts:
        raise HistoryError("a mixture needs at least one distribution")
    total = sum(weight for weight, _ in parts)
    curves = [((0.0,) + tuple(levels), (0.0,) + tuple(points)) for _, points in parts]
    weights = [weight / total for weight, _ in parts]
    breakpoints = sorted({x for _, xs in curves for x in xs})

    def cdf(x: float) -> float:
        return sum(w * _curve_cdf(qs, xs, x) for w, (qs, xs) in zip(weights, curves, strict=True))

    previous_x, previous_f = breakpoints[0], cdf(breakpoints[0])
    if previous_f >= level:
        return previous_x
    for x in breakpoints[1:]:
        f = cdf(x)
        if f >= level - 1e-12:
            return previous_x + (x - previous_x) * (level - previous_f) / (f - previous_f)
        previous_x, previous_f = x, f
    return breakpoints[-1]


def _curve_cdf(levels: tuple[float, ...], values: tuple[float, ...], x: float) -> float:
    index = bisect.bisect_right(values, x) - 1
    if index < 0:
        return 0.0
    if index >= len(values) - 1:
        return 1.0
    x0, x1 = values[index], values[index + 1]
    return levels[index] + (levels[index + 1] - levels[index]) * (x - x0) / (x1 - x0)


def read_history(path: Path) -> StatsHistory:
    """Read a Locust stats history CSV file."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise HistoryError(f"stats history {str(path)!r} is not readable: {error.strerror or error}") from None
    return parse_history(text, source=str(path))


def parse_history(text: str, *, source: str = "<text>") -> StatsHistory:
    """Parse the text of a Locust stats history CSV file (with or without per-endpoint rows)."""
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [column for column in _REQUIRED if column not in header]
    if missing:
        raise HistoryError(f"stats history {source} lacks the column(s) {', '.join(missing)}")
    percent_columns = [(column, round(float(match.group(1)) / 100.0, 6)) for column in header
                       if (match := _PERCENT_COLUMN.match(column))]
    levels = tuple(level for _, level in percent_columns)
    rows: list[HistoryRow] = []
    pending: list[EndpointSample] = []
    for number, record in enumerate(reader, start=2):
        try:
            sample = _sample(record, percent_columns)
            timestamp = float(record["Timestamp"])
            users = int(float(record["User Count"] or 0))
        except (TypeError, ValueError) as error:
            raise HistoryError(f"stats history {source} line {number}: {error}") from None
        if sample.name != AGGREGATED or sample.method:
            if sample.method != LIFECYCLE_REQUEST_TYPE:
                pending.append(sample)
            continue
        # Locust writes the entries of one second first and that second's Aggregated row last.
        rows.append(HistoryRow(timestamp=timestamp, users=users, aggregated=sample, endpoints=tuple(pending),
                               per_endpoint=bool(pending)))
        pending = []
    if not rows:
        raise HistoryError(f"stats history {source} has no {AGGREGATED} rows")
    return StatsHistory(_monotonic(rows), levels, source)


def _monotonic(rows: list[HistoryRow]) -> list[HistoryRow]:
    # Keep one row per timestamp (the last): differences over zero seconds mean nothing.
    kept: dict[float, HistoryRow] = {}
    for row in rows:
        kept[row.timestamp] = row
    ordered = [kept[t] for t in sorted(kept)]
    if any(row.per_endpoint for row in ordered):
        # Early rows before any request have no endpoint entries; they still count zero HTTP requests.
        ordered = [row if row.per_endpoint or row.aggregated.requests else
                   HistoryRow(row.timestamp, row.users, row.aggregated, (), True) for row in ordered]
    return ordered


def _sample(record: dict[str, str], percent_columns: list[tuple[str, float]]) -> EndpointSample:
    values = [_number(record.get(column)) for column, _ in percent_columns]
    percentiles = None if any(value is None for value in values) else tuple(float(v or 0.0) for v in values)
    if percentiles is not None and not any(percentiles):
        # Locust reports all zeros while its window cache is still empty (the first seconds of an entry).
        percentiles = None
    if percentiles is not None and any(b < a for a, b in itertools.pairwise(percentiles)):
        raise ValueError(f"percentiles must not decrease, got {percentiles!r}")
    return EndpointSample(method=(record.get("Type") or "").strip(), name=(record.get("Name") or "").strip(),
                          requests=int(float(record["Total Request Count"] or 0)),
                          failures=int(float(record["Total Failure Count"] or 0)),
                          average_ms=float(record["Total Average Response Time"] or 0.0),
                          percentiles_ms=percentiles)


def _number(text: str | None) -> float | None:
    if text is None or text.strip() in ("", "N/A"):
        return None
    return float(text)
