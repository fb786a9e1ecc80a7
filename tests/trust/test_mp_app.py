"""The management point called as an ASGI app: who may call it (the connection point's certificate, identity headers,
a device's own certificate, a CCM token), each endpoint's answer and the name its metrics carry, registration (Entra,
bulk token, PKI) with its signature checks and log lines, MP_LocationManager's replies, MP_PolicyManager's checks of
the client and its clientauth hook, policy bodies behind ClientToken (the secret one encrypted to the client), and every
refusal with its status, reason phrase, x-cmg-status-text, body and metric. The site database is the real one (SQLite in
a temporary directory); the token verifiers, CCM_STS, content store and token manager are stand-ins."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import random
import tracemalloc
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from cmg_protocol import clientauth, envelope, messages, tokens
from cmg_protocol.cms import decrypt_enveloped
from cmg_protocol.ids import braced_guid
from cmg_protocol.policy import PolicyFlags
from cmg_protocol.registration import AAD_TOKEN_HEADER
from cmg_protocol.site_tokens import TYPE_BULK
from cmg_protocol.statuses import (
    MP_BAD_MESSAGE,
    MP_IDENTITY_HEADER_REFUSED,
    MP_INVALID_TOKEN,
    MP_NO_CP_CERTIFICATE,
    MP_NOT_REGISTERED,
    MP_REGISTRATION_TOKEN_INVALID,
    MP_SIGNATURE_INVALID,
)
from mock_site import mp
from mock_site.asgi import respond
from mock_site.config import SiteConfig
from mock_site.db import SiteDatabase
from mock_site.faults.registry import FaultRegistry
from mock_site.mp import MpApp, SitePolicy
from mock_site.mp_aut import MP_WINDOWS_AUTH_REQUIRED, MpCertificates
from mock_site.pki.certificates import CONNECTION_POINT_COMMON_NAME
from tests.trust.asgi_calls import Answer, Logs, Metrics, call, role_certificate_der

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
STAMP = "2026-01-01T00:00:00Z"
SITE = "PS1"
TENANT = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"
DEVICE = "1c8a1a1e-5b1a-4d3c-9f0e-2b7c6d5e4f3a"
USER_OID = "6f1d2c3b-4a59-4e8f-9d0c-1b2a3c4d5e6f"
MP_HOST = "mp.contoso.com:8443"
CMG_HOST = "cmg.contoso.com"
TOKENAUTH = "/ccm_system_tokenauth/request"
CP = role_certificate_der(CONNECTION_POINT_COMMON_NAME)
PKI_DEVICE = role_certificate_der("PKIDEVICE01")
PKI_OTHER = role_certificate_der("PKIDEVICE02")


def _self_signed(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, name: str) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(7).not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
            .not_valid_after(dt.datetime(2120, 1, 1, tzinfo=dt.UTC)).sign(key, hashes.SHA256()))


# The client's signing and encryption identities are two keys, so that mixing them up shows.
SIGNING_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ENCRYPTION_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SIGNING_CERT = _self_signed(SIGNING_KEY, "SMS")
ENCRYPTION_CERT = _self_signed(ENCRYPTION_KEY, "SMS Encryption")


def _hex(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.DER).hex().upper()


SIGNING_HEX, ENCRYPTION_HEX = _hex(SIGNING_CERT), _hex(ENCRYPTION_CERT)
EC_HEX = _hex(_self_signed(ec.generate_private_key(ec.SECP256R1()), "EC"))


# --- stand-ins ------------------------------------------------------------------------------------------------------


class MpMetrics(Metrics):
    def registration(self, result: str) -> None:
        self.calls.append(("registration", result))


class CcmVerifier:
    """Hands back the claims set for a token; any other token is refused as expired."""

    def __init__(self) -> None:
        self.claims: dict[str, dict[str, Any]] = {}

    def verify(self, token: str) -> dict[str, Any]:
        if token == "boom":
            raise RuntimeError("verifier broke")
        if token not in self.claims:
            raise tokens.TokenRejected("IDX10223", "Lifetime validation failed", "expired")
        return self.claims[token]


class EntraVerifier:
    def __init__(self) -> None:
        self.claims: dict[str, dict[str, Any]] = {"entra": {"tid": TENANT, "deviceid": DEVICE, "oid": USER_OID}}
        for n in range(2, 5):
            self.claims[f"entra-{n}"] = {"tid": TENANT, "deviceid": str(uuid.UUID(int=n))}

    async def verify(self, token: str) -> dict[str, Any]:
        if token not in self.claims:
            raise tokens.TokenRejected("IDX10503", "Signature validation failed", "signature")
        return self.claims[token]


class Sts:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def handle(self, request: Any, send: Any, body: bytes) -> None:
        self.bodies.append(body)
        await respond(send, 200, b'{"token": "t"}', content_type="application/json")


class Content:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def content(self, package_id: str, content_id: str) -> bytes:
        self.asked.append((package_id, content_id))
        return b"content of " + package_id.encode()


class TokenManager:
    def __init__(self) -> None:
        self.asked: list[tuple[str, Any]] = []

    def reply(self, body_xml: str, claims: dict[str, Any] | None) -> str:
        self.asked.append((body_xml, claims))
        return "<ClientTokenReply/>"


class CountingDb:
    """The real site database, counting the client look-ups the MP makes."""

    def __init__(self, db: SiteDatabase) -> None:
        self.db = db
        self.lookups = 0

    def client(self, smsid: str) -> Any:
        self.lookups += 1
        return self.db.client(smsid)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


class Mp:
    """An MpApp with stand-ins around it."""

    def __init__(self, tmp: Path, *, logs: bool = True, token_manager: bool = True, **app: Any) -> None:
        self.config = SiteConfig(state_dir=tmp, site_code=SITE, site_version="5.00.9999.1000", build_number=9999,
                                 client_content_bytes=1000)
        self.db = CountingDb(SiteDatabase(tmp / "site.db", clock=lambda: NOW, rng=random.Random(5)))
        self.faults = FaultRegistry(lambda: NOW, random.Random(1))
        self.metrics, self.logs = MpMetrics(), Logs()
        self.ccm, self.entra, self.sts, self.content = CcmVerifier(), EntraVerifier(), Sts(), Content()
        self.token_manager = TokenManager()
        self.ccm.claims["ccm"] = {"TenantId": TENANT.upper()}
        self.ccm.claims["bulk"] = {"token_type": TYPE_BULK, "TenantId": TENANT}
        stand_ins: dict[str, Any] = {"sts": self.sts, "ccm_verifier": self.ccm, "entra_verifier": self.entra,
                                     "content": self.content}
        self.app = MpApp(config=self.config, db=self.db, faults=self.faults, metrics=self.metrics,
                         logs=self.logs if logs else None, clock=lambda: NOW, public_host=MP_HOST, cmg_host=CMG_HOST,
                         rng=random.Random(11), token_manager=self.token_manager if token_manager else None,
                         **stand_ins, **app)
        self.app.sms_aut._certificates = MpCertificates(b"\x01", b"\x02", b"\x03")

    def request(self, method: str, path: str, *, cert: bytes | None = CP, token: str | None = None,
                headers: dict[str, str] | None = None, **kw: Any) -> Answer:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        answer, _ = call(self.app, method, path, headers=all_headers, cert=cert, **kw)
        return answer

    def message(self, target: str, body_xml: str, *, path: str = TOKENAUTH, cert: bytes | None = CP,
                token: str | None = "ccm", headers: dict[str, str] | None = None, **fields: Any) -> Answer:
        values: dict[str, Any] = {"source_host": "DEV1", "message_id": "{5B1A1E0C-0000-4000-8000-00000000000A}",
                                  "sent_time": STAMP, **fields}
        body = envelope.encode_message(envelope.MessageHeader(target_endpoint=target, **values), body_xml)
        return self.request("CCM_POST", path, cert=cert, token=token, body=body,
                            headers={"content-type": envelope.CONTENT_TYPE, **(headers or {})})

    def register(self, body_xml: str | None = None, *, token: str | None = "ccm", aad: str | None = "entra",
                 **kw: Any) -> Answer:
        headers = {AAD_TOKEN_HEADER: aad} if aad is not None else {}
        headers.update(kw.pop("headers", {}))
        return self.message("MP_ClientRegistration", body_xml or registration_xml(), token=token, headers=headers,
                            **kw)

    def registered(self, **kw: Any) -> str:
        """Register (Entra) and return the SMSID, with a CCM token ``ccm-<smsid>`` naming it."""
        answer = self.register(**kw)
        assert answer.status == 200, answer.text
        smsid = messages.RegistrationResponse.from_xml(reply(answer).body_xml).smsid
        self.ccm.claims[f"ccm-{smsid}"] = {"smsid": smsid}
        return smsid

    def policy(self, client_id: str, *, token: str | None = None, key: rsa.RSAPrivateKey = SIGNING_KEY,
               site_code: str = SITE, hook: bool = True, **kw: Any) -> Answer:
        body_xml = messages.RequestAssignments(client_id=client_id, fqdn="dev1.contoso.com", netbios_name="DEV1",
                                               sid="", site_code=site_code).to_xml()
        fields: dict[str, Any] = {"source_id": client_id}
        if hook:
            fields["client_auth"] = clientauth.hook_properties(key, client_id,
                                                               envelope.encoded_body(body_xml, True)[1], "DEV1")
        return self.message("MP_PolicyManager", body_xml, token=token if token is not None else f"ccm-{client_id}",
                            **fields, **kw)

    def policy_body(self, query: str, *, client_token: str | None = None, signature: str | None = None,
                    **kw: Any) -> Answer:
        headers = {}
        if client_token is not None:
            headers["ClientToken"] = client_token
        if signature is not None:
            headers["ClientTokenSignature"] = signature
        return self.request("GET", "/SMS_MP/.sms_pol", query=query, headers=headers, **kw)

    def observed(self) -> list[tuple[Any, ...]]:
        """(endpoint, method, status, request bytes, response bytes) of every request, its time checked."""
        rows = self.metrics.of("observe")
        assert all(0 <= row[-1] < 5 for row in rows), rows
        return [row[:-1] for row in rows]

    def log(self, name: str, level: str = "info") -> list[str]:
        return [text for file, lvl, text in self.logs.lines if file == name and lvl == level]


def registration_xml(*, signing_hex: str = SIGNING_HEX, encryption_hex: str = ENCRYPTION_HEX,
                     key: rsa.RSAPrivateKey = SIGNING_KEY, netbios: str = "DEV1", signed: bool = True) -> str:
    request = messages.RegistrationRequest(netbios_name=netbios, fq_name=f"{netbios.lower()}.contoso.com",
                                           locale_id=1033, internet_flag=2, agent_version="5.00.8968.1000",
                                           signing_cert_hex=signing_hex, encryption_cert_hex=encryption_hex,
                                           timestamp=STAMP)
    if signed:
        request = replace(request, signature_hex=envelope.clientauth_signature(
            key, request.data_xml().encode("utf-16-le")))
    return request.to_xml()


def reply(answer: Answer) -> envelope.Message:
    assert answer.status == 200, answer.text
    assert answer.headers["content-type"] == envelope.CONTENT_TYPE
    return envelope.decode_message(answer.headers["content-type"], answer.body)


def refused(answer: Answer, status: int, status_text: str, detail: str) -> None:
    assert (answer.status, answer.reason, answer.headers["x-cmg-status-text"]) == (status, status_text, status_text)
    assert answer.text == f"{status_text}: {detail}"


def policy_query(policy: SitePolicy) -> str:
    return urlsplit(policy.assignment.location_url).query


# --- who may call ---------------------------------------------------------------------------------------------------


def test_without_a_certificate_the_mp_refuses_everything(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    answer = site.request("GET", "/SMS_MP/.sms_aut", cert=None, query="MPLIST", token="ccm")
    refused(answer, 403, MP_NO_CP_CERTIFICATE, "the MP only takes requests from a connection point")
    assert site.observed() == [("unauthenticated", "GET", 403, 0, len(answer.body))]


def test_without_the_cp_certificate_requirement_a_token_is_enough(tmp_path: Path) -> None:
    site = Mp(tmp_path, require_cp_certificate=False)
    assert site.request("GET", "/SMS_MP/.sms_aut", cert=None, query="MPLIST", token="ccm").status == 200
    assert site.request("GET", "/SMS_MP/.sms_aut", cert=CP, query="MPLIST", token="ccm").status == 200


@pytest.mark.parametrize("header", ["x-cmg-client-cert", "x-cmg-request-uri"])
def test_identity_headers_from_anyone_but_the_connection_point_are_refused(tmp_path: Path, header: str) -> None:
    site = Mp(tmp_path)
    answer = site.request("GET", "/SMS_MP/.sms_aut", cert=PKI_DEVICE, query="MPLIST",
                          headers={header: base64.b64encode(PKI_OTHER).decode()})
    refused(answer, 403, MP_IDENTITY_HEADER_REFUSED, "identity headers are taken only from a connection point")
    assert site.observed() == [("unauthenticated", "GET", 403, 0, len(answer.body))]


def test_a_device_certificate_is_the_devices_own_identity_and_a_forwarded_one_comes_from_the_cp(
        tmp_path: Path) -> None:
    site = Mp(tmp_path)
    assert site.request("GET", "/SMS_MP/.sms_aut", cert=PKI_DEVICE, query="MPLIST").status == 200
    forwarded = {"x-cmg-client-cert": base64.b64encode(PKI_DEVICE).decode()}
    assert site.request("GET", "/SMS_MP/.sms_aut", cert=CP, query="MPLIST", headers=forwarded).status == 200
    # The connection point's own certificate is no client's: without a forwarded one it needs a token.
    refused(site.request("GET", "/SMS_MP/.sms_aut", cert=CP, query="MPLIST"), 401, MP_INVALID_TOKEN, "no token")


def test_a_forwarded_certificate_that_is_not_strict_base64_is_refused(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    answer = site.request("GET", "/SMS_MP/.sms_aut", query="MPLIST", headers={"x-cmg-client-cert": "QUJD!"})
    refused(answer, 400, MP_BAD_MESSAGE, "forwarded client certificate is not base64")


def test_a_refused_token_is_401_with_its_code_and_counted_by_kind(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    answer = site.request("GET", "/SMS_MP/.sms_aut", query="MPLIST", token="stale")
    refused(answer, 401, MP_INVALID_TOKEN, "IDX10223")
    assert site.metrics.of("token_rejected") == [("expired",)]
    refused(site.request("GET", "/SMS_MP/.sms_aut", query="MPLIST", headers={"Authorization": "Basic x"}), 401,
            MP_INVALID_TOKEN, "no token")


def test_a_request_that_breaks_the_app_is_counted_as_500_and_leaves_nothing_in_flight(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    with pytest.raises(RuntimeError, match="verifier broke"):
        site.request("GET", "/SMS_MP/.sms_aut", query="MPLIST", token="boom")
    # The endpoint is named before its handler runs: a request that broke it is counted under its own endpoint.
    assert site.observed() == [("/SMS_MP/.sms_aut", "GET", 500, 0, 0)]
    assert site.metrics.in_flight == 0


def test_a_non_http_scope_is_ignored(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    answer, _ = call(site.app, "GET", "/", scope_type="lifespan")
    assert answer.messages == 0
    assert site.metrics.calls == []


# --- endpoints --------------------------------------------------------------------------------------------------------


def test_ccm_sts_is_handed_the_body_and_named_ccm_sts(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    answer = site.request("POST", "/CCM_STS", body=b"form")
    assert (answer.status, answer.text) == (200, '{"token": "t"}')
    assert site.sts.bodies == [b"form"]
    assert site.observed() == [("/CCM_STS", "POST", 200, 4, len(answer.body))]


def test_sms_aut_answers_the_verb_to_a_caller_with_a_token(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    answer = site.request("GET", "/sms_mp/.SMS_AUT", query="MPLIST", token="ccm")
    assert answer.status == 200
    assert messages.MPList.from_xml(answer.text).entries == (
        messages.MPEntry(name="MP.CONTOSO.COM", fqdn="mp.contoso.com", version="9999", ssl_state=63),)
    refused(site.request("GET", "/SMS_MP/.sms_aut", query="MPLIST"), 401, MP_INVALID_TOKEN, "no token")
    assert [row[:3] for row in site.observed()] == [("/SMS_MP/.sms_aut", "GET", 200), ("/SMS_MP/.sms_aut", "GET", 401)]


def test_content_from_the_mp_goes_to_a_caller_by_package_and_content_id(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    path = "/downloadrestservice.svc/getcontentxmlsecure"
    answer = site.request("GET", path, query="pid=PS100002&cid=PS100003", token="ccm")
    assert (answer.status, answer.body, answer.headers["content-type"]) == (200, b"content of PS100002",
                                                                            "application/octet-stream")
    assert site.content.asked == [("PS100002", "PS100003")]
    refused(site.request("GET", path, query="pid=A&cid=B"), 401, MP_INVALID_TOKEN, "no token")
    assert site.content.asked == [("PS100002", "PS100003")]
    assert [row[:3] for row in site.observed()] == [(path, "GET", 200), (path, "GET", 401)]


def test_the_client_package_takes_a_token_only_and_is_the_sized_ccmsetup_cab(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    seed = hashlib.sha256(b"ccmsetup.cab").digest()
    answer = site.request("GET", "/CCM_Client/ccmsetup.cab", token="ccm")
    assert (answer.status, answer.headers["content-type"]) == (200, "application/vnd.ms-cab-compressed")
    assert answer.body == (seed * 32)[:1000]
    refused(site.request("GET", "/CCM_Client/ccmsetup.cab", cert=PKI_DEVICE), 401, MP_INVALID_TOKEN, "no token")
    assert [row[:3] for row in site.observed()] == [("/CCM_Client/ccmsetup.cab", "GET", 200),
                                                    ("/CCM_Client/ccmsetup.cab", "GET", 401)]


def test_the_default_content_store_serves_package_content(tmp_path: Path) -> None:
    config = SiteConfig(state_dir=tmp_path, package_content_bytes=100)
    app = MpApp(config=config, sts=None, ccm_verifier=None, entra_verifier=None, db=None,  # type: ignore[arg-type]
                faults=None, metrics=MpMetrics(), logs=None, clock=lambda: NOW, public_host=MP_HOST,
                cmg_host=CMG_HOST)
    answer, _ = call(app, "GET", "/downloadrestservice.svc/getcontentxmlsecure", query="pid=P&cid=C", cert=PKI_DEVICE)
    seed = hashlib.sha256(b"P/C").digest()
    assert (answer.status, answer.body) == (200, (seed * 4)[:100])


def test_the_client_package_is_made_without_a_larger_buffer_first(tmp_path: Path) -> None:
    """The MP holds the package from its start: made from just enough repeats of its seed, not a multiple of it."""
    config = SiteConfig(state_dir=tmp_path)  # the default 256 KiB package
    tracemalloc.start()
    try:
        app = MpApp(config=config, sts=None, ccm_verifier=None, entra_verifier=None,  # type: ignore[arg-type]
                    db=None, faults=None, metrics=MpMetrics(), logs=None, clock=lambda: NOW, public_host=MP_HOST,
                    cmg_host=CMG_HOST, content=Content())  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(app.client_package) == config.client_content_bytes
    assert peak < 4 * config.client_content_bytes


def test_the_windows_auth_endpoint_is_refused_with_its_challenges(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    answer = site.request("CCM_POST", "/ccm_system_windowsauth/request", cert=PKI_DEVICE)
    assert (answer.status, answer.reason) == (401, MP_WINDOWS_AUTH_REQUIRED)
    assert site.observed()[0][:3] == ("/ccm_system_windowsauth/request", "CCM_POST", 401)


def test_an_unknown_path_is_404_unmatched(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    answer = site.request("GET", "/SMS_MP/.sms_xyz", token="ccm")
    refused(answer, 404, MP_BAD_MESSAGE, "no such MP endpoint: /SMS_MP/.sms_xyz")
    assert site.observed() == [("unmatched", "GET", 404, 0, len(answer.body))]


def test_a_body_of_one_mib_is_read_and_one_byte_more_is_413(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    limit = 1024 * 1024
    whole = site.request("CCM_POST", TOKENAUTH, token="ccm", chunks=[b"x" * (limit - 1), b"x"],
                         headers={"content-type": envelope.CONTENT_TYPE})
    assert (whole.status, whole.reason) == (400, MP_BAD_MESSAGE)  # read, then found to be no message
    over = site.request("CCM_POST", "/CCM_System_TokenAuth/Request", token="ccm", chunks=[b"x" * limit, b"x"])
    refused(over, 413, MP_BAD_MESSAGE, f"body over {limit} bytes")
    assert site.observed() == [("/ccm_system_tokenauth/request", "CCM_POST", 400, limit, len(whole.body)),
                               ("/ccm_system_tokenauth/request", "CCM_POST", 413, 0, len(over.body))]


def test_a_body_too_large_is_counted_under_its_endpoint_name_and_a_made_up_path_under_unmatched(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    big = [b"x" * (1024 * 1024), b"x"]
    refused(site.request("CCM_POST", "/sms_mp/.SMS_AUT", token="ccm", chunks=big), 413, MP_BAD_MESSAGE,
            "body over 1048576 bytes")
    refused(site.request("CCM_POST", "/Made/Up/1", token="ccm", chunks=big), 413, MP_BAD_MESSAGE,
            "body over 1048576 bytes")
    # One name per endpoint whatever the path's case, and one for every path the MP does not serve: a client that
    # makes up paths cannot add metric series.
    assert [row[:3] for row in site.observed()] == [("/SMS_MP/.sms_aut", "CCM_POST", 413),
                                                    ("unmatched", "CCM_POST", 413)]


# --- messaging -------------------------------------------------------------------------------------------------------


def test_site_information_is_answered_with_a_reply_envelope_to_the_caller(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    answer = site.message("MP_LocationManager", messages.SiteInformationRequest(site_code="ps1").to_xml(),
                          reply_compression=False)
    message = reply(answer)
    assert messages.SiteInfoReply.from_xml(message.body_xml) == messages.SiteInfoReply(SITE, "5.00.9999.1000", 9999)
    expected_id = braced_guid(random.Random(random.Random(11).getrandbits(64)))
    assert message.header == envelope.MessageHeader(
        target_endpoint="LS_ReplyLocations", source_host=MP_HOST, target_host="DEV1", message_id=expected_id,
        correlation_id="{5B1A1E0C-0000-4000-8000-00000000000A}", sent_time=STAMP, compressed=False,
        target_address="mp:LS_ReplyLocations", reply_to=f"direct:{MP_HOST}:SccmMessaging", reply_compression=True)
    assert site.log("MP_Location.log") == ["Site information request for site ps1"]
    (endpoint, method, status, request_bytes, response_bytes), = site.observed()
    assert (endpoint, method, status, response_bytes) == (TOKENAUTH, "CCM_POST", 200, len(answer.body))
    assert request_bytes > 400


def test_a_reply_to_a_message_without_an_id_correlates_to_the_null_id(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    answer = site.message("MP_LocationManager", messages.SiteInformationRequest(site_code=SITE).to_xml(),
                          message_id="", reply_to="direct:DEV1:MyQueue")
    header = reply(answer).header
    assert (header.correlation_id, header.target_endpoint, header.compressed) == (envelope.NULL_CORRELATION_ID,
                                                                                  "MyQueue", True)


def test_a_reply_to_without_an_endpoint_is_refused(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    answer = site.message("MP_LocationManager", messages.SiteInformationRequest(site_code=SITE).to_xml(),
                          reply_to="direct:DEV1:")
    refused(answer, 400, MP_BAD_MESSAGE, "ReplyTo names no endpoint: 'direct:DEV1:'")


def test_a_body_that_is_no_message_is_refused_with_the_reason(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    answer = site.request("CCM_POST", TOKENAUTH, token="ccm", body=b"hello", headers={"content-type": "text/plain"})
    assert (answer.status, answer.reason) == (400, MP_BAD_MESSAGE)
    assert answer.text.startswith(f"{MP_BAD_MESSAGE}: ") and len(answer.text) > len(MP_BAD_MESSAGE) + 2


def test_the_client_package_location_is_the_cmg_download_service(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    body = messages.ContentLocationRequest(site_code=SITE, package_id=None, package_version="1").to_xml()
    located = messages.ContentLocationReply.from_xml(reply(site.message("MP_LocationManager", body)).body_xml)
    assert located == messages.ContentLocationReply(SITE, (
        f"https://{CMG_HOST}/downloadrestservice.svc/getcontentxmlsecure?pid=CS100001&cid=CS100001",))
    assert site.log("MP_Location.log") == ["Content location request for package CS100001: 1 location(s)"]


def test_a_package_location_uses_the_public_cmg_address_the_proxy_sent(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    body = messages.ContentLocationRequest(site_code=SITE, package_id="PS100002", package_version="1").to_xml()

    def url(uri: str | None) -> str:
        headers = {"x-cmg-request-uri": uri} if uri is not None else {}
        return messages.ContentLocationReply.from_xml(
            reply(site.message("MP_LocationManager", body, headers=headers)).body_xml).urls[0]
    tail = "/downloadrestservice.svc/getcontentxmlsecure?pid=PS100002&cid=PS100002"
    assert url("https://proxy.example.com:4443/CCM_Proxy_ServerAuth/1/ccm_system_tokenauth/request") == \
        f"https://proxy.example.com:4443{tail}"
    assert url(None) == f"https://{CMG_HOST}{tail}"
    assert url("https://user@evil.example.com/x") == f"https://{CMG_HOST}{tail}"
    assert url("not a url") == f"https://{CMG_HOST}{tail}"


def test_location_manager_refuses_a_request_it_does_not_handle(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    answer = site.message("MP_LocationManager", "<MPListRequest/>")
    refused(answer, 400, MP_BAD_MESSAGE, "MP_LocationManager does not handle 'MPListRequest'")


def test_an_unknown_target_endpoint_is_404(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    refused(site.message("MP_Nothing", "<X/>"), 404, MP_BAD_MESSAGE, "unknown target endpoint 'MP_Nothing'")


def test_token_manager_gets_the_body_and_the_callers_claims_when_served(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    assert reply(site.message("MP_TokenManager", "<ClientTokenRequest/>")).body_xml == "<ClientTokenReply/>"
    assert site.token_manager.asked == [("<ClientTokenRequest/>", {"TenantId": TENANT.upper()})]
    without = Mp(tmp_path / "b", token_manager=False)
    refused(without.message("MP_TokenManager", "<ClientTokenRequest/>"), 404, MP_BAD_MESSAGE,
            "unknown target endpoint 'MP_TokenManager'")


def test_ccm_system_takes_a_device_certificate_and_tokenauth_and_altauth_do_not(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    body = messages.SiteInformationRequest(site_code=SITE).to_xml()
    assert site.message("MP_LocationManager", body, path="/ccm_system/request", cert=PKI_DEVICE, token=None).status \
        == 200
    for path in (TOKENAUTH, "/ccm_system_altauth/request"):
        refused(site.message("MP_LocationManager", body, path=path, cert=PKI_DEVICE, token=None), 401,
                MP_INVALID_TOKEN, "no token")
    assert site.message("MP_LocationManager", body, path="/ccm_system_altauth/request", cert=PKI_DEVICE).status == 200
    assert [row[0] for row in site.observed()] == ["/ccm_system/request", TOKENAUTH, "/ccm_system_altauth/request",
                                                   "/ccm_system_altauth/request"]


# --- registration ----------------------------------------------------------------------------------------------------


def test_an_entra_registration_creates_the_device_keeps_its_certificates_and_logs_it(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    answer = site.register()
    response = messages.RegistrationResponse.from_xml(reply(answer).body_xml)
    record = site.db.client(response.smsid)
    assert record is not None
    assert (record.device_id, record.tenant_id, record.auth, record.netbios_name) == (DEVICE, TENANT, "aad", "DEV1")
    assert (int(response.status), response.approval_status, response.timestamp) == (0, record.approval_status, STAMP)
    ders = (SIGNING_CERT.public_bytes(serialization.Encoding.DER),
            ENCRYPTION_CERT.public_bytes(serialization.Encoding.DER))
    assert site.db.client_certificates(response.smsid) == ders
    assert site.log("MP_RegistrationManager.log") == [
        f"Registering device using AAD auth: DeviceId='{DEVICE} ', TenantId='{TENANT}'",
        f"Processing Registration request from Client '{response.smsid}'"]
    assert site.metrics.of("registration") == [("created",)]
    assert site.register().status == 200
    assert site.metrics.of("registration") == [("created",), ("renewed",)]


def test_an_entra_user_token_without_a_device_id_registers_by_its_object_id(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    site.entra.claims["user"] = {"tid": TENANT, "oid": USER_OID}
    smsid = site.registered(aad="user")
    record = site.db.client(smsid)
    assert record is not None and record.device_id == USER_OID


def test_a_registration_needs_the_entra_token_of_the_ccm_tokens_tenant(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    refused(site.register(aad=None), 403, MP_REGISTRATION_TOKEN_INVALID,
            f"registration needs the device's Entra token in {AAD_TOKEN_HEADER}")
    refused(site.register(aad="forged"), 403, MP_REGISTRATION_TOKEN_INVALID, f"{AAD_TOKEN_HEADER}: IDX10503")
    site.entra.claims["elsewhere"] = {"tid": str(uuid.UUID(int=1)), "deviceid": DEVICE}
    refused(site.register(aad="elsewhere"), 403, MP_REGISTRATION_TOKEN_INVALID,
            f"{AAD_TOKEN_HEADER} is for another tenant than the CCM token")
    assert site.metrics.of("token_rejected") == [("signature",), ("tenant",)]
    assert site.db.count_clients() == 0
    assert site.metrics.of("registration") == []


def test_a_bulk_token_registration_is_known_by_its_signing_certificate(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    answer = site.register(token="bulk", aad=None)
    smsid = messages.RegistrationResponse.from_xml(reply(answer).body_xml).smsid
    record = site.db.client(smsid)
    thumbprint = hashlib.sha1(bytes.fromhex(SIGNING_HEX)).hexdigest().upper()
    assert record is not None and (record.auth, record.cert_thumbprint, record.device_id) == ("pki", thumbprint, None)
    assert site.log("MP_RegistrationManager.log")[0] == \
        f"Registering device using bulk registration token: Thumbprint='{thumbprint}'"


@pytest.mark.parametrize("path", ["/ccm_system/request", TOKENAUTH])
def test_a_pki_registration_is_known_by_the_client_certificate(tmp_path: Path, path: str) -> None:
    site = Mp(tmp_path)
    forwarded = {"x-cmg-client-cert": base64.b64encode(PKI_DEVICE).decode()}
    answer = site.register(token=None, aad=None, headers=forwarded, path="/ccm_system/request")
    smsid = messages.RegistrationResponse.from_xml(reply(answer).body_xml).smsid
    thumbprint = hashlib.sha1(PKI_DEVICE).hexdigest().upper()
    record = site.db.client(smsid)
    assert record is not None and (record.auth, record.cert_thumbprint) == ("pki", thumbprint)
    assert site.log("MP_RegistrationManager.log")[0] == \
        f"Registering device using PKI certificate auth: Thumbprint='{thumbprint}'"
    if path == TOKENAUTH:  # the token endpoint does not take the certificate as the caller
        refused(site.register(token=None, aad=None, headers=forwarded, path=path), 401, MP_INVALID_TOKEN, "no token")


def test_registration_works_without_log_files(tmp_path: Path) -> None:
    site = Mp(tmp_path, logs=False)
    site.registered()
    assert site.register(token="bulk", aad=None).status == 200
    assert site.register(token=None, aad=None, cert=PKI_DEVICE, path="/ccm_system/request").status == 200
    smsid = site.registered()
    assert site.policy(smsid, site_code="XYZ").status == 200
    body = messages.ContentLocationRequest(site_code=SITE, package_id=None, package_version="1").to_xml()
    assert site.message("MP_LocationManager", body).status == 200
    assert site.message("MP_LocationManager", messages.SiteInformationRequest(site_code=SITE).to_xml()).status == 200
    assert site.logs.lines == []


def test_a_registration_without_a_signature_or_with_a_bad_one_is_refused(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    refused(site.register(registration_xml(signed=False)), 403, MP_SIGNATURE_INVALID,
            "the registration request carries no signature")
    refused(site.register(registration_xml(key=ENCRYPTION_KEY)), 403, MP_SIGNATURE_INVALID,
            "the registration signature does not verify with the signing certificate the request carries")
    # The signature covers the <Data> element as sent: a change outside it does not matter, one inside does.
    good = registration_xml()
    assert site.register(good.replace("<Signature>", "<Extra/><Signature>")).status == 200
    refused(site.register(good.replace('Value="DEV1"', 'Value="DEV2"')), 403, MP_SIGNATURE_INVALID,
            "the registration signature does not verify with the signing certificate the request carries")
    assert site.metrics.of("token_rejected") == [("signature",)] * 3


def test_a_registration_whose_data_element_is_not_closed_plainly_is_refused(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    body = registration_xml().replace("</Data>", "</Data >")
    refused(site.register(body), 400, MP_BAD_MESSAGE,
            "registration request has no <Data> element to check the signature over")


@pytest.mark.parametrize(("signing", "encryption", "detail"), [
    (EC_HEX, ENCRYPTION_HEX, "the signing certificate does not hold an RSA key"),
    (SIGNING_HEX, "ZZ", "the encryption certificate is not hex-encoded DER"),
])
def test_a_registration_with_an_unusable_certificate_is_refused(tmp_path: Path, signing: str, encryption: str,
                                                                detail: str) -> None:
    site = Mp(tmp_path)
    refused(site.register(registration_xml(signing_hex=signing, encryption_hex=encryption)), 400, MP_BAD_MESSAGE,
            detail)


def test_a_registration_the_database_refuses_is_400_with_its_reason(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    answer = site.register(registration_xml(netbios="BAD NAME"))
    assert (answer.status, answer.reason) == (400, MP_BAD_MESSAGE)
    assert "NetBIOS name" in answer.text


# --- policy assignments ----------------------------------------------------------------------------------------------


def test_a_registered_client_gets_the_site_policy_and_it_is_logged(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    smsid = site.registered()
    answer = site.policy(smsid)
    assignments = messages.ReplyAssignments.from_xml(reply(answer).body_xml).assignments
    assert assignments == tuple(p.assignment for p in mp.site_policy_set(SITE))
    assert site.log("MP_Policy.log") == [f"Policy assignments request from client {smsid}: 7 assignment(s)"]
    assert site.log("MP_Policy.log", "warning") == []


def test_a_token_naming_the_client_in_lower_case_names_the_same_client(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    smsid = site.registered()
    site.ccm.claims["ccm-lower"] = {"smsid": "guid:" + smsid[5:].lower()}
    assert site.policy(smsid, token="ccm-lower").status == 200


def test_policy_for_another_site_code_is_answered_with_a_warning(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    smsid = site.registered()
    assert site.policy(smsid, site_code="ps1").status == 200
    assert site.log("MP_Policy.log", "warning") == []
    assert site.policy(smsid, site_code="PRI").status == 200
    assert site.log("MP_Policy.log", "warning") == [
        f"Policy assignments request from client {smsid} names PolicySource SMS:PRI; this site is {SITE}"]


@pytest.mark.parametrize("client_id", ["GUID:{id}-", "UUID:{id}", "GUID:{short}", "GUID{id}"])
def test_a_client_id_that_is_not_guid_colon_guid_is_400(tmp_path: Path, client_id: str) -> None:
    site = Mp(tmp_path)
    smsid = site.registered()
    bad = client_id.format(id=smsid[5:], short=smsid[5:-1])
    site.ccm.claims["ccm-bad"] = {}
    refused(site.policy(bad, token="ccm-bad"), 400, MP_BAD_MESSAGE, f"ClientID is not GUID:<guid>: {bad!r}")


def test_a_token_naming_another_client_gets_no_policy(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    smsid = site.registered()
    site.ccm.claims["ccm-other"] = {"smsid": "GUID:" + str(uuid.UUID(int=5)).upper()}
    refused(site.policy(smsid, token="ccm-other"), 403, MP_NOT_REGISTERED, "the client is not registered")


def test_an_unregistered_client_gets_no_policy_and_a_registered_one_is_looked_up_once(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    stranger = "GUID:" + str(uuid.UUID(int=9)).upper()
    site.ccm.claims["ccm-stranger"] = {"smsid": stranger}
    refused(site.policy(stranger, token="ccm-stranger"), 403, MP_NOT_REGISTERED, "the client is not registered")
    smsid = site.registered()
    lookups = site.db.lookups
    assert [site.policy(smsid).status for _ in range(3)] == [200] * 3
    assert site.db.lookups == lookups + 1


def test_a_client_registered_without_certificates_is_not_known_to_the_mp(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    seeded = site.db.register_client(device_id=str(uuid.UUID(int=3)), tenant_id=TENANT, netbios_name="SEEDED",
                                     fq_name="").smsid
    site.ccm.claims["ccm-seeded"] = {"smsid": seeded}
    refused(site.policy(seeded, token="ccm-seeded"), 403, MP_NOT_REGISTERED,
            f"the site holds no registration certificates for client {seeded}")


def test_a_policy_request_must_be_signed_with_the_registered_key(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    smsid = site.registered()
    refused(site.policy(smsid, hook=False), 403, MP_SIGNATURE_INVALID, "the request carries no clientauth hook")
    refused(site.policy(smsid, key=ENCRYPTION_KEY), 403, MP_SIGNATURE_INVALID,
            "PublicKey is not the signing key the client registered")
    assert site.metrics.of("token_rejected") == [("signature",), ("signature",)]
    assert site.policy(smsid).status == 200


def test_a_new_registration_replaces_the_key_the_mp_checks_with(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    smsid = site.registered()
    assert site.policy(smsid).status == 200
    again = registration_xml(signing_hex=ENCRYPTION_HEX, encryption_hex=SIGNING_HEX, key=ENCRYPTION_KEY)
    assert site.registered(body_xml=again) == smsid
    assert site.policy(smsid, key=ENCRYPTION_KEY).status == 200
    assert site.policy(smsid).status == 403


def test_the_key_objects_are_shared_by_certificate_and_held_for_at_most_4096_certificate_pairs(
        tmp_path: Path) -> None:
    site = Mp(tmp_path)
    first = site.registered()
    second = site.registered(aad="entra-2")  # another device with the same certificates
    assert site.app._keys(first) is site.app._keys(second)
    held = site.app._keys_by_der
    held.update({(bytes([i // 256, i % 256]), b""): held[next(iter(held))] for i in range(4094)})
    third = site.registered(aad="entra-3", body_xml=registration_xml(signing_hex=ENCRYPTION_HEX,
                                                                     encryption_hex=SIGNING_HEX, key=ENCRYPTION_KEY))
    assert site.policy(third, key=ENCRYPTION_KEY).status == 200
    assert len(held) == 4096  # full now: the next new pair empties it first
    fourth = site.registered(aad="entra-4", body_xml=registration_xml(encryption_hex=SIGNING_HEX))
    assert site.policy(fourth).status == 200
    assert len(held) == 1
    assert site.policy(first).status == 200


def test_policy_signature_mismatch_refuses_every_signature_while_it_is_on(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    smsid = site.registered()
    site.faults.set("policy_signature_mismatch")
    for _ in range(2):
        refused(site.policy(smsid), 403, MP_SIGNATURE_INVALID, "PublicKey is not the signing key the client registered")
    site.faults.clear("policy_signature_mismatch")
    assert site.policy(smsid).status == 200


def test_client_unknown_refuses_a_registered_client(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    smsid = site.registered()
    site.faults.set("client_unknown")
    refused(site.policy(smsid), 403, MP_NOT_REGISTERED, f"the site does not know client {smsid}")


def test_a_pki_client_gets_its_own_policy_with_the_certificate_it_registered_with(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    answer = site.register(token=None, aad=None, cert=PKI_DEVICE, path="/ccm_system/request")
    smsid = messages.RegistrationResponse.from_xml(reply(answer).body_xml).smsid
    entra_client = site.registered()
    lookups = site.db.lookups
    for cert, client, status in ((PKI_OTHER, smsid, 403), (PKI_DEVICE, smsid, 200), (PKI_DEVICE, smsid, 200),
                                 (PKI_OTHER, smsid, 403), (PKI_DEVICE, entra_client, 403),
                                 (PKI_DEVICE, "GUID:" + str(uuid.UUID(int=4)).upper(), 403)):
        answer = site.policy(client, token="", cert=PKI_DEVICE if cert == PKI_DEVICE else PKI_OTHER,
                             path="/ccm_system/request")
        assert answer.status == status, (cert == PKI_DEVICE, client == smsid, answer.text)
    assert site.db.lookups == lookups + 5  # the client's own certificate is looked up once


# --- policy bodies ---------------------------------------------------------------------------------------------------


def test_the_site_policy_set_is_six_plain_policies_and_the_network_access_account(tmp_path: Path) -> None:
    policies = mp.site_policy_set("PS2")
    assert [p.assignment.policy_category for p in policies] == [
        "Machine", "ClientAgentConfig", "SoftwareUpdates", "Compliance", "Inventory", "Endpoint", "NAAConfig"]
    ids = ["{" + str(uuid.uuid5(uuid.NAMESPACE_OID, f"PS2/policy/{i}")).upper() + "}" for i in range(7)]
    assert [p.assignment.policy_id for p in policies] == ids
    assert [(p.secret, p.requires_auth) for p in policies] == [(False, False)] * 6 + [(True, True)]
    assert mp.site_policies("PS2") == tuple(p.assignment for p in policies)
    assert len(mp.site_policies("PS2", 2)) == 3
    first = messages.PolicyBody.from_xml(policies[0].body.decode("utf-16"))
    assert first.body == f'<PolicyRule PolicyRuleID="{ids[0]}" Category="Machine"/>'
    assert policies[6].body.endswith(b"\x00\x00") and not policies[6].body.endswith(b"\x00\x00\x00\x00")
    naa = messages.PolicyBody.from_xml(policies[6].body[:-2].decode("utf-16-le"))
    assert naa.body == mp.naa_payload("PS2")
    user = "PS2\\svc-naa".encode("utf-16-le").hex().upper()
    assert f'<property name="NetworkAccessUsername" type="8" secret="1"><value>{user}</value></property>' in naa.body


def test_a_plain_policy_body_is_served_to_any_caller(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    policy = site.app.policy_set[0]
    answer = site.policy_body(policy_query(policy), token="ccm")
    assert (answer.status, answer.body, answer.headers["content-type"]) == (200, policy.body,
                                                                            "text/xml; charset=utf-16")
    refused(site.policy_body(policy_query(policy)), 401, MP_INVALID_TOKEN, "no token")
    assert [row[:3] for row in site.observed()] == [("/SMS_MP/.sms_pol", "GET", 200), ("/SMS_MP/.sms_pol", "GET", 401)]
    # The query names the policy in either case.
    assert site.policy_body(policy_query(policy).lower(), token="ccm").status == 200


@pytest.mark.parametrize("query", ["{00000000-0000-0000-0000-000000000000}.1_00", "no-dot"])
def test_an_unknown_policy_is_404(tmp_path: Path, query: str) -> None:
    site = Mp(tmp_path)
    refused(site.policy_body(query, token="ccm"), 404, MP_BAD_MESSAGE, f"no policy {query!r}")


def _naa(site: Mp) -> SitePolicy:
    naa = site.app.policy_set[-1]
    assert naa.secret
    return naa


def test_the_secret_policy_is_encrypted_to_the_client_that_signs_its_client_token(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    smsid = site.registered()
    naa = _naa(site)
    token = clientauth.client_token(smsid, NOW)
    answer = site.policy_body(policy_query(naa), token=f"ccm-{smsid}", client_token=token,
                              signature=clientauth.client_token_signature(SIGNING_KEY, token))
    assert (answer.status, answer.headers["content-type"]) == (200, "application/octet-stream")
    assert decrypt_enveloped(answer.body, ENCRYPTION_CERT, ENCRYPTION_KEY) == naa.body
    # A PKI caller (no token claims) signs its ClientToken the same way.
    answer = site.policy_body(policy_query(naa), cert=PKI_DEVICE, client_token=token,
                              signature=clientauth.client_token_signature(SIGNING_KEY, token))
    assert decrypt_enveloped(answer.body, ENCRYPTION_CERT, ENCRYPTION_KEY) == naa.body


def test_a_policy_that_needs_authentication_but_is_no_secret_is_served_clear_after_the_check(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    smsid = site.registered()
    plain = site.app.policy_set[0]
    guarded = SitePolicy(replace(plain.assignment, policy_flags=int(PolicyFlags.REQUIRESAUTH)), plain.body)
    site.app._policy_bodies = {mp._policy_key(policy_query(guarded)): guarded}
    refused(site.policy_body(policy_query(guarded), token="ccm"), 403, MP_SIGNATURE_INVALID,
            f"policy {plain.assignment.policy_id} needs a ClientToken header")
    token = clientauth.client_token(smsid, NOW)
    answer = site.policy_body(policy_query(guarded), token=f"ccm-{smsid}", client_token=token,
                              signature=clientauth.client_token_signature(SIGNING_KEY, token))
    assert (answer.status, answer.body, answer.headers["content-type"]) == (200, plain.body,
                                                                            "text/xml; charset=utf-16")


def test_the_secret_policy_needs_a_client_token_signed_with_the_registered_key(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    smsid = site.registered()
    naa = _naa(site)
    query, ccm = policy_query(naa), f"ccm-{smsid}"
    token = clientauth.client_token(smsid, NOW)
    refused(site.policy_body(query, token=ccm), 403, MP_SIGNATURE_INVALID,
            f"policy {naa.assignment.policy_id} needs a ClientToken header")
    refused(site.policy_body(query, token=ccm, client_token=token), 403, MP_SIGNATURE_INVALID,
            "ClientTokenSignature is missing")
    refused(site.policy_body(query, token=ccm, client_token=token,
                             signature=clientauth.client_token_signature(ENCRYPTION_KEY, token)), 403,
            MP_SIGNATURE_INVALID, "ClientTokenSignature does not verify with the registered signing key")
    refused(site.policy_body(query, token=ccm, client_token="nobody"), 403, MP_SIGNATURE_INVALID,
            "ClientToken is not GUID:<id>;<time>[;2]: 'nobody'")
    refused(site.policy_body(query, token=ccm, client_token="GUID:1234;x;2"), 403, MP_SIGNATURE_INVALID,
            "ClientToken names no client id: 'GUID:1234'")
    assert site.metrics.of("token_rejected") == [("signature",)] * 5


def test_a_client_token_in_lower_case_names_the_same_client(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    smsid = site.registered()
    token = clientauth.client_token("guid:" + smsid[5:].lower(), NOW)
    answer = site.policy_body(policy_query(_naa(site)), token=f"ccm-{smsid}", client_token=token,
                              signature=clientauth.client_token_signature(SIGNING_KEY, token))
    assert answer.status == 200


def test_the_secret_policy_is_refused_for_another_or_an_unknown_client(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    smsid = site.registered()
    query = policy_query(_naa(site))
    other = "GUID:" + str(uuid.UUID(int=6)).upper()
    token = clientauth.client_token(other, NOW)
    signature = clientauth.client_token_signature(SIGNING_KEY, token)
    refused(site.policy_body(query, token=f"ccm-{smsid}", client_token=token, signature=signature), 403,
            MP_NOT_REGISTERED, "the ClientToken names another client than the token")
    refused(site.policy_body(query, cert=PKI_DEVICE, client_token=token, signature=signature), 403,
            MP_NOT_REGISTERED, f"the site holds no registration certificates for client {other}")
    assert site.metrics.of("token_rejected") == []


def test_the_mp_faults_refuse_the_secret_policy(tmp_path: Path) -> None:
    site = Mp(tmp_path)
    smsid = site.registered()
    token = clientauth.client_token(smsid, NOW)
    signature = clientauth.client_token_signature(SIGNING_KEY, token)
    query = policy_query(_naa(site))
    site.faults.set("client_unknown")
    refused(site.policy_body(query, token=f"ccm-{smsid}", client_token=token, signature=signature), 403,
            MP_NOT_REGISTERED, f"the site does not know client {smsid}")
    site.faults.clear("client_unknown")
    site.faults.set("policy_signature_mismatch")
    refused(site.policy_body(query, token=f"ccm-{smsid}", client_token=token, signature=signature), 403,
            MP_SIGNATURE_INVALID, "ClientTokenSignature does not verify with the registered signing key")


def test_the_request_assignments_parse_cache_holds_at_most_8192_bodies() -> None:
    """A device's poll body is parsed once, but a fleet's worth of them is bounded: ~1 KB each, a few MB in all."""
    template = messages.RequestAssignments(client_id="GUID:00000000-0000-4000-8000-{:012X}", fqdn="d.contoso.com",
                                           netbios_name="D", sid="", site_code=SITE).to_xml()
    for n in range(8193 + 1):
        mp._request_assignments(template.replace("{:012X}", f"{n:012X}"))
    assert mp._request_assignments.cache_info().currsize == 8192
