"""Site tokens (bulk registration and client-unique) at the edges: the leeway on nbf and exp, the shortest
lifetimes the site issues, NumericDate claims of the wrong type, a not-yet-valid token judged by the given clock rather
than the machine's, and the monthly renewal."""

from __future__ import annotations

import time

import jwt
import pytest

from cmg_protocol import site_tokens as st
from cmg_protocol.tokens import TokenRejected
from mock_site.site_tokens import SiteTokenIssuer
from tests.protocol.test_site_tokens import HIERARCHY, KEY, KEYS, NOW, SITE_KEY, TENANT

LEEWAY = 30.0


def _verify(token: str, *, now: float) -> dict:
    return st.verify_site_token(token, keys=KEYS, hierarchy_id=HIERARCHY, now=now, leeway=LEEWAY)


def _bulk(now: float = NOW, lifetime: float = 600.0) -> str:
    return st.issue_bulk_token(site_key=SITE_KEY, hierarchy_id=HIERARCHY, tenant_id=TENANT, now=now, lifetime=lifetime)


def _signed(**changes: object) -> str:
    claims = {"SCCMTokenCategory": st.CATEGORY, "Authority": "SCCM", "License": "SCCM", "Type": st.TYPE_BULK,
              "TenantId": TENANT, "UniqueId": "u", "iss": f"urn:sccm:oauth2:{HIERARCHY}", "aud": "urn:sccm:service",
              "nbf": int(NOW), "exp": int(NOW + 600), **changes}
    return jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": "site-kid"})


def test_a_token_is_valid_from_its_nbf_minus_the_leeway() -> None:
    token = _bulk()
    assert _verify(token, now=NOW - LEEWAY)["nbf"] == int(NOW)
    with pytest.raises(TokenRejected, match=r"^IDX10222: Lifetime validation failed. The token is not yet valid.$"):
        _verify(token, now=NOW - LEEWAY - 1)


def test_a_token_expires_at_its_exp_plus_the_leeway() -> None:
    token = _bulk()
    assert _verify(token, now=NOW + 600 + LEEWAY - 1)["exp"] == int(NOW + 600)
    with pytest.raises(TokenRejected, match=r"^IDX10223: Lifetime validation failed. The token is expired.$"):
        _verify(token, now=NOW + 600 + LEEWAY)


def test_a_token_still_inside_its_life_is_not_expired() -> None:
    """exp 10 s ahead: valid, whatever the leeway."""
    assert _verify(_bulk(now=NOW - 590), now=NOW)["exp"] == int(NOW + 10)


def test_not_yet_valid_is_judged_by_the_given_clock_not_the_machines() -> None:
    """A token whose nbf is still ahead of the real clock, but inside the leeway of the site's clock, is taken."""
    now = time.time() + 20
    token = _bulk(now=now)
    assert _verify(token, now=now - 20)["nbf"] == int(now)


@pytest.mark.parametrize("value", [True, "1750000000", None])
@pytest.mark.parametrize("claim", ["nbf", "exp"])
def test_a_lifetime_claim_that_is_no_numeric_date_is_malformed(claim: str, value: object) -> None:
    with pytest.raises(TokenRejected, match=rf"^IDX12741: claim {claim} is not a NumericDate$"):
        _verify(_signed(**{claim: value}), now=NOW)


def test_the_shortest_lifetimes_the_site_issues() -> None:
    """Any positive lifetime up to the cap: one second is a token, zero is not."""
    assert _verify(_bulk(lifetime=1.0), now=NOW)["exp"] == int(NOW + 1)
    client = st.issue_client_token(site_key=SITE_KEY, hierarchy_id=HIERARCHY, tenant_id=TENANT, smsid="GUID:A",
                                   now=NOW, lifetime=1.0)
    assert _verify(client, now=NOW)["UniqueId"] == "GUID:A"
    with pytest.raises(ValueError, match=r"^a bulk registration token lives more than 0 s and at most 7 days"):
        _bulk(lifetime=0.0)
    for lifetime in (0.0, -1.0, 90 * 86400 + 1):
        with pytest.raises(ValueError, match=rf"^a client-unique token lives at most 90 days, got {lifetime!r}$"):
            st.issue_client_token(site_key=SITE_KEY, hierarchy_id=HIERARCHY, tenant_id=TENANT, smsid="GUID:A",
                                  now=NOW, lifetime=lifetime)


def test_a_client_token_lives_ninety_days_and_is_renewed_after_thirty() -> None:
    """The site's issuer at time scale 1: the token's exp is 90 days out, and the reply names day 30 for renewal."""
    issuer = SiteTokenIssuer(site_key=SITE_KEY, hierarchy_id=HIERARCHY, tenant_id=TENANT, clock=lambda: NOW,
                             scaled=lambda seconds: seconds, db=None)
    reply = issuer.client_token("GUID:A")
    assert reply.renew_at == int(NOW) + 30 * 86400
    assert _verify(reply.token, now=NOW)["exp"] == int(NOW) + 90 * 86400
