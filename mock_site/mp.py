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
import functools
import hashlib
import math
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cmg_protocol import clientauth, envelope, messages, tokens
from cmg_protocol.clientauth import ClientAuthError
from cmg_protocol.clock import Clock
from cmg_protocol.cms import encrypt_enveloped
from cmg_protocol.envelope import EnvelopeError, MessageHeader
from cmg_protocol.ids import braced_guid
from cmg_protocol.messages import MessageError
from cmg_protocol.policy import PolicyFlags, policy_query_parts
from cmg_protocol.registration import AAD_TOKEN_HEADER
from cmg_protocol.site_tokens import TYPE_BULK as BULK_REGISTRATION
from cmg_protocol.statuses import (
    MP_BAD_MESSAGE,
    MP_IDENTITY_HEADER_REFUSED,
    MP_INVALID_TOKEN,
    MP_NO_CP_CERTIFICATE,
    MP_NOT_REGISTERED,
    MP_REGISTRATION_TOKEN_INVALID,
    MP_SIGNATURE_INVALID,
)
from mock_site.asgi import BodyTooLarge, HttpRequest, Meter, read_body, respond, respond_error
from mock_site.cmg import CLIENT_CERT_HEADER, REQUEST_URI_HEADER, ContentStore
from mock_site.config import SiteConfig
from mock_site.db import SiteDataError
from mock_site.hook_checks import HookVerifier
from mock_site.mp_aut import SmsAut, refuse_windows_auth
from mock_site.peers import PEER_CP, PEER_DEVICE, peer_role
from mock_site.server import Receive, Scope, Send, client_cert_der
from mock_site.site_tokens import SiteTokenVerifier
from mock_site.sts import CcmSts
from mock_site.token_checks import CcmTokenVerifier, EntraTokenVerifier

MAX_MESSAGE_BYTES = 1024 * 1024
_DER = serialization.Encoding.DER
POLICY_CONTENT_TYPE = "text/xml; charset=utf-16"  # synthetic: not the public ConfigMgr format (the header's value)
SECRET_POLICY_CONTENT_TYPE = "application/octet-stream"  # synthetic: not the public ConfigMgr format
#: The messaging endpoints by lower-cased path, with the name their metrics carry.
MESSAGING_ENDPOINTS = {"/ccm_system/request": "/ccm_system/request",
                       "/ccm_system_tokenauth/request": "/ccm_system_tokenauth/request",
                       "/ccm_system_altauth/request": "/ccm_system_altauth/request"}
#: What a request is counted under in the metrics, by its lower-cased path: the name is known before the handler runs,
#: so a request whose handler broke, or whose body was too large, is still counted under its endpoint. Any other path
#: is counted under one name, so that made-up paths cannot grow the metrics without bound.
UNMATCHED = "unmatched"
ENDPOINT_NAMES = {**MESSAGING_ENDPOINTS,
                  "/ccm_sts": "/CCM_STS",
                  "/ccm_system_windowsauth/request": "/ccm_system_windowsauth/request",
                  "/sms_mp/.sms_aut": "/SMS_MP/.sms_aut",
                  "/sms_mp/.sms_pol": "/SMS_MP/.sms_pol",
                  "/downloadrestservice.svc/getcontentxmlsecure": "/downloadrestservice.svc/getcontentxmlsecure",
                  "/ccm_client/ccmsetup.cab": "/CCM_Client/ccmsetup.cab"}

#: The client package version the site hands out (the walk-through installs 5.00.8968.1000).
CLIENT_PACKAGE_ID = "CS100001"

#: A device sends the very same RequestAssignments body on every poll, so its parse is remembered (by the whole text,
#: so another body is parsed afresh; a body that does not parse raises every time, since only returns are cached).
#: Bounded, least recently used first out: ~1 KB a device, so a few MB for a fleet's worth.
_request_assignments = functools.lru_cache(maxsize=8192)(messages.RequestAssignments.from_xml)


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
    return _is_guid(value[5:])


# A device names itself on every poll: its id is checked once (a pure function of at most 36 characters).
@functools.lru_cache(maxsize=8192)
def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


#: The secret policy every client gets: the network access account (its body is encrypted to each client).
NAA_POLICY_CATEGORY = "NAAConfig"
SECRET_POLICY_FLAGS = PolicyFlags.REQUIRESAUTH | PolicyFlags.SECRET


def _policy_id(site_code: str, index: int) -> str:
    return "{" + str(uuid.uuid5(uuid.NAMESPACE_OID, f"{site_code}/policy/{index}")).upper() + "}"


def _policy_payload(policy_id: str, category: str) -> str:
    # synthetic: not the public ConfigMgr format (the policy's WMI-XML instances are ours)
    return f'<PolicyRule PolicyRuleID="{policy_id}" Category="{category}"/>'


def naa_payload(site_code: str) -> str:
    """The network access account policy's payload (the secret the client must decrypt)."""
    # synthetic: not the public ConfigMgr format (real values are obfuscated blobs; these are UTF-16LE hex)
    user = f"{site_code}\\svc-naa".encode("utf-16-le").hex().upper()
    secret = f"naa-{site_code}-secret".encode("utf-16-le").hex().upper()
    return ('<instance class="CCM_NetworkAccessAccount">'
            f'<property name="NetworkAccessUsername" type="8" secret="1"><value>{user}</value></property>'
            f'<property name="NetworkAccessPassword" type="8" secret="1"><value>{secret}</value></property></instance>')


@dataclass(frozen=True, slots=True)
class SitePolicy:
    """A policy the site assigns: its assignment and the body it serves (clear text before any encryption)."""

    assignment: messages.PolicyAssignment
    body: bytes

    @property
    def secret(self) -> bool:
        return bool(self.assignment.policy_flags & PolicyFlags.SECRET)

    @property
    def requires_auth(self) -> bool:
        return bool(self.assignment.policy_flags & (PolicyFlags.REQUIRESAUTH | PolicyFlags.SECRET))


def site_policy_set(site_code: str, count: int = 6) -> tuple[SitePolicy, ...]:
    """The machine policies every client receives (synthetic ids, stable per site): ``count`` plain ones, addressed by
    the SHA-256 of their body, then the secret network access account policy, addressed by version."""
    categories = ("Machine", "ClientAgentConfig", "SoftwareUpdates", "Compliance", "Inventory", "Endpoint")
    result = []
    for index in range(count):
        policy_id, category = _policy_id(site_code, index), categories[index % len(categories)]
        body = messages.PolicyBody(policy_id=policy_id, policy_version="1.00",
                                   body=_policy_payload(policy_id, category)).to_bytes()
        digest = hashlib.sha256(body).hexdigest().upper()
        result.append(SitePolicy(messages.PolicyAssignment(
            policy_id=policy_id, policy_version="1.00", policy_type="Machine", policy_category=category,
            policy_flags=int(PolicyFlags.NONE), location_url=messages.policy_location(policy_id, "1.00", sha256=digest),
        ), body))
    naa_id = _policy_id(site_code, count)
    # The decrypted body is NUL-terminated UTF-16LE, as the public tools read it.
    naa_body = messages.PolicyBody(policy_id=naa_id, policy_version="2.00",
                                   body=naa_payload(site_code)).to_xml().encode("utf-16-le") + b"\x00\x00"
    result.append(SitePolicy(messages.PolicyAssignment(
        policy_id=naa_id, policy_version="2.00", policy_type="Machine", policy_category=NAA_POLICY_CATEGORY,
        policy_flags=int(SECRET_POLICY_FLAGS), location_url=messages.policy_location(naa_id, "2.00"),
    ), naa_body))
    return tuple(result)


def site_policies(site_code: str, count: int = 6) -> tuple[messages.PolicyAssignment, ...]:
    """The machine policy assignments every client receives."""
    return tuple(policy.assignment for policy in site_policy_set(site_code, count))


@dataclass(frozen=True, slots=True)
class RegisteredKeys:
    """What the MP checks a registered client's signatures with and encrypts its secret policies to."""

    signing: rsa.RSAPublicKey
    encryption: x509.Certificate


class SentTime:
    """A reply's SentTime (``%Y-%m-%dT%H:%M:%SZ``) from the clock, formatted once per second: strftime on every reply
    was ~3 % of a policy request's time on the MP."""

    __slots__ = ("_clock", "_second", "_text")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._second: int | None = None
        self._text = ""

    def __call__(self) -> str:
        second = math.floor(self._clock())
        if second != self._second:
            self._text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self._second = second
        return self._text


class SignatureRefused(Exception):
    """A request's signature does not verify; the reply is 403 with the reason."""


class UnknownClient(Exception):
    """The request names a client the site has not registered (or whose certificates it does not hold)."""


def _policy_key(query: str) -> tuple[str, str]:
    policy_id, tail = policy_query_parts(query)
    return policy_id.upper(), tail.upper()


def _registration_signed_bytes(body_xml: str) -> bytes:
    """The registration request's ``<Data>`` element exactly as sent, as UTF-16LE: what its signature covers."""
    start = body_xml.find("<Data")
    end = body_xml.find("</Data>")
    if start < 0 or end < start:
        raise MessageError("registration request has no <Data> element to check the signature over")
    return body_xml[start : end + len("</Data>")].encode("utf-16-le")


def _certificate(hex_der: str, what: str) -> x509.Certificate:
    try:
        cert = x509.load_der_x509_certificate(bytes.fromhex(hex_der))
    except ValueError:
        raise MessageError(f"the {what} certificate is not hex-encoded DER") from None
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        raise MessageError(f"the {what} certificate does not hold an RSA key")
    return cert


class MpApp:
    """The management point (with CCM_STS mounted at ``/CCM_STS``) as an ASGI app."""

    role = "mp"

    def __init__(self, *, config: SiteConfig, sts: CcmSts, ccm_verifier: CcmTokenVerifier | SiteTokenVerifier,
                 entra_verifier: EntraTokenVerifier, db: Any, faults: Any, metrics: Any, logs: Any, clock: Clock,
                 public_host: str, cmg_host: str, require_cp_certificate: bool = True,
                 rng: random.Random | None = None, content: ContentStore | None = None,
                 token_manager: Any = None) -> None:
        self.config = config
        #: MP_TokenManager (client-unique tokens for token-authenticated devices); None: the endpoint is not served.
        self.token_manager = token_manager
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
        self._sent_time = SentTime(self.clock)
        # Clients are never unregistered here, so a positive answer from the database can be remembered.
        self._registered: set[str] = set()
        self._pki_clients: dict[str, str] = {}  # SMSID -> thumbprint of the certificate it registered with
        self.policy_set = site_policy_set(config.site_code)
        self.policies = tuple(p.assignment for p in self.policy_set)
        self._policy_bodies = {_policy_key(unquote(urlsplit(p.assignment.location_url).query)): p
                               for p in self.policy_set}
        # Registered certificates by client, and key objects by certificate, so devices sharing one share the objects.
        self._client_keys: dict[str, RegisteredKeys] = {}
        self._hooks = HookVerifier()
        self._other_key: rsa.RSAPublicKey | None = None
        self._keys_by_der: dict[tuple[bytes, bytes], RegisteredKeys] = {}
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
        path = request.path.lower()
        endpoint = ENDPOINT_NAMES.get(path, UNMATCHED)
        try:
            if await self._refused_identity(request, meter):
                endpoint = "unauthenticated"
            else:
                await self._route(request, path, receive, meter)
        finally:
            self.metrics.request_finished()
            self.metrics.observe_request(endpoint, request.method, meter.status or 500, meter.request_bytes,
                                         meter.response_bytes, time.perf_counter() - started)

    async def _refused_identity(self, request: HttpRequest, send: Meter) -> bool:
        """Refuse (403) a caller that is not the connection point where only it may call, or that sends identity
        headers only the connection point may set; True when refused."""
        peer = client_cert_der(request.scope)
        if self.require_cp_certificate and peer is None:
            await respond_error(send, 403, MP_NO_CP_CERTIFICATE, "the MP only takes requests from a connection point")
            return True
        if peer_role(peer) != PEER_CP and any(request.header(name) is not None for name in IDENTITY_HEADERS):
            await respond_error(send, 403, MP_IDENTITY_HEADER_REFUSED,
                                "identity headers are taken only from a connection point")
            return True
        return False

    async def _route(self, request: HttpRequest, path: str, receive: Receive, send: Meter) -> None:
        """Answer a request for ``path`` (lower-cased); it is counted under ``ENDPOINT_NAMES``' name for it."""
        try:
            body = await read_body(receive, MAX_MESSAGE_BYTES)
        except BodyTooLarge as too_large:
            await respond_error(send, 413, MP_BAD_MESSAGE, f"body over {too_large.limit} bytes")
            return
        send.request_bytes = len(body)
        if path == "/ccm_sts":
            await self.sts.handle(request, send, body)
            return
        if path in MESSAGING_ENDPOINTS:
            # ccm_system_altauth is the token endpoint of an HTTPS MP reached directly, as tokenauth is through a CMG.
            await self._messaging(request, body, send, token_auth=path != "/ccm_system/request",
                                  cmg_host=self._public_cmg_host(request))
            return
        if path == "/ccm_system_windowsauth/request":
            await refuse_windows_auth(send)
            return
        if path == "/sms_mp/.sms_aut":
            if await self._caller(request, send) is not None:
                await self.sms_aut.respond(request.query, send)
            return
        if path == "/sms_mp/.sms_pol":
            policy_caller = await self._caller(request, send)
            if policy_caller is not None:
                await self._policy_body(request, policy_caller, send)
            return
        if path == "/downloadrestservice.svc/getcontentxmlsecure":
            # Content from the MP through the proxy (the walk-through's fallback when cloud storage lacks it).
            if await self._caller(request, send) is not None:
                params = request.query_params()
                await respond(send, 200, self.content.content(params.get("pid", ""), params.get("cid", "")),
                              content_type="application/octet-stream")
            return
        if path == "/ccm_client/ccmsetup.cab":
            if await self._caller(request, send, allow_cert=False) is not None:
                await respond(send, 200, self.client_package, content_type="application/vnd.ms-cab-compressed")
            return
        await respond_error(send, 404, MP_BAD_MESSAGE, f"no such MP endpoint: {request.path}")

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
        if caller.client_cert is not None or (caller.ccm_claims or {}).get("token_type") == BULK_REGISTRATION:
            return caller  # a certificate, or a bulk registration token: no Entra identity to add
        aad_token = request.header(AAD_TOKEN_HEADER.lower())
        if not aad_token:
            await respond_error(send, 403, MP_REGISTRATION_TOKEN_INVALID,
                                f"registration needs the device's Entra token in {AAD_TOKEN_HEADER}")
            return None
        try:
            entra_claims = await self.entra_verifier.verify(aad_token)
        except tokens.TokenRejected as rejected:
            self.metrics.token_rejected(rejected.kind)
            await respond_error(send, 403, MP_REGISTRATION_TOKEN_INVALID, f"{AAD_TOKEN_HEADER}: {rejected.code}")
            return None
        ccm_tenant = str((caller.ccm_claims or {}).get("TenantId", "")).lower()
        if str(entra_claims.get("tid", "")).lower() != ccm_tenant:
            self.metrics.token_rejected("tenant")
            await respond_error(send, 403, MP_REGISTRATION_TOKEN_INVALID,
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
            elif target == "MP_TokenManager" and self.token_manager is not None:
                reply = self.token_manager.reply(message.body_xml, caller.ccm_claims)
            elif target == "MP_PolicyManager":
                policy_reply = self._policy(message, caller)
                if policy_reply is None:
                    await respond_error(send, 403, MP_NOT_REGISTERED, "the client is not registered")
                    return
                reply = policy_reply
            else:
                await respond_error(send, 404, MP_BAD_MESSAGE, f"unknown target endpoint {target!r}")
                return
        except SignatureRefused as refused:
            self.metrics.token_rejected("signature")
            await respond_error(send, 403, MP_SIGNATURE_INVALID, str(refused))
            return
        except UnknownClient as unknown:
            await respond_error(send, 403, MP_NOT_REGISTERED, str(unknown))
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
            sent_time=self._sent_time(),
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
        # The request is signed with the key of the signing certificate it carries: check it before anything is kept.
        signing = _certificate(request.signing_cert_hex, "signing")
        encryption = _certificate(request.encryption_cert_hex, "encryption")
        if not request.signature_hex:
            raise SignatureRefused("the registration request carries no signature")
        signing_key = signing.public_key()
        assert isinstance(signing_key, rsa.RSAPublicKey)  # _certificate refuses any other key
        try:
            envelope.verify_clientauth_signature(signing_key, _registration_signed_bytes(body_xml),
                                                 request.signature_hex)
        except EnvelopeError:
            raise SignatureRefused("the registration signature does not verify with the signing certificate "
                                   "the request carries") from None
        now_stamp = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if caller.entra_claims is not None:
            claims = caller.entra_claims
            device_id, tenant_id = claims.get("deviceid", ""), claims["tid"]
            if log is not None:
                log.info(f"Registering device using AAD auth: DeviceId='{device_id} ', TenantId='{tenant_id}'")
            registration = self.db.register_client(device_id=device_id or claims.get("oid", ""), tenant_id=tenant_id,
                                                   netbios_name=request.netbios_name, fq_name=request.fq_name)
        elif (caller.ccm_claims or {}).get("token_type") == BULK_REGISTRATION:
            # A token-authenticated device is known by the signing certificate it registers (the database keeps it
            # with the certificate-identified clients: its schema knows Entra and certificates only).
            try:
                thumbprint = hashlib.sha1(bytes.fromhex(request.signing_cert_hex)).hexdigest().upper()
            except ValueError:
                raise MessageError("the signing certificate is not hex") from None
            if log is not None:
                log.info(f"Registering device using bulk registration token: Thumbprint='{thumbprint}'")  # synthetic
            registration = self.db.register_client(device_id=None, tenant_id=None, netbios_name=request.netbios_name,
                                                   fq_name=request.fq_name, auth="pki", cert_thumbprint=thumbprint)
        elif caller.client_cert is not None:
            thumbprint = hashlib.sha1(caller.client_cert).hexdigest().upper()
            if log is not None:
                log.info(f"Registering device using PKI certificate auth: Thumbprint='{thumbprint}'")
            registration = self.db.register_client(device_id=None, tenant_id=None,
                                                   netbios_name=request.netbios_name, fq_name=request.fq_name,
                                                   auth="pki", cert_thumbprint=thumbprint)
        else:  # _registering lets no token caller through without its Entra identity
            raise MessageError("registration carries neither an Entra identity nor a client certificate")
        self.db.set_client_certificates(registration.smsid, signing.public_bytes(_DER), encryption.public_bytes(_DER))
        self._client_keys.pop(registration.smsid, None)
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

    def _keys(self, smsid: str) -> RegisteredKeys:
        """The registered client's signing key and encryption certificate, or UnknownClient."""
        keys = self._client_keys.get(smsid)
        if keys is None:
            ders = self.db.client_certificates(smsid)
            if ders is None:
                raise UnknownClient(f"the site holds no registration certificates for client {smsid}")
            keys = self._keys_by_der.get(ders)
            if keys is None:
                if len(self._keys_by_der) >= 4096:
                    self._keys_by_der.clear()
                signing = x509.load_der_x509_certificate(ders[0]).public_key()
                assert isinstance(signing, rsa.RSAPublicKey)  # checked at registration
                keys = self._keys_by_der[ders] = RegisteredKeys(signing, x509.load_der_x509_certificate(ders[1]))
            self._client_keys[smsid] = keys
        return keys

    def _signing_key(self, smsid: str) -> rsa.RSAPublicKey:
        """The key the client's signatures must verify with (another one while the key-change fault is on)."""
        if self.faults.trigger("policy_signature_mismatch", self.role) is not None:
            return self._fault_key()
        return self._keys(smsid).signing

    def _fault_key(self) -> rsa.RSAPublicKey:
        # The key the site "holds" for every client while the fault is on: as after the client changed its key.
        if self._other_key is None:
            self._other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        return self._other_key

    def _policy(self, message: envelope.Message, caller: Caller) -> str | None:
        request = _request_assignments(message.body_xml)
        client_id = request.client_id
        if not _is_smsid(client_id):
            raise MessageError(f"ClientID is not GUID:<guid>: {client_id[:80]!r}")
        client_id = "GUID:" + client_id[5:].upper()
        if caller.smsid and caller.smsid.upper() != client_id:
            return None
        if self.faults.trigger("client_unknown", self.role) is not None:
            raise UnknownClient(f"the site does not know client {client_id}")
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
        # MP_PolicyManager takes signed requests only: the clientauth hook, with the key the client registered.
        try:
            self._hooks.verify(message.header.client_auth, self._signing_key(client_id), client_id, message.payload)
        except ClientAuthError as refused:
            raise SignatureRefused(str(refused)) from None
        if request.site_code.upper() != self.config.site_code.upper() and self._policy_log is not None:
            # A real MP answers a request naming another site's PolicySource (public tools send a fixed SMS:PRI).
            self._policy_log.warning(f"Policy assignments request from client {client_id} names PolicySource "
                                     f"SMS:{request.site_code}; this site is {self.config.site_code}")
        if self._policy_log is not None:
            self._policy_log.info(f"Policy assignments request from client {client_id}: "
                                  f"{len(self.policies)} assignment(s)")
        return self._policy_reply_xml

    async def _policy_body(self, request: HttpRequest, caller: Caller, send: Send) -> None:
        try:
            policy = self._policy_bodies.get(_policy_key(unquote(request.query)))
        except MessageError:
            policy = None
        if policy is None:
            await respond_error(send, 404, MP_BAD_MESSAGE, f"no policy {request.query[:120]!r}")
            return
        if not policy.requires_auth:
            await respond(send, 200, policy.body, content_type=POLICY_CONTENT_TYPE)
            return
        # A policy that needs authentication is fetched with ClientToken and ClientTokenSignature, made with the
        # signing key the client registered; a secret one comes back encrypted to the client's encryption certificate.
        token = request.header(clientauth.CLIENT_TOKEN_HEADER.lower()) or ""
        signature = request.header(clientauth.CLIENT_TOKEN_SIGNATURE_HEADER.lower()) or ""
        try:
            if not token:
                raise ClientAuthError(f"policy {policy.assignment.policy_id} needs a ClientToken header")
            client_id = clientauth.client_token_id(token)
            if not _is_smsid(client_id):
                raise ClientAuthError(f"ClientToken names no client id: {client_id[:60]!r}")
            client_id = "GUID:" + client_id[5:].upper()
            if caller.smsid and caller.smsid.upper() != client_id:
                await respond_error(send, 403, MP_NOT_REGISTERED, "the ClientToken names another client than the token")
                return
            if self.faults.trigger("client_unknown", self.role) is not None:
                raise UnknownClient(f"the site does not know client {client_id}")
            keys = self._keys(client_id)
            clientauth.verify_client_token(token, signature, self._signing_key(client_id))
        except ClientAuthError as refused:
            self.metrics.token_rejected("signature")
            await respond_error(send, 403, MP_SIGNATURE_INVALID, str(refused))
            return
        except UnknownClient as unknown:
            await respond_error(send, 403, MP_NOT_REGISTERED, str(unknown))
            return
        if policy.secret:
            await respond(send, 200, encrypt_enveloped(policy.body, keys.encryption),
                          content_type=SECRET_POLICY_CONTENT_TYPE)
        else:
            await respond(send, 200, policy.body, content_type=POLICY_CONTENT_TYPE)
