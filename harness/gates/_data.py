"""What a gate is evaluated on: Locust's statistics entries, their per-second history, and the outcome tally.

The same :class:`RunData` comes from a results directory after the run (``locust.json``, ``stats_history.jsonl``,
``outcomes.json``) or, during the run, from the Locust master's live statistics (``harness.load.gate_listener``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCUST_JSON = "locust.json"
OUTCOMES_JSON = "outcomes.json"
#: Per-second deltas of every stats entry, written by the gate listener on the master: the source of windows.
STATS_HISTORY = "stats_history.jsonl"
#: Written by the gate listener when an ``abort_on_fail`` threshold stopped the run.
GATE_ABORT = "gate-abort.json"


class ResultsError(ValueError):
    """A results directory lacks a file a gate needs, or holds one that is malformed; the message names it."""


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
    """What every entry added between the previous point and ``t`` (epoch seconds)."""

    t: float
    entries: tuple[StatsEntry, ...] = ()

    def to_json(self) -> str:
        return json.dumps({"t": round(self.t, 3), "entries": [entry.to_dict() for entry in self.entries]},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> HistoryPoint:
        data = json.loads(line)
        return cls(t=float(data["t"]), entries=tuple(StatsEntry.from_dict(entry) for entry in data["entries"]))


@dataclass(frozen=True, slots=True)
class RunData:
    """Everything a gate reads about one run (or, live, about the run so far)."""

    entries: tuple[StatsEntry, ...]
    history: tuple[HistoryPoint, ...] = ()
    outcomes: Mapping[str, Any] | None = None
    aborts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    has_history: bool = True

    @property
    def span(self) -> float:
        """Seconds from the first request of the run to its last (at least 1: rates of a blink stay finite)."""
        starts = [entry.start_time for entry in self.entries if entry.num_requests and entry.start_time]
        ends = [entry.last_request_timestamp for entry in self.entries if entry.num_requests]
        if not starts or not ends:
            return 1.0
        return max(max(ends) - min(starts), 1.0)


def _delta(now: StatsEntry, before: StatsEntry | None) -> StatsEntry:
    if before is None or now.num_requests < before.num_requests:  # new entry, or Locust's stats were reset
        return now
    times = {key: count - before.response_times.get(key, 0) for key, count in now.response_times.items()}
    return StatsEntry(method=now.method, name=now.name, num_requests=now.num_requests - before.num_requests,
                      num_failures=max(now.num_failures - before.num_failures, 0),
                      total_response_time=now.total_response_time - before.total_response_time,
                      max_response_time=max((key for key, count in times.items() if count > 0), default=0),
                      response_times={key: count for key, count in times.items() if count > 0})


class HistoryRecorder:
    """Turns cumulative statistics, sampled once a second, into per-second :class:`HistoryPoint` deltas."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], StatsEntry] = {}

    def reset(self) -> None:
        """Forget the previous sample (a new test started)."""
        self._last = {}

    def sample(self, t: float, entries: Iterable[StatsEntry]) -> HistoryPoint:
        """The point at ``t``: what each entry added since the previous sample (entries that added nothing left out)."""
        deltas = []
        current: dict[tuple[str, str], StatsEntry] = {}
        for entry in entries:
            key = (entry.method, entry.name)
            current[key] = entry
            delta = _delta(entry, self._last.get(key))
            if delta.num_requests > 0:
                deltas.append(delta)
        self._last = current
        return HistoryPoint(t=t, entries=tuple(deltas))


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ResultsError(f"{what} {str(path)!r} is not readable JSON: {error}") from None


def read_history(path: Path) -> tuple[HistoryPoint, ...]:
    """The points in a ``stats_history.jsonl``; a torn last line (a run killed mid-write) is left out."""
    points = []
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            points.append(HistoryPoint.from_json(line))
        except (ValueError, KeyError, TypeError) as error:
            if number == len(lines):
                break
            raise ResultsError(f"{str(path)!r} line {number} is not a history point: {error}") from None
    return tuple(points)


def load_results(results_dir: str | Path) -> RunData:
    """The run data in a ``cmg-harness run`` results directory; ResultsError naming a missing or bad file."""
    folder = Path(results_dir)
    if not folder.is_dir():
        raise ResultsError(f"results directory {str(folder)!r} not found")
    stats = _read_json(folder / LOCUST_JSON, "Locust statistics")
    if stats is None:
        raise ResultsError(f"{str(folder / LOCUST_JSON)!r} not found (Locust writes it with --json-file "
                           f"{folder / 'locust'})")
    if not isinstance(stats, list):
        raise ResultsError(f"{str(folder / LOCUST_JSON)!r} must hold a list of statistics entries")
    outcomes = _read_json(folder / OUTCOMES_JSON, "outcome tally")
    if outcomes is not None and not isinstance(outcomes, Mapping):
        raise ResultsError(f"{str(folder / OUTCOMES_JSON)!r} must hold a JSON object")
    history_path = folder / STATS_HISTORY
    history = read_history(history_path) if history_path.is_file() else ()
    abort = _read_json(folder / GATE_ABORT, "gate abort record")
    aborts = {str(abort["threshold"]): abort} if isinstance(abort, Mapping) and "threshold" in abort else {}
    return RunData(entries=tuple(StatsEntry.from_dict(entry) for entry in stats), history=history,
                   outcomes=outcomes, aborts=aborts, has_history=history_path.is_file())


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


def merge_times(histograms: Sequence[Mapping[int, int]]) -> dict[int, int]:
    """The sum of several response time histograms."""
    merged: dict[int, int] = {}
    for histogram in histograms:
        for key, count in histogram.items():
            merged[key] = merged.get(key, 0) + count
    return merged
