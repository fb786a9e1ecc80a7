"""The JWKS cache's refresh floor and the verifiers' result caches (the mutation runner found them unguarded)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cmg_protocol.clock import FakeClock
from cmg_protocol.tokens import CONFIGMGR_RESOURCE, TokenRejected, jwk_from_public_key
from mock_site.token_checks import CcmTokenVerifier, EntraTokenVerifier, JwksCache
from tests.trust.test_token_trust import HIERARCHY, KID, NOW, TENANT, ccm, entra


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Jwks:
    """A JWKS endpoint that counts fetches and serves what the test puts in it."""

    def __init__(self, *keys: rsa.RSAPrivateKey) -> None:
        self.documents = [{"keys": [jwk_from_public_key(k, KID) for k in keys]}]
        self.fetches = 0

    async def __call__(self) -> dict[str, Any]:
        self.fetches += 1
        return self.documents[-1]


def test_the_jwks_is_fetched_again_only_after_the_ten_second_floor(key: rsa.RSAPrivateKey) -> None:
    """Within 10 s a refresh answers from memory; at 10 s it fetches; ``force`` fetches at once."""
    clock, jwks = FakeClock(NOW), Jwks(key)
    cache = JwksCache(jwks, clock=clock)
    assert KID in asyncio.run(cache.refresh()) and jwks.fetches == 1
    clock.advance(9.9)
    assert KID in asyncio.run(cache.refresh()) and jwks.fetches == 1
    clock.advance(0.1)
    asyncio.run(cache.refresh())
    assert jwks.fetches == 2
    assert KID in asyncio.run(cache.refresh(force=True)) and jwks.fetches == 3
    assert set(cache.keys) == {KID}


def test_unusable_jwks_entries_are_left_out(key: rsa.RSAPrivateKey) -> None:
    """An entry that is not an RSA key (or has no kid) is ignored; the usable ones are kept."""
    jwks = Jwks(key)
    jwks.documents.append({"keys": [{"kty": "EC", "kid": "ec"}, {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
                                     jwk_from_public_key(key, KID)]})
    assert set(asyncio.run(JwksCache(jwks, clock=FakeClock()).refresh())) == {KID}


def test_a_cached_token_is_answered_from_the_cache(key: rsa.RSAPrivateKey) -> None:
    """The second verify of the same token returns the same claims without verifying again."""
    clock = FakeClock(NOW)
    verifier = CcmTokenVerifier({KID: key.public_key()}, hierarchy_id=HIERARCHY, tenants=lambda: {TENANT},
                                clock=clock)
    token = ccm(key)
    first = verifier.verify(token)
    verifier._keys.clear()  # a second full verification would now fail: only the cache can answer
    assert verifier.verify(token) is first


def test_a_cached_entra_token_is_answered_from_the_cache(key: rsa.RSAPrivateKey) -> None:
    """Same for the Entra verifier: no second JWKS fetch, the same claims."""
    clock, jwks = FakeClock(NOW), Jwks(key)
    verifier = EntraTokenVerifier(JwksCache(jwks, clock=clock), audiences=[CONFIGMGR_RESOURCE],
                                  tenants=lambda: {TENANT}, clock=clock)
    token = entra(key)
    first = asyncio.run(verifier.verify(token))
    jwks.documents.append({"keys": []})
    clock.advance(60)
    assert asyncio.run(verifier.verify(token)) is first and jwks.fetches == 1


def test_the_ccm_verifier_never_takes_an_entra_token(key: rsa.RSAPrivateKey) -> None:
    """One kind of token per verifier: a valid Entra token (even signed with the site's key) is not a CCM token."""
    clock = FakeClock(NOW)
    ccm_verifier = CcmTokenVerifier({KID: key.public_key()}, hierarchy_id=HIERARCHY, tenants=lambda: {TENANT},
                                    clock=clock)
    entra_verifier = EntraTokenVerifier(JwksCache(Jwks(key), clock=clock), audiences=[CONFIGMGR_RESOURCE],
                                        tenants=lambda: {TENANT}, clock=clock)
    token = entra(key)
    assert asyncio.run(entra_verifier.verify(token))["tid"] == TENANT
    with pytest.raises(TokenRejected):
        ccm_verifier.verify(token)
