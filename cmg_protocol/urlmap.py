"""The CMG's published URL map: which external paths it forwards, with what authentication, to which MP path."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import parse_qsl, unquote

SERVER_AUTH = "CCM_Proxy_ServerAuth"
MUTUAL_AUTH = "CCM_Proxy_MutualAuth"
CONTENT_SERVICE = "downloadrestservice.svc"

AAD_AUTH_INFO = "AADAuthInfo"
CCM_STS = "CCM_STS"
CCM_SYSTEM_TOKENAUTH = "ccm_system_tokenauth/request"
CCM_SYSTEM = "ccm_system/request"
CCM_CLIENT = "CCM_Client/ccmsetup.cab"
SMS_AUT = "SMS_MP/.sms_aut"
SMS_POL = "SMS_MP/.sms_pol"
CONTENT = "downloadrestservice.svc/getcontentxmlsecure"
#: The client's check of the CMG's server certificate, answered by the CMG itself (no role id in the path).
SERVICE_METADATA = "ServiceMetadata"

#: The ``.sms_aut`` verbs the CMG publishes: the query names the verb; MPLIST1/MPLIST2 add ``&<site code>``.
SMS_AUT_VERBS = ("MPLIST", "MPLIST1", "MPLIST2", "MPCERT", "SITESIGNCERT", "MPKEYINFORMATION", "MPKEYINFORMATIONMEDIA")
#: The verbs that name a site after ``&``.
SMS_AUT_SITE_VERBS = ("MPLIST1", "MPLIST2")
#: A ConfigMgr site code: three letters or digits (spelt out: braces would end an HAProxy anonymous ACL).
SITE_CODE_PATTERN = "[A-Za-z0-9][A-Za-z0-9][A-Za-z0-9]"
#: The whole ``.sms_aut`` query, case-insensitive (proxies under test render their URL map from it).
SMS_AUT_QUERY_PATTERN = (
    f"(?:{'|'.join(v for v in SMS_AUT_VERBS if v not in SMS_AUT_SITE_VERBS)}"
    f"|(?:{'|'.join(SMS_AUT_SITE_VERBS)})&{SITE_CODE_PATTERN})"
)

# synthetic: not the public ConfigMgr format (the per-endpoint size limits; the CMG's real ones are not published)
STS_MAX_BODY_BYTES = 64 * 1024
MESSAGING_MAX_BODY_BYTES = 1024 * 1024

_ROLE_ID = re.compile(r"[0-9]{1,20}")
_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_CONTENT_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Printable ASCII without space, '#' and backslash: what may pass on to the MP in a query.
_QUERY = re.compile(r"[!-\"$-\[\]-~]*")
_SMS_AUT_QUERY = re.compile(SMS_AUT_QUERY_PATTERN, re.IGNORECASE)


class AuthKind(Enum):
    """What a route needs before the CMG forwards it."""

    NONE = "none"
    ENTRA_TOKEN = "entra_token"
    CCM_TOKEN = "ccm_token"
    CLIENT_CERT_OR_TOKEN = "client_cert_or_token"


class UrlMapError(ValueError):
    """A path the CMG refuses: ``status`` 404 when it is not in the URL map, 400 when it is malformed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Route:
    """One matched request: the endpoint, its auth, and where the connection point sends it on the MP."""

    endpoint: str
    auth: AuthKind
    prefix: str
    role_id: str | None
    internal_path: str
    request_uri: str
    route_template: str
    max_body_bytes: int
    methods: tuple[str, ...]
    params: tuple[tuple[str, str], ...] = ()

    def param(self, name: str) -> str | None:
        """A query parameter the route validated (``TenantID``, ``pid``, ``cid``), or None."""
        return next((value for key, value in self.params if key == name), None)


@dataclass(frozen=True, slots=True)
class _Endpoint:
    name: str
    auth: AuthKind
    max_body_bytes: int
    methods: tuple[str, ...]
    query: str  # "none" | "sms_aut" | "policy"


_GET = ("GET", "HEAD")
# Keyed by the lower-cased path segments after /<prefix>/<id>/; names keep the MP's canonical casing.
_ENDPOINTS: dict[tuple[str, ...], _Endpoint] = {
    # synthetic: not the public ConfigMgr format (CCM_STS taking a POST)
    ("ccm_sts",): _Endpoint(CCM_STS, AuthKind.ENTRA_TOKEN, STS_MAX_BODY_BYTES, ("POST",), "none"),
    ("ccm_system_tokenauth", "request"): _Endpoint(
        CCM_SYSTEM_TOKENAUTH, AuthKind.CCM_TOKEN, MESSAGING_MAX_BODY_BYTES, ("CCM_POST",), "none"
    ),
    ("ccm_system", "request"): _Endpoint(
        CCM_SYSTEM, AuthKind.CLIENT_CERT_OR_TOKEN, MESSAGING_MAX_BODY_BYTES, ("CCM_POST",), "none"
    ),
    ("ccm_client", "ccmsetup.cab"): _Endpoint(CCM_CLIENT, AuthKind.CCM_TOKEN, 0, _GET, "none"),
    ("sms_mp", ".sms_aut"): _Endpoint(SMS_AUT, AuthKind.CLIENT_CERT_OR_TOKEN, 0, _GET, "sms_aut"),
    ("sms_mp", ".sms_pol"): _Endpoint(SMS_POL, AuthKind.CLIENT_CERT_OR_TOKEN, 0, _GET, "policy"),
}
_PREFIXES = {SERVER_AUTH.lower(): SERVER_AUTH, MUTUAL_AUTH.lower(): MUTUAL_AUTH}


def _bad(reason: str) -> UrlMapError:
    return UrlMapError(400, reason)


def _not_in_map(path: str, why: str = "") -> UrlMapError:
    return UrlMapError(404, f"{path!r} is not in the CMG's URL map{': ' + why if why else ''}")


_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def _has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


def _check_path(path: str) -> list[str]:
    """Refuse what could make a path leave the URL map or choose its own host; return the decoded segments."""
    if not path.isascii():
        raise _bad(f"path has non-ASCII characters: {path!r}")
    if _has_control(path):
        raise _bad(f"path has a space or control character: {path!r}")
    if "\\" in path:
        raise _bad(f"path has a backslash: {path!r}")
    if "#" in path:
        raise _bad(f"path has a fragment: {path!r}")
    if not path.startswith("/"):
        raise _bad(f"the CMG takes origin-form paths only, not an absolute URL or relative path: {path!r}")
    if "//" in path:
        raise _bad(f"path has an empty segment ('//'), which could name a second host: {path!r}")
    segments = []
    for raw in path[1:].split("/"):
        segment = raw
        if "%" in raw:
            if _BAD_PERCENT.search(raw):
                raise _bad(f"malformed percent-encoding in {raw!r}")
            try:
                segment = unquote(raw, errors="strict")
            except UnicodeDecodeError:
                raise _bad(f"percent-encoding in {raw!r} is not UTF-8") from None
            if "/" in segment or "\\" in segment or _has_control(segment) or not segment.isascii():
                raise _bad(f"percent-encoded separator or control character in {raw!r}")
        if segment in (".", ".."):
            raise _bad(f"path has a dot segment {raw!r}: {path!r}")
        segments.append(segment)
    return segments


def _check_query(query: str) -> None:
    if not _QUERY.fullmatch(query):
        raise _bad(f"query has a space, control, non-ASCII, '#' or backslash character: {query!r}")
    if _BAD_PERCENT.search(query):
        raise _bad(f"malformed percent-encoding in the query: {query!r}")


def _query_params(query: str) -> dict[str, str]:
    # Parameter names are matched without case, like the rest of the map.
    return {key.lower(): value for key, value in parse_qsl(query, keep_blank_values=True)}


def _aad_auth_info(request_uri: str, query: str) -> Route:
    tenant_id = _query_params(query).get("tenantid", "")
    if not _GUID.fullmatch(tenant_id):
        raise _bad(f"AADAuthInfo needs a GUID TenantID, got {tenant_id!r}")
    return Route(
        endpoint=AAD_AUTH_INFO,
        auth=AuthKind.NONE,
        prefix=SERVER_AUTH,
        role_id=None,
        # synthetic: not the public ConfigMgr format (where behind the CMG AADAuthInfo is answered)
        internal_path=f"/{AAD_AUTH_INFO}?TenantID={tenant_id}",
        request_uri=request_uri,
        route_template=f"/{SERVER_AUTH}/{AAD_AUTH_INFO}",
        max_body_bytes=0,
        methods=_GET,
        params=(("TenantID", tenant_id),),
    )


def _content(request_uri: str, query: str) -> Route:
    params = _query_params(query)
    pid, cid = params.get("pid", ""), params.get("cid", "")
    for name, value in (("pid", pid), ("cid", cid)):
        if not _CONTENT_ID.fullmatch(value):
            raise _bad(f"content request needs a package/content id as {name}, got {value!r}")
    return Route(
        endpoint=CONTENT,
        # A PKI client downloads with its certificate, an Entra-joined one with its CCM token.
        auth=AuthKind.CLIENT_CERT_OR_TOKEN,
        prefix="",
        role_id=None,
        internal_path=f"/{CONTENT}?pid={pid}&cid={cid}",
        request_uri=request_uri,
        route_template=f"/{CONTENT}",
        max_body_bytes=0,
        methods=_GET,
        params=(("pid", pid), ("cid", cid)),
    )


def _service_metadata(prefix: str, request_uri: str, query: str) -> Route:
    if query:
        raise _bad(f"{SERVICE_METADATA} takes no query, got {query!r}")
    return Route(
        endpoint=SERVICE_METADATA,
        # The client's certificate check carries its credential: a bad token is answered 401 there.
        auth=AuthKind.CCM_TOKEN if prefix == SERVER_AUTH else AuthKind.CLIENT_CERT_OR_TOKEN,
        prefix=prefix,
        role_id=None,
        # synthetic: not the public ConfigMgr format (the CMG answers it itself; nothing is forwarded)
        internal_path=f"/{SERVICE_METADATA}",
        request_uri=request_uri,
        route_template=f"/{prefix}/{SERVICE_METADATA}",
        max_body_bytes=0,
        methods=_GET,
    )


def _endpoint_query(endpoint: _Endpoint, path: str, query: str) -> str:
    if endpoint.query == "none":
        if query:
            raise _bad(f"{endpoint.name} takes no query, got {query!r}")
        return ""
    if endpoint.query == "sms_aut":
        if not _SMS_AUT_QUERY.fullmatch(query):
            raise _not_in_map(f"{path}?{query}", f".sms_aut publishes only {', '.join(SMS_AUT_VERBS)}")
        verb, separator, site = query.partition("&")
        # The MP gets the verb in its canonical casing and the site code upper-cased, as ConfigMgr writes them.
        return f"?{verb.upper()}{separator}{site.upper()}"
    if not query:
        raise _bad(f"{endpoint.name} needs a query naming the policy: {path!r}")
    return f"?{query}"


def match(path: str, query: str = "") -> Route:
    """Match a raw (not percent-decoded) request path and query against the URL map, or raise UrlMapError."""
    if len(path) + len(query) > MAX_CACHED_TARGET_CHARS:
        return _match(path, query)
    return _cached_match(path, query)


def _match(path: str, query: str) -> Route:
    if "?" in path:
        if query:
            raise _bad(f"query given twice: in the path {path!r} and as {query!r}")
        path, _, query = path.partition("?")
    segments = _check_path(path)
    _check_query(query)
    folded = [segment.lower() for segment in segments]

    if folded == [CONTENT_SERVICE, "getcontentxmlsecure"]:
        return _content(path, query)
    prefix = _PREFIXES.get(folded[0])
    if prefix is None or len(segments) < 2:
        raise _not_in_map(path)
    if folded[1] == AAD_AUTH_INFO.lower() and len(segments) == 2:
        if prefix != SERVER_AUTH:
            raise _not_in_map(path, "AADAuthInfo is published on CCM_Proxy_ServerAuth only")
        return _aad_auth_info(path, query)
    if folded[1] == SERVICE_METADATA.lower() and len(segments) == 2:
        return _service_metadata(prefix, path, query)
    role_id = segments[1]
    if not _ROLE_ID.fullmatch(role_id):
        raise _not_in_map(path, f"role id {role_id!r} is not a number")
    endpoint = _ENDPOINTS.get(tuple(folded[2:]))
    if endpoint is None:
        raise _not_in_map(path)
    auth = endpoint.auth
    # ServerAuth is TLS without a client certificate, so there only the CCM token can authenticate.
    if auth is AuthKind.CLIENT_CERT_OR_TOKEN and prefix == SERVER_AUTH:
        auth = AuthKind.CCM_TOKEN
    return Route(
        endpoint=endpoint.name,
        auth=auth,
        prefix=prefix,
        role_id=role_id,
        internal_path=f"/{endpoint.name}{_endpoint_query(endpoint, path, query)}",
        request_uri=path,
        route_template=f"/{prefix}/{{id}}/{endpoint.name}",
        max_body_bytes=endpoint.max_body_bytes,
        methods=endpoint.methods,
    )


#: Every device polls the same few paths, and a Route is immutable and a function of the path and query alone: matches
#: are remembered (by the exact text; refusals are not, so a bad target is checked and refused every time). Bounded in
#: entries, and long targets (the map takes up to 16 KiB) are matched afresh, so the cache stays well under a MB.
MAX_CACHED_TARGET_CHARS = 512
_cached_match = functools.lru_cache(maxsize=1024)(_match)


# --- builders for the client ---------------------------------------------------------------------------------------


def _role_path(prefix: str, role_id: str, tail: str) -> str:
    if not _ROLE_ID.fullmatch(role_id):
        raise UrlMapError(400, f"role id must be digits, got {role_id!r}")
    base = f"/{prefix}/{role_id}"
    if not tail.lstrip("/"):
        return base  # the CCMHOSTNAME-style base the client appends endpoints to
    path = f"{base}/{tail.lstrip('/')}"
    match(path)  # a builder never hands out a path the CMG would refuse
    return path


def server_auth_path(role_id: str, tail: str) -> str:
    """``/CCM_Proxy_ServerAuth/<role id>/<tail>``; ``tail`` may carry a query; an empty ``tail`` gives the base."""
    return _role_path(SERVER_AUTH, role_id, tail)


def mutual_auth_path(role_id: str, tail: str) -> str:
    """``/CCM_Proxy_MutualAuth/<role id>/<tail>``; ``tail`` may carry a query; an empty ``tail`` gives the base."""
    return _role_path(MUTUAL_AUTH, role_id, tail)


def aad_auth_info_path(tenant_id: str) -> str:
    """The path ccmsetup asks for a tenant's Entra app properties with."""
    if not _GUID.fullmatch(tenant_id):
        raise UrlMapError(400, f"tenant id must be a GUID, got {tenant_id!r}")
    return f"/{SERVER_AUTH}/{AAD_AUTH_INFO}?TenantID={tenant_id}"


def sms_aut_path(prefix: str, role_id: str, verb: str, site_code: str = "") -> str:
    """``/<prefix>/<role id>/SMS_MP/.sms_aut?<verb>`` (``&<site code>`` for MPLIST1 and MPLIST2)."""
    query = f"{verb}&{site_code}" if site_code else verb
    if not _SMS_AUT_QUERY.fullmatch(query):
        raise UrlMapError(400, f".sms_aut takes {', '.join(SMS_AUT_VERBS)} (MPLIST1/MPLIST2 with a site code), "
                               f"got {query!r}")
    return _role_path(prefix, role_id, f"{SMS_AUT}?{query}")


def service_metadata_path(prefix: str) -> str:
    """The path a client checks the CMG's server certificate with."""
    if prefix not in (SERVER_AUTH, MUTUAL_AUTH):
        raise UrlMapError(400, f"prefix must be {SERVER_AUTH} or {MUTUAL_AUTH}, got {prefix!r}")
    return f"/{prefix}/{SERVICE_METADATA}"


def content_path(package_id: str, content_id: str) -> str:
    """The content-enabled CMG's download path for a package's content."""
    for name, value in (("package id", package_id), ("content id", content_id)):
        if not _CONTENT_ID.fullmatch(value):
            raise UrlMapError(400, f"{name} must be letters, digits, '_', '.' or '-', got {value!r}")
    return f"/{CONTENT}?pid={package_id}&cid={content_id}"
