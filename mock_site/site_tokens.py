"""Token-authenticated devices at the site: bulk registration tokens, client-unique tokens, and checking both.

- :class:`SiteTokenIssuer` issues the bulk registration token an administrator hands to ccmsetup (``/regtoken``), keeps
  the list of blocked tokens, and issues client-unique tokens to registered clients.
- :class:`SiteTokenVerifier` stands where the CCM token verifier stands (at the CMG and the MP): a site token is checked
  as one (with the ``bulk_token_expired`` and ``bulk_token_revoked`` faults at the CMG), anything else goes to the CCM
  token verifier; either way the caller gets claims of the CCM token's shape (``token_type``, ``smsid``, ``tid``).
- :class:`TokenManager` answers ``MP_TokenManager``: a client registered with a bulk token (or renewing) gets its
  client-unique token.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from cmg_protocol import site_tokens, tokens
from cmg_protocol.clock import Clock
from cmg_protocol.site_tokens import ClientTokenReply, ClientTokenRequest, SiteKey
from cmg_protocol.xmlbase import MessageError

#: Verified site tokens kept (by token text) so a token device's requests are not each verified again.
SITE_TOKEN_CACHE_ENTRIES = 10_000
#: Where the site keeps the bulk registration token it hands out (as an administrator's tool would write it).
BULK_TOKEN_NAME = "bulk-registration.token"


def site_key_of(pki: Any) -> SiteKey:
    """The site's token signing key (the CCM signing key), with ``x5t`` from its certificate."""
    cert = x509.load_pem_x509_certificate(pki.ccm_signing_cert_pem)
    x5t = base64.urlsafe_b64encode(hashlib.sha1(cert.public_bytes(Encoding.DER)).digest()).rstrip(b"=").decode()
    return SiteKey(key=pki.ccm_signing_key, kid=pki.ccm_signing_kid, x5t=x5t)


class SiteTokenIssuer:
    """Issues and blocks site tokens; ``scaled`` turns site seconds into real seconds (the site's time scale)."""

    def __init__(self, *, site_key: SiteKey, hierarchy_id: str, tenant_id: str, clock: Clock,
                 scaled: Callable[[float], float], db: Any) -> None:
        self.site_key = site_key
        self.hierarchy_id = hierarchy_id
        self.tenant_id = tenant_id
        self.clock = clock
        self.scaled = scaled
        self.db = db
        self.revoked: set[str] = set()

    def bulk_token(self, lifetime_site_seconds: float = site_tokens.BULK_DEFAULT_LIFETIME) -> str:
        """A new bulk registration token (3 days of site time by default; more than 7 days is refused)."""
        if not 0 < lifetime_site_seconds <= site_tokens.BULK_MAX_LIFETIME:
            raise ValueError(f"a bulk registration token lives at most 7 days, got {lifetime_site_seconds!r} s")
        return site_tokens.issue_bulk_token(site_key=self.site_key, hierarchy_id=self.hierarchy_id,
                                            tenant_id=self.tenant_id, now=self.clock(),
                                            lifetime=self.scaled(lifetime_site_seconds))

    def write_bulk_token(self, path: Path) -> str:
        """Issue a bulk registration token and write it to ``path`` (owner-only), as the administrator's tool does."""
        token = self.bulk_token()
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(token)
        tmp.chmod(0o600)
        tmp.replace(path)
        return token

    def block(self, unique_id: str) -> None:
        """Block a token by its ``UniqueId`` (a bulk token's id, or a client's SMSID): the site takes it no more."""
        self.revoked.add(unique_id)

    def client_token(self, smsid: str) -> ClientTokenReply:
        """A client-unique token for ``smsid``, with the time its holder renews it (after a month of site time)."""
        now = self.clock()
        token = site_tokens.issue_client_token(site_key=self.site_key, hierarchy_id=self.hierarchy_id,
                                               tenant_id=self.tenant_id, smsid=smsid, now=now,
                                               lifetime=self.scaled(site_tokens.CLIENT_TOKEN_LIFETIME))
        return ClientTokenReply(token=token, renew_at=int(now + self.scaled(site_tokens.CLIENT_TOKEN_RENEWAL)))


class SiteTokenVerifier:
    """The CCM token verifier, widened to site tokens; ``faults`` (with ``role``) applies the bulk token faults."""

    def __init__(self, ccm_verifier: Any, issuer: SiteTokenIssuer, *, leeway: float, faults: Any = None,
                 role: str = "cmg") -> None:
        self.ccm_verifier = ccm_verifier
        self.issuer = issuer
        self.leeway = leeway
        self.faults = faults
        self.role = role
        self._keys = {issuer.site_key.kid: issuer.site_key.key.public_key()}
        self._cache: dict[str, dict[str, Any]] = {}

    def verify(self, token: str) -> dict[str, Any]:
        # CCM tokens are nearly all the traffic: they go first, at the cost they always had (the CCM verifier's
        # cache); only a token it refuses is looked at as a site token.
        try:
            return self.ccm_verifier.verify(token)  # type: ignore[no-any-return]
        except tokens.TokenRejected:
            kind = site_tokens.token_type(token)
            if kind not in site_tokens.TYPES:
                raise
        return self._verify_site_token(token, kind)

    def _verify_site_token(self, token: str, kind: str | None) -> dict[str, Any]:
        issuer = self.issuer
        now = issuer.clock()
        claims = self._cache.get(token)
        if claims is None or claims["exp"] <= now - self.leeway:
            claims = site_tokens.verify_site_token(token, keys=self._keys, hierarchy_id=issuer.hierarchy_id,
                                                   now=now, leeway=self.leeway, revoked=issuer.revoked)
            if len(self._cache) >= SITE_TOKEN_CACHE_ENTRIES:
                self._cache.clear()  # bounded: a token device sends the same token for a month; refilling is cheap
            self._cache[token] = claims
        elif claims["UniqueId"] in issuer.revoked:  # blocked since it was cached
            raise tokens.TokenRejected(tokens.IDX_EXPIRED, f"the token {claims['UniqueId']} was blocked by the site",
                                       "expired")
        if kind == site_tokens.TYPE_BULK and self.faults is not None:
            if self.faults.trigger("bulk_token_expired", self.role) is not None:
                raise tokens.TokenRejected(tokens.IDX_EXPIRED, "the bulk registration token expired "
                                                               "(fault bulk_token_expired)", "expired")
            if self.faults.trigger("bulk_token_revoked", self.role) is not None:
                raise tokens.TokenRejected(tokens.IDX_EXPIRED, "the bulk registration token was blocked "
                                                               "(fault bulk_token_revoked)", "expired")
        # The CCM token's shape, so every caller reads who it is the same way.
        return {"token_type": kind, "tid": claims["TenantId"], "deviceid": "",
                "smsid": claims["UniqueId"] if kind == site_tokens.TYPE_CLIENT else "",
                "unique_id": claims["UniqueId"], "iat": claims["nbf"], "nbf": claims["nbf"], "exp": claims["exp"]}


class TokenManager:
    """``MP_TokenManager``: the client-unique token for a registered client that asks with its bulk or own token."""

    def __init__(self, issuer: SiteTokenIssuer) -> None:
        self.issuer = issuer

    def reply(self, body_xml: str, claims: dict[str, Any] | None) -> str:
        request = ClientTokenRequest.from_xml(body_xml)
        claims = claims or {}
        kind = claims.get("token_type")
        if kind == site_tokens.TYPE_CLIENT:
            if str(claims.get("smsid", "")).upper() != request.smsid.upper():
                raise MessageError("a client-unique token renews only its own client")
        elif kind != site_tokens.TYPE_BULK:
            raise MessageError("MP_TokenManager issues client-unique tokens to token-authenticated clients only")
        record = self.issuer.db.client(request.smsid)
        if record is None:
            raise MessageError(f"client {request.smsid[:60]!r} is not registered")
        return self.issuer.client_token(record.smsid).to_xml()
