"""Verdicts: each outcome judged against what the device's traits and the overlapping faults predict (docs/faults.md)."""

from __future__ import annotations

import pytest

from harness.chaos.verdicts import FaultWindow, VerdictSettings, VerdictTally, judge
from harness.client import Fleet
from harness.client.device import WAM_DEVICE_FAILS_D0090016, WAM_USER_FAILS_TOO

TENANT = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"
SETTINGS = VerdictSettings(onboarded_tenants=frozenset({TENANT}), entra_token_lifetime=4500)
HEALTHY = Fleet(1, tenant_ids=[TENANT]).device(0)


def _judge(outcome, profile=HEALTHY, windows=(), start=100.0, end=200.0):  # type: ignore[no-untyped-def]
    return judge(profile, outcome, life_start=start, life_end=end, windows=windows, settings=SETTINGS)


@pytest.mark.parametrize("traits, outcome", [
    ({"root_ca_present": False}, "tls.invalid_ca"),
    ({"wpj_cert": False}, "aad.no_wpj"),
    ({"wam": WAM_USER_FAILS_TOO}, "aad.no_token"),
    ({"clock_skew": 900.0}, "sts.401"),
    ({"clock_skew": -10_000.0}, "sts.401"),
    ({"tenant_id": "c8c82542-203c-4df9-9d86-cdd4dae67e0a"}, "aad.tenant_not_onboarded"),
])
def test_device_traits_decide_the_outcome(traits: dict, outcome: str) -> None:
    """A device fault's documented failure is expected, and success for that device is not."""
    profile = HEALTHY.with_traits(**traits)
    assert _judge(outcome, profile).kind == "expected_failure"
    assert _judge(None, profile).kind == "unexpected_success"


@pytest.mark.parametrize("traits", [{"wam": WAM_DEVICE_FAILS_D0090016}, {"wpj_cert": False, "pki_client_cert": True},
                                    {"clock_skew": 200.0}])
def test_devices_that_recover_must_succeed(traits: dict) -> None:
    """WAM device failure (user-token fallback), WPJ-less PKI devices and small skews must succeed."""
    profile = HEALTHY.with_traits(**traits)
    assert _judge(None, profile).kind == "expected_success"
    assert _judge("sts.401", profile).kind == "unexpected_failure"


def test_a_healthy_device_that_fails_without_faults_is_unexpected() -> None:
    """With no fault on, any failure of a device with everything in order is unexpected."""
    verdict = _judge("cmg.503")
    assert (verdict.expected, verdict.kind) == (False, "unexpected_failure")


def test_a_fault_during_the_life_allows_its_failure() -> None:
    """A device alive while the CRL distribution point was down may fail revocation-offline, or still succeed."""
    windows = [FaultWindow("crl_unreachable", "crl", 150, 160)]
    assert _judge("tls.revocation_offline", windows=windows).expected
    assert _judge(None, windows=windows).expected


def test_a_fault_outside_the_life_allows_nothing() -> None:
    """A fault window that ended before the device started does not excuse its failure."""
    windows = [FaultWindow("crl_unreachable", "crl", 10, 20)]
    assert not _judge("tls.revocation_offline", windows=windows).expected


def test_nocrlcheck_devices_are_not_excused_by_crl_faults() -> None:
    """/NoCRLCheck devices skip revocation checks, so a CRL outage must not stop them."""
    profile = HEALTHY.with_traits(nocrlcheck=True)
    windows = [FaultWindow("cmg_cert_revoked", "crl", 0, 1000)]
    assert not _judge("tls.revoked", profile, windows).expected
    assert _judge(None, profile, windows).expected


def test_an_invalid_token_reaching_the_mp_is_never_expected() -> None:
    """mp.401 means a proxy forwarded an invalid token: unexpected under any fault."""
    windows = [FaultWindow(name, "sts", 0, 1000) for name in ("ccm_token_expired", "entra_token_expired")]
    verdict = _judge("mp.401", windows=windows)
    assert not verdict.expected
    assert "forwarded" in verdict.explanation


def test_tokens_issued_expired_at_the_sts_may_fail_at_the_cmg() -> None:
    """ccm_token_expired at CCM_STS makes even the renewed token invalid, so cmg.401 is predicted there."""
    assert _judge("cmg.401", windows=[FaultWindow("ccm_token_expired", "sts", 0, 1000)]).expected
    assert not _judge("cmg.401", windows=[FaultWindow("ccm_token_expired", "cmg", 0, 1000)]).expected


def test_http_error_allows_any_http_status() -> None:
    """Under http_error the client may end with any http.<status>."""
    assert _judge("http.418", windows=[FaultWindow("http_error", "cmg", 0, 1000)]).expected
    assert not _judge("http.418").expected


def test_tally_counts_per_fault_and_reason_and_keeps_examples() -> None:
    """The tally splits expected from unexpected per reason and per fault and keeps the first examples."""
    tally = VerdictTally(max_examples=1)
    windows = [FaultWindow("sts_error", "sts", 0, 1000)]
    tally.add(_judge("sts.500", windows=windows))
    tally.add(_judge("mp.401", windows=windows), device="CMGDEV0000001", trail=[("policy", "/x", 401, 2.0, "mp.401")])
    tally.add(_judge("mp.401", windows=windows), device="CMGDEV0000002")
    data = tally.to_dict()
    assert (data["expected"], data["unexpected"]) == (1, 2)
    assert data["reasons"]["mp.401"] == {"unexpected": 2}
    assert data["faults"]["sts_error"] == {"expected": 1, "unexpected": 2}
    assert [e["device"] for e in data["examples"]["unexpected_failure:mp.401"]] == ["CMGDEV0000001"]
    other = VerdictTally()
    other.merge(data)
    assert other.to_dict()["unexpected"] == 2


def test_a_slow_mp_beyond_the_upstream_timeout_may_end_in_504() -> None:
    """mp_slow past the connection point's timeout is a 504 (http.504): predicted, not a finding."""
    assert _judge("http.504", windows=[FaultWindow("mp_slow", "mp", 0, 1000)]).expected
    assert not _judge("http.504").expected


@pytest.mark.parametrize("fault", ["entra_token_expired", "entra_bad_signature", "entra_wrong_audience",
                                   "entra_wrong_issuer", "tenant_not_onboarded"])
def test_an_entra_fault_may_have_the_mp_reject_the_registration(fault: str) -> None:
    """A device that fetched a new Entra token for registration during an Entra fault is rejected by the MP there
    (registration.rejected, expected); without the fault the same rejection is unexpected."""
    windows = [FaultWindow(fault, "entra", 150, 160)]
    assert _judge("registration.rejected", windows=windows).expected
    assert not _judge("registration.rejected").expected


@pytest.mark.parametrize("fault", ["mp_slow", "mp_down", "latency"])
def test_under_compressed_time_a_delayed_token_request_may_outlive_its_entra_token(fault: str) -> None:
    """At 3600x an Entra token lives 1.25 s: a token request that a slow or refusing hop delays or repeats may reach
    CCM_STS with it expired (sts.401, expected); with the real 75 minutes, the same sts.401 stays unexpected."""
    from harness.chaos.verdicts import COMPRESSED_ENTRA_TOKEN_S

    windows = [FaultWindow(fault, "mp", 150, 160)]
    compressed = VerdictSettings(onboarded_tenants=frozenset({TENANT}), entra_token_lifetime=1.25, time_scale=3600)
    assert judge(HEALTHY, "sts.401", life_start=100, life_end=200, windows=windows, settings=compressed).expected
    assert not _judge("sts.401", windows=windows).expected
    at_the_bound = VerdictSettings(onboarded_tenants=frozenset({TENANT}), entra_token_lifetime=COMPRESSED_ENTRA_TOKEN_S)
    assert not judge(HEALTHY, "sts.401", life_start=100, life_end=200, windows=windows,
                     settings=at_the_bound).expected
    assert not judge(HEALTHY, "sts.401", life_start=100, life_end=200, windows=[], settings=compressed).expected
