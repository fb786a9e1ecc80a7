"""The CMG connection point: rewrites the CMG's external URL to the MP's internal URL and forwards over mutual TLS.

It takes work only from the CMG it serves: by default down the TLS channels it opens to every CMG instance
(``mock_site.cp_channel``), where the CMG's server certificate is verified at the handshake; in the direct mode (and
for a CMG-style proxy under test) on its HTTPS listener, which requires a client certificate from the site CA, and a
request whose certificate is not the CMG's identity is refused (``403 CMGConnector_Forbidden``) before anything is read, so
the identity headers the CMG adds cannot come from anyone else. It logs each rewrite and each message to
SMS_CLOUD_PROXYCONNECTOR.log in the shapes of the walk-through, maps failures behind it to the ``CMGConnector_*``
status texts the documentation names, and keeps the per-endpoint traffic report it writes every five minutes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from cmg_protocol import urlmap
from cmg_protocol.ids import guid
from cmg_protocol.statuses import (
    CONNECTOR_BAD_REQUEST,
    CONNECTOR_CLIENT_CERT_REQUIRED,
    CONNECTOR_GATEWAY_TIMEOUT,
    CONNECTOR_INTERNAL_SERVER_ERROR,
    CONNECTOR_NOT_FROM_CMG,
    CONNECTOR_SERVICE_UNAVAILABLE,
    CONNECTOR_UNAUTHORIZED,
)
from cmg_protocol.urlmap import UrlMapError
from mock_site.asgi import BodyTooLarge, HttpRequest, read_body, respond, respond_error
from mock_site.cmg import MAX_BODY_BYTES, REQUEST_URI_HEADER
from mock_site.cp_channel import CHANNEL_SCOPE_KEY
from mock_site.peers import PEER_CMG, peer_role
from mock_site.server import Receive, Scope, Send, client_cert_der
from mock_site.upstream import Upstream, UpstreamError, forwardable

# Documented status texts (docs/faults.md) and the ConfigMgr error code ccmsetup reports with them.
ERROR_CODE_HEADER = "x-ccm-error-code"  # synthetic: not the public ConfigMgr format
CMG_CONNECTOR_ERROR = "0x87d0027e"


class ConnectionPointApp:
    """One CMG connection point as an ASGI app: the CMG forwards to it, it forwards to the MP."""

    role = "cp"

    def __init__(
        self,
        *,
        name: str,
        mp: Upstream,
        mp_public_host: str,
        faults: Any,
        metrics: Any,
        report: Any,
        logs: Any,
        verbose: bool = True,
        perf_counter: Callable[[], float] = time.perf_counter,
        new_message_id: Callable[[], str] | None = None,
    ) -> None:
        self.name = name
        self.mp = mp
        self.mp_public_host = mp_public_host
        self.faults = faults
        self.metrics = metrics
        self.report = report
        self.log = logs.writer("SMS_CLOUD_PROXYCONNECTOR.log") if logs is not None else None
        self.verbose = verbose and self.log is not None
        self.perf_counter = perf_counter
        message_ids = random.Random()
        self.new_message_id: Callable[[], str] = new_message_id or (lambda: guid(message_ids))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        started = self.perf_counter()
        request = HttpRequest.from_scope(scope)
        self.metrics.request_started()
        try:
            await self._handle(request, receive, send, started)
        finally:
            self.metrics.request_finished()

    async def _handle(self, request: HttpRequest, receive: Receive, send: Send, started: float) -> None:
        if not self._from_cmg(request.scope):
            await respond_error(send, 403, CONNECTOR_NOT_FROM_CMG,
                                "the connection point takes work only from its CMG (mutual TLS with its identity)")
            self.metrics.observe_request("unmatched", request.method, 403, 0, 0, self.perf_counter() - started)
            return
        try:
            route = urlmap.match(request.raw_path.decode("latin-1"), request.query)
        except UrlMapError as refused:
            await respond_error(send, refused.status, CONNECTOR_BAD_REQUEST, refused.reason)
            self.metrics.observe_request("unmatched", request.method, refused.status, 0, 0,
                                         self.perf_counter() - started)
            return
        try:
            body = await read_body(receive, min(route.max_body_bytes, MAX_BODY_BYTES))
        except BodyTooLarge as too_large:
            await respond_error(send, 413, CONNECTOR_BAD_REQUEST, f"body over {too_large.limit} bytes")
            self.metrics.observe_request(route.route_template, request.method, 413, 0, 0,
                                         self.perf_counter() - started)
            return
        has_bearer = request.bearer_token() is not None
        record = self.report.begin(route.endpoint, has_bearer, len(body))
        status, response_bytes = 0, 0
        try:
            status, response_bytes = await self._forward(route, request, body, send)
        finally:
            record.end(response_bytes, failed=status == 0 or status >= 400)
            self.metrics.observe_request(route.route_template, request.method, status or 499, len(body),
                                         response_bytes, self.perf_counter() - started)

    @staticmethod
    def _from_cmg(scope: Scope) -> bool:
        """Whether the CMG sent this: down the channel the CP opened to it (the CMG's server certificate was verified
        at the handshake), or over HTTPS with the CMG's identity as the client certificate."""
        if CHANNEL_SCOPE_KEY in scope.get("extensions", {}):
            return True
        return peer_role(client_cert_der(scope)) == PEER_CMG

    async def _forward(self, route: urlmap.Route, request: HttpRequest, body: bytes, send: Send) -> tuple[int, int]:
        # The CP checks the revocation of its own client-auth certificate before it can talk to the MP.
        if self.faults.trigger("cp_cert_revocation_offline", self.role) is not None:
            await respond_error(send, 403, CONNECTOR_CLIENT_CERT_REQUIRED, f"error {CMG_CONNECTOR_ERROR}")
            return 403, 0
        if route.endpoint == urlmap.CCM_STS and self.faults.trigger("sts_unavailable", self.role) is not None:
            await self._error(send, 401, CONNECTOR_UNAUTHORIZED)
            return 401, 0

        external = request.header(REQUEST_URI_HEADER) or f"https://cmg{request.path}"
        internal = f"https://{self.mp_public_host}{route.internal_path}"
        if self.verbose:
            assert self.log is not None
            # The walk-through's line, down to the third slash in the result it prints.
            self.log.info(f"Switched to internal URL. Replaced '{external}' in   '{external}' with '{internal}' and got "
                          f"'https:///{self.mp_public_host}{route.internal_path}")
        message_id = self.new_message_id()
        if self.verbose:
            assert self.log is not None
            self.log.info(f"Forwarding proxy message {message_id} to URL: {internal}")
        started = self.perf_counter()
        headers = forwardable(request.headers)
        try:
            answer = await self.mp.request(request.method, route.internal_path, headers, body)
        except UpstreamError as failed:
            self.metrics.forward_error("mp", failed.kind)
            if self.log is not None:
                self.log.error(f"Web exception for message {message_id}: failed to forward {internal} to the "
                               f"management point: {failed.detail}")
            if failed.kind == "timeout":
                await self._error(send, 504, CONNECTOR_GATEWAY_TIMEOUT)
                return 504, 0
            await self._error(send, 503, CONNECTOR_SERVICE_UNAVAILABLE)
            return 503, 0
        elapsed_ms = round((self.perf_counter() - started) * 1000)
        if self.verbose:
            assert self.log is not None
            phrase = answer.reason or ""
            self.log.info(f"Received response {internal} for message {message_id}: HTTP/1.1 {answer.status} {phrase}")
            self.log.info(f"MessageID: {message_id} RequestURI: {internal} EndpointName: {route.endpoint} "
                          f"ResponseHeader: HTTP/1.1 {answer.status} {phrase} ~~ ResponseBodySize: {len(answer.body)} "
                          f"ElapsedTime: {elapsed_ms} ms")
        if answer.status >= 500 and route.endpoint == "CCM_STS":
            await self._error(send, 500, CONNECTOR_INTERNAL_SERVER_ERROR)
            return 500, 0
        passed = [(k, v) for k, v in answer.headers.items() if k in ("x-cmg-status-text", ERROR_CODE_HEADER)]
        await respond(send, answer.status, answer.body,
                      content_type=answer.headers.get("content-type", "application/octet-stream"),
                      headers=passed, reason=answer.reason or None)
        return answer.status, len(answer.body)

    async def _error(self, send: Send, status: int, status_text: str) -> None:
        await respond(send, status, f"{status_text}: error {CMG_CONNECTOR_ERROR}".encode(), reason=status_text,
                      headers=[("x-cmg-status-text", status_text), (ERROR_CODE_HEADER, CMG_CONNECTOR_ERROR)])
