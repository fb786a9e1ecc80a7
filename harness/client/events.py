"""The events between a lifecycle and its driver: where the site is, what to send, what came back, when to wait.

Like h11's events, these are plain values: the lifecycle makes :class:`Request` and :class:`Wait`, a driver answers a
Request with a :class:`Response` or a :class:`TransportError`, and the last action is :class:`Done`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cmg_protocol import urlmap
from cmg_protocol.statuses import (
    CONNECTOR_PREFIX,
    MP_INVALID_TOKEN,
    MP_NOT_REGISTERED,
    MP_REGISTRATION_TOKEN_INVALID,
    MP_SIGNATURE_INVALID,
    TENANT_NOT_ONBOARDED,
)
from harness.client import outcome as oc
from harness.client.outcome import Outcome
from mock_site.manifest import SiteManifest

# The parts of a life (Request.stage) and its steps (Request.step, Outcome.step): stable names for tallies.
STAGE_INSTALL, STAGE_REGISTRATION, STAGE_RENEWAL, STAGE_POLICY = "install", "registration", "renewal", "policy"
STEP_AAD_INFO = "aad_info"
STEP_ENTRA_TOKEN = "entra_token"
STEP_CCM_TOKEN = "ccm_token"
STEP_SITE_INFO = "site_info"
STEP_CCMSETUP_CAB = "ccmsetup_cab"
STEP_CONTENT_LOCATION = "content_location"
STEP_CONTENT_XML = "content_xml"  # getcontentxmlsecure: where the content is (a signed storage URL)
STEP_CONTENT_DOWNLOAD = "content_download"
STEP_REGISTRATION = "registration"
STEP_SITE_TOKEN = "site_token"  # MP_TokenManager: a token-authenticated client's client-unique token
STEP_POLICY_ASSIGNMENTS = "policy_assignments"
STEP_POLICY_BODY = "policy_body"



class LifecycleError(ValueError):
    """The lifecycle was driven wrongly (a reply with no request outstanding) or given unusable site data."""


@dataclass(frozen=True, slots=True)
class SiteEndpoints:
    """Where the site is, as a client knows it after ccmsetup's command line: CMG, role id, Entra, site code, timing."""

    cmg_url: str
    role_id: str
    entra_url: str
    site_code: str
    policy_interval_s: float
    time_scale: float = 1.0
    #: The bulk registration token ccmsetup is given (``/regtoken``) for token-authenticated devices; '' if none.
    bulk_token: str = field(default="", repr=False)
    host: str = field(init=False)
    port: int = field(init=False)
    server_base: str = field(init=False)  # "https://<cmg>/CCM_Proxy_ServerAuth/<id>"
    mutual_base: str = field(init=False)
    sts_path: str = field(init=False)
    tokenauth_path: str = field(init=False)
    system_path: str = field(init=False)
    ccmsetup_path: str = field(init=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.cmg_url)
        if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
            raise LifecycleError(f"CMG URL must be https://host[:port], got {self.cmg_url!r}")
        if not urlsplit(self.entra_url).hostname:
            raise LifecycleError(f"Entra URL must be an absolute URL, got {self.entra_url!r}")
        if not self.policy_interval_s > 0 or not self.time_scale > 0:
            raise LifecycleError(f"policy interval and time scale must be > 0, got {self.policy_interval_s!r} and "
                                 f"{self.time_scale!r}")
        try:
            server = urlmap.server_auth_path(self.role_id, "")
            paths = (urlmap.server_auth_path(self.role_id, urlmap.CCM_STS),
                     urlmap.server_auth_path(self.role_id, urlmap.CCM_SYSTEM_TOKENAUTH),
                     urlmap.mutual_auth_path(self.role_id, urlmap.CCM_SYSTEM),
                     urlmap.server_auth_path(self.role_id, urlmap.CCM_CLIENT))
            mutual = urlmap.mutual_auth_path(self.role_id, "")
        except urlmap.UrlMapError as exc:
            raise LifecycleError(f"role id {self.role_id!r} is unusable: {exc.reason}") from None
        origin = self.cmg_url.rstrip("/")
        setter = object.__setattr__
        setter(self, "cmg_url", origin)
        setter(self, "entra_url", self.entra_url.rstrip("/"))
        setter(self, "host", parts.hostname)
        setter(self, "port", parts.port or 443)
        setter(self, "server_base", origin + server)
        setter(self, "mutual_base", origin + mutual)
        for name, path in zip(("sts_path", "tokenauth_path", "system_path", "ccmsetup_path"), paths, strict=True):
            setter(self, name, path)

    @classmethod
    def from_manifest(cls, manifest: SiteManifest) -> SiteEndpoints:
        """The endpoints named in a site manifest (``site.json``)."""
        bulk_token = ""
        if manifest.bulk_token_file is not None:
            try:
                bulk_token = manifest.bulk_token_file.read_text().strip()
            except OSError:
                bulk_token = ""  # another host's site: token devices then fail at the CMG, which the verdict names
        return cls(cmg_url=manifest.cmg_url or "", role_id=manifest.role_id, entra_url=manifest.entra_url,
                   site_code=manifest.site_code, policy_interval_s=manifest.policy_interval_s,
                   time_scale=manifest.time_scale, bulk_token=bulk_token)

    @property
    def netloc(self) -> str:
        """``host:port`` of the CMG, as the client logs it."""
        return f"{self.host}:{self.port}"

    def url(self, path: str) -> str:
        """The CMG URL of ``path``."""
        return self.cmg_url + path


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP request the driver must send; ``name`` is its CMGService-style request URI (no query) for statistics."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    name: str
    stage: str
    step: str
    client_cert: bool = False


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP answer: status, status text (the CMG's, else the reason phrase), body, content type, elapsed ms."""

    status: int
    body: bytes = b""
    reason: str = ""
    content_type: str = ""
    ms: float = 0.0


@dataclass(frozen=True, slots=True)
class TransportError:
    """No HTTP answer: ``reason`` is a transport reason code (``tls.*``, ``timeout``, ``connect``, ``reset``)."""

    reason: str
    detail: str = ""
    ms: float = 0.0

    def __post_init__(self) -> None:
        if self.reason not in oc.TRANSPORT_CODES:
            raise LifecycleError(f"transport error reason must be one of {', '.join(oc.TRANSPORT_CODES)}, "
                                 f"got {self.reason!r}")


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to send before ``until`` (clock seconds): the policy interval or a retry back-off."""

    until: float


@dataclass(frozen=True, slots=True)
class Done:
    """The life is over."""

    outcome: Outcome


Action = Request | Wait | Done
"""What :meth:`Lifecycle.next_request` returns."""
Reply = Response | TransportError
"""What :meth:`Lifecycle.feed` takes."""


def classify(step: str, reply: Reply) -> str | None:
    """The reason code of ``reply`` at ``step`` (None: success); drivers use it to tally requests too."""
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
        # The CMG refuses an invalid token itself; MP_Invalid_Token means a proxy let one through to the MP.
        return oc.MP_401 if reply.reason == MP_INVALID_TOKEN else oc.CMG_401
    if status == 403:
        if reply.reason == MP_SIGNATURE_INVALID:
            return oc.MP_SIGNATURE_INVALID
        if reply.reason == MP_NOT_REGISTERED:
            return oc.MP_NOT_REGISTERED
        if reply.reason == MP_REGISTRATION_TOKEN_INVALID:
            return oc.REGISTRATION_REJECTED  # the MP refused the registration's Entra token
        # Only the CMG's storage answers the content download itself; it refuses a URL it cannot accept with 403.
        return oc.STORAGE_403 if step == STEP_CONTENT_DOWNLOAD else oc.CMG_403
    if status == 503:
        return oc.CMG_503
    return oc.http_reason(status)


def error_code_of(reply: Reply) -> int | None:
    """The ConfigMgr error a reply stands for: 0x87d0027e when the CMG connection point answered with an error."""
    if isinstance(reply, Response) and reply.status >= 400 and reply.reason.startswith(CONNECTOR_PREFIX):
        return oc.E_CMG_CONNECTOR
    return None
