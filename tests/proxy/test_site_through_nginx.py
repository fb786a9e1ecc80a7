"""The mock site behind a real nginx (no mock CMG): whole device lives, the URL map at the edge, and token faults judged."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cmg_protocol import tokens, urlmap
from harness.chaos.verdicts import FaultWindow, VerdictSettings, judge
from harness.client.transport import device_from_traits, run_client
from harness.proxy import RenderedProxy
from harness.proxy.nginx import NAIVE, VALIDATING
from mock_site.cmg import SERVICE_METADATA_XML
from mock_site.manifest import SiteManifest
from mock_site.testing import RunningSite, SiteClient, running_site
from tests.proxy.conftest import ProxyStarter, raw_request

pytestmark = pytest.mark.nginx


@pytest.fixture(scope="module")
def proxied_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSite]:
    """A site without the mock CMG: clients reach its connection point only through nginx."""
    with running_site(Path(tmp_path_factory.mktemp("site")), cmg_enabled=False, time_scale=60) as running:
        yield running


@pytest.fixture(scope="module")
def proxies(proxied_site: RunningSite, start_proxy: ProxyStarter) -> dict[str, RenderedProxy]:
    return {variant: start_proxy(proxied_site.manifest, variant) for variant in (NAIVE, VALIDATING)}


@pytest.fixture
def site(proxied_site: RunningSite) -> Iterator[RunningSite]:
    proxied_site.reset_faults()
    yield proxied_site
    proxied_site.reset_faults()


def _through(manifest: SiteManifest, proxy: RenderedProxy) -> SiteManifest:
    """The manifest a client uses to reach the site through ``proxy``."""
    return manifest.replace(cmg_url=proxy.url)


def test_the_site_has_no_cmg_of_its_own(proxied_site: RunningSite) -> None:
    """Without the mock CMG the manifest names no CMG URL, so every client request below goes through nginx."""
    assert proxied_site.manifest.cmg_url is None and proxied_site.manifest.cp_urls


@pytest.mark.parametrize("profile", ["", "pki_client_cert"], ids=["entra", "pki"])
@pytest.mark.parametrize("variant", [NAIVE, VALIDATING])
def test_a_device_lives_its_whole_life_through_nginx(site: RunningSite, proxies: dict[str, RenderedProxy],
                                                     variant: str, profile: str) -> None:
    """Install, registration and a policy cycle succeed through either variant, Entra-joined or PKI."""
    proxy = proxies[variant]
    outcome = run_client(_through(site.manifest, proxy), profile, seed=11, polls=1)
    assert outcome.success, outcome.detail
    steps = {entry.step for entry in outcome.trail}
    # A proxy forwards getcontentxmlsecure to the management point, which serves the content itself (the fallback
    # when the content is not in cloud storage), so the content comes with the content_xml step.
    assert {"site_info", "content_xml", "registration", "policy_body"} <= steps
    assert "/SMS_MP/.sms_pol" in proxy.access_log.read_text()


# Paths the URL map refuses; nginx must refuse each with the same status, whatever it would normalise.
REFUSED = [
    "/",
    "/index.html",
    "/metrics",
    "/CCM_STS",
    "/ccm_system_tokenauth/request",
    "/_cmg/validate-token",
    "/CCM_Proxy_ServerAuth",
    "/CCM_Proxy_ServerAuth/72186325152220500",
    "/CCM_Proxy_ServerAuth/abc/CCM_STS",
    "/CCM_Proxy_ServerAuth/72186325152220500/not_an_endpoint",
    "/CCM_Proxy_ServerAuth/72186325152220500/CCM_Client/other.exe",
    "/CCM_Proxy_ServerAuth/72186325152220500/ccm_system_tokenauth/request/extra",
    "/CCM_Proxy_ServerAuth/72186325152220500/../../etc/passwd",
    "/CCM_Proxy_ServerAuth/72186325152220500/x/../CCM_STS",
    "/CCM_Proxy_ServerAuth/72186325152220500/./CCM_STS",
    "/CCM_Proxy_ServerAuth/72186325152220500/%2e%2e/CCM_STS",
    "/CCM_Proxy_ServerAuth/72186325152220500/..%2fCCM_STS",
    "/CCM_Proxy_ServerAuth/72186325152220500//CCM_STS",
    "//CCM_Proxy_ServerAuth/72186325152220500/CCM_STS",
    "/CCM_Proxy_ServerAuth/72186325152220500/CCM_STS%5c",
    "/CCM_Proxy_ServerAuth/72186325152220500/CCM_STS\\..\\x",
    "/CCM_Proxy_ServerAuth/72186325152220500/CCM_STS%00",
    "/CCM_Proxy_ServerAuth/72186325152220500/CCM_STS?x=1",
    "/CCM_Proxy_ServerAuth/72186325152220500/SMS_MP/.sms_aut?NOTMPLIST",
    "/CCM_Proxy_ServerAuth/72186325152220500/SMS_MP/.sms_pol",
    "/CCM_Proxy_MutualAuth/AADAuthInfo?TenantID=9aaf466a-3f40-4468-b3cd-f0010f21f05a",
    "/CCM_Proxy_ServerAuth/AADAuthInfo?TenantID=not-a-guid",
    "/downloadrestservice.svc/getcontentxmlsecure?pid=../x&cid=1",
    "/downloadrestservice.svc/getcontentxmlsecure?pid=P1",
]


@pytest.mark.parametrize("path", REFUSED)
def test_the_url_map_holds_at_the_edge(site: RunningSite, proxies: dict[str, RenderedProxy], path: str) -> None:
    """Unknown, traversing and malformed paths get the URL map's own 404 or 400 from nginx, never forwarded."""
    with pytest.raises(urlmap.UrlMapError) as refused:
        urlmap.match(path)
    proxy = proxies[VALIDATING]
    answer = raw_request(proxy.url, site.manifest.ca_file, "GET", path)
    assert answer.status == refused.value.status
    assert answer.headers["x-cmg-status-text"].startswith("CMGService_")
    logged_path = path.replace("\\", "\\x5C")  # nginx escapes backslashes in its access log
    assert _logged(proxy, f'"GET {logged_path} HTTP/1.1"').endswith("cp=- cp_status=-")  # no connection point asked


def _logged(proxy: RenderedProxy, request_line: str) -> str:
    """The access-log line of a request (nginx writes it just after answering, so wait for it a little)."""
    for _ in range(100):
        lines = [line for line in proxy.access_log.read_text().splitlines() if request_line in line]
        if lines:
            return lines[-1]
        time.sleep(0.02)
    raise AssertionError(f"{request_line} never reached {proxy.access_log}")


def test_an_absolute_request_target_is_refused(site: RunningSite, proxies: dict[str, RenderedProxy]) -> None:
    """A request target naming a host cannot choose where the proxy forwards: 400."""
    answer = raw_request(proxies[NAIVE].url, site.manifest.ca_file, "GET",
                         "https://evil.example/CCM_Proxy_ServerAuth/72186325152220500/CCM_Client/ccmsetup.cab")
    assert answer.status == 400


def test_paths_and_parameters_match_without_case(site: RunningSite, proxies: dict[str, RenderedProxy]) -> None:
    """As on the CMG, ``/ccm_proxy_serverauth/aadauthinfo?tenantid=`` is the same endpoint as the canonical one."""
    answer = raw_request(proxies[NAIVE].url, site.manifest.ca_file, "GET",
                         f"/ccm_proxy_serverauth/aadauthinfo?tenantid={site.manifest.tenant_id.upper()}")
    assert answer.status == 200
    assert answer.json()["AADCLIENTAPPID"] == site.manifest.client_app_id


# --- invalid tokens: let through by the naive proxy, refused at the edge by the validating one ------------------------


def _forged_ccm_token(manifest: SiteManifest) -> str:
    now = time.time()
    claims = {"iss": tokens.ccm_issuer(manifest.hierarchy_id), "aud": tokens.CCM_AUDIENCE, "iat": int(now),
              "nbf": int(now), "exp": int(now + 3600), "SCCMTokenCategory": tokens.CCM_TOKEN_CATEGORY,
              "Authority": "SCCM", "License": "SCCM", "Type": "Device", "deviceid": "GUID:X", "userid": "",
              "UniqueId": str(uuid.uuid4()), "TenantId": manifest.tenant_id, "smsid": ""}
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return jwt.encode(claims, pem, algorithm="RS256", headers={"kid": "attacker"})


@pytest.mark.parametrize("token_kind", ["garbage", "forged_signature"])
@pytest.mark.parametrize("variant,status_text", [(NAIVE, "MP_Invalid_Token"), (VALIDATING, "CMGService_Invalid_Token")])
def test_who_refuses_an_invalid_token(site: RunningSite, proxies: dict[str, RenderedProxy], variant: str,
                                      status_text: str, token_kind: str) -> None:
    """The naive proxy lets the token reach the MP (MP_Invalid_Token); the validating one refuses it itself."""
    token = "not.a.jwt" if token_kind == "garbage" else _forged_ccm_token(site.manifest)
    with SiteClient(site.manifest, cmg_url=proxies[variant].url) as client:
        response = client.message("MP_LocationManager", "<SiteInformationRequest/>", token=token)
    assert (response.status_code, response.headers.get("x-cmg-status-text")) == (401, status_text)


def _judged_life(site: RunningSite, proxy: RenderedProxy, fault: str, role: str) -> tuple[str, Any]:
    """Run one device's life through ``proxy`` with ``fault`` on at ``role``; return its reason and verdict."""
    manifest = _through(site.manifest, proxy)
    site.set_fault(fault, role=role)
    start = time.time()
    outcome = run_client(manifest, "", seed=5, polls=1)
    end = time.time()
    verdict = judge(device_from_traits(manifest, "", seed=5), outcome.reason or None, life_start=start,
                    life_end=end, windows=[FaultWindow(fault, role, start, end)],
                    settings=VerdictSettings.from_manifest(manifest))
    return outcome.reason, verdict


def test_a_naive_proxy_forwarding_expired_ccm_tokens_is_an_unexpected_outcome(
        site: RunningSite, proxies: dict[str, RenderedProxy]) -> None:
    """CCM_STS issuing expired tokens: the naive proxy forwards them, the MP refuses, and the verdict is UNEXPECTED."""
    reason, verdict = _judged_life(site, proxies[NAIVE], "ccm_token_expired", "sts")
    assert reason == "mp.401"
    assert (verdict.expected, verdict.kind) == (False, "unexpected_failure")


def test_a_validating_proxy_refusing_expired_ccm_tokens_is_expected(
        site: RunningSite, proxies: dict[str, RenderedProxy]) -> None:
    """The same fault behind the validating proxy: refused at the edge (the client renews once), an expected outcome."""
    reason, verdict = _judged_life(site, proxies[VALIDATING], "ccm_token_expired", "sts")
    assert reason == "cmg.401"
    assert (verdict.expected, verdict.kind) == (True, "expected_failure")


@pytest.mark.parametrize("fault", ["entra_token_expired", "entra_bad_signature", "entra_wrong_audience",
                                   "entra_wrong_issuer"])
@pytest.mark.parametrize("variant", [NAIVE, VALIDATING])
def test_bad_entra_tokens_stop_at_ccm_sts_either_way(site: RunningSite, proxies: dict[str, RenderedProxy],
                                                     variant: str, fault: str) -> None:
    """A bad Entra token fails the token step (at the edge, or at CCM_STS behind a naive proxy): sts.401, expected."""
    reason, verdict = _judged_life(site, proxies[variant], fault, "entra")
    assert reason == "sts.401"
    assert verdict.expected


@pytest.mark.parametrize("prefix", [urlmap.SERVER_AUTH, urlmap.MUTUAL_AUTH])
def test_service_metadata_is_answered_at_the_edge_after_the_token_check(
        site: RunningSite, proxies: dict[str, RenderedProxy], prefix: str) -> None:
    """ServiceMetadata: the validating nginx answers it itself for a valid CCM token and refuses a forged one; the
    naive one answers whatever came."""
    path = urlmap.service_metadata_path(prefix)
    forged = _forged_ccm_token(site.manifest)
    with SiteClient(site.manifest, cmg_url=proxies[VALIDATING].url) as client:
        good = client.ccm_token(client.entra_token(device_id=str(uuid.uuid4())))
        answered = client.http.get(client.cmg_url + path, headers={"Authorization": f"Bearer {good}"})
        refused = client.http.get(client.cmg_url + path, headers={"Authorization": f"Bearer {forged}"})
    with SiteClient(site.manifest, cmg_url=proxies[NAIVE].url) as client:
        naive = client.http.get(client.cmg_url + path, headers={"Authorization": f"Bearer {forged}"})
    assert (answered.status_code, answered.text) == (200, SERVICE_METADATA_XML)
    assert (refused.status_code, refused.headers.get("x-cmg-status-text")) == (401, "CMGService_Invalid_Token")
    assert (naive.status_code, naive.text) == (200, SERVICE_METADATA_XML)
