"""The cloud management gateway: the published URL map, token and certificate checks, forwarding to connection points.

What the real CMG does and this one reproduces: it forwards only paths in its URL map, checks content length per
endpoint, does not forward a request that carries an invalid token (``401 CMGService_Invalid_Token``) — an Entra token
counts as invalid everywhere but on the token service (CCM_STS), where nothing else is taken — answers
``AADAuthInfo`` for onboarded tenants, spreads requests round-robin over its connection points, serves content from its
storage when it is content-enabled (``getcontentxmlsecure`` answers with a short-lived signed URL on the storage
endpoint, :mod:`mock_site.storage`), and keeps the CMGService.log traffic statistics per request URI.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cmg_protocol import storage_urls, tokens, urlmap
from cmg_protocol.clock import Clock
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
from cmg_protocol.storage_urls import ContentXml, UrlSigner
from cmg_protocol.urlmap import AuthKind, Route, UrlMapError
from mock_site.asgi import BodyTooLarge, HttpRequest, Meter, read_body, respond, respond_error
from mock_site.server import Receive, Scope, Send, absolute_form_target, client_cert_der
from mock_site.site_tokens import SiteTokenVerifier
from mock_site.token_checks import CcmTokenVerifier, EntraTokenVerifier
from mock_site.upstream import ChannelUpstream, RoundRobin, UpstreamError, forwardable

log = logging.getLogger("mock_site.cmg")

# Status texts the CMG answers with. The first is documented; the others are ours, in the same style.

#: Upper bound on any request body at the CMG, whatever the endpoint (the URL map sets tighter limits per endpoint).
MAX_BODY_BYTES = 4 * 1024 * 1024

#: Header the CMG uses to tell the connection point which client certificate it validated. The CMG strips any
#: incoming header of that name, so a client cannot claim a certificate it did not present.
CLIENT_CERT_HEADER = "x-cmg-client-cert"  # synthetic: not the public ConfigMgr format
REQUEST_URI_HEADER = "x-cmg-request-uri"  # synthetic: not the public ConfigMgr format
#: The content type of getcontentxmlsecure's XML answer.
CONTENT_XML_TYPE = "text/xml; charset=utf-8"
#: How long a signed storage URL is valid, in real seconds: the client downloads at once, so this is a download window,
#: not a site duration, and is not time-scaled (a scaled hour at --time-scale 1200 would be 3 s, less than a slow GET).
URL_LIFETIME_SECONDS = 600.0
#: How far before its issue a signed URL starts to be valid (storage and CMG clocks differ a little).
URL_START_BACKDATE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class ContentStorage:
    """The content-enabled CMG's storage as its CMG instances see it: where it is and how to sign URLs for it."""

    base_url: str
    signer: UrlSigner
    tenant_id: str
    lifetime: float = URL_LIFETIME_SECONDS


@dataclass(frozen=True, slots=True)
class AadTenant:
    """What AADAuthInfo hands out for an onboarded tenant."""

    tenant_id: str
    client_app_id: str
    resource_uri: str


#: What ``/CCM_Proxy_*/ServiceMetadata`` answers a client checking the CMG's certificate and its credential (the
#: proxies under test answer the same).
# synthetic: not the public ConfigMgr format (the body; the endpoint and its 401 for a bad token are documented)
SERVICE_METADATA_XML = '<ServiceMetadata Service="CMG" Version="1.0"/>'


class ContentStore:
    """Synthetic content in the content-enabled CMG's cloud storage: deterministic bytes per package and size."""

    def __init__(self, size_bytes: int) -> None:
        self.size_bytes = size_bytes
        self._cache: dict[str, bytes] = {}
        self._digests: dict[str, str] = {}

    def sha256(self, package_id: str, content_id: str) -> str:
        """The upper-case hex SHA-256 of the content (what the content XML announces), computed once per item."""
        key = f"{package_id}/{content_id}"
        digest = self._digests.get(key)
        if digest is None:
            digest = hashlib.sha256(self.content(package_id, content_id)).hexdigest().upper()
            if len(self._digests) < 4096:
                self._digests[key] = digest
        return digest

    def content(self, package_id: str, content_id: str) -> bytes:
        key = f"{package_id}/{content_id}"
        blob = self._cache.get(key)
        if blob is None:
            seed = hashlib.sha256(key.encode()).digest()
            blob = (seed * (self.size_bytes // len(seed) + 1))[: self.size_bytes]
            if len(self._cache) < 64:
                self._cache[key] = blob
        return blob


class CmgApp:
    """One CMG VM instance as an ASGI app."""

    role = "cmg"

    def __init__(
        self,
        *,
        instance: int,
        public_host: str,
        connection_points: RoundRobin,
        ccm_verifier: CcmTokenVerifier | SiteTokenVerifier,
        entra_verifier: EntraTokenVerifier,
        tenants: Callable[[], Mapping[str, AadTenant]],
        faults: Any,
        metrics: Any,
        stats: Any,
        logs: Any,
        content: ContentStore,
        clock: Clock,
        perf_counter: Callable[[], float] = time.perf_counter,
        storage: ContentStorage | None = None,
    ) -> None:
        self.instance = instance
        self.public_host = public_host
        self.connection_points = connection_points
        self.ccm_verifier = ccm_verifier
        self.entra_verifier = entra_verifier
        self.tenants = tenants
        self.faults = faults
        self.metrics = metrics
        self.stats = stats
        self.log = logs.writer("CMGService.log") if logs is not None else None
        self.content = content
        self.clock = clock
        self.perf_counter = perf_counter
        #: Where content is downloaded from; None: the CMG serves the bytes itself (no storage endpoint).
        self.storage = storage

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        started = self.perf_counter()
        request = HttpRequest.from_scope(scope)
        self.metrics.request_started()
        meter = Meter(send)
        route: Route | None = None
        try:
            if absolute_form_target(scope):
                raise UrlMapError(400, "the request target names a host; the CMG is not a forward proxy")
            # The raw path: the server has already decoded %2F into '/', which must not move a segment boundary.
            route = urlmap.match(request.raw_path.decode("latin-1"), request.query)
            await self._handle(route, request, receive, meter)
        except UrlMapError as refused:
            status_text = NOT_IN_URL_MAP if refused.status == 404 else BAD_REQUEST
            await respond_error(meter, refused.status, status_text, refused.reason)
        finally:
            self.metrics.request_finished()
            elapsed = self.perf_counter() - started
            endpoint = route.route_template if route is not None else "unmatched"
            request_uri = route.request_uri if route is not None else "unmatched"
            self.stats.record(request_uri, meter.request_bytes, meter.response_bytes, elapsed,
                              responded=meter.status != 0)
            self.metrics.observe_request(endpoint, request.method, meter.status or 499,
                                         meter.request_bytes, meter.response_bytes, elapsed)
            error_text = meter.status_text
            if error_text is not None:
                self.metrics.error_response(endpoint, meter.status, error_text)

    async def _handle(self, route: Route, request: HttpRequest, receive: Receive, send: Meter) -> None:
        if request.method not in route.methods:
            await respond_error(send, 405, METHOD_NOT_ALLOWED,
                                f"{request.method} is not allowed on {route.endpoint}")
            return
        declared = request.declared_length()
        limit = min(route.max_body_bytes, MAX_BODY_BYTES)
        if declared is not None and (declared < 0 or declared > limit):
            await respond_error(send, 413 if declared > limit else 400,
                                TOO_LARGE if declared > limit else BAD_REQUEST,
                                f"content length {declared} is over the {limit}-byte limit of {route.endpoint}"
                                if declared > limit else "content length is not a number")
            return
        try:
            body = await read_body(receive, limit)
        except BodyTooLarge as too_large:
            await respond_error(send, 413, TOO_LARGE, f"body over the {too_large.limit}-byte limit of {route.endpoint}")
            return
        send.request_bytes = len(body)

        if route.endpoint == urlmap.AAD_AUTH_INFO:
            await self._aad_auth_info(request, send)
            return

        identity = await self._authenticate(route, request, send)
        if identity is None:
            return

        if route.endpoint == urlmap.SERVICE_METADATA:
            await respond(send, 200, SERVICE_METADATA_XML.encode(), content_type="text/xml; charset=utf-8")
            return

        if route.endpoint == urlmap.CONTENT:
            await self._serve_content(route, request, send)
            return

        await self._forward(route, request, body, identity, send)

    async def _aad_auth_info(self, request: HttpRequest, send: Send) -> None:
        tenant_id = request.query_params().get("TenantID", "").lower()
        tenant = self.tenants().get(tenant_id)
        fault = self.faults.trigger("tenant_not_onboarded", self.role)
        if fault is not None and fault.params.get("tenant_id") in (None, "", tenant_id):
            tenant = None
        if tenant is None:
            # synthetic: not the public ConfigMgr format (the reply body; the behaviour — no properties — is documented)
            await respond(send, 404, b"{}", content_type="application/json", reason=TENANT_NOT_ONBOARDED,
                          headers=[("x-cmg-status-text", TENANT_NOT_ONBOARDED)])
            return
        document = {"AADTENANTID": tenant.tenant_id, "AADCLIENTAPPID": tenant.client_app_id,
                    "AADRESOURCEURI": tenant.resource_uri}
        await respond(send, 200, json.dumps(document).encode(), content_type="application/json")

    async def _authenticate(self, route: Route, request: HttpRequest, send: Send) -> dict[str, str] | None:
        """Apply the route's auth rule; on failure answer and return None, else return headers to add downstream."""
        if route.auth is AuthKind.NONE:
            return {}
        cert = client_cert_der(request.scope)
        if route.auth is AuthKind.CLIENT_CERT_OR_TOKEN and cert:
            # The TLS layer verified the chain against the site's root CA; pass on which certificate it was.
            return {CLIENT_CERT_HEADER: base64.b64encode(cert).decode("ascii")}
        return await self.check_token(route, request, send)

    async def check_token(self, route: Route, request: HttpRequest, send: Send) -> dict[str, str] | None:
        """Verify the bearer token the route asks for; on failure answer and return None, else return ``{}``."""
        token = request.bearer_token()
        if token is None:
            if route.auth is AuthKind.CLIENT_CERT_OR_TOKEN:
                await respond_error(send, 403, CLIENT_CERT_REQUIRED, "no client certificate and no token")
            else:
                await respond_error(send, 401, INVALID_TOKEN, "no bearer token")
            return None
        try:
            if route.auth is AuthKind.ENTRA_TOKEN:
                await self.entra_verifier.verify(token)
            else:
                # CcmTokenAuth=1: a CCM token and nothing else (an Entra token is refused like any foreign token).
                claims = self.ccm_verifier.verify(token)
                self._check_not_revoked(claims)
                # Who the client is, for the over-capacity fault's count of active clients.
                request.scope["state"]["client_id"] = claims.get("smsid") or claims.get("deviceid", "")
        except tokens.TokenRejected as rejected:
            self.metrics.token_rejected(rejected.kind)
            if self.log is not None:
                self.log.warning(f"Rejected request to {route.request_uri}: token validation failed. {rejected.code}: "
                                 f"{rejected.reason}")
            await respond_error(send, 401, INVALID_TOKEN, rejected.code)
            return None
        return {}

    def _check_not_revoked(self, claims: dict[str, Any]) -> None:
        """The ``ccm_token_expired`` fault: tokens issued before it started count as expired (revoked early)."""
        fault = self.faults.trigger("ccm_token_expired", self.role)
        if fault is not None and claims.get("iat", 0) <= fault.started_at:
            raise tokens.TokenRejected("IDX10223", "the CCM token was expired by the site (fault ccm_token_expired)",
                                       "expired")

    async def _serve_content(self, route: Route, request: HttpRequest, send: Send) -> None:
        params = request.query_params()
        package_id, content_id = params.get("pid", ""), params.get("cid", "")
        if self.storage is None:
            await respond(send, 200, self.content.content(package_id, content_id),
                          content_type="application/octet-stream")
            return
        # A content-enabled CMG answers with the small XML that points at its storage; the bytes come from there.
        now = self.clock()
        start, expiry = now - URL_START_BACKDATE_SECONDS, now + self.storage.lifetime
        if self.faults.trigger("signed_url_expired", self.role) is not None:
            start, expiry = now - 2 * self.storage.lifetime, now - self.storage.lifetime
        # The client the URL is for (storage counts egress per client): its token's id, else its certificate's.
        cert = client_cert_der(request.scope)
        client = (request.scope.get("state") or {}).get("client_id") or (
            hashlib.sha1(cert).hexdigest().upper() if cert else request.client_host)
        url = self.storage.signer.sign(self.storage.base_url, storage_urls.content_path(package_id, content_id),
                                       tenant_id=self.storage.tenant_id, object_id=str(client), start=start,
                                       expiry=expiry)
        reply = ContentXml(package_id=package_id, url=url, size=self.content.size_bytes,
                           sha256=self.content.sha256(package_id, content_id))
        await respond(send, 200, reply.to_xml().encode("utf-8"), content_type=CONTENT_XML_TYPE)

    async def _forward(self, route: Route, request: HttpRequest, body: bytes, identity: dict[str, str],
                       send: Send) -> None:
        upstream = self.connection_points.next()
        # Over the channels the fault is a real drop (the hub closes them); over direct HTTPS it is answered here.
        dials_out = isinstance(upstream, ChannelUpstream)
        if not dials_out and self.faults.trigger("cp_disconnected", self.role) is not None:
            await respond_error(send, 503, NO_CONNECTION_POINT, "no CMG connection point is connected")
            return
        headers = forwardable(request.headers)
        headers.pop(CLIENT_CERT_HEADER, None)
        headers.update(identity)
        headers[REQUEST_URI_HEADER] = f"https://{self.public_host}{request.path}"
        target = request.raw_path.decode("latin-1") + (f"?{request.query}" if request.query else "")
        try:
            answer = await upstream.request(request.method, target, headers, body)
        except UpstreamError as failed:
            if dials_out and failed.kind == "connect":
                self.faults.trigger("cp_disconnected", self.role)  # counted as the fault's injection while it is on
            self.metrics.forward_error(upstream.name, failed.kind)
            if self.log is not None:
                self.log.error(f"Failed to forward {route.request_uri} to {upstream.name}: {failed.detail}")
            if failed.kind == "timeout":
                await respond_error(send, 504, CONNECTION_POINT_TIMEOUT, upstream.name)
            else:
                await respond_error(send, 503, NO_CONNECTION_POINT, f"{upstream.name}: {failed.kind}")
            return
        passed = [(k, v) for k, v in answer.headers.items()
                  if k in ("x-cmg-status-text", "x-ccm-error-code", "www-authenticate")]
        await respond(send, answer.status, answer.body,
                      content_type=answer.headers.get("content-type", "application/octet-stream"),
                      headers=passed, reason=answer.reason or None)


class TokenValidator:
    """The CMG's token rule as an endpoint, for a CMG-style proxy that validates at the edge (nginx ``auth_request``).

    ``GET /validate`` with the request's ``Authorization`` header answers 204 for a valid CCM token and 401 with the
    CMG's status text otherwise; ``GET /validate?token=entra`` does the same for an Entra token (the token service's
    rule). No other query is taken: a proxy asks for exactly one kind of token per endpoint.
    """

    def __init__(self, ccm_verifier: CcmTokenVerifier | SiteTokenVerifier, entra_verifier: EntraTokenVerifier) -> None:
        self.ccm_verifier = ccm_verifier
        self.entra_verifier = entra_verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = HttpRequest.from_scope(scope)
        if request.query not in ("", "token=ccm", "token=entra"):
            await respond_error(send, 400, BAD_REQUEST, f"validate takes token=ccm or token=entra, got {request.query!r}")
            return
        token = request.bearer_token()
        if token is None:
            await respond_error(send, 401, INVALID_TOKEN, "no bearer token")
            return
        try:
            if request.query == "token=entra":
                await self.entra_verifier.verify(token)
            else:
                self.ccm_verifier.verify(token)
        except tokens.TokenRejected as rejected:
            await respond_error(send, 401, INVALID_TOKEN, rejected.code)
            return
        await respond(send, 204, b"")
