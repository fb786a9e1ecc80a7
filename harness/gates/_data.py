"""What a gate is evaluated on: Locust's statistics entries, their per-second history, the outcome tally, and the
latency book's whole-run histograms (service time, lateness, corrected latency).

The same :class:`RunData` comes from a results directory after the run (``locust.json``, ``stats_history.jsonl``,
``outcomes.json``) or, during the run, from the Locust master's live statistics (``harness.load.gate_listener``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from harness.latency.histograms import LatencyDelta, LatencyError, decode_histograms
from harness.results.errors import ResultsError
from harness.results.layout import OUTCOMES, ResultsDir
from harness.results.stats import HistoryPoint, StatsEntry


@dataclass(frozen=True, slots=True)
class RunData:
    """Everything a gate reads about one run (or, live, about the run so far)."""

    entries: tuple[StatsEntry, ...]
    history: tuple[HistoryPoint, ...] = ()
    outcomes: Mapping[str, Any] | None = None
    aborts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    has_history: bool = True
    #: Whole-run latency histograms by (kind, name, measure); None when the run kept none (an older run).
    latency: Mapping[tuple[str, str, str], HdrHistogram] | None = None
    #: Work the run's end left unsent (the latency book's count); None when unknown.
    unsent: int | None = None

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

    def sample(self, t: float, entries: Iterable[StatsEntry], latency: LatencyDelta | None = None) -> HistoryPoint:
        """The point at ``t``: what each entry added since the previous sample (entries that added nothing left out),
        with what the latency book recorded since then (``latency``)."""
        deltas = []
        current: dict[tuple[str, str], StatsEntry] = {}
        for entry in entries:
            key = (entry.method, entry.name)
            current[key] = entry
            delta = _delta(entry, self._last.get(key))
            if delta.num_requests > 0:
                deltas.append(delta)
        self._last = current
        return HistoryPoint(t=t, entries=tuple(deltas), latency=latency)


def load_results(results_dir: str | Path) -> RunData:
    """The run data in a ``cmg-harness run`` results directory; ResultsError naming a missing or bad file."""
    results = ResultsDir(Path(results_dir))
    results.require()
    entries = results.read_locust_stats()
    outcomes = results.read_outcomes()
    history = results.read_stats_history()
    abort = results.read_gate_abort()
    aborts = {str(abort["threshold"]): abort} if abort is not None and "threshold" in abort else {}
    latency, unsent = whole_run_latency(outcomes, source=str(results.file(OUTCOMES)))
    return RunData(entries=entries, history=history or (), outcomes=outcomes, aborts=aborts,
                   has_history=history is not None, latency=latency, unsent=unsent)


def whole_run_latency(outcomes: Mapping[str, Any] | None, *, source: str = OUTCOMES
                      ) -> tuple[dict[tuple[str, str, str], HdrHistogram] | None, int | None]:
    """The whole-run histograms and unsent count in an outcome tally's ``latency`` section; (None, None) for a tally
    without one; ResultsError naming ``source`` when they cannot be decoded."""
    latency = outcomes.get("latency") if outcomes is not None else None
    if not isinstance(latency, Mapping):
        return None, None
    unsent = latency.get("unsent")
    unsent = int(unsent) if isinstance(unsent, (int, float)) and not isinstance(unsent, bool) else None
    rows = latency.get("histograms")
    if rows is None:
        return None, unsent
    try:
        return decode_histograms(rows), unsent
    except LatencyError as error:
        raise ResultsError(f"{source!r}: latency.histograms: {error}") from None
