"""The MP's ``.sms_aut`` verbs called as an object: each verb's own reply (site code, MP name, version, SSLState, which
certificate where), the certificates themselves (self-signed, named, their key usage, key size, a hundred years from
the site clock), an unknown verb refused with its reason, and the Windows-authentication endpoint's IIS-style 401."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import MutableMapping
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from cmg_protocol import messages
from cmg_protocol.statuses import MP_BAD_MESSAGE
from mock_site.mp_aut import (
    MP_ENCRYPTION_SUBJECT,
    MP_SIGNING_SUBJECT,
    MP_WINDOWS_AUTH_REQUIRED,
    SITE_SIGNING_SUBJECT,
    MpCertificates,
    SmsAut,
    refuse_windows_auth,
)
from tests.trust.asgi_calls import call

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
FIXED = MpCertificates(site_signing=b"\x01\x02", mp_signing=b"\x0a\xbc", mp_encryption=b"\xde\xf0")


def _aut(certificates: MpCertificates | None = FIXED) -> SmsAut:
    return SmsAut(site_code="ps1", public_host="mp01.contoso.com:8443", build_number=8968, clock=lambda: NOW,
                  certificates=certificates)


def test_mplist_names_this_mp_by_host_without_port_with_the_build_and_ssl_state() -> None:
    status, text = _aut().reply("MPLIST")
    assert status == 200
    assert messages.MPList.from_xml(text).entries == (
        messages.MPEntry(name="MP01.CONTOSO.COM", fqdn="mp01.contoso.com", version="8968", ssl_state=63),)


@pytest.mark.parametrize("query", ["MPLIST1&PS1", "mplist2&ps1", "MPLIST1&Ps1"])
def test_mplist1_and_2_for_this_site_repeat_mplist(query: str) -> None:
    aut = _aut()
    assert aut.reply(query) == aut.reply("MPLIST")


@pytest.mark.parametrize("query", ["MPLIST1&PS2", "MPLIST2&ZZZ"])
def test_mplist1_and_2_for_another_site_are_an_empty_list(query: str) -> None:
    assert _aut().reply(query) == (200, "<MPList></MPList>")


def test_mpcert_carries_the_mp_signing_and_encryption_certificates() -> None:
    assert _aut().reply("mpcert") == (200, '<MPCERT SiteCode="PS1" Name="MP01.CONTOSO.COM">'
                                           '<Certificate Type="Signing">0ABC</Certificate>'
                                           '<Certificate Type="Encryption">DEF0</Certificate></MPCERT>')


def test_sitesigncert_carries_the_site_signing_certificate() -> None:
    assert _aut().reply("SITESIGNCERT") == (200, '<SiteSigningCertificate SiteCode="PS1">0102'
                                                 "</SiteSigningCertificate>")


def test_key_information_and_its_media_form_which_adds_the_site_signing_certificate() -> None:
    common = ("<SITECODE>PS1</SITECODE><MPNAME>MP01.CONTOSO.COM</MPNAME><MPFQDN>mp01.contoso.com</MPFQDN>"
              "<SIGNINGCERTIFICATE>0ABC</SIGNINGCERTIFICATE><ENCRYPTIONCERTIFICATE>DEF0</ENCRYPTIONCERTIFICATE>")
    assert _aut().reply("MPKEYINFORMATION") == (200, f"<MPKEYINFORMATION>{common}</MPKEYINFORMATION>")
    assert _aut().reply("mpkeyinformationmedia") == (
        200, f"<MPKEYINFORMATIONMEDIA>{common}<SITESIGNINGCERTIFICATE>0102</SITESIGNINGCERTIFICATE>"
             "</MPKEYINFORMATIONMEDIA>")


@pytest.mark.parametrize("query", ["MPKEYINFO", "MPLIST1", "MPLIST&PS1", "", "MPLIST1&P$1"])
def test_a_query_that_is_no_published_verb_is_404_with_the_verbs_named(query: str) -> None:
    status, text = _aut().reply(query)
    assert status == 404
    assert text == (f"no .sms_aut verb {query!r} (the MP answers MPLIST, MPLIST1, MPLIST2, MPCERT, SITESIGNCERT, "
                    "MPKEYINFORMATION, MPKEYINFORMATIONMEDIA)")


def _respond(aut: SmsAut, query: str) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await aut.respond(query, send)
    answer, _ = call(app, "GET", "/SMS_MP/.sms_aut", query=query)
    return answer


def test_respond_sends_the_reply_as_utf8_xml_and_an_unknown_verb_as_mp_bad_message() -> None:
    aut = _aut()
    good = _respond(aut, "SITESIGNCERT")
    assert (good.status, good.reason, good.headers["content-type"]) == (200, None, "text/xml; charset=utf-8")
    assert good.text == aut.reply("SITESIGNCERT")[1]
    bad = _respond(aut, "MPKEYINFO")
    assert (bad.status, bad.reason, bad.headers["x-cmg-status-text"]) == (404, MP_BAD_MESSAGE, MP_BAD_MESSAGE)
    assert bad.text == f"{MP_BAD_MESSAGE}: {aut.reply('MPKEYINFO')[1]}"


def _usage(*, signing: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=signing, content_commitment=False, key_encipherment=not signing,
                         data_encipherment=not signing, key_agreement=False, key_cert_sign=False, crl_sign=False,
                         encipher_only=False, decipher_only=False)


def test_the_certificates_are_made_once_self_signed_for_a_hundred_years_from_the_site_clock() -> None:
    aut = _aut(certificates=None)
    certs = aut.certificates
    assert aut.certificates is certs  # made on first use, then kept
    expected = {certs.site_signing: (SITE_SIGNING_SUBJECT, True), certs.mp_signing: (MP_SIGNING_SUBJECT, True),
                certs.mp_encryption: (MP_ENCRYPTION_SUBJECT, False)}
    assert len(expected) == 3  # three distinct certificates
    for der, (subject, signing) in expected.items():
        cert = x509.load_der_x509_certificate(der)
        assert cert.subject.rfc4514_string() == f"CN={subject}" == cert.issuer.rfc4514_string()
        key = cert.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        assert (key.key_size, key.public_numbers().e) == (2048, 65537)
        cert.verify_directly_issued_by(cert)
        assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (START, START + dt.timedelta(days=36500))
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert (usage.critical, usage.value) == (True, _usage(signing=signing))
    # What the verbs hand out is these very certificates.
    assert aut.reply("MPCERT")[1] == (f'<MPCERT SiteCode="PS1" Name="MP01.CONTOSO.COM">'
                                      f'<Certificate Type="Signing">{certs.mp_signing.hex().upper()}</Certificate>'
                                      f'<Certificate Type="Encryption">{certs.mp_encryption.hex().upper()}'
                                      "</Certificate></MPCERT>")


def test_the_windows_auth_endpoint_is_refused_as_iis_does_with_both_challenges() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))
    asyncio.run(refuse_windows_auth(send))
    start, body = sent
    assert (start["status"], start["reason"]) == (401, MP_WINDOWS_AUTH_REQUIRED)
    assert body["body"] == (f"{MP_WINDOWS_AUTH_REQUIRED}: this endpoint takes Windows integrated authentication "
                            "only").encode()
    headers = [(k.decode(), v.decode()) for k, v in start["headers"]]
    assert [h for h in headers if h[0] in ("x-cmg-status-text", "www-authenticate")] == [
        ("x-cmg-status-text", MP_WINDOWS_AUTH_REQUIRED), ("www-authenticate", "Negotiate"),
        ("www-authenticate", "NTLM")]
