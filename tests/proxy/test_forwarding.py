"""What the nginx proxy forwards to a connection point, seen from an echo connection point: headers, method, body, auth."""

from __future__ import annotations

import base64
import time

import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import rsa

from harness.proxy import RenderedProxy
from harness.proxy.nginx import NAIVE, VALIDATING
from harness.proxy.site import free_port
from tests.proxy.conftest import GOOD_TOKEN, OTHER_TENANT, ROLE_ID, TENANT, EchoSite, ProxyStarter, ccm_token, raw_request

pytestmark = pytest.mark.nginx

SERVER_AUTH = f"/CCM_Proxy_ServerAuth/{ROLE_ID}"
MUTUAL_AUTH = f"/CCM_Proxy_MutualAuth/{ROLE_ID}"
MESSAGE_HEADERS = {"Content-Type": 'multipart/mixed; boundary="aAbBcCdDv1234567890VxXyYzZ"',
                   "Authorization": f"Bearer {GOOD_TOKEN}"}


@pytest.fixture(scope="module")
def proxies(echo_site: EchoSite, start_proxy: ProxyStarter) -> dict[str, RenderedProxy]:
    return {variant: start_proxy(echo_site.manifest, variant) for variant in (NAIVE, VALIDATING)}


def _send(echo_site: EchoSite, proxy: RenderedProxy, method: str, target: str, **kwargs: object):
    return raw_request(proxy.url, echo_site.manifest.ca_file, method, target, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("variant", [NAIVE, VALIDATING])
def test_ccm_post_reaches_the_connection_point_with_its_body_and_token(
        echo_site: EchoSite, proxies: dict[str, RenderedProxy], variant: str) -> None:
    """The custom CCM_POST verb, the message body and the Authorization header cross the proxy unchanged."""
    answer = _send(echo_site, proxies[variant], "CCM_POST", f"{SERVER_AUTH}/ccm_system_tokenauth/request",
                   headers=MESSAGE_HEADERS, body=b"--aAbB\r\nmessage\r\n")
    seen = answer.json()
    assert answer.status == 200
    assert (seen["method"], seen["path"], seen["body"]) == (
        "CCM_POST", f"{SERVER_AUTH}/ccm_system_tokenauth/request", "--aAbB\r\nmessage\r\n")
    assert seen["headers"]["authorization"] == f"Bearer {GOOD_TOKEN}"


def test_the_public_request_uri_names_the_proxy_without_the_query(
        echo_site: EchoSite, proxies: dict[str, RenderedProxy]) -> None:
    """X-CMG-Request-URI carries the proxy's own https://host:port and the path the client asked for."""
    proxy = proxies[NAIVE]
    answer = _send(echo_site, proxy, "GET", f"{SERVER_AUTH}/SMS_MP/.sms_pol?%7BABC%7D.1",
                   headers={"Authorization": "Bearer x"})
    assert answer.json()["headers"]["x-cmg-request-uri"] == f"{proxy.url}{SERVER_AUTH}/SMS_MP/.sms_pol"
    assert answer.json()["path"] == f"{SERVER_AUTH}/SMS_MP/.sms_pol?%7BABC%7D.1"


@pytest.mark.parametrize("path", [f"{SERVER_AUTH}/SMS_MP/.sms_aut?MPLIST", f"{MUTUAL_AUTH}/SMS_MP/.sms_aut?MPLIST",
                                  "/downloadrestservice.svc/getcontentxmlsecure?pid=P1&cid=C1"])
def test_a_client_cannot_claim_a_certificate_by_sending_the_header(
        echo_site: EchoSite, proxies: dict[str, RenderedProxy], path: str) -> None:
    """A client-sent X-CMG-Client-Cert never reaches the connection point; only the proxy's verified one could."""
    forged = base64.b64encode(b"not the client's certificate").decode()
    answer = _send(echo_site, proxies[NAIVE], "GET", path,
                   headers={"X-CMG-Client-Cert": forged, "Authorization": "Bearer x"})
    assert answer.status == 200
    assert "x-cmg-client-cert" not in answer.json()["headers"]


@pytest.mark.parametrize("key_type", [trustme.KeyType.ECDSA, trustme.KeyType.RSA])
@pytest.mark.parametrize("path", [f"{MUTUAL_AUTH}/SMS_MP/.sms_aut?MPLIST",
                                  "/downloadrestservice.svc/getcontentxmlsecure?pid=P1&cid=C1"])
def test_a_verified_client_certificate_goes_on_as_base64_der(
        echo_site: EchoSite, proxies: dict[str, RenderedProxy], key_type: trustme.KeyType, path: str) -> None:
    """On MutualAuth and content paths the certificate TLS verified is forwarded as the connection point reads it."""
    cert, key, der = echo_site.client_cert_files(f"device-{key_type.name.lower()}", key_type)
    answer = _send(echo_site, proxies[NAIVE], "GET", path, cert=(cert, key),
                   headers={"X-CMG-Client-Cert": "Zm9yZ2Vk"})
    assert answer.json()["headers"]["x-cmg-client-cert"] == base64.b64encode(der).decode()


def test_a_client_certificate_counts_for_nothing_on_server_auth(
        echo_site: EchoSite, proxies: dict[str, RenderedProxy]) -> None:
    """ServerAuth is token-only: a certificate presented there is not passed on."""
    cert, key, _ = echo_site.client_cert_files("device-serverauth", trustme.KeyType.ECDSA)
    answer = _send(echo_site, proxies[NAIVE], "GET", f"{SERVER_AUTH}/SMS_MP/.sms_aut?MPLIST", cert=(cert, key),
                   headers={"Authorization": "Bearer x"})
    assert "x-cmg-client-cert" not in answer.json()["headers"]


def test_the_naive_proxy_forwards_any_token(echo_site: EchoSite, proxies: dict[str, RenderedProxy]) -> None:
    """The pass-through variant lets a token through that the validator would refuse."""
    answer = _send(echo_site, proxies[NAIVE], "CCM_POST", f"{SERVER_AUTH}/ccm_system_tokenauth/request",
                   headers=dict(MESSAGE_HEADERS, Authorization="Bearer forged"), body=b"x")
    assert answer.status == 200
    assert answer.json()["headers"]["authorization"] == "Bearer forged"


@pytest.mark.parametrize("authorization", [None, "Bearer forged", "Basic Z29vZDp0b2tlbg=="])
@pytest.mark.parametrize("method,path", [("POST", f"{SERVER_AUTH}/CCM_STS"),
                                         ("CCM_POST", f"{SERVER_AUTH}/ccm_system_tokenauth/request"),
                                         ("GET", f"{SERVER_AUTH}/CCM_Client/ccmsetup.cab"),
                                         ("GET", f"{MUTUAL_AUTH}/SMS_MP/.sms_pol?P1"),
                                         ("GET", "/downloadrestservice.svc/getcontentxmlsecure?pid=P1&cid=C1")])
def test_the_validating_proxy_refuses_invalid_tokens_at_the_edge(
        echo_site: EchoSite, proxies: dict[str, RenderedProxy], method: str, path: str,
        authorization: str | None) -> None:
    """No valid token and no certificate: 401 CMGService_Invalid_Token from the proxy, nothing forwarded."""
    forwarded = len(echo_site.seen.requests)
    headers = {"Authorization": authorization} if authorization else {}
    answer = _send(echo_site, proxies[VALIDATING], method, path, headers=headers, body=b"x" if "POST" in method else None)
    assert (answer.status, answer.headers.get("x-cmg-status-text")) == (401, "CMGService_Invalid_Token")
    assert len(echo_site.seen.requests) == forwarded


def test_the_validator_sees_the_token_but_not_the_body(echo_site: EchoSite, proxies: dict[str, RenderedProxy]) -> None:
    """The edge check is a bodiless GET to the validation URL carrying the request's Authorization header."""
    before = len(echo_site.seen.validations)
    answer = _send(echo_site, proxies[VALIDATING], "CCM_POST", f"{SERVER_AUTH}/ccm_system_tokenauth/request",
                   headers=MESSAGE_HEADERS, body=b"message body")
    assert answer.status == 200
    check = echo_site.seen.validations[before]
    assert check == {"path": "/validate", "authorization": f"Bearer {GOOD_TOKEN}", "length": "", "query": ""}


def test_the_token_service_is_validated_for_an_entra_token(echo_site: EchoSite,
                                                            proxies: dict[str, RenderedProxy]) -> None:
    """CCM_STS asks the validator about an Entra token (?token=entra); a CCM token is refused there at the edge."""
    before = len(echo_site.seen.validations)
    answer = _send(echo_site, proxies[VALIDATING], "POST", f"{SERVER_AUTH}/CCM_STS",
                   headers={"Authorization": f"Bearer {GOOD_TOKEN}"}, body=b"")
    assert (answer.status, answer.headers.get("x-cmg-status-text")) == (401, "CMGService_Invalid_Token")
    assert echo_site.seen.validations[before]["query"] == "token=entra"


def test_a_verified_certificate_needs_no_token_on_mutual_auth(
        echo_site: EchoSite, proxies: dict[str, RenderedProxy]) -> None:
    """A PKI client on MutualAuth is let through on its certificate alone, as the CMG does."""
    cert, key, _ = echo_site.client_cert_files("device-pki", trustme.KeyType.ECDSA)
    answer = _send(echo_site, proxies[VALIDATING], "GET", f"{MUTUAL_AUTH}/SMS_MP/.sms_pol?P1", cert=(cert, key))
    assert answer.status == 200


@pytest.mark.parametrize("tenant,status,body", [
    (TENANT, 200, {"AADTENANTID": TENANT, "AADCLIENTAPPID": "0b7c8ab3-9ea1-4ffa-b2b9-8ffdd944bd8b",
                   "AADRESOURCEURI": "https://ConfigMgrService"}),
    (TENANT.upper(), 200, {"AADTENANTID": TENANT, "AADCLIENTAPPID": "0b7c8ab3-9ea1-4ffa-b2b9-8ffdd944bd8b",
                           "AADRESOURCEURI": "https://ConfigMgrService"}),
    (OTHER_TENANT, 404, {}),
])
def test_aad_auth_info_is_answered_from_the_onboarded_tenants(
        echo_site: EchoSite, proxies: dict[str, RenderedProxy], tenant: str, status: int, body: dict) -> None:
    """Onboarded tenants get their app properties; others no properties and CMGService_Tenant_Not_Onboarded."""
    answer = _send(echo_site, proxies[NAIVE], "GET", f"/CCM_Proxy_ServerAuth/AADAuthInfo?TenantID={tenant}")
    assert (answer.status, answer.json()) == (status, body)
    assert answer.headers["content-type"] == "application/json"
    if status == 404:
        assert answer.headers["x-cmg-status-text"] == "CMGService_Tenant_Not_Onboarded"


@pytest.mark.parametrize("method,path,body,status,text", [
    ("GET", f"{SERVER_AUTH}/CCM_STS", None, 405, "CMGService_Method_Not_Allowed"),
    ("POST", f"{SERVER_AUTH}/ccm_system_tokenauth/request", b"x", 405, "CMGService_Method_Not_Allowed"),
    ("POST", f"{SERVER_AUTH}/CCM_STS", b"x" * (64 * 1024 + 1), 413, "CMGService_Request_Too_Large"),
    ("CCM_POST", f"{SERVER_AUTH}/ccm_system/request", b"x" * (1024 * 1024 + 1), 413, "CMGService_Request_Too_Large"),
    ("GET", f"{SERVER_AUTH}/CCM_Client/ccmsetup.cab", b"x", 413, "CMGService_Request_Too_Large"),
])
def test_methods_and_body_sizes_are_held_per_endpoint(
        echo_site: EchoSite, proxies: dict[str, RenderedProxy], method: str, path: str, body: bytes | None,
        status: int, text: str) -> None:
    """The wrong verb gets 405 and a body over the endpoint's limit 413, with the CMG's status texts."""
    answer = _send(echo_site, proxies[NAIVE], method, path, body=body, headers={"Authorization": "Bearer x"})
    assert (answer.status, answer.headers.get("x-cmg-status-text")) == (status, text)


@pytest.mark.parametrize("path,size", [(f"{SERVER_AUTH}/CCM_STS", 64 * 1024),
                                       (f"{SERVER_AUTH}/ccm_system/request", 1024 * 1024)])
def test_a_body_at_the_limit_is_forwarded(echo_site: EchoSite, proxies: dict[str, RenderedProxy], path: str,
                                          size: int) -> None:
    """The limits are inclusive: a body of exactly the endpoint's size goes through."""
    method = "POST" if path.endswith("CCM_STS") else "CCM_POST"
    answer = _send(echo_site, proxies[NAIVE], method, path, body=b"x" * size, headers={"Authorization": "Bearer x"})
    assert (answer.status, len(answer.json()["body"])) == (200, size)


def test_an_unreachable_connection_point_is_a_503(echo_site: EchoSite, start_proxy: ProxyStarter) -> None:
    """Nothing listening behind the proxy: 503 CMGService_No_Connection_Point_Available, as the mock CMG says."""
    proxy = start_proxy(echo_site.manifest, NAIVE, cp_urls=[f"https://127.0.0.1:{free_port('127.0.0.1')}"])
    answer = _send(echo_site, proxy, "GET", f"{SERVER_AUTH}/CCM_Client/ccmsetup.cab",
                   headers={"Authorization": "Bearer x"})
    assert (answer.status, answer.headers.get("x-cmg-status-text")) == (503, "CMGService_No_Connection_Point_Available")


def test_a_connection_point_with_an_untrusted_certificate_is_not_used(
        echo_site: EchoSite, start_proxy: ProxyStarter, tmp_path) -> None:
    """The proxy verifies the connection point against the site CA: another CA's server is refused (503)."""
    stranger = trustme.CA()
    stranger.cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
    proxy = start_proxy(echo_site.manifest, NAIVE, ca_file=str(tmp_path / "other-ca.pem"))
    answer = _send(echo_site, proxy, "GET", f"{SERVER_AUTH}/CCM_Client/ccmsetup.cab",
                   headers={"Authorization": "Bearer x"})
    assert answer.status == 503
    assert "upstream SSL certificate verify error" in proxy.error_log.read_text()


def test_an_unreachable_validator_fails_closed(echo_site: EchoSite, start_proxy: ProxyStarter) -> None:
    """When the token cannot be checked the request is not forwarded: 503 with a status text saying why."""
    forwarded = len(echo_site.seen.requests)
    dead = f"http://127.0.0.1:{free_port('127.0.0.1')}/validate"
    proxy = start_proxy(echo_site.manifest, VALIDATING, token_validation_url=dead)
    answer = _send(echo_site, proxy, "GET", f"{SERVER_AUTH}/CCM_Client/ccmsetup.cab",
                   headers={"Authorization": f"Bearer {GOOD_TOKEN}"})
    assert (answer.status, answer.headers.get("x-cmg-status-text")) == (503, "CMGService_Token_Validation_Unavailable")
    assert len(echo_site.seen.requests) == forwarded


# --- the site's real token rules behind the validating proxy ------------------------------------------------------

ATTACKER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize("token", [
    lambda: ccm_token(key=ATTACKER),
    lambda: ccm_token(now=time.time() - 7200, lifetime=600),
    lambda: ccm_token(now=time.time() + 3600),
], ids=["another-key", "expired", "not-yet-valid"])
def test_tokens_the_site_refuses_stop_at_the_validating_proxy(echo_site: EchoSite, proxies: dict[str, RenderedProxy],
                                                              token) -> None:  # type: ignore[no-untyped-def]
    """Well-formed CCM tokens that fail the site's rules (signature, lifetime) are refused at the edge."""
    forwarded = len(echo_site.seen.requests)
    headers = dict(MESSAGE_HEADERS, Authorization=f"Bearer {token()}")
    answer = _send(echo_site, proxies[VALIDATING], "CCM_POST", f"{SERVER_AUTH}/ccm_system_tokenauth/request",
                   headers=headers, body=b"x")
    assert (answer.status, answer.headers.get("x-cmg-status-text")) == (401, "CMGService_Invalid_Token")
    assert len(echo_site.seen.requests) == forwarded


def test_a_token_the_site_accepts_goes_through(echo_site: EchoSite, proxies: dict[str, RenderedProxy]) -> None:
    """A freshly issued CCM token signed by the site's key is forwarded with its body."""
    answer = _send(echo_site, proxies[VALIDATING], "CCM_POST", f"{SERVER_AUTH}/ccm_system_tokenauth/request",
                   headers=dict(MESSAGE_HEADERS, Authorization=f"Bearer {ccm_token()}"), body=b"x")
    assert answer.status == 200 and answer.json()["body"] == "x"


@pytest.mark.parametrize(("query", "status"), [("SITESIGNCERT", 200), ("mplist1&ps1", 200), ("MPKEYINFORMATIONMEDIA", 200),
                                               ("MPLIST1", 404), ("MPKEYINFO", 404), ("MPCERT&PS1", 404)])
def test_the_sms_aut_verbs_of_the_url_map_pass_and_no_others(echo_site: EchoSite, proxies: dict[str, RenderedProxy],
                                                            query: str, status: int) -> None:
    """nginx publishes the same .sms_aut verbs as the mock CMG's URL map."""
    answer = _send(echo_site, proxies[NAIVE], "GET", f"{SERVER_AUTH}/SMS_MP/.sms_aut?{query}",
                   headers={"Authorization": "Bearer x"})
    assert answer.status == status
