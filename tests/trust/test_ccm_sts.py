"""CCM_STS called as an object: who gets a CCM token, of which type, for how long, naming which device, and every
refusal with its code, reason phrase, log line and metric (the Entra token checks themselves are tested elsewhere;
here a stand-in verifier hands back claims or a refusal)."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cmg_protocol import tokens
from cmg_protocol.sts_request import StsRequest
from mock_site.asgi import HttpRequest
from mock_site.config import SiteConfig
from mock_site.faults.registry import FaultRegistry
from mock_site.sts import ALL_ZEROS, CcmSts, StsError
from tests.trust.asgi_calls import Answer, Logs, Metrics, call

NOW = 1_750_000_000.0
TENANT = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"
DEVICE = "1c8a1a1e-5b1a-4d3c-9f0e-2b7c6d5e4f3a"
SMSID = "GUID:7D0C1E2F-3A4B-4C5D-8E9F-0A1B2C3D4E5F"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ENTRA = "entra.token.text"


@dataclass(frozen=True)
class Registered:
    smsid: str


class Db:
    def __init__(self, registered: dict[tuple[str, str], str] | None = None) -> None:
        self.registered = registered or {}
        self.tokens: list[tuple[Any, ...]] = []

    def client_by_device(self, tenant_id: str, device_id: str) -> Registered | None:
        smsid = self.registered.get((tenant_id, device_id))
        return Registered(smsid) if smsid else None

    def record_token(self, *row: Any) -> None:
        self.tokens.append(row)


class StsMetrics(Metrics):
    def token_issued(self, kind: str) -> None:
        self.calls.append(("token_issued", kind))


class Verifier:
    def __init__(self, claims: dict[str, Any] | None = None, refusal: tokens.TokenRejected | None = None) -> None:
        self.claims, self.refusal, self.seen = claims, refusal, []

    async def verify(self, token: str) -> dict[str, Any]:
        self.seen.append(token)
        if self.refusal is not None:
            raise self.refusal
        assert self.claims is not None
        return self.claims


class Sts:
    """A CCM_STS with stand-ins around it, at time scale 2 (so scaled lifetimes are visible)."""

    def __init__(self, tmp: Path, claims: dict[str, Any] | None = None, *, refusal: tokens.TokenRejected | None = None,
                 registered: dict[tuple[str, str], str] | None = None) -> None:
        self.config = SiteConfig(state_dir=tmp, time_scale=2.0)
        self.faults = FaultRegistry(lambda: NOW, random.Random(1))
        self.db, self.metrics, self.logs = Db(registered), StsMetrics(), Logs()
        self.verifier = Verifier(claims, refusal)
        self.sts = CcmSts(config=self.config, verifier=self.verifier, signing_key=KEY, signing_kid="ccm-kid",
                          db=self.db, faults=self.faults, metrics=self.metrics, logs=self.logs, clock=lambda: NOW,
                          mp_public_host="mp.contoso.com", rng=random.Random(7))

    def post(self, *, token: str | None = ENTRA, body: bytes = b"") -> Answer:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await self.sts.handle(HttpRequest.from_scope(scope), send, body)
        answer, _ = call(app, "POST", "/CCM_STS", headers=headers, body=body)
        return answer

    def log(self, level: str | None = None) -> list[str]:
        return [text for name, lvl, text in self.logs.lines if name == "CCM_STS.log" and level in (None, lvl)]


def _claims(**extra: Any) -> dict[str, Any]:
    return {"tid": TENANT, "deviceid": DEVICE, **extra}


def _issued(answer: Answer) -> tuple[dict[str, Any], dict[str, Any]]:
    reply = json.loads(answer.body)
    claims = jwt.decode(reply["token"], KEY.public_key(), algorithms=["RS256"], audience=tokens.CCM_AUDIENCE,
                        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False})
    return reply, claims


def test_a_registered_device_gets_an_eight_hour_device_token_naming_its_smsid(tmp_path: Path) -> None:
    sts = Sts(tmp_path, _claims(), registered={(TENANT, DEVICE): SMSID})
    answer = sts.post()
    assert (answer.status, answer.headers["content-type"]) == (200, "application/json")
    reply, claims = _issued(answer)
    lifetime = 8 * 3600 / 2.0
    assert (reply["token_type"], reply["expires_in"], reply["expires_at"]) == ("Device", lifetime, NOW + lifetime)
    assert (claims["exp"] - claims["nbf"], claims["smsid"], claims["deviceid"]) == (lifetime, SMSID, SMSID)
    assert claims["userid"] == str(uuid.uuid5(uuid.NAMESPACE_URL, f"{TENANT}/{ALL_ZEROS}"))
    assert sts.db.tokens == [(claims["UniqueId"], SMSID, "Device", NOW, NOW + lifetime)]
    assert sts.metrics.of("token_issued") == [("ccm",)]
    assert sts.verifier.seen == [ENTRA]
    assert sts.log() == [
        "ProcessRequest - Start", "Incoming request URL: https://mp.contoso.com/CCM_STS",
        f"Validated AAD token. TokenType: Device TenantId: {TENANT} UserId: {ALL_ZEROS} DeviceId: {DEVICE} "
        "OnPrem_UserSid:  OnPrem_DeviceSid: ", "TokenType is Device",
        f"Created SCCM token, token type: Device, hierarchyId: {sts.config.hierarchy_id}, userId: {claims['userid']}, "
        f"deviceId: {SMSID}", "Issued token", "Return token to client"]


def test_an_unregistered_device_is_named_by_its_entra_device_id(tmp_path: Path) -> None:
    sts = Sts(tmp_path, _claims())
    _, claims = _issued(sts.post())
    assert claims["smsid"] == ""
    assert claims["deviceid"] == f"GUID:{str(uuid.uuid5(uuid.NAMESPACE_URL, DEVICE)).upper()}"
    assert sts.db.tokens[0][1:3] == (DEVICE, "Device")


def test_a_user_token_gets_a_user_device_affinity_token_for_that_user(tmp_path: Path) -> None:
    oid = "5b0f3c2e-1111-4222-8333-944455556666"
    sts = Sts(tmp_path, {"tid": TENANT, "oid": oid})
    reply, claims = _issued(sts.post())
    assert reply["token_type"] == "UDA"
    assert claims["userid"] == str(uuid.uuid5(uuid.NAMESPACE_URL, f"{TENANT}/{oid}"))
    assert claims["deviceid"] == f"GUID:{str(uuid.uuid5(uuid.NAMESPACE_URL, oid)).upper()}"
    assert "TokenType is UDA" in sts.log()


def test_a_token_type_the_verifier_names_is_kept(tmp_path: Path) -> None:
    reply, _ = _issued(Sts(tmp_path, _claims(token_type="Device", oid="x")).post())
    assert reply["token_type"] == "Device"


def _assert_refused(answer: Answer, code: str, reason: str) -> None:
    assert (answer.status, answer.reason, answer.text) == (401, "Unauthorized", f"{code}: {reason}")
    assert answer.headers["www-authenticate"] == f'Bearer error="invalid_token", error_description="{code}"'


def test_a_request_without_a_bearer_token_is_refused(tmp_path: Path) -> None:
    sts = Sts(tmp_path, _claims())
    _assert_refused(sts.post(token=None), "IDX12741", "no bearer token in the request")
    assert sts.log("error") == ["PreAuth token validation failed. IDX12741: no bearer token in the request"]
    assert sts.verifier.seen == [] and sts.db.tokens == []


def test_a_refused_entra_token_is_refused_with_its_code_and_counted(tmp_path: Path) -> None:
    refusal = tokens.TokenRejected("IDX10223", "Lifetime validation failed. The token is expired.", "expired")
    sts = Sts(tmp_path, refusal=refusal)
    _assert_refused(sts.post(), "IDX10223", "Lifetime validation failed. The token is expired.")
    assert sts.metrics.of("token_rejected") == [("expired",)]
    assert sts.db.tokens == [] and sts.metrics.of("token_issued") == []


def _form(assertion: str) -> bytes:
    return StsRequest(assertion=assertion, client_id="", agent_version="5.00.9128.1000", client_host="PC1").to_body()


def test_a_form_body_must_assert_the_bearer_token(tmp_path: Path) -> None:
    sts = Sts(tmp_path, _claims())
    assert sts.post(body=_form(ENTRA)).status == 200
    other = sts.post(body=_form("another.token.text"))
    assert (other.status, other.reason) == (400, "Bad Request")
    assert json.loads(other.body) == {"error": "invalid_request",
                                      "error_description": "the assertion is not the bearer token of the request"}
    assert sts.log("error") == ["ProcessRequest - invalid token request: the assertion is not the bearer token of "
                                "the request"]
    assert sts.verifier.seen == [ENTRA]  # the mismatched request never reached token validation


def test_an_unreadable_form_body_is_a_bad_request_naming_the_field(tmp_path: Path) -> None:
    answer = Sts(tmp_path, _claims()).post(body=b"grant_type=password&assertion=x")
    assert (answer.status, json.loads(answer.body)["error_description"]) == (
        400, "grant_type must be urn:ietf:params:oauth:grant-type:jwt-bearer, got 'password'")


def test_the_sts_error_fault_throws_and_logs(tmp_path: Path) -> None:
    sts = Sts(tmp_path, _claims())
    sts.faults.set("sts_error")
    with pytest.raises(StsError, match=r"^CCM_STS failed \(fault sts_error\)$"):
        asyncio.run(sts.sts.handle(HttpRequest.from_scope({"type": "http", "method": "POST", "path": "/CCM_STS",
                                                           "headers": []}), _nowhere))
    assert sts.log("error") == ["ProcessRequest - unhandled exception while issuing the token (fault sts_error)"]


async def _nowhere(message: Any) -> None:
    raise AssertionError(f"nothing is sent when CCM_STS throws: {message}")


@pytest.mark.parametrize(("tenant_param", "refused"), [(None, True), (TENANT, True),
                                                       ("c8c82542-203c-4df9-9d86-cdd4dae67e0a", False)])
def test_tenant_not_onboarded_refuses_its_tenant_only(tmp_path: Path, tenant_param: str | None, refused: bool) -> None:
    sts = Sts(tmp_path, _claims())
    sts.faults.set("tenant_not_onboarded", role="sts", params={"tenant_id": tenant_param})
    answer = sts.post()
    if refused:
        _assert_refused(answer, "IDX10205", f"tenant {TENANT} is not onboarded (fault tenant_not_onboarded)")
        assert sts.metrics.of("token_rejected") == [("tenant",)]
    else:
        assert answer.status == 200 and sts.metrics.of("token_rejected") == []


def test_ccm_token_expired_issues_a_token_that_ended_a_minute_past_the_leeway(tmp_path: Path) -> None:
    sts = Sts(tmp_path, _claims())
    sts.faults.set("ccm_token_expired", role="sts")
    reply, claims = _issued(sts.post())
    leeway = 5 * 60 / 2.0
    assert claims["exp"] == int(NOW - leeway - 60.0)
    assert reply["expires_at"] == NOW - leeway - 60.0


def test_ccm_token_lifetime_sets_the_lifetime_in_real_seconds(tmp_path: Path) -> None:
    sts = Sts(tmp_path, _claims())
    sts.faults.set("ccm_token_lifetime", params={"seconds": 30})
    reply, claims = _issued(sts.post())
    assert (reply["expires_in"], claims["exp"] - claims["nbf"]) == (30.0, 30)


def test_token_ids_come_from_the_injected_generator(tmp_path: Path) -> None:
    """Two token services seeded alike issue the same token ids: a run with a fixed seed is reproducible."""
    first, second = (_issued(Sts(tmp_path, _claims()).post())[1]["UniqueId"] for _ in range(2))
    assert first == second
