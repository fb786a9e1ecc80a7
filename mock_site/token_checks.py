"""Token verification with cached keys and cached results, shared by the CMG and CCM_STS.

Verifying an RS256 signature costs ~60 µs here; a client sends the same CCM token with every request for hours, so a
verified token is remembered until it expires instead of being verified again on every request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Container, Mapping
from typing import Any

from cmg_protocol import tokens
from cmg_protocol.clock import Clock

log = logging.getLogger("mock_site.token_checks")

JwksFetcher = Callable[[], Awaitable[Mapping[str, Any]]]


class JwksCache:
    """Entra signing keys by ``kid``, fetched from the JWKS endpoint and fetched again when an unknown ``kid`` appears."""

    def __init__(self, fetch: JwksFetcher, *, clock: Clock, min_refresh_seconds: float = 10.0) -> None:
        self._fetch = fetch
        self._clock = clock
        self._min_refresh = min_refresh_seconds
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    @property
    def keys(self) -> Mapping[str, Any]:
        return self._keys

    async def refresh(self, *, force: bool = False) -> Mapping[str, Any]:
        """Fetch the JWKS unless it was fetched within the refresh floor (key rollover without a fetch storm)."""
        async with self._lock:
            now = self._clock()
            if not force and self._fetched_at is not None and now - self._fetched_at < self._min_refresh:
                return self._keys
            document = await self._fetch()
            keys: dict[str, Any] = {}
            for jwk in document.get("keys", []):
                try:
                    keys[jwk["kid"]] = tokens.public_key_from_jwk(jwk)
                except (KeyError, ValueError) as exc:
                    log.warning("ignoring a JWKS entry that is not a usable RSA key: %s", exc)
            self._keys = keys
            self._fetched_at = now
            return self._keys


class TokenCache:
    """Remembers verified token claims until the token's ``exp`` (bounded; cleared wholesale when full)."""

    def __init__(self, *, clock: Clock, max_entries: int = 200_000) -> None:
        self._clock = clock
        self._max = max_entries
        self._claims: dict[str, dict[str, Any]] = {}

    def get(self, token: str) -> dict[str, Any] | None:
        claims = self._claims.get(token)
        if claims is None:
            return None
        if claims["exp"] <= self._clock():
            del self._claims[token]
            return None
        return claims

    def put(self, token: str, claims: dict[str, Any]) -> None:
        if len(self._claims) >= self._max:
            self._claims.clear()
        self._claims[token] = claims

    def __len__(self) -> int:
        return len(self._claims)


class CcmTokenVerifier:
    """Verifies CCM tokens (signed by the site) with a result cache."""

    def __init__(self, public_keys: Mapping[str, Any], *, hierarchy_id: str, clock: Clock,
                 leeway: float = tokens.DEFAULT_LEEWAY) -> None:
        self._keys = dict(public_keys)
        self._hierarchy_id = hierarchy_id
        self._clock = clock
        self._leeway = leeway
        self._cache = TokenCache(clock=clock)

    def verify(self, token: str) -> dict[str, Any]:
        """Return the claims of a valid CCM token or raise :class:`tokens.TokenRejected`."""
        claims = self._cache.get(token)
        if claims is not None:
            return claims
        claims = tokens.verify_ccm_token(token, keys=self._keys, hierarchy_id=self._hierarchy_id,
                                         now=self._clock(), leeway=self._leeway)
        self._cache.put(token, claims)
        return claims


class EntraTokenVerifier:
    """Verifies Entra access tokens against the tenant JWKS, refreshing keys once when a ``kid`` is unknown."""

    def __init__(self, jwks: JwksCache, *, audiences: Collection[str] | str, tenants: Callable[[], Container[str]],
                 clock: Clock, leeway: float = tokens.DEFAULT_LEEWAY) -> None:
        self._jwks = jwks
        self._audiences = audiences
        self._tenants = tenants
        self._clock = clock
        self._leeway = leeway
        self._cache = TokenCache(clock=clock, max_entries=50_000)

    async def verify(self, token: str) -> dict[str, Any]:
        """Return the claims of a valid Entra token or raise :class:`tokens.TokenRejected`."""
        claims = self._cache.get(token)
        if claims is not None:
            return claims
        if not self._jwks.keys:
            await self._jwks.refresh()
        try:
            claims = self._verify_now(token)
        except tokens.TokenRejected as rejected:
            if rejected.kind != "unknown_key":
                raise
            await self._jwks.refresh()
            claims = self._verify_now(token)
        self._cache.put(token, claims)
        return claims

    def _verify_now(self, token: str) -> dict[str, Any]:
        return tokens.verify_entra_token(token, keys=self._jwks.keys, audience=self._audiences,
                                         tenants=self._tenants(), now=self._clock(), leeway=self._leeway)


#: Rejections that say a token is not a CCM token at all (another issuer's, another key's, another audience's).
FOREIGN_TOKEN_KINDS = frozenset({"issuer", "unknown_key", "audience"})


async def verify_ccm_or_entra(token: str, ccm: CcmTokenVerifier, entra: EntraTokenVerifier, *,
                              entra_allowed: bool = True) -> tuple[str, dict[str, Any]]:
    """``("ccm", claims)`` for a valid CCM token, else ``("entra", claims)`` for a valid Entra token.

    CCM-token endpoints take a CCM token; registration carries an Entra token there instead (our wire choice, as the
    protocol notes say). A token that is neither, or an Entra token where ``entra_allowed`` is False, raises
    :class:`tokens.TokenRejected`; a CCM token that fails its own checks is never retried as an Entra token.
    """
    try:
        return "ccm", ccm.verify(token)
    except tokens.TokenRejected as rejected:
        if not entra_allowed or rejected.kind not in FOREIGN_TOKEN_KINDS:
            raise
    return "entra", await entra.verify(token)
