"""One simulated client's life as a sans-I/O state machine, in the order of the Entra walk-through.

AADAuthInfo → Entra token (device, else user) → CCM token from CCM_STS → site information → ccmsetup.cab → content
location → content download → install → registration → new CCM token → policy polling, renewing the CCM token when it
is expired or in its last 10 % of life. A device with a PKI client certificate takes the MutualAuth path instead and
never asks Entra ID. The machine yields :class:`Request` and :class:`Wait` actions and takes :class:`Response` or
:class:`TransportError` replies; it does no I/O and reads time only from the injected clock, so a driver (httpx for the
CLI, Locust for load, hand-made replies in tests) decides how bytes move.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from dataclasses import replace
from functools import partial
from urllib.parse import urlsplit

from cmg_protocol import messages, urlmap
from cmg_protocol.clock import Clock
from cmg_protocol.cms import CmsError
from cmg_protocol.messages import MessageError
from cmg_protocol.policy import PolicyFlags
from harness.client import outcome as oc
from harness.client._content import ContentSteps
from harness.client._exchange import RETRY_BASE_SITE_SECONDS, Failed, Step, shared
from harness.client._tokens import RENEW_SHARE
from harness.client.clientlogs import CCMSETUP, CLIENT_ID_MANAGER, LOCATION_SERVICES, ClientLog
from harness.client.device import DeviceProfile, SmsSigningIdentity
from harness.client.events import (
    STAGE_INSTALL,
    STAGE_POLICY,
    STAGE_REGISTRATION,
    STEP_AAD_INFO,
    STEP_CCMSETUP_CAB,
    STEP_CONTENT_LOCATION,
    STEP_POLICY_ASSIGNMENTS,
    STEP_POLICY_BODY,
    STEP_REGISTRATION,
    STEP_SITE_INFO,
    Action,
    Done,
    LifecycleError,
    Reply,
    Request,
    Response,
    SiteEndpoints,
    TransportError,
    Wait,
    classify,
)
from harness.client.outcome import Outcome

__all__ = ["RENEW_SHARE", "RETRY_BASE_SITE_SECONDS", "Lifecycle"]

CLIENT_VERSION = "5.00.8968.1000"
CLIENT_PRODUCT_CODE = "{66653948-0717-4D50-B0B9-ED66FDED2DDB}"
AAD_AUTH_INFO_NAME = f"/{urlmap.SERVER_AUTH}/{urlmap.AAD_AUTH_INFO}"

_SUCCESS = Outcome(success=True)


class Lifecycle(ContentSteps):
    """A device's life: call :meth:`next_request`, act on it, :meth:`feed` the reply to a Request, until Done."""

    __slots__ = ("_action", "_gen", "_polls", "_seen", "_seen_reply", "polls_done")

    def __init__(self, profile: DeviceProfile, site: SiteEndpoints, *, clock: Clock, rng: random.Random,
                 log: ClientLog | None = None, polls: int | None = 1, attempts: int = 3, trail: bool = True) -> None:
        if polls is not None and polls < 0:
            raise LifecycleError(f"polls must be >= 0 or None (poll forever), got {polls!r}")
        if attempts < 1:
            raise LifecycleError(f"attempts must be >= 1, got {attempts!r}")
        super().__init__(profile, site, clock=clock, rng=rng, log=log, attempts=attempts, trail=trail)
        self._init_tokens()
        self._polls = polls
        self._gen: Step | None = None
        self._action: Action | None = None
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
        except Failed as failed:
            self._finish(failed.outcome)

    def _finish(self, outcome: Outcome) -> None:
        if self._trail:
            outcome = replace(outcome, trail=tuple(self._trail))
        self._action = Done(outcome)
        self._gen = None  # the finished life keeps no frame and no trail
        self._trail = None

    # ------------------------------------------------------------------------------------------------ the life
    def _life(self) -> Step:
        if self.profile.pki_client_cert:
            yield from self._install_pki()
        elif self.profile.takes_token_path:
            yield from self._install_token()
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
            except Failed as failed:
                # A failed cycle is retried on the next one, as the client agent does; the last cycle decides.
                result = failed.outcome
            self.polls_done += 1
            if polls is None or self.polls_done < polls:
                yield Wait(started + interval)
        return result

    def _install_entra(self) -> Step:
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

    def _install_token(self) -> Step:
        # Neither Entra nor PKI: ccmsetup was given a bulk registration token; no AADAuthInfo, no Entra, no CCM_STS.
        if not self.site.bulk_token:
            self._fail_local(oc.CMG_401, STEP_SITE_INFO, STAGE_INSTALL,
                             "the device installs with a bulk registration token, but ccmsetup was given none")
        yield from self._ccm_token(STAGE_INSTALL, CCMSETUP)
        yield from self._locate_and_download(mutual=False)

    def _install_pki(self) -> Step:
        # A valid PKI client-auth certificate always wins: no AADAuthInfo, no Entra token, MutualAuth throughout.
        self._write(CCMSETUP, "Client authentication certificate found; installing as a PKI client")  # synthetic
        yield from self._locate_and_download(mutual=True)

    def _locate_and_download(self, *, mutual: bool) -> Step:
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
        yield from self._download(url, mutual=mutual)
        self._write(CCMSETUP, f"Installing version {CLIENT_VERSION} of the client with product code "
                              f"{CLIENT_PRODUCT_CODE}")
        self._write(CCMSETUP, "Running installation package")
        if self._log is not None:
            self._write(CCMSETUP, f"Package:     C:\\WINDOWS\\ccmsetup\\{self._new_id()}\\client.msi")

    def _register(self) -> Step:
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
            elif p.takes_token_path:
                self._write(CLIENT_ID_MANAGER, "Registering client using the bulk registration token.")  # synthetic
            else:
                self._write(CLIENT_ID_MANAGER, "Registering client using AAD auth.")
                # Registration asks for a new Entra token (the walk-through); a retry reuses it while it is valid.
                if attempt == 1 or self._clock() >= self._entra_expires:
                    yield from self._entra_token(STAGE_REGISTRATION)
            if not pki:
                # The CCM token rides in Authorization as on every CcmTokenAuth=1 request: renewed first when due.
                yield from self._fresh_ccm_token()
            request = self._registration_request()
            reply = yield request
            reason = classify(request.step, reply)
            self._note(request, reply, reason)
            if reason is None:
                assert isinstance(reply, Response)
                response = self._decode(reply, messages.RegistrationResponse, STEP_REGISTRATION, STAGE_REGISTRATION)
                if response.status == messages.RegistrationStatus.OK and response.smsid:
                    self._smsid = response.smsid
                    break
                if response.status == messages.RegistrationStatus.REJECTED:
                    self._fail(oc.REGISTRATION_REJECTED, request, reply, detail="the MP rejected the registration")
                reason = oc.REGISTRATION_REJECTED  # pending or "resend": try again, and give up as rejected
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
        # Registration carries the CCM token like every request on this path, and the fresh Entra token beside it in
        # X-CCM-AAD-Token (our choice; the real carrier is not public): the CMG takes no Entra token here.
        request = self._ccm_post(STEP_REGISTRATION, STAGE_REGISTRATION, "MP_ClientRegistration", body_xml,
                                 mutual=False, aad_token=self._entra)
        self._write(CLIENT_ID_MANAGER, f"Sending registration request to '{site.server_base.split('://', 1)[1]}'")
        return request

    def _poll_once(self) -> Step:
        p, site = self.profile, self.site
        mutual = p.pki_client_cert
        if self._entra and self._clock() >= self._entra_expires:
            self._entra = ""  # never sent again once expired: a kilobyte less for every waiting device
        body_xml = messages.RequestAssignments(client_id=self._smsid, fqdn=p.fq_name, netbios_name=p.netbios_name,
                                               sid=p.machine_sid, site_code=site.site_code).to_xml()
        reply = yield from self._message(STEP_POLICY_ASSIGNMENTS, STAGE_POLICY, "MP_PolicyManager", body_xml,
                                         mutual=mutual, sync_log=True, signed=True)
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
            flags = assignment.policy_flags
            signed = bool(flags & (PolicyFlags.REQUIRESAUTH | PolicyFlags.SECRET))
            build = partial(self._policy_body_request, url, urlsplit(url).path, mutual, signed)
            if mutual:
                reply = yield from self._exchange(build, retries=False)
            else:
                reply = yield from self._ccm_exchange(build, STAGE_POLICY, retries=False)
            body = self._read_policy_body(reply.body, url, secret=bool(flags & PolicyFlags.SECRET))
            if body.policy_id != assignment.policy_id:
                self._fail_reply(STEP_POLICY_BODY, STAGE_POLICY, f"asked for policy {assignment.policy_id}, got "
                                                                 f"{body.policy_id}")
            seen.add(key)
        self._seen = shared(tuple(sorted(seen)))
        self._seen_reply = assignments


    def _message(self, step: str, stage: str, endpoint: str, body_xml: str, *, mutual: bool,
                 sync_log: bool = False, signed: bool = False) -> Step:
        def build() -> Request:
            return self._ccm_post(step, stage, endpoint, body_xml, mutual=mutual, sync_log=sync_log, signed=signed)

        retries = stage != STAGE_POLICY  # a failed poll waits for the next cycle
        if mutual:
            return (yield from self._exchange(build, retries=retries))
        return (yield from self._ccm_exchange(build, stage, retries=retries))


    def _policy_body_request(self, url: str, name: str, mutual: bool, signed: bool) -> Request:
        if mutual:
            request = Request("GET", url, {}, b"", name, STAGE_POLICY, STEP_POLICY_BODY, client_cert=True)
        else:
            request = self._get(url, name, STAGE_POLICY, STEP_POLICY_BODY)
        if signed:
            request.headers.update(SmsSigningIdentity.shared().client_token_headers(self._smsid,
                                                                                    self._clock() + self._skew))
        return request

    def _read_policy_body(self, data: bytes, url: str, *, secret: bool) -> messages.PolicyBody:
        """A downloaded policy: checked against the hash its URL names, decrypted when secret, parsed."""
        _, _, tail = urlsplit(url).query.rpartition(".")
        if tail.upper().startswith("SHA256:") and hashlib.sha256(data).hexdigest().upper() != tail[7:].upper():
            self._fail_reply(STEP_POLICY_BODY, STAGE_POLICY, "policy body does not match the SHA-256 its URL names")
        try:
            if secret:
                data = b"\xff\xfe" + SmsSigningIdentity.shared().decrypt(data)
            return messages.PolicyBody.from_bytes(data)
        except (CmsError, MessageError) as exc:
            return self._fail_reply(STEP_POLICY_BODY, STAGE_POLICY, f"policy body unreadable: {exc}")


