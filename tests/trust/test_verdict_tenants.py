"""Verdicts: a fault that concerns one tenant excuses that tenant's devices only; the skew allowance follows the site."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.chaos.verdicts import FaultWindow, VerdictSettings, expect, judge
from harness.client import Fleet
from harness.client import outcome as oc
from mock_site.manifest import ManifestTenant
from mock_site.testing import example_manifest

TENANT_A = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"
TENANT_B = "2ca9a796-a1a6-43ec-88f1-5935b32155c5"
SETTINGS = VerdictSettings(onboarded_tenants=frozenset({TENANT_A, TENANT_B}))
DEVICE_A = Fleet(1, tenant_ids=[TENANT_A]).device(0)
DEVICE_B = Fleet(1, tenant_ids=[TENANT_B]).device(0)


def _judge(profile, outcome, windows):  # type: ignore[no-untyped-def]
    return judge(profile, outcome, life_start=100.0, life_end=200.0, windows=windows, settings=SETTINGS)


@pytest.mark.parametrize("outcome", [oc.STS_401, oc.AAD_TENANT_NOT_ONBOARDED])
def test_a_one_tenant_fault_excuses_only_that_tenant(outcome: str) -> None:
    """tenant_not_onboarded for tenant A: A's devices may fail, B's failures stay unexpected."""
    windows = [FaultWindow("tenant_not_onboarded", "cmg", 90, 210, {"tenant_id": TENANT_A})]
    assert _judge(DEVICE_A, outcome, windows).kind == "expected_failure"
    verdict = _judge(DEVICE_B, outcome, windows)
    assert verdict.kind == "unexpected_failure"
    assert "tenant_not_onboarded" not in verdict.expectation.causes


def test_a_one_tenant_fault_names_the_tenant_without_case() -> None:
    """The site compares tenant ids without case, so the verdict does too."""
    windows = [FaultWindow("tenant_not_onboarded", "sts", 90, 210, {"tenant_id": TENANT_A.upper()})]
    assert _judge(DEVICE_A, oc.STS_401, windows).expected
    assert not _judge(DEVICE_B, oc.STS_401, windows).expected


@pytest.mark.parametrize("params", [{}, {"tenant_id": None}, {"tenant_id": ""}], ids=["absent", "none", "empty"])
def test_a_fault_without_a_tenant_concerns_every_tenant(params: dict) -> None:
    """Unset, the fault treats every tenant as not onboarded."""
    windows = [FaultWindow("tenant_not_onboarded", "cmg", 90, 210, params)]
    assert _judge(DEVICE_A, oc.STS_401, windows).expected
    assert _judge(DEVICE_B, oc.STS_401, windows).expected


def test_a_device_trait_stays_allowed_under_a_fault() -> None:
    """A device without its WPJ certificate may still fail aad.no_wpj while a reset fault is on, or fail reset."""
    profile = DEVICE_A.with_traits(wpj_cert=False)
    windows = [FaultWindow("reset", "cmg", 90, 210)]
    expectation = expect(profile, life_start=100, life_end=200, windows=windows, settings=SETTINGS)
    assert {oc.AAD_NO_WPJ, oc.RESET} <= expectation.allowed
    assert expectation.causes == ("wpj_missing", "reset")


def test_a_fault_with_no_failure_of_its_own_is_still_named_as_a_cause() -> None:
    """ccm_token_lifetime allows no failure but is listed among the causes of the device's expectation."""
    windows = [FaultWindow("ccm_token_lifetime", "sts", 90, 210)]
    expectation = expect(DEVICE_A, life_start=100, life_end=200, windows=windows, settings=SETTINGS)
    assert expectation.causes == ("ccm_token_lifetime",) and expectation.allowed == {"ok"}


def test_an_unknown_fault_is_not_a_cause() -> None:
    """A fault the rules do not know widens nothing and is not named."""
    windows = [FaultWindow("no_such_fault", "cmg", 90, 210)]
    expectation = expect(DEVICE_A, life_start=100, life_end=200, windows=windows, settings=SETTINGS)
    assert expectation.causes == () and expectation.allowed == {"ok"}


def test_the_skew_allowance_comes_from_the_manifest_scaled() -> None:
    """At time scale 60 the site's leeway is 5 real seconds and a device's skew is compressed too: 301 s of skew
    (5.02 real seconds) is refused and predicted so, 299 s (4.98) is accepted and predicted so."""
    base = example_manifest(Path("/nonexistent")).replace(tenant_id=TENANT_A, tenants=())
    settings = VerdictSettings.from_manifest(base.replace(time_scale=60.0, token_leeway_s=5.0))
    assert settings.leeway == 5.0
    beyond = judge(DEVICE_A.with_traits(clock_skew=301.0), oc.STS_401, life_start=1, life_end=2, windows=(),
                   settings=settings)
    within = judge(DEVICE_A.with_traits(clock_skew=299.0), None, life_start=1, life_end=2, windows=(), settings=settings)
    assert (beyond.kind, within.kind) == ("expected_failure", "expected_success")
    # A manifest of an older site (no token_leeway_s) still gets the scaled default.
    assert VerdictSettings.from_manifest(base.replace(time_scale=60.0)).leeway == 5.0
    assert VerdictSettings.from_manifest(base.replace(time_scale=1.0)).leeway == 300.0


def test_the_settings_read_the_onboarded_tenants_and_the_scaled_entra_lifetime_from_the_manifest() -> None:
    """Only onboarded tenants count (compared without case); a manifest listing none falls back to its tenant_id."""
    manifest = example_manifest(tenant_id=TENANT_A, time_scale=60.0, tenants=(
        ManifestTenant(TENANT_A.upper(), True, "app", "uri"), ManifestTenant(TENANT_B, False, "app", "uri")))
    settings = VerdictSettings.from_manifest(manifest)
    assert settings.onboarded_tenants == frozenset({TENANT_A})
    assert settings.entra_token_lifetime == 75.0  # 75 minutes at time scale 60
    assert VerdictSettings.from_manifest(manifest.replace(tenants=())).onboarded_tenants == frozenset({TENANT_A})


def test_the_skew_boundary_is_the_leeway() -> None:
    """A skew of exactly the leeway is still accepted (the site's nbf check is inclusive); one second more is not."""
    at = DEVICE_A.with_traits(clock_skew=300.0)
    beyond = DEVICE_A.with_traits(clock_skew=301.0)
    assert _judge(at, None, ()).kind == "expected_success"
    assert _judge(beyond, oc.STS_401, ()).kind == "expected_failure"
    lifetime = SETTINGS.entra_token_lifetime
    assert _judge(DEVICE_A.with_traits(clock_skew=-(lifetime + 300.0)), None, ()).kind == "expected_success"
    assert _judge(DEVICE_A.with_traits(clock_skew=-(lifetime + 301.0)), oc.STS_401, ()).kind == "expected_failure"
