"""The connection point, called in-process: the external-to-internal URL rewrite, what reaches the MP, the
CMGConnector_* status texts for failures behind it, its log lines, traffic report and metrics."""

from __future__ import annotations

import random
from typing import Any

import pytest

from cmg_protocol import urlmap
from cmg_protocol.clock import FakeClock
from cmg_protocol.statuses import (
    CONNECTOR_BAD_REQUEST,
    CONNECTOR_CLIENT_CERT_REQUIRED,
    CONNECTOR_GATEWAY_TIMEOUT,
    CONNECTOR_INTERNAL_SERVER_ERROR,
    CONNECTOR_SERVICE_UNAVAILABLE,
    CONNECTOR_UNAUTHORIZED,
)
from mock_site.cmg import REQUEST_URI_HEADER
from mock_site.connection_point import CMG_CONNECTOR_ERROR, ERROR_CODE_HEADER, ConnectionPointApp
from mock_site.faults.registry import FaultRegistry
from mock_site.metrics.traffic import ConnectionPointReport
from mock_site.pki.certificates import CMG_IDENTITY_COMMON_NAME
from mock_site.upstream import UpstreamResponse
from tests.trust.asgi_calls import Answer, Logs, Metrics, Steps, Upstream, call, role_certificate_der

ROLE_ID = "72186325152220500"
STS = f"/CCM_Proxy_ServerAuth/{ROLE_ID}/{urlmap.CCM_STS}"
MESSAGING = f"/CCM_Proxy_ServerAuth/{ROLE_ID}/{urlmap.CCM_SYSTEM_TOKENAUTH}"
POLICY = f"/CCM_Proxy_MutualAuth/{ROLE_ID}/{urlmap.SMS_POL}"
MP_HOST = "mp.contoso.com:8443"
LOG = "SMS_CLOUD_PROXYCONNECTOR.log"


class Cp:
    """One connection point in front of a recording MP, with a real fault registry and traffic report."""

    def __init__(self, *, logs: bool = True, verbose: bool = True) -> None:
        self.clock = FakeClock()
        self.faults = FaultRegistry(self.clock, random.Random(1))
        self.metrics = Metrics()
        self.report = ConnectionPointReport()
        self.logs = Logs()
        self.mp = Upstream("mp", UpstreamResponse(200, "OK", {"content-type": "text/xml"}, b"<reply/>"))
        ids = iter(f"id-{i}" for i in range(100))
        self.app = ConnectionPointApp(name="cp", mp=self.mp, mp_public_host=MP_HOST, faults=self.faults,
                                      metrics=self.metrics, report=self.report, logs=self.logs if logs else None,
                                      verbose=verbose, perf_counter=Steps(1.0), new_message_id=lambda: next(ids))

    def __call__(self, method: str, path: str, **kwargs: Any) -> Answer:
        # The connection point takes work only from its CMG: every call here comes with the CMG's identity.
        kwargs.setdefault("cert", role_certificate_der(CMG_IDENTITY_COMMON_NAME))
        return call(self.app, method, path, **kwargs)[0]

    def report_rows(self) -> dict[str, tuple[int, int, int, int, int]]:
        return {row.endpoint: (row.total_requests, row.total_requests_with_bearer_token, row.total_request_bytes,
                               row.total_response_bytes, row.failed_requests) for row in self.report.drain()}

    def lines(self, level: str = "info") -> list[str]:
        return [text for name, lvl, text in self.logs.lines if lvl == level and name == LOG]


@pytest.fixture
def cp() -> Cp:
    return Cp()


def _connector_error(answer: Answer, status: int, text: str) -> None:
    """The connection point's own failure answer: status text as reason and header, the ConfigMgr error code."""
    assert (answer.status, answer.reason) == (status, text)
    assert answer.headers["x-cmg-status-text"] == text
    assert answer.headers[ERROR_CODE_HEADER] == CMG_CONNECTOR_ERROR
    assert answer.text == f"{text}: error {CMG_CONNECTOR_ERROR}"


def test_the_cmg_url_is_rewritten_to_the_mp_and_logged_as_in_the_walk_through(cp: Cp) -> None:
    """The MP gets the internal path; the log line names the external URI the CMG passed and the internal one."""
    external = f"https://cmg.contoso.com{MESSAGING}"
    answer = cp("CCM_POST", MESSAGING, headers={REQUEST_URI_HEADER: external, "authorization": "Bearer t",
                                                 "cookie": "c"}, body=b"<msg/>")
    assert (answer.status, answer.body, answer.headers["content-type"]) == (200, b"<reply/>", "text/xml")
    ((method, path, headers, body),) = cp.mp.requests
    assert (method, path, body) == ("CCM_POST", f"/{urlmap.CCM_SYSTEM_TOKENAUTH}", b"<msg/>")
    assert headers["authorization"] == "Bearer t" and "cookie" not in headers
    internal = f"https://{MP_HOST}/{urlmap.CCM_SYSTEM_TOKENAUTH}"
    switched, forwarding, received, message = cp.lines()
    assert switched == (f"Switched to internal URL. Replaced '{external}' in   '{external}' with '{internal}' and got "
                        f"'https:///{MP_HOST}/{urlmap.CCM_SYSTEM_TOKENAUTH}")
    assert forwarding == f"Forwarding proxy message id-0 to URL: {internal}"
    assert received == f"Received response {internal} for message id-0: HTTP/1.1 200 OK"
    assert message == (f"MessageID: id-0 RequestURI: {internal} EndpointName: {urlmap.CCM_SYSTEM_TOKENAUTH} "
                       f"ResponseHeader: HTTP/1.1 200 OK ~~ ResponseBodySize: 8 ElapsedTime: 1000 ms")


def test_without_the_cmg_header_the_external_url_is_guessed_from_the_path(cp: Cp) -> None:
    """A request that did not come through the CMG logs https://cmg<path> as its external URL."""
    cp("GET", POLICY, query="Policy/1")
    assert f"Replaced 'https://cmg{POLICY}'" in cp.lines()[0]
    assert cp.mp.requests[0][1] == f"/{urlmap.SMS_POL}?Policy/1"


def test_an_answer_without_a_reason_logs_an_empty_phrase_and_sets_none(cp: Cp) -> None:
    """No reason phrase from the MP: the log line has none and the answer keeps the default."""
    cp.mp.answer = UpstreamResponse(202, "", {}, b"")
    answer = cp("CCM_POST", MESSAGING, body=b"<m/>")
    assert answer.reason is None and answer.headers["content-type"] == "application/octet-stream"
    assert cp.lines()[2].endswith(": HTTP/1.1 202 ")  # the Received response line, with no phrase
    assert "ResponseHeader: HTTP/1.1 202  ~~ ResponseBodySize: 0 " in cp.lines()[3]


def test_quiet_or_logless_connection_points_write_no_info_lines() -> None:
    """verbose=False, or no log directory, keeps the per-request lines out; the request still goes through."""
    quiet = Cp(verbose=False)
    assert quiet("CCM_POST", MESSAGING, body=b"<m/>").status == 200 and quiet.lines() == []
    logless = Cp(logs=False)
    assert logless("CCM_POST", MESSAGING, body=b"<m/>").status == 200 and logless.logs.lines == []
    logless.mp.error = "connect"
    assert logless("CCM_POST", MESSAGING, body=b"<m/>").status == 503


def test_only_the_status_headers_of_the_mp_answer_come_back(cp: Cp) -> None:
    """x-cmg-status-text and the error code pass; anything else the MP sends stays behind."""
    cp.mp.answer = UpstreamResponse(403, "Forbidden", {"x-cmg-status-text": "S", ERROR_CODE_HEADER: "0x1",
                                                       "set-cookie": "s", "www-authenticate": "Bearer"}, b"no")
    answer = cp("CCM_POST", MESSAGING, body=b"<m/>")
    assert (answer.status, answer.reason, answer.body) == (403, "Forbidden", b"no")
    assert (answer.headers["x-cmg-status-text"], answer.headers[ERROR_CODE_HEADER]) == ("S", "0x1")
    assert "set-cookie" not in answer.headers and "www-authenticate" not in answer.headers


# --- refusals and failures ---------------------------------------------------------------------------------------------


def test_a_path_outside_the_url_map_is_a_connector_bad_request(cp: Cp) -> None:
    """Not in the map: the URL map's status with CMGConnector_BadRequest; counted as 'unmatched'; nothing sent on."""
    answer = cp("GET", f"/CCM_Proxy_ServerAuth/{ROLE_ID}/nowhere")
    assert (answer.status, answer.reason) == (404, CONNECTOR_BAD_REQUEST)
    assert cp.metrics.of("observe") == [("unmatched", "GET", 404, 0, 0, 1.0)]
    assert cp.mp.requests == [] and cp.report_rows() == {}
    assert cp("POST", STS, query="x=1").status == 400


def test_a_body_over_the_endpoint_limit_is_refused(cp: Cp) -> None:
    """CCM_STS takes 64 KiB: one byte more is 413 CMGConnector_BadRequest, counted under the route template."""
    limit = urlmap.STS_MAX_BODY_BYTES
    answer = cp("POST", STS, chunks=[b"x" * limit, b"y"])
    assert (answer.status, answer.reason, answer.text) == (413, CONNECTOR_BAD_REQUEST,
                                                           f"{CONNECTOR_BAD_REQUEST}: body over {limit} bytes")
    assert cp.metrics.of("observe") == [(f"/CCM_Proxy_ServerAuth/{{id}}/{urlmap.CCM_STS}", "POST", 413, 0, 0, 1.0)]
    assert cp.mp.requests == []
    assert cp("POST", STS, body=b"x" * limit).status == 200


def test_revocation_offline_for_its_own_certificate_stops_every_request(cp: Cp) -> None:
    """cp_cert_revocation_offline: 403 CMGConnector_Clientcertificaterequired (error 0x87d0027e), counted failed."""
    cp.faults.set("cp_cert_revocation_offline", duration=60)
    answer = cp("CCM_POST", MESSAGING, body=b"<m/>")
    assert (answer.status, answer.reason, answer.text) == (403, CONNECTOR_CLIENT_CERT_REQUIRED,
                                                           f"{CONNECTOR_CLIENT_CERT_REQUIRED}: error {CMG_CONNECTOR_ERROR}")
    assert cp.mp.requests == []
    assert cp.report_rows()[urlmap.CCM_SYSTEM_TOKENAUTH] == (1, 0, 4, 0, 1)
    assert cp.metrics.of("observe")[0][2:5] == (403, 4, 0)  # no MP answer: no response bytes from it


def test_sts_unavailable_refuses_token_requests_only(cp: Cp) -> None:
    """sts_unavailable: CCM_STS gets 401 CMGConnector_Unauthorized; messaging still reaches the MP."""
    cp.faults.set("sts_unavailable", duration=60)
    _connector_error(cp("POST", STS, body=b"{}"), 401, CONNECTOR_UNAUTHORIZED)
    assert cp.metrics.of("observe")[0][2:5] == (401, 2, 0)
    assert cp.report_rows()[urlmap.CCM_STS] == (1, 0, 2, 0, 1)
    assert cp("CCM_POST", MESSAGING, body=b"<m/>").status == 200
    assert [r[1] for r in cp.mp.requests] == [f"/{urlmap.CCM_SYSTEM_TOKENAUTH}"]


@pytest.mark.parametrize(("kind", "status", "text"), [("timeout", 504, CONNECTOR_GATEWAY_TIMEOUT),
                                                      ("connect", 503, CONNECTOR_SERVICE_UNAVAILABLE),
                                                      ("reset", 503, CONNECTOR_SERVICE_UNAVAILABLE)])
def test_an_mp_that_fails_is_answered_with_a_connector_status(cp: Cp, kind: str, status: int, text: str) -> None:
    """MP timeout: 504 GatewayTimeout; refused or reset: 503 ServiceUnavailable; counted and logged as errors."""
    cp.mp.error = kind
    _connector_error(cp("CCM_POST", MESSAGING, body=b"<m/>"), status, text)
    assert cp.metrics.of("forward_error") == [("mp", kind)]
    assert len(cp.lines("error")) == 1 and f"https://{MP_HOST}/" in cp.lines("error")[0]
    assert cp.lines("error")[0].startswith("Web exception for message id-0: failed to forward https://")
    assert cp.metrics.of("observe")[0][2:5] == (status, 4, 0)


def test_a_server_error_from_ccm_sts_becomes_the_connector_internal_error(cp: Cp) -> None:
    """A 5xx from CCM_STS is 500 CMGConnector_InternalServerError; 5xx elsewhere and 4xx from CCM_STS pass as is."""
    cp.mp.answer = UpstreamResponse(503, "Service Unavailable", {}, b"down")
    _connector_error(cp("POST", STS, body=b"{}"), 500, CONNECTOR_INTERNAL_SERVER_ERROR)
    assert cp.metrics.of("observe")[0][2:5] == (500, 2, 0)
    assert cp.report_rows()[urlmap.CCM_STS] == (1, 0, 2, 0, 1)
    cp.mp.answer = UpstreamResponse(500, "Internal Server Error", {}, b"boom")
    _connector_error(cp("POST", STS, body=b"{}"), 500, CONNECTOR_INTERNAL_SERVER_ERROR)
    assert cp("CCM_POST", MESSAGING, body=b"<m/>").status == 500
    assert cp("CCM_POST", MESSAGING, body=b"<m/>").body == b"boom"
    cp.mp.answer = UpstreamResponse(499, "Nope", {}, b"no")
    assert cp("POST", STS, body=b"{}").reason == "Nope"


# --- the traffic report and metrics ---------------------------------------------------------------------------------


def test_the_traffic_report_counts_bearers_bytes_and_failures_per_endpoint(cp: Cp) -> None:
    """Requests with a bearer token, bytes each way, and answers of 400 and more counted as failed."""
    cp("CCM_POST", MESSAGING, headers={"authorization": "Bearer t"}, body=b"a" * 10)
    cp.mp.answer = UpstreamResponse(400, "Bad Request", {}, b"bad")
    cp("CCM_POST", MESSAGING, body=b"b" * 5)
    cp.mp.answer = UpstreamResponse(399, "Odd", {}, b"odd!")
    cp("CCM_POST", MESSAGING, headers={"authorization": "Basic x"}, body=b"")
    assert cp.report_rows() == {urlmap.CCM_SYSTEM_TOKENAUTH: (3, 1, 15, 8 + 3 + 4, 1)}
    template = f"/CCM_Proxy_ServerAuth/{{id}}/{urlmap.CCM_SYSTEM_TOKENAUTH}"
    assert cp.metrics.of("observe") == [(template, "CCM_POST", 200, 10, 8, 3.0), (template, "CCM_POST", 400, 5, 3, 3.0),
                                        (template, "CCM_POST", 399, 0, 4, 3.0)]
    assert cp.metrics.in_flight == 0


def test_a_websocket_scope_is_left_alone(cp: Cp) -> None:
    """Only HTTP is served: another scope type gets no answer and counts nothing."""
    answer, _ = call(cp.app, "GET", STS, scope_type="websocket")
    assert answer.status == 0 and cp.metrics.calls == [] and cp.mp.requests == []


def test_message_ids_are_guids_by_default() -> None:
    """Without an injected id source every logged message gets a fresh GUID."""
    logs = Logs()
    app = ConnectionPointApp(name="cp", mp=Upstream("mp"), mp_public_host=MP_HOST,
                             faults=FaultRegistry(FakeClock(), random.Random(1)), metrics=Metrics(),
                             report=ConnectionPointReport(), logs=logs)
    cmg = role_certificate_der(CMG_IDENTITY_COMMON_NAME)
    call(app, "CCM_POST", MESSAGING, body=b"<m/>", cert=cmg)
    call(app, "CCM_POST", MESSAGING, body=b"<m/>", cert=cmg)
    ids = [text.split()[1] for _, _, text in logs.lines if text.startswith("MessageID:")]
    assert len(ids) == 2 and ids[0] != ids[1] and all(len(i) == 36 and i.count("-") == 4 for i in ids)


def test_a_request_the_connection_point_never_answered_is_counted_failed() -> None:
    """An unforeseen failure at the hop: the report counts the request as failed with no response bytes, the
    metrics as 499, and the in-flight gauge goes back down."""
    cp = Cp()

    class Broken(Upstream):
        async def request(self, method: str, path: str, headers: Any, body: bytes) -> UpstreamResponse:
            raise RuntimeError("unforeseen")

    cp.app.mp = Broken("mp")
    with pytest.raises(RuntimeError):
        cp("CCM_POST", MESSAGING, body=b"<m/>")
    assert cp.report_rows() == {urlmap.CCM_SYSTEM_TOKENAUTH: (1, 0, 4, 0, 1)}
    assert cp.metrics.of("observe")[0][2:5] == (499, 4, 0) and cp.metrics.in_flight == 0
