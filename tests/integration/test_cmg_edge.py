"""The CMG's edge rules over real TLS: the URL map, token checks, size limits and status texts on the wire."""

from __future__ import annotations

import base64
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cmg_protocol import messages, tokens
from mock_site.testing import SiteClient
from tests.site import token_rows

DEVICE = "8d2b4ff9-0172-4998-9851-b5324303385f"


def _forged_ccm_claims(manifest: dict, now: float, **changes: object) -> dict:
    claims = {
        "iss": tokens.ccm_issuer(manifest.hierarchy_id), "aud": tokens.CCM_AUDIENCE, "iat": int(now),
        "nbf": int(now), "exp": int(now + 3600), "SCCMTokenCategory": tokens.CCM_TOKEN_CATEGORY, "Authority": "SCCM",
        "License": "SCCM", "Type": "Device", "deviceid": "GUID:X", "UniqueId": str(uuid.uuid4()), "userid": "u",
        "TenantId": manifest.tenant_id, "smsid": "",
    }
    claims.update(changes)
    return claims


def _attacker_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize("path", [
    "/",
    "/metrics",
    "/CCM_Proxy_ServerAuth/72186325152220500/not_an_endpoint",
    "/CCM_Proxy_ServerAuth/72186325152220500/../../etc/passwd",
    "/CCM_Proxy_ServerAuth/72186325152220500/%2e%2e/CCM_STS",
    "/CCM_Proxy_ServerAuth/72186325152220500//CCM_STS",
    "/CCM_Proxy_ServerAuth/abc/CCM_STS",
    "/CCM_Proxy_ServerAuth/72186325152220500/CCM_Client/other.exe",
])
def test_paths_outside_the_url_map_are_refused(site_client: SiteClient, path: str) -> None:
    """Anything not in the published URL map is refused at the CMG with a status text, never forwarded."""
    response = site_client.http.get(site_client.cmg_url + path)
    assert response.status_code in (400, 404)
    assert response.reason_phrase.startswith("CMGService_")


def test_absolute_url_in_request_target_is_refused(site_client: SiteClient) -> None:
    """A request target naming another host cannot choose where the CMG forwards."""
    import socket
    import ssl

    host, port = site_client.cmg_url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=site_client.manifest.ca_file)
    with socket.create_connection((host, int(port))) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(b"GET http://evil.example/CCM_Proxy_ServerAuth/1/CCM_STS HTTP/1.1\r\nHost: x\r\n"
                    b"Connection: close\r\n\r\n")
        answer = tls.recv(4096)
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 404)


def test_tenant_not_onboarded_gets_no_properties(site_client: SiteClient) -> None:
    """AADAuthInfo for a tenant the site does not know answers a 4xx with no AAD properties."""
    response = site_client.aad_auth_info("c8c82542-203c-4df9-9d86-cdd4dae67e0a")
    assert response.status_code == 404
    assert response.reason_phrase == "CMGService_Tenant_Not_Onboarded"
    assert json.loads(response.text) == {}


def test_onboarded_tenant_gets_client_app_and_resource(site_client: SiteClient) -> None:
    """AADAuthInfo for an onboarded tenant returns AADCLIENTAPPID and AADRESOURCEURI."""
    document = site_client.aad_auth_info().json()
    assert document["AADCLIENTAPPID"] == site_client.manifest.client_app_id
    assert document["AADRESOURCEURI"] == "https://ConfigMgrService"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256(claims: dict, secret: bytes) -> str:
    """The key-confusion attack: HS256 "signed" with the public key's PEM as the HMAC secret (pyjwt refuses to)."""
    import hashlib
    import hmac

    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _bad_tokens(manifest: dict) -> dict[str, str]:
    now = time.time()
    attacker = _attacker_key()
    public_pem = attacker.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
    unsigned_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    unsigned_body = base64.urlsafe_b64encode(json.dumps(_forged_ccm_claims(manifest, now)).encode()).rstrip(b"=")
    return {
        "forged": jwt.encode(_forged_ccm_claims(manifest, now), attacker, algorithm="RS256",
                             headers={"kid": "attacker"}),
        "alg_none": f"{unsigned_header}.{unsigned_body.decode()}.",
        "hs256_with_public_key": _hs256(_forged_ccm_claims(manifest, now), public_pem),
        "garbage": "not-a-jwt",
    }


@pytest.mark.parametrize("kind", ["forged", "alg_none", "hs256_with_public_key", "garbage"])
def test_bad_ccm_tokens_are_refused_at_the_cmg(site_client: SiteClient, kind: str) -> None:
    """A forged, unsigned, HS256-confused or malformed token gets 401 CMGService_Invalid_Token."""
    token = _bad_tokens(site_client.manifest)[kind]
    response = site_client.policy(token, "GUID:00000000-0000-0000-0000-000000000001")
    assert response.status_code == 401
    assert response.reason_phrase == "CMGService_Invalid_Token"


def test_expired_ccm_token_is_refused(clean_site, site_client: SiteClient) -> None:
    """A CCM token past its lifetime (beyond the 300 s allowance) is refused at the CMG."""
    clean_site.set_fault("ccm_token_expired", role="sts", duration=30)
    expired = site_client.ccm_token()
    clean_site.clear_fault("ccm_token_expired")
    response = site_client.policy(expired, "GUID:00000000-0000-0000-0000-000000000001")
    assert (response.status_code, response.reason_phrase) == (401, "CMGService_Invalid_Token")


@pytest.mark.parametrize("fault", ["entra_token_expired", "entra_bad_signature", "entra_wrong_audience",
                                   "entra_wrong_issuer"])
def test_bad_entra_tokens_are_refused(clean_site, site_client: SiteClient, fault: str) -> None:
    """Entra tokens that are expired, wrongly signed, for another audience or issuer never become CCM tokens."""
    clean_site.set_fault(fault, duration=30)
    bad = site_client.entra_token()
    response = site_client.ccm_sts(bad)
    assert response.status_code == 401
    assert "token" not in response.text.lower() or "IDX" in response.text


def test_missing_token_is_refused(site_client: SiteClient) -> None:
    """A CCM-token endpoint without any bearer token is refused."""
    response = site_client.http.get(site_client.server_auth("CCM_Client/ccmsetup.cab"))
    assert (response.status_code, response.reason_phrase) == (401, "CMGService_Invalid_Token")


def test_body_over_the_endpoint_limit_is_refused(site_client: SiteClient) -> None:
    """The CMG checks content length per endpoint and refuses an oversized body with 413."""
    response = site_client.http.post(site_client.server_auth("CCM_STS"), content=b"x" * (2 * 1024 * 1024),
                                     headers={"Authorization": "Bearer x"})
    assert response.status_code == 413


def test_full_exchange_issues_a_ccm_token_and_registers(clean_site, site_client: SiteClient) -> None:
    """Entra token → CCM_STS → registration → new CCM token → policy works end to end through CMG, CP and MP."""
    entra = site_client.entra_token(device_id=str(uuid.uuid4()))
    ccm = site_client.ccm_token(entra)
    assert jwt.decode(ccm, options={"verify_signature": False})["aud"] == "urn:sccm:service"
    registered = site_client.register(entra)
    assert registered.status_code == 200
    reply = messages.RegistrationResponse.from_xml(registered.reply.body_xml)
    assert reply.approval_status == 3
    assert clean_site.site.db.client(reply.smsid) is not None
    fresh = site_client.ccm_token(entra)
    assert jwt.decode(fresh, options={"verify_signature": False})["smsid"] == reply.smsid
    policy = site_client.policy(fresh, reply.smsid)
    assert policy.status_code == 200
    assignments = messages.ReplyAssignments.from_xml(policy.reply.body_xml).assignments
    assert assignments


def test_policy_for_another_client_is_refused(clean_site, site_client: SiteClient) -> None:
    """A CCM token bound to one SMSID cannot fetch policy for another client."""
    entra = site_client.entra_token(device_id=str(uuid.uuid4()))
    site_client.register(entra)
    token = site_client.ccm_token(entra)
    response = site_client.policy(token, "GUID:00000000-0000-0000-0000-000000000001")
    assert response.status_code == 403


def test_mp_refuses_an_invalid_token_forwarded_by_a_naive_proxy(site_client: SiteClient) -> None:
    """A request that reaches the connection point with an invalid token is refused by the MP as MP_Invalid_Token."""
    manifest = site_client.manifest
    # A naive proxy standing in for the CMG presents the CMG's identity to the connection point.
    cp_client = SiteClient(manifest, cmg_url=manifest.cp_urls[0],
                           cert=(str(manifest.cmg_identity_cert_file), str(manifest.cmg_identity_key_file)))
    try:
        response = cp_client.policy(_bad_tokens(site_client.manifest)["forged"],
                                    "GUID:00000000-0000-0000-0000-000000000001")
    finally:
        cp_client.close()
    assert (response.status_code, response.reason_phrase) == (401, "MP_Invalid_Token")


def test_mp_refuses_callers_without_the_connection_point_certificate(site_client: SiteClient) -> None:
    """The MP takes requests only over mutual TLS from the connection point."""
    import httpx

    with pytest.raises(httpx.HTTPError):
        site_client.http.post(site_client.manifest.mp_url + "/CCM_STS")


def test_the_unsafe_switch_makes_the_cmg_forward_invalid_tokens(tmp_path) -> None:
    """The test-only switch turns the CMG into a proxy that forwards invalid tokens: the MP then refuses them."""
    from mock_site.testing import running_site

    with running_site(tmp_path, unsafe_skip_token_checks=True) as broken, SiteClient(broken.manifest) as client:
        response = client.policy(_bad_tokens(broken.manifest)["forged"], "GUID:00000000-0000-0000-0000-000000000001")
    assert (response.status_code, response.reason_phrase) == (401, "MP_Invalid_Token")


def test_a_ccm_post_verb_split_across_reads_is_still_understood(site_client: SiteClient) -> None:
    """The CCM_POST rewrite waits for the whole verb when a read ends inside it (the request is still a CCM message)."""
    import socket
    import ssl
    import time

    host, port = site_client.cmg_url.removeprefix("https://").split(":")
    path = site_client.server_auth("ccm_system_tokenauth/request").removeprefix(site_client.cmg_url)
    context = ssl.create_default_context(cafile=site_client.manifest.ca_file)
    with socket.create_connection((host, int(port))) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
        tls.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls.sendall(b"CCM_")
        time.sleep(0.2)  # a separate TLS record: the server reads the verb in two pieces
        tls.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(4096):
            answer += chunk
    # Parsed as CCM_POST and judged by the CMG (no token: 401 with its status text), not refused as a bad request.
    assert answer.startswith(b"HTTP/1.1 401 CMGService_Invalid_Token")


def test_ccm_tokens_are_recorded_under_their_own_id(clean_site, site_client: SiteClient) -> None:
    """CCM_STS records every token it issues in the site database under the token's UniqueId."""
    before = token_rows.tokens_issued(clean_site.site.db.path)
    token = site_client.ccm_token()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert token_rows.tokens_issued(clean_site.site.db.path) == before + 1
    uuid.UUID(claims["UniqueId"])
    assert token_rows.is_revoked(clean_site.site.db.path, claims["UniqueId"]) is False


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE RequestAssignments [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><RequestAssignments>&lol2;</RequestAssignments>'
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?><!DOCTYPE RequestAssignments [<!ENTITY secret SYSTEM "file:///etc/passwd">]>'
    "<RequestAssignments>&secret;</RequestAssignments>"
)


@pytest.mark.parametrize("body_xml", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["entity_expansion", "external_entity"])
def test_message_bodies_with_a_dtd_are_refused_at_the_mp(site_client: SiteClient, body_xml: str) -> None:
    """A CCM message whose body declares entities (expansion or an external file) is refused with 400 MP_Bad_Message."""
    response = site_client.message("MP_PolicyManager", body_xml, token=site_client.ccm_token())
    assert (response.status_code, response.reason_phrase) == (400, "MP_Bad_Message")
    assert "DOCTYPE" in response.text
    assert "root:" not in response.text  # nothing of /etc/passwd comes back
