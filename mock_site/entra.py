"""Mock Microsoft Entra ID: per-tenant OIDC metadata, the signing keys (JWKS) and a token endpoint for devices.

The real client gets its token from WAM with the device's workplace-join credentials; that exchange is not public, so
the token endpoint here takes a plain form naming the device and user (see :func:`entra_app`). What the tokens say
(issuer, audience, claims, RS256 with kid and x5t) follows the public v1 access-token shape.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol
from urllib.parse import parse_qsl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cmg_protocol import tokens
from cmg_protocol.clock import Clock
from mock_site.config import TenantConfig

ROLE = "entra"
COMMON = "common"
#: Entra rolls its signing keys every few weeks; the previous key stays published so tokens it signed still verify.
DEFAULT_KEY_LIFETIME = 42 * 86400.0
#: How far past the validation leeway an ``entra_token_expired`` token's exp lies.
EXPIRED_MARGIN = 60.0
#: The audience of an ``entra_wrong_audience`` token: Microsoft Graph's well-known application id.
FOREIGN_AUDIENCE = "00000003-0000-0000-c000-000000000000"
GRANT_DEVICE = "device_token"  # synthetic: not the public ConfigMgr format (WAM's device grant is not public)
GRANT_USER = "user_token"  # synthetic: not the public ConfigMgr format
MAX_FORM_BYTES = 16 * 1024

# AADSTS codes with the meaning Entra gives them; the response wording is ours.
AADSTS_TENANT_NOT_FOUND = 90002
AADSTS_MISSING_PARAMETER = 900144
AADSTS_INVALID_PARAMETER = 90100
AADSTS_UNSUPPORTED_GRANT = 70003
AADSTS_RESOURCE_NOT_FOUND = 500011

#: Longest on-premises SID accepted (S-1-, an authority and at most 15 sub-authorities of 10 digits).
MAX_SID_CHARS = 184


def _is_sid(value: str) -> bool:
    """``S-1-<authority>-<sub>...``: split and checked part by part, no regular expression with repeated groups."""
    if len(value) > MAX_SID_CHARS or not value.startswith("S-1-"):
        return False
    parts = value[4:].split("-")
    return len(parts) >= 2 and all(part.isascii() and part.isdigit() for part in parts)


class TokenDefect(Enum):
    """A way a token-issuing fault spoils a token; the value is the fault's catalogue name."""

    EXPIRED = "entra_token_expired"
    BAD_SIGNATURE = "entra_bad_signature"
    WRONG_AUDIENCE = "entra_wrong_audience"
    WRONG_ISSUER = "entra_wrong_issuer"


class EntraError(ValueError):
    """A token or metadata request Entra would refuse; ``aadsts`` and ``error`` go into the JSON error body."""

    def __init__(self, aadsts: int, error: str, description: str) -> None:
        super().__init__(f"AADSTS{aadsts}: {description}")
        self.aadsts = aadsts
        self.error = error
        self.description = description

    def to_json(self) -> dict[str, Any]:
        """The error as Entra's token endpoint shapes it (error, error_description, error_codes)."""
        # synthetic: not the public ConfigMgr format (Entra's error body, trimmed to the fields clients read)
        return {"error": self.error, "error_description": str(self), "error_codes": [self.aadsts]}


class UnknownTenant(EntraError):
    """The tenant in the path (or form) is not a tenant of this mock Entra ID."""

    def __init__(self, tenant_id: str) -> None:
        super().__init__(AADSTS_TENANT_NOT_FOUND, "invalid_request", f"Tenant '{tenant_id}' not found.")


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One Entra signing key with its self-signed certificate; ``kid`` and ``x5t`` are the certificate thumbprint."""

    private_key: rsa.RSAPrivateKey
    kid: str
    cert_der: bytes
    created_at: float
    expires_at: float

    def jwk(self) -> dict[str, Any]:
        """The key as its JWKS entry, with the certificate in ``x5c`` as Entra publishes it."""
        entry: dict[str, Any] = tokens.jwk_from_public_key(self.private_key, self.kid)
        entry["x5c"] = [base64.b64encode(self.cert_der).decode("ascii")]
        return entry


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """A checked token request: whose token, for what, and the device's clock reading if it sent one."""

    tenant_id: str
    token_type: str  # "Device" or "UDA", the TokenType CCM_STS logs
    device_id: str
    oid: str
    appid: str
    resource: str
    onprem_sid: str
    device_time: float | None


class ActiveFaultLike(Protocol):
    """The part of an active fault the Entra app reads (nothing but its presence today)."""

    @property
    def params(self) -> Mapping[str, Any]: ...


class FaultSource(Protocol):
    """Anything that says whether a fault hits this request (``mock_site.faults.FaultRegistry`` does)."""

    def trigger(self, name: str, role: str) -> ActiveFaultLike | None: ...


class EntraIssuer:
    """The tenants, signing keys and token minting of the mock Entra ID; time comes from the injected clock."""

    def __init__(
        self,
        clock: Clock,
        rng: random.Random,
        *,
        tenants: Sequence[TenantConfig],
        lifetime: float,
        key_lifetime: float = DEFAULT_KEY_LIFETIME,
        on_mint: Callable[[], None] | None = None,
    ) -> None:
        if not tenants:
            raise ValueError("the mock Entra ID needs at least one tenant, got none")
        if not (lifetime > 0 and math.isfinite(lifetime)):
            raise ValueError(f"Entra token lifetime must be > 0 s, got {lifetime!r}")
        if not (key_lifetime > 0 and math.isfinite(key_lifetime)):
            raise ValueError(f"Entra key lifetime must be > 0 s, got {key_lifetime!r}")
        self._clock = clock
        self._rng = rng
        #: Called once per token signed (the site counts Entra tokens issued in its metrics).
        self.on_mint = on_mint
        self.lifetime = float(lifetime)
        self.key_lifetime = float(key_lifetime)
        self._tenants = {tenant.tenant_id.lower(): tenant for tenant in tenants}
        self._current = self._new_key()
        self._previous: SigningKey | None = None
        # Never published: tokens it signs carry the real kid and so fail signature validation (entra_bad_signature).
        self._rogue_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    # ------------------------------------------------------------------ keys
    @property
    def current_key(self) -> SigningKey:
        """The key new tokens are signed with, rolled over once its lifetime has passed."""
        if self._clock() >= self._current.expires_at:
            self.rotate_keys()
        return self._current

    def rotate_keys(self) -> SigningKey:
        """Start signing with a new key; the old one stays in the JWKS until the next rollover."""
        self._previous, self._current = self._current, self._new_key()
        return self._current

    def signing_keys(self) -> list[SigningKey]:
        """The published keys, current first."""
        current = self.current_key
        return [current] if self._previous is None else [current, self._previous]

    def public_keys(self) -> dict[str, rsa.RSAPublicKey]:
        """The published public keys by kid (what a verifier gets from the JWKS)."""
        return {key.kid: key.private_key.public_key() for key in self.signing_keys()}

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set every tenant's ``jwks_uri`` serves."""
        return {"keys": [key.jwk() for key in self.signing_keys()]}

    def _new_key(self) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = self._clock()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "accounts.accesscontrol.windows.net")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            # Serials from the injected generator keep a seeded run reproducible; nothing trusts these certificates.
            .serial_number(self._rng.getrandbits(127) | 1)
            .not_valid_before(_utc(now))
            .not_valid_after(_utc(now + self.key_lifetime))
            .sign(key, hashes.SHA256())
        )
        der = cert.public_bytes(serialization.Encoding.DER)
        # Entra's kid and x5t are both the base64url SHA-1 thumbprint of the key's certificate.
        thumbprint = base64.urlsafe_b64encode(cert.fingerprint(hashes.SHA1())).rstrip(b"=").decode("ascii")
        return SigningKey(key, thumbprint, der, now, now + self.key_lifetime)

    # --------------------------------------------------------------- tenants
    def tenant(self, tenant_id: str) -> TenantConfig:
        """The tenant ``tenant_id`` (any case), or :class:`UnknownTenant`."""
        tenant = self._tenants.get(tenant_id.lower()) if isinstance(tenant_id, str) else None
        if tenant is None:
            raise UnknownTenant(str(tenant_id))
        return tenant

    def openid_configuration(self, tenant_id: str, base_url: str) -> dict[str, Any]:
        """The tenant's OIDC discovery document; ``common`` gets the templated issuer Entra publishes there."""
        base = base_url.rstrip("/")
        if tenant_id.lower() == COMMON:
            path, issuer = COMMON, tokens.entra_issuer("{tenantid}")
        else:
            tid = self.tenant(tenant_id).tenant_id
            path, issuer = tid, tokens.entra_issuer(tid)
        return {
            "issuer": issuer,
            "jwks_uri": f"{base}/{path}/discovery/keys",
            "token_endpoint": f"{base}/{path}/oauth2/token",
            # Listed because OIDC metadata requires it; devices never use an interactive flow against the mock.
            "authorization_endpoint": f"{base}/{path}/oauth2/authorize",
            "id_token_signing_alg_values_supported": list(tokens.ALLOWED_ALGORITHMS),
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
            "subject_types_supported": ["pairwise"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "tenant_region_scope": "NA",
        }

    # ---------------------------------------------------------------- tokens
    def token_request(
        self,
        tenant_id: str,
        device_id: str,
        *,
        client_id: str,
        user_oid: str | None = None,
        resource: str = tokens.CONFIGMGR_RESOURCE,
        onprem_sid: str = "",
        device_time: float | None = None,
    ) -> TokenRequest:
        """Check a token request as Entra would (tenant, GUIDs, resource, SID, time) and return it normalised."""
        tenant = self.tenant(tenant_id)
        device = _guid("device_id", device_id)
        appid = _guid("client_id", client_id)
        user = _guid("user_oid", user_oid) if user_oid is not None else None
        if resource not in (tokens.CONFIGMGR_RESOURCE, tenant.resource_uri):
            raise EntraError(
                AADSTS_RESOURCE_NOT_FOUND,
                "invalid_resource",
                f"The resource principal named {resource!r} was not found in the tenant '{tenant.tenant_id}'.",
            )
        if onprem_sid and not (isinstance(onprem_sid, str) and _is_sid(onprem_sid)):
            raise EntraError(AADSTS_INVALID_PARAMETER, "invalid_request", f"onprem_sid is not a SID: {onprem_sid!r}")
        if device_time is not None and (
            isinstance(device_time, bool)
            or not isinstance(device_time, (int, float))
            or not (math.isfinite(device_time) and device_time > 0)
        ):
            raise EntraError(
                AADSTS_INVALID_PARAMETER, "invalid_request", f"device_time is not epoch seconds: {device_time!r}"
            )
        return TokenRequest(
            tenant_id=tenant.tenant_id,
            token_type="Device" if user is None else "UDA",
            device_id=device,
            # A device token's subject is the device; a UDA token's is the user.
            oid=device if user is None else user,
            appid=appid,
            resource=resource,
            onprem_sid=onprem_sid,
            device_time=None if device_time is None else float(device_time),
        )

    def mint(self, request: TokenRequest, defect: TokenDefect | None = None) -> str:
        """Sign the token for a checked request, spoiled the way ``defect`` says."""
        now = self._clock()
        if self.on_mint is not None:
            self.on_mint()
        # In this model Entra stamps the token from the device's assertion time, so a skewed device clock reaches
        # CCM_STS as a token that is not yet valid (IDX10222) or already expired (IDX10223).
        issued_at = request.device_time if request.device_time is not None else now
        signing = self.current_key
        key, audience, issuer = signing.private_key, request.resource, None
        if defect is TokenDefect.EXPIRED:
            issued_at = now - self.lifetime - tokens.DEFAULT_LEEWAY - EXPIRED_MARGIN
        elif defect is TokenDefect.BAD_SIGNATURE:
            key = self._rogue_key
        elif defect is TokenDefect.WRONG_AUDIENCE:
            audience = FOREIGN_AUDIENCE
        elif defect is TokenDefect.WRONG_ISSUER:
            # A v2.0 issuer for the same tenant: the look of a token minted for another kind of app.
            issuer = f"https://login.microsoftonline.com/{request.tenant_id}/v2.0"
        return tokens.issue_entra_token(
            key=key,
            kid=signing.kid,
            tenant_id=request.tenant_id,
            audience=audience,
            appid=request.appid,
            oid=request.oid,
            device_id=request.device_id,
            onprem_sid=request.onprem_sid,
            token_type=request.token_type,
            now=issued_at,
            lifetime=self.lifetime,
            issuer=issuer,
        )

    def device_token(
        self,
        tenant_id: str,
        device_id: str,
        *,
        client_id: str,
        resource: str = tokens.CONFIGMGR_RESOURCE,
        onprem_sid: str = "",
        device_time: float | None = None,
        defect: TokenDefect | None = None,
    ) -> str:
        """A device token (TokenType ``Device``): the device is the subject, no user."""
        request = self.token_request(
            tenant_id, device_id, client_id=client_id, resource=resource, onprem_sid=onprem_sid, device_time=device_time
        )
        return self.mint(request, defect)

    def user_token(
        self,
        tenant_id: str,
        device_id: str,
        user_oid: str,
        *,
        client_id: str,
        resource: str = tokens.CONFIGMGR_RESOURCE,
        onprem_sid: str = "",
        device_time: float | None = None,
        defect: TokenDefect | None = None,
    ) -> str:
        """A user-on-device token (TokenType ``UDA``): the user is the subject, the device is named too."""
        request = self.token_request(
            tenant_id,
            device_id,
            client_id=client_id,
            user_oid=user_oid,
            resource=resource,
            onprem_sid=onprem_sid,
            device_time=device_time,
        )
        return self.mint(request, defect)


def entra_app(issuer: EntraIssuer, *, faults: FaultSource) -> Starlette:
    """The mock Entra ID as an ASGI app: OIDC metadata, JWKS, and ``POST /{tenant}/oauth2/token``.

    Token request form (synthetic: not the public ConfigMgr format; WAM's real exchange is not public):
    ``grant_type`` (``device_token`` | ``user_token``), ``resource``, ``client_id``, ``device_id``, ``user_oid`` (user
    tokens), ``onprem_sid`` (optional), ``device_time`` (optional, the device clock in epoch seconds), and ``tenant_id``
    when posting to ``/common/oauth2/token``.
    """

    async def openid_configuration(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        base_url = str(request.base_url).rstrip("/")
        try:
            return JSONResponse(issuer.openid_configuration(tenant, base_url))
        except EntraError as exc:
            return JSONResponse(exc.to_json(), status_code=400)

    async def keys(request: Request) -> Response:
        tenant = request.path_params.get("tenant", COMMON)
        if tenant.lower() != COMMON:
            try:
                issuer.tenant(tenant)
            except EntraError as exc:
                return JSONResponse(exc.to_json(), status_code=400)
        return JSONResponse(issuer.jwks())

    async def token(request: Request) -> Response:
        try:
            form = await _read_form(request)
            access_token, resource = _token_for(issuer, request.path_params["tenant"], form, faults)
        except EntraError as exc:
            return JSONResponse(exc.to_json(), status_code=400)
        body = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": int(issuer.lifetime),
            "resource": resource,
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return Starlette(
        routes=[
            Route("/common/discovery/keys", keys, methods=["GET"]),
            Route("/{tenant}/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
            Route("/{tenant}/discovery/keys", keys, methods=["GET"]),
            Route("/{tenant}/oauth2/token", token, methods=["POST"]),
        ]
    )


_DEFECT_ORDER = (TokenDefect.EXPIRED, TokenDefect.BAD_SIGNATURE, TokenDefect.WRONG_AUDIENCE, TokenDefect.WRONG_ISSUER)


def _token_for(issuer: EntraIssuer, tenant: str, form: Mapping[str, str], faults: FaultSource) -> tuple[str, str]:
    """Check a token request form and mint the token, spoiled by the first token fault this request draws."""
    grant = form.get("grant_type", "")
    on_common = tenant.lower() == COMMON
    required = ["grant_type", "resource", "client_id", "device_id"]
    required += ["user_oid"] if grant == GRANT_USER else []
    required += ["tenant_id"] if on_common else []
    missing = [name for name in required if not form.get(name)]
    if missing:
        names = ", ".join(f"'{name}'" for name in missing)
        raise EntraError(
            AADSTS_MISSING_PARAMETER,
            "invalid_request",
            f"The request body must contain the following parameter: {names}.",
        )
    if grant not in (GRANT_DEVICE, GRANT_USER):
        raise EntraError(
            AADSTS_UNSUPPORTED_GRANT, "unsupported_grant_type", f"The grant type {grant!r} is not supported."
        )
    request = issuer.token_request(
        form["tenant_id"] if on_common else tenant,
        form["device_id"],
        client_id=form["client_id"],
        user_oid=form["user_oid"] if grant == GRANT_USER else None,
        resource=form["resource"],
        onprem_sid=form.get("onprem_sid", ""),
        device_time=_device_time(form.get("device_time")),
    )
    # Faults are drawn only for requests Entra would serve, so a refused request never counts as an injection.
    defect = next((d for d in _DEFECT_ORDER if faults.trigger(d.value, ROLE) is not None), None)
    return issuer.mint(request, defect), request.resource


def _device_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise EntraError(AADSTS_INVALID_PARAMETER, "invalid_request", f"device_time is not epoch seconds: {value!r}")
    return seconds


async def _read_form(request: Request) -> dict[str, str]:
    """The urlencoded form of a token request, size-limited (Starlette's own form parser needs an extra package)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise EntraError(
            AADSTS_INVALID_PARAMETER,
            "invalid_request",
            f"content type must be application/x-www-form-urlencoded, got {content_type or 'none'!r}",
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise EntraError(
                AADSTS_INVALID_PARAMETER, "invalid_request", f"request body is over {MAX_FORM_BYTES} bytes"
            )
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise EntraError(AADSTS_INVALID_PARAMETER, "invalid_request", "request body is not UTF-8") from None
    return dict(pairs)


def _guid(field: str, value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise EntraError(AADSTS_INVALID_PARAMETER, "invalid_request", f"{field} is not a GUID: {value!r}") from None


def _utc(epoch_seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch_seconds, tz=dt.UTC)
