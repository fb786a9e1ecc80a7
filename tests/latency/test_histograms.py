"""The latency book: three measures from three instants, exact merging across workers, honest percentiles."""

from __future__ import annotations

import json
import random

import pytest

from harness.latency.histograms import (
    CORRECTED,
    HIGHEST_US,
    INTENDED,
    LATENESS,
    REQUEST,
    SENT,
    SERVICE,
    STAGE,
    LatencyBook,
    LatencyDelta,
    LatencyError,
    _micros,
    bucket_us,
    new_histogram,
    percentiles_ms,
    sparse_statistic_ms,
)

URI = "/CCM_Proxy_MutualAuth/<id>/ccm_system/request"


def test_the_three_measures_come_from_intended_sent_and_answered() -> None:
    """A request meant for t=10, sent at 12 and answered at 12.5: lateness 2 s, service 0.5 s, corrected 2.5 s."""
    book = LatencyBook()
    book.record(REQUEST, URI, intended=10.0, sent=12.0, answered=12.5)
    summary = book.summary()["requests"][URI]
    assert summary[LATENESS]["max"] == pytest.approx(2000.0, rel=1e-3)
    assert summary[SERVICE]["max"] == pytest.approx(500.0, rel=1e-3)
    assert summary[CORRECTED]["max"] == pytest.approx(2500.0, rel=1e-3)
    assert summary[CORRECTED]["count"] == 1


def test_a_request_later_than_the_threshold_counts_as_late_and_one_on_time_does_not() -> None:
    """``late`` counts requests whose lateness passed the threshold; 50 ms of lateness under a 100 ms one is on time."""
    book = LatencyBook()
    book.late_threshold_s = 0.1
    book.record(REQUEST, URI, intended=0.0, sent=0.05, answered=0.06)
    book.record(REQUEST, URI, intended=0.0, sent=0.15, answered=0.16)
    book.record(STAGE, "policy cycle", intended=0.0, sent=5.0, answered=6.0)  # stages are not requests
    assert book.late == 1


def test_percentiles_of_a_known_series() -> None:
    """1..100 ms: p50 = 50, p90 = 90, p99 = 99, max = 100 (within the histogram's 3 significant digits)."""
    book = LatencyBook()
    for ms in range(1, 101):
        book.record(REQUEST, URI, intended=0.0, sent=0.0, answered=ms / 1000.0)
    values = book.summary()["requests"][URI][SERVICE]
    assert (values["p50"], values["p90"], values["p99"], values["max"]) == pytest.approx((50, 90, 99, 100), rel=2e-3)
    assert values["count"] == 100


def test_merged_worker_histograms_give_the_percentiles_of_one_histogram_of_all_samples() -> None:
    """Two workers' drains merged on the master equal one book that saw every sample."""
    rng = random.Random(7)
    samples = [(rng.expovariate(1 / 0.05), rng.expovariate(1 / 0.2)) for _ in range(5000)]
    whole, first, second, master = LatencyBook(), LatencyBook(), LatencyBook(), LatencyBook()
    for number, (late, service) in enumerate(samples):
        worker = first if number % 3 else second
        for book in (whole, worker):
            book.record(REQUEST, URI, intended=0.0, sent=late, answered=late + service)
    master.merge(json.loads(json.dumps(first.drain())))
    master.merge(json.loads(json.dumps(second.drain())))
    assert master.summary() == whole.summary()


def test_drain_hands_out_only_what_came_since_the_last_drain() -> None:
    """A second drain carries only the new samples; the whole-run view keeps both."""
    book, master = LatencyBook(), LatencyBook()
    book.record(REQUEST, URI, intended=0.0, sent=0.0, answered=0.01)
    master.merge(book.drain())
    book.record(REQUEST, URI, intended=0.0, sent=0.0, answered=0.02)
    book.record_unsent(3)
    master.merge(book.drain())
    assert master.summary()["requests"][URI][SERVICE]["count"] == 2
    assert book.summary()["requests"][URI][SERVICE]["count"] == 2
    assert (master.unsent, book.drain()["histograms"]) == (3, [])


@pytest.mark.parametrize("delta", [
    {"histograms": [["request", URI, "service_ms", "not-base64!"]]},
    {"histograms": [["nonsense", URI, "service_ms", ""]]},
    {"histograms": "x", "late": "many"},
])
def test_a_malformed_worker_report_is_refused_by_name(delta: dict[str, object]) -> None:
    """A worker report that cannot be decoded raises LatencyError, never a silent miscount."""
    with pytest.raises(LatencyError, match="malformed|unknown"):
        LatencyBook().merge(delta)


def test_an_unknown_kind_and_a_non_finite_instant_are_refused() -> None:
    """Recording under an unknown kind or with NaN raises LatencyError naming it."""
    with pytest.raises(LatencyError, match="kind"):
        LatencyBook().record("endpoint", URI, intended=0.0, sent=0.0, answered=1.0)
    with pytest.raises(LatencyError, match="finite"):
        LatencyBook().record(REQUEST, URI, intended=float("nan"), sent=0.0, answered=1.0)


def test_a_clock_step_backwards_records_the_floor_not_a_negative() -> None:
    """Sent a hair before intended (clock granularity) is no lateness at all: 1 µs, the histogram's floor."""
    book = LatencyBook()
    book.record(REQUEST, URI, intended=1.0, sent=0.9999999, answered=1.01)
    assert book.summary()["requests"][URI][LATENESS]["max"] == pytest.approx(0.001)


def test_an_empty_histogram_summarises_to_zeros() -> None:
    """No samples: every percentile 0 and count 0 (a summary never raises on an idle endpoint)."""
    assert percentiles_ms(LatencyBook().histogram(REQUEST, URI, SERVICE)) == {
        "p50": 0.0, "p90": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0, "count": 0}


def test_a_channel_of_its_own_is_taken_without_disturbing_the_worker_drain() -> None:
    """The gate history takes its channel each second; the report drain still carries everything since its last."""
    book = LatencyBook()
    book.open_channel("history")
    book.record(REQUEST, URI, intended=0.0, sent=0.0, answered=0.01)
    first = book.take("history")
    book.record(REQUEST, URI, intended=1.0, sent=1.0, answered=1.02)
    second = book.take("history")
    report = LatencyDelta.from_json(book.drain())
    assert [sum(delta.histograms[(REQUEST, URI, SERVICE)].values()) for delta in (first, second, report)] == [1, 1, 2]
    with pytest.raises(LatencyError, match="not open"):
        book.take("elsewhere")


def test_a_reset_keeps_open_channels_open_and_empty() -> None:
    """Locust's Reset Stats empties the book; the history's channel goes on from there."""
    book = LatencyBook()
    book.open_channel("history")
    book.record(REQUEST, URI, intended=0.0, sent=0.0, answered=0.01)
    book.reset()
    assert book.take("history").histograms == {}
    book.close_channel("history")
    with pytest.raises(LatencyError):
        book.take("history")


def test_requests_are_counted_by_the_second_they_were_sent_and_the_second_they_were_intended() -> None:
    """Intended at 10.4 and sent at 12.7: one in second 10 of the intended timeline, one in second 12 of the sent;
    the counts survive JSON and add up when merged."""
    book, master = LatencyBook(), LatencyBook()
    master.open_channel("history")
    book.record(REQUEST, URI, intended=10.4, sent=12.7, answered=12.8)
    book.record(REQUEST, URI, intended=10.9, sent=10.95, answered=11.0)
    master.merge(json.loads(json.dumps(book.drain())))
    delta = master.take("history")
    assert delta.timelines[(REQUEST, URI, INTENDED)] == {10: 2}
    assert delta.timelines[(REQUEST, URI, SENT)] == {10: 1, 12: 1}
    assert delta.late == 1


@pytest.mark.parametrize("timelines", [[["request", URI, "sent", {"x": 1}]], [["request", URI, "due", {}]], "x"])
def test_a_malformed_timeline_is_refused(timelines: object) -> None:
    """Counts that are not whole seconds to whole numbers, or an unknown timeline, are refused by name."""
    with pytest.raises(LatencyError, match="timeline"):
        LatencyDelta.from_json({"histograms": [], "timelines": timelines})


def test_a_sparse_delta_gives_exactly_the_percentiles_of_a_full_histogram() -> None:
    """A second's sparse histogram keeps HdrHistogram's buckets: its p50 … p99.9 and max equal a full histogram's."""
    rng = random.Random(11)
    values = [max(1, round(rng.lognormvariate(9, 1.5))) for _ in range(3000)]  # µs, from 1 µs to seconds
    book, full = LatencyBook(), new_histogram()
    book.open_channel("history")
    for value in values:
        book.record(REQUEST, URI, intended=0.0, sent=0.0, answered=value / 1e6)
        full.record_value(value)
    counts = book.take("history").histograms[(REQUEST, URI, SERVICE)]
    for percentile in (50.0, 90.0, 99.0, 99.9):
        assert sparse_statistic_ms(counts, percentile) == round(full.get_value_at_percentile(percentile) / 1000.0, 3)
    assert sparse_statistic_ms(counts, 100.0) == round(full.get_max_value() / 1000.0, 3)
    assert sparse_statistic_ms({}, 99.0) is None


def test_a_value_s_place_is_the_bucket_and_counter_hdrh_finds_for_it() -> None:
    """Every value up to 300,000 µs, hdrh's bucket edges up to the hour, and random values across the whole range."""
    from harness.latency import histograms

    reference = new_histogram()
    rng = random.Random(5)
    edges = [value + delta for value in (2 ** n for n in range(1, 32)) for delta in (-1, 0, 1)]
    randoms = [rng.randint(1, HIGHEST_US) for _ in range(20000)]
    for value in [*range(1, 300_000), *edges, *randoms, HIGHEST_US]:
        if value > HIGHEST_US:
            continue
        assert histograms._place(value) == (reference.get_lowest_equivalent_value(value),
                                            reference._counts_index_for(value)), value


def test_the_book_s_histograms_are_those_hdrh_s_record_value_builds() -> None:
    """The book counts into its whole-run histograms directly (a remembered counter index): the same counters, total,
    minimum and maximum as record_value, byte for byte in HdrHistogram's encoding; its deltas are unchanged too."""
    rng = random.Random(7)
    book = LatencyBook()
    book.open_channel("gate")
    expected = {measure: new_histogram() for measure in (SERVICE, LATENESS, CORRECTED)}
    buckets: dict[str, dict[int, int]] = {measure: {} for measure in expected}
    for _ in range(3000):
        intended = 1_000.0 + rng.random() * 100
        sent = intended + rng.choice([0.0, -0.001, rng.random() * 0.2, rng.random() * 5000.0])
        answered = sent + rng.expovariate(1 / 0.05)
        book.record(REQUEST, URI, intended=intended, sent=sent, answered=answered)
        for measure, seconds in ((SERVICE, answered - sent), (LATENESS, sent - intended),
                                 (CORRECTED, answered - intended)):
            value = _micros(seconds, measure)
            expected[measure].record_value(value)
            buckets[measure][bucket_us(value)] = buckets[measure].get(bucket_us(value), 0) + 1
    for measure, histogram in expected.items():
        got = book.histogram(REQUEST, URI, measure)
        assert (got.get_total_count(), got.get_min_value(), got.get_max_value()) == (
            histogram.get_total_count(), histogram.get_min_value(), histogram.get_max_value())
        assert got.encode() == histogram.encode()
    for channel in ("gate", "report"):
        delta = book.take(channel)
        assert {key[2]: counts for key, counts in delta.histograms.items()} == buckets
        assert sum(delta.timelines[(REQUEST, URI, SENT)].values()) == 3000
    book.reset()  # a reset forgets the histograms: records after it go into new ones, not the forgotten ones
    book.record(REQUEST, URI, intended=1.0, sent=1.0, answered=1.5)
    assert book.histogram(REQUEST, URI, SERVICE).get_total_count() == 1


def test_every_channel_gets_exactly_the_records_made_while_it_was_open() -> None:
    """Records wait in one pending delta until a channel is taken or opened: whatever the order of records, takes,
    opens and closes, each take holds exactly what was recorded since that channel's last take or opening."""
    rng = random.Random(11)
    book = LatencyBook()
    model: dict[str, list[tuple[str, float, float, float]]] = {"report": []}
    for step in range(600):
        action = rng.random()
        if action < 0.7:
            name = rng.choice(["/a", "/b"])
            intended = 100.0 + step
            sent = intended + rng.choice([0.0, 0.5])
            answered = sent + rng.random()
            book.record(REQUEST, name, intended=intended, sent=sent, answered=answered)
            for records in model.values():
                records.append((name, intended, sent, answered))
        elif action < 0.85:
            channel = rng.choice(sorted(model))
            delta = book.take(channel)
            records, model[channel] = model[channel], []
            expected = LatencyBook()
            expected.open_channel("x")
            for name, intended, sent, answered in records:
                expected.record(REQUEST, name, intended=intended, sent=sent, answered=answered)
            assert delta.to_json() == expected.take("x").to_json(), (step, channel)
        elif action < 0.93:
            book.open_channel("gate")
            model.setdefault("gate", [])
        else:
            book.close_channel("gate")
            model.pop("gate", None)
