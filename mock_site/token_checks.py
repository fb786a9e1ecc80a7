"""Token verification with cached keys and cached results, shared by the CMG and CCM_STS.

Verifying an RS256 signature costs ~60 µs here; a client sends the same CCM token with every request for hours, so a
verified token is remembered until it expires instead of being verified again on every request. Each verifier takes
one kind of token only: a CCM token is never tried as an Entra token or the other way round, so an endpoint that needs
a CCM token cannot be opened with an Entra token.
"""

from __future__ import annotations

import asyncio
import heapq
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


#: What one cached token costs beyond the token text itself: the claims dict with its ~11 short strings, the heap
#: entry and the dict slot (measured with tracemalloc: ~1.3 KiB; rounded up).
ENTRY_OVERHEAD_BYTES = 1536


class TokenCache:
    """Remembers verified token claims until the token's ``exp``; bounded by entries and by approximate bytes.

    Entries leave in expiry order: a heap by ``exp`` is swept on every store, so expired tokens do not linger until
    they are looked up again, and when a bound is reached the entries closest to their expiry make room (never the
    whole cache at once).
    """

    def __init__(self, *, clock: Clock, max_entries: int = 50_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError(f"token cache bounds must be >= 1, got {max_entries!r} entries, {max_bytes!r} bytes")
        self._clock = clock
        self._max = max_entries
        self._max_bytes = max_bytes
        self._claims: dict[str, dict[str, Any]] = {}
        self._by_expiry: list[tuple[float, str]] = []
        self._bytes = 0

    def get(self, token: str) -> dict[str, Any] | None:
        claims = self._claims.get(token)
        if claims is None or claims["exp"] <= self._clock():
            return None  # an expired entry goes at the next sweep
        return claims

    def put(self, token: str, claims: dict[str, Any]) -> None:
        now = self._clock()
        self.sweep(now)
        exp = float(claims["exp"])
        if exp <= now or token in self._claims:
            return  # nothing to remember (in the leeway after exp), or already remembered until the same exp
        cost = len(token) + ENTRY_OVERHEAD_BYTES
        while self._by_expiry and (len(self._claims) >= self._max or self._bytes + cost > self._max_bytes):
            self._evict_next()
        self._claims[token] = claims
        heapq.heappush(self._by_expiry, (exp, token))
        self._bytes += cost

    def sweep(self, now: float | None = None) -> int:
        """Drop every entry whose ``exp`` has passed; returns how many went."""
        now = self._clock() if now is None else now
        dropped = 0
        while self._by_expiry and self._by_expiry[0][0] <= now:
            self._evict_next()
            dropped += 1
        return dropped

    def _evict_next(self) -> None:
        _, token = heapq.heappop(self._by_expiry)
        del self._claims[token]
        self._bytes -= len(token) + ENTRY_OVERHEAD_BYTES

    @property
    def approximate_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._claims)


class CcmTokenVerifier:
    """Verifies CCM tokens (signed by the site) with a result cache."""

    def __init__(self, public_keys: Mapping[str, Any], *, hierarchy_id: str, tenants: Callable[[], Container[str]],
                 clock: Clock, leeway: float = tokens.DEFAULT_LEEWAY) -> None:
        self._keys = dict(public_keys)
        self._hierarchy_id = hierarchy_id
        self._tenants = tenants
        self._clock = clock
        self._leeway = leeway
        self._cache = TokenCache(clock=clock)

    @property
    def cache(self) -> TokenCache:
        return self._cache

    def verify(self, token: str) -> dict[str, Any]:
        """Return the claims of a valid CCM token or raise :class:`tokens.TokenRejected`."""
        claims = self._cache.get(token)
        if claims is not None:
            return claims
        claims = tokens.verify_ccm_token(token, keys=self._keys, hierarchy_id=self._hierarchy_id,
                                         tenants=self._tenants(), now=self._clock(), leeway=self._leeway)
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
        self._cache = TokenCache(clock=clock, max_entries=20_000, max_bytes=32 * 1024 * 1024)

    @property
    def cache(self) -> TokenCache:
        return self._cache

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
