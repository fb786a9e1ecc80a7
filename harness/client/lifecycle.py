"""One simulated client's life as a sans-I/O state machine, in the order of the Entra walk-through.

AADAuthInfo → Entra token (device, else user) → CCM token from CCM_STS → site information → ccmsetup.cab → content
location → content download → install → registration → new CCM token → policy polling, renewing the CCM token when it
is expired or in its last 10 % of life. A device with a PKI client certificate takes the MutualAuth path instead and
never asks Entra ID. The machine yields :class:`Request` and :class:`Wait` actions and takes :class:`Response` or
:class:`TransportError` replies; it does no I/O and reads time only from the injected clock, so a driver (httpx for the
CLI, Locust for load, hand-made replies in tests) decides how bytes move.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Generator
from dataclasses import replace
from functools import lru_cache, partial
from typing import Any
from urllib.parse import quote, urlsplit

from harness.client import outcome as oc
from harness.client.clientlogs import (
    ADAL,
    CCM_MESSAGING,
    CCMSETUP,
    CLIENT_ID_MANAGER,
    ERROR,
    LOCATION_SERVICES,
    WARNING,
    ClientLog,
    log_time,
)
from harness.client.device import (
    SYSTEM_SID,
    WAM_DEVICE_FAILS_800703F0,
    WAM_OK,
    WAM_USER_FAILS_TOO,
    DeviceProfile,
    SmsSigningIdentity,
)
from harness.client.events import (
    Action,
    Done,
    LifecycleError,
    Reply,
    Request,
    Response,
    SiteEndpoints,
    TransportError,
    Wait,
)
from harness.client.outcome import Outcome, TrailEntry
from mock_site.clock import Clock
from mock_site.protocol import envelope, messages, urlmap
from mock_site.protocol.envelope import EnvelopeError, MessageHeader
from mock_site.protocol.messages import MessageError

STAGE_INSTALL, STAGE_REGISTRATION, STAGE_RENEWAL, STAGE_POLICY = "install", "registration", "renewal", "policy"
STEP_AAD_INFO = "aad_info"
STEP_ENTRA_TOKEN = "entra_token"
STEP_CCM_TOKEN = "ccm_token"
STEP_SITE_INFO = "site_info"
STEP_CCMSETUP_CAB = "ccmsetup_cab"
STEP_CONTENT_LOCATION = "content_location"
STEP_CONTENT_DOWNLOAD = "content_download"
STEP_REGISTRATION = "registration"
STEP_POLICY_ASSIGNMENTS = "policy_assignments"
STEP_POLICY_BODY = "policy_body"

#: Renew the CCM token once less than this share of its life is left (ours: the real margin is not public).
RENEW_SHARE = 0.1
CLIENT_VERSION = "5.00.8968.1000"
CLIENT_PRODUCT_CODE = "{66653948-0717-4D50-B0B9-ED66FDED2DDB}"
#: First retry after one site minute, doubling per attempt (ours: ccmsetup's real schedule is not public).
RETRY_BASE_SITE_SECONDS = 60.0

# Status texts the client reacts to (documented: CMGService_Invalid_Token and the CMGConnector_* family).
INVALID_TOKEN = "CMGService_Invalid_Token"
MP_INVALID_TOKEN = "MP_Invalid_Token"  # synthetic: not the public ConfigMgr format
TENANT_NOT_ONBOARDED = "CMGService_Tenant_Not_Onboarded"  # synthetic: not the public ConfigMgr format
CMG_CONNECTOR_PREFIX = "CMGConnector_"
DEVICE_GRANT = "device_token"  # synthetic: not the public ConfigMgr format (WAM's device grant is not public)
USER_GRANT = "user_token"  # synthetic: not the public ConfigMgr format
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
AAD_AUTH_INFO_NAME = f"/{urlmap.SERVER_AUTH}/{urlmap.AAD_AUTH_INFO}"


# What a step generator yields, is sent, and returns.
_Step = Generator[Request | Wait, Any, Any]

_SUCCESS = Outcome(success=True)

# Every device gets byte-identical site information, content location and policy assignment replies, and the parsed
# messages are immutable: each distinct reply is parsed once per process and shared (bounded, cleared when full).
_SHARED_REPLY_TYPES = (messages.SiteInfoReply, messages.ContentLocationReply, messages.ReplyAssignments)
_SHARED_LIMIT = 256
_shared_replies: dict[tuple[type, str], Any] = {}
_shared_values: dict[tuple[str, ...], tuple[str, ...]] = {}


def _parse_shared(cls: Any, body_xml: str) -> Any:
    key = (cls, body_xml)
    parsed = _shared_replies.get(key)
    if parsed is None:
        parsed = cls.from_xml(body_xml)
        if len(_shared_replies) >= _SHARED_LIMIT:
            _shared_replies.clear()
        _shared_replies[key] = parsed
    return parsed


def _shared(value: tuple[str, ...]) -> tuple[str, ...]:
    """One tuple object per distinct value, so 100,000 devices holding the same policy keys hold one tuple."""
    found = _shared_values.get(value)
    if found is None:
        if len(_shared_values) >= _SHARED_LIMIT:
            _shared_values.clear()
        _shared_values[value] = found = value
    return found


class _Failed(Exception):
    """Unwinds the life from a failed step to its end, carrying the outcome."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


class Lifecycle:
    """A device's life: call :meth:`next_request`, act on it, :meth:`feed` the reply to a Request, until Done."""

    __slots__ = ("_aad_app", "_aad_resource", "_action", "_attempts", "_ccm", "_ccm_expires", "_ccm_renew_at",
                 "_clock", "_entra", "_entra_expires", "_gen", "_log", "_polls", "_rng", "_seen", "_seen_reply", "_smsid",
                 "_trail",
                 "polls_done", "profile", "site")

    def __init__(self, profile: DeviceProfile, site: SiteEndpoints, *, clock: Clock, rng: random.Random,
                 log: ClientLog | None = None, polls: int | None = 1, attempts: int = 3, trail: bool = True) -> None:
        if polls is not None and polls < 0:
            raise LifecycleError(f"polls must be >= 0 or None (poll forever), got {polls!r}")
        if attempts < 1:
            raise LifecycleError(f"attempts must be >= 1, got {attempts!r}")
        self.profile = profile
        self.site = site
        self._clock = clock
        self._rng = rng
        self._log = log
        self._polls = polls
        self._attempts = attempts
        self._trail: list[TrailEntry] | None = [] if trail else None
        self._gen: _Step | None = None
        self._action: Action | None = None
        self._aad_app = self._aad_resource = ""
        self._entra = self._ccm = self._smsid = ""
        self._entra_expires = self._ccm_renew_at = self._ccm_expires = 0.0
        self._seen: tuple[str, ...] = ()
        self._seen_reply: messages.ReplyAssignments | None = None
        self.polls_done = 0

    # ------------------------------------------------------------------------------------------------ driver API
    def next_request(self) -> Action:
        """The current action: the same Request until it is fed, a Wait until the clock passes it, or Done."""
        action = self._action
        if action is None:
            self._gen = self._life()
            self._advance(None)
        elif type(action) is Wait:
            if self._clock() < action.until:
                return action
            self._advance(None)
        return self._action  # type: ignore[return-value]

    def feed(self, reply: Reply) -> None:
        """Give the reply to the outstanding Request (a Response, or a TransportError when there was no answer)."""
        if type(self._action) is not Request:
            raise LifecycleError(f"no request is waiting for a reply (current action: {type(self._action).__name__})")
        if not isinstance(reply, (Response, TransportError)):
            raise LifecycleError(f"a reply is a Response or a TransportError, got {type(reply).__name__}")
        self._advance(reply)

    @property
    def done(self) -> bool:
        """Whether the life is over."""
        return type(self._action) is Done

    @property
    def smsid(self) -> str:
        """The ``GUID:…`` client id the site assigned ('' before registration)."""
        return self._smsid

    @property
    def ccm_token(self) -> str:
        """The current CCM token ('' before CCM_STS answered, and always on the PKI path)."""
        return self._ccm

    def _advance(self, value: Reply | None) -> None:
        assert self._gen is not None
        try:
            self._action = self._gen.send(value)
        except StopIteration as stop:
            self._finish(stop.value)
        except _Failed as failed:
            self._finish(failed.outcome)

    def _finish(self, outcome: Outcome) -> None:
        if self._trail:
            outcome = replace(outcome, trail=tuple(self._trail))
        self._action = Done(outcome)
        self._gen = None  # the finished life keeps no frame and no trail
        self._trail = None

    # ------------------------------------------------------------------------------------------------ the life
    def _life(self) -> _Step:
        if self.profile.pki_client_cert:
            yield from self._install_pki()
        else:
            yield from self._install_entra()
        yield from self._register()
        # Policy polling runs in this frame, so a device waiting for its next cycle keeps one generator frame alive.
        polls, interval = self._polls, self.site.policy_interval_s
        result = _SUCCESS
        while polls is None or self.polls_done < polls:
            started = self._clock()
            try:
                yield from self._poll_once()
                result = _SUCCESS
            except _Failed as failed:
                # A failed cycle is retried on the next one, as the client agent does; the last cycle decides.
                result = failed.outcome
            self.polls_done += 1
            if polls is None or self.polls_done < polls:
                yield Wait(started + interval)
        return result

    def _install_entra(self) -> _Step:
        site, p = self.site, self.profile
        self._write(CCMSETUP, f"Getting AAD info from CMG '{site.netloc}'")
        aad_path = urlmap.aad_auth_info_path(p.tenant_id)
        self._connection_line(CCMSETUP, "SMS CCM 5.0", aad_path, token_auth=False, flags="0x1304", options="0xe0")
        reply = yield from self._exchange(lambda: Request("GET", site.url(aad_path), {}, b"", AAD_AUTH_INFO_NAME,
                                                          STAGE_INSTALL, STEP_AAD_INFO))
        try:
            info = json.loads(reply.body)
            self._aad_app = sys.intern(str(info["AADCLIENTAPPID"]))
            self._aad_resource = sys.intern(str(info["AADRESOURCEURI"]))
        except (ValueError, KeyError, TypeError) as exc:
            self._fail_reply(STEP_AAD_INFO, STAGE_INSTALL, f"AADAuthInfo reply is not the expected JSON: {exc}")
        yield from self._entra_token(STAGE_INSTALL)
        yield from self._ccm_token(STAGE_INSTALL, CCMSETUP)
        yield from self._locate_and_download(mutual=False)

    def _install_pki(self) -> _Step:
        # A valid PKI client-auth certificate always wins: no AADAuthInfo, no Entra token, MutualAuth throughout.
        self._write(CCMSETUP, "Client authentication certificate found; installing as a PKI client")  # synthetic
        yield from self._locate_and_download(mutual=True)

    def _locate_and_download(self, *, mutual: bool) -> _Step:
        site = self.site
        base = site.mutual_base if mutual else site.server_base
        target = base.split("://", 1)[1]
        if not mutual:
            self._connection_line(CCMSETUP, "ccmsetup", site.tokenauth_path, token_auth=True, flags="0x4100",
                                  options="0xe0")
        request_xml = messages.SiteInformationRequest(site_code=site.site_code).to_xml()
        self._write(CCMSETUP, f"Sending location request to '{target}' with payload '{request_xml}'")
        reply = yield from self._message(STEP_SITE_INFO, STAGE_INSTALL, "MP_LocationManager", request_xml,
                                         mutual=mutual)
        site_info = self._decode(reply, messages.SiteInfoReply, STEP_SITE_INFO, STAGE_INSTALL)
        if self._log is not None:
            self._write(CCMSETUP, f"Received message '{site_info.to_xml()}'")
        if not mutual:
            self._write(CCMSETUP, f"Checking the URL '{site.url(site.ccmsetup_path)}'")
            self._write(CCMSETUP, f"ccmsetup: Host={site.host}, Path={site.ccmsetup_path.rsplit('/', 1)[0]}")
            yield from self._ccm_exchange(lambda: self._get(site.url(site.ccmsetup_path), site.ccmsetup_path,
                                                            STAGE_INSTALL, STEP_CCMSETUP_CAB), STAGE_INSTALL)
        self._write(CCMSETUP, f"Found a valid online MP '{base}'")
        self._write(CCMSETUP, "Searching for DP locations from MP(s)...")
        self._write(CCMSETUP, "CCMSETUP bootstrap from Internet: 1")
        location_xml = messages.ContentLocationRequest(site_code=site.site_code, package_id=None,
                                                       package_version=CLIENT_VERSION).to_xml()
        self._write(CCMSETUP, f"Sending message body '{location_xml}'")
        reply = yield from self._message(STEP_CONTENT_LOCATION, STAGE_INSTALL, "MP_LocationManager", location_xml,
                                         mutual=mutual)
        locations = self._decode(reply, messages.ContentLocationReply, STEP_CONTENT_LOCATION, STAGE_INSTALL)
        url = locations.urls[0] if locations.urls else ""
        if urlsplit(url).scheme != "https":
            self._fail_reply(STEP_CONTENT_LOCATION, STAGE_INSTALL, f"no https content location in {locations.urls!r}")
        self._write(CCMSETUP, f"The location '{url}'")
        self._write(LOCATION_SERVICES, f"Content location for the client package: '{url}'")  # synthetic wording
        name = urlsplit(url).path
        if mutual:
            yield from self._exchange(lambda: Request("GET", url, {}, b"", name, STAGE_INSTALL, STEP_CONTENT_DOWNLOAD,
                                                      client_cert=True))
        else:
            yield from self._ccm_exchange(lambda: self._get(url, name, STAGE_INSTALL, STEP_CONTENT_DOWNLOAD),
                                          STAGE_INSTALL)
        self._write(CCMSETUP, f"Installing version {CLIENT_VERSION} of the client with product code "
                              f"{CLIENT_PRODUCT_CODE}")
        self._write(CCMSETUP, "Running installation package")
        if self._log is not None:
            self._write(CCMSETUP, f"Package:     C:\\WINDOWS\\ccmsetup\\{self._new_id()}\\client.msi")

    def _register(self) -> _Step:
        site, p = self.site, self.profile
        pki = p.pki_client_cert
        self._write(CLIENT_ID_MANAGER, "AADJoinStatusTask: Client hasn't been registered yet.")
        self._write(CLIENT_ID_MANAGER, "RegEndPoint: Event notification: CCM_RemoteClient_Reassigned")
        self._write(CLIENT_ID_MANAGER, f"RegEndPoint: Received notification for site assignment change from "
                                       f"'<none>' to '{site.site_code}'.")
        self._write(LOCATION_SERVICES, f"Assigned to site '{site.site_code}'; internet MP is "  # synthetic wording
                                       f"'{(site.mutual_base if pki else site.server_base).split('://', 1)[1]}'")
        reply: Reply | None = None
        for attempt in range(1, self._attempts + 1):
            if attempt > 1:
                yield Wait(self._clock() + self._backoff(attempt - 1))
            self._write(CLIENT_ID_MANAGER, f"[RegTask] - Starting registration, attempt {attempt}.")
            self._write(CLIENT_ID_MANAGER, f"[RegTask] - Client is not registered. Sending registration request for "
                                           f"{p.client_guid} ...")
            if pki:
                self._write(CLIENT_ID_MANAGER, "Registering client using PKI certificate.")  # synthetic wording
            else:
                self._write(CLIENT_ID_MANAGER, "Registering client using AAD auth.")
                # Registration asks for a new Entra token (the walk-through); a retry reuses it while it is valid.
                if attempt == 1 or self._clock() >= self._entra_expires:
                    yield from self._entra_token(STAGE_REGISTRATION)
            request = self._registration_request()
            reply = yield request
            reason = self._classify(request.step, reply)
            self._note(request, reply, reason)
            if reason is None and isinstance(reply, Response):
                response = self._decode(reply, messages.RegistrationResponse, STEP_REGISTRATION, STAGE_REGISTRATION)
                if response.status == messages.RegistrationStatus.OK and response.smsid:
                    self._smsid = response.smsid
                    break
                if response.status == messages.RegistrationStatus.REJECTED:
                    self._fail(oc.REGISTRATION_REJECTED, request, reply, detail="the MP rejected the registration")
                reason = oc.REGISTRATION_REJECTED
            elif reason in (oc.TLS_INVALID_CA, oc.TLS_REVOKED, oc.TLS_REVOCATION_OFFLINE):
                self._fail(reason, request, reply)
            if attempt == self._attempts:
                self._fail(reason, request, reply, detail=f"registration failed after {attempt} attempt(s)"
                           if reason == oc.REGISTRATION_REJECTED else "")
        self._write(CLIENT_ID_MANAGER, f"[RegTask] - Client is registered. Server assigned ClientID is {self._smsid}. "
                                       f"Approval status 3")
        if not pki:
            yield from self._ccm_token(STAGE_REGISTRATION, CLIENT_ID_MANAGER)

    def _registration_request(self) -> Request:
        p, site = self.profile, self.site
        identity = SmsSigningIdentity.shared()
        unsigned = messages.RegistrationRequest(
            netbios_name=p.netbios_name, fq_name=p.fq_name, locale_id=p.locale_id, internet_flag=1,
            agent_version=CLIENT_VERSION, signing_cert_hex=identity.cert_hex, encryption_cert_hex=identity.cert_hex,
            timestamp=self._sent_time(), smsid=p.client_guid)
        signature = identity.sign(unsigned.data_xml().encode("utf-16-le"))
        body_xml = replace(unsigned, signature_hex=signature).to_xml()
        if p.pki_client_cert:
            return self._ccm_post(STEP_REGISTRATION, STAGE_REGISTRATION, "MP_ClientRegistration", body_xml,
                                  mutual=True)
        # Registration carries the fresh Entra token, not the CCM token (our choice; the real carrier is not public).
        request = self._ccm_post(STEP_REGISTRATION, STAGE_REGISTRATION, "MP_ClientRegistration", body_xml,
                                 mutual=False, bearer=self._entra)
        self._write(CLIENT_ID_MANAGER, f"Sending registration request to '{site.server_base.split('://', 1)[1]}'")
        return request

    def _poll_once(self) -> _Step:
        p, site = self.profile, self.site
        mutual = p.pki_client_cert
        if self._entra and self._clock() >= self._entra_expires:
            self._entra = ""  # never sent again once expired: a kilobyte less for every waiting device
        body_xml = messages.RequestAssignments(client_id=self._smsid, fqdn=p.fq_name, netbios_name=p.netbios_name,
                                               sid=p.machine_sid, site_code=site.site_code).to_xml()
        reply = yield from self._message(STEP_POLICY_ASSIGNMENTS, STAGE_POLICY, "MP_PolicyManager", body_xml,
                                         mutual=mutual, sync_log=True)
        assignments = self._decode(reply, messages.ReplyAssignments, STEP_POLICY_ASSIGNMENTS, STAGE_POLICY)
        if assignments is self._seen_reply:
            return  # the very reply whose policies this device already holds: nothing changed
        base = site.mutual_base if mutual else site.server_base
        seen = set(self._seen)
        for assignment in assignments.assignments:
            key = f"{assignment.policy_id}/{assignment.policy_version}"
            if key in seen:
                continue
            url = assignment.location_for(base)
            build = partial(self._policy_body_request, url, urlsplit(url).path, mutual)
            if mutual:
                reply = yield from self._exchange(build, retries=False)
            else:
                reply = yield from self._ccm_exchange(build, STAGE_POLICY, retries=False)
            try:
                body = messages.PolicyBody.from_xml(reply.body.decode("utf-8"))
            except (UnicodeDecodeError, MessageError) as exc:
                self._fail_reply(STEP_POLICY_BODY, STAGE_POLICY, f"policy body unreadable: {exc}")
            if body.policy_id != assignment.policy_id:
                self._fail_reply(STEP_POLICY_BODY, STAGE_POLICY, f"asked for policy {assignment.policy_id}, got "
                                                                 f"{body.policy_id}")
            seen.add(key)
        self._seen = _shared(tuple(sorted(seen)))
        self._seen_reply = assignments

    # ------------------------------------------------------------------------------------------------ tokens
    def _entra_token(self, stage: str) -> _Step:
        p, site = self.profile, self.site
        file = CCMSETUP if stage == STAGE_INSTALL else ADAL
        if not p.wpj_cert:
            # Without the workplace-join certificate WAM has no credential to ask Entra ID with: no request at all.
            self._write(file, "Failed to get AAD token: no workplace join (WPJ) certificate found", ERROR)  # synthetic
            self._fail_local(oc.AAD_NO_WPJ, STEP_ENTRA_TOKEN, stage,
                             "the device has no workplace-join certificate, so it cannot request Entra tokens")
        grant = DEVICE_GRANT
        # The device token is always tried first (the walk-through logs the attempt, then WAM's failure).
        self._write(file, self._token_line("device", f"{site.entra_url}/common/oauth2/token"))
        if p.wam != WAM_OK:
            code = oc.E_WAM_800703F0 if p.wam == WAM_DEVICE_FAILS_800703F0 else oc.E_WAM_D0090016
            self._wam_failure(file, code, SYSTEM_SID)
            self._write(file, f"Falling back to get user '{p.user_sid}' token for system...")
            self._write(file, self._token_line("user", p.wam_account_id))
            if p.wam == WAM_USER_FAILS_TOO:
                self._wam_failure(file, code, p.user_sid)
                self._fail_local(oc.AAD_NO_TOKEN, STEP_ENTRA_TOKEN, stage,
                                 "WAM could get neither a device nor a user token", error_code=code)
            grant = USER_GRANT
        user = grant == USER_GRANT
        path = f"/{p.tenant_id}/oauth2/token"

        def build() -> Request:
            # GUIDs, SIDs and numbers need no escaping; the app id and resource URI are quoted (once per process).
            form = (f"grant_type={grant}&resource={_quoted(self._aad_resource)}&client_id={_quoted(self._aad_app)}"
                    f"&device_id={p.device_id}&device_time={self._clock() + p.clock_skew:.3f}")
            if user:
                form += f"&user_oid={p.user_oid}&onprem_sid={p.user_sid}"
            return Request("POST", site.entra_url + path, {"Content-Type": FORM_CONTENT_TYPE}, form.encode("ascii"),
                           path, stage, STEP_ENTRA_TOKEN)

        request, reply, reason = yield from self._send(build)
        if reason is not None:
            self._write(file, "Failed to get AAD token..", ERROR)
            self._fail(reason, request, reply)
        try:
            document = json.loads(reply.body)
            token, lifetime = str(document["access_token"]), float(document["expires_in"])
        except (ValueError, KeyError, TypeError) as exc:
            self._fail_reply(STEP_ENTRA_TOKEN, stage, f"Entra token reply is not the expected JSON: {exc}")
        self._entra = token
        self._entra_expires = self._clock() + lifetime
        self._write(file, f"Retrieved AAD token for AAD {'user' if user else 'device'} "
                          f"'{p.user_oid if user else p.device_id}'")

    def _token_line(self, kind: str, account: str) -> str:
        return (f"Getting AAD ({kind}) token with: ClientId = {self._aad_app}, ResourceUrl = {self._aad_resource}, "
                f"AccountId = {account}")

    def _wam_failure(self, file: str, code: int, account: str) -> None:
        self._write(file, "WAM token request failed. Status 5, Details 'AAD WAM extension error'", ERROR)
        self._write(file, "Failed to get AAD token..", ERROR)
        self._write(file, f"Unknown error (Error: {code:08X}; Source: Unknown)", ERROR)
        self._write(file, f"Failed to get AAD token for '{account}' from WAM API. Error 0x{code:08x}", ERROR)

    def _ccm_token(self, stage: str, file: str) -> _Step:
        site = self.site
        if not self._entra or self._clock() >= self._entra_expires:
            yield from self._entra_token(stage)
        self._write(file, f"Getting CCM Token from STS server '{site.server_base.split('://', 1)[1]}'")
        sts_url = site.url(site.sts_path)
        self._write(file, f"Getting CCM Token from {sts_url}")
        request, reply, reason = yield from self._send(
            lambda: Request("POST", sts_url, {"Authorization": "Bearer " + self._entra}, b"", site.sts_path, stage,
                            STEP_CCM_TOKEN))
        if reason is not None:
            if type(reply) is Response and reply.reason.startswith(CMG_CONNECTOR_PREFIX):
                self._write(file, f"RetrieveTokenFromStsServerImpl failed with error 0x{oc.E_CMG_CONNECTOR:08x}", ERROR)
            self._fail(reason, request, reply)
        try:
            document = json.loads(reply.body)
            token, lifetime = str(document["token"]), float(document["expires_in"])
        except (ValueError, KeyError, TypeError) as exc:
            self._fail_reply(STEP_CCM_TOKEN, stage, f"CCM_STS reply is not the expected JSON: {exc}")
        now = self._clock()
        self._ccm = token
        self._ccm_expires = now + lifetime
        self._ccm_renew_at = now + lifetime * (1.0 - RENEW_SHARE)
        if self._log is not None:
            self._write(file, f"Cached encrypted token for '{SYSTEM_SID}'. Will expire at "
                              f"'{log_time(self._ccm_expires + self.profile.clock_skew)}'")

    def _fresh_ccm_token(self) -> _Step:
        """Renew the CCM token before a request when it is expired or in its last 10 % of life."""
        if self._clock() < self._ccm_renew_at:
            return
        if self._log is not None:
            self._write(CCM_MESSAGING, f"CCM Token for '{SYSTEM_SID}' "
                                       f"({log_time(self._ccm_expires + self.profile.clock_skew)}) is already expired "
                                       f"or close to expire")
        yield from self._ccm_token(STAGE_RENEWAL, CCM_MESSAGING)

    # ------------------------------------------------------------------------------------------------ exchanges
    def _send(self, build: Any, *, retries: bool = True) -> _Step:
        """Send ``build()``; transient failures are tried again after a back-off; returns (request, reply, reason)."""
        attempt = 1
        while True:
            request = build()
            reply = yield request
            reason = self._classify(request.step, reply)
            self._note(request, reply, reason)
            if reason is None or not retries or reason not in oc.TRANSIENT_REASONS or attempt >= self._attempts:
                return request, reply, reason
            yield Wait(self._clock() + self._backoff(attempt))
            attempt += 1

    def _exchange(self, build: Any, *, retries: bool = True) -> _Step:
        request, reply, reason = yield from self._send(build, retries=retries)
        if reason is not None:
            self._fail(reason, request, reply)
        return reply

    def _ccm_exchange(self, build: Any, stage: str, *, retries: bool = True) -> _Step:
        """A request carrying the CCM token: renewed first when due, and once more after ``CMGService_Invalid_Token``."""
        yield from self._fresh_ccm_token()
        request, reply, reason = yield from self._send(build, retries=retries)
        if reason == oc.CMG_401 and reply.reason == INVALID_TOKEN:
            self._write(CCM_MESSAGING, f"CCM token was refused by '{self.site.netloc}' ({INVALID_TOKEN}); "
                                       f"getting a new one", WARNING)  # synthetic wording
            yield from self._ccm_token(STAGE_RENEWAL, CCM_MESSAGING)
            request, reply, reason = yield from self._send(build, retries=retries)
        if reason is not None:
            self._fail(reason, request, reply)
        return reply

    def _message(self, step: str, stage: str, endpoint: str, body_xml: str, *, mutual: bool,
                 sync_log: bool = False) -> _Step:
        def build() -> Request:
            return self._ccm_post(step, stage, endpoint, body_xml, mutual=mutual, sync_log=sync_log)

        retries = stage != STAGE_POLICY  # a failed poll waits for the next cycle
        if mutual:
            return (yield from self._exchange(build, retries=retries))
        return (yield from self._ccm_exchange(build, stage, retries=retries))

    def _ccm_post(self, step: str, stage: str, endpoint: str, body_xml: str, *, mutual: bool, bearer: str | None = None,
                  sync_log: bool = False) -> Request:
        site, p = self.site, self.profile
        message_id = self._new_id()
        header = MessageHeader(target_endpoint=endpoint, source_id=self._smsid, source_host=p.netbios_name,
                               target_host=site.host, message_id=message_id, sent_time=self._sent_time())
        headers = {"Content-Type": envelope.CONTENT_TYPE, "User-Agent": envelope.USER_AGENT}
        path = site.system_path if mutual else site.tokenauth_path
        if not mutual:
            headers["Authorization"] = "Bearer " + (self._ccm if bearer is None else bearer)
        if self._log is not None:
            url = site.url(path)
            if sync_log:
                base = site.mutual_base if mutual else site.server_base
                self._write(CCM_MESSAGING, f"Sending remote sync message '{message_id}' to host "
                                           f"'{base.split('://', 1)[1]}' endpoint '{endpoint}'. Flags 0x280, sender "
                                           f"account {SYSTEM_SID}")
                if not mutual:
                    self._connection_line(CCM_MESSAGING, "ccmhttp", path, token_auth=True, flags="0x4200",
                                          options="0x1e0", connection=False)
                    self._write(CCM_MESSAGING, f"Target URL scheme is HTTPS: {url}")
            if not mutual and bearer is None:
                self._write(CCM_MESSAGING if sync_log else CCMSETUP, "Appending CCM Token to the header.")
        return Request(envelope.CCM_POST, site.url(path), headers, envelope.encode_message(header, body_xml), path,
                       stage, step, client_cert=mutual)

    def _policy_body_request(self, url: str, name: str, mutual: bool) -> Request:
        if mutual:
            return Request("GET", url, {}, b"", name, STAGE_POLICY, STEP_POLICY_BODY, client_cert=True)
        return self._get(url, name, STAGE_POLICY, STEP_POLICY_BODY)

    def _get(self, url: str, name: str, stage: str, step: str) -> Request:
        if stage == STAGE_INSTALL:
            self._write(CCMSETUP, "Appending CCM Token to the header.")
        return Request("GET", url, {"Authorization": "Bearer " + self._ccm}, b"", name, stage, step)

    def _decode(self, reply: Response, cls: Any, step: str, stage: str) -> Any:
        """Read a CCM messaging reply as ``cls`` (or fail the step with ``reply.malformed``)."""
        try:
            message = envelope.decode_message(reply.content_type, reply.body)
            parsed = _parse_shared(cls, message.body_xml) if cls in _SHARED_REPLY_TYPES else cls.from_xml(
                message.body_xml)
        except (EnvelopeError, MessageError) as exc:
            self._fail_reply(step, stage, f"{cls.ROOT} reply unreadable: {exc}")
        if step == STEP_POLICY_ASSIGNMENTS and self._log is not None:
            self._write(CCM_MESSAGING, f"Message '{message.header.correlation_id}' got reply message "
                                       f"'{message.header.message_id}' to endpoint '{message.header.target_endpoint}'")
        return parsed

    # ------------------------------------------------------------------------------------------------ verdicts
    @staticmethod
    def _classify(step: str, reply: Reply) -> str | None:
        """The reason code of a reply at ``step`` (None: success)."""
        if isinstance(reply, TransportError):
            return reply.reason
        status = reply.status
        if 200 <= status < 300:
            return None
        if step == STEP_ENTRA_TOKEN:
            return oc.AAD_NO_TOKEN
        if step == STEP_CCM_TOKEN and status in (401, 500):
            return oc.STS_401 if status == 401 else oc.STS_500
        if step == STEP_AAD_INFO and status == 404 and reply.reason == TENANT_NOT_ONBOARDED:
            return oc.AAD_TENANT_NOT_ONBOARDED
        if status == 401:
            return oc.MP_401 if reply.reason == MP_INVALID_TOKEN else oc.CMG_401
        if status == 403:
            return oc.CMG_403
        if status == 503:
            return oc.CMG_503
        return oc.http_reason(status)

    def _note(self, request: Request, reply: Reply, reason: str | None) -> None:
        """Add the exchange to the trail and, on failure, write the ccmhttp error lines."""
        if self._trail is not None:
            status = reply.status if type(reply) is Response else None
            self._trail.append(TrailEntry(request.step, request.name, status, round(reply.ms, 1), reason or "ok"))
        if reason is None or self._log is None:
            return
        file = _log_file(request.stage, request.step)
        if isinstance(reply, TransportError):
            code, flags = oc.TRANSPORT_CODES[reason]
            self._write(file, f"[CCMHTTP] ERROR: URL={request.url}, Code={code}, Text={oc.winhttp_text(code)}", ERROR)
            if flags is not None:
                self._write(file, f"[CCMHTTP] ERROR INFO: SecureFailureFlags=0x{flags:08x} "  # synthetic wording
                                  f"({', '.join(oc.flag_names(flags))})", ERROR)
        else:
            self._write(file, f"[CCMHTTP] ERROR INFO: StatusCode={reply.status} StatusText={reply.reason}", ERROR)

    def _fail(self, reason: str, request: Request, reply: Reply, *, detail: str = "") -> Any:
        error_code = None
        if isinstance(reply, Response):
            detail = detail or f"HTTP {reply.status} {reply.reason}".rstrip()
            if reply.reason.startswith(CMG_CONNECTOR_PREFIX):
                error_code = oc.E_CMG_CONNECTOR
        else:
            detail = detail or reply.detail
        raise _Failed(oc.failure(reason, step=request.step, stage=request.stage, detail=detail, error_code=error_code))

    def _fail_local(self, reason: str, step: str, stage: str, detail: str, *, error_code: int | None = None) -> Any:
        raise _Failed(oc.failure(reason, step=step, stage=stage, detail=detail, error_code=error_code))

    def _fail_reply(self, step: str, stage: str, detail: str) -> Any:
        if self._trail and self._trail[-1].step == step:
            self._trail[-1] = self._trail[-1]._replace(result=oc.BAD_REPLY)
        raise _Failed(oc.failure(oc.BAD_REPLY, step=step, stage=stage, detail=detail))

    # ------------------------------------------------------------------------------------------------ small helpers
    def _write(self, file: str, text: str, type: int = 1) -> None:
        if self._log is not None:
            self._log.write(file, text, type)

    def _connection_line(self, file: str, prefix: str, path: str, *, token_auth: bool, flags: str, options: str,
                         connection: bool = True) -> None:
        if self._log is None:
            return
        site = self.site
        self._write(file, f"{prefix}: Host={site.host}, Path={path}, Port={site.port}, Protocol=https, "
                          f"CcmTokenAuth={int(token_auth)}, Flags={flags}, Options={options}")
        if connection:
            self._write(file, f"Created connection on port {site.port}")
            if not self.profile.nocrlcheck:
                self._write(file, "Enabled SSL revocation check.")

    def _backoff(self, attempt: int) -> float:
        return RETRY_BASE_SITE_SECONDS * (2 ** (attempt - 1)) / self.site.time_scale

    def _new_id(self) -> str:
        digits = f"{self._rng.getrandbits(128):032X}"
        return f"{{{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}}}"

    def _sent_time(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._clock() + self.profile.clock_skew))


@lru_cache(maxsize=64)
def _quoted(value: str) -> str:
    return quote(value, safe="")


def _log_file(stage: str, step: str) -> str:
    """The client log a step's lines go to: ccmsetup while installing, then the client agent's logs."""
    if stage == STAGE_INSTALL:
        return CCMSETUP
    if step == STEP_ENTRA_TOKEN:
        return ADAL
    return CLIENT_ID_MANAGER if stage == STAGE_REGISTRATION else CCM_MESSAGING
