"""The public client tools' bytes against the real mock site: accepted where a production MP accepts them, refused
where it refuses them (tests/integration/public_tool_client.py builds them without the harness's protocol code)."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cmg_protocol.registration import AAD_TOKEN_HEADER
from cmg_protocol.statuses import MP_NOT_REGISTERED, MP_SIGNATURE_INVALID
from mock_site.testing import RunningSite, SiteClient
from tests.integration.public_tool_client import HEADERS, PublicToolClient, open_secret_policy, reply_text

SECRET = 0x04
REQUIRESAUTH = 0x02


@dataclass
class Route:
    """How the tool client reaches the MP: its messaging URL, the base that replaces ``http://<mp>``, extra headers."""

    client: SiteClient
    messaging_url: str
    mp_base: str
    headers: dict[str, str]
    registration_headers: dict[str, str]

    def post(self, body: bytes, *, registration: bool = False) -> Any:
        extra = self.registration_headers if registration else self.headers
        return self.client.http.request("CCM_POST", self.messaging_url, content=body, headers={**HEADERS, **extra})

    def get(self, location: str, headers: dict[str, str]) -> Any:
        return self.client.http.get(location.replace("http://<mp>", self.mp_base), headers={**headers, **self.headers})


@pytest.fixture(params=["mp-direct-certificate", "cmg-ccm-token"])
def route(request: pytest.FixtureRequest, clean_site: RunningSite) -> Iterator[Route]:
    """The tools' own way (an HTTPS MP, here with a device certificate), and through the CMG with a CCM token."""
    if request.param == "mp-direct-certificate":
        bundle = clean_site.site.pki.device_client_cert("TOOLCLIENT")
        cert = (str(bundle.cert_path), str(bundle.key_path))
        mp = clean_site.manifest.mp_url or ""
        with SiteClient(clean_site.manifest, cmg_url=mp, cert=cert) as client:
            yield Route(client, mp + "/ccm_system/request", mp, {}, {})
    else:
        with SiteClient(clean_site.manifest) as client:
            entra = client.entra_token(device_id=str(uuid.uuid4()))
            bearer = {"Authorization": "Bearer " + client.ccm_token(entra)}
            yield Route(client, client.server_auth("ccm_system_tokenauth/request"), client.server_auth("").rstrip("/"),
                        bearer, {**bearer, AAD_TOKEN_HEADER: entra})


def _register(route: Route, tool: PublicToolClient) -> None:
    response = route.post(tool.registration_body(), registration=True)
    assert response.status_code == 200, response.reason_phrase
    reply = ET.fromstring(reply_text(response.headers["content-type"], response.content))
    assert reply.get("Status") == "0"
    tool.guid = reply.get("SMSID", "").split("GUID:")[1]


def _assignments(route: Route, tool: PublicToolClient) -> list[ET.Element]:
    response = route.post(tool.policy_body())
    assert response.status_code == 200, response.reason_phrase
    return ET.fromstring(reply_text(response.headers["content-type"], response.content)).findall(".//Policy")


def test_the_tools_register_get_assignments_and_open_the_secret_policy(route: Route) -> None:
    tool = PublicToolClient()
    _register(route, tool)
    policies = _assignments(route, tool)
    secret = [p for p in policies if int(p.get("PolicyFlags", "0")) & SECRET]
    assert policies and len(secret) == 1
    locations = [p.findtext("PolicyLocation", "") for p in policies]
    assert all(loc.startswith("http://<mp>/SMS_MP/.sms_pol?") for loc in locations)
    # The public query shapes: {id}.SHA256:<64 hex> for plain policies, {id}.<n>_00 for the secret one.
    assert all(re.search(r"\.(SHA256:[0-9A-F]{64}|\d+_00)$", loc) for loc in locations)
    plain = next(p for p in policies if not int(p.get("PolicyFlags", "0")) & (SECRET | REQUIRESAUTH))
    body = route.get(plain.findtext("PolicyLocation", ""), {})
    assert body.status_code == 200
    assert body.content[:2] == b"\xff\xfe" and "PolicyID" in body.content.decode("utf-16")
    location = secret[0].findtext("PolicyLocation", "")
    assert re.search(r"\.\d+_00$", location)
    encrypted = route.get(location, tool.client_token_headers())
    assert encrypted.status_code == 200, encrypted.reason_phrase
    text = open_secret_policy(encrypted.content, tool.key)
    assert 'name="NetworkAccessUsername"' in text and 'secret="1"' in text


def test_a_wrong_registration_signature_is_refused(route: Route) -> None:
    tool = PublicToolClient()
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    response = route.post(tool.registration_body(signing_key=other), registration=True)
    assert (response.status_code, response.reason_phrase) == (403, MP_SIGNATURE_INVALID)


def test_policy_signed_with_another_key_is_refused(route: Route) -> None:
    """The MP checks the hook against the key the client registered: another key (a key change) is refused."""
    tool = PublicToolClient()
    _register(route, tool)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    response = route.post(tool.policy_body(signing_key=other))
    assert (response.status_code, response.reason_phrase) == (403, MP_SIGNATURE_INVALID)


def test_an_unregistered_client_gets_no_assignments(route: Route) -> None:
    tool = PublicToolClient()
    response = route.post(tool.policy_body(guid=str(uuid.uuid4()).upper()))
    assert (response.status_code, response.reason_phrase) == (403, MP_NOT_REGISTERED)


def test_the_secret_policy_needs_a_client_token_signed_with_the_registered_key(route: Route) -> None:
    tool = PublicToolClient()
    _register(route, tool)
    location = next(p.findtext("PolicyLocation", "") for p in _assignments(route, tool)
                    if int(p.get("PolicyFlags", "0")) & SECRET)
    unsigned = route.get(location, {})
    assert (unsigned.status_code, unsigned.reason_phrase) == (403, MP_SIGNATURE_INVALID)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong = route.get(location, tool.client_token_headers(signing_key=other))
    assert (wrong.status_code, wrong.reason_phrase) == (403, MP_SIGNATURE_INVALID)


def test_the_tools_read_the_site_signing_certificate_through_the_cmg_both_ways(clean_site: RunningSite) -> None:
    """SITESIGNCERT as the tools fetch it (a GET with their headers), through the CMG with mutual auth (a device
    certificate on CCM_Proxy_MutualAuth) and with a CCM token (CCM_Proxy_ServerAuth): the same certificate both ways."""
    bundle = clean_site.site.pki.device_client_cert("TOOLCLIENT")
    with SiteClient(clean_site.manifest, cert=(str(bundle.cert_path), str(bundle.key_path))) as client:
        by_cert = client.http.get(client.mutual_auth("SMS_MP/.sms_aut?SITESIGNCERT"), headers=HEADERS)
    with SiteClient(clean_site.manifest) as client:
        bearer = "Bearer " + client.ccm_token(client.entra_token(device_id=str(uuid.uuid4())))
        by_token = client.http.get(client.server_auth("SMS_MP/.sms_aut?SITESIGNCERT"),
                                   headers={**HEADERS, "Authorization": bearer})
        refused = client.http.get(client.server_auth("SMS_MP/.sms_aut?SITESIGNCERT"), headers=HEADERS)
    assert (by_cert.status_code, by_token.status_code) == (200, 200), (by_cert.reason_phrase, by_token.reason_phrase)
    assert by_cert.content == by_token.content
    assert ET.fromstring(by_token.content).get("SiteCode") == clean_site.manifest.site_code
    assert (refused.status_code, refused.reason_phrase) == (401, "CMGService_Invalid_Token")
