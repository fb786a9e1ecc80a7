"""The endpoints a client or its tools call besides messaging: each ``.sms_aut`` verb with its own content, through the
CMG with a client certificate and with a CCM token; the CMG's ServiceMetadata certificate check; and the MP's other
messaging endpoints for a client that reaches an HTTPS MP directly."""

from __future__ import annotations

import uuid

import pytest
from cryptography import x509
from defusedxml import ElementTree

from cmg_protocol import envelope, messages, urlmap
from cmg_protocol.statuses import CLIENT_CERT_REQUIRED, INVALID_TOKEN, MP_BAD_MESSAGE, NOT_IN_URL_MAP
from mock_site.mp_aut import (
    MP_ENCRYPTION_SUBJECT,
    MP_SIGNING_SUBJECT,
    MP_WINDOWS_AUTH_REQUIRED,
    SITE_SIGNING_SUBJECT,
)
from mock_site.testing import RunningSite, SiteClient


@pytest.fixture
def device_cert(clean_site: RunningSite) -> tuple[str, str]:
    bundle = clean_site.site.pki.device_client_cert("AUTDEVICE")
    assert bundle.cert_path is not None and bundle.key_path is not None
    return str(bundle.cert_path), str(bundle.key_path)


@pytest.fixture
def ccm(site_client: SiteClient) -> str:
    return site_client.ccm_token(site_client.entra_token(device_id=str(uuid.uuid4())))


def _subject(hex_der: str) -> str:
    cert = x509.load_der_x509_certificate(bytes.fromhex(hex_der))
    return cert.subject.rfc4514_string()


def _aut(client: SiteClient, prefix: str, verb: str, site: str = "", token: str | None = None):  # type: ignore[no-untyped-def]
    path = urlmap.sms_aut_path(prefix, client.manifest.role_id, verb, site)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.http.get(client.cmg_url + path, headers=headers)


def test_sitesigncert_through_the_cmg_with_a_ccm_token_and_with_mutual_auth(
        clean_site: RunningSite, site_client: SiteClient, ccm: str, device_cert: tuple[str, str]) -> None:
    """The site signing certificate comes through the CMG both ways, and it is the same certificate both times."""
    by_token = _aut(site_client, urlmap.SERVER_AUTH, "SITESIGNCERT", token=ccm)
    with SiteClient(clean_site.manifest, cert=device_cert) as pki_client:
        by_cert = _aut(pki_client, urlmap.MUTUAL_AUTH, "SITESIGNCERT")
    assert by_token.status_code == by_cert.status_code == 200
    assert by_token.content == by_cert.content
    root = ElementTree.fromstring(by_token.content)
    assert (root.tag, root.get("SiteCode")) == ("SiteSigningCertificate", clean_site.manifest.site_code)
    assert _subject(root.text or "") == f"CN={SITE_SIGNING_SUBJECT}"


def test_each_sms_aut_verb_answers_its_own_content(site_client: SiteClient, ccm: str) -> None:
    """MPLIST, MPLIST1/2 for this site and another, MPCERT, MPKEYINFORMATION(MEDIA): different bodies, right roots."""
    site = site_client.manifest.site_code
    bodies = {}
    for verb, code in (("MPLIST", ""), ("MPLIST1", site), ("MPLIST2", site.lower()), ("MPLIST1", "ZZZ"),
                       ("MPCERT", ""), ("SITESIGNCERT", ""), ("MPKEYINFORMATION", ""), ("MPKEYINFORMATIONMEDIA", "")):
        response = _aut(site_client, urlmap.SERVER_AUTH, verb, code, token=ccm)
        assert response.status_code == 200, (verb, code, response.text)
        bodies[(verb, code)] = response.text
    mplist = messages.MPList.from_xml(bodies[("MPLIST", "")])
    assert len(mplist.entries) == 1
    assert messages.MPList.from_xml(bodies[("MPLIST1", site)]) == mplist
    assert messages.MPList.from_xml(bodies[("MPLIST2", site.lower())]) == mplist
    assert messages.MPList.from_xml(bodies[("MPLIST1", "ZZZ")]).entries == ()
    mpcert = ElementTree.fromstring(bodies[("MPCERT", "")])
    kinds = {c.get("Type"): _subject(c.text or "") for c in mpcert.iterfind("Certificate")}
    assert kinds == {"Signing": f"CN={MP_SIGNING_SUBJECT}", "Encryption": f"CN={MP_ENCRYPTION_SUBJECT}"}
    info = ElementTree.fromstring(bodies[("MPKEYINFORMATION", "")])
    media = ElementTree.fromstring(bodies[("MPKEYINFORMATIONMEDIA", "")])
    assert (info.tag, media.tag) == ("MPKEYINFORMATION", "MPKEYINFORMATIONMEDIA")
    assert info.findtext("SITECODE") == media.findtext("SITECODE") == site
    assert info.find("SITESIGNINGCERTIFICATE") is None
    site_cert = ElementTree.fromstring(bodies[("SITESIGNCERT", "")]).text
    assert media.findtext("SITESIGNINGCERTIFICATE") == site_cert
    assert info.findtext("SIGNINGCERTIFICATE") == mpcert.find("Certificate[@Type='Signing']").text  # type: ignore[union-attr]
    assert len(set(bodies.values())) == len(bodies) - 2  # MPLIST1/MPLIST2 for this site repeat MPLIST


def test_sms_aut_verbs_need_a_credential_and_a_published_verb(site_client: SiteClient, ccm: str) -> None:
    """No token on ServerAuth: 401 at the CMG; no certificate and no token on MutualAuth: 403; a verb off the map: 404."""
    assert (_aut(site_client, urlmap.SERVER_AUTH, "SITESIGNCERT").reason_phrase) == INVALID_TOKEN
    assert (_aut(site_client, urlmap.MUTUAL_AUTH, "MPCERT").reason_phrase) == CLIENT_CERT_REQUIRED
    unpublished = site_client.http.get(f"{site_client.cmg_url}/{urlmap.SERVER_AUTH}/{site_client.manifest.role_id}"
                                       "/SMS_MP/.sms_aut?MPKEYINFO",
                                       headers={"Authorization": f"Bearer {ccm}"})
    assert (unpublished.status_code, unpublished.reason_phrase) == (404, NOT_IN_URL_MAP)


def test_the_mp_refuses_an_unknown_verb_from_a_direct_client(clean_site: RunningSite,
                                                             device_cert: tuple[str, str]) -> None:
    """A device on the intranet asking the MP itself for a verb it does not know: 404 with the reason."""
    with SiteClient(clean_site.manifest, cmg_url=clean_site.manifest.mp_url, cert=device_cert) as client:
        known = client.http.get(client.cmg_url + "/SMS_MP/.sms_aut?mpcert")
        unknown = client.http.get(client.cmg_url + "/SMS_MP/.sms_aut?MPKEYINFO")
    assert known.status_code == 200 and ElementTree.fromstring(known.content).tag == "MPCERT"
    assert (unknown.status_code, unknown.reason_phrase) == (404, MP_BAD_MESSAGE)
    assert "MPKEYINFO" in unknown.text


@pytest.mark.parametrize("prefix", [urlmap.SERVER_AUTH, urlmap.MUTUAL_AUTH])
def test_service_metadata_answers_a_good_token_and_refuses_a_bad_one(site_client: SiteClient, ccm: str,
                                                                     prefix: str) -> None:
    """The client's certificate check: 200 from the CMG itself with a valid CCM token, 401 with a bad one."""
    url = site_client.cmg_url + urlmap.service_metadata_path(prefix)
    good = site_client.http.get(url, headers={"Authorization": f"Bearer {ccm}"})
    bad = site_client.http.get(url, headers={"Authorization": f"Bearer {ccm[:-4]}AAAA"})
    assert good.status_code == 200 and ElementTree.fromstring(good.content).tag == "ServiceMetadata"
    assert (bad.status_code, bad.reason_phrase) == (401, INVALID_TOKEN)


def test_service_metadata_takes_a_client_certificate_on_mutual_auth(clean_site: RunningSite,
                                                                    device_cert: tuple[str, str]) -> None:
    with SiteClient(clean_site.manifest, cert=device_cert) as client:
        mutual = client.http.get(client.cmg_url + urlmap.service_metadata_path(urlmap.MUTUAL_AUTH))
        server = client.http.get(client.cmg_url + urlmap.service_metadata_path(urlmap.SERVER_AUTH))
    assert mutual.status_code == 200
    assert (server.status_code, server.reason_phrase) == (401, INVALID_TOKEN)  # ServerAuth: a token or nothing


def test_windows_auth_endpoint_refuses_as_iis_does(clean_site: RunningSite, device_cert: tuple[str, str]) -> None:
    """ccm_system_windowsauth takes Windows integrated authentication only: 401 with Negotiate and NTLM challenges."""
    with SiteClient(clean_site.manifest, cmg_url=clean_site.manifest.mp_url, cert=device_cert) as client:
        response = client.message("MP_LocationManager", messages.SiteInformationRequest(site_code="MEM").to_xml(),
                                  token=None, url=client.cmg_url + "/ccm_system_windowsauth/request")
    assert (response.status_code, response.reason_phrase) == (401, MP_WINDOWS_AUTH_REQUIRED)
    assert response.headers.get_list("www-authenticate") == ["Negotiate", "NTLM"]


def test_altauth_is_the_token_endpoint_of_an_https_mp(clean_site: RunningSite, site_client: SiteClient, ccm: str,
                                                      device_cert: tuple[str, str]) -> None:
    """ccm_system_altauth answers a CCM token as tokenauth does and refuses a caller without one."""
    body = messages.SiteInformationRequest(site_code="MEM").to_xml()
    with SiteClient(clean_site.manifest, cmg_url=clean_site.manifest.mp_url, cert=device_cert) as client:
        url = client.cmg_url + "/ccm_system_altauth/request"
        answered = client.message("MP_LocationManager", body, token=ccm, url=url)
        refused = client.message("MP_LocationManager", body, token=None, url=url)
    assert answered.status_code == 200
    reply = messages.SiteInfoReply.from_xml(answered.reply.body_xml)
    assert reply.site_code == clean_site.manifest.site_code
    assert refused.status_code == 401


@pytest.mark.parametrize("tail", ["ccm_system_windowsauth/request", "ccm_system_altauth/request"])
def test_the_cmg_does_not_publish_the_direct_mp_endpoints(site_client: SiteClient, ccm: str, tail: str) -> None:
    response = site_client.http.request(envelope.CCM_POST, site_client.cmg_url + f"/CCM_Proxy_ServerAuth/"
                                        f"{site_client.manifest.role_id}/{tail}", content=b"",
                                        headers={"Authorization": f"Bearer {ccm}"})
    assert (response.status_code, response.reason_phrase) == (404, NOT_IN_URL_MAP)
