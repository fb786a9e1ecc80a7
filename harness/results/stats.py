"""The statistics a run leaves in its results: Locust's entries (``locust.json``) and the per-second history of
what each entry added (``stats_history.jsonl``), read the same way by the gates and the capacity report.

A :class:`StatsEntry` is one Locust statistics entry (a request, or a lifecycle stage timed as a whole); a
:class:`HistoryPoint` is what every entry added in one second, and (since the latency book exists) the latency
histograms and sent/intended counts recorded in that second. :func:`percentile` reads a Locust response-time
histogram the way Locust's own reports do.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.latency.histograms import LatencyDelta
from harness.results.errors import ResultsError


@dataclass(frozen=True, slots=True)
class StatsEntry:
    """One Locust statistics entry (a request name and method, or a lifecycle stage): counts and times in ms.

    ``response_times`` is Locust's histogram: the response time rounded to about two significant digits, mapped to
    how many requests took it.
    """

    method: str
    name: str
    num_requests: int = 0
    num_failures: int = 0
    total_response_time: float = 0.0
    max_response_time: float = 0.0
    response_times: Mapping[int, int] = field(default_factory=dict)
    start_time: float = 0.0
    last_request_timestamp: float = 0.0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StatsEntry:
        """An entry from ``locust.json`` (Locust's ``--json-file``) or a history line; ResultsError if malformed."""
        try:
            return cls(method=str(data.get("method") or ""), name=str(data["name"]),
                       num_requests=int(data.get("num_requests", 0)), num_failures=int(data.get("num_failures", 0)),
                       total_response_time=float(data.get("total_response_time", 0.0)),
                       max_response_time=float(data.get("max_response_time") or 0.0),
                       response_times={int(float(key)): int(count)
                                       for key, count in (data.get("response_times") or {}).items()},
                       start_time=float(data.get("start_time") or 0.0),
                       last_request_timestamp=float(data.get("last_request_timestamp") or 0.0))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ResultsError(f"malformed statistics entry {dict(data)!r}: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of a history line's entry (the fields a delta carries)."""
        return {"method": self.method, "name": self.name, "num_requests": self.num_requests,
                "num_failures": self.num_failures, "total_response_time": self.total_response_time,
                "response_times": {str(key): count for key, count in sorted(self.response_times.items())}}


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """What every entry added between the previous point and ``t`` (epoch seconds).

    ``latency``: what the latency book recorded in that span (None in a history written before it existed).
    """

    t: float
    entries: tuple[StatsEntry, ...] = ()
    latency: LatencyDelta | None = None

    def to_json(self) -> str:
        data: dict[str, Any] = {"t": round(self.t, 3), "entries": [entry.to_dict() for entry in self.entries]}
        if self.latency is not None:
            data["latency"] = self.latency.to_json()
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> HistoryPoint:
        data = json.loads(line)
        latency = data.get("latency")
        return cls(t=float(data["t"]), entries=tuple(StatsEntry.from_dict(entry) for entry in data["entries"]),
                   latency=LatencyDelta.from_json(latency) if latency is not None else None)


def parse_history_lines(lines: Sequence[str], *, source: str) -> tuple[HistoryPoint, ...]:
    """The points in the lines of a ``stats_history.jsonl`` read from ``source``; a torn last line (a run killed
    mid-write) is left out, any other bad line raises ResultsError naming it."""
    points = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            points.append(HistoryPoint.from_json(line))
        except (ValueError, KeyError, TypeError) as error:
            if number == len(lines):
                break
            raise ResultsError(f"{source!r} line {number} is not a history point: {error}") from None
    return tuple(points)


def percentile(response_times: Mapping[int, int], quantile: float) -> float:
    """The response time ``quantile`` of the requests stayed within, computed the way Locust's reports do.

    Locust keeps ``floor(n * quantile)`` requests below the answer: the answer is the largest recorded time with at
    most that many requests faster than it.
    """
    total = sum(response_times.values())
    if total == 0:
        return math.nan
    allowed_below = int(total * quantile)
    below = 0
    answer = 0
    for key in sorted(response_times):
        if below > allowed_below:
            break
        answer = key
        below += response_times[key]
    return float(answer)


def merge_times(histograms: Iterable[Mapping[int, int]]) -> dict[int, int]:
    """The sum of several response time histograms."""
    merged: dict[int, int] = {}
    for histogram in histograms:
        for key, count in histogram.items():
            merged[key] = merged.get(key, 0) + count
    return merged
