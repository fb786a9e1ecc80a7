"""Entra access tokens and CCM tokens: claims, issuing and full validation, failing with .NET-style IDX codes."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Container, Mapping
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

CONFIGMGR_RESOURCE = "https://ConfigMgrService"
CCM_AUDIENCE = "urn:sccm:service"
ALLOWED_ALGORITHMS = ("RS256",)
DEFAULT_LEEWAY = 300.0
#: The latest NumericDate a token may name: 9999-12-31T23:59:59Z, the end of what .NET's DateTime holds.
MAX_NUMERIC_DATE = 253_402_300_799
#: No token the site takes lives longer than this past the moment it is checked (the longest documented site token,
#: the client-unique one, is valid 90 days).
MAX_TOKEN_LIFETIME = 90 * 86400.0
TOKEN_TYPES = ("Device", "UDA")
#: The UserId a Device token carries (CCM_STS.log shows it all zeros).
NO_USER = "00000000-0000-0000-0000-000000000000"

# .NET (Microsoft.IdentityModel) codes, so CCM_STS.log lines read like the real ones.
IDX_NOT_YET_VALID = "IDX10222"
IDX_EXPIRED = "IDX10223"
IDX_AUDIENCE = "IDX10214"
IDX_ISSUER = "IDX10205"
IDX_UNKNOWN_KEY = "IDX10503"
IDX_SIGNATURE = "IDX10511"
IDX_MALFORMED = "IDX12741"
IDX_NBF_AFTER_EXP = "IDX10224"

KINDS = ("expired", "not_yet_valid", "signature", "audience", "issuer", "algorithm", "tenant", "malformed", "unknown_key")

_ENTRA_CLAIMS = ("aud", "iss", "tid", "iat", "nbf", "exp")
#: The site-token layout (the public sample bulk registration token): the category, authority, license, type, tenant
#: and unique id beside iss/aud/nbf/exp. The device, user and SMSID claims and iat are the mock's own additions.
SCCM_TOKEN_CATEGORY = "SCCMTokenCategory"
SCCM_AUTHORITY = "SCCM"
SCCM_LICENSE = "SCCM"
# synthetic: not the public ConfigMgr format (the CCM token's category value; the bulk token's is not this one)
CCM_TOKEN_CATEGORY = "ClientAuthentication"
_CCM_CLAIMS = ("aud", "iss", SCCM_TOKEN_CATEGORY, "Authority", "License", "Type", "TenantId", "UniqueId", "deviceid",
               "userid", "smsid", "iat", "nbf", "exp")
# The namespace for jti values derived from a token's contents when the caller gives none.
_JTI_NAMESPACE = uuid.UUID("6f1c2a52-3d0e-4b8e-9c57-0d1e2f3a4b5c")


class TokenRejected(Exception):
    """A token failed validation: ``code`` is the .NET IDX code, ``kind`` the category callers branch on."""

    def __init__(self, code: str, reason: str, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown token rejection kind {kind!r}")
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.kind = kind


class JwkError(ValueError):
    """A JSON Web Key (or key set) is unusable; the message names the key and the problem."""


def entra_issuer(tenant_id: str) -> str:
    """The ``iss`` of a v1 Entra access token for ``tenant_id``."""
    return f"https://sts.windows.net/{tenant_id}/"


def ccm_issuer(hierarchy_id: str) -> str:
    """The ``iss`` of a CCM token issued by the hierarchy ``hierarchy_id``."""
    return f"urn:sccm:oauth2:{hierarchy_id}"


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%m/%d/%Y %H:%M:%S")


def _sign(claims: dict[str, Any], key: rsa.RSAPrivateKey, headers: dict[str, str]) -> str:
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError(f"tokens are signed with a loaded RSA private key, got {type(key).__name__}")
    return jwt.encode(claims, key, algorithm="RS256", headers=headers)


def _check_token_type(token_type: str) -> None:
    if token_type not in TOKEN_TYPES:
        raise ValueError(f"token type must be Device or UDA, got {token_type!r}")


def issue_entra_token(
    *,
    key: rsa.RSAPrivateKey,
    kid: str,
    tenant_id: str,
    audience: str,
    appid: str,
    oid: str,
    device_id: str,
    onprem_sid: str,
    token_type: str,
    now: float,
    lifetime: float,
    issuer: str | None = None,
    x5t: str | None = None,
) -> str:
    """An RS256 v1-style Entra access token; ``issuer`` overrides the tenant's issuer (for the wrong-issuer fault)."""
    _check_token_type(token_type)
    claims = {
        "aud": audience,
        "iss": issuer if issuer is not None else entra_issuer(tenant_id),
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now + lifetime),
        "tid": tenant_id,
        "oid": oid,
        "appid": appid,
        "ver": "1.0",
        "onprem_sid": onprem_sid,
        "deviceid": device_id,
        # synthetic: not the public ConfigMgr format (Entra has no such claim; it tells the mock STS what it got)
        "token_type": token_type,
    }
    # Entra's v1 tokens carry the key's thumbprint both as kid and as x5t.
    return _sign(claims, key, {"kid": kid, "x5t": x5t if x5t is not None else kid})


def issue_ccm_token(
    *,
    key: rsa.RSAPrivateKey,
    kid: str,
    hierarchy_id: str,
    token_type: str,
    device_id: str,
    user_id: str,
    tenant_id: str,
    smsid: str,
    now: float,
    lifetime: float,
    jti: str | None = None,
    x5t: str | None = None,
) -> str:
    """An RS256 CCM token as CCM_STS issues it, in the site-token layout; ``jti`` becomes its ``UniqueId`` (derived
    from the token's contents when not given), ``x5t`` names the signing certificate (``kid`` when not given)."""
    _check_token_type(token_type)
    if jti is None:
        # Derived, not random: no hidden randomness, and two different tokens never share one.
        seed = "|".join((hierarchy_id, kid, token_type, device_id, user_id, tenant_id, smsid, repr(now), repr(lifetime)))
        jti = str(uuid.uuid5(_JTI_NAMESPACE, seed))
    # The layout of the public site token; the CCM token's exact claims are not public.
    # synthetic: not the public ConfigMgr format (Type carrying Device/UDA, and deviceid, userid, smsid and iat)
    claims = {
        SCCM_TOKEN_CATEGORY: CCM_TOKEN_CATEGORY,
        "Authority": SCCM_AUTHORITY,
        "License": SCCM_LICENSE,
        # CCM_STS.log names the token it created by this type ("Created SCCM token, token type: UDA").
        "Type": token_type,
        "TenantId": tenant_id,
        "UniqueId": jti,
        "deviceid": device_id,
        "userid": user_id,
        "smsid": smsid,
        "iss": ccm_issuer(hierarchy_id),
        "aud": CCM_AUDIENCE,
        # Millisecond precision (a JWT NumericDate may be fractional): the site tells tokens issued just before a
        # revocation from those issued just after, within the same second.
        "iat": round(now, 3),
        "nbf": int(now),
        "exp": int(now + lifetime),
    }
    # The public sample's header is typ, alg and x5t; kid (the same key id) is kept for the verifiers' key lookup.
    # synthetic: not the public ConfigMgr format (kid in a site token's header)
    return _sign(claims, key, {"typ": "JWT", "x5t": x5t if x5t is not None else kid, "kid": kid})


def peek_claims(token: str) -> dict[str, Any]:
    """The claims of a token *without* validating it: for a holder reading its own token's expiry, never for trust."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise TokenRejected(IDX_MALFORMED, f"token is not a well-formed JWS: {exc}", "malformed") from None
    return claims


def _verify_signature(token: str, keys: Mapping[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(token, str) or token.count(".") != 2:
        raise TokenRejected(IDX_MALFORMED, "JWT must have three segments (JWS)", "malformed")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenRejected(IDX_MALFORMED, f"token header cannot be read: {exc}", "malformed") from None
    alg = header.get("alg")
    # The allow-list comes first: "none" and HS256 (with the public key as the HMAC secret) never reach a verifier.
    if alg not in ALLOWED_ALGORITHMS:
        raise TokenRejected(IDX_SIGNATURE, f"alg not allowed: {alg!r} (allowed: {', '.join(ALLOWED_ALGORITHMS)})", "algorithm")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenRejected(IDX_MALFORMED, "token header has no kid", "malformed")
    key = keys.get(kid)
    if key is None:
        raise TokenRejected(
            IDX_UNKNOWN_KEY, f"Signature validation failed. The token's kid is: '{kid}', which matches no key", "unknown_key"
        )
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=list(ALLOWED_ALGORITHMS),
            # Lifetime, audience and issuer are checked below against the injected clock, with .NET's codes.
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False,
                     "verify_iss": False, "verify_sub": False, "verify_jti": False},
        )
    except jwt.InvalidSignatureError:
        raise TokenRejected(IDX_SIGNATURE, f"Signature validation failed. Keys tried: '{kid}'", "signature") from None
    except jwt.InvalidAlgorithmError as exc:
        raise TokenRejected(IDX_SIGNATURE, f"alg not allowed: {exc}", "algorithm") from None
    except jwt.PyJWTError as exc:
        raise TokenRejected(IDX_MALFORMED, f"token cannot be decoded: {exc}", "malformed") from None
    for name in required:
        if name not in claims:
            raise TokenRejected(IDX_MALFORMED, f"token is missing the {name} claim", "malformed")
    for name in ("iat", "nbf", "exp"):
        value = claims[name]
        # The range check also refuses NaN and infinities, and compares huge integers without converting them.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_NUMERIC_DATE:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
            raise TokenRejected(IDX_MALFORMED, f"claim {name} is not a NumericDate in 0..{MAX_NUMERIC_DATE}: {shown}",
                                "malformed")
    return claims


def _check_lifetime(claims: Mapping[str, Any], now: float, leeway: float) -> None:
    # The same order and skew rule as .NET's lifetime validator, plus the checks it leaves to the issuer: a token is
    # not issued in the future, does not end before it starts, and does not live absurdly long.
    if claims["nbf"] > claims["exp"]:
        raise TokenRejected(
            IDX_NBF_AFTER_EXP,
            f"Lifetime validation failed. The NotBefore: '{_utc(claims['nbf'])}' is after Expires: "
            f"'{_utc(claims['exp'])}'.",
            "malformed",
        )
    if claims["iat"] > now + leeway:
        raise TokenRejected(
            IDX_NOT_YET_VALID,
            f"Lifetime validation failed. The token was issued in the future. IssuedAt: '{_utc(claims['iat'])}', "
            f"Current time: '{_utc(now)}'.",
            "not_yet_valid",
        )
    if claims["exp"] > now + leeway + MAX_TOKEN_LIFETIME:
        raise TokenRejected(
            IDX_MALFORMED,
            f"Lifetime validation failed. The token expires more than {MAX_TOKEN_LIFETIME / 86400:.0f} days from "
            f"now. ValidTo: '{_utc(claims['exp'])}', Current time: '{_utc(now)}'.",
            "malformed",
        )
    if claims["nbf"] > now + leeway:
        raise TokenRejected(
            IDX_NOT_YET_VALID,
            f"Lifetime validation failed. The token is not yet valid. ValidFrom: '{_utc(claims['nbf'])}', "
            f"Current time: '{_utc(now)}'.",
            "not_yet_valid",
        )
    if claims["exp"] < now - leeway:
        raise TokenRejected(
            IDX_EXPIRED,
            f"Lifetime validation failed. The token is expired. ValidTo: '{_utc(claims['exp'])}', "
            f"Current time: '{_utc(now)}'.",
            "expired",
        )


def _check_audience(claims: Mapping[str, Any], audience: str | Collection[str]) -> None:
    aud = claims["aud"]
    presented = [aud] if isinstance(aud, str) else [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []
    valid = (audience,) if isinstance(audience, str) else tuple(audience)
    if not any(a in valid for a in presented):
        raise TokenRejected(
            IDX_AUDIENCE,
            f"Audience validation failed. Audiences: '{aud}'. Did not match: '{', '.join(valid)}'.",
            "audience",
        )


def _check_issuer(claims: Mapping[str, Any], expected: str) -> None:
    if claims["iss"] != expected:
        raise TokenRejected(
            IDX_ISSUER, f"Issuer validation failed. Issuer: '{claims['iss']}'. Did not match: '{expected}'.", "issuer"
        )


def verify_entra_token(
    token: str,
    *,
    keys: Mapping[str, Any],
    audience: str | Collection[str],
    tenants: Container[str],
    now: float,
    leeway: float = DEFAULT_LEEWAY,
) -> dict[str, Any]:
    """Validate an Entra token (alg, key, signature, lifetime, audience, issuer, tenant) and return its claims.

    ``audience`` is one valid audience or a collection of them (the server app's App ID URIs).
    """
    claims = _verify_signature(token, keys, _ENTRA_CLAIMS)
    _check_lifetime(claims, now, leeway)
    _check_audience(claims, audience)
    tid = claims["tid"]
    if not isinstance(tid, str):
        raise TokenRejected(IDX_MALFORMED, f"claim tid is not a string: {tid!r}", "malformed")
    _check_issuer(claims, entra_issuer(tid))
    if tid not in tenants:
        raise TokenRejected(IDX_ISSUER, f"Issuer validation failed. Tenant '{tid}' is not onboarded.", "tenant")
    return claims


def verify_ccm_token(
    token: str, *, keys: Mapping[str, Any], hierarchy_id: str, tenants: Container[str], now: float,
    leeway: float = DEFAULT_LEEWAY,
) -> dict[str, Any]:
    """Validate a CCM token (alg, key, signature, lifetime, audience, issuer, category and type, onboarded tenant);
    return its claims."""
    claims = _verify_signature(token, keys, _CCM_CLAIMS)
    _check_lifetime(claims, now, leeway)
    _check_audience(claims, CCM_AUDIENCE)
    _check_issuer(claims, ccm_issuer(hierarchy_id))
    # Another site token of the same issuer and audience (a bulk registration token) is not a CCM token.
    category, token_type = claims[SCCM_TOKEN_CATEGORY], claims["Type"]
    if category != CCM_TOKEN_CATEGORY or token_type not in TOKEN_TYPES:
        raise TokenRejected(IDX_MALFORMED, f"not a CCM token: {SCCM_TOKEN_CATEGORY} {str(category)[:40]!r}, "
                                           f"Type {str(token_type)[:40]!r}", "malformed")
    tid = claims["TenantId"]
    if not isinstance(tid, str) or tid.lower() not in tenants:
        raise TokenRejected(IDX_ISSUER, f"Issuer validation failed. Tenant {tid!r} is not onboarded.", "tenant")
    return claims


# --- JWKS ----------------------------------------------------------------------------------------------------------


def jwk_from_public_key(key: rsa.RSAPublicKey | rsa.RSAPrivateKey, kid: str) -> dict[str, str]:
    """The public JWK for ``key`` as a JWKS lists it (a private key contributes only its public half)."""
    if isinstance(key, rsa.RSAPrivateKey):
        key = key.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise TypeError(f"JWKs are made from loaded RSA keys, got {type(key).__name__}")
    jwk: dict[str, str] = dict(RSAAlgorithm.to_jwk(key, as_dict=True))
    jwk.update({"kid": kid, "x5t": kid, "use": "sig", "alg": "RS256"})
    return jwk


def public_key_from_jwk(jwk: Mapping[str, Any]) -> rsa.RSAPublicKey:
    """The RSA public key a JWK describes (only the public half, even when the JWK carries private members)."""
    kid = jwk.get("kid", "<no kid>")
    if jwk.get("kty") != "RSA":
        raise JwkError(f"JWK {kid!r} must have kty RSA, got {jwk.get('kty')!r}")
    for member in ("n", "e"):
        if not isinstance(jwk.get(member), str):
            raise JwkError(f"JWK {kid!r} is missing member {member!r}")
    public = {"kty": "RSA", "n": jwk["n"], "e": jwk["e"]}
    try:
        key = RSAAlgorithm.from_jwk(public)
    except (jwt.PyJWTError, ValueError) as exc:
        raise JwkError(f"JWK {kid!r} is not a usable RSA key: {exc}") from None
    assert isinstance(key, rsa.RSAPublicKey)  # from_jwk gives a public key when no private members are passed
    return key


def keys_from_jwks(jwks: Mapping[str, Any]) -> dict[str, rsa.RSAPublicKey]:
    """Public keys by kid from a JWKS document; keys of other types than RSA are left out."""
    entries = jwks.get("keys")
    if not isinstance(entries, list):
        raise JwkError("JWKS has no 'keys' list")
    keys: dict[str, rsa.RSAPublicKey] = {}
    for entry in entries:
        if not isinstance(entry, Mapping) or entry.get("kty") != "RSA":
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            raise JwkError("JWKS entry without a kid")
        keys[kid] = public_key_from_jwk(entry)
    return keys
