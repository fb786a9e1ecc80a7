"""Measuring each threshold of a gate on a run: over the whole run or over every sliding window, and the verdict."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.gates._data import RunData
from harness.gates._latency import (
    WindowValue,
    achieved_windows,
    latency_windows,
    no_latency_history,
    whole_run_achieved,
    whole_run_latency,
)
from harness.gates._spec import (
    ACHIEVED_RATE_RATIO,
    GATE_FAILED_EXIT,
    LATENCY_METRICS,
    PERCENTILES,
    RUN,
    Gate,
    Threshold,
)
from harness.results.stats import HistoryPoint, StatsEntry, percentile
from harness.units import format_measure


class Aggregate:
    """The sums of the stats entries a selector matched, over the whole run or one window; entries can leave again."""

    __slots__ = ("failures", "max_ms", "requests", "timed", "times", "total_ms")

    def __init__(self) -> None:
        self.requests = 0
        self.failures = 0
        self.total_ms = 0.0
        self.times: dict[int, int] = {}
        self.timed = 0
        self.max_ms: float | None = None  # exact whole-run maximum; None: take it from the histogram

    def add(self, entry: StatsEntry, sign: int = 1) -> None:
        """Add ``entry`` (``sign=-1``: take it away again, as a sliding window moves on)."""
        self.requests += sign * entry.num_requests
        self.failures += sign * entry.num_failures
        self.total_ms += sign * entry.total_response_time
        for key, count in entry.response_times.items():
            left = self.times.get(key, 0) + sign * count
            if left:
                self.times[key] = left
            else:
                self.times.pop(key, None)
            self.timed += sign * count

    def value(self, metric: str, seconds: float) -> float | None:
        """The metric over these sums (``seconds``: the span they cover); None when there is nothing to measure."""
        if metric == "count":
            return float(self.requests)
        if metric == "rps":
            return self.requests / seconds if seconds > 0 else None
        if metric in ("failure_ratio", "success_ratio"):
            if self.requests <= 0:
                return None
            ratio = self.failures / self.requests
            return ratio if metric == "failure_ratio" else 1.0 - ratio
        if self.timed <= 0:
            return None
        if metric == "avg":
            return self.total_ms / self.timed
        if metric == "max":
            return self.max_ms if self.max_ms is not None else float(max(self.times))
        return percentile(self.times, PERCENTILES[metric])


@dataclass(frozen=True, slots=True)
class ThresholdResult:
    """One threshold measured: the value (None when there was nothing to measure), pass or fail, and why."""

    threshold: Threshold
    measured: float | None
    passed: bool
    detail: str = ""
    at: float | None = None  # seconds from the start of the history to the end of the window measured
    aborted: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        threshold = self.threshold
        return {"id": threshold.id, "selector": threshold.selector.text, "metric": threshold.metric,
                "operator": threshold.op, "limit": threshold.limit, "unit": threshold.unit,
                "window_s": threshold.window, "abort_on_fail": threshold.abort_on_fail, "line": threshold.line,
                "measured": self.measured, "passed": self.passed, "detail": self.detail, "at_s": self.at,
                "aborted": dict(self.aborted) if self.aborted else None}


@dataclass(frozen=True, slots=True)
class GateResult:
    """Every threshold of a gate measured on one run."""

    gate: Gate
    results: tuple[ThresholdResult, ...]

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)

    @property
    def failures(self) -> tuple[ThresholdResult, ...]:
        return tuple(result for result in self.results if not result.passed)

    @property
    def exit_code(self) -> int:
        """0 when every threshold held, else :data:`GATE_FAILED_EXIT`."""
        return 0 if self.passed else GATE_FAILED_EXIT

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate.path, "name": self.gate.name, "passed": self.passed, "exit_code": self.exit_code,
                "thresholds": len(self.results), "failed": len(self.failures),
                "results": [result.to_dict() for result in self.results]}


def evaluate(gate: Gate, data: RunData, *, latest_window_only: bool = False) -> GateResult:
    """Measure every threshold of ``gate`` on ``data`` (``latest_window_only``: live, judge only the newest window)."""
    return GateResult(gate=gate, results=tuple(measure(threshold, data, latest_window_only=latest_window_only)
                                               for threshold in gate.thresholds))


def measure(threshold: Threshold, data: RunData, *, latest_window_only: bool = False) -> ThresholdResult:
    """Measure one threshold on ``data``; a threshold that aborted the run fails whatever the final value."""
    if threshold.selector.kind == RUN:
        result = _measure_run(threshold, data.outcomes)
    elif threshold.window:
        result = _measure_windows(threshold, data, latest_window_only)
    else:
        result = _measure_whole(threshold, data)
    abort = data.aborts.get(threshold.id)
    if abort is None:
        return result
    at_abort = abort.get("measured")
    value = format_measure(float(at_abort), threshold.unit) if isinstance(at_abort, (int, float)) else "none"
    detail = f"aborted the run after {float(abort.get('elapsed_s', 0.0)):.0f} s, measuring {value} then"
    return ThresholdResult(threshold, result.measured, False, detail, result.at, abort)


def _verdict(threshold: Threshold, measured: float | None, detail: str, at: float | None = None) -> ThresholdResult:
    if measured is None or math.isnan(measured):
        return ThresholdResult(threshold, None, False, detail or "nothing to measure", at)
    return ThresholdResult(threshold, measured, threshold.holds(measured), detail, at)


def _nothing_matched(threshold: Threshold) -> str:
    what = "lifecycle stage entries" if threshold.selector.kind == "stage" else "requests"
    return f"no {what} matched {threshold.selector.text!r}"


def _measure_whole(threshold: Threshold, data: RunData) -> ThresholdResult:
    if threshold.metric in LATENCY_METRICS:
        value, detail = whole_run_latency(threshold, data)
        return _verdict(threshold, value, detail or ("" if value is not None else _nothing_matched(threshold)))
    if threshold.metric == ACHIEVED_RATE_RATIO:
        return _verdict(threshold, *whole_run_achieved(data.outcomes, data))
    total = Aggregate()
    maxima = []
    for entry in data.entries:
        if threshold.selector.matches(entry.method, entry.name):
            total.add(entry)
            maxima.append(entry.max_response_time)
    total.max_ms = max(maxima, default=None)
    detail = _nothing_matched(threshold) if not total.requests else ""
    return _verdict(threshold, total.value(threshold.metric, data.span), detail)


def _measure_windows(threshold: Threshold, data: RunData, latest_only: bool) -> ThresholdResult:
    if not data.has_history:
        return _verdict(threshold, None, "the results hold no per-second history (stats_history.jsonl), "
                                         "which windows need")
    points = data.history
    if len(points) < 2:
        return _verdict(threshold, None, "the per-second history is too short for a window")
    size = int(threshold.window or 1)
    short = len(points) - 1 < size
    size = min(size, len(points) - 1)
    if threshold.metric in LATENCY_METRICS or threshold.metric == ACHIEVED_RATE_RATIO:
        missing = no_latency_history(threshold, points)
        if missing:
            return _verdict(threshold, None, missing)
        windows = achieved_windows if threshold.metric == ACHIEVED_RATE_RATIO else latency_windows
        window_value = windows(threshold, points)
    else:
        window_value = _stats_windows(threshold, points)
    candidates: list[tuple[float, float]] = []  # (value, end of the window in seconds from the history's start)
    origin = points[0].t
    for end in range(1, len(points)):
        if end < size or latest_only and end != len(points) - 1:
            continue
        value = window_value(end, size)
        if value is not None:
            candidates.append((value, points[end].t - origin))
    note = f" (the run was shorter than the {threshold.window:g} s window)" if short else ""
    if not candidates:
        return _verdict(threshold, None, _nothing_matched(threshold) + " in any window" + note)
    value, at = _worst(threshold, candidates)
    return _verdict(threshold, value, f"worst window ends at +{at:.0f} s{note}", at)


def _stats_windows(threshold: Threshold, points: Sequence[HistoryPoint]) -> WindowValue:
    """A metric of Locust's entries over each window, kept as running sums: a later window adds its new seconds and
    takes away those that left (windows of one size are asked for in order of their end)."""
    selector = threshold.selector
    matched = [tuple(entry for entry in point.entries if selector.matches(entry.method, entry.name))
               for point in points]
    window = Aggregate()
    covered = [0]  # the sums cover the points covered-size+1 .. covered

    def value(end: int, size: int) -> float | None:
        for later in range(covered[0] + 1, end + 1):
            for entry in matched[later]:
                window.add(entry)
            if later > size:
                for entry in matched[later - size]:
                    window.add(entry, -1)
        covered[0] = end
        return window.value(threshold.metric, points[end].t - points[end - size].t)
    return value


def _worst(threshold: Threshold, candidates: Sequence[tuple[float, float]]) -> tuple[float, float]:
    if threshold.op in ("<", "<="):
        return max(candidates, key=lambda candidate: candidate[0])
    if threshold.op in (">", ">="):
        return min(candidates, key=lambda candidate: candidate[0])
    failing = [candidate for candidate in candidates if not threshold.holds(candidate[0])]
    return failing[0] if failing else candidates[-1]


def _measure_run(threshold: Threshold, outcomes: Mapping[str, Any] | None) -> ThresholdResult:
    if outcomes is None:
        return _verdict(threshold, None, "the results hold no outcome tally (outcomes.json)")
    value, detail = run_value(threshold.metric, outcomes)
    return _verdict(threshold, value, detail)


def _number(section: Any, key: str) -> int | None:
    if not isinstance(section, Mapping):
        return None
    value = section.get(key)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def run_value(metric: str, outcomes: Mapping[str, Any]) -> tuple[float | None, str]:
    """A run-wide metric from the outcome tally (``outcomes.json``), with where it came from."""
    lifecycles = outcomes.get("lifecycles")
    if metric == "unexpected_outcomes":
        # Verdicts judged against the fault schedule when the tally has them; else the tally's own count of
        # failures it did not expect; else every failed lifecycle.
        judged = _number(outcomes.get("verdicts"), "unexpected")
        if judged is not None:
            return float(judged), "from the verdicts"
        unexpected = _number(lifecycles, "unexpected_failures")
        if unexpected is not None:
            return float(unexpected), "failed lifecycles and stages not explained by device faults"
        failed = _number(lifecycles, "failed")
        return (float(failed), "failed lifecycles") if failed is not None else (None, "no lifecycle counts")
    if metric == "success_ratio":
        started = _number(outcomes.get("devices"), "started")
        failed = _number(lifecycles, "failed")
        if not started or failed is None:
            return None, "no device started"
        return 1.0 - failed / started, f"{started - failed} of {started} devices without a failed lifecycle"
    key = {"renewals": "renewed", "registrations": "registered"}[metric]
    count = _number(outcomes.get("events"), key)
    return (float(count), "") if count is not None else (None, f"the tally counts no {metric}")
