"""Who is on the other end of a mutual-TLS hop inside the site: the CMG, a connection point, or a device.

The TLS layer of the connection point and of the MP verifies the peer's chain against the site CA before any request
is read; what is left is telling the site's own role certificates from a device's. A role certificate carries a fixed
common name with a space in it, which the CA never puts into a device certificate, and the client-auth usage.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mock_site.pki.certificates import CMG_IDENTITY_COMMON_NAME, CONNECTION_POINT_COMMON_NAME

PEER_CMG = "cmg"
PEER_CP = "cp"
PEER_DEVICE = "device"
PEER_NONE = "none"

_ROLE_NAMES = {CMG_IDENTITY_COMMON_NAME: PEER_CMG, CONNECTION_POINT_COMMON_NAME: PEER_CP}


@lru_cache(maxsize=512)
def _role_of_certificate(der: bytes) -> str:
    try:
        cert = x509.load_der_x509_certificate(der)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (ValueError, x509.ExtensionNotFound):
        return PEER_DEVICE
    if len(names) != 1 or ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        return PEER_DEVICE
    return _ROLE_NAMES.get(str(names[0].value), PEER_DEVICE)


def peer_role(der: bytes | None) -> str:
    """``cmg``, ``cp`` or ``device`` for a verified client certificate (DER); ``none`` without one.

    Cached by the certificate's bytes (bounded): the same few role certificates come with every request.
    """
    if not der:
        return PEER_NONE
    return _role_of_certificate(bytes(der))
