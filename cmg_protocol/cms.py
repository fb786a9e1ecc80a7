"""CMS EnvelopedData for secret policies: encrypted to the client's registered encryption certificate.

An MP returns a policy flagged Secret as a DER ``ContentInfo`` holding ``EnvelopedData``: the content key wrapped with
RSA (PKCS#1 v1.5, ``rsaEncryption``) for the certificate the client registered, the content encrypted with AES-256-CBC
(a site may also use 3DES; the public tools read both). The plaintext is the policy's UTF-16LE XML, NUL-terminated.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

__all__ = ["CmsError", "decrypt_enveloped", "encrypt_enveloped"]

#: The DER prefix of a ContentInfo whose contentType is id-envelopedData (1.2.840.113549.1.7.3), after its length.
ENVELOPED_DATA_OID = bytes.fromhex("06092A864886F70D010703")


class CmsError(ValueError):
    """An EnvelopedData cannot be made or opened; the message says why."""


def encrypt_enveloped(plaintext: bytes, recipient: x509.Certificate) -> bytes:
    """``plaintext`` as a DER ContentInfo(EnvelopedData) that only ``recipient``'s private key opens."""
    if not isinstance(recipient.public_key(), rsa.RSAPublicKey):
        raise CmsError("the recipient's encryption certificate does not hold an RSA key")
    builder = (pkcs7.PKCS7EnvelopeBuilder().set_data(plaintext).add_recipient(recipient)
               .set_content_encryption_algorithm(algorithms.AES256))
    # Binary: the bytes go in as they are (no S/MIME text canonicalisation of line ends).
    return builder.encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])


def decrypt_enveloped(data: bytes, certificate: x509.Certificate, key: rsa.RSAPrivateKey) -> bytes:
    """Open a DER ContentInfo(EnvelopedData) addressed to ``certificate`` with its private ``key``."""
    if ENVELOPED_DATA_OID not in data[:16]:
        raise CmsError("not a CMS EnvelopedData (the ContentInfo's type is not id-envelopedData)")
    try:
        return pkcs7.pkcs7_decrypt_der(data, certificate, key, [])
    except ValueError as exc:
        raise CmsError(f"EnvelopedData does not open with this certificate's key: {exc}") from None
