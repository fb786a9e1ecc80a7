"""Recovery measures per fault window: time back to the pre-fault success rate, and the storm after the fault."""

from __future__ import annotations

from typing import Any

import pytest

from harness.chaos.recovery import RecoveryError, SecondCounts, recovery_report, window_recovery

T0 = 1_000
STS = "/CCM_Proxy_ServerAuth/72186325152220500/CCM_STS"
POLICY = "/CCM_Proxy_ServerAuth/72186325152220500/ccm_system_tokenauth/request"


def entries(requests: dict[int, int], failures: dict[int, int], tokens: dict[int, int] | None = None
            ) -> list[dict[str, Any]]:
    """Locust statistics entries as dicts: policy requests, token requests, and a LIFECYCLE entry to be ignored."""
    return [{"name": POLICY, "method": "CCM_POST", "num_reqs_per_sec": {T0 + s: n for s, n in requests.items()},
             "num_fail_per_sec": {T0 + s: n for s, n in failures.items()}},
            {"name": STS, "method": "POST", "num_reqs_per_sec": {T0 + s: n for s, n in (tokens or {}).items()},
             "num_fail_per_sec": {}},
            {"name": "policy cycle", "method": "LIFECYCLE", "num_reqs_per_sec": {T0: 10_000},
             "num_fail_per_sec": {T0: 10_000}}]


def window(start: float, end: float | None) -> dict[str, Any]:
    return {"name": "cp_disconnected", "role": "cmg", "start": T0 + start, "end": None if end is None else T0 + end}


STEADY = {s: 10 for s in range(30)}


def test_recovery_is_the_time_from_the_faults_end_until_the_success_rate_is_back() -> None:
    """Failures from 10 s to 15 s, a slow tail until 18 s: recovered 3 s after the 15 s end."""
    failures = {s: 10 for s in range(10, 15)} | {15: 5, 16: 3, 17: 1}
    [row] = recovery_report([window(10, 15)], entries(STEADY, failures), run_end=T0 + 30)
    assert row["baseline_success_rate"] == 1.0 and row["worst_success_rate"] == 0.0
    assert (row["recovered"], row["recovery_s"]) == (True, 3.0)


def test_the_storm_is_the_request_rate_above_the_pre_fault_rate_after_the_fault() -> None:
    """Renewals piling up after the fault show as requests per second above the baseline, and as excess requests."""
    requests = STEADY | {15: 40, 16: 25}
    tokens = {s: 1 for s in range(30)} | {15: 12}
    [row] = recovery_report([window(10, 15)], entries(requests, {}, tokens), run_end=T0 + 30)
    # All requests: 10 policy + 1 token per second before; 52 and 26 right after the fault.
    assert (row["baseline_rps"], row["peak_rps_after"], row["storm_rps"], row["storm_requests"]) == (11.0, 52, 41.0, 56)
    assert (row["token_baseline_rps"], row["token_peak_rps_after"], row["token_storm_rps"]) == (1.0, 12, 11.0)


def test_a_rate_that_never_comes_back_is_not_recovered() -> None:
    """Failures go on until the run ends: recovered False, no recovery time."""
    [row] = recovery_report([window(10, 15)], entries(STEADY, {s: 5 for s in range(10, 30)}), run_end=T0 + 30)
    assert (row["recovered"], row["recovery_s"]) == (False, None)


@pytest.mark.parametrize(("start", "end", "note"), [
    (0, 5, "no requests before the fault"),
    (10, None, "still on"),
    (10, 28.5, "too close to the end"),
])
def test_windows_that_cannot_be_measured_say_why(start: float, end: float | None, note: str) -> None:
    """No baseline, a fault still on, or too little run left after it: a note instead of numbers."""
    [row] = recovery_report([window(start, end)], entries(STEADY, {}), run_end=T0 + 30)
    assert note in row["note"] and "recovered" not in row


def test_counts_read_from_locust_json_have_string_seconds() -> None:
    """JSON turns the per-second keys into strings; they count the same."""
    counts = SecondCounts.from_entries([{"name": POLICY, "method": "CCM_POST", "num_reqs_per_sec": {"1000": 4},
                                         "num_fail_per_sec": {"1000": 1}}])
    assert (counts.requests, counts.failures, counts.tokens) == ({1000: 4}, {1000: 1}, {})


def test_bad_counts_and_windows_are_refused_by_value() -> None:
    """A count that is not a number, or a window without a numeric start, raises RecoveryError naming it."""
    with pytest.raises(RecoveryError, match="'soon'"):
        SecondCounts.from_entries([{"name": POLICY, "num_reqs_per_sec": {"soon": 1}}])
    with pytest.raises(RecoveryError, match="numeric start"):
        window_recovery({"name": "reset", "start": "x", "end": 1.0}, SecondCounts({}, {}, {}), run_end=10.0)
