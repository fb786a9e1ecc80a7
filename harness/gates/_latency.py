"""Gate metrics read from the latency book: percentiles of service time, lateness and corrected latency, and the rate
achieved against the rate intended, over the whole run or over a window of the per-second history.

Percentiles are always taken from one HdrHistogram: the matched names' histograms (and, in a window, the matched
seconds' histograms) are merged first, never averaged as percentiles, so a window's p99 is the p99 of every request in
it. A run that kept no such data (one from before the latency book, or before the gates read it) measures nothing and
the detail says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hdrh.histogram import HdrHistogram

from harness.gates._data import RunData
from harness.gates._spec import LATENCY_METRICS, LATENCY_STATISTICS, Threshold
from harness.latency.histograms import REQUEST, SENT, SERVICE, merged_counts, new_histogram, sparse_statistic_ms
from harness.results.stats import HistoryPoint

#: A window's value from the index of its last point and its size in points (None: nothing to measure in it).
WindowValue = Callable[[int, int], float | None]


def statistic_ms(histogram: HdrHistogram, statistic: str) -> float | None:
    """``p50`` … ``p999`` or ``max`` of ``histogram`` in ms (rounded as the run summary rounds); None when empty."""
    if histogram.get_total_count() == 0:
        return None
    if statistic == "max":
        return round(histogram.get_max_value() / 1000.0, 3)
    return round(histogram.get_value_at_percentile(LATENCY_STATISTICS[statistic]) / 1000.0, 3)


def _measure_name(measure: str) -> str:
    return {"service_ms": "service time", "corrected_ms": "corrected latency", "lateness_ms": "lateness"}[measure]


def whole_run_latency(threshold: Threshold, data: RunData) -> tuple[float | None, str]:
    """A latency-book percentile over the whole run: the merged histograms of every name the selector matches."""
    measure, statistic = LATENCY_METRICS[threshold.metric]
    if data.latency is None:
        return None, (f"the run has no {_measure_name(measure)} data: its outcomes.json keeps no latency histograms "
                      "(a run from before they were recorded)")
    merged = new_histogram()
    for (kind, name, recorded), histogram in data.latency.items():
        if recorded == measure and threshold.selector.matches_key(kind, name):
            merged.add(histogram)
    return statistic_ms(merged, statistic), ""


def whole_run_achieved(outcomes: Mapping[str, Any] | None, data: RunData) -> tuple[float | None, str]:
    """Requests sent divided by requests intended (sent plus unsent) over the run, for all requests together.

    The run's own figure (``outcomes.json`` -> ``rates.achieved_rate_ratio``) when it has one; live, from the book."""
    rates = outcomes.get("rates") if outcomes is not None else None
    if isinstance(rates, Mapping):
        ratio, sent, intended = (rates.get(key) for key in ("achieved_rate_ratio", "requests_sent",
                                                            "requests_intended"))
        if isinstance(ratio, (int, float)) and not isinstance(ratio, bool):
            detail = f"{sent} of {intended} intended requests sent" if sent is not None and intended else ""
            return (float(ratio), detail) if intended != 0 else (None, "no request was intended")
    if data.latency is None:
        return None, "the run has no achieved rate: its outcomes.json has no 'rates' (a run from before the open model)"
    sent = sum(histogram.get_total_count() for (kind, _, measure), histogram in data.latency.items()
               if kind == REQUEST and measure == SERVICE)
    intended = sent + (data.unsent or 0)
    if intended == 0:
        return None, "no request was intended"
    return sent / intended, f"{sent} of {intended} intended requests sent"


def no_latency_history(threshold: Threshold, points: Sequence[HistoryPoint]) -> str:
    """Why windows of ``threshold`` cannot be measured on ``points`` ("" when they can)."""
    if any(point.latency is not None for point in points):
        return ""
    return (f"the per-second history (stats_history.jsonl) holds no latency data, which a windowed "
            f"{threshold.metric} needs (a run from before it was recorded)")


def latency_windows(threshold: Threshold, points: Sequence[HistoryPoint]) -> WindowValue:
    """The percentile of each window: one histogram merged from the matched histograms of the window's seconds (sparse
    ones, over HdrHistogram's buckets, so the merge is exact and the percentile is HdrHistogram's)."""
    measure, statistic = LATENCY_METRICS[threshold.metric]
    selector = threshold.selector
    matched = [[counts for (kind, name, recorded), counts in point.latency.histograms.items()
                if recorded == measure and selector.matches_key(kind, name)] if point.latency is not None else []
               for point in points]

    def value(end: int, size: int) -> float | None:
        merged = merged_counts(counts for index in range(end - size + 1, end + 1) for counts in matched[index])
        return sparse_statistic_ms(merged, LATENCY_STATISTICS[statistic])
    return value


def achieved_windows(threshold: Threshold, points: Sequence[HistoryPoint]) -> WindowValue:
    """Requests sent in each window divided by the requests whose devices meant them for that window.

    A request is recorded when its answer comes, possibly seconds after the window it was intended in: the counts of
    every point are gathered first, by the epoch second each request was sent and intended in, and a window counts
    the seconds whose middle it spans. Live, a request still waiting for its answer is not yet counted.
    """
    selector = threshold.selector
    sent: dict[int, int] = {}
    intended: dict[int, int] = {}
    for point in points:
        if point.latency is None:
            continue
        for (kind, name, timeline), seconds in point.latency.timelines.items():
            if not selector.matches_key(kind, name):
                continue
            into = sent if timeline == SENT else intended
            for second, count in seconds.items():
                into[second] = into.get(second, 0) + count

    def within(counts: Mapping[int, int], start: float, end: float) -> int:
        return sum(count for second, count in counts.items() if start <= second + 0.5 < end)

    def value(end: int, size: int) -> float | None:
        start_t, end_t = points[end - size].t, points[end].t
        wanted = within(intended, start_t, end_t)
        return within(sent, start_t, end_t) / wanted if wanted else None
    return value
