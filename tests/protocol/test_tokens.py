"""Specification of Entra and CCM token issuing and validation (PROTOCOL.md §4-5)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cmg_protocol.tokens import (
    CCM_AUDIENCE,
    CONFIGMGR_RESOURCE,
    JwkError,
    TokenRejected,
    ccm_issuer,
    entra_issuer,
    issue_ccm_token,
    issue_entra_token,
    jwk_from_public_key,
    keys_from_jwks,
    peek_claims,
    public_key_from_jwk,
    verify_ccm_token,
    verify_entra_token,
)

TENANT = "2ca9a796-a1a6-43ec-88f1-5935b32155c5"
OTHER_TENANT = "c8c82542-203c-4df9-9d86-cdd4dae67e0a"
HIERARCHY = "8ed3174b-e814-41b5-b51c-fb368f0d4003"
NOW = 1_700_000_000.0
KID = "entra-key-1"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


ENTRA_ARGS: dict[str, Any] = {
    "kid": KID,
    "tenant_id": TENANT,
    "audience": CONFIGMGR_RESOURCE,
    "appid": "0b7c8ab3-9ea1-4ffa-b2b9-8ffdd944bd8b",
    "oid": "e8838041-db7a-42d5-b9ae-78813910e4cc",
    "device_id": "8d2b4ff9-0172-4998-9851-b5324303385f",
    "onprem_sid": "S-1-5-21-1527250992-855612568-2252598708-1604",
    "token_type": "UDA",
    "now": NOW,
    "lifetime": 3600.0,
}
CCM_ARGS: dict[str, Any] = {
    "kid": "site-1",
    "hierarchy_id": HIERARCHY,
    "token_type": "Device",
    "device_id": "GUID:13E80CEF-5698-4C63-9ED6-E58FBFF78C38",
    "user_id": "00000000-0000-0000-0000-000000000000",
    "tenant_id": TENANT,
    "smsid": "GUID:C66EE0FD-08E7-4B38-B282-7E6954B71139",
    "now": NOW,
    "lifetime": 8 * 3600.0,
}


def entra(key: rsa.RSAPrivateKey, **overrides: Any) -> str:
    return issue_entra_token(**{**ENTRA_ARGS, "key": key, **overrides})


def verify_entra(token: str, key: rsa.RSAPrivateKey, **overrides: Any) -> dict[str, Any]:
    args = {"keys": {KID: key.public_key()}, "audience": CONFIGMGR_RESOURCE, "tenants": {TENANT}, "now": NOW}
    return verify_entra_token(token, **{**args, **overrides})


def ccm(key: rsa.RSAPrivateKey, **overrides: Any) -> str:
    return issue_ccm_token(**{**CCM_ARGS, "key": key, **overrides})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(signature)}"


def test_entra_token_carries_the_documented_claims_and_header(key: rsa.RSAPrivateKey) -> None:
    """An issued Entra token verifies and holds aud, iss, tid, oid, appid, ver 1.0, deviceid, kid and x5t."""
    token = entra(key)
    claims = verify_entra(token, key)
    assert claims["iss"] == f"https://sts.windows.net/{TENANT}/" and claims["aud"] == "https://ConfigMgrService"
    assert (claims["ver"], claims["token_type"], claims["tid"]) == ("1.0", "UDA", TENANT)
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (int(NOW), int(NOW), int(NOW) + 3600)
    assert {"oid", "appid", "deviceid", "onprem_sid"} <= claims.keys()
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT", "kid": KID, "x5t": KID}


def test_ccm_token_carries_the_documented_claims(key: rsa.RSAPrivateKey) -> None:
    """An issued CCM token verifies with iss urn:sccm:oauth2:<hierarchy>, aud urn:sccm:service and its identity."""
    claims = verify_ccm_token(ccm(key), keys={"site-1": key.public_key()}, hierarchy_id=HIERARCHY, tenants={TENANT},
                              now=NOW)
    assert claims["iss"] == f"urn:sccm:oauth2:{HIERARCHY}" and claims["aud"] == "urn:sccm:service"
    assert claims["exp"] - claims["iat"] == 8 * 3600
    assert {"Type", "deviceid", "userid", "TenantId", "smsid", "UniqueId", "nbf"} <= claims.keys()


def test_issuer_helpers_spell_the_documented_forms() -> None:
    """Issuers are https://sts.windows.net/<tid>/ and urn:sccm:oauth2:<hierarchy id>."""
    assert entra_issuer(TENANT) == f"https://sts.windows.net/{TENANT}/"
    assert ccm_issuer(HIERARCHY) == f"urn:sccm:oauth2:{HIERARCHY}" and CCM_AUDIENCE == "urn:sccm:service"


@pytest.mark.parametrize(
    ("make", "verify_overrides", "code", "kind"),
    [
        (lambda k, o: entra(k, now=NOW - 3600 - 301), {}, "IDX10223", "expired"),
        (lambda k, o: entra(k, now=NOW + 301), {}, "IDX10222", "not_yet_valid"),
        (lambda k, o: entra(o), {}, "IDX10511", "signature"),
        (lambda k, o: entra(k, kid="rotated-key"), {}, "IDX10503", "unknown_key"),
        (lambda k, o: entra(k, audience="https://SomethingElse"), {}, "IDX10214", "audience"),
        (lambda k, o: entra(k, issuer="https://evil.example/"), {}, "IDX10205", "issuer"),
        (lambda k, o: entra(k, issuer=entra_issuer(OTHER_TENANT)), {}, "IDX10205", "issuer"),
        (lambda k, o: entra(k, tenant_id=OTHER_TENANT), {}, "IDX10205", "tenant"),
        (lambda k, o: entra(k), {"audience": "https://other"}, "IDX10214", "audience"),
        (lambda k, o: "not-a-jwt", {}, "IDX12741", "malformed"),
        (lambda k, o: "a.b", {}, "IDX12741", "malformed"),
        (lambda k, o: "!!!.@@@.###", {}, "IDX12741", "malformed"),
    ],
    ids=["expired", "not-yet-valid", "bad-signature", "unknown-kid", "wrong-audience", "foreign-issuer",
         "issuer-of-another-tenant", "tenant-not-onboarded", "audience-not-expected", "garbage", "two-segments",
         "undecodable"],
)
def test_entra_rejections_carry_idx_code_and_kind(key, other_key, make, verify_overrides, code: str, kind: str) -> None:
    """Each validation failure raises TokenRejected with its .NET code and a kind callers branch on."""
    with pytest.raises(TokenRejected) as caught:
        verify_entra(make(key, other_key), key, **verify_overrides)
    assert (caught.value.code, caught.value.kind) == (code, kind)
    assert str(caught.value).startswith(f"{code}: ")


@pytest.mark.parametrize("skew", [-300.0, 300.0])
def test_clock_skew_within_the_leeway_is_accepted(key: rsa.RSAPrivateKey, skew: float) -> None:
    """300 s of skew either way is allowed, as .NET allows by default."""
    token = entra(key, now=NOW + skew) if skew > 0 else entra(key, now=NOW - 3600 + skew)
    assert verify_entra(token, key)["tid"] == TENANT


def test_leeway_is_a_parameter(key: rsa.RSAPrivateKey) -> None:
    """With leeway 0 a token expired one second ago is refused."""
    with pytest.raises(TokenRejected, match="IDX10223"):
        verify_entra(entra(key, now=NOW - 3601), key, leeway=0)


def test_alg_none_is_refused(key: rsa.RSAPrivateKey) -> None:
    """An unsigned token (alg none) is refused by the allow-list, never verified."""
    claims = peek_claims(entra(key))
    with pytest.raises(TokenRejected) as caught:
        verify_entra(forged({"alg": "none", "typ": "JWT", "kid": KID}, claims), key)
    assert (caught.value.kind, caught.value.code) == ("algorithm", "IDX10511")
    assert "alg not allowed" in caught.value.reason


def test_hs256_signed_with_the_public_key_pem_is_refused(key: rsa.RSAPrivateKey) -> None:
    """The key-confusion attack (HMAC keyed with the RSA public key PEM) is refused even though the MAC is right."""
    claims = peek_claims(entra(key))
    header = {"alg": "HS256", "typ": "JWT", "kid": KID}
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    unsigned = forged(header, claims).rstrip(".")
    token = f"{unsigned}.{b64(hmac.new(pem, unsigned.encode(), hashlib.sha256).digest())}"
    with pytest.raises(TokenRejected) as caught:
        verify_entra(token, key)
    assert caught.value.kind == "algorithm"


def test_token_without_kid_is_malformed(key: rsa.RSAPrivateKey) -> None:
    """Keys are chosen by kid, so a token without one is refused."""
    token = jwt.encode(peek_claims(entra(key)), key, algorithm="RS256")
    with pytest.raises(TokenRejected) as caught:
        verify_entra(token, key)
    assert (caught.value.kind, caught.value.reason) == ("malformed", "token header has no kid")


@pytest.mark.parametrize("claim", ["exp", "tid", "aud"])
def test_missing_claims_are_malformed(key: rsa.RSAPrivateKey, claim: str) -> None:
    """A signed token missing a required claim is refused, naming the claim."""
    claims = peek_claims(entra(key))
    del claims[claim]
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": KID})
    with pytest.raises(TokenRejected, match=f"missing the {claim} claim") as caught:
        verify_entra(token, key)
    assert caught.value.kind == "malformed"


def test_non_numeric_lifetime_claim_is_malformed(key: rsa.RSAPrivateKey) -> None:
    """exp must be a NumericDate."""
    claims = {**peek_claims(entra(key)), "exp": "tomorrow"}
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": KID})
    with pytest.raises(TokenRejected, match="NumericDate"):
        verify_entra(token, key)


def test_audience_may_be_one_of_several(key: rsa.RSAPrivateKey) -> None:
    """A collection of valid audiences accepts a token for any of them."""
    token = entra(key, audience="https://contoso.example/ConfigMgrService")
    claims = verify_entra(token, key, audience=[CONFIGMGR_RESOURCE, "https://contoso.example/ConfigMgrService"])
    assert claims["aud"] == "https://contoso.example/ConfigMgrService"


def test_device_tokens_are_issued_and_bad_types_refused(key: rsa.RSAPrivateKey) -> None:
    """Token type is Device or UDA; anything else is a ValueError naming it."""
    assert verify_entra(entra(key, token_type="Device"), key)["token_type"] == "Device"
    with pytest.raises(ValueError, match="'User'"):
        entra(key, token_type="User")


def test_tokens_are_signed_only_with_loaded_rsa_keys() -> None:
    """A PEM string instead of a loaded key is refused (keys are loaded once, never per call)."""
    with pytest.raises(TypeError, match="loaded RSA private key"):
        entra("-----BEGIN PRIVATE KEY-----")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "hierarchy", "now", "code", "kind"),
    [
        (lambda k, o: ccm(k), "00000000-0000-0000-0000-000000000000", NOW, "IDX10205", "issuer"),
        (lambda k, o: ccm(k), HIERARCHY, NOW + 8 * 3600 + 301, "IDX10223", "expired"),
        (lambda k, o: ccm(k, now=NOW + 301), HIERARCHY, NOW, "IDX10222", "not_yet_valid"),
        (lambda k, o: ccm(o), HIERARCHY, NOW, "IDX10511", "signature"),
        (lambda k, o: ccm(k, kid="site-2"), HIERARCHY, NOW, "IDX10503", "unknown_key"),
        (lambda k, o: jwt.encode({**peek_claims(ccm(k)), "aud": "https://ConfigMgrService"}, k, algorithm="RS256",
                                 headers={"kid": "site-1"}), HIERARCHY, NOW, "IDX10214", "audience"),
        (lambda k, o: entra(k, kid="site-1"), HIERARCHY, NOW, "IDX12741", "malformed"),
    ],
    ids=["other-hierarchy", "expired", "not-yet-valid", "bad-signature", "unknown-kid", "entra-audience",
         "entra-token-as-ccm-token"],
)
def test_ccm_rejections_carry_idx_code_and_kind(key, other_key, make, hierarchy, now, code: str, kind: str) -> None:
    """CCM tokens fail validation with the same codes and kinds as Entra tokens."""
    with pytest.raises(TokenRejected) as caught:
        verify_ccm_token(make(key, other_key), keys={"site-1": key.public_key()}, hierarchy_id=hierarchy,
                         tenants={TENANT}, now=now)
    assert (caught.value.code, caught.value.kind) == (code, kind)


def test_ccm_jti_is_derived_unique_per_token_or_given(key: rsa.RSAPrivateKey) -> None:
    """Without a jti one is derived (same inputs, same jti; other time, other jti); a given jti is kept."""
    assert peek_claims(ccm(key))["UniqueId"] == peek_claims(ccm(key))["UniqueId"]
    assert peek_claims(ccm(key))["UniqueId"] != peek_claims(ccm(key, now=NOW + 0.5))["UniqueId"]
    assert peek_claims(ccm(key, jti="my-jti"))["UniqueId"] == "my-jti"


def test_peek_claims_of_garbage_is_malformed() -> None:
    """Reading claims without validation still needs a JWS."""
    with pytest.raises(TokenRejected, match="IDX12741"):
        peek_claims("garbage")


def test_rejection_kinds_are_closed() -> None:
    """TokenRejected only takes the documented kinds."""
    with pytest.raises(ValueError, match="'weird'"):
        TokenRejected("IDX0", "r", "weird")


def test_jwk_round_trip_verifies_tokens(key: rsa.RSAPrivateKey) -> None:
    """A key published as a JWK and read back verifies the tokens it signed."""
    jwk = jwk_from_public_key(key.public_key(), KID)
    assert (jwk["kty"], jwk["kid"], jwk["x5t"], jwk["use"], jwk["alg"]) == ("RSA", KID, KID, "sig", "RS256")
    assert verify_entra(entra(key), key, keys={KID: public_key_from_jwk(jwk)})["tid"] == TENANT


def test_jwk_from_a_private_key_publishes_only_the_public_half(key: rsa.RSAPrivateKey) -> None:
    """Private members never reach a JWKS, and reading a JWK ignores them."""
    jwk = jwk_from_public_key(key, KID)
    assert not {"d", "p", "q", "dp", "dq", "qi"} & jwk.keys()
    private_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
    assert isinstance(public_key_from_jwk(private_jwk), rsa.RSAPublicKey)


@pytest.mark.parametrize(
    ("jwk", "reason"),
    [
        ({"kty": "EC", "kid": "k"}, "kty RSA"),
        ({"kty": "RSA", "kid": "k", "e": "AQAB"}, "missing member 'n'"),
        ({"kty": "RSA", "kid": "k", "n": "!!", "e": "AQAB"}, "not a usable RSA key"),
    ],
)
def test_unusable_jwks_are_refused(jwk: dict[str, str], reason: str) -> None:
    """A JWK that is not a usable RSA key raises JwkError (a ValueError) saying why."""
    with pytest.raises(JwkError, match=reason):
        public_key_from_jwk(jwk)


def test_keys_from_jwks_maps_kids_and_skips_other_key_types(key: rsa.RSAPrivateKey) -> None:
    """A JWKS document gives RSA keys by kid; EC entries are left out."""
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    ec_jwk = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key)), "kid": "ec"}
    keys = keys_from_jwks({"keys": [jwk_from_public_key(key, KID), ec_jwk]})
    assert list(keys) == [KID]


@pytest.mark.parametrize("document", [{}, {"keys": "nope"}, {"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}]}])
def test_malformed_jwks_documents_are_refused(document: dict[str, Any]) -> None:
    """A JWKS without a keys list, or with an RSA key lacking a kid, raises JwkError."""
    with pytest.raises(JwkError):
        keys_from_jwks(document)


# --- the CCM token in the public site-token layout ------------------------------------------------------------------


def test_ccm_token_has_the_site_token_layout(key: rsa.RSAPrivateKey) -> None:
    """Header typ/alg/x5t (kid beside it); claims SCCMTokenCategory, Authority, License, Type, TenantId, UniqueId, iss
    urn:sccm:oauth2:<hierarchy>, aud urn:sccm:service, nbf, exp."""
    token = ccm(key, jti="3B1E4A9C-0000-4000-8000-000000000001")
    assert jwt.get_unverified_header(token) == {"typ": "JWT", "alg": "RS256", "x5t": "site-1", "kid": "site-1"}
    assert jwt.get_unverified_header(ccm(key, x5t="thumb"))["x5t"] == "thumb"
    claims = peek_claims(token)
    assert {name: claims[name] for name in ("SCCMTokenCategory", "Authority", "License", "Type", "TenantId",
                                            "UniqueId", "iss", "aud")} == {
        "SCCMTokenCategory": "ClientAuthentication", "Authority": "SCCM", "License": "SCCM", "Type": "Device",
        "TenantId": TENANT, "UniqueId": "3B1E4A9C-0000-4000-8000-000000000001",
        "iss": f"urn:sccm:oauth2:{HIERARCHY}", "aud": "urn:sccm:service"}
    assert (claims["nbf"], claims["exp"]) == (int(NOW), int(NOW + CCM_ARGS["lifetime"]))
    assert not {"tid", "jti", "token_type"} & claims.keys()
    assert peek_claims(ccm(key, token_type="UDA"))["Type"] == "UDA"


def _site_token(key: rsa.RSAPrivateKey, **changes: Any) -> str:
    claims = {**peek_claims(ccm(key)), **changes}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "site-1"})


@pytest.mark.parametrize("changes", [
    {"Type": "BulkRegistration"},                   # the bulk registration token: same issuer, audience and key
    {"SCCMTokenCategory": "BulkRegistration"},
    {"SCCMTokenCategory": "x" * 100},
    {"Type": 1},
])
def test_another_site_token_is_not_a_ccm_token(key: rsa.RSAPrivateKey, changes: dict[str, Any]) -> None:
    """A site-signed token of another category or type is refused as malformed, naming both (cut at 40 characters)."""
    with pytest.raises(TokenRejected) as refused:
        verify_ccm_token(_site_token(key, **changes), keys={"site-1": key.public_key()}, hierarchy_id=HIERARCHY,
                         tenants={TENANT}, now=NOW)
    assert (refused.value.code, refused.value.kind) == ("IDX12741", "malformed")
    assert "not a CCM token: SCCMTokenCategory" in refused.value.reason and len(refused.value.reason) < 150


@pytest.mark.parametrize("claim", ["SCCMTokenCategory", "Authority", "License", "Type", "TenantId", "UniqueId"])
def test_a_ccm_token_without_a_layout_claim_is_malformed(key: rsa.RSAPrivateKey, claim: str) -> None:
    claims = peek_claims(ccm(key))
    del claims[claim]
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "site-1"})
    with pytest.raises(TokenRejected) as refused:
        verify_ccm_token(token, keys={"site-1": key.public_key()}, hierarchy_id=HIERARCHY, tenants={TENANT}, now=NOW)
    assert refused.value.reason == f"token is missing the {claim} claim"


def test_both_ccm_token_types_verify(key: rsa.RSAPrivateKey) -> None:
    for token_type in ("Device", "UDA"):
        claims = verify_ccm_token(ccm(key, token_type=token_type), keys={"site-1": key.public_key()},
                                  hierarchy_id=HIERARCHY, tenants={TENANT}, now=NOW)
        assert claims["Type"] == token_type
