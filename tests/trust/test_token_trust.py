"""Token trust at its edges: exact audiences, lifetime boundaries, cached tokens expiring, and a time-scaled leeway."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cmg_protocol.clock import FakeClock
from cmg_protocol.tokens import (
    CCM_AUDIENCE,
    CONFIGMGR_RESOURCE,
    DEFAULT_LEEWAY,
    TokenRejected,
    issue_ccm_token,
    issue_entra_token,
    jwk_from_public_key,
    verify_ccm_token,
    verify_entra_token,
)
from mock_site.config import DEFAULT_CLIENT_APP_ID, HOURS, SiteConfig
from mock_site.site import Site
from mock_site.token_checks import CcmTokenVerifier, EntraTokenVerifier, JwksCache, TokenCache

TENANT = "2ca9a796-a1a6-43ec-88f1-5935b32155c5"
HIERARCHY = "8ed3174b-e814-41b5-b51c-fb368f0d4003"
NOW = 1_700_000_000.0
KID = "k1"
#: The site-token layout claims every hand-made CCM token here carries.
CCM_LAYOUT = {"SCCMTokenCategory": "ClientAuthentication", "Authority": "SCCM", "License": "SCCM"}


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ccm(key: rsa.RSAPrivateKey, **overrides: Any) -> str:
    args: dict[str, Any] = {"key": key, "kid": KID, "hierarchy_id": HIERARCHY, "token_type": "Device",
                            "device_id": "GUID:1", "user_id": "u", "tenant_id": TENANT, "smsid": "GUID:1",
                            "now": NOW, "lifetime": 3600.0}
    return issue_ccm_token(**{**args, **overrides})


def entra(key: rsa.RSAPrivateKey, **overrides: Any) -> str:
    args: dict[str, Any] = {"key": key, "kid": KID, "tenant_id": TENANT, "audience": CONFIGMGR_RESOURCE,
                            "appid": "a", "oid": "o", "device_id": "d", "onprem_sid": "S-1", "token_type": "UDA",
                            "now": NOW, "lifetime": 3600.0}
    return issue_entra_token(**{**args, **overrides})


def check_ccm(token: str, key: rsa.RSAPrivateKey, *, now: float = NOW, leeway: float = DEFAULT_LEEWAY) -> dict[str, Any]:
    return verify_ccm_token(token, keys={KID: key.public_key()}, hierarchy_id=HIERARCHY, tenants={TENANT}, now=now,
                            leeway=leeway)


def check_entra(token: str, key: rsa.RSAPrivateKey, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"keys": {KID: key.public_key()}, "audience": CONFIGMGR_RESOURCE, "tenants": {TENANT},
                            "now": NOW}
    return verify_entra_token(token, **{**args, **overrides})


# --- audience: exact match only -----------------------------------------------------------------------------------


def _forged_ccm(key: rsa.RSAPrivateKey, aud: Any) -> str:
    """A CCM token signed by the site's own key but carrying ``aud`` (what a bug in issuing could produce)."""
    import jwt

    claims = {"iss": f"urn:sccm:oauth2:{HIERARCHY}", "aud": aud, **CCM_LAYOUT, "Type": "Device", "deviceid": "GUID:1",
              "userid": "u", "TenantId": TENANT, "smsid": "GUID:1", "iat": NOW, "nbf": int(NOW), "exp": int(NOW) + 3600,
              "UniqueId": "j"}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": KID})


@pytest.mark.parametrize("aud", [CCM_AUDIENCE[:-1], "", "urn:sccm:", CCM_AUDIENCE + "x", CCM_AUDIENCE.upper(),
                                 [], [""], [CCM_AUDIENCE[:-1]], {"aud": CCM_AUDIENCE}, 7],
                         ids=["prefix", "empty", "short-prefix", "longer", "other-case", "empty-list",
                              "list-of-empty", "list-of-prefix", "object", "number"])
def test_a_ccm_token_audience_must_match_exactly(key: rsa.RSAPrivateKey, aud: Any) -> None:
    """A prefix, an empty audience or a look-alike is refused with IDX10214: only urn:sccm:service passes."""
    with pytest.raises(TokenRejected) as refused:
        check_ccm(_forged_ccm(key, aud), key)
    assert (refused.value.code, refused.value.kind) == ("IDX10214", "audience")


def test_a_ccm_token_audience_list_holding_the_audience_passes(key: rsa.RSAPrivateKey) -> None:
    """An ``aud`` list passes when one entry is exactly the CCM audience (RFC 7519 §4.1.3)."""
    assert check_ccm(_forged_ccm(key, ["other", CCM_AUDIENCE]), key)["aud"] == ["other", CCM_AUDIENCE]


@pytest.mark.parametrize("aud", [CONFIGMGR_RESOURCE[:-1], "", "https://", CONFIGMGR_RESOURCE + "/x"],
                         ids=["prefix", "empty", "scheme-only", "longer"])
def test_an_entra_token_audience_must_match_exactly(key: rsa.RSAPrivateKey, aud: str) -> None:
    """The Entra token's audience is compared whole against the server app's App ID URIs."""
    with pytest.raises(TokenRejected) as refused:
        check_entra(entra(key, audience=aud), key)
    assert refused.value.kind == "audience"


def test_an_entra_token_for_any_of_several_audiences_passes(key: rsa.RSAPrivateKey) -> None:
    """Several valid App ID URIs: a token for the second one passes, and a prefix of either does not."""
    valid = ["https://first", CONFIGMGR_RESOURCE]
    assert check_entra(entra(key), key, audience=valid)["aud"] == CONFIGMGR_RESOURCE
    with pytest.raises(TokenRejected):
        check_entra(entra(key, audience="https://firs"), key, audience=valid)


# --- lifetime boundaries ------------------------------------------------------------------------------------------


def test_the_leeway_boundaries_are_inclusive_like_dotnets() -> None:
    """nbf == now + leeway and exp == now - leeway still pass; one second further is refused."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = ccm(key, lifetime=100.0)  # nbf = NOW, exp = NOW + 100
    assert check_ccm(token, key, now=NOW - 50, leeway=50)
    with pytest.raises(TokenRejected) as early:
        check_ccm(token, key, now=NOW - 51, leeway=50)
    assert early.value.kind == "not_yet_valid"
    assert check_ccm(token, key, now=NOW + 150, leeway=50)
    with pytest.raises(TokenRejected) as late:
        check_ccm(token, key, now=NOW + 151, leeway=50)
    assert late.value.kind == "expired"


def test_the_default_leeway_is_five_minutes(key: rsa.RSAPrivateKey) -> None:
    """Without a leeway argument a token 300 s past exp passes and one 301 s past is refused."""
    token = ccm(key, lifetime=100.0)
    assert verify_ccm_token(token, keys={KID: key.public_key()}, hierarchy_id=HIERARCHY, tenants={TENANT},
                            now=NOW + 400)
    with pytest.raises(TokenRejected):
        verify_ccm_token(token, keys={KID: key.public_key()}, hierarchy_id=HIERARCHY, tenants={TENANT},
                         now=NOW + 401)
    entra_token = entra(key, lifetime=100.0)
    assert check_entra(entra_token, key, now=NOW + 400)
    with pytest.raises(TokenRejected):
        check_entra(entra_token, key, now=NOW + 401)


# --- cached tokens expire -----------------------------------------------------------------------------------------


def test_a_cached_ccm_token_is_refused_after_exp_plus_leeway(key: rsa.RSAPrivateKey) -> None:
    """Accepted (and cached) once, the same token is accepted up to exp + leeway and refused after it."""
    clock = FakeClock(NOW)
    verifier = CcmTokenVerifier({KID: key.public_key()}, hierarchy_id=HIERARCHY,
                                tenants=lambda: {TENANT}, clock=clock, leeway=30.0)
    token = ccm(key, lifetime=60.0)
    assert verifier.verify(token)["smsid"] == "GUID:1"
    clock.advance(60 + 30)  # exactly exp + leeway
    assert verifier.verify(token)["smsid"] == "GUID:1"
    clock.advance(1)
    with pytest.raises(TokenRejected) as refused:
        verifier.verify(token)
    assert refused.value.kind == "expired"


def test_a_cached_ccm_token_is_refused_right_after_exp_without_leeway(key: rsa.RSAPrivateKey) -> None:
    """With no leeway the cache gives no grace either: one second past exp the cached token is refused."""
    clock = FakeClock(NOW)
    verifier = CcmTokenVerifier({KID: key.public_key()}, hierarchy_id=HIERARCHY,
                                tenants=lambda: {TENANT}, clock=clock, leeway=0.0)
    token = ccm(key, lifetime=60.0)
    verifier.verify(token)
    clock.advance(59)
    verifier.verify(token)
    clock.advance(2)
    with pytest.raises(TokenRejected):
        verifier.verify(token)


def test_a_cached_entra_token_is_refused_after_exp_plus_leeway(key: rsa.RSAPrivateKey) -> None:
    """The Entra verifier's cache follows the same rule as the CCM one."""
    clock = FakeClock(NOW)
    fetches = []

    async def fetch() -> dict[str, Any]:
        fetches.append(clock())
        return {"keys": [jwk_from_public_key(key, KID)]}

    verifier = EntraTokenVerifier(JwksCache(fetch, clock=clock), audiences=[CONFIGMGR_RESOURCE],
                                  tenants=lambda: {TENANT}, clock=clock, leeway=30.0)
    token = entra(key, lifetime=60.0)
    assert asyncio.run(verifier.verify(token))["tid"] == TENANT
    clock.advance(90)
    assert asyncio.run(verifier.verify(token))["tid"] == TENANT
    clock.advance(1)
    with pytest.raises(TokenRejected) as refused:
        asyncio.run(verifier.verify(token))
    assert refused.value.kind == "expired"
    assert len(fetches) == 1


def test_the_token_cache_forgets_a_token_at_its_exp() -> None:
    """TokenCache hands claims back before exp and never at or after it (the full check then applies)."""
    clock = FakeClock(100.0)
    cache = TokenCache(clock=clock)
    cache.put("t", {"exp": 110})
    clock.advance(9)
    assert cache.get("t") == {"exp": 110}
    clock.advance(1)
    assert cache.get("t") is None
    assert cache.sweep() == 1 and len(cache) == 0


def test_the_token_cache_stays_bounded() -> None:
    """A full cache makes room by evicting the soonest-expiring entry: it never holds more than max_entries."""
    cache = TokenCache(clock=FakeClock(0.0), max_entries=2)
    cache.put("a", {"exp": 10})
    cache.put("b", {"exp": 20})
    assert len(cache) == 2
    cache.put("c", {"exp": 30})
    assert len(cache) == 2 and cache.get("c") == {"exp": 30} and cache.get("a") is None
    assert cache.get("b") == {"exp": 20}


def test_a_failed_ccm_check_is_not_cached(key: rsa.RSAPrivateKey) -> None:
    """A refused token stays refused when presented again (no negative result turns into a positive one)."""
    clock = FakeClock(NOW)
    verifier = CcmTokenVerifier({KID: key.public_key()}, hierarchy_id=HIERARCHY,
                                tenants=lambda: {TENANT}, clock=clock)
    token = ccm(key, hierarchy_id="00000000-0000-0000-0000-000000000001")
    for _ in range(2):
        with pytest.raises(TokenRejected):
            verifier.verify(token)


# --- the site's leeway and lifetimes follow its time scale --------------------------------------------------------


@pytest.fixture
def built_site(tmp_path: Path) -> Iterator[Any]:
    """Build (bind, never serve) a site on a fake clock; yields a factory taking the time scale."""
    sites: list[Site] = []

    def build(time_scale: float) -> Site:
        # In-process hops: the Entra verifier fetches the JWKS from the issuer object, no server needed.
        config = SiteConfig(state_dir=tmp_path / f"scale-{time_scale}", time_scale=time_scale, inprocess_hops=True)
        site = Site(config, clock=FakeClock(NOW), logs_enabled=False)
        site.build()
        sites.append(site)
        return site

    yield build
    for site in sites:
        for listener in site.listeners.values():
            if listener.socket is not None:
                listener.socket.close()
        site.db.close()


def _site_ccm_token(site: Site) -> str:
    return issue_ccm_token(key=site.pki.ccm_signing_key, kid=site.pki.ccm_signing_kid, hierarchy_id=site.config.hierarchy_id,
                           token_type="Device", device_id="GUID:1", user_id="u", tenant_id=TENANT, smsid="GUID:1",
                           now=site.clock(), lifetime=site.config.scaled(site.config.ccm_token_lifetime_site_seconds))


def test_at_time_scale_1200_the_leeway_shrinks_with_the_lifetime(built_site: Any) -> None:
    """At --time-scale 1200 a CCM token lives 24 s and is refused 1 s later, not accepted for another 300 s."""
    site = built_site(1200)
    verifier = site.cmg_apps[0].ccm_verifier
    token = _site_ccm_token(site)
    clock = site.clock
    assert isinstance(clock, FakeClock)
    assert verifier.verify(token)
    clock.advance(24.0 + 1.0)
    with pytest.raises(TokenRejected) as refused:
        verifier.verify(token)
    assert refused.value.kind == "expired"


def test_at_time_scale_1_the_leeway_is_five_minutes(built_site: Any) -> None:
    """Unscaled, the same token is still accepted 299 s past its 8 h and refused after 300 s."""
    site = built_site(1)
    verifier = site.cmg_apps[0].ccm_verifier
    token = _site_ccm_token(site)
    clock = site.clock
    assert isinstance(clock, FakeClock)
    clock.advance(8 * HOURS + 299)
    assert verifier.verify(token)
    clock.advance(2)
    with pytest.raises(TokenRejected):
        verifier.verify(token)


def test_the_entra_leeway_is_scaled_too(built_site: Any) -> None:
    """The CMG's Entra verifier gets the scaled leeway: an Entra token 2 s past exp is refused at scale 1200."""
    site = built_site(1200)
    clock = site.clock
    assert isinstance(clock, FakeClock)
    token = site.entra.device_token(TENANT, "8d2b4ff9-0172-4998-9851-b5324303385f", client_id=DEFAULT_CLIENT_APP_ID)
    verifier = site.cmg_apps[0].entra_verifier
    assert asyncio.run(verifier.verify(token))["tid"] == TENANT
    clock.advance(site.config.scaled(site.config.entra_token_lifetime_site_seconds) + 2)
    with pytest.raises(TokenRejected) as refused:
        asyncio.run(verifier.verify(token))
    assert refused.value.kind == "expired"


# --- details the mutation runner showed unguarded ----------------------------------------------------------------


def test_validation_reads_only_the_injected_clock(key: rsa.RSAPrivateKey) -> None:
    """A token issued and checked in the year 2096 passes: no check compares it with the real wall clock."""
    future = 4_000_000_000.0
    assert check_ccm(ccm(key, now=future), key, now=future)["nbf"] == int(future)
    assert check_entra(entra(key, now=future), key, now=future)["iat"] == int(future)


def test_a_ccm_token_keeps_its_issue_time_to_the_millisecond(key: rsa.RSAPrivateKey) -> None:
    """iat carries milliseconds (revocation compares tokens issued within one second); nbf and exp whole seconds."""
    claims = check_ccm(ccm(key, now=NOW + 0.1234), key)
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (NOW + 0.123, int(NOW), int(NOW + 0.1234 + 3600))


def test_the_expiry_message_names_valid_to_and_current_time(key: rsa.RSAPrivateKey) -> None:
    """IDX10223 says when the token ended and what time it is, in .NET's format (CCM_STS.log shows it)."""
    with pytest.raises(TokenRejected) as refused:
        check_ccm(ccm(key, lifetime=60.0), key, now=NOW + 60 + DEFAULT_LEEWAY + 1)
    assert "ValidTo: '11/14/2023 22:14:20'" in refused.value.reason
    assert "Current time: '11/14/2023 22:19:21'" in refused.value.reason


@pytest.mark.parametrize("token", ["a.b", "a.b.c.d", "abc"])
def test_a_token_without_three_segments_is_refused_for_that(token: str) -> None:
    """The segment count is checked first, with its own reason."""
    with pytest.raises(TokenRejected) as refused:
        check_ccm(token, rsa.generate_private_key(public_exponent=65537, key_size=1024))
    assert refused.value.kind == "malformed" and "three segments" in refused.value.reason


@pytest.mark.parametrize("kid", ["", None], ids=["empty", "absent"])
def test_a_token_header_without_a_usable_kid_is_malformed(key: rsa.RSAPrivateKey, kid: Any) -> None:
    """An empty or non-string kid is a malformed header, not an unknown key (which would trigger a JWKS refresh)."""
    import jwt

    token = jwt.encode({"aud": CCM_AUDIENCE}, key, algorithm="RS256", headers={"kid": kid} if kid is not None else None)
    with pytest.raises(TokenRejected) as refused:
        check_ccm(token, key)
    assert refused.value.kind == "malformed" and "no kid" in refused.value.reason


@pytest.mark.parametrize("kid", ["", 5], ids=["empty", "number"])
def test_a_jwks_entry_without_a_usable_kid_is_refused(key: rsa.RSAPrivateKey, kid: Any) -> None:
    """keys_from_jwks refuses an RSA entry whose kid is empty or not a string."""
    from cmg_protocol.tokens import JwkError, keys_from_jwks

    entry = {**jwk_from_public_key(key, "k"), "kid": kid}
    with pytest.raises(JwkError, match="without a kid"):
        keys_from_jwks({"keys": [entry]})


# --- time claims: numbers in a sane range, never issued in the future ------------------------------------------------


def _signed(key: rsa.RSAPrivateKey, **changes: Any) -> str:
    import jwt

    claims = {"iss": f"urn:sccm:oauth2:{HIERARCHY}", "aud": CCM_AUDIENCE, **CCM_LAYOUT, "Type": "Device", "deviceid": "GUID:1",
              "userid": "u", "TenantId": TENANT, "smsid": "GUID:1", "iat": NOW, "nbf": int(NOW), "exp": int(NOW) + 3600,
              "UniqueId": "j"}
    claims.update(changes)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": KID})


@pytest.mark.parametrize("changes, kind", [
    ({"iat": NOW + 10 * 365 * 86400}, "not_yet_valid"),       # issued ten years from now
    ({"iat": NOW + DEFAULT_LEEWAY + 1}, "not_yet_valid"),     # just past the skew allowance
    ({"exp": 1.7e308}, "malformed"),                          # near the top of the double range
    ({"exp": 10**400}, "malformed"),                          # an integer no float holds
    ({"exp": int(NOW) + 100 * 86400}, "malformed"),           # lives longer than any site token
    ({"nbf": "1700000000"}, "malformed"),                     # a number in a string
    ({"iat": None}, "malformed"),
    ({"exp": [int(NOW) + 60]}, "malformed"),
    ({"iat": -1}, "malformed"),
    ({"nbf": int(NOW) + 7200, "exp": int(NOW) + 3600}, "malformed"),  # starts after it ends
    ({"TenantId": "c8c82542-203c-4df9-9d86-cdd4dae67e0a"}, "tenant"),  # a tenant the site did not onboard
    ({"TenantId": 7}, "tenant"),
], ids=["iat-far-future", "iat-past-leeway", "exp-1.7e308", "exp-huge-int", "exp-100-days", "nbf-string",
        "iat-null", "exp-list", "iat-negative", "nbf-after-exp", "tenant-not-onboarded", "tenant-not-text"])
def test_ccm_tokens_with_absurd_time_claims_or_foreign_tenants_are_refused(key: rsa.RSAPrivateKey,
                                                                          changes: dict[str, Any],
                                                                          kind: str) -> None:
    """Every time claim is a number in a sane range, no token is issued in the future, the tenant is onboarded."""
    with pytest.raises(TokenRejected) as caught:
        check_ccm(_signed(key, **changes), key)
    assert caught.value.kind == kind


def test_entra_tokens_with_absurd_time_claims_are_refused(key: rsa.RSAPrivateKey) -> None:
    """The Entra check shares the time-claim rules."""
    import jwt

    claims = {"aud": CONFIGMGR_RESOURCE, "iss": f"https://sts.windows.net/{TENANT}/", "tid": TENANT,
              "iat": NOW, "nbf": int(NOW), "exp": 1.7e308}
    with pytest.raises(TokenRejected) as caught:
        check_entra(jwt.encode(claims, key, algorithm="RS256", headers={"kid": KID}), key)
    assert caught.value.kind == "malformed"


# --- time claims: their shown value and the longest lifetime ----------------------------------------------------------


def _ccm_with(key: rsa.RSAPrivateKey, **claims: Any) -> str:
    import jwt

    base = {"iss": f"urn:sccm:oauth2:{HIERARCHY}", "aud": CCM_AUDIENCE, **CCM_LAYOUT, "Type": "Device", "deviceid": "GUID:1",
            "userid": "u", "TenantId": TENANT, "smsid": "GUID:1", "iat": NOW, "nbf": int(NOW), "exp": int(NOW) + 3600,
            "UniqueId": "j"}
    return jwt.encode({**base, **claims}, key, algorithm="RS256", headers={"kid": KID})


@pytest.mark.parametrize(("text", "shown"), [
    ("x" * 38, repr("x" * 38)),                 # its repr is 40 characters: shown whole
    ("x" * 39, repr("x" * 39)[:40] + "..."),    # 41: cut to 40 and marked
])
def test_a_malformed_time_claim_is_named_with_its_value_cut_at_forty_characters(
        key: rsa.RSAPrivateKey, text: str, shown: str) -> None:
    """A time claim that is not a number is refused as malformed, naming the claim and its value (at most 40
    characters of it, so a hostile token cannot flood the log)."""
    with pytest.raises(TokenRejected) as refused:
        check_ccm(_ccm_with(key, iat=text), key)
    assert str(refused.value).endswith(f"claim iat is not a NumericDate in 0..253402300799: {shown}")


def test_a_token_may_live_ninety_days_plus_the_leeway_and_not_a_second_more(key: rsa.RSAPrivateKey) -> None:
    """exp at exactly now + leeway + 90 days passes; one second beyond is refused as malformed."""
    limit = int(NOW + DEFAULT_LEEWAY + 90 * 86400)
    assert check_ccm(_ccm_with(key, exp=limit), key)["exp"] == limit
    with pytest.raises(TokenRejected, match="expires more than 90 days"):
        check_ccm(_ccm_with(key, exp=limit + 1), key)


def test_the_epoch_itself_is_a_numeric_date(key: rsa.RSAPrivateKey) -> None:
    """0 is the first NumericDate: a token valid since the epoch (nbf 0) passes the claim check."""
    assert check_ccm(_ccm_with(key, nbf=0), key)["nbf"] == 0


def test_the_last_numeric_date_is_a_number_the_lifetime_check_then_judges(key: rsa.RSAPrivateKey) -> None:
    """iat at exactly 9999-12-31T23:59:59Z is a NumericDate (not malformed): it is refused as issued in the future."""
    with pytest.raises(TokenRejected) as refused:
        check_ccm(_ccm_with(key, iat=253_402_300_799), key)
    assert (refused.value.code, refused.value.kind) == ("IDX10222", "not_yet_valid")


def test_a_token_whose_nbf_equals_its_exp_is_not_malformed(key: rsa.RSAPrivateKey) -> None:
    """nbf == exp (a token valid for an instant, within the leeway) passes; only nbf after exp is IDX10224."""
    instant = int(NOW) + 60
    assert check_ccm(_ccm_with(key, nbf=instant, exp=instant), key)["exp"] == instant
    with pytest.raises(TokenRejected) as refused:
        check_ccm(_ccm_with(key, nbf=instant + 1, exp=instant), key)
    assert refused.value.code == "IDX10224"
