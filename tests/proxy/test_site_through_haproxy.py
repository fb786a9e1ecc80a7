"""The mock site behind a real HAProxy (no mock CMG): whole device lives, the URL map at the edge, tokens checked with
``jwt_verify`` at the edge by the validating variant, and token faults judged."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.utils import base64url_encode
from prometheus_client.parser import text_string_to_metric_families

from cmg_protocol import tokens, urlmap
from cmg_protocol.statuses import INVALID_TOKEN
from harness.chaos.verdicts import FaultWindow, VerdictSettings, judge
from harness.client.transport import device_from_traits, run_client
from harness.proxy import RenderedHaproxy
from harness.proxy.nginx import NAIVE, VALIDATING
from mock_site.cmg import SERVICE_METADATA_XML
from mock_site.testing import RunningSite, SiteClient, running_site
from tests.proxy.conftest import HaproxyStarter, raw_request
from tests.proxy.test_site_through_nginx import REFUSED

pytestmark = pytest.mark.haproxy


@pytest.fixture(scope="module")
def proxied_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSite]:
    """A site without the mock CMG: clients reach its connection point only through HAProxy."""
    with running_site(Path(tmp_path_factory.mktemp("site")), cmg_enabled=False, time_scale=60) as running:
        yield running


@pytest.fixture(scope="module")
def proxies(proxied_site: RunningSite, start_haproxy: HaproxyStarter) -> dict[str, RenderedHaproxy]:
    return {variant: start_haproxy(proxied_site.manifest, variant) for variant in (NAIVE, VALIDATING)}


@pytest.fixture
def site(proxied_site: RunningSite) -> Iterator[RunningSite]:
    proxied_site.reset_faults()
    yield proxied_site
    proxied_site.reset_faults()


def _through(manifest: dict[str, Any], proxy: RenderedHaproxy) -> dict[str, Any]:
    return manifest.replace(cmg_url=proxy.url)


def _logged(proxy: RenderedHaproxy, request_line: str) -> str:
    """The log line of a request (HAProxy writes it once the response is sent, so wait for it a little)."""
    for _ in range(100):
        lines = [line for line in proxy.access_log.read_text(errors="replace").splitlines() if request_line in line]
        if lines:
            return lines[-1]
        time.sleep(0.02)
    raise AssertionError(f"{request_line} never reached {proxy.access_log}")


def _requests_seen(site: RunningSite, role: str) -> float:
    """Requests the site's ``role`` has handled so far (its request-duration histogram's count)."""
    text = httpx.get(site.manifest.metrics_url(role), timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == "cmg_request_duration_seconds_count" and sample.labels.get("role") == role)


@pytest.mark.parametrize("profile", ["", "pki_client_cert"], ids=["entra", "pki"])
@pytest.mark.parametrize("variant", [NAIVE, VALIDATING])
def test_a_device_lives_its_whole_life_through_haproxy(site: RunningSite, proxies: dict[str, RenderedHaproxy],
                                                       variant: str, profile: str) -> None:
    """Install, registration and a policy cycle succeed through either variant, Entra-joined or PKI."""
    proxy = proxies[variant]
    outcome = run_client(_through(site.manifest, proxy), profile, seed=11, polls=1)
    assert outcome.success, outcome.detail
    # A proxy forwards getcontentxmlsecure to the management point, which serves the content itself (the fallback
    # when the content is not in cloud storage), so the content comes with the content_xml step.
    assert {"site_info", "content_xml", "registration", "policy_body"} <= {e.step for e in outcome.trail}
    assert "/SMS_MP/.sms_pol" in _logged(proxy, "/SMS_MP/.sms_pol")


@pytest.mark.parametrize("path", REFUSED)
def test_the_url_map_holds_at_the_edge(site: RunningSite, proxies: dict[str, RenderedHaproxy], path: str) -> None:
    """Unknown, traversing and malformed paths get the URL map's own 404 or 400 from HAProxy, in the CMG's words."""
    with pytest.raises(urlmap.UrlMapError) as refused:
        urlmap.match(path)
    proxy = proxies[VALIDATING]
    answer = raw_request(proxy.url, site.manifest.ca_file, "GET", path)
    assert answer.status == refused.value.status
    assert answer.headers["x-cmg-status-text"].startswith("CMGService_")
    assert answer.reason == answer.headers["x-cmg-status-text"]


def test_an_absolute_request_target_is_refused(site: RunningSite, proxies: dict[str, RenderedHaproxy]) -> None:
    """A request target naming a host cannot choose where the proxy forwards: 400."""
    answer = raw_request(proxies[NAIVE].url, site.manifest.ca_file, "GET",
                         "https://evil.example/CCM_Proxy_ServerAuth/72186325152220500/CCM_Client/ccmsetup.cab")
    assert answer.status == 400


def test_paths_and_parameters_match_without_case(site: RunningSite, proxies: dict[str, RenderedHaproxy]) -> None:
    """As on the CMG, ``/ccm_proxy_serverauth/aadauthinfo?tenantid=`` is the same endpoint as the canonical one."""
    answer = raw_request(proxies[NAIVE].url, site.manifest.ca_file, "GET",
                         f"/ccm_proxy_serverauth/aadauthinfo?tenantid={site.manifest.tenant_id.upper()}")
    assert answer.status == 200
    assert answer.json()["AADCLIENTAPPID"] == site.manifest.client_app_id


# --- tokens: let through by the naive proxy, refused at the edge by the validating one -------------------------------


def _ccm_claims(manifest: dict[str, Any], now: float, **changes: Any) -> dict[str, Any]:
    claims = {"iss": tokens.ccm_issuer(manifest.hierarchy_id), "aud": tokens.CCM_AUDIENCE, "iat": int(now),
              "nbf": int(now), "exp": int(now + 3600), "SCCMTokenCategory": tokens.CCM_TOKEN_CATEGORY,
              "Authority": "SCCM", "License": "SCCM", "Type": "Device", "deviceid": "GUID:X", "userid": "",
              "UniqueId": str(uuid.uuid4()), "TenantId": manifest.tenant_id, "smsid": ""}
    claims.update(changes)
    return claims


def _site_signed(manifest: dict[str, Any], claims: dict[str, Any], *, algorithm: str = "RS256") -> str:
    """A token signed with the site's real CCM signing key: only its claims can make it invalid."""
    key = Path(manifest.ccm_signing_cert_file).with_suffix(".key").read_bytes()
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": "site"})


def _forged(manifest: dict[str, Any]) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return jwt.encode(_ccm_claims(manifest, time.time()), pem, algorithm="RS256", headers={"kid": "attacker"})


def _bad_token(kind: str, manifest: dict[str, Any]) -> str:
    now = time.time()
    if kind == "garbage":
        return "not.a.jwt"
    if kind == "forged_signature":
        return _forged(manifest)
    if kind == "expired":
        return _site_signed(manifest, _ccm_claims(manifest, now - 7200, exp=int(now - 3600)))
    if kind == "not_yet_valid":
        return _site_signed(manifest, _ccm_claims(manifest, now, nbf=int(now + 3600), exp=int(now + 7200)))
    if kind == "wrong_audience":
        return _site_signed(manifest, _ccm_claims(manifest, now, aud="https://ConfigMgrService"))
    if kind == "wrong_issuer":
        return _site_signed(manifest, _ccm_claims(manifest, now, iss="urn:sccm:oauth2:someone-else"))
    if kind == "bulk_registration":
        # Site-signed, right issuer and audience, but another site token: the CMG takes CCM tokens only.
        return _site_signed(manifest, _ccm_claims(manifest, now, Type="BulkRegistration"))
    if kind == "no_exp":
        claims = _ccm_claims(manifest, now)
        del claims["exp"]
        return _site_signed(manifest, claims)
    if kind == "hs256_alg":
        # Signed with the public key as an HMAC secret: the algorithm confusion a proxy must not fall for.
        secret = Path(manifest.ccm_signing_cert_file).read_bytes()
        header = base64url_encode(b'{"alg":"HS256","typ":"JWT"}').decode()
        body = base64url_encode(json.dumps(_ccm_claims(manifest, now)).encode()).decode()
        signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
        return f"{header}.{body}.{base64url_encode(signature).decode()}"
    raise AssertionError(kind)


BAD_TOKENS = ["garbage", "forged_signature", "expired", "not_yet_valid", "wrong_audience", "wrong_issuer", "no_exp",
              "hs256_alg", "bulk_registration"]


def test_a_valid_site_signed_token_passes_the_edge(site: RunningSite, proxies: dict[str, RenderedHaproxy]) -> None:
    """The control for the cases below: the same hand-made token with good claims is let through to the MP."""
    token = _site_signed(site.manifest, _ccm_claims(site.manifest, time.time()))
    with SiteClient(site.manifest, cmg_url=proxies[VALIDATING].url) as client:
        response = client.message("MP_LocationManager", "<SiteInformationRequest/>", token=token)
    assert response.headers.get("x-cmg-status-text") != INVALID_TOKEN


@pytest.mark.parametrize("token_kind", BAD_TOKENS)
def test_the_validating_proxy_refuses_a_bad_token_itself(site: RunningSite, proxies: dict[str, RenderedHaproxy],
                                                         token_kind: str) -> None:
    """401 with the CMG's status text as reason phrase and header, and neither the CP nor the MP sees the request."""
    token = _bad_token(token_kind, site.manifest)
    seen_before = _requests_seen(site, "mp"), _requests_seen(site, "cp")
    with SiteClient(site.manifest, cmg_url=proxies[VALIDATING].url) as client:
        response = client.message("MP_LocationManager", "<SiteInformationRequest/>", token=token)
    assert (response.status_code, response.reason_phrase) == (401, INVALID_TOKEN)
    assert response.headers["x-cmg-status-text"] == INVALID_TOKEN
    assert (_requests_seen(site, "mp"), _requests_seen(site, "cp")) == seen_before
    assert "cp=cmg/<NOSRV>" in _logged(proxies[VALIDATING], "refusal=invalid-token")


@pytest.mark.parametrize("token_kind", ["garbage", "forged_signature", "expired"])
def test_the_naive_proxy_lets_a_bad_token_reach_the_mp(site: RunningSite, proxies: dict[str, RenderedHaproxy],
                                                       token_kind: str) -> None:
    """Behind the naive variant the MP is the one that refuses (MP_Invalid_Token)."""
    seen_before = _requests_seen(site, "mp")
    with SiteClient(site.manifest, cmg_url=proxies[NAIVE].url) as client:
        response = client.message("MP_LocationManager", "<SiteInformationRequest/>",
                                  token=_bad_token(token_kind, site.manifest))
    assert (response.status_code, response.headers.get("x-cmg-status-text")) == (401, "MP_Invalid_Token")
    assert _requests_seen(site, "mp") > seen_before


def test_an_entra_token_is_refused_where_a_ccm_token_is_required(site: RunningSite,
                                                                  proxies: dict[str, RenderedHaproxy]) -> None:
    """Only CCM_STS and the registration path take an Entra token; the client download needs a CCM token."""
    with SiteClient(site.manifest, cmg_url=proxies[VALIDATING].url) as client:
        entra = client.entra_token()
        response = client.http.get(client.server_auth(urlmap.CCM_CLIENT), headers={"Authorization": f"Bearer {entra}"})
        assert (response.status_code, response.reason_phrase) == (401, INVALID_TOKEN)
        assert client.ccm_token(entra)  # the same Entra token is good at CCM_STS


def _judged_life(site: RunningSite, proxy: RenderedHaproxy, fault: str, role: str) -> tuple[str, Any]:
    manifest = _through(site.manifest, proxy)
    site.set_fault(fault, role=role)
    start = time.time()
    outcome = run_client(manifest, "", seed=5, polls=1)
    end = time.time()
    verdict = judge(device_from_traits(manifest, "", seed=5), outcome.reason or None, life_start=start,
                    life_end=end, windows=[FaultWindow(fault, role, start, end)],
                    settings=VerdictSettings.from_manifest(manifest))
    return outcome.reason, verdict


def test_a_naive_haproxy_forwarding_expired_ccm_tokens_is_an_unexpected_outcome(
        site: RunningSite, proxies: dict[str, RenderedHaproxy]) -> None:
    """CCM_STS issuing expired tokens: the naive proxy forwards them, the MP refuses, and the verdict is UNEXPECTED."""
    reason, verdict = _judged_life(site, proxies[NAIVE], "ccm_token_expired", "sts")
    assert reason == "mp.401"
    assert (verdict.expected, verdict.kind) == (False, "unexpected_failure")


def test_a_validating_haproxy_refusing_expired_ccm_tokens_is_expected(
        site: RunningSite, proxies: dict[str, RenderedHaproxy]) -> None:
    """The same fault behind the validating HAProxy: refused at the edge with jwt_verify and exp, an expected outcome."""
    reason, verdict = _judged_life(site, proxies[VALIDATING], "ccm_token_expired", "sts")
    assert reason == "cmg.401"
    assert (verdict.expected, verdict.kind) == (True, "expected_failure")


@pytest.mark.parametrize("fault", ["entra_token_expired", "entra_bad_signature", "entra_wrong_audience",
                                   "entra_wrong_issuer"])
def test_bad_entra_tokens_stop_at_the_validating_edge(site: RunningSite, proxies: dict[str, RenderedHaproxy],
                                                      fault: str) -> None:
    """A bad Entra token fails the token step at HAProxy: sts.401, an expected outcome."""
    reason, verdict = _judged_life(site, proxies[VALIDATING], fault, "entra")
    assert reason == "sts.401"
    assert verdict.expected


@pytest.mark.parametrize("prefix", [urlmap.SERVER_AUTH, urlmap.MUTUAL_AUTH])
def test_service_metadata_is_answered_at_the_edge_after_the_token_check(
        site: RunningSite, proxies: dict[str, RenderedHaproxy], prefix: str) -> None:
    """The validating proxy answers ServiceMetadata itself for a valid CCM token and refuses a bad one with 401."""
    path = urlmap.service_metadata_path(prefix)
    good = _site_signed(site.manifest, _ccm_claims(site.manifest, time.time()))
    url, ca = proxies[VALIDATING].url, str(site.manifest.ca_file)
    answered = raw_request(url, ca, "GET", path, headers={"Authorization": f"Bearer {good}"})
    refused = raw_request(url, ca, "GET", path, headers={"Authorization": f"Bearer {_forged(site.manifest)}"})
    with_query = raw_request(url, ca, "GET", path + "?x=1", headers={"Authorization": f"Bearer {good}"})
    assert (answered.status, answered.body) == (200, SERVICE_METADATA_XML.encode())
    assert (refused.status, refused.headers.get("x-cmg-status-text")) == (401, INVALID_TOKEN)
    assert with_query.status == 400
