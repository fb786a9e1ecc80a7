"""The CMG's edge rules, called in-process: who refuses what (status, reason phrase, body), what reaches the
connection point, and what the CMGService statistics and the metrics count for each request."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cmg_protocol import urlmap
from cmg_protocol.clock import FakeClock
from cmg_protocol.statuses import (
    BAD_REQUEST,
    CLIENT_CERT_REQUIRED,
    CONNECTION_POINT_TIMEOUT,
    INVALID_TOKEN,
    METHOD_NOT_ALLOWED,
    NO_CONNECTION_POINT,
    NOT_IN_URL_MAP,
    TENANT_NOT_ONBOARDED,
    TOO_LARGE,
)
from cmg_protocol.tokens import CONFIGMGR_RESOURCE, jwk_from_public_key
from mock_site.cmg import (
    CLIENT_CERT_HEADER,
    MAX_BODY_BYTES,
    REQUEST_URI_HEADER,
    AadTenant,
    CmgApp,
    ContentStore,
    TokenValidator,
)
from mock_site.faults.registry import FaultRegistry
from mock_site.metrics.traffic import CMGServiceStats
from mock_site.token_checks import CcmTokenVerifier, EntraTokenVerifier, JwksCache
from mock_site.upstream import RoundRobin, UpstreamResponse
from tests.trust.asgi_calls import Answer, Logs, Metrics, Steps, Upstream, call
from tests.trust.test_token_trust import HIERARCHY, KID, NOW, TENANT, ccm, entra

ROLE_ID = "72186325152220500"
STS = urlmap.server_auth_path(ROLE_ID, urlmap.CCM_STS)
MESSAGING = urlmap.server_auth_path(ROLE_ID, urlmap.CCM_SYSTEM_TOKENAUTH)
MUTUAL_MESSAGING = urlmap.mutual_auth_path(ROLE_ID, urlmap.CCM_SYSTEM)
SERVER_MESSAGING = urlmap.server_auth_path(ROLE_ID, urlmap.CCM_SYSTEM)
POLICY = f"/CCM_Proxy_MutualAuth/{ROLE_ID}/{urlmap.SMS_POL}"
CONTENT = "/downloadrestservice.svc/getcontentxmlsecure"
OTHER_TENANT = "c8c82542-203c-4df9-9d86-cdd4dae67e0a"
CERT = b"\x30\x82device-certificate-der"
CCM_KID = "site-ccm-key"


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    """Entra's signing key and the site's own CCM signing key (two keys, two kids, as on a real site)."""
    return (rsa.generate_private_key(public_exponent=65537, key_size=2048),
            rsa.generate_private_key(public_exponent=65537, key_size=2048))


class Site:
    """One CMG app with two recording connection points, a real fault registry, real verifiers and stats."""

    def __init__(self, keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey], *, logs: bool = True, content_bytes: int = 100) -> None:
        self.clock = FakeClock(NOW)
        self.faults = FaultRegistry(self.clock, __import__("random").Random(1))
        self.metrics = Metrics()
        self.stats = CMGServiceStats(self.clock)
        self.logs = Logs()
        self.cps = [Upstream("cp"), Upstream("cp1")]
        self.entra_key, self.ccm_key = keys
        jwks = {"keys": [jwk_from_public_key(self.entra_key, KID)]}

        async def fetch() -> dict[str, Any]:
            return jwks

        self.app = CmgApp(
            instance=0, public_host="cmg.contoso.com:443", connection_points=RoundRobin(self.cps),
            ccm_verifier=CcmTokenVerifier({CCM_KID: self.ccm_key.public_key()}, hierarchy_id=HIERARCHY,
                                           tenants=lambda: {TENANT}, clock=self.clock),
            entra_verifier=EntraTokenVerifier(JwksCache(fetch, clock=self.clock), audiences=CONFIGMGR_RESOURCE,
                                              tenants=lambda: {TENANT}, clock=self.clock),
            tenants=lambda: {TENANT: AadTenant(TENANT, "client-app", "https://ConfigMgrService")},
            faults=self.faults, metrics=self.metrics, stats=self.stats, logs=self.logs if logs else None,
            content=ContentStore(content_bytes), clock=self.clock, perf_counter=Steps(0.25))

    def ccm(self, **overrides: Any) -> str:
        return ccm(self.ccm_key, **{"kid": CCM_KID, **overrides})

    def entra(self, **overrides: Any) -> str:
        return entra(self.entra_key, **{"now": NOW, **overrides})

    def __call__(self, method: str, path: str, **kwargs: Any) -> Answer:
        return call(self.app, method, path, **kwargs)[0]

    def forwarded(self) -> list[tuple[str, str, dict[str, str], bytes]]:
        return [r for cp in self.cps for r in cp.requests]

    def stats_rows(self) -> dict[str, tuple[int, int, int, int, int]]:
        return {line.request_uri: (line.request_count, line.request_size, line.response_count, line.response_size,
                                   line.average_elapsed_ms) for line in self.stats.drain()}


@pytest.fixture
def site(keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> Site:
    return Site(keys)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _refused(answer: Answer, status: int, text: str, detail: str | None = None) -> None:
    assert (answer.status, answer.reason, answer.headers["x-cmg-status-text"]) == (status, text, text)
    if detail is not None:
        assert answer.text == f"{text}: {detail}"


# --- the URL map and the request line ---------------------------------------------------------------------------


def test_a_path_outside_the_url_map_is_refused_and_counted_as_unmatched(site: Site) -> None:
    """404 CMGService_Not_In_URL_Map; nothing forwarded; stats and metrics name it 'unmatched', never the raw path."""
    answer = site("GET", f"/CCM_Proxy_ServerAuth/{ROLE_ID}/CCM_STS/extra")
    _refused(answer, 404, NOT_IN_URL_MAP)
    assert site.forwarded() == []
    assert site.metrics.of("observe") == [("unmatched", "GET", 404, 0, len(answer.body), 0.25)]
    assert site.metrics.of("error") == [("unmatched", 404, NOT_IN_URL_MAP)]
    assert list(site.stats_rows()) == ["unmatched"]
    assert site.metrics.in_flight == 0


def test_a_malformed_request_is_a_bad_request(site: Site) -> None:
    """A query given to an endpoint that takes none is malformed: 400 CMGService_Bad_Request, not 404."""
    answer = site("POST", STS, query="x=1", headers=bearer("t"))
    _refused(answer, 400, BAD_REQUEST)
    assert site.metrics.of("error") == [("unmatched", 400, BAD_REQUEST)]


def test_a_request_target_naming_a_host_is_refused(site: Site) -> None:
    """``GET http://evil/...`` cannot choose where the CMG forwards: 400, even for a mapped path and a good token."""
    answer = site("POST", STS, headers=bearer(site.entra(now=NOW)), absolute_form=True)
    _refused(answer, 400, BAD_REQUEST)
    assert site.forwarded() == []


def test_a_method_the_endpoint_does_not_take_is_refused(site: Site) -> None:
    """GET on CCM_STS (POST only): 405 with the method and endpoint named."""
    _refused(site("GET", STS, headers=bearer(site.entra(now=NOW))), 405, METHOD_NOT_ALLOWED,
             f"GET is not allowed on {urlmap.CCM_STS}")
    assert site.metrics.of("error") == [(f"/CCM_Proxy_ServerAuth/{{id}}/{urlmap.CCM_STS}", 405, METHOD_NOT_ALLOWED)]


def test_a_websocket_scope_is_left_alone(site: Site) -> None:
    """Only HTTP is served: another scope type gets no answer and counts nothing."""
    answer, _ = call(site.app, "GET", STS, scope_type="websocket")
    assert answer.status == 0 and site.metrics.calls == [] and site.stats_rows() == {}


# --- body size limits ---------------------------------------------------------------------------------------------


def test_a_body_of_exactly_the_endpoint_limit_is_taken(site: Site) -> None:
    """CCM_STS takes 64 KiB: a declared and sent body of exactly that size is forwarded whole."""
    body = b"x" * urlmap.STS_MAX_BODY_BYTES
    answer = site("POST", STS, headers={**bearer(site.entra(now=NOW)), "content-length": str(len(body))}, body=body)
    assert answer.status == 200
    assert site.forwarded()[0][3] == body


def test_a_declared_length_over_the_limit_is_refused_before_reading(site: Site) -> None:
    """Content-Length one over the endpoint's limit: 413 naming the length and limit; nothing forwarded."""
    limit = urlmap.STS_MAX_BODY_BYTES
    answer = site("POST", STS, headers={**bearer(site.entra(now=NOW)), "content-length": str(limit + 1)})
    _refused(answer, 413, TOO_LARGE, f"content length {limit + 1} is over the {limit}-byte limit of CCM_STS")
    assert site.forwarded() == []


def test_an_empty_declared_body_is_fine(site: Site) -> None:
    """Content-Length: 0 on a GET is an ordinary request, not a malformed length."""
    assert site("GET", POLICY, query="Policy/1", headers={**bearer(site.ccm()), "content-length": "0"}).status == 200


@pytest.mark.parametrize("declared", ["-1", "lots"])
def test_a_declared_length_that_is_not_a_size_is_a_bad_request(site: Site, declared: str) -> None:
    """A negative or non-numeric Content-Length: 400 'content length is not a number'."""
    answer = site("POST", STS, headers={"content-length": declared})
    _refused(answer, 400, BAD_REQUEST, "content length is not a number")


def test_a_body_that_grows_past_the_limit_is_refused(site: Site) -> None:
    """Without a Content-Length the CMG stops reading at the limit: 413 'body over the limit'."""
    limit = urlmap.STS_MAX_BODY_BYTES
    answer = site("POST", STS, headers=bearer(site.entra(now=NOW)), chunks=[b"x" * limit, b"y"])
    _refused(answer, 413, TOO_LARGE, f"body over the {limit}-byte limit of CCM_STS")
    assert site.forwarded() == []


def test_the_cmg_wide_cap_bounds_every_endpoint() -> None:
    """No endpoint may take more than 4 MiB at the CMG, whatever the URL map says."""
    assert MAX_BODY_BYTES == 4 * 1024 * 1024
    assert all(route.max_body_bytes <= MAX_BODY_BYTES for route in (urlmap.match(MESSAGING), urlmap.match(STS)))


# --- AADAuthInfo --------------------------------------------------------------------------------------------------


def _aad(site: Site, tenant: str) -> Answer:
    return site("GET", f"/CCM_Proxy_ServerAuth/{urlmap.AAD_AUTH_INFO}", query=f"TenantID={tenant}")


def test_aad_auth_info_answers_an_onboarded_tenant_whatever_the_case(site: Site) -> None:
    """The tenant id is looked up without case; the answer carries the tenant, client app and resource."""
    answer = _aad(site, TENANT.upper())
    assert answer.status == 200 and answer.headers["content-type"] == "application/json"
    assert json.loads(answer.body) == {"AADTENANTID": TENANT, "AADCLIENTAPPID": "client-app",
                                       "AADRESOURCEURI": "https://ConfigMgrService"}
    assert site.forwarded() == []


def test_aad_auth_info_gives_no_properties_for_an_unknown_tenant(site: Site) -> None:
    """404 CMGService_Tenant_Not_Onboarded with an empty JSON object."""
    answer = _aad(site, OTHER_TENANT)
    assert (answer.status, answer.reason, answer.headers["x-cmg-status-text"]) == (404, TENANT_NOT_ONBOARDED,
                                                                                   TENANT_NOT_ONBOARDED)
    assert json.loads(answer.body) == {}


def test_the_tenant_not_onboarded_fault_concerns_its_tenant_only(site: Site) -> None:
    """With a tenant_id the fault refuses that tenant and no other; without one it refuses every tenant."""
    site.faults.set("tenant_not_onboarded", params={"tenant_id": TENANT.upper()}, duration=60)
    assert _aad(site, TENANT).status == 404
    site.faults.set("tenant_not_onboarded", params={"tenant_id": OTHER_TENANT}, duration=60)
    assert _aad(site, TENANT).status == 200
    site.faults.set("tenant_not_onboarded", duration=60)
    assert _aad(site, TENANT).status == 404


# --- who authenticates ---------------------------------------------------------------------------------------------


def test_a_client_certificate_on_mutual_auth_is_passed_on_and_a_claimed_one_is_dropped(site: Site) -> None:
    """The CMG names the certificate the TLS layer saw (base64 DER) and never a header the client sent itself."""
    answer = site("CCM_POST", MUTUAL_MESSAGING, headers={CLIENT_CERT_HEADER: "forged", "content-type": "text/xml",
                                                          "cookie": "c"}, body=b"<msg/>", cert=CERT)
    assert answer.status == 200
    method, target, headers, body = site.forwarded()[0]
    assert (method, target, body) == ("CCM_POST", MUTUAL_MESSAGING, b"<msg/>")
    assert headers[CLIENT_CERT_HEADER] == base64.b64encode(CERT).decode("ascii")
    assert headers[REQUEST_URI_HEADER] == f"https://cmg.contoso.com:443{MUTUAL_MESSAGING}"
    assert headers["content-type"] == "text/xml" and "cookie" not in headers


def test_a_forged_certificate_header_without_a_certificate_is_not_passed_on(site: Site) -> None:
    """A token-authenticated request that also claims a certificate reaches the CP with no certificate header."""
    site("CCM_POST", MESSAGING, headers={**bearer(site.ccm()), CLIENT_CERT_HEADER: "forged"}, body=b"<m/>")
    assert CLIENT_CERT_HEADER not in site.forwarded()[0][2]


def test_without_certificate_or_token_mutual_auth_asks_for_a_certificate(site: Site) -> None:
    """403 CMGService_Client_Certificate_Required on a route that takes either."""
    _refused(site("CCM_POST", MUTUAL_MESSAGING, body=b"<m/>"), 403, CLIENT_CERT_REQUIRED,
             "no client certificate and no token")
    assert site.forwarded() == []


def test_server_auth_ignores_a_certificate_and_wants_a_token(site: Site) -> None:
    """On ServerAuth the same endpoint needs the CCM token: a certificate alone gets 401 'no bearer token'."""
    _refused(site("CCM_POST", SERVER_MESSAGING, body=b"<m/>", cert=CERT), 401, INVALID_TOKEN, "no bearer token")
    assert site.forwarded() == []


def test_a_ccm_token_opens_the_messaging_endpoint_and_names_the_client(site: Site) -> None:
    """A valid CCM token is forwarded with its bearer header; the request's client id is the token's smsid."""
    token = site.ccm(smsid="GUID:S", device_id="GUID:D")
    answer, scope = call(site.app, "CCM_POST", MESSAGING, headers=bearer(token), body=b"<m/>")
    assert answer.status == 200 and answer.body == b"<ok/>" and answer.headers["content-type"] == "text/xml"
    assert site.forwarded()[0][2]["authorization"] == f"Bearer {token}"
    assert scope["state"]["client_id"] == "GUID:S"


def test_a_ccm_token_without_smsid_names_the_device(site: Site) -> None:
    """Before registration the token has no smsid: the device id counts as the client."""
    _, scope = call(site.app, "CCM_POST", MESSAGING, headers=bearer(site.ccm(smsid="", device_id="GUID:D")),
                    body=b"<m/>")
    assert scope["state"]["client_id"] == "GUID:D"


def test_an_entra_token_is_refused_on_a_ccm_token_route_by_the_cmg(site: Site) -> None:
    """The messaging endpoint needs a CCM token (CcmTokenAuth=1): a valid Entra token there is refused by the CMG
    itself, with its status text, and nothing is forwarded."""
    answer = site("CCM_POST", MESSAGING, headers=bearer(site.entra(now=NOW, device_id="dev-1")), body=b"<m/>")
    assert (answer.status, answer.reason) == (401, INVALID_TOKEN)
    assert site.forwarded() == []


def test_a_ccm_token_is_not_an_entra_token_on_ccm_sts(site: Site) -> None:
    """CCM_STS takes only an Entra token: the CMG itself refuses a CCM token there (401 with the IDX code)."""
    answer = site("POST", STS, headers=bearer(site.ccm()), body=b"{}")
    assert (answer.status, answer.reason) == (401, INVALID_TOKEN) and answer.text.startswith(f"{INVALID_TOKEN}: IDX")
    assert site.forwarded() == []


def test_a_missing_token_on_ccm_sts_is_refused_by_the_cmg(site: Site) -> None:
    """No Authorization header: 401 'no bearer token' from the CMG, nothing forwarded."""
    _refused(site("POST", STS, body=b"{}"), 401, INVALID_TOKEN, "no bearer token")
    assert site.forwarded() == []


def test_a_refused_token_is_counted_and_logged_with_its_code(site: Site) -> None:
    """An expired CCM token: 401 with IDX10223, the rejection counted by kind and logged with the request URI."""
    answer = site("CCM_POST", MESSAGING, headers=bearer(site.ccm(now=NOW - 7200)), body=b"<m/>")
    _refused(answer, 401, INVALID_TOKEN, "IDX10223")
    assert site.metrics.of("token_rejected") == [("expired",)]
    assert [(f, level) for f, level, _ in site.logs.lines] == [("CMGService.log", "warning")]
    assert MESSAGING in site.logs.lines[0][2] and "IDX10223" in site.logs.lines[0][2]
    assert site.forwarded() == []


def test_a_refused_token_without_logs_still_answers(keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> None:
    """A CMG without a log directory refuses the same way."""
    site = Site(keys, logs=False)
    _refused(site("CCM_POST", MESSAGING, headers=bearer("not.a.token"), body=b"<m/>"), 401, INVALID_TOKEN)


def test_the_ccm_token_expired_fault_refuses_tokens_issued_up_to_its_start(site: Site) -> None:
    """Tokens issued before or at the fault's start count as expired (IDX10223); one issued after passes."""
    site.faults.set("ccm_token_expired", duration=600)
    started = site.clock()
    for issued in (started - 10, started):
        _refused(site("CCM_POST", MESSAGING, headers=bearer(site.ccm(now=issued, smsid=f"GUID:{issued}")),
                      body=b"<m/>"), 401, INVALID_TOKEN, "IDX10223")
    assert site("CCM_POST", MESSAGING, headers=bearer(site.ccm(now=started + 0.5)), body=b"<m/>").status == 200
    assert site.metrics.of("token_rejected") == [("expired",), ("expired",)]


def test_the_ccm_token_expired_fault_spares_entra_tokens(site: Site) -> None:
    """The fault revokes CCM tokens only: an Entra token at CCM_STS still passes while a CCM token is refused."""
    site.faults.set("ccm_token_expired", duration=600)
    assert site("POST", STS, headers=bearer(site.entra(now=NOW - 10)), body=b"{}").status == 200
    assert site("CCM_POST", MESSAGING, headers=bearer(site.ccm()), body=b"<m/>").status == 401


# --- content ------------------------------------------------------------------------------------------------------


def test_content_is_served_from_the_cmg_storage_after_the_token_check(site: Site) -> None:
    """A content-enabled CMG answers the download itself: the configured size, the same bytes for the same ids."""
    query = "pid=MEM00001&cid=c1"
    first = site("GET", CONTENT, query=query, headers=bearer(site.ccm()))
    assert first.status == 200 and len(first.body) == 100
    assert first.headers["content-type"] == "application/octet-stream"
    assert site("GET", CONTENT, query=query, headers=bearer(site.ccm())).body == first.body
    assert site("GET", CONTENT, query="pid=MEM00001&cid=c2", headers=bearer(site.ccm())).body != first.body
    assert site.forwarded() == []
    _refused(site("GET", CONTENT, query=query), 403, CLIENT_CERT_REQUIRED)


@pytest.mark.parametrize("size", [1, 31, 32, 33, 1000])
def test_stored_content_has_exactly_the_configured_size(size: int) -> None:
    """Whatever the size, the blob is that many bytes, deterministic per package and content id."""
    store = ContentStore(size)
    blob = store.content("P", "C")
    assert len(blob) == size and ContentStore(size).content("P", "C") == blob


# --- forwarding ----------------------------------------------------------------------------------------------------


def test_requests_go_round_robin_over_the_connection_points_with_their_query(site: Site) -> None:
    """Each request goes to the next connection point; a policy query reaches it unchanged."""
    token = site.ccm()
    for _ in range(3):
        assert site("GET", POLICY, query="Policy/1", headers=bearer(token)).status == 200
    assert [len(cp.requests) for cp in site.cps] == [2, 1]
    assert site.cps[0].requests[0][1] == f"{POLICY}?Policy/1"


def test_the_connection_point_answer_passes_back_with_only_its_status_headers(site: Site) -> None:
    """Status, reason, body, content type and the three status headers come back; other headers stay behind."""
    for cp in site.cps:
        cp.answer = UpstreamResponse(500, "CMGConnector_InternalServerError", {
            "content-type": "text/plain", "x-cmg-status-text": "S", "x-ccm-error-code": "0x1",
            "www-authenticate": "Bearer", "set-cookie": "secret"}, b"failed")
    answer = site("CCM_POST", MESSAGING, headers=bearer(site.ccm()), body=b"<m/>")
    assert (answer.status, answer.reason, answer.body) == (500, "CMGConnector_InternalServerError", b"failed")
    assert {k: answer.headers[k] for k in ("content-type", "x-cmg-status-text", "x-ccm-error-code",
                                           "www-authenticate")} == {
        "content-type": "text/plain", "x-cmg-status-text": "S", "x-ccm-error-code": "0x1", "www-authenticate": "Bearer"}
    assert "set-cookie" not in answer.headers


def test_an_answer_without_reason_or_type_gets_the_defaults(site: Site) -> None:
    """No reason phrase from the CP: none is set; no content type: application/octet-stream."""
    for cp in site.cps:
        cp.answer = UpstreamResponse(200, "", {}, b"data")
    answer = site("CCM_POST", MESSAGING, headers=bearer(site.ccm()), body=b"<m/>")
    assert answer.reason is None and answer.headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize(("kind", "status", "text"), [("timeout", 504, CONNECTION_POINT_TIMEOUT),
                                                      ("connect", 503, NO_CONNECTION_POINT),
                                                      ("reset", 503, NO_CONNECTION_POINT)])
def test_a_connection_point_that_fails_is_named(site: Site, kind: str, status: int,
                                                text: str) -> None:
    """A timeout is 504, any other failure 503; the failure is counted and logged against the connection point."""
    for cp in site.cps:
        cp.error = kind
    answer = site("CCM_POST", MESSAGING, headers=bearer(site.ccm()), body=b"<m/>")
    _refused(answer, status, text, "cp" if kind == "timeout" else f"cp: {kind}")
    assert site.metrics.of("forward_error") == [("cp", kind)]
    assert [(f, level) for f, level, _ in site.logs.lines] == [("CMGService.log", "error")]


def test_a_failing_connection_point_without_logs_still_answers(keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> None:
    """A CMG without a log directory answers the same 504."""
    site = Site(keys, logs=False)
    for cp in site.cps:
        cp.error = "timeout"
    assert site("CCM_POST", MESSAGING, headers=bearer(site.ccm()), body=b"<m/>").status == 504


def test_the_cp_disconnected_fault_answers_503_without_forwarding(site: Site) -> None:
    """With no connection point connected, nothing is forwarded."""
    site.faults.set("cp_disconnected", duration=60)
    _refused(site("CCM_POST", MESSAGING, headers=bearer(site.ccm()), body=b"<m/>"), 503, NO_CONNECTION_POINT,
             "no CMG connection point is connected")
    assert site.forwarded() == []


# --- what is counted -----------------------------------------------------------------------------------------------


def test_stats_and_metrics_count_the_bytes_each_way_per_request_uri(site: Site) -> None:
    """CMGService counts request and response bytes and the elapsed time per URI; the metrics per route template."""
    for cp in site.cps:
        cp.answer = UpstreamResponse(200, "OK", {}, b"r" * 7)
    site("CCM_POST", MESSAGING, headers=bearer(site.ccm()), body=b"b" * 11)
    site("CCM_POST", MESSAGING, headers=bearer(site.ccm()), body=b"b" * 5)
    assert site.stats_rows() == {MESSAGING: (2, 16, 2, 14, 250)}
    template = f"/CCM_Proxy_ServerAuth/{{id}}/{urlmap.CCM_SYSTEM_TOKENAUTH}"
    assert site.metrics.of("observe") == [(template, "CCM_POST", 200, 11, 7, 0.25), (template, "CCM_POST", 200, 5, 7,
                                                                                      0.25)]
    assert site.metrics.of("error") == []


def test_a_refused_request_counts_the_body_the_cmg_read(site: Site) -> None:
    """A request refused for its token still sent its body: RequestSize includes it; the error is counted."""
    site("POST", STS, headers=bearer("no"), body=b"x" * 1234)
    (row,) = site.stats_rows().values()
    assert row[:2] == (1, 1234) and row[2] == 1
    assert site.metrics.of("observe")[0][2:4] == (401, 1234)
    assert site.metrics.of("error") == [(f"/CCM_Proxy_ServerAuth/{{id}}/{urlmap.CCM_STS}", 401, INVALID_TOKEN)]


# --- the validation endpoint for a proxy in front ------------------------------------------------------------------


def test_the_token_validator_applies_the_cmg_rule(site: Site) -> None:
    """204 for a valid CCM token (or an Entra token asked for as ``token=entra``, the token service's rule); 401
    with the CMG's status text and the code otherwise — an Entra token where a CCM token is needed included."""
    validator = TokenValidator(site.app.ccm_verifier, site.app.entra_verifier)
    assert call(validator, "GET", "/validate", headers=bearer(site.ccm()))[0].status == 204
    assert call(validator, "GET", "/validate", query="token=entra", headers=bearer(site.entra(now=NOW)))[0].status == 204
    assert call(validator, "GET", "/validate", headers=bearer(site.entra(now=NOW)))[0].status == 401
    _refused(call(validator, "GET", "/validate")[0], 401, INVALID_TOKEN, "no bearer token")
    _refused(call(validator, "GET", "/validate", headers=bearer(site.ccm(now=NOW - 7200)))[0], 401, INVALID_TOKEN,
             "IDX10223")


def test_a_request_the_cmg_never_answered_is_counted_as_such(site: Site) -> None:
    """A hop failing in an unforeseen way leaves no response: CMGService counts a request without a response and the
    metrics record it as 499 (client closed), and the in-flight gauge still goes back down."""
    class Broken(Upstream):
        async def request(self, method: str, path: str, headers: Any, body: bytes) -> UpstreamResponse:
            raise RuntimeError("unforeseen")

    site.app.connection_points = RoundRobin([Broken("cp")])
    with pytest.raises(RuntimeError):
        site("CCM_POST", MESSAGING, headers=bearer(site.ccm()), body=b"<m/>")
    assert site.stats_rows() == {MESSAGING: (1, 4, 0, 0, 250)}
    assert site.metrics.of("observe")[0][2:5] == (499, 4, 0)
    assert site.metrics.of("error") == [] and site.metrics.in_flight == 0
