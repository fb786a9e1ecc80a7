"""Who may call each role, over real TLS: the CMG takes an Entra token only on the token service, the connection point
takes work only from its CMG, the MP takes identity headers only from its connection point, and absurd or foreign CCM
tokens and encoded separators are refused. Every test names who refused by the status AND the reason phrase."""

from __future__ import annotations

import base64
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from cmg_protocol import envelope, messages, tokens
from cmg_protocol.envelope import clientauth_signature
from cmg_protocol.registration import AAD_TOKEN_HEADER
from cmg_protocol.statuses import (
    BAD_REQUEST,
    CONNECTOR_NOT_FROM_CMG,
    INVALID_TOKEN,
    MP_IDENTITY_HEADER_REFUSED,
    MP_INVALID_TOKEN,
    MP_NOT_REGISTERED,
    MP_REGISTRATION_TOKEN_INVALID,
)
from mock_site.cmg import CLIENT_CERT_HEADER, REQUEST_URI_HEADER
from mock_site.testing import RunningSite, SiteClient, signing_identity_for_tests

ANY_CLIENT = "GUID:00000000-0000-0000-0000-000000000001"


@pytest.fixture
def device_cert(clean_site: RunningSite) -> tuple[str, str]:
    bundle = clean_site.site.pki.device_client_cert("EDGEDEVICE")
    assert bundle.cert_path is not None and bundle.key_path is not None
    return str(bundle.cert_path), str(bundle.key_path)


@pytest.fixture
def cmg_identity(clean_site: RunningSite) -> tuple[str, str]:
    manifest = clean_site.manifest
    assert manifest.cmg_identity_cert_file is not None and manifest.cmg_identity_key_file is not None
    return str(manifest.cmg_identity_cert_file), str(manifest.cmg_identity_key_file)


def _client(site: RunningSite, base_url: str, cert: tuple[str, str] | None) -> SiteClient:
    return SiteClient(site.manifest, cmg_url=base_url, cert=cert)


@pytest.fixture
def entra(site_client: SiteClient) -> str:
    return site_client.entra_token(device_id=str(uuid.uuid4()))


def _location_body() -> str:
    return messages.SiteInformationRequest(site_code="MEM").to_xml()


# --- the CMG: an Entra token opens the token service and nothing else ----------------------------------------------


@pytest.mark.parametrize("tail", ["CCM_Client/ccmsetup.cab", "SMS_MP/.sms_aut?MPLIST",
                                  "SMS_MP/.sms_pol?{8D2B4FF9-0172-4998-9851-B5324303385F}.1.00"])
@pytest.mark.parametrize("prefix", ["server", "mutual"])
def test_an_entra_token_does_not_open_ccm_token_endpoints(site_client: SiteClient, entra: str, tail: str,
                                                          prefix: str) -> None:
    """ccmsetup.cab, .sms_aut and policy bodies need a CCM token (or a certificate): the CMG refuses an Entra one."""
    url = site_client.server_auth(tail) if prefix == "server" else site_client.mutual_auth(tail)
    response = site_client.http.get(url, headers={"Authorization": f"Bearer {entra}"})
    assert (response.status_code, response.reason_phrase) == (401, INVALID_TOKEN)


def test_an_entra_token_does_not_open_the_content_path(site_client: SiteClient, entra: str) -> None:
    response = site_client.http.get(site_client.cmg_url + "/downloadrestservice.svc/getcontentxmlsecure?pid=A&cid=B",
                                    headers={"Authorization": f"Bearer {entra}"})
    assert (response.status_code, response.reason_phrase) == (401, INVALID_TOKEN)


@pytest.mark.parametrize("target", ["MP_LocationManager", "MP_PolicyManager", "MP_ClientRegistration"])
def test_an_entra_token_does_not_open_messaging(site_client: SiteClient, entra: str, target: str) -> None:
    """ccm_system_tokenauth is CcmTokenAuth=1 for every message, registration included."""
    response = site_client.message(target, _location_body(), token=entra)
    assert (response.status_code, response.reason_phrase) == (401, INVALID_TOKEN)


def test_an_entra_token_opens_the_token_service(site_client: SiteClient, entra: str) -> None:
    assert site_client.ccm_sts(entra).status_code == 200


def test_the_edge_validator_takes_one_kind_of_token_per_question(clean_site: RunningSite, site_client: SiteClient,
                                                                 entra: str) -> None:
    """/validate answers 204 for a CCM token only; /validate?token=entra for an Entra token only."""
    ccm = site_client.ccm_token(entra)
    url = clean_site.manifest.token_validation_url

    def ask(token: str, query: str = "") -> tuple[int, str]:
        answer = httpx.get(url + query, headers={"Authorization": f"Bearer {token}"})
        return answer.status_code, answer.reason_phrase

    assert ask(ccm) == (204, "No Content")
    assert ask(entra) == (401, INVALID_TOKEN)
    assert ask(entra, "?token=entra") == (204, "No Content")
    assert ask(ccm, "?token=entra") == (401, INVALID_TOKEN)
    assert ask(ccm, "?token=other")[0] == 400


# --- registration: the CCM token in Authorization, the Entra token beside it ------------------------------------


def test_registration_carries_the_ccm_token_and_the_entra_token_beside_it(site_client: SiteClient, entra: str) -> None:
    reply = site_client.register(entra)
    assert reply.status_code == 200
    assert messages.RegistrationResponse.from_xml(reply.reply.body_xml).approval_status == 3


def test_registration_with_only_a_ccm_token_is_refused_by_the_mp(site_client: SiteClient, entra: str) -> None:
    """A CCM token alone names no Entra device to register: the MP rejects the registration (403, with the reason)."""
    ccm = site_client.ccm_token(entra)
    response = site_client.message("MP_ClientRegistration", messages.RegistrationRequest(
        netbios_name="X", fq_name="x", locale_id=1033, internet_flag=1, agent_version="5", signing_cert_hex="00",
        encryption_cert_hex="00", timestamp="2026-01-01T00:00:00Z").to_xml(), token=ccm)
    assert (response.status_code, response.reason_phrase) == (403, MP_REGISTRATION_TOKEN_INVALID)
    assert AAD_TOKEN_HEADER in response.text


def test_registration_with_a_forged_entra_token_beside_the_ccm_token_is_refused(site_client: SiteClient,
                                                                               entra: str) -> None:
    ccm = site_client.ccm_token(entra)
    response = site_client.register(entra[:-4] + "AAAA", ccm_token=ccm)
    assert (response.status_code, response.reason_phrase) == (403, MP_REGISTRATION_TOKEN_INVALID)


# --- CCM tokens: sane time claims and an onboarded tenant, checked at the CMG ------------------------------------


def _site_token(site: RunningSite, **changes: Any) -> str:
    now = time.time()
    claims: dict[str, Any] = {
        "iss": tokens.ccm_issuer(site.manifest.hierarchy_id), "aud": tokens.CCM_AUDIENCE,
        "SCCMTokenCategory": tokens.CCM_TOKEN_CATEGORY, "Authority": "SCCM", "License": "SCCM", "Type": "Device",
        "deviceid": "GUID:X", "userid": "u", "TenantId": site.manifest.tenant_id, "smsid": "", "iat": now,
        "nbf": int(now), "exp": int(now) + 600, "UniqueId": str(uuid.uuid4())}
    claims.update(changes)
    pki = site.site.pki
    return jwt.encode(claims, pki.ccm_signing_key, algorithm="RS256", headers={"kid": pki.ccm_signing_kid})


@pytest.mark.parametrize("changes", [
    {"iat": time.time() + 10 * 365 * 86400},
    {"exp": 1.7e308},
    {"exp": "tomorrow"},
    {"nbf": None},
    {"TenantId": "c8c82542-203c-4df9-9d86-cdd4dae67e0a"},
], ids=["iat-far-future", "exp-1.7e308", "exp-text", "nbf-null", "tenant-not-onboarded"])
def test_site_signed_ccm_tokens_with_absurd_claims_are_refused_at_the_cmg(clean_site: RunningSite,
                                                                          site_client: SiteClient,
                                                                          changes: dict[str, Any]) -> None:
    """Even with the site's own signature, such a token is not forwarded."""
    good = site_client.http.get(site_client.server_auth("SMS_MP/.sms_aut?MPLIST"),
                                headers={"Authorization": f"Bearer {_site_token(clean_site)}"})
    assert good.status_code == 200
    response = site_client.http.get(site_client.server_auth("SMS_MP/.sms_aut?MPLIST"),
                                    headers={"Authorization": f"Bearer {_site_token(clean_site, **changes)}"})
    assert (response.status_code, response.reason_phrase) == (401, INVALID_TOKEN)


# --- encoded separators in a mapped path -------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/CCM_Proxy_ServerAuth/72186325152220500/CCM_Client%2Fccmsetup.cab",
    "/CCM_Proxy_ServerAuth/72186325152220500/CCM_Client/ccmsetup.cab%2F",
    "/CCM_Proxy_ServerAuth/72186325152220500/CCM_Client/ccmsetup.cab%5C",
    "/CCM_Proxy_ServerAuth/72186325152220500/CCM_Client/ccmsetup.cab%2f..%2f",
    "/CCM_Proxy_MutualAuth/72186325152220500/SMS_MP%2F.sms_aut",
])
def test_an_encoded_separator_is_refused_with_400(site_client: SiteClient, entra: str, path: str) -> None:
    """%2F or %5C in a segment is refused by the CMG (400), never decoded into a boundary and forwarded."""
    ccm = site_client.ccm_token(entra)
    response = site_client.http.get(site_client.cmg_url + path, headers={"Authorization": f"Bearer {ccm}"})
    assert (response.status_code, response.reason_phrase) == (400, BAD_REQUEST)


# --- the connection point: work only from its CMG ------------------------------------------------------------------


def test_the_connection_point_refuses_a_caller_without_a_certificate(clean_site: RunningSite) -> None:
    """Mutual TLS is required: without a client certificate the handshake itself fails."""
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, ssl.SSLError)), \
            _client(clean_site, clean_site.manifest.cp_urls[0], None) as client:
        client.message("MP_LocationManager", _location_body(), token=None,
                       url=client.server_auth("ccm_system_tokenauth/request"))


def test_the_connection_point_refuses_a_device_certificate(clean_site: RunningSite, site_client: SiteClient,
                                                           device_cert: tuple[str, str]) -> None:
    """A device's certificate from the same CA is not the CMG: 403 CMGConnector_Forbidden, nothing forwarded."""
    forged = base64.b64encode(clean_site.site.pki.device_client_cert("EDGEDEVICE").certificate.public_bytes(
        Encoding.DER)).decode()
    with _client(clean_site, clean_site.manifest.cp_urls[0], device_cert) as client:
        location = client.http.request(envelope.CCM_POST, client.mutual_auth("ccm_system/request"),
                                       headers={CLIENT_CERT_HEADER: forged, "Content-Type": envelope.CONTENT_TYPE},
                                       content=b"")
        policy_body = client.http.get(client.mutual_auth("SMS_MP/.sms_aut?MPLIST"),
                                      headers={CLIENT_CERT_HEADER: forged})
    for response in (location, policy_body):
        assert (response.status_code, response.reason_phrase) == (403, CONNECTOR_NOT_FROM_CMG)


def test_the_connection_point_takes_work_from_the_cmg_identity(clean_site: RunningSite,
                                                               cmg_identity: tuple[str, str]) -> None:
    """With the CMG's identity (what a proxy standing in for the CMG presents) the request is forwarded."""
    with _client(clean_site, clean_site.manifest.cp_urls[0], cmg_identity) as client:
        response = client.http.get(client.server_auth("SMS_MP/.sms_aut?MPLIST"))
    assert (response.status_code, response.reason_phrase) == (401, MP_INVALID_TOKEN)  # forwarded; the MP refused


# --- the MP: identity headers only from its connection point ------------------------------------------------------


@pytest.mark.parametrize("header", [CLIENT_CERT_HEADER, REQUEST_URI_HEADER])
def test_the_mp_refuses_identity_headers_from_a_device(clean_site: RunningSite, device_cert: tuple[str, str],
                                                       header: str) -> None:
    """A device certificate may not hand the MP a self-asserted identity: 403 MP_Identity_Header_Refused."""
    value = "MIIB" if header == CLIENT_CERT_HEADER else "https://evil.example/x"
    with _client(clean_site, clean_site.manifest.mp_url or "", device_cert) as client:
        response = client.http.get(client.cmg_url + "/SMS_MP/.sms_aut?MPLIST", headers={header: value})
    assert (response.status_code, response.reason_phrase) == (403, MP_IDENTITY_HEADER_REFUSED)


def test_a_device_certificate_at_the_mp_is_that_devices_own_identity(clean_site: RunningSite,
                                                                     device_cert: tuple[str, str]) -> None:
    """As on an intranet HTTPS MP: location and MPLIST answer; another device's policy does not."""
    with _client(clean_site, clean_site.manifest.mp_url or "", device_cert) as client:
        mplist = client.http.get(client.cmg_url + "/SMS_MP/.sms_aut?MPLIST")
        location = client.message("MP_LocationManager", _location_body(), token=None,
                                  url=client.cmg_url + "/ccm_system/request")
        policy = client.message("MP_PolicyManager", messages.RequestAssignments(
            client_id=ANY_CLIENT, fqdn="x", netbios_name="X", sid="", site_code="MEM").to_xml(), token=None,
            url=client.cmg_url + "/ccm_system/request")
    assert mplist.status_code == 200 and location.status_code == 200
    assert (policy.status_code, policy.reason_phrase) == (403, MP_NOT_REGISTERED)


def test_a_pki_device_gets_its_own_policy_at_the_mp(clean_site: RunningSite, device_cert: tuple[str, str]) -> None:
    """Registered with its certificate, the device fetches policy for itself with the same certificate."""
    with _client(clean_site, clean_site.manifest.mp_url or "", device_cert) as client:
        key, cert_hex = signing_identity_for_tests()
        request = messages.RegistrationRequest(
            netbios_name="EDGEDEVICE", fq_name="edgedevice.contoso.com", locale_id=1033, internet_flag=0,
            agent_version="5.00.8968.1000", signing_cert_hex=cert_hex, encryption_cert_hex=cert_hex,
            timestamp="2026-01-01T00:00:00Z")
        request = replace(request, signature_hex=clientauth_signature(key, request.data_xml().encode("utf-16-le")))
        registered = client.message("MP_ClientRegistration", request.to_xml(), token=None,
                                    url=client.cmg_url + "/ccm_system/request")
        smsid = messages.RegistrationResponse.from_xml(registered.reply.body_xml).smsid
        policy = client.policy(None, smsid, url=client.cmg_url + "/ccm_system/request")
    assert policy.status_code == 200


@pytest.fixture(scope="module")
def inprocess_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSite]:
    from mock_site.testing import running_site

    with running_site(Path(tmp_path_factory.mktemp("inprocess")), time_scale=60, inprocess_hops=True) as running:
        yield running


def test_in_process_hops_carry_the_identities_too(inprocess_site: RunningSite) -> None:
    """With in-process hops the CMG still reaches the CP as the CMG and the CP the MP as the CP: the life works."""
    with SiteClient(inprocess_site.manifest) as client:
        entra = client.entra_token(device_id=str(uuid.uuid4()))
        registered = client.register(entra)
        assert registered.status_code == 200
        smsid = messages.RegistrationResponse.from_xml(registered.reply.body_xml).smsid
        assert client.policy(client.ccm_token(entra), smsid).status_code == 200
