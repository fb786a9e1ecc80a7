"""The capacity search: geometric steps up to the first failure, bisection to the resolution, honest about noise."""

from __future__ import annotations

import pytest

from harness.plans.search import CapacitySearch, RateVerdict, SearchError, SearchSettings, StepResult


def system(capacity: float, *, base_ms: float = 20.0):  # type: ignore[no-untyped-def]
    """A synthetic system: below ``capacity`` it keeps up; above it falls behind and queues."""
    def run(rate: float) -> StepResult:
        if rate <= capacity:
            return StepResult(rate, rate, base_ms, 0.0)
        return StepResult(rate, capacity, base_ms + 1000.0 * (rate / capacity), 0.0)
    return run


def search_with(run, settings: SearchSettings) -> CapacitySearch:  # type: ignore[no-untyped-def]
    search = CapacitySearch(settings)
    while (rate := search.next_rate()) is not None:
        search.record(run(rate))
    return search


def test_the_search_brackets_a_known_capacity_within_its_resolution() -> None:
    """Capacity 100/s from 5/s: doubling to 160 fails, bisection narrows to within 10 % around 100."""
    search = search_with(system(100.0), SearchSettings(start_rate_per_s=5.0, resolution=0.1))
    result = search.result()
    assert result.saturated
    assert result.passing_per_s is not None and result.failing_per_s is not None
    assert result.passing_per_s <= 100.0 < result.failing_per_s
    assert result.failing_per_s - result.passing_per_s <= 0.1 * result.passing_per_s
    assert [v.rate_per_s for v in search.verdicts][:6] == [5, 10, 20, 40, 80, 160]
    assert "capacity" in result.describe() and "±" in result.describe()


def test_a_step_fails_on_latency_on_rate_and_on_errors_each_named() -> None:
    """Each of the three saturation signals is named as the reason a step failed."""
    settings = SearchSettings(slo_corrected_p99_ms=500.0, min_achieved_ratio=0.95, max_error_ratio=0.01)
    assert StepResult(10, 10, 501, 0).failures(settings)[0].startswith("corrected p99 501 ms")
    assert StepResult(10, 10, 500, 0).failures(settings) == []  # at the SLO exactly still passes
    assert "achieved" in StepResult(10, 9.4, 10, 0).failures(settings)[0]
    assert StepResult(10, 9.5, 10, 0).failures(settings) == []
    assert "errors" in StepResult(10, 10, 10, 0.02).failures(settings)[0]


def test_a_system_that_never_saturates_is_reported_as_a_lower_bound_only() -> None:
    """Up to the maximum rate every step passes: 'not saturated up to X', and no estimate."""
    result = search_with(system(1e9), SearchSettings(start_rate_per_s=10.0, max_rate_per_s=50.0)).result()
    assert not result.saturated and result.estimate_per_s is None
    assert result.passing_per_s == 50.0
    assert result.describe().startswith("not saturated up to 50.0/s")


def test_a_first_step_that_fails_says_to_start_lower() -> None:
    """Saturated at the first rate: nothing to bisect, and the message says so."""
    result = search_with(system(1.0), SearchSettings(start_rate_per_s=10.0)).result()
    assert result.saturated and result.passing_per_s is None
    assert "start lower" in result.describe()


def test_repeats_are_judged_by_their_median_and_disagreement_is_reported() -> None:
    """Two of three repeats pass: the rate passes (median), and the answer is marked uncertain near the limit."""
    answers = iter([StepResult(5, 5, 10, 0)] * 3 + [StepResult(10, 10, 10, 0), StepResult(10, 10, 2000, 0),
                                                     StepResult(10, 10, 20, 0)] + [StepResult(20, 10, 5000, 0)] * 3)
    search = CapacitySearch(SearchSettings(start_rate_per_s=5.0, repeats=3, resolution=1.0))
    while search.next_rate() is not None:
        search.record(next(answers))
    result = search.result()
    assert (result.passing_per_s, result.failing_per_s) == (10.0, 20.0)
    assert result.uncertain and "disagreed" in result.describe()


def test_a_pass_above_a_failure_is_noise_not_capacity() -> None:
    """A rate that passes above one that failed does not raise the capacity; it makes the answer uncertain."""
    search = CapacitySearch(SearchSettings(start_rate_per_s=10.0))
    settings = search.settings
    for rate, p99 in ((10.0, 10.0), (20.0, 5000.0), (40.0, 10.0)):
        result = StepResult(rate, rate, p99, 0.0)
        search.verdicts.append(RateVerdict(rate, (result,), not result.failures(settings), True,
                                           tuple(result.failures(settings))))
    capacity = search.result()
    assert (capacity.passing_per_s, capacity.failing_per_s) == (10.0, 20.0)
    assert capacity.uncertain


def test_the_search_stops_after_max_steps() -> None:
    """A bounded search never asks for more than max_steps steps."""
    search = search_with(system(100.0), SearchSettings(start_rate_per_s=1.0, max_steps=4, resolution=0.001))
    assert len(search.verdicts) == 4 and search.next_rate() is None


@pytest.mark.parametrize("kwargs", [
    {"start_rate_per_s": 0}, {"growth": 1.0}, {"min_achieved_ratio": 1.5}, {"repeats": 0},
    {"start_rate_per_s": 100, "max_rate_per_s": 10}, {"slo_corrected_p99_ms": float("nan")},
])
def test_unusable_settings_are_refused(kwargs: dict[str, float]) -> None:
    """Each unusable setting raises SearchError naming it."""
    with pytest.raises(SearchError):
        SearchSettings(**kwargs)  # type: ignore[arg-type]


def test_a_result_after_the_end_or_with_a_bad_number_is_refused() -> None:
    """Recording when no step was asked for, or a negative p99, raises SearchError."""
    search = CapacitySearch(SearchSettings(start_rate_per_s=1.0, max_steps=1))
    with pytest.raises(SearchError, match="corrected_p99_ms"):
        search.record(StepResult(1, 1, -1, 0))
    search.record(StepResult(1, 1, 1, 0))
    with pytest.raises(SearchError, match="over"):
        search.record(StepResult(1, 1, 1, 0))
