"""Per-step statistics of a step-load run, computed from differences within each step, not Locust's run totals.

A step is a run of consecutive history rows with the same (non-zero) user count. The first ``settle`` seconds of
each step are dropped: new users install and register there, and the queue of the previous load drains. What is
left is the step's measured part, from its *base* row (the last settle row) to its last row.

The figures of the measured part come from the per-second request histograms (``stats_history.jsonl``) when the
run has them: exact counts and percentiles of the step's own HTTP requests. Without them, from differences of the
CSV history's cumulative counts and means (exact) and Locust's ~10 s window percentiles (an approximation).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from harness.report.errors import ReportError
from harness.report.history import PERCENTILE_WINDOW, HistoryRow, StatsHistory
from harness.report.requestlog import RequestLog

DEFAULT_SETTLE = 5.0
#: The percentile levels reported per step.
STEP_PERCENTILES = (0.5, 0.95, 0.99)


class StepError(ReportError):
    """A step-splitting parameter is unusable; the message names it and its value."""


@dataclass(frozen=True, slots=True)
class StepStats:
    """One step: users, throughput, latency and failures over its measured part."""

    index: int
    users: int
    start: float            # timestamp of the step's first row
    end: float              # timestamp of its last row
    measured_from: float    # timestamp of the base row: requests after it count
    requests: int
    failures: int
    mean_ms: float | None   # exact: from the cumulative means
    p50_ms: float | None    # from the step's histogram, or Locust's window percentiles (``percentiles_inside``)
    p95_ms: float | None
    p99_ms: float | None
    percentiles_inside: bool  # only responses of the measured part count (a histogram, or windows inside it)

    @property
    def duration(self) -> float:
        """Seconds of the measured part."""
        return self.end - self.measured_from

    @property
    def throughput(self) -> float:
        """HTTP requests per second over the measured part."""
        return self.requests / self.duration

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


def split_steps(history: StatsHistory, *, settle: float = DEFAULT_SETTLE,
                requests: RequestLog | None = None) -> list[StepStats]:
    """The steps of ``history`` with their statistics; steps too short to measure after settling are left out.

    The settle period is ``settle`` seconds, but never more than half of a step, so short steps keep data.
    With ``requests`` (the run's per-second histograms) the figures come from there.
    """
    if not (isinstance(settle, (int, float)) and math.isfinite(settle) and settle >= 0):
        raise StepError(f"settle must be a number of seconds >= 0, got {settle!r}")
    steps: list[StepStats] = []
    for group in _groups(history.rows):
        stats = _step_stats(history, group, len(steps), float(settle), requests)
        if stats is not None:
            steps.append(stats)
    return steps


def _groups(rows: tuple[HistoryRow, ...]) -> list[list[HistoryRow]]:
    # Contiguous runs only: a user count seen again later (after a different one) is a new step.
    groups: list[list[HistoryRow]] = []
    previous: HistoryRow | None = None
    for row in rows:
        if row.users > 0:
            if previous is not None and previous.users == row.users and groups:
                groups[-1].append(row)
            else:
                groups.append([row])
        previous = row
    return groups


def _step_stats(history: StatsHistory, group: list[HistoryRow], index: int, settle: float,
                requests: RequestLog | None) -> StepStats | None:
    start, end = group[0].timestamp, group[-1].timestamp
    settle_for_step = min(settle, (end - start) / 2)
    base = [row for row in group if row.timestamp <= start + settle_for_step][-1]
    measured = [row for row in group if row.timestamp > base.timestamp]
    if not measured:
        return None
    last = measured[-1]
    if requests is not None:
        interval = requests.between(base.timestamp, last.timestamp)
        count, failures, mean = interval.requests, interval.failures, interval.mean_ms
        p50, p95, p99 = (interval.percentile(level) for level in STEP_PERCENTILES)
        inside = True
    else:
        count, failures = last.requests - base.requests, last.failures - base.failures
        mean = (last.latency_sum_ms - base.latency_sum_ms) / count if count > 0 else None
        windows = [row for row in measured if row.timestamp - PERCENTILE_WINDOW >= base.timestamp]
        p50, p95, p99 = (_median([history.window_percentile(row, level) for row in windows or measured])
                         for level in STEP_PERCENTILES)
        inside = bool(windows)
    return StepStats(index=index, users=group[0].users, start=start, end=end, measured_from=base.timestamp,
                     requests=max(count, 0), failures=max(failures, 0), mean_ms=mean, p50_ms=p50, p95_ms=p95,
                     p99_ms=p99, percentiles_inside=inside)


def _median(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None
