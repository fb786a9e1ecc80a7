"""The per-second request histograms of a run (``stats_history.jsonl``, written by the gate listener on the Locust
master): exact counts, failures and response-time percentiles of the HTTP requests in any stretch of the run.

Each line holds what every Locust entry added since the previous line, with its response-time histogram. Merging the
lines of a step gives that step's own distribution — unlike the window percentiles of Locust's CSV history — and
the ``LIFECYCLE`` stage entries are left out, so only HTTP requests count.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from harness.client.stages import LIFECYCLE_REQUEST_TYPE
from harness.report.errors import ReportError
from harness.results.errors import ResultsError
from harness.results.stats import HistoryPoint, merge_times, parse_history_lines, percentile


@dataclass(frozen=True, slots=True)
class Interval:
    """The HTTP requests of a stretch of the run: counts, the summed response time and the merged histogram."""

    requests: int = 0
    failures: int = 0
    total_ms: float = 0.0
    histogram: dict[int, int] = field(default_factory=dict)

    @property
    def mean_ms(self) -> float | None:
        return self.total_ms / self.requests if self.requests else None

    def percentile(self, level: float) -> float | None:
        """The ``level`` (0–1) response time in ms, the way Locust's reports compute it; None without requests."""
        if not 0.0 < level <= 1.0:
            raise ReportError(f"percentile level must be in (0, 1], got {level!r}")
        value = percentile(self.histogram, level)
        return None if math.isnan(value) else value

    @classmethod
    def merged(cls, parts: Iterable[Interval]) -> Interval:
        parts = list(parts)
        return cls(sum(part.requests for part in parts), sum(part.failures for part in parts),
                   sum(part.total_ms for part in parts), merge_times(part.histogram for part in parts))


class RequestLog:
    """Per-second HTTP request intervals in time order."""

    def __init__(self, points: list[tuple[float, Interval]], source: str = "") -> None:
        ordered = sorted(points, key=lambda point: point[0])
        self.times = [t for t, _ in ordered]
        self.intervals = [interval for _, interval in ordered]
        self.source = source

    def between(self, start: float, end: float) -> Interval:
        """Everything added by the lines stamped after ``start`` up to and including ``end``."""
        low = bisect.bisect_right(self.times, start)
        high = bisect.bisect_right(self.times, end)
        return Interval.merged(self.intervals[low:high])


def read_request_log(path: Path) -> RequestLog:
    """Read a ``stats_history.jsonl``; a torn last line (a run killed mid-write) is left out."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as error:
        raise ReportError(f"request history {str(path)!r} is not readable: {error.strerror or error}") from None
    try:
        points = parse_history_lines(lines, source=str(path))
    except ResultsError as error:
        raise ReportError(f"request history {error}") from None
    return request_log(points, source=str(path))


def request_log(points: Iterable[HistoryPoint], *, source: str = "") -> RequestLog:
    """The HTTP request intervals of history points (the ``LIFECYCLE`` stage entries left out)."""
    intervals = []
    for point in points:
        http = [entry for entry in point.entries if entry.method != LIFECYCLE_REQUEST_TYPE]
        intervals.append((point.t, Interval(requests=sum(e.num_requests for e in http),
                                            failures=sum(e.num_failures for e in http),
                                            total_ms=sum(e.total_response_time for e in http),
                                            histogram=merge_times(e.response_times for e in http))))
    return RequestLog(intervals, source=source)
