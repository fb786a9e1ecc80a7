"""Specification of the mock Microsoft Entra ID: metadata, JWKS, token endpoint, key rollover and token faults."""

from __future__ import annotations

import asyncio
import base64
import random
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from cmg_protocol import tokens
from cmg_protocol.clock import FakeClock
from mock_site.config import DEFAULT_CLIENT_APP_ID, TenantConfig
from mock_site.entra import (
    AADSTS_INVALID_PARAMETER,
    AADSTS_MISSING_PARAMETER,
    AADSTS_RESOURCE_NOT_FOUND,
    AADSTS_TENANT_NOT_FOUND,
    AADSTS_UNSUPPORTED_GRANT,
    EntraIssuer,
    TokenDefect,
    UnknownTenant,
    entra_app,
)
from mock_site.faults import CATALOGUE, FaultRegistry

TENANT = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"
CUSTOM_TENANT = "2ca9a796-a1a6-43ec-88f1-5935b32155c5"
CUSTOM_RESOURCE = "https://contoso.example/ConfigMgrService"
UNKNOWN_TENANT = "c0ffee00-0000-4000-8000-000000000000"
DEVICE = "8d2b4ff9-0172-4998-9851-b5324303385f"
USER = "e8838041-db7a-42d5-b9ae-78813910e4cc"
SID = "S-1-5-21-1527250992-855612568-2252598708-1604"
LIFETIME = 4500.0
BASE = "https://127.0.0.1:8443"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def issuer(clock: FakeClock) -> EntraIssuer:
    tenants = (TenantConfig(TENANT), TenantConfig(CUSTOM_TENANT, resource_uri=CUSTOM_RESOURCE))
    return EntraIssuer(clock, random.Random(3), tenants=tenants, lifetime=LIFETIME)


@pytest.fixture
def faults(clock: FakeClock) -> FaultRegistry:
    return FaultRegistry(clock, random.Random(5))


class AppClient:
    """Sends one request at a time straight into an ASGI app."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
                return await http.request(method, path, **kwargs)

        return asyncio.run(send())


@pytest.fixture
def client(issuer: EntraIssuer, faults: FaultRegistry) -> AppClient:
    return AppClient(entra_app(issuer, faults=faults))


def device_form(**changes: str) -> dict[str, str]:
    form = {
        "grant_type": "device_token",
        "resource": tokens.CONFIGMGR_RESOURCE,
        "client_id": DEFAULT_CLIENT_APP_ID,
        "device_id": DEVICE,
    }
    form.update(changes)
    return {name: value for name, value in form.items() if value != "<drop>"}


def user_form(**changes: str) -> dict[str, str]:
    return device_form(**{"grant_type": "user_token", "user_oid": USER, "onprem_sid": SID, **changes})


def request_token(client: AppClient, form: dict[str, str], tenant: str = TENANT) -> httpx.Response:
    return client.request("POST", f"/{tenant}/oauth2/token", data=form)


def verify(client: AppClient, token: str, now: float, audience: str = tokens.CONFIGMGR_RESOURCE) -> dict[str, Any]:
    """Verify ``token`` the way CCM_STS does, with the keys the app serves."""
    keys = tokens.keys_from_jwks(client.request("GET", "/common/discovery/keys").json())
    return tokens.verify_entra_token(token, keys=keys, audience=audience, tenants={TENANT, CUSTOM_TENANT}, now=now)


def error_code(response: httpx.Response) -> int:
    assert response.status_code == 400
    codes = response.json()["error_codes"]
    assert len(codes) == 1
    return int(codes[0])


# -------------------------------------------------------------------- metadata
def test_openid_configuration_names_the_tenant_issuer_and_endpoints(client: AppClient) -> None:
    """The tenant's discovery document gives the v1 issuer and endpoints under the app's own base URL."""
    document = client.request("GET", f"/{TENANT}/.well-known/openid-configuration").json()
    assert document["issuer"] == f"https://sts.windows.net/{TENANT}/"
    assert document["jwks_uri"] == f"{BASE}/{TENANT}/discovery/keys"
    assert document["token_endpoint"] == f"{BASE}/{TENANT}/oauth2/token"
    assert document["authorization_endpoint"] == f"{BASE}/{TENANT}/oauth2/authorize"
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]


def test_common_openid_configuration_has_the_templated_issuer(client: AppClient) -> None:
    """The common endpoint publishes the issuer with a {tenantid} placeholder, as Entra does."""
    document = client.request("GET", "/common/.well-known/openid-configuration").json()
    assert document["issuer"] == "https://sts.windows.net/{tenantid}/"
    assert document["jwks_uri"] == f"{BASE}/common/discovery/keys"


@pytest.mark.parametrize(
    "path",
    [
        f"/{UNKNOWN_TENANT}/.well-known/openid-configuration",
        f"/{UNKNOWN_TENANT}/discovery/keys",
        "/not-a-guid/discovery/keys",
    ],
)
def test_unknown_tenant_metadata_is_refused_with_aadsts90002(client: AppClient, path: str) -> None:
    """Metadata and keys of a tenant this Entra ID does not hold answer 400 AADSTS90002 naming the tenant."""
    response = client.request("GET", path)
    assert error_code(response) == AADSTS_TENANT_NOT_FOUND
    assert path.split("/")[1] in response.json()["error_description"]


def test_tenant_ids_match_in_any_case(client: AppClient) -> None:
    """A tenant id in upper case names the same tenant."""
    document = client.request("GET", f"/{TENANT.upper()}/.well-known/openid-configuration").json()
    assert document["issuer"] == f"https://sts.windows.net/{TENANT}/"


def test_every_tenant_serves_the_same_jwks(client: AppClient, issuer: EntraIssuer) -> None:
    """The tenant and common key endpoints publish the issuer's key set."""
    assert client.request("GET", f"/{TENANT}/discovery/keys").json() == issuer.jwks()
    assert client.request("GET", "/common/discovery/keys").json() == issuer.jwks()


def test_jwk_kid_and_x5t_are_the_certificate_thumbprint(issuer: EntraIssuer) -> None:
    """Each JWK carries its certificate in x5c, and kid = x5t = base64url SHA-1 of that certificate."""
    (jwk,) = issuer.jwks()["keys"]
    cert = x509.load_der_x509_certificate(base64.b64decode(jwk["x5c"][0]))
    thumbprint = base64.urlsafe_b64encode(cert.fingerprint(hashes.SHA1())).rstrip(b"=").decode()
    assert jwk["kid"] == jwk["x5t"] == thumbprint
    assert cert.public_key() == tokens.public_key_from_jwk(jwk)


def test_signing_certificate_lifetime_follows_the_injected_clock(issuer: EntraIssuer, clock: FakeClock) -> None:
    """The key certificate is valid from the clock's now for the key lifetime."""
    cert = x509.load_der_x509_certificate(issuer.current_key.cert_der)
    assert cert.not_valid_before_utc.timestamp() == clock()
    assert cert.not_valid_after_utc.timestamp() == clock() + issuer.key_lifetime


# ---------------------------------------------------------------------- tokens
def test_device_token_response_has_the_documented_fields(client: AppClient) -> None:
    """A device token request answers access_token, Bearer, expires_in and the resource."""
    body = request_token(client, device_form()).json()
    assert set(body) == {"access_token", "token_type", "expires_in", "resource"}
    assert (body["token_type"], body["expires_in"], body["resource"]) == (
        "Bearer",
        int(LIFETIME),
        "https://ConfigMgrService",
    )


def test_device_token_verifies_against_the_served_jwks(client: AppClient, clock: FakeClock) -> None:
    """A device token is type Device, names the device as subject and verifies with the published keys."""
    claims = verify(client, request_token(client, device_form()).json()["access_token"], clock())
    assert (claims["token_type"], claims["oid"], claims["deviceid"]) == ("Device", DEVICE, DEVICE)
    assert (claims["tid"], claims["appid"]) == (TENANT, DEFAULT_CLIENT_APP_ID)


def test_user_token_is_uda_for_the_user_on_the_device(client: AppClient, clock: FakeClock) -> None:
    """A user token is type UDA with the user as subject, the device id and the on-premises SID."""
    claims = verify(client, request_token(client, user_form()).json()["access_token"], clock())
    assert (claims["token_type"], claims["oid"], claims["deviceid"], claims["onprem_sid"]) == ("UDA", USER, DEVICE, SID)


def test_token_lifetime_is_the_configured_lifetime(client: AppClient, clock: FakeClock) -> None:
    """iat and nbf are now, and exp is now plus the issuer's lifetime."""
    claims = verify(client, request_token(client, device_form()).json()["access_token"], clock())
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (clock(), clock(), clock() + LIFETIME)


def test_common_endpoint_takes_the_tenant_from_the_form(client: AppClient, clock: FakeClock) -> None:
    """POST /common/oauth2/token with a tenant_id field issues a token of that tenant."""
    response = request_token(client, device_form(tenant_id=CUSTOM_TENANT), tenant="common")
    assert verify(client, response.json()["access_token"], clock())["tid"] == CUSTOM_TENANT


def test_tenant_resource_uri_is_accepted(client: AppClient, clock: FakeClock) -> None:
    """A tenant's own resource URI is a valid resource, and becomes the token audience."""
    response = request_token(client, device_form(resource=CUSTOM_RESOURCE), tenant=CUSTOM_TENANT)
    assert verify(client, response.json()["access_token"], clock(), audience=CUSTOM_RESOURCE)["aud"] == CUSTOM_RESOURCE


@pytest.mark.parametrize(
    ("form", "missing"),
    [
        (device_form(device_id="<drop>"), "'device_id'"),
        (device_form(client_id="<drop>", resource="<drop>"), "'resource', 'client_id'"),
        (device_form(grant_type="<drop>"), "'grant_type'"),
        (user_form(user_oid="<drop>"), "'user_oid'"),
        (device_form(device_id=""), "'device_id'"),
    ],
    ids=["device_id", "client_id+resource", "grant_type", "user_oid", "empty"],
)
def test_missing_fields_are_named(client: AppClient, form: dict[str, str], missing: str) -> None:
    """A request without a required field answers 400 AADSTS900144 naming every missing field."""
    response = request_token(client, form)
    assert error_code(response) == AADSTS_MISSING_PARAMETER
    assert f"parameter: {missing}." in response.json()["error_description"]


def test_common_endpoint_needs_the_tenant_field(client: AppClient) -> None:
    """On /common the tenant_id field is required."""
    response = request_token(client, device_form(), tenant="common")
    assert error_code(response) == AADSTS_MISSING_PARAMETER
    assert "'tenant_id'" in response.json()["error_description"]


def test_unknown_tenant_token_is_refused_with_aadsts90002(client: AppClient) -> None:
    """A token request for a tenant Entra does not hold answers 400 AADSTS90002 naming it."""
    response = request_token(client, device_form(), tenant=UNKNOWN_TENANT)
    assert error_code(response) == AADSTS_TENANT_NOT_FOUND
    assert UNKNOWN_TENANT in response.json()["error_description"]


def test_other_resource_is_refused(client: AppClient) -> None:
    """A resource that is neither ConfigMgrService nor the tenant's resource URI answers AADSTS500011."""
    response = request_token(client, device_form(resource="https://graph.microsoft.com"))
    assert error_code(response) == AADSTS_RESOURCE_NOT_FOUND
    assert response.json()["error"] == "invalid_resource"


def test_unknown_grant_type_is_refused(client: AppClient) -> None:
    """Only the device_token and user_token grants exist here."""
    response = request_token(client, device_form(grant_type="password"))
    assert error_code(response) == AADSTS_UNSUPPORTED_GRANT
    assert response.json()["error"] == "unsupported_grant_type"


@pytest.mark.parametrize(
    ("form", "named"),
    [
        (device_form(device_id="not-a-guid"), "device_id"),
        (device_form(client_id="0b7c8ab3"), "client_id"),
        (user_form(user_oid="someone"), "user_oid"),
        (user_form(onprem_sid="S-1-x"), "onprem_sid"),
        (user_form(onprem_sid="S-1-5"), "onprem_sid"),
        (user_form(onprem_sid="S-1-5-21-" + "1" * 200), "onprem_sid"),
        (user_form(onprem_sid="S-1-5-21--1"), "onprem_sid"),
        (user_form(onprem_sid="S-1-5-\u0661\u0662"), "onprem_sid"),
        (device_form(device_time="yesterday"), "device_time"),
        (device_form(device_time="-5"), "device_time"),
        (device_form(device_time="inf"), "device_time"),
    ],
)
def test_malformed_values_are_refused_and_named(client: AppClient, form: dict[str, str], named: str) -> None:
    """A field with an unusable value answers 400 with a description naming the field and the value."""
    response = request_token(client, form)
    assert error_code(response) == AADSTS_INVALID_PARAMETER
    assert named in response.json()["error_description"]


def test_non_form_body_is_refused(client: AppClient) -> None:
    """The token endpoint takes an urlencoded form, not JSON."""
    response = client.request("POST", f"/{TENANT}/oauth2/token", json=device_form())
    assert error_code(response) == AADSTS_INVALID_PARAMETER
    assert "x-www-form-urlencoded" in response.json()["error_description"]


def test_oversized_body_is_refused(client: AppClient) -> None:
    """A form over the size limit answers 400 instead of being read whole."""
    response = request_token(client, device_form(padding="x" * 20_000))
    assert error_code(response) == AADSTS_INVALID_PARAMETER
    assert "bytes" in response.json()["error_description"]


# ------------------------------------------------------------ device clock skew
@pytest.mark.parametrize(
    ("skew", "kind", "code"),
    [(3600.0, "not_yet_valid", "IDX10222"), (-2 * LIFETIME, "expired", "IDX10223")],
    ids=["ahead", "behind"],
)
def test_device_clock_skew_beyond_leeway_is_rejected(
    client: AppClient, clock: FakeClock, skew: float, kind: str, code: str
) -> None:
    """Entra stamps the token from device_time, so a device clock far off yields a token STS refuses."""
    token = request_token(client, device_form(device_time=str(clock() + skew))).json()["access_token"]
    with pytest.raises(tokens.TokenRejected) as rejected:
        verify(client, token, clock())
    assert (rejected.value.kind, rejected.value.code) == (kind, code)


def test_device_clock_skew_within_leeway_is_accepted(client: AppClient, clock: FakeClock) -> None:
    """A device clock 200 s ahead stays inside the 300 s allowance."""
    token = request_token(client, device_form(device_time=str(clock() + 200))).json()["access_token"]
    assert verify(client, token, clock())["iat"] == clock() + 200


# ---------------------------------------------------------------------- faults
@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("entra_token_expired", "expired"),
        ("entra_bad_signature", "signature"),
        ("entra_wrong_audience", "audience"),
        ("entra_wrong_issuer", "issuer"),
    ],
)
def test_token_fault_gives_a_token_sts_refuses(
    client: AppClient, faults: FaultRegistry, clock: FakeClock, fault: str, kind: str
) -> None:
    """Each Entra token fault still answers 200, with a token whose verification fails the documented way."""
    faults.set(fault)
    response = request_token(client, device_form())
    assert response.status_code == 200
    with pytest.raises(tokens.TokenRejected) as rejected:
        verify(client, response.json()["access_token"], clock())
    assert rejected.value.kind == kind
    assert faults.injections()[fault] == 1


def test_bad_signature_token_still_names_the_real_kid(
    client: AppClient, faults: FaultRegistry, issuer: EntraIssuer
) -> None:
    """The spoiled signature comes with the published kid, so the verifier finds a key and the signature fails."""
    faults.set("entra_bad_signature")
    token = request_token(client, device_form()).json()["access_token"]
    assert tokens_header_kid(token) == issuer.current_key.kid


def tokens_header_kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def test_refused_request_does_not_count_an_injection(client: AppClient, faults: FaultRegistry) -> None:
    """A request answered 400 draws no token fault."""
    faults.set("entra_wrong_audience")
    request_token(client, device_form(device_id="nope"))
    assert faults.injections()["entra_wrong_audience"] == 0


def test_one_defect_per_token(client: AppClient, faults: FaultRegistry, clock: FakeClock) -> None:
    """With several token faults on, a token gets the first in catalogue order and only that one is counted."""
    faults.set("entra_wrong_issuer")
    faults.set("entra_bad_signature")
    token = request_token(client, device_form()).json()["access_token"]
    with pytest.raises(tokens.TokenRejected, match="Signature"):
        verify(client, token, clock())
    assert (faults.injections()["entra_bad_signature"], faults.injections()["entra_wrong_issuer"]) == (1, 0)


@pytest.mark.parametrize("defect", list(TokenDefect))
def test_defect_values_are_catalogue_fault_names(defect: TokenDefect) -> None:
    """Every token defect is named after an Entra fault of the catalogue."""
    assert "entra" in CATALOGUE[defect.value].roles


# ---------------------------------------------------------------- key rollover
def test_rotate_keys_keeps_the_old_kid_published(issuer: EntraIssuer, clock: FakeClock) -> None:
    """After rotate_keys() the JWKS lists the new and the previous key, and old tokens still verify."""
    old_token = issuer.device_token(TENANT, DEVICE, client_id=DEFAULT_CLIENT_APP_ID)
    old_kid = issuer.current_key.kid
    new_kid = issuer.rotate_keys().kid
    assert [jwk["kid"] for jwk in issuer.jwks()["keys"]] == [new_kid, old_kid]
    keys = tokens.keys_from_jwks(issuer.jwks())
    tokens.verify_entra_token(old_token, keys=keys, audience=tokens.CONFIGMGR_RESOURCE, tenants={TENANT}, now=clock())


def test_second_rotation_drops_the_oldest_key(issuer: EntraIssuer) -> None:
    """Only the current and the previous key stay published."""
    first = issuer.current_key.kid
    issuer.rotate_keys()
    issuer.rotate_keys()
    assert first not in {jwk["kid"] for jwk in issuer.jwks()["keys"]}
    assert len(issuer.jwks()["keys"]) == 2


def test_new_tokens_use_the_new_key(issuer: EntraIssuer) -> None:
    """Tokens minted after a rotation carry the new kid."""
    new_kid = issuer.rotate_keys().kid
    assert tokens_header_kid(issuer.device_token(TENANT, DEVICE, client_id=DEFAULT_CLIENT_APP_ID)) == new_kid


def test_key_rolls_over_when_its_lifetime_has_passed(issuer: EntraIssuer, clock: FakeClock) -> None:
    """Once the injected clock passes the key lifetime, a new key signs and the old one stays published."""
    old_kid = issuer.current_key.kid
    clock.advance(issuer.key_lifetime)
    assert issuer.current_key.kid != old_kid
    assert old_kid in issuer.public_keys()


# ------------------------------------------------------------------ construction
@pytest.mark.parametrize(
    ("tenants", "lifetime", "named"),
    [((), 60.0, "at least one tenant"), ((TenantConfig(TENANT),), 0.0, "lifetime must be > 0 s, got 0.0")],
)
def test_bad_issuer_settings_are_refused(
    clock: FakeClock, tenants: tuple[TenantConfig, ...], lifetime: float, named: str
) -> None:
    """An issuer needs a tenant and a positive token lifetime."""
    with pytest.raises(ValueError, match=named):
        EntraIssuer(clock, random.Random(1), tenants=tenants, lifetime=lifetime)


def test_issuer_refuses_an_unknown_tenant_directly(issuer: EntraIssuer) -> None:
    """Minting for a tenant it does not hold raises UnknownTenant, a ValueError naming the tenant."""
    with pytest.raises(UnknownTenant, match=UNKNOWN_TENANT):
        issuer.user_token(UNKNOWN_TENANT, DEVICE, USER, client_id=DEFAULT_CLIENT_APP_ID)
