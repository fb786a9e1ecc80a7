"""Site-issued tokens for token-authenticated devices: the bulk registration token and the client-unique token.

The third way a device authenticates through a CMG (neither Entra-joined nor holding a PKI certificate): ccmsetup is
given a *bulk registration token* (``/regtoken:<token>``; 3 days by default, at most 7), which lets the device reach
the site and register; after registering, the device gets a *client-unique token* from the site, valid 90 days and
renewed monthly, and uses that through the CMG from then on.

The layout follows the public sample of a bulk registration token: an RS256 JWT with ``x5t`` in its header and the
claims ``SCCMTokenCategory``, ``Authority``, ``License``, ``Type``, ``TenantId``, ``UniqueId``, ``iss``, ``aud``,
``nbf``, ``exp``, signed by a site key. The client-unique token's claims and the token request/reply messages are
ours. Verification fails with :class:`cmg_protocol.tokens.TokenRejected` and its .NET codes, as the CCM token does.
"""

from __future__ import annotations

import uuid
from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .tokens import (
    CCM_AUDIENCE,
    IDX_AUDIENCE,
    IDX_EXPIRED,
    IDX_ISSUER,
    IDX_MALFORMED,
    IDX_NOT_YET_VALID,
    IDX_SIGNATURE,
    IDX_UNKNOWN_KEY,
    TokenRejected,
    ccm_issuer,
)
from .xmlbase import escape_attr, expect_root, parse_int, parse_xml, required_attr

DAY = 86400.0
#: The bulk registration token's lifetime: 3 days unless the administrator asks for another, at most 7.
BULK_DEFAULT_LIFETIME = 3 * DAY
BULK_MAX_LIFETIME = 7 * DAY
#: The client-unique token: valid 90 days, renewed monthly.
CLIENT_TOKEN_LIFETIME = 90 * DAY
CLIENT_TOKEN_RENEWAL = 30 * DAY

TYPE_BULK = "BulkRegistration"
TYPE_CLIENT = "ClientToken"  # synthetic: not the public ConfigMgr format (the sample shows only the bulk token's Type)
TYPES = (TYPE_BULK, TYPE_CLIENT)
#: The sample's token category; the client-unique token is taken to be of the same category [ours].
CATEGORY = "ClientAuthentication"  # synthetic: not the public ConfigMgr format (the category's value)
AUTHORITY = "SCCM"
LICENSE = "SCCM"

_CLAIMS = ("SCCMTokenCategory", "Authority", "License", "Type", "TenantId", "UniqueId", "iss", "aud", "nbf", "exp")


@dataclass(frozen=True, slots=True)
class SiteKey:
    """The site key that signs site tokens: the private key, its ``kid`` and its certificate thumbprint ``x5t``."""

    key: rsa.RSAPrivateKey
    kid: str
    x5t: str


def _sign(claims: dict[str, Any], site_key: SiteKey) -> str:
    return jwt.encode(claims, site_key.key, algorithm="RS256",
                      headers={"typ": "JWT", "kid": site_key.kid, "x5t": site_key.x5t})


def issue_bulk_token(*, site_key: SiteKey, hierarchy_id: str, tenant_id: str, now: float,
                     lifetime: float = BULK_DEFAULT_LIFETIME, unique_id: str | None = None) -> str:
    """A bulk registration token valid for ``lifetime`` seconds (3 days by default; more than 7 is refused)."""
    if not 0 < lifetime <= BULK_MAX_LIFETIME:
        raise ValueError(f"a bulk registration token lives more than 0 s and at most 7 days ({BULK_MAX_LIFETIME:.0f} s), "
                         f"got {lifetime!r}")
    return _sign(_claims(TYPE_BULK, hierarchy_id, tenant_id, unique_id or str(uuid.uuid4()), now, lifetime), site_key)


def issue_client_token(*, site_key: SiteKey, hierarchy_id: str, tenant_id: str, smsid: str, now: float,
                       lifetime: float = CLIENT_TOKEN_LIFETIME) -> str:
    """A client-unique token for the registered client ``smsid`` (its ``UniqueId``)."""
    if not smsid.startswith("GUID:"):
        raise ValueError(f"a client-unique token names a registered client (GUID:...), got {smsid!r}")
    if not 0 < lifetime <= CLIENT_TOKEN_LIFETIME:
        raise ValueError(f"a client-unique token lives at most 90 days, got {lifetime!r}")
    return _sign(_claims(TYPE_CLIENT, hierarchy_id, tenant_id, smsid, now, lifetime), site_key)


def _claims(token_type: str, hierarchy_id: str, tenant_id: str, unique_id: str, now: float,
            lifetime: float) -> dict[str, Any]:
    return {"SCCMTokenCategory": CATEGORY, "Authority": AUTHORITY, "License": LICENSE, "Type": token_type,
            "TenantId": tenant_id, "UniqueId": unique_id, "iss": ccm_issuer(hierarchy_id), "aud": CCM_AUDIENCE,
            "nbf": int(now), "exp": int(now + lifetime)}


def token_type(token: str) -> str | None:
    """The ``Type`` claim of a token *without* validating it (which verifier to hand it to), or None."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    value = claims.get("Type")
    return value if isinstance(value, str) else None


def verify_site_token(token: str, *, keys: Mapping[str, Any], hierarchy_id: str, now: float, leeway: float,
                      types: Container[str] = TYPES, revoked: Container[str] = ()) -> dict[str, Any]:
    """Validate a site token (alg, key, signature, claims, lifetime, audience, issuer, type, revocation); return its
    claims."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenRejected(IDX_MALFORMED, f"token header cannot be read: {exc}", "malformed") from None
    if header.get("alg") != "RS256":
        raise TokenRejected(IDX_SIGNATURE, f"alg not allowed: {header.get('alg')!r} (allowed: RS256)", "algorithm")
    key = keys.get(header.get("kid", ""))
    if key is None:
        raise TokenRejected(IDX_UNKNOWN_KEY, f"Signature validation failed. The token's kid is: "
                                             f"'{header.get('kid')}', which matches no key", "unknown_key")
    try:
        claims = jwt.decode(token, key, algorithms=["RS256"],
                            options={"verify_exp": False, "verify_nbf": False, "verify_aud": False,
                                     "verify_iss": False, "verify_iat": False})
    except jwt.InvalidSignatureError:
        raise TokenRejected(IDX_SIGNATURE, "Signature validation failed.", "signature") from None
    except jwt.PyJWTError as exc:
        raise TokenRejected(IDX_MALFORMED, f"token cannot be decoded: {exc}", "malformed") from None
    missing = [name for name in _CLAIMS if name not in claims]
    if missing:
        raise TokenRejected(IDX_MALFORMED, f"site token is missing {', '.join(missing)}", "malformed")
    for name in ("nbf", "exp"):
        if isinstance(claims[name], bool) or not isinstance(claims[name], (int, float)):
            raise TokenRejected(IDX_MALFORMED, f"claim {name} is not a NumericDate", "malformed")
    if claims["Type"] not in types:
        raise TokenRejected(IDX_MALFORMED, f"a {claims['Type']!r} token is not taken here", "malformed")
    if claims["aud"] != CCM_AUDIENCE:
        raise TokenRejected(IDX_AUDIENCE, f"Audience validation failed. Audiences: '{claims['aud']}'", "audience")
    if claims["iss"] != ccm_issuer(hierarchy_id):
        raise TokenRejected(IDX_ISSUER, f"Issuer validation failed. Issuer: '{claims['iss']}'", "issuer")
    if claims["nbf"] > now + leeway:
        raise TokenRejected(IDX_NOT_YET_VALID, "Lifetime validation failed. The token is not yet valid.",
                            "not_yet_valid")
    if claims["exp"] <= now - leeway:
        raise TokenRejected(IDX_EXPIRED, "Lifetime validation failed. The token is expired.", "expired")
    if claims["exp"] - claims["nbf"] > (BULK_MAX_LIFETIME if claims["Type"] == TYPE_BULK else CLIENT_TOKEN_LIFETIME):
        raise TokenRejected(IDX_MALFORMED, "the token claims a longer lifetime than the site issues", "malformed")
    if claims["UniqueId"] in revoked:
        # The administrator blocked the token (a bulk token's UniqueId, or a client's SMSID).
        raise TokenRejected(IDX_EXPIRED, f"the token {claims['UniqueId']} was blocked by the site", "expired")
    return claims


# --- the client-unique token request (MP_TokenManager) ------------------------------------------------------------
# synthetic: not the public ConfigMgr format (both messages; MP_TokenManager is the endpoint a public talk names)


@dataclass(frozen=True, slots=True)
class ClientTokenRequest:
    """``ClientTokenRequest``: a registered client asks for its (new) client-unique token."""

    ROOT: ClassVar[str] = "ClientTokenRequest"

    smsid: str

    def to_xml(self) -> str:
        return f'<{self.ROOT} SchemaVersion="1.00" SMSID="{escape_attr(self.smsid)}"/>'

    @classmethod
    def from_xml(cls, text: str) -> Self:
        root = parse_xml(text)
        expect_root(root, cls.ROOT)
        return cls(smsid=required_attr(root, "SMSID"))


@dataclass(frozen=True, slots=True)
class ClientTokenReply:
    """``ClientTokenReply``: the client-unique token and when the client renews it (epoch seconds)."""

    ROOT: ClassVar[str] = "ClientTokenReply"

    token: str
    renew_at: int

    def to_xml(self) -> str:
        return f'<{self.ROOT} Token="{escape_attr(self.token)}" RenewAt="{self.renew_at}"/>'

    @classmethod
    def from_xml(cls, text: str) -> Self:
        root = parse_xml(text)
        expect_root(root, cls.ROOT)
        return cls(token=required_attr(root, "Token"), renew_at=parse_int(required_attr(root, "RenewAt"), "RenewAt"))
