"""The sans-I/O lifecycle, driven by a fake clock and hand-made replies: no network."""

from __future__ import annotations

import hashlib
import random
from urllib.parse import parse_qs

import pytest

from cmg_protocol import envelope, messages, statuses
from cmg_protocol.clock import FakeClock
from cmg_protocol.registration import AAD_TOKEN_HEADER
from cmg_protocol.storage_urls import ContentXml
from harness.client import events as ev
from harness.client import lifecycle as lc
from harness.client import outcome as oc
from harness.client.clientlogs import ADAL, CCM_MESSAGING, CCMSETUP, CLIENT_ID_MANAGER, MemoryLog
from harness.client.device import WAM_DEVICE_FAILS_800703F0, WAM_DEVICE_FAILS_D0090016, WAM_USER_FAILS_TOO, Fleet
from harness.client.events import Done, LifecycleError, Request, Response, TransportError, Wait
from harness.client.testing import SCRIPTED_CONTENT, SCRIPTED_CONTENT_SHA256, ScriptedSite, drive, scripted_endpoints

TENANT = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"
HOUR = 3600.0
INSTALL = [ev.STEP_AAD_INFO, ev.STEP_ENTRA_TOKEN, ev.STEP_CCM_TOKEN, ev.STEP_SITE_INFO, ev.STEP_CCMSETUP_CAB,
           ev.STEP_CONTENT_LOCATION, ev.STEP_CONTENT_XML, ev.STEP_CONTENT_DOWNLOAD]
REGISTRATION = [ev.STEP_ENTRA_TOKEN, ev.STEP_REGISTRATION, ev.STEP_CCM_TOKEN]
FIRST_POLL = [ev.STEP_POLICY_ASSIGNMENTS] + [ev.STEP_POLICY_BODY] * 6


def device(**traits: object):  # type: ignore[no-untyped-def]
    return Fleet(3, tenant_ids=[TENANT]).device(0).with_traits(**traits)


def make(profile=None, *, polls: int | None = 1, log: MemoryLog | None = None, attempts: int = 3,  # type: ignore[no-untyped-def]
         trail: bool = True, **site_options: float) -> tuple[lc.Lifecycle, ScriptedSite, FakeClock]:
    clock = FakeClock()
    site = ScriptedSite(clock, **site_options)
    life = lc.Lifecycle(profile or device(), scripted_endpoints(), clock=clock, rng=random.Random(7), log=log,
                        polls=polls, attempts=attempts, trail=trail)
    return life, site, clock


def steps(site: ScriptedSite) -> list[str]:
    return [request.step for request in site.requests]


def form(request: Request) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(request.body.decode()).items()}


def test_a_whole_life_follows_the_walkthrough_order() -> None:
    """AADAuthInfo, Entra, CCM_STS, site info, ccmsetup.cab, content location, download, registration, token, poll."""
    life, site, _ = make()
    result = drive(life, site)
    assert result.success, result
    assert steps(site) == INSTALL + REGISTRATION + FIRST_POLL
    assert life.smsid.startswith("GUID:")
    assert [entry.step for entry in result.trail] == steps(site)


def test_stages_name_install_registration_and_policy() -> None:
    """Each request says which part of the life it belongs to."""
    life, site, _ = make()
    drive(life, site)
    stages = [request.stage for request in site.requests]
    assert stages == ["install"] * 8 + ["registration"] * 3 + ["policy"] * 7


def test_requests_carry_the_documented_headers_and_names() -> None:
    """CCM messaging uses CCM_POST with the multipart type and user agent; names are paths without a query."""
    life, site, _ = make()
    drive(life, site)
    aad, entra, sts, site_info = site.requests[:4]
    assert aad.method == "GET" and "Authorization" not in aad.headers
    assert aad.url.endswith(f"/CCM_Proxy_ServerAuth/AADAuthInfo?TenantID={TENANT}")
    assert aad.name == "/CCM_Proxy_ServerAuth/AADAuthInfo"
    assert entra.url == f"https://entra.test:9443/{TENANT}/oauth2/token"
    assert sts.method == "POST" and sts.name == "/CCM_Proxy_ServerAuth/72186325152220500/CCM_STS"
    assert site_info.method == "CCM_POST"
    assert site_info.headers["Content-Type"] == envelope.CONTENT_TYPE
    assert site_info.headers["User-Agent"] == envelope.USER_AGENT
    message = envelope.decode_message(site_info.headers["Content-Type"], site_info.body)
    assert message.header.target_endpoint == "MP_LocationManager"
    assert messages.root_tag(message.body_xml) == "SiteInformationRequest"
    assert all("?" not in request.name for request in site.requests)


def test_ccm_token_requests_carry_the_entra_token_and_later_requests_the_ccm_token() -> None:
    """CCM_STS gets the Entra token; site info, content and policy get the CCM token."""
    life, site, _ = make()
    drive(life, site)
    sts, site_info = site.requests[2], site.requests[3]
    assert sts.headers["Authorization"] == "Bearer " + site.entra_tokens[0]
    assert site_info.headers["Authorization"] == "Bearer " + site.ccm_tokens[0]
    assert site.requests[-1].headers["Authorization"] == "Bearer " + site.ccm_tokens[1]


def test_registration_carries_a_fresh_entra_token() -> None:
    """Registration asks Entra ID again and sends that new token beside the CCM token (our choice of carrier): the
    CCM token stays in Authorization, as on every CcmTokenAuth=1 request, so the CMG never takes an Entra token there."""
    life, site, _ = make()
    drive(life, site)
    registration = site.requests[9]
    assert registration.step == ev.STEP_REGISTRATION
    assert registration.headers["Authorization"] == "Bearer " + site.ccm_tokens[0]
    assert registration.headers[AAD_TOKEN_HEADER] == site.entra_tokens[1]
    message = envelope.decode_message(registration.headers["Content-Type"], registration.body)
    request = messages.RegistrationRequest.from_xml(message.body_xml)
    assert (request.netbios_name, request.smsid) == (device().netbios_name, device().client_guid)
    assert message.header.target_endpoint == "MP_ClientRegistration"


def test_policy_requests_name_the_assigned_client_id() -> None:
    """After registration the messages carry the site-assigned GUID as SourceID and ClientID."""
    life, site, _ = make()
    drive(life, site)
    poll = site.requests[11]
    message = envelope.decode_message(poll.headers["Content-Type"], poll.body)
    assert message.header.source_id == life.smsid
    assert messages.RequestAssignments.from_xml(message.body_xml).client_id == life.smsid


@pytest.mark.parametrize(("lifetime", "renews"), [(4000.0, True), (4001.0, False)])
def test_the_ccm_token_is_renewed_in_its_last_ten_percent(lifetime: float, renews: bool) -> None:
    """A poll at 90 % of the token's life renews it first; a poll just before that does not."""
    life, site, _ = make(polls=2, ccm_lifetime=lifetime)
    assert drive(life, site).success
    second_poll = steps(site)[len(INSTALL + REGISTRATION + FIRST_POLL):]
    # The 75-minute Entra token from registration is still valid an hour later, so only CCM_STS is asked.
    assert second_poll == ([ev.STEP_CCM_TOKEN] if renews else []) + [ev.STEP_POLICY_ASSIGNMENTS]


@pytest.mark.parametrize(("lifetime", "renewed_after"), [
    (24.0, 21.6),   # a CCM token at 1200x: its last tenth (2.4 s) is the longer margin
    (15.0, 13.5),   # the tenth and the floor meet
    (14.0, 12.5),   # the floor of 1.5 real seconds is the longer margin
    (3.0, 1.5),     # an Entra hour at 1200x: 1.5 s before its end, not 0.3 s
    (2.0, 1.0),     # never more than half a life early
])
def test_a_token_is_renewed_in_its_last_tenth_but_never_closer_than_the_real_time_floor(
        lifetime: float, renewed_after: float) -> None:
    from harness.client._tokens import renew_after

    assert renew_after(lifetime) == pytest.approx(renewed_after)


def test_renewal_is_stage_renewal() -> None:
    """Renewal requests say so, for the load tallies."""
    life, site, _ = make(polls=2, ccm_lifetime=1000.0)
    drive(life, site)
    renewal = site.requests[len(INSTALL + REGISTRATION + FIRST_POLL)]
    assert (renewal.step, renewal.stage) == (ev.STEP_CCM_TOKEN, ev.STAGE_RENEWAL)


@pytest.mark.parametrize(("entra_lifetime", "asks_entra"), [(30 * 60.0, True), (2 * HOUR, False)])
def test_an_expired_ccm_token_is_renewed_with_a_new_entra_token_only_when_that_expired(
        entra_lifetime: float, asks_entra: bool) -> None:
    """The cached Entra token is reused for renewal while it is valid, else Entra ID is asked again."""
    life, site, _ = make(polls=2, ccm_lifetime=1800.0, entra_lifetime=entra_lifetime)
    assert drive(life, site).success
    renewal = steps(site)[len(INSTALL + REGISTRATION + FIRST_POLL):]
    assert renewal == ([ev.STEP_ENTRA_TOKEN] if asks_entra else []) + [ev.STEP_CCM_TOKEN, ev.STEP_POLICY_ASSIGNMENTS]


def test_invalid_token_at_the_cmg_renews_and_retries_once() -> None:
    """401 CMGService_Invalid_Token: a new CCM token, then the same request again, which succeeds."""
    life, site, _ = make()
    site.script(ev.STEP_SITE_INFO, Response(401, reason=statuses.INVALID_TOKEN))
    result = drive(life, site)
    assert result.success
    assert steps(site)[:7] == [ev.STEP_AAD_INFO, ev.STEP_ENTRA_TOKEN, ev.STEP_CCM_TOKEN, ev.STEP_SITE_INFO,
                               ev.STEP_CCM_TOKEN, ev.STEP_SITE_INFO, ev.STEP_CCMSETUP_CAB]
    assert site.requests[5].headers["Authorization"] == "Bearer " + site.ccm_tokens[1]
    assert [entry.result for entry in result.trail[3:6]] == [oc.CMG_401, "ok", "ok"]


def test_a_second_invalid_token_answer_fails_with_cmg_401() -> None:
    """Only one retry: a second 401 CMGService_Invalid_Token ends the life at that step."""
    life, site, _ = make()
    site.script(ev.STEP_SITE_INFO, *[Response(401, reason=statuses.INVALID_TOKEN)] * 2)
    result = drive(life, site)
    assert (result.success, result.step, result.reason, result.status) == (False, ev.STEP_SITE_INFO, oc.CMG_401, 401)


def test_an_invalid_token_at_the_mp_is_mp_401_and_not_renewed() -> None:
    """401 MP_Invalid_Token means the proxy forwarded a bad token: its own reason code, no renewal."""
    life, site, _ = make()
    site.script(ev.STEP_SITE_INFO, Response(401, reason=statuses.MP_INVALID_TOKEN))
    result = drive(life, site)
    assert (result.step, result.reason) == (ev.STEP_SITE_INFO, oc.MP_401)
    assert steps(site).count(ev.STEP_CCM_TOKEN) == 1


@pytest.mark.parametrize(("wam", "code"), [(WAM_DEVICE_FAILS_D0090016, 0xD0090016),
                                           (WAM_DEVICE_FAILS_800703F0, 0x800703F0)])
def test_a_wam_device_failure_falls_back_to_a_user_token(wam: str, code: int) -> None:
    """No device token is requested; the user token (with the user's ids) carries the life to success."""
    log = MemoryLog()
    life, site, _ = make(device(wam=wam), log=log)
    assert drive(life, site).success
    entra = [form(r) for r in site.requests if r.step == ev.STEP_ENTRA_TOKEN]
    assert [f["grant_type"] for f in entra] == ["user_token", "user_token"]
    assert entra[0]["user_oid"] == device().user_oid and entra[0]["onprem_sid"] == device().user_sid
    ccmsetup = log.texts(CCMSETUP)
    assert "WAM token request failed. Status 5, Details 'AAD WAM extension error'" in ccmsetup
    assert f"Failed to get AAD token for 'S-1-5-18' from WAM API. Error 0x{code:08x}" in ccmsetup
    assert f"Falling back to get user '{device().user_sid}' token for system..." in ccmsetup
    assert f"Retrieved AAD token for AAD user '{device().user_oid}'" in log.texts(ADAL)


def test_a_working_wam_asks_for_a_device_token() -> None:
    """The device token is preferred: no user ids are sent."""
    life, site, _ = make()
    drive(life, site)
    first = form(site.requests[1])
    assert first["grant_type"] == "device_token" and "user_oid" not in first
    assert first["device_id"] == device().device_id and first["client_id"] == "0b7c8ab3-9ea1-4ffa-b2b9-8ffdd944bd8b"


def test_when_the_user_token_fails_too_ccmsetup_stops_without_asking_entra() -> None:
    """Both WAM requests fail: aad.no_token with the WAM error, and no Entra or CCM_STS request at all."""
    life, site, _ = make(device(wam=WAM_USER_FAILS_TOO))
    result = drive(life, site)
    assert (result.step, result.reason, result.error_code) == (ev.STEP_ENTRA_TOKEN, oc.AAD_NO_TOKEN, 0xD0090016)
    assert steps(site) == [ev.STEP_AAD_INFO]


def test_without_a_wpj_certificate_no_entra_token_is_requested() -> None:
    """WPJ missing and no PKI certificate: aad.no_wpj, ccmsetup stops before CCM_STS."""
    life, site, _ = make(device(wpj_cert=False))
    result = drive(life, site)
    assert (result.step, result.stage, result.reason) == (ev.STEP_ENTRA_TOKEN, ev.STAGE_INSTALL, oc.AAD_NO_WPJ)
    assert steps(site) == [ev.STEP_AAD_INFO]


@pytest.mark.parametrize("wpj_cert", [False, True])
def test_a_pki_client_certificate_takes_the_mutual_auth_path_and_never_asks_entra(wpj_cert: bool) -> None:
    """With a PKI client cert: no AADAuthInfo, Entra or CCM_STS; every CMG request is MutualAuth with the cert."""
    life, site, _ = make(device(pki_client_cert=True, wpj_cert=wpj_cert), polls=1)
    assert drive(life, site).success
    assert steps(site) == [ev.STEP_SITE_INFO, ev.STEP_CONTENT_LOCATION, ev.STEP_CONTENT_XML,
                           ev.STEP_CONTENT_DOWNLOAD, ev.STEP_REGISTRATION] + FIRST_POLL
    # Every CMG request is MutualAuth; the storage download carries neither the certificate nor a token.
    cmg_requests = [r for r in site.requests if r.step not in (ev.STEP_CONTENT_XML, ev.STEP_CONTENT_DOWNLOAD)]
    assert all(request.client_cert and "Authorization" not in request.headers for request in cmg_requests)
    storage = [r for r in site.requests if r.step == ev.STEP_CONTENT_DOWNLOAD]
    assert [(r.client_cert, r.headers, r.name) for r in storage] == [(False, {}, "/content")]
    assert all(r.name.startswith("/CCM_Proxy_MutualAuth/72186325152220500/") for r in cmg_requests)
    assert life.ccm_token == ""


def test_a_tenant_that_is_not_onboarded_stops_ccmsetup() -> None:
    """AADAuthInfo answers 404 CMGService_Tenant_Not_Onboarded: aad.tenant_not_onboarded, nothing more is sent."""
    life, site, _ = make()
    site.script(ev.STEP_AAD_INFO, Response(404, b"{}", reason=statuses.TENANT_NOT_ONBOARDED))
    result = drive(life, site)
    assert (result.step, result.reason) == (ev.STEP_AAD_INFO, oc.AAD_TENANT_NOT_ONBOARDED)
    assert steps(site) == [ev.STEP_AAD_INFO]


@pytest.mark.parametrize(("reply", "reason", "code"), [
    (Response(401, reason="Unauthorized"), oc.STS_401, None),
    (Response(401, reason="CMGConnector_Unauthorized"), oc.STS_401, 0x87D0027E),
    (Response(500, reason="CMGConnector_InternalServerError"), oc.STS_500, 0x87D0027E),
    (Response(401, reason=statuses.INVALID_TOKEN), oc.STS_401, None),
])
def test_ccm_sts_failures(reply: Response, reason: str, code: int | None) -> None:
    """CCM_STS refusals are sts.401 / sts.500, with 0x87d0027e when the connection point answered."""
    life, site, _ = make(attempts=1)
    site.script(ev.STEP_CCM_TOKEN, reply)
    result = drive(life, site)
    assert (result.step, result.reason, result.error_code) == (ev.STEP_CCM_TOKEN, reason, code)


def test_ccm_sts_refusal_logs_the_documented_ccmsetup_error() -> None:
    """CMGConnector_Unauthorized makes ccmsetup log RetrieveTokenFromStsServerImpl failed with 0x87d0027e."""
    log = MemoryLog()
    life, site, _ = make(log=log)
    site.script(ev.STEP_CCM_TOKEN, Response(401, reason="CMGConnector_Unauthorized"))
    drive(life, site)
    assert "RetrieveTokenFromStsServerImpl failed with error 0x87d0027e" in log.texts(CCMSETUP)


@pytest.mark.parametrize(("status", "reason"), [(403, oc.CMG_403), (503, oc.CMG_503), (502, "http.502")])
def test_cmg_http_errors_map_to_reason_codes(status: int, reason: str) -> None:
    """403 and 503 at the CMG have their own codes; other statuses are http.<status>."""
    life, site, _ = make(attempts=1)
    site.script(ev.STEP_SITE_INFO, Response(status, reason="x"))
    assert drive(life, site).reason == reason


def test_transient_failures_are_retried_after_a_back_off() -> None:
    """A reset is tried again after a Wait and the life goes on."""
    life, site, clock = make()
    site.script(ev.STEP_CCMSETUP_CAB, TransportError(oc.RESET, "connection reset"))
    while True:
        action = life.next_request()
        if type(action) is Wait:
            break
        life.feed(site.answer(action))
    assert action.until == clock.now + lc.RETRY_BASE_SITE_SECONDS
    assert life.next_request() is action  # the clock has not moved: still waiting
    clock.now = action.until
    assert life.next_request().step == ev.STEP_CCMSETUP_CAB
    assert drive(life, site).success


def test_transient_failures_give_up_after_the_attempts() -> None:
    """Three resets in a row end the life with reason reset and its WinHTTP code."""
    life, site, _ = make()
    site.script(ev.STEP_AAD_INFO, *[TransportError(oc.RESET)] * 3)
    result = drive(life, site)
    assert (result.reason, result.error_code, len(result.trail)) == (oc.RESET, 12030, 3)


@pytest.mark.parametrize("reason", [oc.TLS_INVALID_CA, oc.TLS_REVOCATION_OFFLINE, oc.TLS_REVOKED])
def test_tls_failures_end_the_life_at_once_without_an_http_status(reason: str) -> None:
    """A TLS failure is not retried, and the failing step has no HTTP status."""
    log = MemoryLog()
    life, site, _ = make(log=log)
    site.script(ev.STEP_AAD_INFO, TransportError(reason, "certificate verify failed"))
    result = drive(life, site)
    assert (result.step, result.reason, result.status, result.error_code) == (ev.STEP_AAD_INFO, reason, None, 12175)
    assert len(site.requests) == 1
    assert any(text.startswith("[CCMHTTP] ERROR: URL=https://cmg.test:8443/CCM_Proxy_ServerAuth/AADAuthInfo"
                               "?TenantID=") and text.endswith("Code=12175, Text=ERROR_WINHTTP_SECURE_FAILURE")
               for text in log.texts(CCMSETUP))


def test_registration_is_retried_with_numbered_attempts() -> None:
    """A failed registration is sent again after a back-off, logging the attempt number."""
    log = MemoryLog()
    life, site, _ = make(log=log)
    site.script(ev.STEP_REGISTRATION, Response(503, reason="MP unavailable"))
    assert drive(life, site).success
    texts = log.texts(CLIENT_ID_MANAGER)
    assert "[RegTask] - Starting registration, attempt 1." in texts
    assert "[RegTask] - Starting registration, attempt 2." in texts
    assert steps(site).count(ev.STEP_REGISTRATION) == 2


def test_registration_gives_up_after_the_attempts() -> None:
    """Every attempt failing ends the life at registration with the last reason."""
    life, site, _ = make(attempts=2)
    site.script(ev.STEP_REGISTRATION, Response(503), Response(503))
    result = drive(life, site)
    assert (result.step, result.stage, result.reason) == (ev.STEP_REGISTRATION, ev.STAGE_REGISTRATION, oc.CMG_503)


def test_a_rejected_registration_is_not_retried() -> None:
    """Status 3 from MP_ClientRegistration is registration.rejected."""
    life, site, _ = make()
    rejected = messages.RegistrationResponse(status=3, smsid="", approval_status=0, timestamp="t").to_xml()
    header = envelope.MessageHeader(target_endpoint="SccmMessaging")
    site.script(ev.STEP_REGISTRATION, Response(200, envelope.encode_message(header, rejected),
                                               content_type=envelope.CONTENT_TYPE))
    result = drive(life, site)
    assert (result.step, result.reason) == (ev.STEP_REGISTRATION, oc.REGISTRATION_REJECTED)
    assert steps(site).count(ev.STEP_REGISTRATION) == 1


def test_registered_client_logs_the_assigned_id_and_approval() -> None:
    """ClientIDManagerStartup.log names the server-assigned ClientID and approval status 3."""
    log = MemoryLog()
    life, site, _ = make(log=log)
    drive(life, site)
    assert (f"[RegTask] - Client is registered. Server assigned ClientID is {life.smsid}. Approval status 3"
            in log.texts(CLIENT_ID_MANAGER))


def test_policy_bodies_are_fetched_only_for_new_versions() -> None:
    """The second poll fetches nothing; after a version change, only the changed policy."""
    life, site, clock = make(polls=3)
    while True:
        action = life.next_request()
        if type(action) is Wait:
            if life.polls_done == 2:
                site.bump_policies()
            clock.now = action.until
        elif type(action) is Done:
            break
        else:
            life.feed(site.answer(action))
    polls = steps(site)[len(INSTALL + REGISTRATION):]
    assert polls == FIRST_POLL + [ev.STEP_POLICY_ASSIGNMENTS, ev.STEP_POLICY_ASSIGNMENTS, ev.STEP_POLICY_BODY]
    assert site.requests[-1].url.endswith("/SMS_MP/.sms_pol?{00000000-0000-0000-0000-000000000001}/2.00")


def test_polls_wait_for_the_policy_interval() -> None:
    """Between cycles the lifecycle waits until one policy interval after the previous cycle began."""
    life, site, clock = make(polls=2)
    while type(action := life.next_request()) is Request:
        if action.step == ev.STEP_POLICY_ASSIGNMENTS:
            started = clock.now
        clock.advance(1.5)
        life.feed(site.answer(action))
    assert type(action) is Wait and action.until == started + HOUR


def test_a_failed_poll_is_retried_on_the_next_cycle() -> None:
    """A poll that fails does not end the life; the last cycle's result is the outcome."""
    life, site, _ = make(polls=2)
    site.script(ev.STEP_POLICY_ASSIGNMENTS, Response(503, reason="x"))
    result = drive(life, site)
    assert result.success
    assert [entry.result for entry in result.trail if entry.step == ev.STEP_POLICY_ASSIGNMENTS] == [oc.CMG_503, "ok"]


def test_the_last_failed_poll_decides_the_outcome() -> None:
    """With one poll, a failed poll is the outcome."""
    life, site, _ = make(polls=1)
    site.script(ev.STEP_POLICY_ASSIGNMENTS, TransportError(oc.TIMEOUT))
    result = drive(life, site)
    assert (result.stage, result.step, result.reason) == (ev.STAGE_POLICY, ev.STEP_POLICY_ASSIGNMENTS, oc.TIMEOUT)


def test_renewal_lines_go_to_ccm_messaging() -> None:
    """Renewal logs the expired-or-close-to-expire line, the STS URL and the cached token, as CcmMessaging does."""
    log = MemoryLog()
    life, site, _ = make(polls=2, ccm_lifetime=1000.0, log=log)
    drive(life, site)
    texts = log.texts(CCM_MESSAGING)
    assert any(t.startswith("CCM Token for 'S-1-5-18' (") and t.endswith(") is already expired or close to expire")
               for t in texts)
    assert "Getting CCM Token from https://cmg.test:8443/CCM_Proxy_ServerAuth/72186325152220500/CCM_STS" in texts
    assert any(t.startswith("Cached encrypted token for 'S-1-5-18'. Will expire at '") for t in texts)


def test_the_entra_request_carries_the_device_clock() -> None:
    """device_time is the clock plus the device's skew (Entra stamps the token from it)."""
    life, site, clock = make(device(clock_skew=900.0))
    drive(life, site)
    assert float(form(site.requests[1])["device_time"]) == pytest.approx(clock.now + 900.0)


def test_an_unreadable_reply_fails_the_step_as_malformed() -> None:
    """A 200 whose body is not a CCM message is reply.malformed at that step."""
    life, site, _ = make()
    site.script(ev.STEP_SITE_INFO, Response(200, b"<html/>", content_type="text/html"))
    result = drive(life, site)
    assert (result.step, result.reason) == (ev.STEP_SITE_INFO, oc.BAD_REPLY)
    assert result.trail[-1].result == oc.BAD_REPLY


def _content_xml(sha256: str, size: int = len(SCRIPTED_CONTENT)) -> Response:
    url = ("https://storage.test:8444/content/CS100001/CS100001?tid=t&oid=o&iss=cmg&alg=HMACSHA256"
           "&st=2020-06-24T15:00:00Z&se=2020-06-24T16:00:00Z&sig=c2ln")
    info = ContentXml(package_id="CS100001", url=url, size=size, sha256=sha256)
    return Response(200, info.to_xml().encode(), content_type="text/xml; charset=utf-8")


def test_content_changed_on_the_way_with_its_length_kept_is_not_installed_and_names_both_hashes() -> None:
    log = MemoryLog()
    life, site, _ = make(log=log)
    changed = SCRIPTED_CONTENT[:-1] + b"\x01"
    site.script(ev.STEP_CONTENT_DOWNLOAD, Response(200, changed, content_type="application/octet-stream"))
    result = drive(life, site)
    digest = hashlib.sha256(changed).hexdigest().upper()
    assert (result.step, result.stage, result.reason, result.error_code) == (
        ev.STEP_CONTENT_DOWNLOAD, ev.STAGE_INSTALL, oc.CONTENT_HASH_MISMATCH, 0x80091007)
    assert result.detail == f"content CS100001 has SHA-256 {digest}, the content XML announced {SCRIPTED_CONTENT_SHA256}"
    assert result.trail[-1].result == oc.CONTENT_HASH_MISMATCH
    assert f"Content CS100001 has hash {digest}, expected {SCRIPTED_CONTENT_SHA256}: 0x80091007" in log.texts(CCMSETUP)
    assert ev.STEP_REGISTRATION not in steps(site)  # not installed, so never registered


def test_content_of_another_length_fails_the_download_naming_both_sizes() -> None:
    life, site, _ = make()
    site.script(ev.STEP_CONTENT_DOWNLOAD, Response(200, SCRIPTED_CONTENT + b"x",
                                                   content_type="application/octet-stream"))
    result = drive(life, site)
    assert (result.step, result.reason) == (ev.STEP_CONTENT_DOWNLOAD, oc.BAD_REPLY)
    assert result.detail == f"storage sent {len(SCRIPTED_CONTENT) + 1} bytes, the content XML announced " \
                            f"{len(SCRIPTED_CONTENT)}"


def test_the_announced_hash_is_compared_without_regard_to_case() -> None:
    life, site, _ = make()
    site.script(ev.STEP_CONTENT_XML, _content_xml(SCRIPTED_CONTENT_SHA256.lower()))
    result = drive(life, site)
    assert result.success, result


def test_without_a_trail_the_outcome_lists_no_exchanges() -> None:
    """Load runs switch the trail off to keep devices small."""
    life, site, _ = make(trail=False)
    assert drive(life, site).trail == ()


def test_a_life_ends_once_and_stays_done() -> None:
    """After Done, next_request keeps returning the same Done."""
    life, site, _ = make(polls=0)
    result = drive(life, site)
    assert life.done and life.next_request() == Done(result)
    assert steps(site) == INSTALL + REGISTRATION


def test_feeding_without_an_outstanding_request_is_refused() -> None:
    """feed() only answers a Request; before the first next_request there is none."""
    life, _, _ = make()
    with pytest.raises(LifecycleError, match="no request"):
        life.feed(Response(200))


def test_feeding_something_that_is_not_a_reply_is_refused() -> None:
    """Only Response and TransportError are replies."""
    life, _, _ = make()
    life.next_request()
    with pytest.raises(LifecycleError, match="dict"):
        life.feed({"status": 200})  # type: ignore[arg-type]


@pytest.mark.parametrize(("options", "named"), [({"polls": -1}, "polls"), ({"attempts": 0}, "attempts")])
def test_bad_lifecycle_settings_are_refused(options: dict[str, int], named: str) -> None:
    """Negative polls and zero attempts are refused by name."""
    with pytest.raises(LifecycleError, match=named):
        lc.Lifecycle(device(), scripted_endpoints(), clock=FakeClock(), rng=random.Random(1), **options)


def test_policy_bodies_are_checked_against_their_hash_and_secret_ones_decrypted() -> None:
    """A body whose SHA-256 is not the one its URL names is unreadable; a secret body is opened with the device key."""
    import hashlib

    from cmg_protocol.cms import encrypt_enveloped
    from harness.client._exchange import Failed
    from harness.client.device import SmsSigningIdentity

    life, _, _ = make()
    body = messages.PolicyBody("{P1}", "1.00", "x").to_bytes()
    good = f"https://cmg/SMS_MP/.sms_pol?{{P1}}.SHA256:{hashlib.sha256(body).hexdigest().upper()}"
    assert life._read_policy_body(body, good, secret=False).policy_id == "{P1}"
    with pytest.raises(Failed) as failed:
        life._read_policy_body(body + b"\0\0", good, secret=False)
    assert failed.value.outcome.reason == oc.BAD_REPLY and "SHA-256" in failed.value.outcome.detail
    plain = messages.PolicyBody("{P2}", "2.00", "secret").to_xml().encode("utf-16-le") + b"\0\0"
    sealed = encrypt_enveloped(plain, SmsSigningIdentity.shared().cert)
    assert life._read_policy_body(sealed, "https://cmg/SMS_MP/.sms_pol?{P2}.2_00", secret=True).body == "secret"
    with pytest.raises(Failed):
        life._read_policy_body(plain, "https://cmg/SMS_MP/.sms_pol?{P2}.2_00", secret=True)
