"""The management point: CCM messaging endpoints, MPLIST, policy bodies, the client package and CCM_STS.

The MP takes only mutual-TLS callers with a certificate of the site CA. The connection point's certificate makes the
CMG's identity headers (the client certificate the CMG verified, the public request URI) believable; from anyone else
those headers are refused (``403 MP_Identity_Header_Refused``), and a device certificate presented directly is that
device's own identity, as on an HTTPS management point on the intranet. The MP checks the token again: a CMG-style
proxy that forwards an invalid token is caught here and answered with ``MP_Invalid_Token``, so the harness can tell a
proxy that let an invalid token through from one that refused it at the edge. Every token here is a CCM token; an
Entra token is taken only by CCM_STS and, at registration, in the ``X-CCM-AAD-Token`` header beside the CCM token.
"""

from __future__ import annotations

import base64
import hashlib
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from cmg_protocol import envelope, messages, tokens
from cmg_protocol.clock import Clock
from cmg_protocol.envelope import EnvelopeError, MessageHeader
from cmg_protocol.ids import braced_guid
from cmg_protocol.messages import MessageError
from cmg_protocol.registration import AAD_TOKEN_HEADER
from cmg_protocol.statuses import (
    MP_BAD_MESSAGE,
    MP_IDENTITY_HEADER_REFUSED,
    MP_INVALID_TOKEN,
    MP_NO_CP_CERTIFICATE,
    MP_NOT_REGISTERED,
)
from mock_site.asgi import BodyTooLarge, HttpRequest, Meter, read_body, respond, respond_error
from mock_site.cmg import CLIENT_CERT_HEADER, REQUEST_URI_HEADER, ContentStore
from mock_site.config import SiteConfig
from mock_site.db import SiteDataError
from mock_site.mp_aut import SmsAut, refuse_windows_auth
from mock_site.peers import PEER_CP, PEER_DEVICE, peer_role
from mock_site.server import Receive, Scope, Send, client_cert_der
from mock_site.sts import CcmSts
from mock_site.token_checks import CcmTokenVerifier, EntraTokenVerifier

MAX_MESSAGE_BYTES = 1024 * 1024
#: The messaging endpoints by lower-cased path, with the name their metrics carry.
MESSAGING_ENDPOINTS = {"/ccm_system/request": "/ccm_system/request",
                       "/ccm_system_tokenauth/request": "/ccm_system_tokenauth/request",
                       "/ccm_system_altauth/request": "/ccm_system_altauth/request"}

#: The client package version the site hands out (the walk-through installs 5.00.8968.1000).
CLIENT_PACKAGE_ID = "CS100001"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request comes from, as far as the MP can tell."""

    ccm_claims: dict[str, Any] | None = None
    entra_claims: dict[str, Any] | None = None
    client_cert: bytes | None = None

    @property
    def smsid(self) -> str:
        return (self.ccm_claims or {}).get("smsid", "")


#: Headers only a connection point may send the MP: they carry what the CMG verified.
IDENTITY_HEADERS = (CLIENT_CERT_HEADER, REQUEST_URI_HEADER)


def _is_smsid(value: str) -> bool:
    if value[:5].upper() != "GUID:" or len(value) > 41:
        return False
    try:
        uuid.UUID(value[5:])
    except ValueError:
        return False
    return True


def site_policies(site_code: str, count: int = 6) -> tuple[messages.PolicyAssignment, ...]:
    """The machine policy assignments every client receives (synthetic ids, stable per site)."""
    categories = ("Machine", "ClientAgentConfig", "SoftwareUpdates", "Compliance", "Inventory", "Endpoint")
    assignments = []
    for index in range(count):
        policy_id = "{" + str(uuid.uuid5(uuid.NAMESPACE_OID, f"{site_code}/policy/{index}")).upper() + "}"
        version = "1.00"
        assignments.append(messages.PolicyAssignment(
            policy_id=policy_id,
            policy_version=version,
            policy_type="Machine",
            policy_category=categories[index % len(categories)],
            policy_flags=0,
            location_url=messages.policy_location(policy_id, version),
        ))
    return tuple(assignments)


class MpApp:
    """The management point (with CCM_STS mounted at ``/CCM_STS``) as an ASGI app."""

    role = "mp"

    def __init__(self, *, config: SiteConfig, sts: CcmSts, ccm_verifier: CcmTokenVerifier,
                 entra_verifier: EntraTokenVerifier, db: Any, faults: Any, metrics: Any, logs: Any, clock: Clock,
                 public_host: str, cmg_host: str, require_cp_certificate: bool = True,
                 rng: random.Random | None = None, content: ContentStore | None = None) -> None:
        self.config = config
        self.sts = sts
        self.ccm_verifier = ccm_verifier
        self.entra_verifier = entra_verifier
        self.db = db
        self.faults = faults
        self.metrics = metrics
        self.logs = logs
        self.clock = clock
        self.public_host = public_host
        self.cmg_host = cmg_host
        self.require_cp_certificate = require_cp_certificate
        self.content = content or ContentStore(config.package_content_bytes)
        self._rng = random.Random(rng.getrandbits(64) if rng is not None else None)
        # Clients are never unregistered here, so a positive answer from the database can be remembered.
        self._registered: set[str] = set()
        self._pki_clients: dict[str, str] = {}  # SMSID -> thumbprint of the certificate it registered with
        self.policies = site_policies(config.site_code)
        self._policy_bodies = {(p.policy_id, p.policy_version): p for p in self.policies}
        # Every client gets the same machine policy here, so the reply XML is built once.
        self._policy_reply_xml = messages.ReplyAssignments(assignments=self.policies).to_xml()
        seed = hashlib.sha256(b"ccmsetup.cab").digest()
        self.client_package = (seed * (config.client_content_bytes // len(seed) + 1))[: config.client_content_bytes]
        self._registration_log = logs.writer("MP_RegistrationManager.log") if logs is not None else None
        self._location_log = logs.writer("MP_Location.log") if logs is not None else None
        self._policy_log = logs.writer("MP_Policy.log") if logs is not None else None
        self.sms_aut = SmsAut(site_code=config.site_code, public_host=public_host,
                              build_number=config.build_number, clock=clock)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        request = HttpRequest.from_scope(scope)
        self.metrics.request_started()
        meter = Meter(send)
        endpoint = "unmatched"
        try:
            endpoint = await self._route(request, receive, meter)
        finally:
            self.metrics.request_finished()
            self.metrics.observe_request(endpoint, request.method, meter.status or 500, meter.request_bytes,
                                         meter.response_bytes, time.perf_counter() - started)

    async def _route(self, request: HttpRequest, receive: Receive, send: Meter) -> str:
        peer = client_cert_der(request.scope)
        if self.require_cp_certificate and peer is None:
            await respond_error(send, 403, MP_NO_CP_CERTIFICATE, "the MP only takes requests from a connection point")
            return "unauthenticated"
        if peer_role(peer) != PEER_CP and any(request.header(name) is not None for name in IDENTITY_HEADERS):
            await respond_error(send, 403, MP_IDENTITY_HEADER_REFUSED,
                                "identity headers are taken only from a connection point")
            return "unauthenticated"
        path = request.path.lower()
        try:
            body = await read_body(receive, MAX_MESSAGE_BYTES)
        except BodyTooLarge as too_large:
            await respond_error(send, 413, MP_BAD_MESSAGE, f"body over {too_large.limit} bytes")
            return path
        send.request_bytes = len(body)
        if path == "/ccm_sts":
            await self.sts.handle(request, send, body)
            return "/CCM_STS"
        if path in MESSAGING_ENDPOINTS:
            # ccm_system_altauth is the token endpoint of an HTTPS MP reached directly, as tokenauth is through a CMG.
            await self._messaging(request, body, send, token_auth=path != "/ccm_system/request",
                                  cmg_host=self._public_cmg_host(request))
            return MESSAGING_ENDPOINTS[path]
        if path == "/ccm_system_windowsauth/request":
            await refuse_windows_auth(send)
            return "/ccm_system_windowsauth/request"
        if path == "/sms_mp/.sms_aut":
            if await self._caller(request, send) is not None:
                await self.sms_aut.respond(request.query, send)
            return "/SMS_MP/.sms_aut"
        if path == "/sms_mp/.sms_pol":
            if await self._caller(request, send) is not None:
                await self._policy_body(request, send)
            return "/SMS_MP/.sms_pol"
        if path == "/downloadrestservice.svc/getcontentxmlsecure":
            # Content from the MP through the proxy (the walk-through's fallback when cloud storage lacks it).
            if await self._caller(request, send) is not None:
                params = request.query_params()
                await respond(send, 200, self.content.content(params.get("pid", ""), params.get("cid", "")),
                              content_type="application/octet-stream")
            return "/downloadrestservice.svc/getcontentxmlsecure"
        if path == "/ccm_client/ccmsetup.cab":
            if await self._caller(request, send, allow_cert=False) is not None:
                await respond(send, 200, self.client_package, content_type="application/vnd.ms-cab-compressed")
            return "/CCM_Client/ccmsetup.cab"
        await respond_error(send, 404, MP_BAD_MESSAGE, f"no such MP endpoint: {request.path}")
        return "unmatched"

    async def _caller(self, request: HttpRequest, send: Send, *, allow_cert: bool = True) -> Caller | None:
        """Who is calling: a client certificate (forwarded by the CP, or the device's own), or a valid CCM token."""
        if allow_cert:
            peer = client_cert_der(request.scope)
            role = peer_role(peer)
            forwarded = request.header(CLIENT_CERT_HEADER) if role == PEER_CP else None
            if forwarded:
                try:
                    return Caller(client_cert=base64.b64decode(forwarded, validate=True))
                except ValueError:
                    await respond_error(send, 400, MP_BAD_MESSAGE, "forwarded client certificate is not base64")
                    return None
            if role == PEER_DEVICE and peer is not None:
                return Caller(client_cert=bytes(peer))  # a device on the intranet, with its own certificate
        token = request.bearer_token()
        if token is None:
            await respond_error(send, 401, MP_INVALID_TOKEN, "no token")
            return None
        try:
            claims = self.ccm_verifier.verify(token)
        except tokens.TokenRejected as rejected:
            self.metrics.token_rejected(rejected.kind)
            await respond_error(send, 401, MP_INVALID_TOKEN, rejected.code)
            return None
        return Caller(ccm_claims=claims)

    async def _registering(self, request: HttpRequest, caller: Caller, send: Send) -> Caller | None:
        """A token caller registering: add the Entra identity from ``X-CCM-AAD-Token``, checked against the CCM token."""
        if caller.client_cert is not None:
            return caller
        aad_token = request.header(AAD_TOKEN_HEADER.lower())
        if not aad_token:
            await respond_error(send, 401, MP_INVALID_TOKEN,
                                f"registration needs the device's Entra token in {AAD_TOKEN_HEADER}")
            return None
        try:
            entra_claims = await self.entra_verifier.verify(aad_token)
        except tokens.TokenRejected as rejected:
            self.metrics.token_rejected(rejected.kind)
            await respond_error(send, 401, MP_INVALID_TOKEN, f"{AAD_TOKEN_HEADER}: {rejected.code}")
            return None
        ccm_tenant = str((caller.ccm_claims or {}).get("TenantId", "")).lower()
        if str(entra_claims.get("tid", "")).lower() != ccm_tenant:
            self.metrics.token_rejected("tenant")
            await respond_error(send, 401, MP_INVALID_TOKEN,
                                f"{AAD_TOKEN_HEADER} is for another tenant than the CCM token")
            return None
        return Caller(ccm_claims=caller.ccm_claims, entra_claims=entra_claims)

    def _public_cmg_host(self, request: HttpRequest) -> str:
        """The CMG address clients use: from the proxy's X-CMG-Request-URI when it sent one, else the site's CMG."""
        external = request.header(REQUEST_URI_HEADER)
        if external:
            host = urlsplit(external).netloc
            if host and "/" not in host and "@" not in host:
                return host
        return self.cmg_host

    async def _messaging(self, request: HttpRequest, body: bytes, send: Send, *, token_auth: bool,
                         cmg_host: str) -> None:
        try:
            message = envelope.decode_message(request.header("content-type"), body,
                                              max_body_bytes=MAX_MESSAGE_BYTES)
        except EnvelopeError as bad:
            await respond_error(send, 400, MP_BAD_MESSAGE, str(bad))
            return
        target = message.header.target_endpoint
        reply_to = message.header.reply_to
        reply_endpoint = reply_to.rsplit(":", 1)[-1] if reply_to else "dummy"
        if not reply_endpoint:
            await respond_error(send, 400, MP_BAD_MESSAGE, f"ReplyTo names no endpoint: {reply_to[:80]!r}")
            return
        caller = await self._caller(request, send, allow_cert=not token_auth)
        if caller is None:
            return
        if target == "MP_ClientRegistration":
            caller = await self._registering(request, caller, send)
            if caller is None:
                return
        try:
            if target == "MP_ClientRegistration":
                reply = self._register(message.body_xml, caller)
            elif target == "MP_LocationManager":
                reply = self._location(message.body_xml, cmg_host)
            elif target == "MP_PolicyManager":
                policy_reply = self._policy(message.body_xml, caller)
                if policy_reply is None:
                    await respond_error(send, 403, MP_NOT_REGISTERED, "the client is not registered")
                    return
                reply = policy_reply
            else:
                await respond_error(send, 404, MP_BAD_MESSAGE, f"unknown target endpoint {target!r}")
                return
        except (MessageError, SiteDataError) as bad:
            await respond_error(send, 400, MP_BAD_MESSAGE, str(bad))
            return
        reply_header = MessageHeader(
            target_endpoint=reply_endpoint,
            source_host=self.public_host,
            target_host=message.header.source_host,
            message_id=braced_guid(self._rng),
            correlation_id=message.header.message_id or envelope.NULL_CORRELATION_ID,
            sent_time=datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            compressed=message.header.reply_compression,
        )
        try:
            encoded = envelope.encode_message(reply_header, reply)
        except EnvelopeError as bad:  # a header value the request carried that XML cannot carry back
            await respond_error(send, 400, MP_BAD_MESSAGE, str(bad))
            return
        await respond(send, 200, encoded, content_type=envelope.CONTENT_TYPE)

    def _register(self, body_xml: str, caller: Caller) -> str:
        request = messages.RegistrationRequest.from_xml(body_xml)
        log = self._registration_log
        now_stamp = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if caller.entra_claims is not None:
            claims = caller.entra_claims
            device_id, tenant_id = claims.get("deviceid", ""), claims["tid"]
            if log is not None:
                log.info(f"Registering device using AAD auth: DeviceId='{device_id} ', TenantId='{tenant_id}'")
            registration = self.db.register_client(device_id=device_id or claims.get("oid", ""), tenant_id=tenant_id,
                                                   netbios_name=request.netbios_name, fq_name=request.fq_name)
        elif caller.client_cert is not None:
            thumbprint = hashlib.sha1(caller.client_cert).hexdigest().upper()
            if log is not None:
                log.info(f"Registering device using PKI certificate auth: Thumbprint='{thumbprint}'")
            registration = self.db.register_client(device_id=None, tenant_id=None,
                                                   netbios_name=request.netbios_name, fq_name=request.fq_name,
                                                   auth="pki", cert_thumbprint=thumbprint)
        else:  # _registering lets no token caller through without its Entra identity
            raise MessageError("registration carries neither an Entra identity nor a client certificate")
        if log is not None:
            log.info(f"Processing Registration request from Client '{registration.smsid}'")
        self.metrics.registration("created" if registration.created else "renewed")
        return messages.RegistrationResponse(status=0, smsid=registration.smsid,
                                             approval_status=registration.approval_status,
                                             timestamp=now_stamp).to_xml()

    def _location(self, body_xml: str, cmg_host: str) -> str:
        root = messages.root_tag(body_xml)
        if root == "SiteInformationRequest":
            site_request = messages.SiteInformationRequest.from_xml(body_xml)
            if self._location_log is not None:
                self._location_log.info(f"Site information request for site {site_request.site_code}")
            return messages.SiteInfoReply(site_code=self.config.site_code, version=self.config.site_version,
                                          build_number=self.config.build_number).to_xml()
        if root == "ContentLocationRequest":
            content_request = messages.ContentLocationRequest.from_xml(body_xml)
            package_id = content_request.package_id or CLIENT_PACKAGE_ID
            # Over a CMG the content location is the content-enabled CMG's download service (documented).
            url = (f"https://{cmg_host}/downloadrestservice.svc/getcontentxmlsecure"
                   f"?pid={package_id}&cid={package_id}")
            if self._location_log is not None:
                self._location_log.info(f"Content location request for package {package_id}: 1 location(s)")
            return messages.ContentLocationReply(site_code=self.config.site_code, urls=(url,)).to_xml()
        raise MessageError(f"MP_LocationManager does not handle {root!r}")

    def _policy(self, body_xml: str, caller: Caller) -> str | None:
        request = messages.RequestAssignments.from_xml(body_xml)
        client_id = request.client_id
        if not _is_smsid(client_id):
            raise MessageError(f"ClientID is not GUID:<guid>: {client_id[:80]!r}")
        if caller.smsid and caller.smsid.upper() != client_id.upper():
            return None
        if caller.client_cert is not None:
            # A PKI client asks for its own policy only: the client registered with this very certificate.
            thumbprint = hashlib.sha1(caller.client_cert).hexdigest().upper()
            if self._pki_clients.get(client_id) != thumbprint:
                record = self.db.client(client_id)
                if record is None or record.auth != "pki" or record.cert_thumbprint != thumbprint:
                    return None
                self._pki_clients[client_id] = thumbprint
        elif client_id not in self._registered:
            if self.db.client(client_id) is None:
                return None
            self._registered.add(client_id)
        if self._policy_log is not None:
            self._policy_log.info(f"Policy assignments request from client {client_id}: "
                                  f"{len(self.policies)} assignment(s)")
        return self._policy_reply_xml

    async def _policy_body(self, request: HttpRequest, send: Send) -> None:
        query = unquote(request.query)
        policy_id, separator, version = query.partition("}.")
        policy = self._policy_bodies.get(((policy_id + "}").upper(), version)) if separator else None
        if policy is None:
            await respond_error(send, 404, MP_BAD_MESSAGE, f"no policy {request.query!r}")
            return
        body = messages.PolicyBody(policy_id=policy.policy_id, policy_version=policy.policy_version,
                                   body=f"<Policy PolicyID=\"{policy.policy_id}\" PolicyVersion=\"{version}\"/>")
        await respond(send, 200, body.to_xml().encode("utf-8"), content_type="text/xml; charset=utf-8")
