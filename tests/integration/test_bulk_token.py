"""Token-authenticated devices against the real site: a bulk registration token to install and register, then the
client-unique token; the bulk token faults stop only the devices that still use one."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from harness.chaos.verdicts import FaultWindow, VerdictSettings, judge
from harness.client import events as ev
from harness.client import outcome as oc
from harness.client.device import Fleet, FleetMix, parse_traits
from harness.client.transport import device_from_traits, run_client
from mock_site.testing import RunningSite, SiteClient, running_site


@pytest.fixture(scope="module")
def fast_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSite]:
    # 3600x: policy every second, the bulk token lives 72 s and the client-unique token 2,160 s (renewed at 720 s).
    with running_site(tmp_path_factory.mktemp("bulk"), time_scale=3600.0) as site:
        yield site


@pytest.fixture
def bulk_site(fast_site: RunningSite) -> Iterator[RunningSite]:
    fast_site.reset_faults()
    yield fast_site
    fast_site.reset_faults()


def test_the_site_writes_its_bulk_token_and_names_it_in_the_manifest(bulk_site: RunningSite) -> None:
    manifest = bulk_site.manifest
    assert manifest.bulk_token_file is not None and manifest.bulk_token_file.parent == manifest.state_dir
    assert manifest.bulk_token_file.stat().st_mode & 0o077 == 0
    assert ev.SiteEndpoints.from_manifest(manifest).bulk_token == manifest.bulk_token_file.read_text().strip()


def test_a_bulk_token_device_installs_registers_and_polls_without_entra(bulk_site: RunningSite) -> None:
    outcome = run_client(bulk_site.manifest, "bulk_token,wpj_missing", seed=401, polls=2)
    assert outcome.success, oc.format_step_table(outcome)
    steps = [entry.step for entry in outcome.trail]
    assert not {ev.STEP_AAD_INFO, ev.STEP_ENTRA_TOKEN, ev.STEP_CCM_TOKEN} & set(steps)
    assert steps[:6] == [ev.STEP_SITE_INFO, ev.STEP_CCMSETUP_CAB, ev.STEP_CONTENT_LOCATION, ev.STEP_CONTENT_XML,
                         ev.STEP_CONTENT_DOWNLOAD, ev.STEP_REGISTRATION]
    assert steps[6] == ev.STEP_SITE_TOKEN and ev.STEP_POLICY_ASSIGNMENTS in steps


def test_the_site_refuses_a_bulk_token_it_blocked(bulk_site: RunningSite) -> None:
    token = bulk_site.manifest.bulk_token_file.read_text().strip()  # type: ignore[union-attr]
    client = SiteClient(bulk_site.manifest)
    try:
        url = client.server_auth("/CCM_Client/ccmsetup.cab")
        assert client.http.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
        claims = jwt.decode(token, options={"verify_signature": False})
        bulk_site.site.site_tokens.block(claims["UniqueId"])
        try:
            refused = client.http.get(url, headers={"Authorization": f"Bearer {token}"})
            assert (refused.status_code, refused.headers.get("x-cmg-status-text")) == (401,
                                                                                      "CMGService_Invalid_Token")
        finally:
            bulk_site.site.site_tokens.revoked.clear()
    finally:
        client.close()


@pytest.mark.parametrize("fault", ["bulk_token_expired", "bulk_token_revoked"])
def test_a_bulk_token_fault_stops_bulk_devices_only_and_the_verdict_expects_it(bulk_site: RunningSite,
                                                                               fault: str) -> None:
    bulk_site.set_fault(fault, duration=60)
    started = time.time()
    bulk = run_client(bulk_site.manifest, "bulk_token", seed=402, polls=1)
    entra = run_client(bulk_site.manifest, "", seed=403, polls=1)
    ended = time.time()
    assert (bulk.reason, bulk.step) == (oc.CMG_401, ev.STEP_SITE_INFO)
    assert entra.success, oc.format_step_table(entra)
    settings = VerdictSettings.from_manifest(bulk_site.manifest)
    window = [FaultWindow(fault, "cmg", started - 1, ended + 1)]
    profile = device_from_traits(bulk_site.manifest, "bulk_token", seed=402)
    assert judge(profile, bulk.reason, life_start=started, life_end=ended, windows=window, settings=settings).expected
    assert not judge(profile, bulk.reason, life_start=started, life_end=ended, windows=[],
                     settings=settings).expected
    # An Entra device failing cmg.401 under the same fault would be unexpected: the fault is not about it.
    other = device_from_traits(bulk_site.manifest, "", seed=403)
    assert not judge(other, oc.CMG_401, life_start=started, life_end=ended, windows=window,
                     settings=settings).expected


def test_a_registered_token_device_keeps_working_with_its_client_token_under_the_fault(
        bulk_site: RunningSite) -> None:
    from harness.client import lifecycle as lc
    from harness.client.transport import HttpxDriver, TrustStore

    profile = device_from_traits(bulk_site.manifest, "bulk_token", seed=404)
    life = lc.Lifecycle(profile, ev.SiteEndpoints.from_manifest(bulk_site.manifest), clock=time.time,
                        rng=random.Random(4), polls=3)
    with HttpxDriver(TrustStore(bulk_site.manifest.ca_file)) as driver:
        for _ in range(200):  # until registered and holding the client-unique token
            action = life.next_request()
            if isinstance(action, ev.Request) and action.step == ev.STEP_POLICY_ASSIGNMENTS:
                break
            if isinstance(action, ev.Wait):
                time.sleep(max(0.0, action.until - time.time()))
                continue
            assert isinstance(action, ev.Request), action
            life.feed(driver.send(action, profile))
        bulk_site.set_fault("bulk_token_revoked", duration=60)
        assert life.ccm_token != bulk_site.manifest.bulk_token_file.read_text().strip()  # type: ignore[union-attr]
        outcome = driver.run(life)
    assert outcome.success, oc.format_step_table(outcome)


def test_bulk_token_is_a_fleet_share_and_a_device_trait() -> None:
    tenant = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"
    fleet = Fleet(7, FleetMix.parse("bulk_token=0.5"), tenant_ids=[tenant])
    flags = [fleet.device(i).bulk_token for i in range(200)]
    assert 60 < sum(flags) < 140
    # The new draw comes last: without the share every device is what it was before the trait existed.
    plain = Fleet(7, tenant_ids=[tenant])
    assert [fleet.device(i).with_traits(bulk_token=False) for i in range(20)] == [plain.device(i) for i in range(20)]
    assert parse_traits("bulk_token") == {"bulk_token": True}
    assert fleet.device(0).with_traits(bulk_token=True, pki_client_cert=True).takes_token_path is False


def test_a_bulk_token_device_without_a_token_fails_before_sending(tmp_path: Path) -> None:
    from harness.client import lifecycle as lc
    from harness.client.testing import scripted_endpoints

    tenant = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"
    profile = Fleet(1, tenant_ids=[tenant]).device(0).with_traits(bulk_token=True)
    life = lc.Lifecycle(profile, scripted_endpoints(), clock=time.time, rng=random.Random(1))
    action = life.next_request()
    assert isinstance(action, ev.Done) and action.outcome.reason == oc.CMG_401
    assert "given none" in action.outcome.detail
