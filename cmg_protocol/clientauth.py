"""The signatures a registered client puts on its requests: the ``clientauth`` hook and the ``ClientToken`` headers.

A client registers a self-signed signing certificate; afterwards it signs policy traffic with that certificate's key.
Every signature is RSA PKCS#1 v1.5 over SHA-256, its bytes reversed (Windows CryptoAPI byte order), as upper-case hex.
What is signed, as the public client tools do it:

- ``ClientIDSignature``: the client id (``GUID:<id>``) as UTF-16LE with its NUL terminator;
- ``PayloadSignature``: the message's body part as sent (the zlib stream when the zlib hook is on);
- ``ClientTokenSignature``: the ``ClientToken`` header's text as UTF-16LE with its NUL terminator.

``PublicKey`` carries the signing key as a CryptoAPI ``PUBLICKEYBLOB`` in upper-case hex.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric import rsa

from .envelope import CLIENTAUTH_HOOK, EnvelopeError, clientauth_signature, verify_clientauth_signature

__all__ = [
    "CLIENTAUTH_HOOK",
    "CLIENT_TOKEN_HEADER",
    "CLIENT_TOKEN_SIGNATURE_HEADER",
    "HASH_ALGORITHM_OID",
    "ClientAuthError",
    "client_id_bytes",
    "client_token",
    "client_token_id",
    "client_token_signature",
    "hook_properties",
    "public_key_blob",
    "public_key_from_blob",
    "verify_client_token",
    "verify_hook",
]

#: RSA with SHA-256, the algorithm the hook names.
HASH_ALGORITHM_OID = "1.2.840.113549.1.1.11"
CLIENT_TOKEN_HEADER = "ClientToken"
CLIENT_TOKEN_SIGNATURE_HEADER = "ClientTokenSignature"

_BLOB_HEADER = bytes((0x06, 0x02, 0x00, 0x00)) + (0xA400).to_bytes(4, "little") + b"RSA1"  # PUBLICKEYBLOB, CALG_RSA_KEYX
_MAX_BLOB_CHARS = 2 * (len(_BLOB_HEADER) + 8 + 2048)


class ClientAuthError(ValueError):
    """A clientauth hook or ClientToken is missing, malformed or does not verify; the message says which part."""


def public_key_blob(key: rsa.RSAPublicKey) -> str:
    """The key as a CryptoAPI PUBLICKEYBLOB (header, bit length, exponent, modulus little-endian), upper-case hex."""
    numbers = key.public_numbers()
    size = (key.key_size + 7) // 8
    return (_BLOB_HEADER + key.key_size.to_bytes(4, "little") + numbers.e.to_bytes(4, "little")
            + numbers.n.to_bytes(size, "little")).hex().upper()


def public_key_from_blob(blob_hex: str) -> rsa.RSAPublicKey:
    """The RSA public key a PUBLICKEYBLOB in hex holds, or ClientAuthError naming what is wrong."""
    if len(blob_hex) > _MAX_BLOB_CHARS:
        raise ClientAuthError(f"PublicKey is {len(blob_hex)} hex characters, more than any RSA key blob")
    try:
        blob = bytes.fromhex(blob_hex)
    except ValueError:
        raise ClientAuthError(f"PublicKey is not hex: {blob_hex[:40]!r}") from None
    if blob[: len(_BLOB_HEADER)] != _BLOB_HEADER:
        raise ClientAuthError("PublicKey is not an RSA PUBLICKEYBLOB")
    rest = blob[len(_BLOB_HEADER):]
    bits = int.from_bytes(rest[:4], "little")
    exponent = int.from_bytes(rest[4:8], "little")
    modulus = rest[8:]
    if bits < 1024 or len(modulus) != (bits + 7) // 8:
        raise ClientAuthError(f"PublicKey blob holds {len(modulus)} modulus bytes for a {bits}-bit key")
    try:
        return rsa.RSAPublicNumbers(exponent, int.from_bytes(modulus, "little")).public_key()
    except ValueError as exc:
        raise ClientAuthError(f"PublicKey is not a usable RSA key: {exc}") from None


def client_id_bytes(client_id: str) -> bytes:
    """What ClientIDSignature signs: the client id as UTF-16LE, NUL-terminated."""
    return client_id.encode("utf-16-le") + b"\x00\x00"


def hook_properties(key: rsa.RSAPrivateKey, client_id: str, payload: bytes, machine: str, *,
                    public_key: str | None = None) -> tuple[tuple[str, str], ...]:
    """The clientauth hook's properties, in the order the public tools send them (``public_key``: the key's blob,
    when the caller keeps it)."""
    return (
        ("AuthSenderMachine", machine),
        ("PublicKey", public_key if public_key is not None else public_key_blob(key.public_key())),
        ("ClientIDSignature", clientauth_signature(key, client_id_bytes(client_id))),
        ("PayloadSignature", clientauth_signature(key, payload)),
        ("ClientCapabilities", "NonSSL"),
        ("HashAlgorithm", HASH_ALGORITHM_OID),
    )


def _same_key(a: rsa.RSAPublicKey, b: rsa.RSAPublicKey) -> bool:
    return a.public_numbers() == b.public_numbers()


def verify_hook(properties: Sequence[tuple[str, str]], registered: rsa.RSAPublicKey, client_id: str,
                payload: bytes) -> None:
    """Check a clientauth hook against the key the client registered; ClientAuthError names the first failure."""
    if not properties:
        raise ClientAuthError("the request carries no clientauth hook")
    props = dict(properties)
    for name in ("PublicKey", "ClientIDSignature", "PayloadSignature"):
        if not props.get(name):
            raise ClientAuthError(f"the clientauth hook has no {name}")
    algorithm = props.get("HashAlgorithm", HASH_ALGORITHM_OID)
    if algorithm != HASH_ALGORITHM_OID:
        raise ClientAuthError(f"the clientauth hook names hash algorithm {algorithm[:40]!r}, not {HASH_ALGORITHM_OID}")
    if not _same_key(public_key_from_blob(props["PublicKey"]), registered):
        raise ClientAuthError("PublicKey is not the signing key the client registered")
    try:
        verify_clientauth_signature(registered, client_id_bytes(client_id), props["ClientIDSignature"])
    except EnvelopeError:
        raise ClientAuthError("ClientIDSignature does not verify with the registered signing key") from None
    try:
        verify_clientauth_signature(registered, payload, props["PayloadSignature"])
    except EnvelopeError:
        raise ClientAuthError("PayloadSignature does not verify with the registered signing key") from None


def client_token(client_id: str, when: float) -> str:
    """The ClientToken header: ``GUID:<id>;<UTC time>;2``."""
    return f"{client_id};{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(when))};2"


def client_token_signature(key: rsa.RSAPrivateKey, token: str) -> str:
    """The ClientTokenSignature header: the token's UTF-16LE text with its NUL terminator, signed."""
    return clientauth_signature(key, client_id_bytes(token))


def client_token_id(token: str) -> str:
    """The client id a ClientToken names (its first field), or ClientAuthError."""
    client_id, separator, _ = token.partition(";")
    if not separator or client_id[:5].upper() != "GUID:":
        raise ClientAuthError(f"ClientToken is not GUID:<id>;<time>[;2]: {token[:80]!r}")
    return client_id


def verify_client_token(token: str, signature_hex: str, registered: rsa.RSAPublicKey) -> None:
    """Check ClientTokenSignature over ``token`` with the client's registered signing key."""
    client_token_id(token)
    if not signature_hex:
        raise ClientAuthError("ClientTokenSignature is missing")
    try:
        verify_clientauth_signature(registered, client_id_bytes(token), signature_hex)
    except EnvelopeError:
        raise ClientAuthError("ClientTokenSignature does not verify with the registered signing key") from None
