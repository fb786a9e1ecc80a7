"""The latency book at its edges: exact microseconds, HdrHistogram bucket edges, sparse percentiles equal to a real
HdrHistogram's, merges that lose no count, channels that hand each record out once, and the JSON a worker ships.

Expected values are literals (not the module's constants), so a changed range, precision or threshold shows."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram

from harness.latency.histograms import (
    CORRECTED,
    INTENDED,
    LATENESS,
    REPORT,
    REQUEST,
    SENT,
    SERVICE,
    STAGE,
    ExportBuckets,
    LatencyBook,
    LatencyDelta,
    LatencyError,
    _micros,
    bucket_top_us,
    bucket_us,
    decode_histograms,
    merged_counts,
    percentiles_ms,
    sparse_statistic_ms,
)

URI = "/CCM_Proxy_MutualAuth/<id>/ccm_system/request"
OTHER = "/CCM_Proxy_ServerAuth/<id>/ccm_system/request"


def _reference() -> HdrHistogram:
    """A real HdrHistogram with the book's documented range and precision: 1 µs to one hour, 3 significant digits."""
    return HdrHistogram(1, 3_600_000_000, 3)


def _max_ms(book: LatencyBook, kind: str, name: str, measure: str) -> float:
    return float(percentiles_ms(book.histogram(kind, name, measure))["max"])


# --- seconds to microseconds ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "micros"), [
    (2.5, 2_500_000),  # the scale: a million microseconds a second
    (0.0015, 1_500),
    (0.0000016, 2),  # rounded to the nearest microsecond, not truncated
    (0.0000004, 1),  # below half a microsecond: the floor
    (0.0, 1),  # nothing waited: the histograms' floor of 1 µs
    (-0.5, 1),  # a clock step backwards: nothing waited, not a negative
    (3600.0, 3_600_000_000),  # exactly one hour is kept as it is
    (3600.000001, 3_600_000_000),  # one microsecond over the hour is clamped to it
    (1e9, 3_600_000_000),
])
def test_seconds_become_whole_microseconds_between_the_floor_and_one_hour(seconds: float, micros: int) -> None:
    assert _micros(seconds, "service time") == micros


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_duration_is_refused_naming_the_measure_and_the_value(value: float) -> None:
    with pytest.raises(LatencyError, match=re.escape(f"lateness must be a finite number of seconds, got {value!r}")):
        _micros(value, "lateness")


def test_a_non_finite_instant_is_refused_by_the_book_naming_the_measure_it_spoils() -> None:
    """``sent`` infinite: service time (answered - sent) is the first measure computed, and the one named."""
    book = LatencyBook()
    with pytest.raises(LatencyError, match=re.escape("service time must be a finite number of seconds, got -inf")):
        book.record(REQUEST, URI, intended=0.0, sent=float("inf"), answered=1.0)
    assert book.totals() == {}


# --- buckets ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "lowest", "highest"), [
    (1, 1, 1),
    (300, 300, 300),
    (2047, 2047, 2047),  # the last value of the first 2048 exact microseconds
    (2048, 2048, 2049),  # the next range counts in pairs
    (2049, 2048, 2049),
    (4095, 4094, 4095),
    (4096, 4096, 4099),  # then in fours
    (4099, 4096, 4099),
    (1_000_000, 999_936, 1_000_447),  # around a second: 512 µs wide
    (3_600_000_000, 3_598_712_832, 3_600_809_983),  # the hour: 2,097,152 µs wide
])
def test_a_value_s_bucket_edges_are_hdrhistogram_s_at_three_significant_digits(value: int, lowest: int,
                                                                                highest: int) -> None:
    reference = _reference()
    assert (reference.get_lowest_equivalent_value(value), reference.get_highest_equivalent_value(value)) == (
        lowest, highest)
    assert (bucket_us(value), bucket_top_us(value)) == (lowest, highest)


# --- the three measures, lateness and the timelines -------------------------------------------------------------------


def test_each_measure_comes_from_its_own_pair_of_instants() -> None:
    """Intended 1.0, sent 1.0003, answered 1.001: service 700 µs, lateness 300 µs, corrected 1000 µs (exact: the
    first 2048 µs have a bucket each); counted in second 1 of both timelines."""
    book = LatencyBook()
    book.open_channel("history")
    book.record(REQUEST, URI, intended=1.0, sent=1.0003, answered=1.001)
    assert [_max_ms(book, REQUEST, URI, measure) for measure in (SERVICE, LATENESS, CORRECTED)] == [0.7, 0.3, 1.0]
    delta = book.take("history")
    assert delta.histograms == {(REQUEST, URI, SERVICE): {700: 1}, (REQUEST, URI, LATENESS): {300: 1},
                                (REQUEST, URI, CORRECTED): {1000: 1}}
    assert delta.timelines == {(REQUEST, URI, SENT): {1: 1}, (REQUEST, URI, INTENDED): {1: 1}}


def test_sent_and_intended_seconds_are_counted_apart_and_floored() -> None:
    """Meant at 9.99, sent at 11.0, 11.5 and 12.0: intended second 9 three times; sent seconds 11 twice and 12 once."""
    book = LatencyBook()
    for sent in (11.0, 11.5, 12.0):
        book.record(REQUEST, URI, intended=9.99, sent=sent, answered=sent + 0.01)
    delta = book.take()
    assert delta.timelines == {(REQUEST, URI, SENT): {11: 2, 12: 1}, (REQUEST, URI, INTENDED): {9: 3}}


def test_a_request_is_late_only_when_it_left_more_than_100_ms_after_its_intended_time() -> None:
    """The default threshold is 100 ms, strictly: exactly 100 ms is on time, 100.001 ms is late; 50 ms after an
    intended 10 s is on time (the lateness is the difference of the instants, not their sum)."""
    book = LatencyBook()
    book.record(REQUEST, URI, intended=0.0, sent=0.1, answered=0.2)
    book.record(REQUEST, URI, intended=10.0, sent=10.05, answered=10.1)
    assert book.late == 0
    book.record(REQUEST, URI, intended=0.0, sent=0.100001, answered=0.2)
    assert book.late == 1
    assert book.take().late == 1


def test_a_stage_is_never_late_and_a_late_one_does_not_count() -> None:
    book = LatencyBook()
    book.record(STAGE, "policy cycle", intended=0.0, sent=0.0, answered=5.0)
    book.record(STAGE, "policy cycle", intended=0.0, sent=30.0, answered=31.0)
    assert (book.late, book.take().late) == (0, 0)


# --- percentiles ------------------------------------------------------------------------------------------------------


def test_the_summary_s_percentiles_are_exact_on_1_to_1000_microseconds() -> None:
    """1 … 1000 µs once each: p50 0.5 ms, p90 0.9, p99 0.99, p99.9 0.999, max 1.0 (every value has its own bucket)."""
    book = LatencyBook()
    for micros in range(1, 1001):
        book.record(REQUEST, URI, intended=0.0, sent=0.0, answered=micros / 1e6)
    expected = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p999": 0.999, "max": 1.0, "count": 1000}
    summary = book.summary()
    assert summary["requests"][URI][SERVICE] == expected
    assert summary["all_requests"][SERVICE] == expected
    assert summary["requests"][URI][LATENESS] == {
        "p50": 0.001, "p90": 0.001, "p99": 0.001, "p999": 0.001, "max": 0.001, "count": 1000}


def test_one_sample_is_every_percentile_to_the_microsecond() -> None:
    """A single 1234 µs: every percentile and the maximum are 1.234 ms (three decimals kept), count 1."""
    histogram = _reference()
    histogram.record_value(1234)
    assert percentiles_ms(histogram) == {"p50": 1.234, "p90": 1.234, "p99": 1.234, "p999": 1.234, "max": 1.234,
                                         "count": 1}


def test_a_large_value_s_percentile_is_its_bucket_s_highest_value_in_ms() -> None:
    """2.5 s falls in a bucket 2,048 µs wide, reported as its highest value, 2,500,607 µs: 2500.607 ms."""
    histogram = _reference()
    histogram.record_value(2_500_000)
    assert percentiles_ms(histogram)["p99"] == 2500.607
    assert percentiles_ms(histogram)["max"] == 2500.607


SAMPLE_SETS = [
    [100, 200, 300],
    [5, 5, 5, 9, 1000, 1000, 2049, 2050, 4097, 70_000, 70_000, 1_000_000],
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    [1234, 1234, 1234, 1234, 9999],
    [3_599_999_999, 17, 250_000, 250_001, 250_300],
]
PERCENTILE_POINTS = [0.1, 1.0, 10.0, 25.0, 33.3, 49.0, 50.0, 51.0, 66.7, 75.0, 90.0, 95.0, 99.0, 99.9, 100.0]


@pytest.mark.parametrize("samples", SAMPLE_SETS)
def test_a_sparse_statistic_equals_a_real_hdrhistogram_s(samples: list[int]) -> None:
    """Every percentile of the sparse counts (and 100: the maximum) is what HdrHistogram reports for the same
    samples, in ms to the microsecond."""
    reference = _reference()
    counts: dict[int, int] = {}
    for value in samples:
        reference.record_value(value)
        counts[bucket_us(value)] = counts.get(bucket_us(value), 0) + 1
    for percentile in PERCENTILE_POINTS:
        expected = reference.get_max_value() if percentile == 100.0 else reference.get_value_at_percentile(percentile)
        assert sparse_statistic_ms(counts, percentile) == round(expected / 1000.0, 3), percentile


def test_sparse_statistics_of_three_values_by_hand() -> None:
    """100, 200 and 300 µs: the target count is ``int(p * 3 / 100 + 0.5)``, at least 1: p1 is the first value, p50 and
    p83 the second (target 2), p84 the third (target 3), as are p99 and the maximum."""
    counts = {100: 1, 200: 1, 300: 1}
    assert [sparse_statistic_ms(counts, p) for p in (1.0, 50.0, 83.0, 84.0, 99.0, 100.0)] == [
        0.1, 0.2, 0.2, 0.3, 0.3, 0.3]


def test_a_single_sample_s_sparse_statistic_is_its_bucket_s_top_and_no_sample_is_none() -> None:
    assert sparse_statistic_ms({2048: 1}, 50.0) == 2.049  # the bucket 2048 … 2049 µs
    assert sparse_statistic_ms({2048: 1}, 100.0) == 2.049
    assert sparse_statistic_ms({1234: 1}, 99.0) == 1.234
    assert sparse_statistic_ms({}, 50.0) is None
    assert sparse_statistic_ms({}, 100.0) is None


def test_a_bucket_counted_zero_times_is_no_sample() -> None:
    """A worker report may carry a count of 0 (it is accepted): that bucket holds no value, so it is neither the
    maximum nor any percentile, as in HdrHistogram, where an unhit counter is never a value."""
    assert sparse_statistic_ms({100: 0, 200: 2, 900: 0}, 100.0) == 0.2
    assert sparse_statistic_ms({100: 0, 200: 2, 900: 0}, 0.1) == 0.2
    assert sparse_statistic_ms({100: 0}, 50.0) is None
    delta = LatencyDelta.from_json({"histograms": [[REQUEST, URI, SERVICE, {"200": 2, "900": 0}]]})
    assert sparse_statistic_ms(delta.histograms[(REQUEST, URI, SERVICE)], 100.0) == 0.2


# --- merging ----------------------------------------------------------------------------------------------------------


def test_merged_counts_add_every_count_of_every_histogram() -> None:
    assert merged_counts([{1: 2, 5: 1}, {}, {5: 3, 7: 1}]) == {1: 2, 5: 4, 7: 1}
    assert merged_counts([]) == {}


def _samples() -> list[tuple[str, str, float, float, float]]:
    """Requests on two names and a stage, with service times from 1 µs to minutes and some late starts."""
    rows = []
    for number in range(400):
        kind, name = ((REQUEST, URI), (REQUEST, OTHER), (STAGE, "install"))[number % 3]
        intended = 1_000.0 + number * 0.37
        sent = intended + (0.0, 0.02, 0.3, 7.5)[number % 4]
        answered = sent + (number * number % 9973) / 97.0 + 0.000001
        rows.append((kind, name, intended, sent, answered))
    return rows


def test_two_workers_drains_merged_are_one_book_of_all_samples() -> None:
    """Every whole-run histogram byte for byte, the export buckets, late and unsent counts, and the channel's
    sparse histograms and timelines: the master of two workers holds exactly what one book of all samples holds."""
    whole, first, second, master = LatencyBook(), LatencyBook(), LatencyBook(), LatencyBook()
    whole.open_channel("history")
    master.open_channel("history")
    for number, (kind, name, intended, sent, answered) in enumerate(_samples()):
        worker = first if number % 5 else second
        for book in (whole, worker):
            book.record(kind, name, intended=intended, sent=sent, answered=answered)
    first.record_unsent(2)
    second.record_unsent(5)
    whole.record_unsent(7)
    for worker in (first, second):
        master.merge(json.loads(json.dumps(worker.drain())))
    assert master.encoded() == whole.encoded()
    assert {key: buckets.cumulative() for key, buckets in master.exported().items()} == {
        key: buckets.cumulative() for key, buckets in whole.exported().items()}
    assert (master.late, master.unsent) == (whole.late, whole.unsent) == (133, 7)
    assert master.take("history").to_json() == whole.take("history").to_json()
    assert master.summary() == whole.summary()


def test_a_merged_name_then_recorded_locally_keeps_both_counts() -> None:
    """A master that merged a worker's counts for a name and then records that name itself adds to the same
    whole-run histogram and export buckets: neither replaces the other."""
    worker, master = LatencyBook(), LatencyBook()
    worker.record(REQUEST, URI, intended=0.0, sent=0.0, answered=0.001)
    master.merge(worker.drain())
    master.record(REQUEST, URI, intended=0.0, sent=0.0, answered=0.002)
    assert master.histogram(REQUEST, URI, SERVICE).get_total_count() == 2
    assert master.exported()[(REQUEST, URI, SERVICE)].cumulative()[0][-1] == ("+Inf", 2.0)


def test_a_merge_reaches_every_open_channel_once() -> None:
    worker, master = LatencyBook(), LatencyBook()
    master.open_channel("history")
    worker.record(REQUEST, URI, intended=0.0, sent=0.2, answered=0.24)
    worker.record_unsent(3)
    master.merge(worker.drain())
    for channel in ("history", REPORT):
        delta = master.take(channel)
        assert (delta.histograms[(REQUEST, URI, SERVICE)], delta.late, delta.unsent) == ({40_000: 1}, 1, 3)
    assert (master.late, master.unsent) == (1, 3)


# --- channels ---------------------------------------------------------------------------------------------------------


def test_each_record_reaches_each_channel_once_and_a_closed_channel_gets_nothing() -> None:
    """A record made while ``history`` was closed never reaches it, even after it reopens; the report channel,
    never closed, gets every record exactly once."""
    book = LatencyBook()
    book.open_channel("history")
    book.record(REQUEST, URI, intended=0.0, sent=0.0, answered=0.001)  # A
    assert book.take("history").histograms == {(REQUEST, URI, measure): {value: 1} for measure, value in
                                               ((SERVICE, 1000), (LATENESS, 1), (CORRECTED, 1000))}
    assert book.take("history").histograms == {}  # taken once: nothing left
    book.close_channel("history")
    book.record(REQUEST, URI, intended=0.0, sent=0.0, answered=0.002)  # B: history closed
    book.record_unsent(4)
    book.open_channel("history")
    book.record(REQUEST, URI, intended=0.0, sent=0.0, answered=0.003)  # C
    history = book.take("history")
    assert (history.histograms[(REQUEST, URI, SERVICE)], history.unsent) == ({3000: 1}, 0)
    report = book.take(REPORT)
    assert (report.histograms[(REQUEST, URI, SERVICE)], report.unsent) == ({1000: 1, 2000: 1, 3000: 1}, 4)


def test_opening_an_open_channel_keeps_what_it_holds() -> None:
    book = LatencyBook()
    book.open_channel("history")
    book.record(REQUEST, URI, intended=0.0, sent=0.0, answered=0.001)
    book.open_channel("history")
    assert book.take("history").histograms[(REQUEST, URI, SERVICE)] == {1000: 1}


def test_the_report_channel_cannot_be_closed() -> None:
    book = LatencyBook()
    book.close_channel(REPORT)
    book.record(REQUEST, URI, intended=0.0, sent=0.0, answered=0.001)
    assert book.drain()["histograms"][0] == [REQUEST, URI, CORRECTED, {"1000": 1}]


def test_a_channel_never_opened_is_refused_by_name() -> None:
    with pytest.raises(LatencyError, match=re.escape("latency channel 'gate' is not open")):
        LatencyBook().take("gate")


def test_unsent_work_is_counted_in_the_book_and_every_open_channel() -> None:
    book = LatencyBook()
    book.open_channel("history")
    book.record_unsent()
    book.record_unsent(0)
    book.record_unsent(2)
    assert (book.unsent, book.take("history").unsent, book.take(REPORT).unsent) == (3, 3, 3)
    assert book.summary()["unsent"] == 3
    with pytest.raises(LatencyError, match=re.escape("unsent count must be >= 0, got -1")):
        book.record_unsent(-1)
    assert book.unsent == 3


def test_a_reset_forgets_counts_and_late_and_unsent() -> None:
    book = LatencyBook()
    book.record(REQUEST, URI, intended=0.0, sent=1.0, answered=1.5)
    book.record_unsent(2)
    book.reset()
    assert (book.late, book.unsent, dict(book.totals()), dict(book.exported())) == (0, 0, {}, {})
    assert book.take().to_json() == {"histograms": [], "late": 0, "unsent": 0, "timelines": []}


# --- the JSON a worker ships ------------------------------------------------------------------------------------------


def test_a_delta_counts_by_bucket_and_second_with_a_default_count_of_one() -> None:
    delta = LatencyDelta()
    delta.record(REQUEST, URI, SERVICE, 2049)
    delta.record(REQUEST, URI, SERVICE, 2048, 3)
    delta.record_bucket(REQUEST, URI, LATENESS, 4096)
    delta.record_bucket(REQUEST, URI, LATENESS, 4096, 2)
    delta.count(REQUEST, URI, SENT, 17)
    delta.count(REQUEST, URI, SENT, 17, 4)
    assert delta.histograms == {(REQUEST, URI, SERVICE): {2048: 4}, (REQUEST, URI, LATENESS): {4096: 3}}
    assert delta.timelines == {(REQUEST, URI, SENT): {17: 5}}
    assert (delta.late, delta.unsent) == (0, 0)


def test_deltas_add_count_for_count() -> None:
    one, two = LatencyDelta(), LatencyDelta()
    one.record_bucket(REQUEST, URI, SERVICE, 10, 2)
    two.record_bucket(REQUEST, URI, SERVICE, 10, 3)
    two.record_bucket(REQUEST, URI, SERVICE, 20)
    two.count(STAGE, "install", INTENDED, 5, 2)
    one.late, two.late, one.unsent, two.unsent = 1, 2, 4, 8
    one.add(two)
    assert one.to_json() == {"histograms": [[REQUEST, URI, SERVICE, {"10": 5, "20": 1}]], "late": 3, "unsent": 12,
                             "timelines": [[STAGE, "install", INTENDED, {"5": 2}]]}


def test_a_delta_survives_json_unchanged() -> None:
    delta = LatencyDelta()
    delta.record(REQUEST, URI, SERVICE, 1_000_000, 3)
    delta.record(STAGE, "install", CORRECTED, 5)
    delta.count(REQUEST, URI, SENT, 1_733_356_800, 2)
    delta.count(REQUEST, URI, INTENDED, 1_733_356_799)
    delta.late, delta.unsent = 2, 9
    shipped = json.loads(json.dumps(delta.to_json()))
    assert shipped["histograms"][0] == [REQUEST, URI, SERVICE, {"999936": 3}]
    again = LatencyDelta.from_json(shipped)
    assert again.to_json() == delta.to_json()
    assert (again.histograms, again.timelines, again.late, again.unsent) == (
        delta.histograms, delta.timelines, 2, 9)


def test_an_empty_report_is_an_empty_delta() -> None:
    assert LatencyDelta.from_json({}).to_json() == {"histograms": [], "late": 0, "unsent": 0, "timelines": []}


@pytest.mark.parametrize(("row", "message"), [
    (["endpoint", URI, SERVICE, {}], "latency histogram key ['endpoint', '{uri}', 'service_ms'] is unknown"),
    ([REQUEST, URI, "wait_ms", {}], "latency histogram key ['request', '{uri}', 'wait_ms'] is unknown"),
    ([REQUEST, URI, SERVICE, {"-1": 1}], "latency histogram ['request', '{uri}', 'service_ms'] is malformed: "
                                         "a count or value out of range"),
    ([REQUEST, URI, SERVICE, {"3600000001": 1}], "latency histogram ['request', '{uri}', 'service_ms'] is "
                                                 "malformed: a count or value out of range"),
    ([REQUEST, URI, SERVICE, {"5": -1}], "latency histogram ['request', '{uri}', 'service_ms'] is malformed: "
                                         "a count or value out of range"),
])
def test_a_histogram_row_out_of_range_or_unknown_is_refused_naming_it(row: list[Any], message: str) -> None:
    with pytest.raises(LatencyError, match="^" + re.escape(message.format(uri=URI)) + "$"):
        LatencyDelta.from_json({"histograms": [row]})


@pytest.mark.parametrize(("row", "message"), [
    (["endpoint", URI, SENT, {}], "latency timeline key ['endpoint', '{uri}', 'sent'] is unknown"),
    ([REQUEST, URI, SERVICE, {}], "latency timeline key ['request', '{uri}', 'service_ms'] is unknown"),
    ([REQUEST, URI, SENT, {"5": -1}], "latency timeline ['request', '{uri}', 'sent'] is malformed: "
                                      "a count or value out of range"),
])
def test_a_timeline_row_out_of_range_or_unknown_is_refused_naming_it(row: list[Any], message: str) -> None:
    with pytest.raises(LatencyError, match="^" + re.escape(message.format(uri=URI)) + "$"):
        LatencyDelta.from_json({"timelines": [row]})


def test_the_edges_a_report_may_reach_are_accepted() -> None:
    """Bucket 0 and exactly one hour, a count of 0, and any whole second on a timeline (seconds are not bounded by
    the histograms' range) are all a worker may send."""
    delta = LatencyDelta.from_json({
        "histograms": [[REQUEST, URI, SERVICE, {"0": 1, "3600000000": 2, "7": 0}]],
        "timelines": [[REQUEST, URI, SENT, {"-1": 1, "4000000000": 3}]]})
    assert delta.histograms == {(REQUEST, URI, SERVICE): {0: 1, 3_598_712_832: 2, 7: 0}}
    assert delta.timelines == {(REQUEST, URI, SENT): {-1: 1, 4_000_000_000: 3}}


# --- whole-run histograms: encoding, decoding, reading ----------------------------------------------------------------


def _small_book() -> LatencyBook:
    """Request URI once, request OTHER twice, stage "install" four times; each measure with its own values."""
    book = LatencyBook()
    for kind, name, times in ((REQUEST, URI, 1), (REQUEST, OTHER, 2), (STAGE, "install", 4)):
        for number in range(times):
            book.record(kind, name, intended=0.0, sent=0.0002 * (number + 1), answered=0.0012 * (number + 1))
    return book


def test_encoded_histograms_decode_to_the_same_histograms() -> None:
    book = _small_book()
    rows = book.encoded()
    assert [row[:3] for row in rows] == [[REQUEST, URI, CORRECTED], [REQUEST, URI, LATENESS],
                                         [REQUEST, URI, SERVICE], [REQUEST, OTHER, CORRECTED],
                                         [REQUEST, OTHER, LATENESS], [REQUEST, OTHER, SERVICE],
                                         [STAGE, "install", CORRECTED], [STAGE, "install", LATENESS],
                                         [STAGE, "install", SERVICE]]
    decoded = decode_histograms(json.loads(json.dumps(rows)))
    assert sorted(decoded) == sorted(book.totals())
    for key, histogram in book.totals().items():
        assert decoded[key].encode() == histogram.encode()
        assert decoded[key].get_total_count() == histogram.get_total_count()


def test_two_rows_of_one_key_decode_to_their_sum() -> None:
    book = _small_book()
    row = next(row for row in book.encoded() if row[:3] == [STAGE, "install", SERVICE])
    decoded = decode_histograms([row, row])
    assert list(decoded) == [(STAGE, "install", SERVICE)]
    assert decoded[(STAGE, "install", SERVICE)].get_total_count() == 8


@pytest.mark.parametrize(("rows", "message"), [
    ([["request", "/a", "service_ms", "!!"]], "latency histogram ['request', '/a', 'service_ms'] is malformed: "),
    ([["nonsense", "/a", "service_ms", None]], "latency histogram ['nonsense', '/a', 'service_ms'] is malformed: "),
    ([["request", "/a"]], "latency histogram ['request', '/a'] is malformed: "),
    (5, "latency histograms are malformed: "),
])
def test_a_malformed_encoded_row_is_refused_naming_it(rows: Any, message: str) -> None:
    with pytest.raises(LatencyError, match="^" + re.escape(message)):
        decode_histograms(rows)


def test_an_encoded_row_of_an_unknown_kind_or_measure_is_refused_naming_it() -> None:
    valid = _small_book().encoded()[0][3]
    with pytest.raises(LatencyError, match="^" + re.escape("latency histogram key ['endpoint', '/a', 'service_ms'] "
                                                           "is unknown") + "$"):
        decode_histograms([["endpoint", "/a", "service_ms", valid]])
    with pytest.raises(LatencyError, match="^" + re.escape("latency histogram key ['request', '/a', 'wait_ms'] "
                                                           "is unknown") + "$"):
        decode_histograms([["request", "/a", "wait_ms", valid]])


def test_names_histograms_and_combinations_select_by_kind_name_and_measure() -> None:
    book = _small_book()
    book.record(STAGE, URI, intended=0.0, sent=0.0, answered=0.5)  # a stage sharing a request's name
    assert book.names(REQUEST) == [URI, OTHER]
    assert book.names(STAGE) == [URI, "install"]
    assert book.histogram(REQUEST, OTHER, SERVICE) is book.totals()[(REQUEST, OTHER, SERVICE)]
    assert book.histogram(REQUEST, "/never", SERVICE).get_total_count() == 0
    assert book.combined(REQUEST, SERVICE).get_total_count() == 3
    assert book.combined(REQUEST, SERVICE, names=[URI]).get_total_count() == 1
    assert book.combined(STAGE, SERVICE, names=[URI]).get_max_value() == 500_223
    only = book.combined(REQUEST, LATENESS, names=[OTHER, "/never"])
    assert (only.get_total_count(), only.get_min_value(), only.get_max_value()) == (2, 200, 400)


def test_the_summary_has_requests_stages_all_requests_late_and_unsent() -> None:
    book = _small_book()
    book.record_unsent(6)
    summary = book.summary()
    assert sorted(summary) == ["all_requests", "late", "requests", "stages", "unsent"]
    assert (summary["late"], summary["unsent"]) == (0, 6)
    assert sorted(summary["requests"]) == [URI, OTHER]
    assert list(summary["stages"]) == ["install"]
    # 1, 2, 3 and 4 ms: 4000 µs is in a bucket two wide, reported as 4001 µs
    assert summary["stages"]["install"][SERVICE] == {"p50": 2.0, "p90": 4.001, "p99": 4.001, "p999": 4.001,
                                                     "max": 4.001, "count": 4}
    assert summary["requests"][OTHER][LATENESS] == {"p50": 0.2, "p90": 0.4, "p99": 0.4, "p999": 0.4, "max": 0.4,
                                                    "count": 2}
    assert summary["all_requests"][CORRECTED] == {"p50": 1.2, "p90": 2.401, "p99": 2.401, "p999": 2.401,
                                                  "max": 2.401, "count": 3}


# --- Prometheus export buckets ----------------------------------------------------------------------------------------

BOUNDS = ["0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0",
          "30.0", "60.0", "+Inf"]
BOUNDS_US = [1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
             5_000_000, 10_000_000, 30_000_000, 60_000_000]


def test_an_empty_export_has_every_bound_at_zero() -> None:
    assert ExportBuckets().cumulative() == ([(bound, 0.0) for bound in BOUNDS], 0.0)


@pytest.mark.parametrize("position", range(len(BOUNDS_US)))
def test_a_value_on_a_bound_counts_under_it_and_one_above_it_does_not(position: int) -> None:
    """Prometheus's ``le``: a value equal to a bound is in that bucket; one microsecond more is in the next."""
    exported = ExportBuckets()
    exported.observe(BOUNDS_US[position])
    exported.observe(BOUNDS_US[position] + 1, 2)
    buckets, total = exported.cumulative()
    assert buckets == [(bound, 0.0 if index < position else 1.0 if index == position else 3.0)
                       for index, bound in enumerate(BOUNDS)]
    assert total == (3 * BOUNDS_US[position] + 2) / 1e6


def test_export_sums_count_times_value_in_seconds() -> None:
    exported = ExportBuckets()
    exported.observe(2500, 3)
    exported.observe(1)
    assert exported.cumulative() == ([("0.001", 1.0), *((bound, 4.0) for bound in BOUNDS[1:])], 0.007501)


def test_the_book_exports_each_value_by_its_bucket() -> None:
    """1000 µs is a bucket of its own (under 1 ms); 60,000,001 µs's bucket starts at 59,998,208: under 60 s."""
    book = LatencyBook()
    book.record(REQUEST, URI, intended=0.0, sent=0.0, answered=0.001)
    book.record(REQUEST, URI, intended=0.0, sent=0.0, answered=60.000001)
    buckets, total = book.exported()[(REQUEST, URI, SERVICE)].cumulative()
    assert buckets == [("0.001", 1.0), *((bound, 1.0) for bound in BOUNDS[1:-2]), ("60.0", 2.0), ("+Inf", 2.0)]
    assert total == (1000 + 59_998_208) / 1e6
