"""Specification of the client's signatures (clientauth hook, ClientToken), secret policies and policy query shapes."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from cmg_protocol import clientauth
from cmg_protocol.clientauth import ClientAuthError
from cmg_protocol.cms import CmsError, decrypt_enveloped, encrypt_enveloped
from cmg_protocol.envelope import verify_clientauth_signature
from cmg_protocol.policy import PolicyBody, PolicyFlags, policy_location, policy_query_parts
from cmg_protocol.xmlbase import MessageError

CLIENT_ID = "GUID:C66EE0FD-08E7-4B38-B282-7E6954B71139"


def _identity() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SMS")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
            .not_valid_after(dt.datetime(2120, 1, 1, tzinfo=dt.UTC)).sign(key, hashes.SHA256()))
    return key, cert


@pytest.fixture(scope="module")
def ident() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    return _identity()


@pytest.fixture(scope="module")
def other() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    return _identity()


def test_public_key_blob_has_the_cryptoapi_layout(ident: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> None:
    """PUBLICKEYBLOB: 06 02 0000, CALG_RSA_KEYX, 'RSA1', bit length, exponent, modulus little-endian."""
    key = ident[0].public_key()
    blob = bytes.fromhex(clientauth.public_key_blob(key))
    assert blob[:20] == bytes.fromhex("0602000000A40000525341310008000001000100")
    assert int.from_bytes(blob[20:], "little") == key.public_numbers().n
    assert clientauth.public_key_from_blob(blob.hex()).public_numbers() == key.public_numbers()


@pytest.mark.parametrize(("blob", "reason"), [("zz", "not hex"), ("00" * 40, "not an RSA PUBLICKEYBLOB"),
                                              ("0602000000A40000525341310008000001000100" + "00" * 10, "modulus")])
def test_bad_public_key_blobs_are_refused(blob: str, reason: str) -> None:
    with pytest.raises(ClientAuthError, match=reason):
        clientauth.public_key_from_blob(blob)


def test_hook_verifies_against_the_registered_key(ident: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> None:
    key = ident[0]
    props = clientauth.hook_properties(key, CLIENT_ID, b"payload", "DEV1")
    assert [name for name, _ in props] == ["AuthSenderMachine", "PublicKey", "ClientIDSignature", "PayloadSignature",
                                           "ClientCapabilities", "HashAlgorithm"]
    clientauth.verify_hook(props, key.public_key(), CLIENT_ID, b"payload")
    # ClientIDSignature signs the id as UTF-16LE with its NUL terminator.
    verify_clientauth_signature(key.public_key(), CLIENT_ID.encode("utf-16-le") + b"\0\0", dict(props)["ClientIDSignature"])


def test_hook_failures_name_the_part(ident: tuple[rsa.RSAPrivateKey, x509.Certificate],
                                     other: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> None:
    key, registered = ident[0], ident[0].public_key()
    props = clientauth.hook_properties(key, CLIENT_ID, b"payload", "DEV1")
    with pytest.raises(ClientAuthError, match="no clientauth hook"):
        clientauth.verify_hook((), registered, CLIENT_ID, b"payload")
    with pytest.raises(ClientAuthError, match="PayloadSignature does not verify"):
        clientauth.verify_hook(props, registered, CLIENT_ID, b"other payload")
    with pytest.raises(ClientAuthError, match="ClientIDSignature does not verify"):
        clientauth.verify_hook(props, registered, "GUID:00000000-0000-0000-0000-000000000001", b"payload")
    with pytest.raises(ClientAuthError, match="not the signing key the client registered"):
        clientauth.verify_hook(props, other[0].public_key(), CLIENT_ID, b"payload")
    # A key swapped in the hook but signatures from the registered key: the key check catches it first.
    swapped = tuple((n, clientauth.public_key_blob(other[0].public_key()) if n == "PublicKey" else v) for n, v in props)
    with pytest.raises(ClientAuthError, match="not the signing key"):
        clientauth.verify_hook(swapped, registered, CLIENT_ID, b"payload")
    without = tuple(p for p in props if p[0] != "PayloadSignature")
    with pytest.raises(ClientAuthError, match="no PayloadSignature"):
        clientauth.verify_hook(without, registered, CLIENT_ID, b"payload")


def test_client_token_is_signed_as_utf16_with_terminator(ident: tuple[rsa.RSAPrivateKey, x509.Certificate],
                                                         other: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> None:
    key = ident[0]
    token = clientauth.client_token(CLIENT_ID, 1_700_000_000)
    assert token == f"{CLIENT_ID};2023-11-14T22:13:20Z;2"
    signature = clientauth.client_token_signature(key, token)
    verify_clientauth_signature(key.public_key(), token.encode("utf-16-le") + b"\0\0", signature)
    clientauth.verify_client_token(token, signature, key.public_key())
    assert clientauth.client_token_id(token) == CLIENT_ID
    with pytest.raises(ClientAuthError, match="ClientTokenSignature does not verify"):
        clientauth.verify_client_token(token, signature, other[0].public_key())
    with pytest.raises(ClientAuthError, match="missing"):
        clientauth.verify_client_token(token, "", key.public_key())
    with pytest.raises(ClientAuthError, match="not GUID"):
        clientauth.client_token_id("nobody")


def test_secret_round_trips_only_for_its_recipient(ident: tuple[rsa.RSAPrivateKey, x509.Certificate],
                                                   other: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> None:
    """EnvelopedData: RSA key transport to the certificate, AES-256-CBC content; CR LF and NULs kept as they are."""
    plaintext = "<Policy>\r\nsecret</Policy>\0".encode("utf-16-le")
    der = encrypt_enveloped(plaintext, ident[1])
    assert bytes.fromhex("06092A864886F70D010703") in der[:16]  # id-envelopedData
    assert bytes.fromhex("060960864801650304012A") in der  # aes-256-cbc, which the public tools decrypt
    assert decrypt_enveloped(der, ident[1], ident[0]) == plaintext
    with pytest.raises(CmsError, match="does not open"):
        decrypt_enveloped(der, other[1], other[0])
    with pytest.raises(CmsError, match="not a CMS EnvelopedData"):
        decrypt_enveloped(plaintext, ident[1], ident[0])


def test_policy_locations_take_the_public_query_shapes() -> None:
    assert policy_location("{P1}", "2.00") == "http://<mp>/SMS_MP/.sms_pol?{P1}.2_00"
    digest = "ab" * 32
    assert policy_location("{P1}", "1.00", sha256=digest) == f"http://<mp>/SMS_MP/.sms_pol?{{P1}}.SHA256:{'AB' * 32}"
    assert policy_query_parts(f"{{P1}}.SHA256:{'AB' * 32}") == ("{P1}", f"SHA256:{'AB' * 32}")
    assert policy_query_parts("PRI00001-PRI00002-6F6BCC28.2_00") == ("PRI00001-PRI00002-6F6BCC28", "2_00")
    with pytest.raises(MessageError, match="64 hex"):
        policy_location("{P1}", "1.00", sha256="12")
    with pytest.raises(MessageError, match="PolicyVersion"):
        policy_location("{P1}", "1.0.0")
    with pytest.raises(MessageError, match="policy query"):
        policy_query_parts("nodot")


def test_policy_flags_carry_the_public_names() -> None:
    assert PolicyFlags.REQUIRESAUTH | PolicyFlags.SECRET == 6
    assert PolicyFlags.COMPRESSED == 0x40 and PolicyFlags.TASKSEQUENCE == 1


def test_policy_body_is_served_as_utf16_with_bom() -> None:
    body = PolicyBody("{P1}", "1.00", "x")
    data = body.to_bytes()
    assert data[:2] == b"\xff\xfe"
    assert PolicyBody.from_bytes(data) == body
    assert PolicyBody.from_bytes(data + b"\0\0") == body
    with pytest.raises(MessageError, match="byte order mark"):
        PolicyBody.from_bytes(body.to_xml().encode("utf-8"))
