"""Gates on the latency book: corrected latency, lateness and service time percentiles merged from HdrHistograms,
and the achieved versus intended rate, over the whole run and in windows, per endpoint and per stage."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.gates import GateFileError, RunData, evaluate, load_results, parse_gate
from harness.latency.histograms import (
    CORRECTED,
    LATENESS,
    REPORT,
    REQUEST,
    SERVICE,
    STAGE,
    LatencyBook,
    LatencyDelta,
    new_histogram,
)
from harness.load.gate_listener import HISTORY_CHANNEL, GateMonitor
from harness.results.stats import HistoryPoint
from tests.gates.results import OUTCOMES, POLICY, STS, T0, write_results

STS_OTHER = "/CCM_Proxy_ServerAuth/99999999999999999/CCM_STS"


def gate(selector: str, *thresholds: str, window: str = "") -> Any:
    if window:
        items = "".join(f"    - threshold: {text}\n      window: {window}\n" for text in thresholds)
    else:
        items = "".join(f"    - {text}\n" for text in thresholds)
    return parse_gate(f'thresholds:\n  "{selector}":\n{items}')


def judge(data: RunData, selector: str, *thresholds: str, window: str = "") -> list[Any]:
    return list(evaluate(gate(selector, *thresholds, window=window), data).results)


def refusal(text: str) -> GateFileError:
    with pytest.raises(GateFileError) as caught:
        parse_gate(text, "gates/ci.yaml")
    return caught.value


# ------------------------------------------------------------------------------------------------ the gate file
@pytest.mark.parametrize(("expression", "metric", "limit"), [
    ("corrected_p99_ms < 2s", "corrected_p99_ms", 2000.0),
    ("lateness_p99_ms <= 250ms", "lateness_p99_ms", 250.0),
    ("corrected_p50_ms < 100", "corrected_p50_ms", 100.0),
    ("lateness_p999_ms < 1.5s", "lateness_p999_ms", 1500.0),
    ("service_max_ms < 3s", "service_max_ms", 3000.0),
    ("corrected_p95_ms < 900", "corrected_p95_ms", 900.0),
    ("achieved_rate_ratio >= 97%", "achieved_rate_ratio", 0.97),
])
def test_the_latency_metrics_are_read_in_their_units(expression: str, metric: str, limit: float) -> None:
    """Latency limits in ms or s, the rate ratio as a fraction or a percentage."""
    (threshold,) = gate("*", expression).thresholds
    assert (threshold.metric, threshold.limit) == (metric, pytest.approx(limit))


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ('thresholds:\n  "*":\n    - corrected_p98_ms < 500\n', 3, "unknown metric 'corrected_p98_ms'"),
    ("thresholds:\n  run:\n    - corrected_p99_ms < 500\n", 3,
     "metric 'corrected_p99_ms' does not apply to selector 'run'"),
    ('thresholds:\n  "*":\n    - lateness_p99_ms < 5%\n', 3, "unit '%' does not fit 'lateness_p99_ms'"),
    ('thresholds:\n  "*":\n    - corrected_p99_ms < 0\n', 3, "can never hold"),
    ('thresholds:\n  "*":\n    - achieved_rate_ratio >= 0\n', 3, "always holds"),
    ('thresholds:\n  "*":\n    - achieved_rate_ratio < 0\n', 3, "can never hold"),
    (f"thresholds:\n  {STS}:\n    - achieved_rate_ratio >= 0.9\n", 3, "needs a window"),
    ("thresholds:\n  stage:policy cycle:\n    - achieved_rate_ratio >= 0.9\n", 3, "needs a window"),
])
def test_a_latency_metric_mistake_is_refused_at_its_line(text: str, line: int, fragment: str) -> None:
    """Unknown names, the wrong selector or unit, impossible limits, and a per-endpoint rate ratio without a window."""
    error = refusal(text)
    assert (error.line, fragment in error.message) == (line, True), error.message


def test_an_unknown_latency_metric_suggests_the_nearest_names() -> None:
    """``corrected_p98_ms`` comes back with real names of the same measure."""
    message = refusal('thresholds:\n  "*": [corrected_p98_ms < 1]\n').message
    assert "did you mean 'corrected_p95_ms' or 'corrected_p99_ms'" in message or \
        "did you mean 'corrected_p99_ms' or 'corrected_p95_ms'" in message


def test_a_rate_ratio_above_one_is_a_real_limit() -> None:
    """The achieved rate exceeds the intended one while late work catches up, so ``<= 1`` checks something and
    ``> 1`` can hold; a per-endpoint or per-stage ratio is accepted with a window."""
    parsed = parse_gate(f'thresholds:\n  "*": [achieved_rate_ratio <= 1.2]\n  {STS}:\n'
                        "    - threshold: achieved_rate_ratio >= 90%\n      window: 5s\n"
                        "  stage:*:\n    - threshold: achieved_rate_ratio > 0.5\n      window: 5s\n")
    assert [threshold.window for threshold in parsed.thresholds] == [None, 5.0, 5.0]


# ------------------------------------------------------------------------------------------------ results directories
def book_of(samples: list[tuple[str, str, float, float, float]]) -> LatencyBook:
    """A book that recorded (kind, name, intended, sent, answered) in seconds."""
    book = LatencyBook()
    for kind, name, intended, sent, answered in samples:
        book.record(kind, name, intended=intended, sent=sent, answered=answered)
    return book


def outcomes_of(book: LatencyBook, **extra: Any) -> dict[str, Any]:
    """``outcomes.json`` as a run writes it: the tally plus the book's summary with its whole-run histograms."""
    return {**OUTCOMES, "latency": {**book.summary(), "histograms": book.encoded()}, **extra}


# Corrected 1.5 ms (sent 0.5 ms late, 1 ms service) for CCM_STS, 1.9 ms for another role's CCM_STS, 1.2 ms policy,
# and one policy cycle stage of 1.8 ms: values under 2.048 ms sit in HdrHistogram's exact unit-resolution range.
SAMPLES = [(REQUEST, STS, T0, T0 + 0.0005, T0 + 0.0015)] * 90 + \
          [(REQUEST, STS_OTHER, T0, T0 + 0.0009, T0 + 0.0019)] * 10 + \
          [(REQUEST, POLICY, T0, T0 + 0.0002, T0 + 0.0012)] * 100 + \
          [(STAGE, "policy cycle", T0, T0, T0 + 0.0018)]


@pytest.fixture
def whole_run(tmp_path: Path) -> RunData:
    return load_results(write_results(tmp_path, [], outcomes=outcomes_of(book_of(SAMPLES))))


def test_whole_run_percentiles_per_endpoint_all_requests_and_stage(whole_run: RunData) -> None:
    """A placeholder selector merges both roles' CCM_STS: 90 at 1.5 ms and 10 at 1.9 ms give p50 1.5, p99 1.9."""
    sts = "/CCM_Proxy_ServerAuth/{id}/CCM_STS"
    p50, p99, lateness, service = judge(whole_run, sts, "corrected_p50_ms < 10", "corrected_p99_ms < 10",
                                        "lateness_max_ms < 10", "service_p99_ms < 10")
    assert (p50.measured, p99.measured, lateness.measured, service.measured) == (1.5, 1.9, 0.9, 1.0)
    (everything,) = judge(whole_run, "*", "corrected_p50_ms < 10")
    assert everything.measured == 1.2  # 100 policy requests at 1.2 ms are half of the 200
    (stage,) = judge(whole_run, "stage:policy cycle", "corrected_max_ms < 10")
    assert stage.measured == 1.8


def test_a_value_equal_to_the_limit_passes_a_less_or_equal_and_fails_a_less_than(whole_run: RunData) -> None:
    """The boundary as the other metrics have it: measured 1.5 ms holds ``<= 1.5`` and crosses ``< 1.5``."""
    at_most, below, above = judge(whole_run, STS, "corrected_p99_ms <= 1.5", "corrected_p99_ms < 1.5",
                                  "corrected_p99_ms >= 1.5")
    assert (at_most.measured, at_most.passed, below.passed, above.passed) == (1.5, True, False, True)


def test_a_selector_matching_no_histogram_fails_saying_so(whole_run: RunData) -> None:
    """A typo in a request name measures nothing, and nothing is not a pass."""
    (result,) = judge(whole_run, "/CCM_Proxy_ServerAuth/{id}/CCM_STSS", "corrected_p99_ms < 10")
    assert (result.measured, result.passed) == (None, False)
    assert "no requests matched" in result.detail


def test_a_run_without_latency_histograms_says_it_has_no_such_data(tmp_path: Path) -> None:
    """Results from before the latency book: a clear 'no such data' instead of a pass or a crash."""
    data = load_results(write_results(tmp_path, [], outcomes=OUTCOMES))
    corrected, achieved = judge(data, "*", "corrected_p99_ms < 10", "achieved_rate_ratio >= 0.9")
    assert (corrected.passed, achieved.passed) == (False, False)
    assert "has no corrected latency data" in corrected.detail
    assert "has no achieved rate" in achieved.detail


def test_an_undecodable_histogram_in_the_outcomes_is_refused_naming_the_file(tmp_path: Path) -> None:
    """A damaged ``outcomes.json`` is a results error, not a silently missing measure."""
    outcomes = {**OUTCOMES, "latency": {"histograms": [[REQUEST, STS, CORRECTED, "not-a-histogram"]]}}
    folder = write_results(tmp_path, [], outcomes=outcomes)
    with pytest.raises(ValueError, match="outcomes.json.*malformed"):
        load_results(folder)


def test_the_whole_run_achieved_rate_is_the_runs_own_figure(tmp_path: Path) -> None:
    """``*: achieved_rate_ratio`` reads ``rates`` from the outcomes: 194 of 200 intended requests sent."""
    rates = {"requests_sent": 194, "requests_intended": 200, "achieved_rate_ratio": 0.97}
    data = load_results(write_results(tmp_path, [], outcomes=outcomes_of(book_of(SAMPLES), rates=rates)))
    held, crossed = judge(data, "*", "achieved_rate_ratio >= 97%", "achieved_rate_ratio > 0.97")
    assert (held.measured, held.passed, crossed.passed) == (0.97, True, False)
    assert "194 of 200" in held.detail


def test_live_the_achieved_rate_comes_from_the_book_and_its_unsent_work() -> None:
    """Without the run's rates (the master during the run): 200 sent and 50 unsent give 0.8."""
    book = book_of(SAMPLES)
    book.record_unsent(50)
    data = RunData(entries=(), outcomes={}, latency=book.totals(), unsent=book.unsent)
    (result,) = judge(data, "*", "achieved_rate_ratio >= 0.8")
    assert (result.measured, result.passed) == (0.8, True)


# ------------------------------------------------------------------------------------------------ windows
def history_of(seconds: list[list[tuple[str, str, float, float, float]]]) -> list[dict[str, Any]]:
    """``stats_history.jsonl`` lines: a baseline at T0, then one point per second holding that second's samples."""
    book = LatencyBook()
    book.open_channel(HISTORY_CHANNEL)
    lines = [json.loads(HistoryPoint(t=T0, latency=book.take(HISTORY_CHANNEL)).to_json())]
    for number, samples in enumerate(seconds, start=1):
        for kind, name, intended, sent, answered in samples:
            book.record(kind, name, intended=intended, sent=sent, answered=answered)
        lines.append(json.loads(HistoryPoint(t=T0 + number, latency=book.take(HISTORY_CHANNEL)).to_json()))
    return lines


def steady(second: int, count: int, corrected_s: float, name: str = STS) -> list[tuple[str, str, float, float, float]]:
    """``count`` requests intended and sent within ``second`` (from T0), each answered ``corrected_s`` later."""
    start = T0 + second + 0.1
    return [(REQUEST, name, start, start, start + corrected_s)] * count


def test_a_window_is_one_histogram_of_every_sample_in_it_not_an_average_of_percentiles(tmp_path: Path) -> None:
    """Second 1: 99 requests at 10 ms; second 2: one at 900 ms. Averaging their p99s would give 455 ms; the merged
    2 s window's p99 is that of one histogram holding all 100 samples."""
    seconds = [steady(0, 99, 0.010), steady(1, 1, 0.900)]
    data = load_results(write_results(tmp_path, [], history=history_of(seconds)))
    (result,) = judge(data, STS, "corrected_p99_ms < 1s", window="2s")
    expected = new_histogram()
    for samples in seconds:
        for _, _, intended, _, answered in samples:
            expected.record_value(round((answered - intended) * 1e6))
    assert result.measured == round(expected.get_value_at_percentile(99.0) / 1000.0, 3)
    assert result.measured == pytest.approx(10.0, rel=2e-3)


def test_the_worst_window_of_a_stall_is_found_per_endpoint(tmp_path: Path) -> None:
    """A 2 s corrected-latency stall on CCM_STS only, answered in the history's 5th second: the first 2 s window that
    holds it (ending at +5 s) reads it; the policy endpoint's windows stay calm."""
    seconds = [steady(s, 20, 2.0 if s == 4 else 0.01) + steady(s, 20, 0.01, POLICY) for s in range(8)]
    data = load_results(write_results(tmp_path, [], history=history_of(seconds)))
    (sts,) = judge(data, "/CCM_Proxy_ServerAuth/{id}/CCM_STS", "corrected_p99_ms < 1s", window="2s")
    (policy,) = judge(data, POLICY, "corrected_p99_ms < 1s", window="2s")
    assert (sts.passed, sts.measured, sts.at) == (False, pytest.approx(2000.0, rel=2e-3), 5.0)
    assert policy.passed and policy.measured == pytest.approx(10.0, rel=2e-3)


def test_stage_windows_read_the_stage_histograms(tmp_path: Path) -> None:
    """``stage:policy cycle`` in a window reads the stage's own histograms, not the requests'."""
    seconds = [steady(0, 5, 0.01) + [(STAGE, "policy cycle", T0 + 0.1, T0 + 0.3, T0 + 0.8)]]
    data = load_results(write_results(tmp_path, [], history=history_of(seconds)))
    corrected, lateness = judge(data, "stage:policy cycle", "corrected_max_ms < 1s", "lateness_max_ms < 1s",
                                window="1s")
    assert (corrected.measured, lateness.measured) == (pytest.approx(700.0, rel=2e-3), pytest.approx(200.0, rel=2e-3))


def test_windowed_achieved_rate_sees_work_held_back_and_caught_up(tmp_path: Path) -> None:
    """10 requests intended each second; those of seconds 3-4 are sent only in second 5. The window over seconds
    3-4 (ending at +5 s) achieved nothing of what was intended; the window over 5-6 sent 40 of 20 intended."""
    seconds: list[list[tuple[str, str, float, float, float]]] = []
    for second in range(8):
        intended = T0 + second + 0.1
        sent = T0 + 5.2 if second in (3, 4) else intended
        seconds.append([(REQUEST, STS, intended, sent, sent + 0.01)] * 10)
    # A request is recorded when answered: those held back arrive in the line of second 5.
    held = seconds[3] + seconds[4]
    seconds[3], seconds[4], seconds[5] = [], [], seconds[5] + held
    data = load_results(write_results(tmp_path, [], history=history_of(seconds)))
    worst, best = judge(data, STS, "achieved_rate_ratio >= 0.5", "achieved_rate_ratio <= 1.2", window="2s")
    assert (worst.measured, worst.at, worst.passed) == (0.0, 5.0, False)
    assert (best.measured, best.at, best.passed) == (2.0, 7.0, False)
    (stage_less,) = judge(data, "stage:*", "achieved_rate_ratio >= 0.5", window="2s")
    assert stage_less.measured is None and "no lifecycle stage entries matched" in stage_less.detail


def test_a_history_without_latency_says_windows_have_no_such_data(tmp_path: Path) -> None:
    """An older ``stats_history.jsonl`` (Locust entries only): a windowed latency metric names what is missing."""
    lines = [{"t": T0, "entries": []}, {"t": T0 + 1, "entries": []}]
    data = load_results(write_results(tmp_path, [], history=lines))
    corrected, achieved = judge(data, "*", "corrected_p99_ms < 1s", "achieved_rate_ratio >= 0.9", window="1s")
    assert not corrected.passed and "holds no latency data" in corrected.detail
    assert not achieved.passed and "holds no latency data" in achieved.detail


# ------------------------------------------------------------------------------------------------ the live monitor
def test_the_monitor_writes_each_seconds_histograms_without_disturbing_the_worker_drain(tmp_path: Path) -> None:
    """The history's latency comes from a channel of its own: the report drain still holds everything, and every
    line holds exactly that second's samples."""
    book = LatencyBook()
    clock = iter(float(T0 + n) for n in range(10))
    monitor = GateMonitor(dict, latency=book, clock=lambda: next(clock))
    options = SimpleNamespace(gate="", results_dir=str(tmp_path))
    environment = SimpleNamespace(parsed_options=options, runner=SimpleNamespace(stats=SimpleNamespace(entries={})))
    monitor.on_test_start(environment)
    book.record(REQUEST, STS, intended=T0, sent=T0 + 0.2, answered=T0 + 0.5)
    monitor.sample()
    book.record(REQUEST, STS, intended=T0 + 1, sent=T0 + 1, answered=T0 + 1.1)
    monitor.on_test_stop(environment)
    lines = [HistoryPoint.from_json(line) for line in (tmp_path / "stats_history.jsonl").read_text().splitlines()]
    counts = [sum(point.latency.histograms[(REQUEST, STS, CORRECTED)].values())
              if point.latency is not None and point.latency.histograms else 0 for point in lines]
    assert counts == [0, 1, 1]
    assert lines[1].latency is not None
    assert list(lines[1].latency.histograms[(REQUEST, STS, LATENESS)]) == [pytest.approx(200_000, rel=1e-3)]
    report = LatencyDelta.from_json(book.drain(REPORT))
    assert sum(report.histograms[(REQUEST, STS, SERVICE)].values()) == 2
    assert HISTORY_CHANNEL not in book._channels  # closed at test stop: nothing piles up after the run
