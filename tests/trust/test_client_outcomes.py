"""What a failed exchange was, and when the simulated client renews its tokens: the reason codes, the Windows error
codes and texts a real client logs, transient or final, the Entra device token and its user-token fallback, and the
renewal instants at their exact boundaries. In-process: a scripted site and a fake clock, no sockets, no sleeps.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable

import pytest

from cmg_protocol import envelope, statuses
from cmg_protocol.clock import FakeClock
from cmg_protocol.site_tokens import ClientTokenReply, ClientTokenRequest
from cmg_protocol.sts_request import StsRequest
from harness.client import events as ev
from harness.client import lifecycle as lc
from harness.client import outcome as oc
from harness.client._tokens import RENEW_FLOOR_SECONDS, RENEW_SHARE, renew_after
from harness.client.clientlogs import ADAL, CCM_MESSAGING, CCMSETUP, CLIENT_ID_MANAGER, ERROR, MemoryLog, log_time
from harness.client.device import (
    WAM_DEVICE_FAILS_800703F0,
    WAM_DEVICE_FAILS_D0090016,
    WAM_OK,
    WAM_USER_FAILS_TOO,
    DeviceProfile,
    Fleet,
)
from harness.client.events import Done, Request, Response, TransportError, Wait
from harness.client.outcome import Outcome, OutcomeError, TrailEntry, failure, format_step_table
from harness.client.testing import ScriptedSite, drive, scripted_endpoints

TENANT = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"
#: The scripted site answers at once, so install, registration and the first poll all happen at the clock's start.
START = FakeClock().now
CCM_LIFETIME = 8 * 3600.0
BULK = "bulk-registration-token"

# --- outcome: reason codes, error codes and their texts -----------------------------------------------------------


def test_every_reason_code_is_spelt_as_the_verdicts_expect() -> None:
    """Verdicts and gates match these strings: a renamed code would silently stop matching."""
    assert oc.REASONS == {
        "tls.invalid_ca", "tls.revocation_offline", "tls.revoked", "aad.no_wpj", "aad.no_token",
        "aad.tenant_not_onboarded", "sts.401", "sts.500", "cmg.401", "cmg.403", "cmg.503", "storage.403", "mp.401",
        "mp.signature_invalid", "mp.not_registered", "registration.rejected", "timeout", "connect", "reset",
        "reply.malformed", "content.hash_mismatch",
    }


def test_only_network_trouble_and_a_cmg_that_cannot_forward_are_transient() -> None:
    """Retried after a back-off: timeout, connect, reset and cmg.503; every other reason ends the step at once."""
    assert oc.TRANSIENT_REASONS == {"timeout", "connect", "reset", "cmg.503"}


@pytest.mark.parametrize(("name", "value"), [
    ("ERROR_WINHTTP_SECURE_FAILURE", 12175), ("ERROR_WINHTTP_TIMEOUT", 12002),
    ("ERROR_WINHTTP_CANNOT_CONNECT", 12029), ("ERROR_WINHTTP_CONNECTION_ERROR", 12030),
])
def test_winhttp_codes_are_the_windows_values_and_log_their_names(name: str, value: int) -> None:
    """ccmhttp logs the WinHTTP code in decimal with its constant's name."""
    assert getattr(oc, name) == value
    assert oc.winhttp_text(value) == name


def test_an_unnamed_winhttp_code_is_logged_by_number() -> None:
    assert oc.winhttp_text(12044) == "ERROR_12044"


@pytest.mark.parametrize(("name", "value"), [
    ("E_CMG_CONNECTOR", 0x87D0027E), ("E_WAM_D0090016", 0xD0090016), ("E_WAM_800703F0", 0x800703F0),
    ("CRYPT_E_HASH_VALUE", 0x80091007),
])
def test_configmgr_error_codes_are_the_documented_hresults(name: str, value: int) -> None:
    assert getattr(oc, name) == value


@pytest.mark.parametrize(("flags", "names"), [
    (0x0, []),
    (0x1, ["WINHTTP_CALLBACK_STATUS_FLAG_CERT_REV_FAILED"]),
    (0x4, ["WINHTTP_CALLBACK_STATUS_FLAG_CERT_REVOKED"]),
    (0x8, ["WINHTTP_CALLBACK_STATUS_FLAG_INVALID_CA"]),
    (0x2, []),  # not a flag the harness reports
    (0xD, ["WINHTTP_CALLBACK_STATUS_FLAG_CERT_REV_FAILED", "WINHTTP_CALLBACK_STATUS_FLAG_CERT_REVOKED",
           "WINHTTP_CALLBACK_STATUS_FLAG_INVALID_CA"]),
])
def test_status_flags_name_exactly_the_bits_set(flags: int, names: list[str]) -> None:
    """Each WINHTTP_CALLBACK_STATUS_FLAG_* value is its Windows bit, named once, in bit order."""
    assert oc.flag_names(flags) == names


@pytest.mark.parametrize(("reason", "code", "flags"), [
    (oc.TLS_INVALID_CA, 12175, 0x8),
    (oc.TLS_REVOCATION_OFFLINE, 12175, 0x1),
    (oc.TLS_REVOKED, 12175, 0x4),
    (oc.TIMEOUT, 12002, None),
    (oc.CONNECT, 12029, None),
    (oc.RESET, 12030, None),
    (oc.CMG_503, None, None),
    (oc.STS_401, None, None),
    (oc.CONTENT_HASH_MISMATCH, None, None),
    ("http.502", None, None),
])
def test_each_reason_gets_its_winhttp_code_and_flags_or_none(reason: str, code: int | None,
                                                                 flags: int | None) -> None:
    """Transport reasons are filled in with what a Windows client reports; HTTP answers carry no WinHTTP code."""
    result = failure(reason, step=ev.STEP_AAD_INFO, stage=ev.STAGE_INSTALL, detail="d")
    assert (result.success, result.reason, result.error_code, result.winhttp_flags) == (False, reason, code, flags)
    assert (result.step, result.stage, result.detail, result.trail) == (ev.STEP_AAD_INFO, ev.STAGE_INSTALL, "d", ())


def test_an_error_code_given_with_a_transport_reason_wins_but_the_flags_stay() -> None:
    """A caller's own code replaces the WinHTTP code; the TLS status flag still says why the channel failed."""
    revoked = failure(oc.TLS_REVOKED, step="x", error_code=12157)
    assert (revoked.error_code, revoked.winhttp_flags) == (12157, 0x4)
    assert failure(oc.STS_500, step="x", error_code=oc.E_CMG_CONNECTOR).error_code == 0x87D0027E


@pytest.mark.parametrize(("status", "reason"), [(100, "http.100"), (404, "http.404"), (599, "http.599")])
def test_http_reason_takes_every_status_from_100_to_599(status: int, reason: str) -> None:
    assert oc.http_reason(status) == reason
    assert oc.is_reason(reason)


@pytest.mark.parametrize("status", [99, 600, 0, -404])
def test_http_reason_refuses_a_number_outside_100_to_599_naming_it(status: int) -> None:
    with pytest.raises(OutcomeError, match=f"got {status}"):
        oc.http_reason(status)


@pytest.mark.parametrize("code", ["http.099", "http.0404", "http.600", "http.1000", "http.40", "http.", "HTTP.404",
                                  "https.404", "http.4o4", "cmg.404", "http-404", "http.404.1"])
def test_codes_that_only_look_like_http_reasons_are_not_reasons(code: str) -> None:
    assert not oc.is_reason(code)


def test_a_fixed_reason_is_a_reason_and_a_misspelt_one_is_not() -> None:
    assert all(oc.is_reason(code) for code in oc.REASONS)
    assert not oc.is_reason("cmg.502") and not oc.is_reason("Reset")


def test_a_failed_outcome_needs_a_known_reason_and_a_success_none() -> None:
    """The two contradictions are refused, each naming the bad value; the two consistent forms are accepted."""
    with pytest.raises(OutcomeError, match="unknown reason code 'cmg.502'"):
        Outcome(success=False, step="x", reason="cmg.502")
    with pytest.raises(OutcomeError, match="unknown reason code ''"):
        Outcome(success=False, step="x")
    with pytest.raises(OutcomeError, match="carries no reason code, got 'reset'"):
        Outcome(success=True, reason=oc.RESET)
    assert Outcome(success=True).reason == ""
    assert Outcome(success=False, step="x", reason=oc.RESET).reason == oc.RESET


def test_the_status_is_that_of_the_last_exchange() -> None:
    """Three exchanges answered 503, 401 and 200: the outcome's status is the last one's, not the first's."""
    trail = (TrailEntry("a", "/a", 503, 1.0, oc.CMG_503), TrailEntry("b", "/b", 401, 1.0, oc.CMG_401),
             TrailEntry("c", "/c", 200, 1.0, "ok"))
    assert Outcome(success=True, trail=trail).status == 200
    assert Outcome(success=True, trail=trail[:2]).status == 401
    assert Outcome(success=True, trail=(*trail, TrailEntry("d", "/d", None, 1.0, oc.RESET))).status is None
    assert Outcome(success=True).status is None


@pytest.mark.parametrize(("code", "text"), [
    (None, ""), (0, "0"), (12175, "12175"), (0xFFFF, "65535"), (0x10000, "0x00010000"), (0x80091007, "0x80091007"),
])
def test_error_codes_print_as_configmgr_logs_them(code: int | None, text: str) -> None:
    """WinHTTP codes (below 0x10000) in decimal, HRESULTs as eight hex digits."""
    assert Outcome(success=False, step="x", reason=oc.RESET, error_code=code).error_hex() == text


def test_the_json_form_of_a_failure_and_of_a_success() -> None:
    """Every field, with the codes as logged: 12175 in decimal, flags in hex, and None where there is none."""
    trail = (TrailEntry("aad_info", "/x", None, 1.5, oc.TLS_REVOKED),)
    assert failure(oc.TLS_REVOKED, step="aad_info", stage="install", detail="revoked", trail=trail).to_dict() == {
        "success": False, "stage": "install", "step": "aad_info", "reason": "tls.revoked", "error_code": "12175",
        "winhttp_flags": "0x4", "detail": "revoked",
        "trail": [{"step": "aad_info", "name": "/x", "status": None, "ms": 1.5, "result": "tls.revoked"}]}
    assert failure(oc.STS_401, step="ccm_token", error_code=oc.E_CMG_CONNECTOR).to_dict()["error_code"] == "0x87d0027e"
    assert Outcome(success=True).to_dict() == {"success": True, "stage": "", "step": "", "reason": "",
                                               "error_code": None, "winhttp_flags": None, "detail": "", "trail": []}


def test_the_step_table_of_a_failure_line_by_line() -> None:
    """Columns as wide as their widest cell, a rule under the header, '-' for no status, then the verdict."""
    trail = (TrailEntry("aad_info", "/AADAuthInfo", 200, 12.34, "ok"),
             TrailEntry("ccm_token", "/CCM_STS", None, 3.0, oc.TLS_REVOKED))
    table = format_step_table(failure(oc.TLS_REVOKED, step="ccm_token", trail=trail, detail="certificate revoked"))
    assert table.splitlines() == [
        "step       request URI   status  ms    outcome",
        "---------  ------------  ------  ----  -----------",
        "aad_info   /AADAuthInfo  200     12.3  ok",
        "ccm_token  /CCM_STS      -       3.0   tls.revoked",
        "outcome: failed at ccm_token: tls.revoked (error 12175, flags 0x4)",
        "detail: certificate revoked",
    ]


def test_the_step_table_names_only_the_codes_a_failure_has() -> None:
    """No codes: no parentheses; an HRESULT only: no flags; no detail: no detail line; success: one verdict line."""
    bare = format_step_table(failure(oc.CMG_403, step="site_info")).splitlines()
    assert bare[2:] == ["outcome: failed at site_info: cmg.403"]
    coded = format_step_table(failure(oc.STS_401, step="ccm_token", error_code=oc.E_CMG_CONNECTOR)).splitlines()
    assert coded[2:] == ["outcome: failed at ccm_token: sts.401 (error 0x87d0027e)"]
    assert format_step_table(Outcome(success=True)).splitlines() == [
        "step  request URI  status  ms  outcome", "----  -----------  ------  --  -------", "outcome: success"]


# --- a life against the scripted site, with the clock in the test's hands -----------------------------------------


def device(**traits: object) -> DeviceProfile:
    return Fleet(3, tenant_ids=[TENANT]).device(0).with_traits(**traits)


def make(profile: DeviceProfile | None = None, *, polls: int = 1, interval: float = 3600.0, attempts: int = 3,
         log: MemoryLog | None = None, bulk_token: str = "", **site_options: float
         ) -> tuple[lc.Lifecycle, ScriptedSite]:
    clock = FakeClock()
    site = ScriptedSite(clock, **site_options)
    endpoints = dataclasses.replace(scripted_endpoints(policy_interval_s=interval), bulk_token=bulk_token)
    life = lc.Lifecycle(profile or device(), endpoints, clock=clock, rng=random.Random(7), log=log, polls=polls,
                        attempts=attempts)
    return life, site


def until(life: lc.Lifecycle, site: ScriptedSite, wanted: Callable[[Request], bool]) -> Request:
    """Play the life (jumping the clock over waits) up to the first request ``wanted`` picks, and return it unfed."""
    for _ in range(1_000):
        action = life.next_request()
        assert not isinstance(action, Done), f"the life ended before the wanted request: {action.outcome}"
        if isinstance(action, Wait):
            site.clock.now = max(site.clock.now, action.until)
            continue
        if wanted(action):
            return action
        life.feed(site.answer(action))
    raise AssertionError("no wanted request within 1000 actions")


def at(step: str, stage: str | None = None) -> Callable[[Request], bool]:
    return lambda request: request.step == step and (stage is None or request.stage == stage)


def steps(site: ScriptedSite) -> list[str]:
    return [request.step for request in site.requests]


def entra_json(lifetime: float = 3600.0) -> Response:
    body = json.dumps({"access_token": "entra-by-hand", "token_type": "Bearer", "expires_in": lifetime})
    return Response(200, body.encode(), content_type="application/json")


# --- the CCM token's renewal instant --------------------------------------------------------------------------------


def test_renewal_is_due_at_exactly_the_last_tenth_or_the_floor() -> None:
    """The margin is a tenth of the life (0.1) but at least 1.5 real seconds, and never more than half the life."""
    assert (RENEW_SHARE, RENEW_FLOOR_SECONDS) == (0.1, 1.5)
    assert renew_after(CCM_LIFETIME) == 25_920.0
    assert renew_after(20.0) == 18.0  # a tenth (2 s) beats the floor
    assert renew_after(10.0) == 8.5  # the floor (1.5 s) beats a tenth (1 s)
    assert renew_after(2.4) == 1.2  # half the life caps the floor


@pytest.mark.parametrize(("interval", "renews"), [(25_920.0, True), (25_919.0, False)])
def test_an_eight_hour_ccm_token_is_renewed_at_its_renewal_instant_and_not_a_second_before(
        interval: float, renews: bool) -> None:
    """The second poll comes 25,920 s (8 h less its tenth) after the token: renewed first; a second earlier: not."""
    life, site = make(polls=2, interval=interval)
    assert drive(life, site).success
    second = site.requests[-2:] if renews else site.requests[-1:]
    assert [(r.step, r.stage) for r in second] == ([(ev.STEP_CCM_TOKEN, ev.STAGE_RENEWAL)] if renews else []) + [
        (ev.STEP_POLICY_ASSIGNMENTS, ev.STAGE_POLICY)]
    assert second[-1].headers["Authorization"] == "Bearer " + site.ccm_tokens[-1]
    assert len(site.ccm_tokens) == (3 if renews else 2)


def test_renewal_logs_the_expiry_of_the_old_token_and_of_the_new_one() -> None:
    """CcmMessaging names the old token's end (8 h after it was issued) and the new token's end, to the second."""
    log = MemoryLog()
    life, site = make(polls=2, interval=25_920.0, log=log)
    assert drive(life, site).success
    renewed = START + 25_920.0
    texts = log.texts(CCM_MESSAGING)
    assert f"CCM Token for 'S-1-5-18' ({log_time(START + CCM_LIFETIME)}) is already expired or close to expire" in texts
    assert f"Cached encrypted token for 'S-1-5-18'. Will expire at '{log_time(renewed + CCM_LIFETIME)}'" in texts
    assert (f"Cached encrypted token for 'S-1-5-18'. Will expire at '{log_time(START + CCM_LIFETIME)}'"
            in log.texts(CCMSETUP))


def test_a_refused_ccm_token_is_renewed_once_only_for_invalid_token() -> None:
    """401 with another reason is cmg.401 at once (no new token, no second try); CMGService_Invalid_Token renews."""
    life, site = make(attempts=1)
    site.script(ev.STEP_SITE_INFO, Response(401, reason="Unauthorized"))
    result = drive(life, site)
    assert (result.step, result.reason, result.status) == (ev.STEP_SITE_INFO, oc.CMG_401, 401)
    assert steps(site) == [ev.STEP_AAD_INFO, ev.STEP_ENTRA_TOKEN, ev.STEP_CCM_TOKEN, ev.STEP_SITE_INFO]


def test_a_renewal_after_invalid_token_is_stage_renewal_in_ccm_messaging() -> None:
    log = MemoryLog()
    life, site = make(log=log)
    site.script(ev.STEP_SITE_INFO, Response(401, reason=statuses.INVALID_TOKEN))
    assert drive(life, site).success
    assert [(r.step, r.stage) for r in site.requests[3:6]] == [
        (ev.STEP_SITE_INFO, ev.STAGE_INSTALL), (ev.STEP_CCM_TOKEN, ev.STAGE_RENEWAL),
        (ev.STEP_SITE_INFO, ev.STAGE_INSTALL)]
    assert ("CCM token was refused by 'cmg.test:8443' (CMGService_Invalid_Token); getting a new one"
            in log.texts(CCM_MESSAGING))


def test_install_downloads_after_a_reset_are_tried_again() -> None:
    """Requests carrying the CCM token retry a transient failure by default (ccmsetup.cab here)."""
    life, site = make()
    site.script(ev.STEP_CCMSETUP_CAB, TransportError(oc.RESET, "reset"))
    assert drive(life, site).success
    assert steps(site).count(ev.STEP_CCMSETUP_CAB) == 2


# --- the Entra token: when it is asked for again -------------------------------------------------------------------


@pytest.mark.parametrize(("late", "asks_entra"), [(0.0, True), (-0.001, False)])
def test_a_cached_entra_token_is_asked_for_again_from_its_renewal_instant(late: float, asks_entra: bool) -> None:
    """The policy request finds the CCM token refused at exactly the Entra token's renewal instant (its life less a
    tenth): a new Entra token first. A millisecond earlier the cached one is still handed out."""
    life, site = make(entra_lifetime=4000.0)
    until(life, site, at(ev.STEP_POLICY_ASSIGNMENTS))
    site.clock.now = START + renew_after(4000.0) + late
    assert site.clock.now - START == pytest.approx(3600.0, abs=0.01)
    life.feed(Response(401, reason=statuses.INVALID_TOKEN))
    renewal = until(life, site, lambda request: request.stage == ev.STAGE_RENEWAL)
    assert (renewal.step == ev.STEP_ENTRA_TOKEN) is asks_entra
    if not asks_entra:
        assert renewal.step == ev.STEP_CCM_TOKEN
        assert renewal.headers["Authorization"] == "Bearer " + site.entra_tokens[-1]


def test_an_entra_token_not_yet_held_is_asked_for_even_before_its_time() -> None:
    """Install: no Entra token yet, so one is asked for before CCM_STS (the clock has not moved)."""
    life, site = make()
    until(life, site, at(ev.STEP_CCM_TOKEN))
    assert steps(site) == [ev.STEP_AAD_INFO, ev.STEP_ENTRA_TOKEN]


def test_the_ccm_token_request_carries_the_entra_token_as_bearer() -> None:
    life, site = make()
    request = until(life, site, at(ev.STEP_CCM_TOKEN))
    assert request.headers["Authorization"] == "Bearer " + site.entra_tokens[0]
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_the_ccm_token_request_asserts_the_entra_token_and_after_registration_the_client_id() -> None:
    """CCM_STS is asked with the Entra token as assertion, the client version and host, and once registered the
    assigned client id."""
    p = device()
    life, site = make(p)
    assert drive(life, site).success
    asked = [StsRequest.from_body(r.body) for r in site.requests if r.step == ev.STEP_CCM_TOKEN]
    assert asked == [
        StsRequest(assertion=site.entra_tokens[0], client_id="", agent_version="5.00.8968.1000", client_host=p.fq_name),
        StsRequest(assertion=site.entra_tokens[1], client_id=life.smsid, agent_version="5.00.8968.1000",
                   client_host=p.fq_name)]


def test_an_entra_refusal_is_aad_no_token_and_nothing_more_is_sent() -> None:
    """Entra ID answers 400: aad.no_token at entra_token with its status, logged as an error in ccmsetup."""
    log = MemoryLog()
    life, site = make(log=log, attempts=1)
    site.script(ev.STEP_ENTRA_TOKEN, Response(400, reason="Bad Request"))
    result = drive(life, site)
    assert (result.step, result.stage, result.reason, result.status, result.error_code) == (
        ev.STEP_ENTRA_TOKEN, ev.STAGE_INSTALL, oc.AAD_NO_TOKEN, 400, None)
    assert steps(site) == [ev.STEP_AAD_INFO, ev.STEP_ENTRA_TOKEN]
    assert (CCMSETUP, "Failed to get AAD token..", ERROR) in log.lines


@pytest.mark.parametrize("body", [b"not json", b'{"access_token": "t"}', b'{"expires_in": 10}',
                                  b'{"access_token": "t", "expires_in": "soon"}'])
def test_an_unreadable_entra_reply_is_malformed(body: bytes) -> None:
    life, site = make()
    site.script(ev.STEP_ENTRA_TOKEN, Response(200, body, content_type="application/json"))
    result = drive(life, site)
    assert (result.step, result.reason) == (ev.STEP_ENTRA_TOKEN, oc.BAD_REPLY)
    assert result.detail.startswith("Entra token reply is not the expected JSON: ")


@pytest.mark.parametrize("body", [b"[]", b'{"token": "t"}', b'{"token": "t", "expires_in": "soon"}'])
def test_an_unreadable_ccm_sts_reply_is_malformed(body: bytes) -> None:
    life, site = make()
    site.script(ev.STEP_CCM_TOKEN, Response(200, body, content_type="application/json"))
    result = drive(life, site)
    assert (result.step, result.reason) == (ev.STEP_CCM_TOKEN, oc.BAD_REPLY)
    assert result.detail.startswith("CCM_STS reply is not the expected JSON: ")


# --- the device token, and the user token only when the device token fails ---------------------------------------


@pytest.mark.parametrize(("wam", "grants", "reason", "code"), [
    (WAM_OK, ["device_token", "device_token"], "", None),
    (WAM_DEVICE_FAILS_D0090016, ["user_token", "user_token"], "", None),
    (WAM_DEVICE_FAILS_800703F0, ["user_token", "user_token"], "", None),
    (WAM_USER_FAILS_TOO, [], oc.AAD_NO_TOKEN, 0xD0090016),
])
def test_the_user_token_is_used_only_when_wam_cannot_get_the_device_token(
        wam: str, grants: list[str], reason: str, code: int | None) -> None:
    """A working WAM asks for the device token; a device failure falls back to the user token; both failing end
    the life at entra_token with the WAM error, before any request to Entra ID."""
    life, site = make(device(wam=wam))
    result = drive(life, site)
    forms = [dict(pair.split("=", 1) for pair in r.body.decode().split("&"))
             for r in site.requests if r.step == ev.STEP_ENTRA_TOKEN]
    assert [f["grant_type"] for f in forms] == grants
    assert all(("user_oid" in f) is (f["grant_type"] == "user_token") for f in forms)
    assert (result.reason, result.error_code) == (reason, code)


def test_the_entra_request_names_the_app_and_resource_quoted_and_goes_to_the_tenant() -> None:
    life, site = make()
    request = until(life, site, at(ev.STEP_ENTRA_TOKEN))
    assert request.url == f"https://entra.test:9443/{TENANT}/oauth2/token"
    assert request.name == f"/{TENANT}/oauth2/token"
    assert request.body.decode().startswith("grant_type=device_token&resource=https%3A%2F%2FConfigMgrService"
                                            "&client_id=0b7c8ab3-9ea1-4ffa-b2b9-8ffdd944bd8b&device_id=")


def test_install_logs_its_entra_token_in_ccmsetup_and_nothing_in_adal() -> None:
    """ccmsetup's Entra lines go to ccmsetup.log; the life ends at install (CCM_STS refused), so ADAL has none."""
    log = MemoryLog()
    p = device()
    life, site = make(p, log=log, attempts=1)
    site.script(ev.STEP_CCM_TOKEN, Response(401, reason=statuses.CONNECTOR_UNAUTHORIZED))
    assert drive(life, site).reason == oc.STS_401
    assert log.texts(ADAL) == []
    ccmsetup = log.texts(CCMSETUP)
    assert ("Getting AAD (device) token with: ClientId = 0b7c8ab3-9ea1-4ffa-b2b9-8ffdd944bd8b, ResourceUrl = "
            "https://ConfigMgrService, AccountId = https://entra.test:9443/common/oauth2/token") in ccmsetup
    assert f"Retrieved AAD token for AAD device '{p.device_id}'" in ccmsetup
    assert "RetrieveTokenFromStsServerImpl failed with error 0x87d0027e" in ccmsetup


def test_registration_logs_its_entra_token_in_adal() -> None:
    """The registration's Entra token is the client agent's: its lines go to ADAL, ccmsetup's to ccmsetup.log."""
    log = MemoryLog()
    p = device()
    life, site = make(p, log=log)
    until(life, site, at(ev.STEP_ENTRA_TOKEN, ev.STAGE_REGISTRATION))
    assert log.texts(ADAL) == [
        "Getting AAD (device) token with: ClientId = 0b7c8ab3-9ea1-4ffa-b2b9-8ffdd944bd8b, ResourceUrl = "
        "https://ConfigMgrService, AccountId = https://entra.test:9443/common/oauth2/token"]
    assert drive(life, site).success
    assert log.texts(ADAL)[1:] == [f"Retrieved AAD token for AAD device '{p.device_id}'"]
    assert log.texts(CCMSETUP).count(f"Retrieved AAD token for AAD device '{p.device_id}'") == 1


# --- the token path: bulk registration token, then the client-unique token ---------------------------------------


def site_token_reply(token: str, renew_at: float) -> Response:
    header = envelope.MessageHeader(target_endpoint="SccmMessaging", source_host="MP.CORP.CONTOSO.COM",
                                    message_id="{36EE3A78-8F6E-425F-BF5C-8460E8E56C33}")
    body = ClientTokenReply(token=token, renew_at=int(renew_at)).to_xml()
    return Response(200, envelope.encode_message(header, body), content_type=envelope.CONTENT_TYPE)


def test_a_token_device_installs_with_the_bulk_token_then_holds_its_client_unique_token() -> None:
    """No Entra, no CCM_STS: install and registration carry the bulk token; after registration MP_TokenManager is
    asked (with the bulk token, over token auth) for the client-unique token, which the polls then carry."""
    log = MemoryLog()
    life, site = make(device(bulk_token=True), bulk_token=BULK, log=log)
    site.script(ev.STEP_SITE_TOKEN, site_token_reply("unique-1", START + 3600.0))
    assert drive(life, site).success
    assert ev.STEP_ENTRA_TOKEN not in steps(site) and ev.STEP_CCM_TOKEN not in steps(site)
    token_request = next(r for r in site.requests if r.step == ev.STEP_SITE_TOKEN)
    assert (token_request.stage, token_request.client_cert) == (ev.STAGE_REGISTRATION, False)
    assert token_request.url == scripted_endpoints().url(scripted_endpoints().tokenauth_path)
    assert token_request.headers["Authorization"] == "Bearer " + BULK
    message = envelope.decode_message(token_request.headers["Content-Type"], token_request.body)
    assert ClientTokenRequest.from_xml(message.body_xml).smsid == life.smsid != ""
    before = [r.headers.get("Authorization") for r in site.requests[:site.requests.index(token_request)]]
    assert set(before) - {None} == {"Bearer " + BULK}  # the signed storage download carries no token
    assert site.requests[-1].headers["Authorization"] == "Bearer unique-1"
    assert "Using the bulk registration token given to ccmsetup (/regtoken)" in log.texts(CCMSETUP)
    assert (f"Received the client-unique token; renewal due at '{log_time(START + 3600.0)}'"
            in log.texts(CLIENT_ID_MANAGER))


@pytest.mark.parametrize(("interval", "renews"), [(3600.0, True), (3599.0, False)])
def test_the_client_unique_token_is_renewed_when_the_site_says_and_not_before(interval: float, renews: bool) -> None:
    """The next poll at the site's renewal time asks MP_TokenManager again, carrying the token it holds."""
    life, site = make(device(bulk_token=True), bulk_token=BULK, polls=2, interval=interval)
    site.script(ev.STEP_SITE_TOKEN, site_token_reply("unique-1", START + 3600.0),
                site_token_reply("unique-2", START + 7200.0))
    assert drive(life, site).success
    renewals = [r for r in site.requests if r.stage == ev.STAGE_RENEWAL]
    assert [(r.step, r.headers["Authorization"]) for r in renewals] == (
        [(ev.STEP_SITE_TOKEN, "Bearer unique-1")] if renews else [])
    assert site.requests[-1].headers["Authorization"] == "Bearer " + ("unique-2" if renews else "unique-1")


def test_a_refused_client_unique_token_request_fails_the_registration() -> None:
    """MP_TokenManager answers 403: the registration ends there with cmg.403 and nothing is polled."""
    life, site = make(device(bulk_token=True), bulk_token=BULK)
    site.script(ev.STEP_SITE_TOKEN, Response(403, reason="Forbidden"))
    result = drive(life, site)
    assert (result.step, result.stage, result.reason) == (ev.STEP_SITE_TOKEN, ev.STAGE_REGISTRATION, oc.CMG_403)
    assert steps(site)[-1] == ev.STEP_SITE_TOKEN


@pytest.mark.parametrize("code", ["http.\u00b2\u00b3\u2074", "http.\u0664\u0660\u0664", "http.\uff14\uff10\uff14"])
def test_http_codes_in_other_digits_are_not_reasons_and_are_refused_by_name(code: str) -> None:
    """Superscript, Arabic-Indic or full-width digits are not an ``http.<status>`` code http_reason hands out: not a
    reason (not a crash in int(), nor "404" read from them), and a failure carrying one is refused naming it."""
    assert oc.is_reason(code) is False
    with pytest.raises(OutcomeError, match="unknown reason code"):
        Outcome(success=False, step="x", reason=code)


# --- transient or final, and the back-off between tries ------------------------------------------------------------


@pytest.mark.parametrize(("reply", "reason", "code", "tries"), [
    (TransportError(oc.TIMEOUT, "timed out"), oc.TIMEOUT, 12002, 3),
    (TransportError(oc.CONNECT, "refused"), oc.CONNECT, 12029, 3),
    (TransportError(oc.RESET, "reset"), oc.RESET, 12030, 3),
    (Response(503, reason=statuses.NO_CONNECTION_POINT), oc.CMG_503, None, 3),
    (TransportError(oc.TLS_REVOKED, "revoked"), oc.TLS_REVOKED, 12175, 1),
    (Response(403, reason="Forbidden"), oc.CMG_403, None, 1),
    (Response(401, reason=statuses.MP_INVALID_TOKEN), oc.MP_401, None, 1),
    (Response(500, reason="Internal Server Error"), "http.500", None, 1),
    (Response(502, reason=statuses.CONNECTOR_BAD_REQUEST), "http.502", oc.E_CMG_CONNECTOR, 1),
])
def test_transient_reasons_are_tried_three_times_and_final_ones_once(
        reply: Response | TransportError, reason: str, code: int | None, tries: int) -> None:
    """The install's site-information request, answered the same way every time: a transient failure is sent three
    times in all, a final one once; the life ends at that step with the reason and the error code a client logs."""
    life, site = make(attempts=3)
    site.script(ev.STEP_SITE_INFO, *[reply] * 3)
    result = drive(life, site)
    assert (result.step, result.stage, result.reason, result.error_code) == (
        ev.STEP_SITE_INFO, ev.STAGE_INSTALL, reason, code)
    assert steps(site).count(ev.STEP_SITE_INFO) == tries
    assert [entry.result for entry in result.trail if entry.step == ev.STEP_SITE_INFO] == [reason] * tries


@pytest.mark.parametrize(("time_scale", "waits"), [(1.0, [60.0, 120.0]), (60.0, [1.0, 2.0])])
def test_a_renewal_backs_off_one_site_minute_then_two_and_gives_up_after_three_tries(
        time_scale: float, waits: list[float]) -> None:
    """A CCM token renewal that is reset every time: tried again after one site minute, then two (compressed by the
    time scale), and after the third try the poll fails with reset and WinHTTP 12030."""
    clock = FakeClock()
    site = ScriptedSite(clock, ccm_lifetime=1000.0)
    endpoints = dataclasses.replace(scripted_endpoints(policy_interval_s=3600.0), time_scale=time_scale)
    life = lc.Lifecycle(device(), endpoints, clock=clock, rng=random.Random(7), polls=2, attempts=3)
    until(life, site, at(ev.STEP_CCM_TOKEN, ev.STAGE_RENEWAL))
    site.script(ev.STEP_CCM_TOKEN, *[TransportError(oc.RESET, "reset")] * 3)
    tried: list[float] = []
    seen: list[float] = []
    for _ in range(20):
        action = life.next_request()
        if isinstance(action, Done):
            break
        if isinstance(action, Wait):
            seen.append(action.until - clock.now)
            clock.now = action.until
            continue
        tried.append(clock.now)
        life.feed(site.answer(action))
    assert seen == pytest.approx(waits)
    assert [b - a for a, b in zip(tried, tried[1:], strict=False)] == pytest.approx(waits)
    assert isinstance(action, Done)
    result = action.outcome
    assert (result.stage, result.step, result.reason, result.error_code) == (
        ev.STAGE_RENEWAL, ev.STEP_CCM_TOKEN, oc.RESET, 12030)
