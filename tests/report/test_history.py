"""Reading Locust's stats history: HTTP requests apart from lifecycle entries, window percentiles mixed."""

from __future__ import annotations

import pytest

from harness.report.history import HistoryError, mixture_quantile, parse_history
from tests.report.synthetic import FACTORS, Step, history_csv

LEVELS = (0.5, 0.66, 0.75, 0.8, 0.9, 0.95, 0.98, 0.99, 0.999, 0.9999, 1.0)


def test_per_endpoint_history_counts_http_requests_without_lifecycle_entries() -> None:
    """With per-endpoint rows, a row's requests are the HTTP endpoints' sum, not the Aggregated total."""
    history = parse_history(history_csv([Step(users=2, seconds=5, rate=10, latency_ms=4.0)]))
    last = history.rows[-1]
    assert history.per_endpoint
    assert last.requests == 50
    assert last.aggregated.requests == 75  # + the LIFECYCLE entry's 5 per second


def test_aggregated_only_history_falls_back_to_the_aggregated_row() -> None:
    """Without --csv-full-history the Aggregated counts are all there is."""
    history = parse_history(history_csv([Step(users=2, seconds=5, rate=10, latency_ms=4.0)], per_endpoint=False))
    assert not history.per_endpoint
    assert history.rows[-1].requests == 75


def test_cumulative_latency_sum_gives_exact_means_over_an_interval() -> None:
    """Differences of mean × count between two rows give the mean of the requests in between."""
    history = parse_history(history_csv([Step(2, 5, 10, 4.0), Step(4, 5, 10, 9.0)]))
    before, after = history.rows[6], history.rows[-3]
    assert (after.latency_sum_ms - before.latency_sum_ms) / (after.requests - before.requests) == pytest.approx(9.0)


@pytest.mark.parametrize("column", ["Timestamp", "User Count", "Total Request Count", "Total Average Response Time"])
def test_a_missing_column_is_refused_by_name(column: str) -> None:
    """A file without a needed column is refused, naming the column."""
    text = history_csv([Step(2, 3, 10, 4.0)]).replace(column, "Something Else", 1)
    with pytest.raises(HistoryError, match=column):
        parse_history(text)


def test_a_malformed_number_is_refused_with_its_line() -> None:
    """A count that is not a number is refused, naming the line."""
    lines = history_csv([Step(2, 3, 10, 4.0)]).splitlines()
    cells = lines[3].split(",")
    cells[17] = "zero"  # Total Request Count
    lines[3] = ",".join(cells)
    with pytest.raises(HistoryError, match="line 4"):
        parse_history("\n".join(lines))


def test_a_history_without_aggregated_rows_is_refused() -> None:
    """Only a header (Locust stopped before its first write) is not a history."""
    with pytest.raises(HistoryError, match="no Aggregated rows"):
        parse_history(history_csv([]).splitlines()[0] + "\n")


def test_na_percentiles_read_as_missing() -> None:
    """Rows before any request have no window percentile."""
    history = parse_history(history_csv([Step(2, 12, 10, 4.0)]))
    assert history.window_percentile(history.rows[0], 0.95) is None


@pytest.mark.parametrize(("level", "factor"), list(zip(LEVELS[:8], FACTORS[:8], strict=True)))
def test_a_single_distribution_gives_back_its_own_percentiles(level: float, factor: float) -> None:
    """The mixture of one distribution returns the percentile points it was given."""
    points = tuple(10.0 * f for f in FACTORS)
    assert mixture_quantile(LEVELS, [(3.0, points)], level) == pytest.approx(10.0 * factor)


def test_a_slow_endpoint_with_a_tenth_of_the_requests_sets_the_p99_but_not_the_median() -> None:
    """Mixing weights by requests: 9 parts at ~10 ms and 1 part at ~100 ms."""
    fast = tuple(10.0 * f for f in (1.0,) * 11)
    slow = tuple(100.0 * f for f in (1.0,) * 11)
    parts = [(9.0, fast), (1.0, slow)]
    assert mixture_quantile(LEVELS, parts, 0.5) <= 10.0
    assert mixture_quantile(LEVELS, parts, 0.99) > 90.0


def test_window_percentiles_weigh_endpoints_by_their_requests_in_the_window() -> None:
    """An endpoint silent for the last 10 s does not count, however slow its old window figures."""
    text = history_csv([Step(2, 30, 10, 4.0)])
    lines = text.splitlines()
    # Freeze the second endpoint's count from the start: it sent nothing in any window, but claims 900 ms.
    frozen = []
    for line in lines:
        if ",CCM_POST," in line and line.split(",")[6] != "N/A":
            cells = line.split(",")
            cells[6:17] = ["900"] * 11
            cells[17] = "1"
            line = ",".join(cells)
        frozen.append(line)
    history = parse_history("\n".join(frozen) + "\n")
    assert history.window_percentile(history.rows[-4], 0.99) == pytest.approx(12.0)  # the GET endpoint's 3 × 4 ms


def test_percentile_level_outside_zero_to_one_is_refused() -> None:
    """Levels are fractions: 95 instead of 0.95 is a mistake worth naming."""
    history = parse_history(history_csv([Step(2, 3, 10, 4.0)]))
    with pytest.raises(HistoryError, match="95"):
        history.window_percentile(history.rows[-1], 95)
