"""Recovery figures at their edges: the baseline's seconds, the tolerance, the settle time, the storm window.

Each constant is pinned at its exact edge with the module's defaults (10 s baseline, 3 s settle, 0.01 tolerance, 10 s
storm), since an off-by-one second or a tolerance compared the wrong way makes a recovery look faster than it was.
Seconds are small whole numbers here; the fault is on from 20 to 22 and the run ends at 41 (its last whole second 40).
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.chaos.recovery import (
    BASELINE_SECONDS,
    SETTLE_SECONDS,
    STORM_SECONDS,
    TOLERANCE,
    RecoveryError,
    SecondCounts,
    window_recovery,
)

RUN_END = 41.0
LAST = 40


def counts(requests: dict[int, int], failures: dict[int, int] | None = None,
           tokens: dict[int, int] | None = None) -> SecondCounts:
    return SecondCounts(requests, failures or {}, tokens or {})


def steady(per_second: int = 10, upto: int = LAST + 2) -> dict[int, int]:
    """Requests every second from 0 through one second past the run's end (a partial second Locust may report)."""
    return dict.fromkeys(range(upto), per_second)


def measure(c: SecondCounts, start: float = 20, end: float | None = 22, run_end: float = RUN_END) -> dict[str, Any]:
    return window_recovery({"name": "reset", "role": "cmg", "start": start, "end": end}, c, run_end=run_end)


def test_the_defaults_are_the_documented_ones() -> None:
    """Chaos reports state these figures; the edges below are written for them."""
    assert (BASELINE_SECONDS, SETTLE_SECONDS, TOLERANCE, STORM_SECONDS) == (10, 3, 0.01, 10)


@pytest.mark.parametrize(("failed_second", "rate"), [(9, 1.0), (10, 0.95), (19, 0.95), (20, 1.0)])
def test_the_baseline_is_the_ten_seconds_before_the_fault_start(failed_second: int, rate: float) -> None:
    """Five failures in second 10 (the first of the baseline) or 19 (its last) count; in 9 or 20 (the fault) not."""
    row = measure(counts(steady(), {failed_second: 5}))
    assert row["baseline_success_rate"] == rate


def test_the_baseline_starts_at_the_first_second_with_requests() -> None:
    """Traffic from second 15: a five-second baseline, its rate per second over those five seconds only."""
    requests = {s: 10 for s in range(15, LAST + 1)} | {16: 0}
    row = measure(counts(requests, {17: 1}, {15: 1, 19: 2}))
    assert (row["baseline_rps"], row["baseline_success_rate"], row["token_baseline_rps"]) == (8.0, 0.975, 0.6)


def test_missing_seconds_in_the_baseline_count_as_no_requests() -> None:
    """Requests only in second 10 and 19: 20 requests over ten seconds, 2 per second; one failed of 20."""
    requests = {10: 10, 19: 10} | {s: 10 for s in range(20, LAST + 1)}
    row = measure(counts(requests, {19: 1}, {19: 3}))
    assert (row["baseline_rps"], row["baseline_success_rate"], row["token_baseline_rps"]) == (2.0, 0.95, 0.3)


def test_figures_are_rounded_as_reported() -> None:
    """Success rates to four decimals, rates per second to one."""
    requests = steady(3) | {23: 7}
    row = measure(counts(requests, {19: 1, 20: 2}, {18: 1, 23: 4}))
    assert row["baseline_success_rate"] == 0.9667 and row["worst_success_rate"] == 0.3333
    assert (row["baseline_rps"], row["peak_rps_after"], row["storm_rps"], row["storm_requests"]) == (3.0, 7, 4.0, 4)
    assert (row["token_baseline_rps"], row["token_peak_rps_after"], row["token_storm_rps"]) == (0.1, 4, 3.9)


def test_the_worst_second_includes_the_fault_end_second() -> None:
    """Failures only in second 22, where the fault ended at 22.0: that second is the fault's worst."""
    row = measure(counts(steady(), {22: 10}), end=22.0)
    assert row["worst_success_rate"] == 0.0 and row["recovery_s"] == 1.0


def test_a_dip_of_exactly_the_tolerance_counts_as_recovered() -> None:
    """Baseline 1.0; 3 failures in 300 requests over the settle time is exactly 0.99: recovered at once."""
    row = measure(counts(steady(100), {22: 3}))
    assert (row["recovered"], row["recovery_s"]) == (True, 0.0)


def test_a_dip_just_past_the_tolerance_is_not_recovered() -> None:
    """4 failures in the same 300 requests is below 0.99: recovery waits for the settle window past them."""
    row = measure(counts(steady(100), {22: 4}))
    assert (row["recovered"], row["recovery_s"]) == (True, 1.0)


@pytest.mark.parametrize(("after", "recovery_s"), [({23: 6, 24: 6, 25: 5}, 1.0), ({23: 7, 24: 6, 25: 6}, 2.0)])
def test_the_tolerance_is_measured_from_a_baseline_below_one(after: dict[int, int], recovery_s: float) -> None:
    """Baseline 0.95 (5 failed of 100 a second): 17 failed of 300 (0.9433) counts, 19 of 300 (0.9367) not."""
    failures = {s: 5 for s in range(10, 20)} | {22: 100} | after
    row = measure(counts(steady(100), failures))
    assert (row["baseline_success_rate"], row["recovery_s"]) == (0.95, recovery_s)


def test_settling_needs_the_full_settle_time() -> None:
    """Clean for two seconds (23, 24) is not enough; three (26..28) is, even with a failing second after them."""
    failures = {22: 10, 25: 10, 29: 10}
    row = measure(counts(steady(), failures))
    assert (row["recovered"], row["recovery_s"]) == (True, 4.0)


def test_recovery_time_runs_from_the_faults_exact_end() -> None:
    """The end 22.75 and recovery in second 25: 2.25 s, rounded to 2.2; recovery in its own second is 0.0, not less."""
    assert measure(counts(steady(), {22: 10, 23: 10, 24: 10}), end=22.75)["recovery_s"] == 2.2
    assert measure(counts(steady()), end=22.75)["recovery_s"] == 0.0


def test_the_last_settle_window_ends_at_the_last_whole_second() -> None:
    """Clean only from 38 through 40 recovers; clean from 39 on needs second 41, which the run did not finish."""
    failing = {s: 10 for s in range(22, 38)}
    assert measure(counts(steady(), failing))["recovery_s"] == 16.0
    row = measure(counts(steady(), failing | {38: 10}))
    assert (row["recovered"], row["recovery_s"]) == (False, None)


@pytest.mark.parametrize(("run_end", "measured"), [(25.0, True), (24.99, False)])
def test_a_window_needs_the_settle_time_after_it_before_the_run_ends(run_end: float, measured: bool) -> None:
    """A fault ending at 22 needs seconds 22, 23 and 24 whole: a run ending at 25.0 has them, at 24.99 not."""
    row = measure(counts(steady()), run_end=run_end)
    assert ("recovered" in row) is measured
    if not measured:
        assert row["note"] == "ended too close to the end of the run to measure recovery"


@pytest.mark.parametrize(("spike_second", "peak"), [(21, 10), (22, 90), (32, 90), (33, 10), (LAST + 1, 10)])
def test_the_storm_window_is_the_fault_end_second_plus_the_storm_seconds(spike_second: int, peak: int) -> None:
    """Recovered at once after a fault ending at 22: a spike in 22 through 32 is the storm; in 21 or 33 not."""
    row = measure(counts(steady() | {spike_second: 90}))
    assert row["peak_rps_after"] == peak


@pytest.mark.parametrize(("spike_second", "peak"), [(35, 90), (36, 10)])
def test_the_storm_window_grows_by_the_recovery_time_rounded_up(spike_second: int, peak: int) -> None:
    """Recovered 2.3 s after an end at 22.7: the storm runs from second 22 through 22 + 3 + 10 = 35."""
    failures = {22: 10, 23: 10, 24: 10}
    row = measure(counts(steady() | {spike_second: 90}, failures), end=22.7)
    assert row["recovery_s"] == 2.3
    assert row["peak_rps_after"] == peak


@pytest.mark.parametrize(("spike_second", "peak"), [(32, 90), (33, 10)])
def test_an_unrecovered_window_still_measures_a_storm_of_the_storm_seconds(spike_second: int, peak: int) -> None:
    """Failures to the end of the run: the storm window is the fault end plus ten seconds."""
    failures = {s: 10 for s in range(22, LAST + 2)}
    row = measure(counts(steady() | {spike_second: 90}, failures))
    assert row["recovered"] is False and row["peak_rps_after"] == peak


def test_a_storm_counts_only_the_excess_and_never_below_zero() -> None:
    """Seconds below the baseline rate (none at all in 23) take nothing off the excess of the others."""
    requests = steady() | {22: 25, 23: 0, 24: 4}
    row = measure(counts(requests, tokens={22: 2}))
    assert (row["peak_rps_after"], row["storm_rps"], row["storm_requests"]) == (25, 15.0, 15)
    assert (row["token_baseline_rps"], row["token_peak_rps_after"], row["token_storm_rps"]) == (0.0, 2, 2.0)


def test_a_storm_below_the_baseline_is_zero() -> None:
    """Fewer requests after the fault than before: no storm, not a negative one."""
    requests = steady() | {s: 5 for s in range(22, LAST + 2)}
    row = measure(counts(requests, tokens=dict.fromkeys(range(20), 2)))
    assert (row["storm_rps"], row["storm_requests"], row["token_storm_rps"]) == (0.0, 0, 0.0)


def test_a_window_with_no_traffic_after_it() -> None:
    """Traffic stops at the fault start: nothing during it, nothing recovered, no storm, no tokens."""
    row = measure(counts(dict.fromkeys(range(20), 10)))
    assert (row["worst_success_rate"], row["recovered"], row["recovery_s"]) == (None, False, None)
    assert (row["peak_rps_after"], row["storm_rps"], row["storm_requests"]) == (0, 0.0, 0)
    assert (row["token_peak_rps_after"], row["token_storm_rps"]) == (0, 0.0)


def test_no_requests_in_the_baseline_seconds_is_no_baseline() -> None:
    """A second with a zero count before the fault starts the baseline, but there is nothing to recover to."""
    row = measure(counts({5: 0} | {s: 10 for s in range(20, LAST + 1)}))
    assert row["note"] == "no requests before the fault: no baseline to recover to"
    assert "recovered" not in row and (row["name"], row["role"], row["start"], row["end"]) == ("reset", "cmg", 20, 22)


def test_no_requests_at_all_is_no_baseline() -> None:
    assert measure(counts({}))["note"] == "no requests before the fault: no baseline to recover to"


@pytest.mark.parametrize("window", [{"start": "x", "end": 1.0}, {"start": 1.0, "end": "soon"}, {"end": 1.0}])
def test_a_window_without_numeric_start_and_end_is_refused_naming_it(window: dict[str, Any]) -> None:
    with pytest.raises(RecoveryError, match=r"a fault window needs numeric start and end, got \{") as caught:
        window_recovery(window, counts({}), run_end=10.0)
    assert repr(window) in str(caught.value)


@pytest.mark.parametrize("bad", [{"1000": "many"}, {"1000": None}, {"1.5x": 1}])
def test_counts_that_are_not_whole_numbers_are_refused_naming_them(bad: dict[str, Any]) -> None:
    [(second, count)] = bad.items()
    with pytest.raises(RecoveryError) as caught:
        SecondCounts.from_entries([{"name": "/x", "method": "GET", "num_fail_per_sec": bad}])
    assert str(caught.value) == f"per-second counts map whole seconds to counts, got {second!r}: {count!r}"


def test_the_worst_second_is_one_of_the_faults_seconds_only() -> None:
    """No failure recorded while the fault is on, all requests failing in the second after it: the worst is 1.0."""
    row = measure(counts(steady(), {23: 10}))
    assert row["worst_success_rate"] == 1.0


def test_a_short_baseline_is_averaged_over_its_own_seconds_and_rounded() -> None:
    """Traffic from 17: 31 requests and 1 token over three seconds (10.3 and 0.3 a second), 25 and 2 at the peak."""
    requests = {17: 10, 18: 10, 19: 11} | dict.fromkeys(range(20, LAST + 1), 10) | {24: 25}
    row = measure(counts(requests, tokens={18: 1, 24: 2}))
    assert (row["baseline_rps"], row["storm_rps"]) == (10.3, 14.7)
    assert (row["token_baseline_rps"], row["token_storm_rps"]) == (0.3, 1.7)


def test_seconds_without_requests_add_nothing_to_a_storm_over_a_slow_baseline() -> None:
    """Baseline 0.5 requests a second; after the fault only second 24 has any (3): 2.5 excess, rounded to 2."""
    requests = dict.fromkeys(range(10, 20, 2), 1) | {24: 3}
    row = measure(counts(requests))
    assert (row["baseline_rps"], row["peak_rps_after"], row["storm_requests"]) == (0.5, 3, 2)
