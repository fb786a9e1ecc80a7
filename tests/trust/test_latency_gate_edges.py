"""The latency gates at their edges: millisecond rounding, the achieved-rate figure's fallbacks and details, window
sizes of one second, counts of one intended second gathered from several history lines, and a second whose middle
falls exactly on a window's edge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.gates import RunData, evaluate, load_results, parse_gate
from harness.gates._latency import no_latency_history, statistic_ms, whole_run_achieved
from harness.latency.histograms import REQUEST, LatencyBook, new_histogram
from harness.load.gate_listener import HISTORY_CHANNEL
from harness.results.stats import HistoryPoint
from tests.gates.results import STS, T0, write_results

Sample = tuple[float, float, float]  # intended, sent, answered (epoch seconds)


def _history(points: list[tuple[float, list[Sample]]]) -> list[dict[str, Any]]:
    """``stats_history.jsonl`` lines: a baseline at T0, then a line at each ``t`` holding the samples answered by it."""
    book = LatencyBook()
    book.open_channel(HISTORY_CHANNEL)
    lines = [json.loads(HistoryPoint(t=T0, latency=book.take(HISTORY_CHANNEL)).to_json())]
    for t, samples in points:
        for intended, sent, answered in samples:
            book.record(REQUEST, STS, intended=intended, sent=sent, answered=answered)
        lines.append(json.loads(HistoryPoint(t=t, latency=book.take(HISTORY_CHANNEL)).to_json()))
    return lines


def _judge(tmp_path: Path, points: list[tuple[float, list[Sample]]], threshold: str, window: str) -> Any:
    data = load_results(write_results(tmp_path, [], history=_history(points)))
    gate = parse_gate(f'thresholds:\n  "{STS}":\n    - threshold: {threshold}\n      window: {window}\n')
    (result,) = evaluate(gate, data).results
    return result


def test_percentiles_keep_microseconds_as_three_decimals_of_a_millisecond() -> None:
    histogram = new_histogram()
    histogram.record_value(1234)
    assert (statistic_ms(histogram, "p50"), statistic_ms(histogram, "max")) == (1.234, 1.234)
    assert statistic_ms(new_histogram(), "p99") is None


def test_the_runs_own_achieved_rate_is_taken_with_its_detail() -> None:
    empty = RunData(entries=())
    rates = {"achieved_rate_ratio": 1.0, "requests_sent": 1, "requests_intended": 1}
    assert whole_run_achieved({"rates": rates}, empty) == (1.0, "1 of 1 intended requests sent")
    assert whole_run_achieved({"rates": {"achieved_rate_ratio": 0.5, "requests_intended": 10}}, empty) == (0.5, "")
    nothing = {"achieved_rate_ratio": 0.0, "requests_sent": 0, "requests_intended": 0}
    assert whole_run_achieved({"rates": nothing}, empty) == (None, "no request was intended")


def test_an_achieved_rate_that_is_no_number_is_not_taken() -> None:
    for ratio in (True, "0.9"):
        measured, detail = whole_run_achieved({"rates": {"achieved_rate_ratio": ratio}}, RunData(entries=()))
        assert measured is None and detail.startswith("the run has no achieved rate: its outcomes.json has no 'rates'")


def test_live_the_achieved_rate_counts_unknown_unsent_work_as_none() -> None:
    book = LatencyBook()
    assert whole_run_achieved(None, RunData(entries=(), latency=book.totals())) == (None, "no request was intended")
    for n in range(3):
        book.record(REQUEST, STS, intended=T0 + n, sent=T0 + n, answered=T0 + n + 0.01)
    assert whole_run_achieved(None, RunData(entries=(), latency=book.totals())) == (1.0, "3 of 3 intended requests sent")
    assert whole_run_achieved(None, RunData(entries=(), latency=book.totals(), unsent=1)) == (
        0.75, "3 of 4 intended requests sent")


def test_a_history_with_latency_has_nothing_missing(tmp_path: Path) -> None:
    data = load_results(write_results(tmp_path, [], history=_history([(T0 + 1, [(T0 + 0.1, T0 + 0.1, T0 + 0.2)])])))
    gate = parse_gate(f'thresholds:\n  "{STS}":\n    - threshold: corrected_p99_ms < 1s\n      window: 1s\n')
    assert no_latency_history(gate.thresholds[0], data.history) == ""


def test_a_one_second_window_holds_that_second_only(tmp_path: Path) -> None:
    """500 ms in second 1 and 10 ms in second 2: for "max > 100 ms" the worst one-second window is second 2's."""
    points = [(T0 + 1, [(T0 + 0.1, T0 + 0.1, T0 + 0.6)]), (T0 + 2, [(T0 + 1.1, T0 + 1.1, T0 + 1.11)])]
    result = _judge(tmp_path, points, "corrected_max_ms > 100", "1s")
    assert (result.measured, result.at, result.passed) == (pytest.approx(10.0, rel=2e-3), 2.0, False)


def test_one_intended_second_is_counted_from_every_line_that_holds_it(tmp_path: Path) -> None:
    """Ten requests intended in second 1, five answered by the line at +2 s and five by the one at +3 s: the window
    over seconds 1-2 sent all ten of ten."""
    sent = [(T0 + 1.1, T0 + 1.2, T0 + 1.3)]
    points = [(T0 + 1, []), (T0 + 2, sent * 5), (T0 + 3, [(T0 + 1.1, T0 + 1.2, T0 + 2.5)] * 5)]
    result = _judge(tmp_path, points, "achieved_rate_ratio >= 0.9", "2s")
    assert (result.measured, result.passed) == (1.0, True)


def test_a_second_whose_middle_is_a_window_start_belongs_to_that_window(tmp_path: Path) -> None:
    """History lines at T0+0.5, +1.5, +2.5: second T0+1 (middle T0+1.5) is in the window [T0+1.5, T0+2.5) and not
    in [T0+0.5, T0+1.5), so the first one-second window intended nothing and the second one all of it."""
    request = (T0 + 1.1, T0 + 1.1, T0 + 1.2)
    points = [(T0 + 0.5, []), (T0 + 1.5, []), (T0 + 2.5, [request])]
    result = _judge(tmp_path, points, "achieved_rate_ratio >= 0.9", "1s")
    assert (result.measured, result.at) == (1.0, 2.5)
