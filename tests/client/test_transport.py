"""The httpx driver against a real mock site over real TLS: each device fault of docs/faults.md and its outcome."""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.client import events as ev
from harness.client import lifecycle as lc
from harness.client import outcome as oc
from harness.client.device import Fleet
from harness.client.events import Done, Request, SiteEndpoints
from harness.client.transport import (
    HttpxDriver,
    TrustStore,
    classify_exception,
    device_from_traits,
    run_client,
)
from mock_site.testing import RunningSite, running_site

NOT_ONBOARDED = "c8c82542-203c-4df9-9d86-cdd4dae67e0a"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSite]:
    # time_scale 3600: the policy interval is 1 s and the CCM token lives 8 s; CMGService.log is written often.
    with running_site(tmp_path_factory.mktemp("site"), time_scale=3600, cmgservice_log_period_seconds=0.2) as running:
        yield running


@pytest.fixture(autouse=True)
def no_faults(site: RunningSite) -> Iterator[None]:
    yield
    site.reset_faults()


def certs(site: RunningSite) -> Any:
    def provide(name: str) -> tuple[Path, Path]:
        bundle = site.site.pki.device_client_cert(name)
        assert bundle.cert_path is not None and bundle.key_path is not None
        return bundle.cert_path, bundle.key_path
    return provide


def run(site: RunningSite, traits: str = "", *, seed: int = 1, polls: int = 1, **options: Any) -> oc.Outcome:
    return run_client(site.manifest, traits, seed=seed, polls=polls, client_certs=certs(site), timeout=10, **options)


def test_a_whole_life_succeeds_and_the_site_registers_the_device(site: RunningSite) -> None:
    """Install, registration and a policy poll succeed, and the site database holds the registration."""
    result = run(site, seed=101)
    assert result.success, oc.format_step_table(result)
    assert [entry.step for entry in result.trail][:8] == [
        ev.STEP_AAD_INFO, ev.STEP_ENTRA_TOKEN, ev.STEP_CCM_TOKEN, ev.STEP_SITE_INFO, ev.STEP_CCMSETUP_CAB,
        ev.STEP_CONTENT_LOCATION, ev.STEP_CONTENT_XML, ev.STEP_CONTENT_DOWNLOAD]
    assert all(entry.status == 200 for entry in result.trail)
    device = device_from_traits(site.manifest, "", seed=101)
    record = site.site.db.client_by_device(device.tenant_id, device.device_id)
    assert record is not None and record.netbios_name == device.netbios_name


def test_root_ca_missing_fails_tls_before_any_http_status(site: RunningSite) -> None:
    """Without the root CA the first CMG call fails TLS: tls.invalid_ca, WinHTTP 12175 with INVALID_CA, no status."""
    result = run(site, "root_ca_missing", seed=102)
    assert (result.step, result.reason, result.error_code, result.winhttp_flags) == (
        ev.STEP_AAD_INFO, oc.TLS_INVALID_CA, 12175, 0x8)
    assert [entry.status for entry in result.trail] == [None]


@pytest.mark.parametrize("wam", ["device_fails_d0090016", "device_fails_800703f0"])
def test_a_wam_device_failure_succeeds_with_a_user_token(site: RunningSite, wam: str) -> None:
    """WAM device token failure: the user token carries the life, and CCM_STS logs TokenType UDA for the device."""
    seed = 103 if wam.endswith("16") else 104
    result = run(site, f"wam={wam}", seed=seed)
    assert result.success, oc.format_step_table(result)
    device = device_from_traits(site.manifest, "", seed=seed)
    sts_log = (Path(site.manifest.log_dir) / "CCM_STS.log").read_text()
    assert f"TokenType: UDA TenantId: {device.tenant_id} UserId: {device.user_oid} DeviceId: {device.device_id}" \
        in sts_log


def test_no_user_token_stops_ccmsetup(site: RunningSite) -> None:
    """When the user token fails too, ccmsetup does not continue."""
    result = run(site, "no_user_token", seed=105)
    assert (result.step, result.reason) == (ev.STEP_ENTRA_TOKEN, oc.AAD_NO_TOKEN)


def test_wpj_missing_with_a_pki_certificate_installs_as_a_pki_client(site: RunningSite) -> None:
    """No WPJ but a PKI client cert: the MutualAuth path succeeds without any Entra or CCM_STS request."""
    result = run(site, "wpj_missing,pki_client_cert", seed=106)
    assert result.success, oc.format_step_table(result)
    names = [entry.name for entry in result.trail]
    assert all("/CCM_Proxy_MutualAuth/" in name or name.startswith(("/downloadrestservice", "/content"))
               for name in names)
    assert ev.STEP_ENTRA_TOKEN not in [entry.step for entry in result.trail]


def test_wpj_missing_without_a_pki_certificate_stops_before_ccm_sts(site: RunningSite) -> None:
    """No WPJ and no PKI cert: aad.no_wpj after AADAuthInfo, nothing sent to CCM_STS."""
    result = run(site, "wpj_missing", seed=107)
    assert (result.step, result.reason) == (ev.STEP_ENTRA_TOKEN, oc.AAD_NO_WPJ)
    assert [entry.step for entry in result.trail] == [ev.STEP_AAD_INFO]


@pytest.mark.parametrize(("fault", "reason", "flags"), [
    ("crl_unreachable", oc.TLS_REVOCATION_OFFLINE, 0x1),
    ("crl_expired", oc.TLS_REVOCATION_OFFLINE, 0x1),
    ("cmg_cert_revoked", oc.TLS_REVOKED, 0x4),
])
def test_crl_faults_stop_devices_that_check_revocation(site: RunningSite, fault: str, reason: str, flags: int) -> None:
    """A device that checks the CRL fails TLS at its first CMG call, with no HTTP status."""
    site.set_fault(fault)
    result = run(site, seed=108)
    assert (result.step, result.reason, result.error_code, result.winhttp_flags, result.status) == (
        ev.STEP_AAD_INFO, reason, 12175, flags, None)


@pytest.mark.parametrize("fault", ["crl_unreachable", "crl_expired", "cmg_cert_revoked"])
def test_crl_faults_do_not_stop_nocrlcheck_devices(site: RunningSite, fault: str) -> None:
    """A /NoCRLCheck device never looks at the CRL, so it goes on (the danger that switch brings)."""
    site.set_fault(fault)
    result = run(site, "nocrlcheck", seed=109)
    assert result.success, oc.format_step_table(result)


@pytest.mark.parametrize("skew", [3 * 3600, -(75 * 60 + 300 + 3600)])
def test_a_skewed_clock_gets_the_token_refused(site: RunningSite, skew: int) -> None:
    """A clock hours ahead is far beyond the 300 s allowance (the token is not yet valid); one behind by more than the
    Entra token's 75 minutes and the allowance presents a token already expired: CCM_STS answers 401. (The skew is
    compressed with the site's time, so it is chosen well clear of the allowance at time scale 3600.)"""
    result = run(site, f"clock_skew={skew}", seed=110)
    assert (result.step, result.reason, result.status) == (ev.STEP_CCM_TOKEN, oc.STS_401, 401)


def test_a_small_skew_is_within_the_allowance(site: RunningSite) -> None:
    """Two minutes off is inside the 300 s leeway: the life succeeds."""
    assert run(site, "clock_skew=120", seed=111).success


def test_a_tenant_that_is_not_onboarded_stops_at_aad_auth_info(site: RunningSite) -> None:
    """The CMG gives no Entra properties for an unknown tenant: aad.tenant_not_onboarded."""
    result = run(site, f"tenant_id={NOT_ONBOARDED}", seed=112)
    assert (result.step, result.reason, result.status) == (ev.STEP_AAD_INFO, oc.AAD_TENANT_NOT_ONBOARDED, 404)


@pytest.mark.parametrize(("fault", "step", "reason", "status"), [
    ("sts_unavailable", ev.STEP_CCM_TOKEN, oc.STS_401, 401),
    ("sts_error", ev.STEP_CCM_TOKEN, oc.STS_500, 500),
    ("cp_cert_revocation_offline", ev.STEP_CCM_TOKEN, oc.CMG_403, 403),
])
def test_connection_point_failures_carry_0x87d0027e(site: RunningSite, fault: str, step: str, reason: str,
                                                    status: int) -> None:
    """CMGConnector_* answers end ccmsetup at CCM_STS with error 0x87d0027e."""
    site.set_fault(fault)
    result = run(site, seed=113)
    assert (result.step, result.reason, result.status, result.error_code) == (step, reason, status, 0x87D0027E)


def test_a_cmg_without_connection_points_is_cmg_503(site: RunningSite) -> None:
    """cp_disconnected: the CMG cannot forward, 503 after the retries."""
    site.set_fault("cp_disconnected")
    result = run(site, seed=114)
    assert (result.step, result.reason) == (ev.STEP_CCM_TOKEN, oc.CMG_503)
    assert [entry.result for entry in result.trail].count(oc.CMG_503) == 3


def test_an_expired_ccm_token_is_renewed_and_the_request_retried(site: RunningSite) -> None:
    """ccm_token_expired: the CMG answers 401 CMGService_Invalid_Token, the client renews at CCM_STS and retries."""
    device = device_from_traits(site.manifest, "", seed=115)
    life = lc.Lifecycle(device, SiteEndpoints.from_manifest(site.manifest), clock=time.time, rng=random.Random(1),
                        polls=1)
    trust = TrustStore(site.manifest.ca_file)
    with HttpxDriver(trust, timeout=10) as driver:
        while (action := life.next_request()).step != ev.STEP_SITE_INFO:  # type: ignore[union-attr]
            life.feed(driver.send(action, device))  # type: ignore[arg-type]
        # The fault refuses tokens issued (iat, to the millisecond) before it started: the renewed token is newer.
        site.set_fault("ccm_token_expired")
        result = driver.run(life)
    trust.close()
    assert result.success, oc.format_step_table(result)
    steps = [(entry.step, entry.status) for entry in result.trail]
    retry = steps.index((ev.STEP_SITE_INFO, 200))
    # Between the refusal and the retry: a new CCM token (and a new Entra token when the old one expired meanwhile).
    assert steps[3] == (ev.STEP_SITE_INFO, 401) and steps[retry - 1] == (ev.STEP_CCM_TOKEN, 200)
    assert {step for step, _ in steps[4:retry]} <= {ev.STEP_ENTRA_TOKEN, ev.STEP_CCM_TOKEN}


def test_devices_with_the_same_trust_share_tls_contexts(site: RunningSite) -> None:
    """Two devices that check the same CRL use the same contexts: one for the CMG, one for Entra ID."""
    trust = TrustStore(site.manifest.ca_file)
    endpoints = SiteEndpoints.from_manifest(site.manifest)
    fleet = Fleet(116, tenant_ids=[site.manifest.tenant_id])
    with HttpxDriver(trust, timeout=10) as driver:
        for index in range(2):
            life = lc.Lifecycle(fleet.device(index), endpoints, clock=time.time, rng=random.Random(index), polls=0)
            assert driver.run(life).success
    assert trust.context_count == 2
    trust.close()


def test_a_device_fetches_the_crl_once_and_keeps_it_until_next_update(site: RunningSite) -> None:
    """A whole life with revocation checking downloads the CRL from the distribution point exactly once."""
    fetched: list[str] = []
    crl_client = httpx.Client(event_hooks={"request": [lambda request: fetched.append(str(request.url))]})
    device = device_from_traits(site.manifest, "", seed=117)
    life = lc.Lifecycle(device, SiteEndpoints.from_manifest(site.manifest), clock=time.time, rng=random.Random(1),
                        polls=1)
    trust = TrustStore(site.manifest.ca_file)
    with HttpxDriver(trust, timeout=10, crl_client=crl_client) as driver:
        assert driver.run(life).success
    trust.close()
    assert fetched == [site.manifest.crl_url]


def test_a_nocrlcheck_device_never_fetches_the_crl(site: RunningSite) -> None:
    """/NoCRLCheck: no request to the distribution point at all."""
    fetched: list[str] = []
    crl_client = httpx.Client(event_hooks={"request": [lambda request: fetched.append(str(request.url))]})
    device = device_from_traits(site.manifest, "nocrlcheck", seed=118)
    life = lc.Lifecycle(device, SiteEndpoints.from_manifest(site.manifest), clock=time.time, rng=random.Random(1),
                        polls=0)
    trust = TrustStore(site.manifest.ca_file)
    with HttpxDriver(trust, timeout=10, crl_client=crl_client) as driver:
        assert driver.run(life).success
    trust.close()
    assert fetched == []


@pytest.mark.parametrize("traits", ["wpj_missing", {"wpj_cert": False}])
def test_run_client_takes_traits_as_text_or_fields(site: RunningSite, traits: object) -> None:
    """The CLI may pass --profile text or the fields parse_traits made of it."""
    result = run_client(site.manifest, traits, seed=121, polls=0)  # type: ignore[arg-type]
    assert result.reason == oc.AAD_NO_WPJ


def test_run_client_writes_the_client_logs(site: RunningSite, tmp_path: Path) -> None:
    """With a log folder, the five walk-through logs of a registered, polling client appear."""
    assert run(site, seed=119, polls=2, log_dir=tmp_path).success
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "ADALOperationProvider.log", "CcmMessaging.log", "ClientIDManagerStartup.log", "LocationServices.log",
        "ccmsetup.log"]


@pytest.mark.parametrize(("code", "reason"), [(23, oc.TLS_REVOKED), (3, oc.TLS_REVOCATION_OFFLINE),
                                              (12, oc.TLS_REVOCATION_OFFLINE), (19, oc.TLS_INVALID_CA),
                                              (20, oc.TLS_INVALID_CA)])
def test_certificate_errors_map_to_tls_reasons(code: int, reason: str) -> None:
    """OpenSSL's verify result, wherever it sits in the exception chain, decides the TLS reason code."""
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cause.verify_code, cause.verify_message = code, "x"
    error = httpx.ConnectError("TLS handshake failed")
    error.__cause__ = cause
    assert classify_exception(error)[0] == reason


@pytest.mark.parametrize(("error", "reason"), [
    (httpx.ReadTimeout("slow"), oc.TIMEOUT),
    (httpx.RemoteProtocolError("Server disconnected without sending a response."), oc.RESET),
    (httpx.ConnectError("[Errno 111] Connection refused"), oc.CONNECT),
])
def test_network_errors_map_to_transport_reasons(error: Exception, reason: str) -> None:
    """Timeouts, dropped connections and refused connects have their own reason codes."""
    assert classify_exception(error)[0] == reason


def test_requests_never_leave_the_lifecycle_unanswered(site: RunningSite) -> None:
    """send() turns a refused connection into a TransportError instead of raising."""
    trust = TrustStore(site.manifest.ca_file)
    device = device_from_traits(site.manifest, "nocrlcheck", seed=120)
    request = Request("GET", "https://127.0.0.1:9/CCM_Proxy_ServerAuth/AADAuthInfo", {}, b"",
                      "/CCM_Proxy_ServerAuth/AADAuthInfo", ev.STAGE_INSTALL, ev.STEP_AAD_INFO)
    with HttpxDriver(trust, timeout=5) as driver:
        reply = driver.send(request, device)
    trust.close()
    assert getattr(reply, "reason", None) == oc.CONNECT
    assert not isinstance(reply, Done)


@pytest.mark.parametrize("url", [
    "https://cmg.example.test:8443/CCM_Proxy_ServerAuth/72057594037927941/ccm_system_tokenauth/request",
    "https://cmg.example.test/CCM_Proxy_MutualAuth/x?y=1",
    "https://127.0.0.1:4443?query/with/slash",
    "https://[::1]:9443/path#frag",
    "https://[::1]/",
])
def test_the_remembered_host_and_port_are_what_the_url_names(url: str) -> None:
    """The per-origin memo gives what splitting the whole URL gives, and never another origin's answer."""
    from urllib.parse import urlsplit

    from harness.client.transport import host_port

    parts = urlsplit(url)
    assert host_port(url) == (parts.hostname, parts.port or 443)
    assert host_port(url) == (parts.hostname, parts.port or 443)  # the second answer comes from the memo
    assert host_port("https://elsewhere.test:1/" + url.rsplit("/", 1)[-1]) == ("elsewhere.test", 1)
