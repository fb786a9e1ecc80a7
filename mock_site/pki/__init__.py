"""The site's test PKI: one root CA, the role certificates it signs, the CCM token signing key, and the CRL.

- ``authority``: ``SitePki``, the CA of one site and everything it persists in its folder;
- ``certificates``: the bundles roles present, what a leaf says, and the checks on hosts, device names and URLs;
- ``revocation``: revoked serials and the CRL that lists them;
- ``files``: atomic, owner-only writes of keys and certificates.
"""

from __future__ import annotations

from mock_site.pki.authority import CA_ORGANIZATION, SitePki
from mock_site.pki.certificates import (
    CMG_IDENTITY_COMMON_NAME,
    CONNECTION_POINT_COMMON_NAME,
    DEFAULT_HOSTS,
    CertBundle,
    PkiError,
    rsa_key_thumbprint,
)
from mock_site.pki.revocation import DEFAULT_CRL_VALIDITY, RevocationList

__all__ = [
    "CA_ORGANIZATION",
    "CMG_IDENTITY_COMMON_NAME",
    "CONNECTION_POINT_COMMON_NAME",
    "DEFAULT_CRL_VALIDITY",
    "DEFAULT_HOSTS",
    "CertBundle",
    "PkiError",
    "RevocationList",
    "SitePki",
    "rsa_key_thumbprint",
]
