"""The management point's ``.sms_aut`` verbs and the messaging endpoints a client may reach on an HTTPS MP directly.

``GET /SMS_MP/.sms_aut?<verb>`` answers each verb with its own content: ``MPLIST`` the site's management points,
``MPLIST1&<site>`` / ``MPLIST2&<site>`` the same for a named site (an empty list for a site that is not this one),
``MPCERT`` the MP's signing and encryption certificates, ``SITESIGNCERT`` the site server signing certificate,
``MPKEYINFORMATION`` the MP's key information and ``MPKEYINFORMATIONMEDIA`` the same with the site signing
certificate, as boot media read it. The certificates are self-signed, as the real site server and MP make theirs; they
are made once per MP, when first asked for. The verbs and what each stands for are public; the reply bodies (element
names, hex encoding) are ours.

``ccm_system_windowsauth/request`` takes Windows integrated authentication only, which the mock site has no domain
for: it is refused as IIS refuses a caller without it (401 with ``WWW-Authenticate: Negotiate`` and ``NTLM``).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from cmg_protocol import messages, urlmap
from cmg_protocol.clock import Clock
from cmg_protocol.statuses import MP_BAD_MESSAGE
from cmg_protocol.xmlbase import escape_attr, escape_text
from mock_site.asgi import respond, respond_error
from mock_site.server import Send

#: The status text of the Windows-authentication endpoint's refusal (IIS answers 401 with its challenges).
MP_WINDOWS_AUTH_REQUIRED = "MP_Windows_Auth_Required"  # synthetic: not the public ConfigMgr format
#: The challenges IIS sends for Windows integrated authentication.
WINDOWS_AUTH_CHALLENGES = ("Negotiate", "NTLM")

_SMS_AUT_QUERY = re.compile(urlmap.SMS_AUT_QUERY_PATTERN, re.IGNORECASE)
_XML = "text/xml; charset=utf-8"
# synthetic: not the public ConfigMgr format (the subjects of the self-signed site and MP certificates)
SITE_SIGNING_SUBJECT = "Site Server Signing Certificate"
MP_SIGNING_SUBJECT = "SMS Signing Certificate"
MP_ENCRYPTION_SUBJECT = "SMS Encryption Certificate"
_CERT_LIFETIME = dt.timedelta(days=365 * 100)


@dataclass(frozen=True, slots=True)
class MpCertificates:
    """The DER certificates the ``.sms_aut`` verbs hand out."""

    site_signing: bytes
    mp_signing: bytes
    mp_encryption: bytes


def self_signed(subject: str, *, now: float, key_usage: x509.KeyUsage, key_size: int = 2048) -> bytes:
    """A self-signed RSA certificate (DER) named ``subject``, valid from ``now`` for a hundred years."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    start = dt.datetime.fromtimestamp(now, dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + _CERT_LIFETIME)
        .add_extension(key_usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.DER)


def _usage(*, signing: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=signing, content_commitment=False, key_encipherment=not signing,
                         data_encipherment=not signing, key_agreement=False, key_cert_sign=False, crl_sign=False,
                         encipher_only=False, decipher_only=False)


def _hex(der: bytes) -> str:
    return der.hex().upper()


class SmsAut:
    """Answers ``/SMS_MP/.sms_aut?<verb>`` for one management point."""

    def __init__(self, *, site_code: str, public_host: str, build_number: int, clock: Clock,
                 certificates: MpCertificates | None = None) -> None:
        self.site_code = site_code.upper()
        self.host = public_host.split(":")[0]
        self.build_number = build_number
        self.clock = clock
        self._certificates = certificates
        self._lock = threading.Lock()

    @property
    def certificates(self) -> MpCertificates:
        """The site signing and MP certificates, made on first use."""
        if self._certificates is None:
            with self._lock:
                if self._certificates is None:
                    now = self.clock()
                    self._certificates = MpCertificates(
                        site_signing=self_signed(SITE_SIGNING_SUBJECT, now=now, key_usage=_usage(signing=True)),
                        mp_signing=self_signed(MP_SIGNING_SUBJECT, now=now, key_usage=_usage(signing=True)),
                        mp_encryption=self_signed(MP_ENCRYPTION_SUBJECT, now=now, key_usage=_usage(signing=False)),
                    )
        return self._certificates

    def reply(self, query: str) -> tuple[int, str]:
        """The status and XML body for a ``.sms_aut`` query; 404 (with the reason as the body) for an unknown verb."""
        if not _SMS_AUT_QUERY.fullmatch(query):
            return 404, f"no .sms_aut verb {query[:80]!r} (the MP answers {', '.join(urlmap.SMS_AUT_VERBS)})"
        verb, _, site = query.partition("&")
        verb = verb.upper()
        if verb == "MPLIST":
            return 200, self._mplist()
        if verb in urlmap.SMS_AUT_SITE_VERBS:
            # synthetic: not the public ConfigMgr format (a site this MP does not serve gets an empty list)
            return 200, self._mplist() if site.upper() == self.site_code else messages.MPList(entries=()).to_xml()
        certs = self.certificates
        if verb == "MPCERT":
            # synthetic: not the public ConfigMgr format (the MPCERT reply body)
            return 200, (f'<MPCERT SiteCode="{escape_attr(self.site_code)}" Name="{escape_attr(self.host.upper())}">'
                         f'<Certificate Type="Signing">{_hex(certs.mp_signing)}</Certificate>'
                         f'<Certificate Type="Encryption">{_hex(certs.mp_encryption)}</Certificate></MPCERT>')
        if verb == "SITESIGNCERT":
            # synthetic: not the public ConfigMgr format (the SITESIGNCERT reply body)
            return 200, (f'<SiteSigningCertificate SiteCode="{escape_attr(self.site_code)}">'
                         f"{_hex(certs.site_signing)}</SiteSigningCertificate>")
        # MPKEYINFORMATION and MPKEYINFORMATIONMEDIA; boot media also need the site's signing certificate.
        # synthetic: not the public ConfigMgr format (the key information reply body)
        media = verb == "MPKEYINFORMATIONMEDIA"
        site_signing = f"<SITESIGNINGCERTIFICATE>{_hex(certs.site_signing)}</SITESIGNINGCERTIFICATE>" if media else ""
        return 200, (f"<{verb}><SITECODE>{escape_text(self.site_code)}</SITECODE>"
                     f"<MPNAME>{escape_text(self.host.upper())}</MPNAME><MPFQDN>{escape_text(self.host)}</MPFQDN>"
                     f"<SIGNINGCERTIFICATE>{_hex(certs.mp_signing)}</SIGNINGCERTIFICATE>"
                     f"<ENCRYPTIONCERTIFICATE>{_hex(certs.mp_encryption)}</ENCRYPTIONCERTIFICATE>"
                     f"{site_signing}</{verb}>")

    def _mplist(self) -> str:
        entry = messages.MPEntry(name=self.host.upper(), fqdn=self.host, version=str(self.build_number), ssl_state=63)
        return messages.MPList(entries=(entry,)).to_xml()

    async def respond(self, query: str, send: Send) -> None:
        """Answer one ``.sms_aut`` request (the caller has been authenticated)."""
        status, text = self.reply(query)
        if status != 200:
            await respond_error(send, status, MP_BAD_MESSAGE, text)
            return
        await respond(send, 200, text.encode("utf-8"), content_type=_XML)


async def refuse_windows_auth(send: Send) -> None:
    """``ccm_system_windowsauth/request`` without Windows integrated authentication: IIS's 401 and its challenges."""
    body = f"{MP_WINDOWS_AUTH_REQUIRED}: this endpoint takes Windows integrated authentication only".encode()
    headers = [("x-cmg-status-text", MP_WINDOWS_AUTH_REQUIRED)]
    headers += [("www-authenticate", challenge) for challenge in WINDOWS_AUTH_CHALLENGES]
    await respond(send, 401, body, reason=MP_WINDOWS_AUTH_REQUIRED, headers=headers)
