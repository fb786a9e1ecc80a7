"""The request/reply plumbing of a lifecycle: building CCM messages, retrying, reading replies, failing steps.

:class:`ExchangeBase` holds what every part of a life needs to talk to the site; the token steps (``_tokens``) and the
life itself (``lifecycle``) build on it. Nothing here does I/O: requests are yielded, replies are sent back in.
"""

from __future__ import annotations

import random
import time
from collections.abc import Generator
from typing import Any

from cmg_protocol import envelope, messages
from cmg_protocol.clock import Clock
from cmg_protocol.envelope import EnvelopeError, MessageHeader
from cmg_protocol.messages import MessageError
from cmg_protocol.registration import AAD_TOKEN_HEADER
from harness.client import outcome as oc
from harness.client.clientlogs import (
    ADAL,
    CCM_MESSAGING,
    CCMSETUP,
    CLIENT_ID_MANAGER,
    ERROR,
    ClientLog,
    ccmhttp_error_lines,
    connection_lines,
)
from harness.client.device import SYSTEM_SID, DeviceProfile, SmsSigningIdentity
from harness.client.events import (
    STAGE_INSTALL,
    STAGE_REGISTRATION,
    STEP_ENTRA_TOKEN,
    STEP_POLICY_ASSIGNMENTS,
    Reply,
    Request,
    Response,
    SiteEndpoints,
    Wait,
    classify,
    error_code_of,
)
from harness.client.outcome import Outcome, TrailEntry

#: First retry after one site minute, doubling per attempt (ours: ccmsetup's real schedule is not public).
RETRY_BASE_SITE_SECONDS = 60.0

Step = Generator[Request | Wait, Any, Any]
"""What a step generator yields (requests, waits), is sent (replies) and returns."""

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


def shared(value: tuple[str, ...]) -> tuple[str, ...]:
    """One tuple object per distinct value, so 100,000 devices holding the same policy keys hold one tuple."""
    found = _shared_values.get(value)
    if found is None:
        if len(_shared_values) >= _SHARED_LIMIT:
            _shared_values.clear()
        _shared_values[value] = found = value
    return found


class Failed(Exception):
    """Unwinds the life from a failed step to its end, carrying the outcome."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


class ExchangeBase:
    """Sending requests and reading replies for one device; the state every step shares."""

    __slots__ = ("_attempts", "_ccm", "_clock", "_log", "_rng", "_smsid", "_trail", "profile", "site")

    def __init__(self, profile: DeviceProfile, site: SiteEndpoints, *, clock: Clock, rng: random.Random,
                 log: ClientLog | None, attempts: int, trail: bool) -> None:
        self.profile = profile
        self.site = site
        self._clock = clock
        self._rng = rng
        self._log = log
        self._attempts = attempts
        self._trail: list[TrailEntry] | None = [] if trail else None
        self._smsid = ""
        self._ccm = ""  # the CCM token requests carry (kept by the token steps)

    def _send(self, build: Any, *, retries: bool = True) -> Step:
        """Send ``build()``; transient failures are tried again after a back-off; returns (request, reply, reason)."""
        attempt = 1
        while True:
            request = build()
            reply = yield request
            reason = classify(request.step, reply)
            self._note(request, reply, reason)
            if reason is None or not retries or reason not in oc.TRANSIENT_REASONS or attempt >= self._attempts:
                return request, reply, reason
            yield Wait(self._clock() + self._backoff(attempt))
            attempt += 1

    def _exchange(self, build: Any, *, retries: bool = True) -> Step:
        """Like :meth:`_send`, but a failure ends the step; returns the successful reply."""
        request, reply, reason = yield from self._send(build, retries=retries)
        if reason is not None:
            self._fail(reason, request, reply)
        return reply

    def _ccm_post(self, step: str, stage: str, endpoint: str, body_xml: str, *, mutual: bool, bearer: str | None = None,
                  aad_token: str | None = None, sync_log: bool = False, signed: bool = False) -> Request:
        """A CCM_POST of ``body_xml`` to ``endpoint``: MutualAuth with the client certificate, else the bearer token
        (and, for registration, the Entra token in its own header); ``signed`` adds the clientauth hook."""
        site, p = self.site, self.profile
        message_id = self._new_id()
        client_auth: tuple[tuple[str, str], ...] = ()
        if signed:
            payload = envelope.encoded_body(body_xml, True)[1]
            client_auth = SmsSigningIdentity.shared().clientauth(self._smsid, payload, p.netbios_name)
        header = MessageHeader(target_endpoint=endpoint, source_id=self._smsid, source_host=p.netbios_name,
                               target_host=site.host, message_id=message_id, sent_time=self._sent_time(),
                               client_auth=client_auth)
        headers = {"Content-Type": envelope.CONTENT_TYPE, "User-Agent": envelope.USER_AGENT}
        path = site.system_path if mutual else site.tokenauth_path
        if not mutual:
            headers["Authorization"] = "Bearer " + (self._ccm if bearer is None else bearer)
            if aad_token:
                headers[AAD_TOKEN_HEADER] = aad_token
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

    def _get(self, url: str, name: str, stage: str, step: str) -> Request:
        """A GET carrying the CCM token."""
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

    def _note(self, request: Request, reply: Reply, reason: str | None) -> None:
        """Add the exchange to the trail and, on failure, write the ccmhttp error lines."""
        if self._trail is not None:
            status = reply.status if type(reply) is Response else None
            self._trail.append(TrailEntry(request.step, request.name, status, round(reply.ms, 1), reason or "ok"))
        if reason is None or self._log is None:
            return
        file = _log_file(request.stage, request.step)
        for text in ccmhttp_error_lines(request.url, reply):
            self._write(file, text, ERROR)

    def _fail(self, reason: str, request: Request, reply: Reply, *, detail: str = "") -> Any:
        """End the step (and, outside a poll cycle, the life) with ``reason`` for this exchange."""
        if not detail:
            detail = f"HTTP {reply.status} {reply.reason}".rstrip() if isinstance(reply, Response) else reply.detail
        raise Failed(oc.failure(reason, step=request.step, stage=request.stage, detail=detail,
                                 error_code=error_code_of(reply)))

    def _fail_local(self, reason: str, step: str, stage: str, detail: str, *, error_code: int | None = None) -> Any:
        """End the step for a reason found on the device itself (no request was sent)."""
        raise Failed(oc.failure(reason, step=step, stage=stage, detail=detail, error_code=error_code))

    def _fail_reply(self, step: str, stage: str, detail: str) -> Any:
        """End the step because its (successful) reply could not be read."""
        self._fail_step(oc.BAD_REPLY, step, stage, detail)

    def _fail_step(self, reason: str, step: str, stage: str, detail: str, *, error_code: int | None = None) -> Any:
        """End the step for ``reason`` found in its (successful) reply; its trail entry says so too."""
        if self._trail and self._trail[-1].step == step:
            self._trail[-1] = self._trail[-1]._replace(result=reason)
        raise Failed(oc.failure(reason, step=step, stage=stage, detail=detail, error_code=error_code))

    def _write(self, file: str, text: str, type: int = 1) -> None:
        if self._log is not None:
            self._log.write(file, text, type)

    def _connection_line(self, file: str, prefix: str, path: str, *, token_auth: bool, flags: str, options: str,
                         connection: bool = True) -> None:
        if self._log is not None:
            for text in connection_lines(prefix, self.site.host, self.site.port, path, token_auth=token_auth,
                                         flags=flags, options=options, connection=connection,
                                         revocation_check=not self.profile.nocrlcheck):
                self._write(file, text)

    def _backoff(self, attempt: int) -> float:
        return RETRY_BASE_SITE_SECONDS * (2 ** (attempt - 1)) / self.site.time_scale

    def _new_id(self) -> str:
        digits = f"{self._rng.getrandbits(128):032X}"
        return f"{{{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}}}"

    @property
    def _skew(self) -> float:
        """How far the device's clock is off, in real seconds: its skew is ConfigMgr time, compressed like the
        token lifetimes and the validation leeway it is judged against."""
        return self.profile.clock_skew / self.site.time_scale

    def _sent_time(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._clock() + self._skew))


def _log_file(stage: str, step: str) -> str:
    """The client log a step's lines go to: ccmsetup while installing, then the client agent's logs."""
    if stage == STAGE_INSTALL:
        return CCMSETUP
    if step == STEP_ENTRA_TOKEN:
        return ADAL
    return CLIENT_ID_MANAGER if stage == STAGE_REGISTRATION else CCM_MESSAGING
