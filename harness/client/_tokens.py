"""How a simulated client gets and keeps its tokens: Entra ID through WAM (device, else user), CCM tokens from CCM_STS.

The CCM token is renewed before any request that carries it once it is expired or in its last 10 % of life (never
closer than 1.5 real seconds to its end, so compressed time cannot make it expire in flight), and once
more when the CMG refuses it with ``CMGService_Invalid_Token``; a new Entra token is asked for only when the cached one
has expired.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from cmg_protocol.site_tokens import ClientTokenReply, ClientTokenRequest
from cmg_protocol.statuses import INVALID_TOKEN
from cmg_protocol.sts_request import CONTENT_TYPE as STS_CONTENT_TYPE
from cmg_protocol.sts_request import StsRequest
from harness.client import outcome as oc
from harness.client._exchange import ExchangeBase, Step
from harness.client.clientlogs import ADAL, CCM_MESSAGING, CCMSETUP, ERROR, WARNING, log_time, wam_failure_lines
from harness.client.device import SYSTEM_SID, WAM_DEVICE_FAILS_800703F0, WAM_OK, WAM_USER_FAILS_TOO
from harness.client.events import (
    STAGE_INSTALL,
    STAGE_RENEWAL,
    STEP_CCM_TOKEN,
    STEP_ENTRA_TOKEN,
    STEP_SITE_TOKEN,
    Request,
    Response,
    error_code_of,
)

#: Renew the CCM token once less than this share of its life is left (ours: the real margin is not public).
RENEW_SHARE = 0.1
#: ... and never later than this many real seconds before it ends (at most half its life). Under compressed time a
#: tenth of a token's life can be shorter than one request takes (an Entra hour at 1200x lasts 3 s, its tenth 0.3 s),
#: and a token would then expire in flight behind a slow MP — a failure no real device, with minutes of margin, has.
RENEW_FLOOR_SECONDS = 1.5


def renew_after(lifetime: float) -> float:
    """Seconds after its issue at which a token living ``lifetime`` seconds is renewed: in its last tenth, but at least
    :data:`RENEW_FLOOR_SECONDS` (at most half its life) before it ends."""
    margin = max(lifetime * RENEW_SHARE, min(RENEW_FLOOR_SECONDS, lifetime / 2))
    return lifetime - margin
DEVICE_GRANT = "device_token"  # synthetic: not the public ConfigMgr format (WAM's device grant is not public)
USER_GRANT = "user_token"  # synthetic: not the public ConfigMgr format
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
#: The client version the token request names (lifecycle.CLIENT_VERSION; lifecycle imports this module).
AGENT_VERSION = "5.00.8968.1000"


class TokenSteps(ExchangeBase):
    """The token steps of a life, and requests that carry the CCM token."""

    __slots__ = ("_aad_app", "_aad_resource", "_ccm_expires", "_ccm_renew_at", "_entra", "_entra_expires")

    def _init_tokens(self) -> None:
        self._aad_app = self._aad_resource = ""
        self._entra = ""
        self._entra_expires = self._ccm_renew_at = self._ccm_expires = 0.0

    def _entra_token(self, stage: str) -> Step:
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
                    f"&device_id={p.device_id}&device_time={self._clock() + self._skew:.3f}")
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
        # Like WAM's cache, a token near its end is not handed out again: renewed in its last tenth, as the CCM token.
        self._entra_expires = self._clock() + renew_after(lifetime)
        self._write(file, f"Retrieved AAD token for AAD {'user' if user else 'device'} "
                          f"'{p.user_oid if user else p.device_id}'")

    def _token_line(self, kind: str, account: str) -> str:
        return (f"Getting AAD ({kind}) token with: ClientId = {self._aad_app}, ResourceUrl = {self._aad_resource}, "
                f"AccountId = {account}")

    def _wam_failure(self, file: str, code: int, account: str) -> None:
        for text in wam_failure_lines(code, account):
            self._write(file, text, ERROR)

    def _ccm_token(self, stage: str, file: str) -> Step:
        if self.profile.takes_token_path:
            return (yield from self._site_token(stage, file))
        site = self.site
        if not self._entra or self._clock() >= self._entra_expires:
            yield from self._entra_token(stage)
        self._write(file, f"Getting CCM Token from STS server '{site.server_base.split('://', 1)[1]}'")
        sts_url = site.url(site.sts_path)
        self._write(file, f"Getting CCM Token from {sts_url}")
        request, reply, reason = yield from self._send(
            lambda: Request("POST", sts_url, {"Authorization": "Bearer " + self._entra,
                                              "Content-Type": STS_CONTENT_TYPE}, self._sts_body(), site.sts_path,
                            stage, STEP_CCM_TOKEN))
        if reason is not None:
            if error_code_of(reply) == oc.E_CMG_CONNECTOR:
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
        self._ccm_renew_at = now + renew_after(lifetime)
        if self._log is not None:
            self._write(file, f"Cached encrypted token for '{SYSTEM_SID}'. Will expire at "
                              f"'{log_time(self._ccm_expires + self._skew)}'")

    def _site_token(self, stage: str, file: str) -> Step:
        """A token-authenticated device's token: the bulk registration token until it is registered, then its
        client-unique token from MP_TokenManager (asked for with the token it holds), renewed when the site says."""
        site = self.site
        if not self._smsid:
            # A bulk token cannot be renewed by the device: after a refusal it is sent again once and refused again.
            self._write(file, "Using the bulk registration token given to ccmsetup (/regtoken)")  # synthetic wording
            self._ccm, self._ccm_renew_at = site.bulk_token, float("inf")
            return
        body_xml = ClientTokenRequest(smsid=self._smsid).to_xml()
        held = self._ccm
        request, reply, reason = yield from self._send(
            lambda: self._ccm_post(STEP_SITE_TOKEN, stage, "MP_TokenManager", body_xml, mutual=False, bearer=held))
        if reason is not None:
            self._fail(reason, request, reply)
        assert isinstance(reply, Response)
        answer = self._decode(reply, ClientTokenReply, STEP_SITE_TOKEN, stage)
        self._ccm, self._ccm_renew_at = answer.token, float(answer.renew_at)
        self._ccm_expires = float(answer.renew_at)
        self._write(file, f"Received the client-unique token; renewal due at "  # synthetic wording
                          f"'{log_time(self._ccm_renew_at + self._skew)}'")

    def _sts_body(self) -> bytes:
        """The token request body, asserting the Entra token the request carries (built with each attempt)."""
        return StsRequest(assertion=self._entra, client_id=self._smsid, agent_version=AGENT_VERSION,
                          client_host=self.profile.fq_name).to_body()

    def _fresh_ccm_token(self) -> Step:
        """Renew the CCM token before a request when it is expired or in its last 10 % of life."""
        if self._clock() < self._ccm_renew_at:
            return
        if self._log is not None:
            self._write(CCM_MESSAGING, f"CCM Token for '{SYSTEM_SID}' "
                                       f"({log_time(self._ccm_expires + self._skew)}) is already expired "
                                       f"or close to expire")
        yield from self._ccm_token(STAGE_RENEWAL, CCM_MESSAGING)

    def _ccm_exchange(self, build: Any, stage: str, *, retries: bool = True) -> Step:
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


@lru_cache(maxsize=64)
def _quoted(value: str) -> str:
    return quote(value, safe="")
