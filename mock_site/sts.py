"""CCM_STS, the management point's token service: an Entra token in, a CCM token out.

The behaviour is documented (the MP validates the Entra token, looks the device up in the site database and issues a
CCM token that lives 8 hours); the bytes are ours: ``POST /CCM_STS`` with ``Authorization: Bearer <entra token>``,
answered with a small JSON document holding the CCM token.
"""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

from cmg_protocol import tokens
from cmg_protocol.clock import Clock
from cmg_protocol.ids import guid
from cmg_protocol.sts_request import StsRequest, StsRequestError
from mock_site.asgi import HttpRequest, respond
from mock_site.config import SiteConfig
from mock_site.server import Send
from mock_site.token_checks import EntraTokenVerifier

ALL_ZEROS = "00000000-0000-0000-0000-000000000000"


class StsError(Exception):
    """The ``sts_error`` fault: CCM_STS throws while handling the request."""


class CcmSts:
    """Validates Entra tokens and issues CCM tokens, logging to CCM_STS.log as the walk-through shows."""

    role = "sts"

    def __init__(self, *, config: SiteConfig, verifier: EntraTokenVerifier, signing_key: Any, signing_kid: str,
                 db: Any, faults: Any, metrics: Any, logs: Any, clock: Clock, mp_public_host: str,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.verifier = verifier
        self.signing_key = signing_key
        self.signing_kid = signing_kid
        self.db = db
        self.faults = faults
        self.metrics = metrics
        self.log = logs.writer("CCM_STS.log") if logs is not None else None
        self.clock = clock
        self.mp_public_host = mp_public_host
        # Token ids come from the injected generator, so the id is known without decoding the token just signed.
        self._ids = random.Random(rng.getrandbits(64) if rng is not None else None)

    def _info(self, text: str) -> None:
        if self.log is not None:
            self.log.info(text)

    def lifetime(self) -> float:
        """Real seconds a new CCM token lives: 8 h scaled, or the ``ccm_token_lifetime`` fault's value."""
        fault = self.faults.trigger("ccm_token_lifetime", self.role)
        if fault is not None:
            return float(fault.params["seconds"])
        return self.config.scaled(self.config.ccm_token_lifetime_site_seconds)

    async def handle(self, request: HttpRequest, send: Send, body: bytes = b"") -> None:
        """Answer one token request; ``body``, when there is one, must be the token request form (see
        :mod:`cmg_protocol.sts_request`) asserting the same Entra token as the ``Authorization`` header."""
        self._info("ProcessRequest - Start")
        self._info(f"Incoming request URL: https://{self.mp_public_host}/CCM_STS")
        if self.faults.trigger("sts_error", self.role) is not None:
            if self.log is not None:
                self.log.error("ProcessRequest - unhandled exception while issuing the token (fault sts_error)")
            raise StsError("CCM_STS failed (fault sts_error)")
        token = request.bearer_token()
        if token is None:
            await self._refuse(send, "IDX12741", "no bearer token in the request")
            return
        if body:
            try:
                asked = StsRequest.from_body(body)
            except StsRequestError as bad:
                await self._bad_request(send, str(bad))
                return
            if asked.assertion != token:
                await self._bad_request(send, "the assertion is not the bearer token of the request")
                return
        try:
            claims = await self.verifier.verify(token)
        except tokens.TokenRejected as rejected:
            self.metrics.token_rejected(rejected.kind)
            await self._refuse(send, rejected.code, rejected.reason)
            return

        fault = self.faults.trigger("tenant_not_onboarded", self.role)
        if fault is not None and fault.params.get("tenant_id") in (None, "", claims["tid"]):
            self.metrics.token_rejected("tenant")
            await self._refuse(send, "IDX10205", f"tenant {claims['tid']} is not onboarded (fault tenant_not_onboarded)")
            return

        token_type = claims.get("token_type") or ("Device" if not claims.get("oid") else "UDA")
        user_id = claims.get("oid") if token_type == "UDA" else ALL_ZEROS
        device_id = claims.get("deviceid", "")
        tenant_id = claims["tid"]
        self._info(f"Validated AAD token. TokenType: {token_type} TenantId: {tenant_id} UserId: {user_id} "
                   f"DeviceId: {device_id} OnPrem_UserSid: {claims.get('onprem_sid', '')} OnPrem_DeviceSid: ")
        self._info(f"TokenType is {token_type}")

        registered = self.db.client_by_device(tenant_id, device_id) if device_id else None
        smsid = registered.smsid if registered is not None else ""
        now = self.clock()
        lifetime = self.lifetime()
        if self.faults.trigger("ccm_token_expired", self.role) is not None:
            # Issued already expired: backdated so that it ended a minute beyond the validation leeway.
            now -= lifetime + self.config.scaled(self.config.token_leeway_site_seconds) + 60.0
        site_user_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant_id}/{user_id}"))
        subject = str(device_id or user_id or "")
        ccm_device_id = smsid or f"GUID:{str(uuid.uuid5(uuid.NAMESPACE_URL, subject)).upper()}"
        jti = guid(self._ids)
        ccm_token = tokens.issue_ccm_token(
            key=self.signing_key, kid=self.signing_kid, hierarchy_id=self.config.hierarchy_id, token_type=token_type,
            device_id=ccm_device_id, user_id=site_user_id, tenant_id=tenant_id, smsid=smsid, now=now,
            lifetime=lifetime, jti=jti,
        )
        self._info(f"Created SCCM token, token type: {token_type}, hierarchyId: {self.config.hierarchy_id}, "
                   f"userId: {site_user_id}, deviceId: {ccm_device_id}")
        self.db.record_token(jti, smsid or device_id, token_type, now, now + lifetime)
        self.metrics.token_issued("ccm")
        self._info("Issued token")
        # synthetic: not the public ConfigMgr format (the reply body)
        body = json.dumps({"token": ccm_token, "token_type": token_type, "expires_in": lifetime,
                           "expires_at": now + lifetime}).encode()
        self._info("Return token to client")
        await respond(send, 200, body, content_type="application/json")

    async def _bad_request(self, send: Send, reason: str) -> None:
        if self.log is not None:
            self.log.error(f"ProcessRequest - invalid token request: {reason}")
        # synthetic: not the public ConfigMgr format (the OAuth error body)
        body = json.dumps({"error": "invalid_request", "error_description": reason}).encode()
        await respond(send, 400, body, content_type="application/json", reason="Bad Request")

    async def _refuse(self, send: Send, code: str, reason: str) -> None:
        if self.log is not None:
            self.log.error(f"PreAuth token validation failed. {code}: {reason}")
        await respond(send, 401, f"{code}: {reason}".encode(), reason="Unauthorized",
                      headers=[("www-authenticate", f'Bearer error="invalid_token", error_description="{code}"')])
