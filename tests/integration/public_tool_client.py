"""A ConfigMgr client written to the public client tools' conventions, byte for byte, independent of the harness.

It builds its messages the way the open-source tools that work against production management points do, not the way
``cmg_protocol`` does, so a test with it shows the mock accepts what they send and refuses what a real MP refuses:

- a self-signed certificate (CN "ConfigMgr Client", the SMS signing and encryption EKUs) used for both signing and
  encryption, registered as upper-case hex DER;
- the registration ``<Data>`` element with line breaks between its children, signed as UTF-16LE (no terminator);
- message bodies as UTF-16LE, NUL-terminated, then two more bytes (CR LF), all of it zlib-compressed, the header's
  ``Length`` counting the body without the CR LF; the header's elements in alphabetical order, ``<Body … />`` with a
  space, the header part encoded with a byte order mark; no CR LF after the closing delimiter;
- the clientauth hook: ``PublicKey`` as a CryptoAPI PUBLICKEYBLOB, ``ClientIDSignature`` over ``GUID:<ID>`` as
  UTF-16LE with its terminator, ``PayloadSignature`` over the compressed body;
- policy downloads with ``ClientToken: GUID:<id>;<time>;2`` and ``ClientTokenSignature`` over the token as UTF-16LE
  with its terminator; secret policies opened by hand from the DER (RSA PKCS#1 v1.5 key transport, AES-256-CBC or
  3DES-CBC content), the plaintext UTF-16LE with a NUL at the end.

Signatures are RSA PKCS#1 v1.5 with SHA-256, their bytes reversed, in upper-case hex. Nothing here imports the
harness's protocol package: a shared mistake would otherwise pass unnoticed.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID, ObjectIdentifier

BOUNDARY = "aAbBcCdDv1234567890VxXyYzZ"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
HEADERS = {"Connection": "close", "User-Agent": "ConfigMgr Messaging HTTP Sender",
           "Content-Type": f'multipart/mixed; boundary="{BOUNDARY}"'}

REGISTRATION_DATA = (
    '<Data HashAlgorithm="1.2.840.113549.1.1.11" SMSID="" RequestType="Registration" TimeStamp="{date}">\n'
    '<AgentInformation AgentIdentity="CCMSetup.exe" AgentVersion="5.00.8325.0000" AgentType="0" />\n'
    '<Certificates><Encryption Encoding="HexBinary" KeyType="1">{encryption}</Encryption>'
    '<Signing Encoding="HexBinary" KeyType="1">{signing}</Signing></Certificates>\n'
    '<DiscoveryProperties><Property Name="Netbios Name" Value="{client}" />\n'
    '<Property Name="FQ Name" Value="{fqdn}" />\n<Property Name="Locale ID" Value="2057" />\n'
    '<Property Name="InternetFlag" Value="0" />\n</DiscoveryProperties></Data>'
)
REGISTRATION_WRAPPER = ("<ClientRegistrationRequest>{data}<Signature><SignatureValue>{signature}</SignatureValue>"
                        "</Signature></ClientRegistrationRequest>\x00")
REGISTRATION_HEADER = (
    '<Msg ReplyCompression="zlib" SchemaVersion="1.1"><Body Type="ByteRange" Length="{length}" Offset="0" />'
    "<CorrelationID>{{00000000-0000-0000-0000-000000000000}}</CorrelationID><Hooks><Hook3 Name=\"zlib-compress\" />"
    "</Hooks><ID>{{5DD100CD-DF1D-45F5-BA17-A327F43465F8}}</ID><Payload Type=\"inline\" /><Priority>0</Priority>"
    "<Protocol>http</Protocol><ReplyMode>Sync</ReplyMode><ReplyTo>direct:{client}:SccmMessaging</ReplyTo>"
    "<SentTime>{date}</SentTime><SourceHost>{client}</SourceHost><TargetAddress>mp:MP_ClientRegistration"
    "</TargetAddress><TargetEndpoint>MP_ClientRegistration</TargetEndpoint><TargetHost>{mp}</TargetHost>"
    "<Timeout>60000</Timeout></Msg>"
)
POLICY_HEADER = (
    '<Msg ReplyCompression="zlib" SchemaVersion="1.1"><Body Type="ByteRange" Length="{length}" Offset="0" />'
    "<CorrelationID>{{00000000-0000-0000-0000-000000000000}}</CorrelationID><Hooks><Hook2 Name=\"clientauth\">"
    '<Property Name="AuthSenderMachine">{client}</Property><Property Name="PublicKey">{public_key}</Property>'
    '<Property Name="ClientIDSignature">{client_id_signature}</Property>'
    '<Property Name="PayloadSignature">{payload_signature}</Property>'
    '<Property Name="ClientCapabilities">NonSSL</Property>'
    '<Property Name="HashAlgorithm">1.2.840.113549.1.1.11</Property></Hook2><Hook3 Name="zlib-compress" /></Hooks>'
    "<ID>{{041A35B4-DCEE-4F64-A978-D4D489F47D28}}</ID><Payload Type=\"inline\" /><Priority>0</Priority>"
    "<Protocol>http</Protocol><ReplyMode>Sync</ReplyMode><ReplyTo>direct:{client}:SccmMessaging</ReplyTo>"
    "<SentTime>{date}</SentTime><SourceID>GUID:{guid}</SourceID><SourceHost>{client}</SourceHost>"
    "<TargetAddress>mp:MP_PolicyManager</TargetAddress><TargetEndpoint>MP_PolicyManager</TargetEndpoint>"
    "<TargetHost>{mp}</TargetHost><Timeout>60000</Timeout></Msg>"
)
POLICY_REQUEST = (
    '<RequestAssignments SchemaVersion="1.00" ACK="false" RequestType="Always"><Identification><Machine>'
    "<ClientID>GUID:{guid}</ClientID><FQDN>{fqdn}</FQDN><NetBIOSName>{client}</NetBIOSName><SID /></Machine><User />"
    "</Identification><PolicySource>SMS:PRI</PolicySource><Resource ResourceType=\"Machine\" /><ServerCookie />"
    "</RequestAssignments>"
)


def utf16(text: str) -> bytes:
    """UTF-16 little-endian without a byte order mark."""
    return text.encode("utf-16")[2:]


def sccm_sign(key: rsa.RSAPrivateKey, data: bytes) -> str:
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())[::-1].hex().upper()


def public_key_blob(key: rsa.RSAPrivateKey) -> str:
    header = b"\x06\x02\x00\x00\x00\xa4\x00\x00\x52\x53\x41\x31\x00\x08\x00\x00\x01\x00\x01\x00"
    return (header + key.public_key().public_numbers().n.to_bytes(key.key_size // 8, "little")).hex().upper()


def self_signed(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ConfigMgr Client")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=2))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                     key_agreement=False, content_commitment=False, data_encipherment=True,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ObjectIdentifier("1.3.6.1.4.1.311.101.2"),
                                              ObjectIdentifier("1.3.6.1.4.1.311.101")]), critical=False)
        .sign(key, hashes.SHA256())
    )


def multipart(header: str, compressed_body: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\ncontent-type: text/plain; charset=UTF-16\r\n\r\n".encode("ascii")
            + header.encode("utf-16")
            + f"\r\n--{BOUNDARY}\r\ncontent-type: application/octet-stream\r\n\r\n".encode("ascii")
            + compressed_body + f"\r\n--{BOUNDARY}--".encode("ascii"))


def reply_text(content_type: str, data: bytes) -> str:
    """The reply's body text, read as the tools read it: the octet-stream part, inflated, as UTF-16."""
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode("ascii")
    for part in data.split(b"--" + boundary):
        head, _, content = part.partition(b"\r\n\r\n")
        if b"application/octet-stream" in head.lower():
            if content.endswith(b"\r\n"):
                content = content[:-2]
            return zlib.decompress(content).decode("utf-16-le").rstrip("\x00")
    raise ValueError("the reply has no application/octet-stream part")


# --- opening a secret policy by hand, as the tools do ------------------------------------------------------------


def _tlv(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of the value, end of the value) of the DER element at ``at``."""
    tag, length = data[at], data[at + 1]
    at += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[at : at + count], "big")
        at += count
    return tag, at, at + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    found, at = [], start
    while at < end:
        tag, value_start, value_end = _tlv(data, at)
        found.append((tag, value_start, value_end))
        at = value_end
    return found


def _oid(data: bytes, element: tuple[int, int, int]) -> str:
    raw = data[element[1] : element[2]]
    parts, value = [raw[0] // 40, raw[0] % 40], 0
    for byte in raw[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def open_secret_policy(data: bytes, key: rsa.RSAPrivateKey) -> str:
    """Decrypt a ContentInfo(EnvelopedData) as the tools do and return the policy text (without its NUL)."""
    _, info_start, info_end = _tlv(data, 0)
    content_type, explicit = _children(data, info_start, info_end)[:2]
    assert _oid(data, content_type) == "1.2.840.113549.1.7.3", "not EnvelopedData"
    _, env_start, env_end = _tlv(data, explicit[1])
    _version, recipients, encrypted_info = _children(data, env_start, env_end)[:3]
    ktri = _children(data, recipients[1], recipients[2])[0]
    _kv, _rid, key_algorithm, encrypted_key = _children(data, ktri[1], ktri[2])[:4]
    assert _oid(data, _children(data, key_algorithm[1], key_algorithm[2])[0]) == "1.2.840.113549.1.1.1"
    content_key = key.decrypt(data[encrypted_key[1] : encrypted_key[2]], padding.PKCS1v15())
    _ct, content_algorithm, encrypted = _children(data, encrypted_info[1], encrypted_info[2])[:3]
    algorithm, iv = _children(data, content_algorithm[1], content_algorithm[2])[:2]
    # The tools read AES-256-CBC and 3DES-CBC; the mock site sends AES-256-CBC, so that is all this client reads.
    assert _oid(data, algorithm) == "2.16.840.1.101.3.4.1.42", "content not encrypted with AES-256-CBC"
    decryptor = Cipher(algorithms.AES(content_key), modes.CBC(data[iv[1] : iv[2]])).decryptor()
    plain = decryptor.update(data[encrypted[1] : encrypted[2]]) + decryptor.finalize()
    plain = plain[: -plain[-1]]  # PKCS#7 padding
    return plain.decode("utf-16-le")[:-1]


# --- the client -----------------------------------------------------------------------------------------------------


@dataclass
class PublicToolClient:
    """One client identity and the requests the tools would send for it."""

    client: str = "TOOLCLIENT"
    fqdn: str = "toolclient.contoso.com"
    mp: str = "mp.contoso.com"
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537,
                                                                                      key_size=2048))
    guid: str = ""  # the client id without "GUID:", after registration

    def __post_init__(self) -> None:
        self.certificate = self_signed(self.key)

    @property
    def cert_hex(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.DER).hex().upper()

    def registration_body(self, *, signing_key: rsa.RSAPrivateKey | None = None) -> bytes:
        date = dt.datetime.now(dt.UTC).strftime(DATE_FORMAT)
        data = REGISTRATION_DATA.format(date=date, encryption=self.cert_hex, signing=self.cert_hex,
                                        client=self.client, fqdn=self.fqdn)
        signature = sccm_sign(signing_key or self.key, utf16(data))
        wrapped = utf16(REGISTRATION_WRAPPER.format(data=data, signature=signature)) + b"\r\n"
        header = REGISTRATION_HEADER.format(length=len(wrapped) - 2, client=self.client, date=date, mp=self.mp)
        return multipart(header, zlib.compress(wrapped))

    def policy_body(self, *, guid: str | None = None, signing_key: rsa.RSAPrivateKey | None = None) -> bytes:
        guid = self.guid if guid is None else guid
        key = signing_key or self.key
        request = utf16(POLICY_REQUEST.format(guid=guid, fqdn=self.fqdn, client=self.client)) + b"\x00\x00\r\n"
        compressed = zlib.compress(request)
        header = POLICY_HEADER.format(
            length=len(request) - 2, client=self.client, public_key=public_key_blob(key),
            client_id_signature=sccm_sign(key, utf16(f"GUID:{guid.upper()}") + b"\x00\x00"),
            payload_signature=sccm_sign(key, compressed), guid=guid,
            date=dt.datetime.now(dt.UTC).strftime(DATE_FORMAT), mp=self.mp)
        return multipart(header, compressed)

    def client_token_headers(self, *, signing_key: rsa.RSAPrivateKey | None = None) -> dict[str, str]:
        token = f"GUID:{self.guid};{dt.datetime.now(dt.UTC).strftime(DATE_FORMAT)};2"
        return {"Connection": "close", "User-Agent": HEADERS["User-Agent"], "ClientToken": token,
                "ClientTokenSignature": sccm_sign(signing_key or self.key, token.encode("utf-16")[2:] + b"\x00\x00")}
