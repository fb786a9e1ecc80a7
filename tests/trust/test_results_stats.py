"""The statistics a run leaves: Locust entries, the per-second history lines, and Locust's percentile rule.

A percentile one bucket off or a history second read wrong makes a gate pass that should fail, so the values here
are exact: the expected percentiles are what Locust's own ``calculate_response_time_percentile`` gives for the same
histograms (Locust records a response time in a bucket of about two significant digits: 99.4 ms as 99, 99.5 ms as
100, 994 ms as 990, 995 ms as 1000).
"""

from __future__ import annotations

import json
import math

import pytest

from harness.latency.histograms import LatencyDelta
from harness.results.errors import ResultsError
from harness.results.stats import HistoryPoint, StatsEntry, merge_times, parse_history_lines, percentile

STS = "/CCM_Proxy_ServerAuth/72186325152220500/CCM_STS"


# --- percentile: Locust's rule, bucket edges --------------------------------------------------------------------

@pytest.mark.parametrize(("histogram", "quantile", "expected"), [
    # 100 requests, 94 recorded as 99 ms and 6 as 100 ms (99.5 ms rounds up into the 100 bucket): p95 is 100.
    ({99: 94, 100: 6}, 0.95, 100.0),
    ({99: 95, 100: 5}, 0.95, 100.0),  # exactly 95 faster than 100: Locust still answers 100
    ({99: 96, 100: 4}, 0.95, 99.0),
    ({100: 95, 200: 5}, 0.95, 200.0),
    ({100: 96, 200: 4}, 0.95, 100.0),
    ({10: 10, 20: 10}, 0.5, 20.0),    # floor(20 * 0.5) = 10 below 20 is allowed
    ({10: 1, 20: 1}, 0.49, 10.0),     # floor(2 * 0.49) = 0: nothing may be below the answer
    ({10: 1, 20: 1}, 0.5, 20.0),
    ({10: 3, 20: 3, 30: 4}, 0.3, 20.0),
    ({10: 3, 20: 3, 30: 4}, 0.29, 10.0),
    ({10: 3, 20: 3, 30: 4}, 0.99, 30.0),
    ({10: 3, 20: 3, 30: 4}, 1.0, 30.0),
    # 994 ms is recorded as 990, 995 ms as 1000, 1049 ms as 1000 and 1050 ms as 1100.
    ({990: 2, 1000: 1, 1100: 1}, 0.74, 1000.0),
    ({990: 2, 1000: 1, 1100: 1}, 0.75, 1100.0),
])
def test_percentile_is_locusts_at_bucket_edges(histogram: dict[int, int], quantile: float, expected: float) -> None:
    """The answer is the largest recorded time with at most floor(n * quantile) requests faster than it."""
    answer = percentile(histogram, quantile)
    assert answer == expected and type(answer) is float


def test_percentile_does_not_depend_on_the_order_of_the_histogram() -> None:
    """A histogram read from JSON need not be sorted: the buckets are walked from the fastest."""
    assert percentile({30: 4, 10: 3, 20: 3}, 0.3) == 20.0
    assert percentile({200: 5, 100: 95}, 0.95) == 200.0


def test_a_quantile_below_zero_answers_zero_as_locust_does() -> None:
    """Locust falls back to 0 when no bucket qualifies; so does this reading."""
    assert percentile({10: 1}, -1.0) == 0.0


def test_an_empty_histogram_has_no_percentile() -> None:
    """No request (or only empty buckets) gives NaN, not 0 ms that would pass any latency gate."""
    assert math.isnan(percentile({}, 0.95))
    assert math.isnan(percentile({10: 0, 20: 0}, 0.5))
    assert percentile({10: 1}, 0.5) == 10.0


def test_merged_histograms_add_their_counts() -> None:
    """merge_times sums the counts bucket by bucket and leaves its inputs alone."""
    first, second = {10: 1, 20: 2}, {20: 3, 30: 4}
    assert merge_times([first, second]) == {10: 1, 20: 5, 30: 4}
    assert first == {10: 1, 20: 2} and second == {20: 3, 30: 4}
    assert merge_times([]) == {}
    assert merge_times([{7: 2}]) == {7: 2}


# --- StatsEntry ---------------------------------------------------------------------------------------------------

def test_an_entry_starts_empty() -> None:
    """An entry with only a method and name has counted nothing."""
    entry = StatsEntry(method="GET", name=STS)
    assert (entry.num_requests, entry.num_failures, entry.total_response_time, entry.max_response_time,
            dict(entry.response_times), entry.start_time, entry.last_request_timestamp) == (0, 0, 0.0, 0.0, {}, 0.0,
                                                                                            0.0)


def test_an_entry_is_read_from_locust_json_with_every_field() -> None:
    """Locust writes histogram keys as text (and sometimes as "150.0"): they become integer milliseconds."""
    entry = StatsEntry.from_dict({"method": "POST", "name": STS, "num_requests": 7, "num_failures": 2,
                                  "total_response_time": 812.5, "max_response_time": 310.25,
                                  "response_times": {"150": 5, "310.0": 2}, "start_time": 1700000000.5,
                                  "last_request_timestamp": 1700000009.25, "num_none_requests": 0,
                                  "min_response_time": 12})
    assert entry == StatsEntry(method="POST", name=STS, num_requests=7, num_failures=2, total_response_time=812.5,
                               max_response_time=310.25, response_times={150: 5, 310: 2}, start_time=1700000000.5,
                               last_request_timestamp=1700000009.25)


def test_an_entry_without_its_optional_fields_reads_as_empty() -> None:
    """Only the name is required; absent or null optional fields read as zero (a stage entry has no method)."""
    assert StatsEntry.from_dict({"name": STS}) == StatsEntry(method="", name=STS)
    nulls = {"name": STS, "method": None, "max_response_time": None, "response_times": None, "start_time": None,
             "last_request_timestamp": None}
    entry = StatsEntry.from_dict(nulls)
    assert entry == StatsEntry(method="", name=STS)
    assert (entry.num_requests, entry.num_failures, entry.total_response_time, entry.max_response_time,
            entry.start_time, entry.last_request_timestamp) == (0, 0, 0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize(("data", "names"), [
    ({"method": "GET"}, "'name'"),
    ({"name": STS, "num_requests": "seven"}, "'seven'"),
    ({"name": STS, "num_failures": None}, "NoneType"),
    ({"name": STS, "total_response_time": "slow"}, "'slow'"),
    ({"name": STS, "max_response_time": "high"}, "'high'"),
    ({"name": STS, "response_times": [150, 2]}, "items"),
    ({"name": STS, "response_times": {"fast": 1}}, "'fast'"),
    ({"name": STS, "response_times": {"150": "many"}}, "'many'"),
    ({"name": STS, "start_time": "dawn"}, "'dawn'"),
    ({"name": STS, "last_request_timestamp": "later"}, "'later'"),
])
def test_a_malformed_entry_is_refused_naming_the_entry_and_the_value(data: dict[str, object], names: str) -> None:
    """ResultsError, with the entry and what is wrong in it."""
    with pytest.raises(ResultsError) as caught:
        StatsEntry.from_dict(data)
    message = str(caught.value)
    assert message.startswith(f"malformed statistics entry {data!r}: ") and names in message


def test_an_entry_written_for_the_history_holds_the_delta_fields() -> None:
    """The history keeps counts, total time and the histogram (sorted, text keys), not the entry's timestamps."""
    entry = StatsEntry(method="GET", name=STS, num_requests=3, num_failures=1, total_response_time=61.5,
                       max_response_time=40.0, response_times={40: 1, 9: 2}, start_time=5.0,
                       last_request_timestamp=6.0)
    data = entry.to_dict()
    assert data == {"method": "GET", "name": STS, "num_requests": 3, "num_failures": 1,
                    "total_response_time": 61.5, "response_times": {"9": 2, "40": 1}}
    assert list(data["response_times"]) == ["9", "40"]
    assert StatsEntry.from_dict(data) == StatsEntry(method="GET", name=STS, num_requests=3, num_failures=1,
                                                    total_response_time=61.5, response_times={9: 2, 40: 1})


# --- HistoryPoint and the history lines ---------------------------------------------------------------------------

def _entry(requests: int = 2) -> StatsEntry:
    return StatsEntry(method="POST", name=STS, num_requests=requests, total_response_time=30.0,
                      response_times={15: requests})


def test_a_history_point_is_one_compact_json_line_with_t_to_the_millisecond() -> None:
    """The exact line: no spaces, ``t`` rounded to 3 decimals, no latency key before the latency book's data."""
    point = HistoryPoint(t=1700000001.23456, entries=(_entry(),))
    assert point.to_json() == ('{"t":1700000001.235,"entries":[{"method":"POST","name":"' + STS + '",'
                               '"num_requests":2,"num_failures":0,"total_response_time":30.0,'
                               '"response_times":{"15":2}}]}')
    empty = HistoryPoint(t=2.0)
    assert (empty.entries, empty.latency) == ((), None)
    assert empty.to_json() == '{"t":2.0,"entries":[]}'


def test_a_history_point_with_latency_reads_back_the_same() -> None:
    """The latency book's delta rides along in the line and comes back equal."""
    latency = LatencyDelta()
    latency.record("request", STS, "service_ms", 1500)
    latency.count("request", STS, "sent", 1700000001)
    latency.late = 3
    point = HistoryPoint(t=1700000001.5, entries=(_entry(),), latency=latency)
    line = point.to_json()
    assert json.loads(line)["latency"] == latency.to_json()
    back = HistoryPoint.from_json(line)
    assert (back.t, back.entries) == (1700000001.5, (StatsEntry(method="POST", name=STS, num_requests=2,
                                                                total_response_time=30.0,
                                                                response_times={15: 2}),))
    assert back.latency is not None and back.latency.to_json() == latency.to_json()


def test_a_history_line_without_latency_or_with_extra_fields_reads() -> None:
    """A history written before the latency book, or by a newer writer with more fields, still reads."""
    point = HistoryPoint.from_json('{"t": 4, "entries": [], "users": 10}')
    assert (point.t, point.entries, point.latency) == (4.0, (), None)
    assert type(point.t) is float
    assert HistoryPoint.from_json('{"t": 4, "entries": [], "latency": null}').latency is None


def test_history_lines_read_in_order_skipping_blank_lines() -> None:
    """Blank lines (a trailing newline, a blank in the middle) are not points."""
    lines = [HistoryPoint(t=1.0, entries=(_entry(1),)).to_json(), "", "   ",
             HistoryPoint(t=2.0, entries=(_entry(2),)).to_json(), ""]
    points = parse_history_lines(lines, source="h.jsonl")
    assert [(p.t, p.entries[0].num_requests) for p in points] == [(1.0, 1), (2.0, 2)]
    assert parse_history_lines([], source="h.jsonl") == ()


def test_a_torn_last_line_is_left_out() -> None:
    """A run killed mid-write leaves half a line at the end: the points before it are kept, even a lone torn line."""
    good = HistoryPoint(t=1.0).to_json()
    assert [p.t for p in parse_history_lines([good, good, '{"t": 3, "entr'], source="h")] == [1.0, 1.0]
    assert parse_history_lines(['{"t": 3, "entr'], source="h") == ()
    assert [p.t for p in parse_history_lines([good, '{"t": 3}'], source="h")] == [1.0]


@pytest.mark.parametrize(("bad", "names"), [
    ('{"t": 3, "entr', "Unterminated string"),                         # torn
    ('{"entries": []}', "'t'"),                                        # missing t
    ('{"t": 3}', "'entries'"),                                         # missing entries
    ('{"t": "soon", "entries": []}', "'soon'"),                        # t not a number
    ('{"t": 3, "entries": [{"method": "GET"}]}', "malformed statistics entry"),  # entry without a name
    ('{"t": 3, "entries": 5}', "not iterable"),                        # entries not a list
])
def test_a_bad_line_before_the_last_is_refused_naming_file_line_and_reason(bad: str, names: str) -> None:
    """ResultsError naming the file and the 1-based line number, with why the line is not a point."""
    good = HistoryPoint(t=1.0).to_json()
    with pytest.raises(ResultsError) as caught:
        parse_history_lines([good, bad, good], source="run/stats_history.jsonl")
    message = str(caught.value)
    assert message.startswith("'run/stats_history.jsonl' line 2 is not a history point: ") and names in message
    with pytest.raises(ResultsError, match=r"^'h' line 1 is not a history point: "):
        parse_history_lines([bad, good], source="h")
