"""Site tokens for token-authenticated devices: the bulk registration token's public layout and lifetimes, and the
client-unique token, each checked as strictly as the CCM token."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cmg_protocol import site_tokens as st
from cmg_protocol.site_tokens import ClientTokenReply, ClientTokenRequest, SiteKey
from cmg_protocol.tokens import TokenRejected

HIERARCHY = "5e8b5a9b-2b58-4f6e-9d7a-3c1f0e2d4b6a"
TENANT = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"
NOW = 1_750_000_000.0
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SITE_KEY = SiteKey(key=KEY, kid="site-kid", x5t="dGh1bWJwcmludA")
KEYS = {"site-kid": KEY.public_key()}


def _verify(token: str, *, now: float = NOW, **options: object) -> dict:
    return st.verify_site_token(token, keys=KEYS, hierarchy_id=HIERARCHY, now=now, leeway=300.0, **options)  # type: ignore[arg-type]


def test_a_bulk_token_has_the_public_layout_and_lives_three_days_by_default() -> None:
    token = st.issue_bulk_token(site_key=SITE_KEY, hierarchy_id=HIERARCHY, tenant_id=TENANT, now=NOW)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"typ": "JWT", "alg": "RS256", "kid": "site-kid", "x5t": "dGh1bWJwcmludA"}
    claims = _verify(token)
    assert {k: claims[k] for k in ("Authority", "License", "Type", "TenantId", "iss", "aud")} == {
        "Authority": "SCCM", "License": "SCCM", "Type": "BulkRegistration", "TenantId": TENANT,
        "iss": f"urn:sccm:oauth2:{HIERARCHY}", "aud": "urn:sccm:service"}
    assert claims["exp"] - claims["nbf"] == 3 * 86400
    assert set(claims) == {"SCCMTokenCategory", "Authority", "License", "Type", "TenantId", "UniqueId", "iss", "aud",
                           "nbf", "exp"}


@pytest.mark.parametrize("days", [0, 7.01, 30])
def test_a_bulk_token_lives_at_most_seven_days(days: float) -> None:
    with pytest.raises(ValueError, match="7 days"):
        st.issue_bulk_token(site_key=SITE_KEY, hierarchy_id=HIERARCHY, tenant_id=TENANT, now=NOW, lifetime=days * 86400)
    assert _verify(st.issue_bulk_token(site_key=SITE_KEY, hierarchy_id=HIERARCHY, tenant_id=TENANT, now=NOW,
                                       lifetime=7 * 86400))["Type"] == "BulkRegistration"


def test_an_expired_or_blocked_bulk_token_is_refused() -> None:
    token = st.issue_bulk_token(site_key=SITE_KEY, hierarchy_id=HIERARCHY, tenant_id=TENANT, now=NOW,
                                unique_id="bulk-1")
    with pytest.raises(TokenRejected) as expired:
        _verify(token, now=NOW + 3 * 86400 + 301)
    assert (expired.value.code, expired.value.kind) == ("IDX10223", "expired")
    with pytest.raises(TokenRejected, match="blocked"):
        _verify(token, revoked={"bulk-1"})


def test_a_client_token_names_its_client_and_lives_ninety_days() -> None:
    token = st.issue_client_token(site_key=SITE_KEY, hierarchy_id=HIERARCHY, tenant_id=TENANT,
                                  smsid="GUID:1E5C9F2A-0000-4000-8000-000000000001", now=NOW)
    claims = _verify(token)
    assert claims["Type"] == "ClientToken" and claims["UniqueId"].startswith("GUID:")
    assert claims["exp"] - claims["nbf"] == 90 * 86400
    with pytest.raises(TokenRejected, match="not taken here"):
        _verify(token, types=("BulkRegistration",))
    with pytest.raises(ValueError, match="GUID"):
        st.issue_client_token(site_key=SITE_KEY, hierarchy_id=HIERARCHY, tenant_id=TENANT, smsid="x", now=NOW)


def test_a_forged_or_foreign_site_token_is_refused() -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = st.issue_bulk_token(site_key=SiteKey(key=other, kid="site-kid", x5t="x"), hierarchy_id=HIERARCHY,
                                 tenant_id=TENANT, now=NOW)
    with pytest.raises(TokenRejected) as bad:
        _verify(forged)
    assert bad.value.kind == "signature"
    foreign = st.issue_bulk_token(site_key=SITE_KEY, hierarchy_id="another", tenant_id=TENANT, now=NOW)
    with pytest.raises(TokenRejected) as wrong:
        _verify(foreign)
    assert wrong.value.kind == "issuer"
    unsigned = jwt.encode({"Type": "BulkRegistration"}, "s" * 32, algorithm="HS256", headers={"kid": "site-kid"})
    with pytest.raises(TokenRejected) as hs:
        _verify(unsigned)
    assert hs.value.kind == "algorithm"


def test_token_type_peeks_without_trusting_and_the_messages_round_trip() -> None:
    assert st.token_type(st.issue_bulk_token(site_key=SITE_KEY, hierarchy_id=HIERARCHY, tenant_id=TENANT,
                                             now=NOW)) == "BulkRegistration"
    assert st.token_type("not a token") is None
    request = ClientTokenRequest(smsid="GUID:ABC")
    assert ClientTokenRequest.from_xml(request.to_xml()) == request
    reply = ClientTokenReply(token="a.b.c", renew_at=123)
    assert ClientTokenReply.from_xml(reply.to_xml()) == reply
