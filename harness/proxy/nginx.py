"""An nginx configuration that behaves like a CMG in front of the mock site's connection point, rendered from site.json.

The CMG's duties that plain nginx can carry: TLS with the site's CMG server certificate (whose CRL distribution point
clients check), the published URL map as ``location`` blocks with everything else refused, body size limits per
endpoint, forwarding to the connection points round-robin with the Authorization header, the public request URI and
the verified client certificate, and AADAuthInfo answered from the onboarded tenants. Two variants: ``naive`` forwards
whatever token came, ``validating`` asks the site's token validation endpoint first (``auth_request``), as the real CMG
does not forward a request that carries an invalid token.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmg_protocol import urlmap
from cmg_protocol.statuses import (
    BAD_REQUEST,
    CONNECTION_POINT_TIMEOUT,
    INVALID_TOKEN,
    METHOD_NOT_ALLOWED,
    NO_CONNECTION_POINT,
    NOT_IN_URL_MAP,
    TENANT_NOT_ONBOARDED,
    TOO_LARGE,
)
from harness.proxy.site import ProxyConfigError, ProxySite, RenderedDirectory, free_port, parse_listen
from mock_site.cmg import SERVICE_METADATA_XML
from mock_site.manifest import SiteManifest

NAIVE = "naive"
VALIDATING = "validating"
VARIANTS = (NAIVE, VALIDATING)

CONFIG_NAME = "nginx.conf"
PROXY_INFO_NAME = "proxy.json"

# Status texts nginx answers with itself: the mock CMG's, so the client reads the same refusals from either proxy.
TOKEN_CHECK_FAILED = "CMGService_Token_Validation_Unavailable"  # synthetic: not the public ConfigMgr format

# Headers between the proxy and the connection point (mock_site.cmg's names).
CLIENT_CERT_HEADER = "X-CMG-Client-Cert"  # synthetic: not the public ConfigMgr format
REQUEST_URI_HEADER = "X-CMG-Request-URI"  # synthetic: not the public ConfigMgr format
STATUS_TEXT_HEADER = "X-CMG-Status-Text"  # synthetic: not the public ConfigMgr format

#: PEM lines (64 characters each) the client-certificate conversion joins: 128 lines hold a DER certificate of ~6 KB.
PEM_JOIN_STAGES = (64, 32, 16, 8, 4, 2, 1)

#: The proxy's own refusals: the status nginx raises, the status answered, the page's name, the CMG's status text.
_REFUSALS = (
    (400, 400, "bad-request", BAD_REQUEST),
    (401, 401, "invalid-token", INVALID_TOKEN),
    (404, 404, "not-in-url-map", NOT_IN_URL_MAP),
    (405, 405, "method-not-allowed", METHOD_NOT_ALLOWED),
    (413, 413, "too-large", TOO_LARGE),
    (500, 503, "token-check-failed", TOKEN_CHECK_FAILED),  # auth_request could not reach the validator
    (502, 503, "no-connection-point", NO_CONNECTION_POINT),
    (504, 504, "connection-point-timeout", CONNECTION_POINT_TIMEOUT),
)
_REFUSED = "/_cmg/refused"

_GET = ("GET", "HEAD")
_ROLE_ID = "[0-9]{1,20}"
_GUID = "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_CONTENT_ID = "[A-Za-z0-9_.-]{1,64}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One endpoint under a role id in the CMG's URL map, as nginx must treat it."""

    name: str  # the MP path, as urlmap names it
    methods: tuple[str, ...]
    max_body_bytes: int  # 0: the endpoint takes no body
    query: str  # "none" | "mplist" | "policy"
    cert_or_token: bool  # a MutualAuth client certificate may stand in for the CCM token


#: The endpoints under ``/<prefix>/<role id>/``; sizes and methods are urlmap's (a test holds the two together).
ROLE_ENDPOINTS: tuple[Endpoint, ...] = (
    # synthetic: not the public ConfigMgr format (CCM_STS taking a POST)
    Endpoint(urlmap.CCM_STS, ("POST",), urlmap.STS_MAX_BODY_BYTES, "none", False),
    Endpoint(urlmap.CCM_SYSTEM_TOKENAUTH, ("CCM_POST",), urlmap.MESSAGING_MAX_BODY_BYTES, "none", False),
    Endpoint(urlmap.CCM_SYSTEM, ("CCM_POST",), urlmap.MESSAGING_MAX_BODY_BYTES, "none", True),
    Endpoint(urlmap.CCM_CLIENT, _GET, 0, "none", False),
    Endpoint(urlmap.SMS_AUT, _GET, 0, "mplist", True),
    Endpoint(urlmap.SMS_POL, _GET, 0, "policy", True),
)


@dataclass(frozen=True, slots=True)
class RenderedProxy(RenderedDirectory):
    """A rendered configuration directory: where nginx's files live, the proxy's URL, and how to start it."""

    @property
    def config_file(self) -> Path:
        return self.directory / CONFIG_NAME

    @property
    def error_log(self) -> Path:
        return self.directory / "logs" / "error.log"

    @property
    def access_log(self) -> Path:
        return self.directory / "logs" / "access.log"

    @property
    def pid_file(self) -> Path:
        return self.directory / "nginx.pid"

    def command(self, nginx: str = "nginx", *, test: bool = False) -> list[str]:
        """nginx's argv for this directory, in the foreground (``test``: only check the configuration)."""
        argv = [nginx, "-p", f"{self.directory}/", "-c", str(self.config_file), "-e", str(self.error_log)]
        return argv + (["-t", "-q"] if test else ["-g", "daemon off;"])

    def command_line(self, nginx: str = "nginx") -> str:
        return shlex.join(self.command(nginx))


def render(manifest: SiteManifest, *, variant: str, out_dir: Path | str, listen: str = "127.0.0.1:0",
           worker_processes: int = 1) -> RenderedProxy:
    """Write ``nginx.conf`` (and ``proxy.json``) into ``out_dir`` for the site in ``manifest``; return where it is."""
    if variant not in VARIANTS:
        raise ProxyConfigError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if not 1 <= worker_processes <= 64:
        raise ProxyConfigError(f"worker processes must be 1..64, got {worker_processes!r}")
    site = ProxySite.from_manifest(manifest)
    host, port = parse_listen(listen)
    directory = Path(out_dir).resolve()
    if directory.exists() and not directory.is_dir():
        raise ProxyConfigError(f"output {str(directory)!r} exists and is not a directory")
    for sub in ("logs", "temp"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    rendered = RenderedProxy(directory=directory, variant=variant, host=host, port=port or free_port(host))
    rendered.config_file.write_text(render_config(site, rendered, worker_processes=worker_processes))
    info = {"url": rendered.url, "variant": variant, "config": str(rendered.config_file),
            "command": rendered.command(), "pid_file": str(rendered.pid_file), "ca_file": str(site.ca_file)}
    (directory / PROXY_INFO_NAME).write_text(json.dumps(info, indent=2) + "\n")
    return rendered


def render_config(site: ProxySite, rendered: RenderedProxy, *, worker_processes: int = 1,
                  worker_user: str | None = None) -> str:
    """The text of ``nginx.conf`` (writes nothing); ``worker_user`` None: ``nobody`` when started as root."""
    validating = rendered.variant == VALIDATING
    d = rendered.directory
    out = _Writer()
    out.line(f"# CMG-style proxy in front of the mock site's connection point: variant {rendered.variant}.")
    out.line(f"# Rendered by `cmg-harness proxy-config`; nginx's own files (pid, logs, temp) are under {d}.")
    out.line(f"worker_processes {worker_processes};")
    out.line(f"pid {d / 'nginx.pid'};")
    out.line(f"error_log {d / 'logs' / 'error.log'} notice;")
    user = _worker_user() if worker_user is None else worker_user
    if user:
        out.line(f"user {user};  # nginx runs as root here; its workers do not")
    out.block("events", lambda: out.line("worker_connections 4096;"))
    out.block("http", lambda: _http(out, site, rendered, validating))
    return out.text()


# --- the http block --------------------------------------------------------------------------------------------------


def _http(out: _Writer, site: ProxySite, rendered: RenderedProxy, validating: bool) -> None:
    d = rendered.directory
    out.line("log_format cmg '$remote_addr [$time_local] \"$request\" $status $request_length $bytes_sent '")
    out.line("               'rt=$request_time cp=$upstream_addr cp_status=$upstream_status';")
    out.line(f"access_log {d / 'logs' / 'access.log'} cmg;")
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        out.line(f"{kind}_temp_path {d / 'temp' / kind};")
    out.line("server_tokens off;")
    out.line("variables_hash_max_size 4096;  # the client-certificate stages name many captures")
    out.line("default_type application/octet-stream;")
    out.line("# Message bodies (at most 1 MiB in the URL map) stay in memory; responses stream without temp files.")
    out.line(f"client_body_buffer_size {urlmap.MESSAGING_MAX_BODY_BYTES};")
    out.line("proxy_max_temp_file_size 0;")
    out.line("keepalive_requests 100000;")
    out.blank()

    def connection_points() -> None:
        for host, port in site.connection_points:
            out.line(f"server {host}:{port};")
        out.line("keepalive 64;")
    out.comment("The connection points, round-robin as the CMG spreads requests over them.")
    out.block("upstream cmg_connection_points", connection_points)
    if validating:
        vhost, vport, _ = site.token_validation

        def validator() -> None:
            out.line(f"server {vhost}:{vport};")
            out.line("keepalive 16;")
        out.block("upstream cmg_token_validation", validator)
    out.blank()
    _maps(out, site)
    out.block("server", lambda: _server(out, site, rendered, validating))


def _maps(out: _Writer, site: ProxySite) -> None:
    out.comment("The request path without its query, as the connection point logs the external URL.")

    def request_path() -> None:
        out.line('"~^(?<cmg_raw_path>[^?]*)" $cmg_raw_path;')
    out.block("map $request_uri $cmg_request_path", request_path)
    out.comment("Whether a request carries a body (for the endpoints that take none).")

    def has_body() -> None:
        out.line("default 1;")
        out.line('"|" 0;')
        out.line('"0|" 0;')
    out.block('map "$http_content_length|$http_transfer_encoding" $cmg_has_body', has_body)

    out.comment("AADAuthInfo for the onboarded tenants (the reply body: synthetic, not the public ConfigMgr format).")

    def aad() -> None:
        out.line('default "";')
        for tenant in site.tenants:
            document = json.dumps({"AADTENANTID": tenant.tenant_id, "AADCLIENTAPPID": tenant.client_app_id,
                                   "AADRESOURCEURI": tenant.resource_uri})
            out.line(f"\"~*^{tenant.tenant_id}$\" '{document}';")
    out.block("map $arg_tenantid $cmg_aad_auth_info", aad)
    _client_cert_maps(out)


def _client_cert_maps(out: _Writer) -> None:
    """nginx holds the verified client certificate as PEM; the connection point takes base64 DER: strip and join."""
    out.comment("The verified client certificate as base64 DER (what the connection point takes): the PEM body")
    out.comment("without its armour, its lines joined by stages that each remove 64, 32, ... 1 line breaks.")

    def body() -> None:
        out.line('default "";')
        out.line('"~^-----BEGIN CERTIFICATE-----\\n(?<cmg_pem_body>[A-Za-z0-9+/=\\n]+?)\\n?-----END CERTIFICATE-----'
                 '\\n?$" $cmg_pem_body;')
    out.block("map $ssl_client_raw_cert $cmg_pem_0", body)
    source = "$cmg_pem_0"
    for index, breaks in enumerate(PEM_JOIN_STAGES, start=1):
        names = [f"cmg_pem{index}_{part}" for part in range(breaks + 1)]
        pattern = "".join(f"(?<{name}>[^\\n]*)\\n" for name in names[:-1]) + f"(?<{names[-1]}>[\\s\\S]*)"
        target = f"$cmg_pem_{index}"

        def stage(pattern: str = pattern, names: list[str] = names, source: str = source) -> None:
            out.line(f"default {source};")
            out.line(f'"~^{pattern}$" {"".join("$" + name for name in names)};')
        out.block(f"map {source} {target}", stage)
        source = target

    def verified() -> None:
        out.line('default "";')
        out.line(f"SUCCESS {source};")
    out.block("map $ssl_client_verify $cmg_client_cert", verified)
    out.blank()


def _server(out: _Writer, site: ProxySite, rendered: RenderedProxy, validating: bool) -> None:
    out.line(f"listen {rendered.host}:{rendered.port} ssl;")
    out.line("server_name _;")
    out.comment("The CMG server certificate; clients find its CRL distribution point in it and check revocation.")
    out.line(f"ssl_certificate {site.cmg_cert_file};")
    out.line(f"ssl_certificate_key {site.cmg_key_file};")
    out.line("ssl_protocols TLSv1.2 TLSv1.3;")
    out.comment("PKI clients on CCM_Proxy_MutualAuth present a client certificate issued by the site CA.")
    out.line(f"ssl_client_certificate {site.ca_file};")
    out.line("ssl_verify_client optional;")
    out.line("ssl_verify_depth 3;")
    out.blank()
    out.comment("To the connection points over HTTPS, verifying their certificate against the site CA.")
    out.line("proxy_http_version 1.1;")
    out.line("proxy_ssl_verify on;")
    out.comment("The connection points take work only from the CMG: present its identity (mutual TLS).")
    out.line(f"proxy_ssl_certificate {site.cmg_identity_cert_file};")
    out.line(f"proxy_ssl_certificate_key {site.cmg_identity_key_file};")
    out.line(f"proxy_ssl_trusted_certificate {site.ca_file};")
    out.line(f"proxy_ssl_name {site.cp_server_name};")
    out.line("proxy_ssl_session_reuse on;")
    out.line("proxy_connect_timeout 10s;")
    out.line("proxy_read_timeout 60s;")
    out.line("proxy_send_timeout 60s;")
    out.blank()
    out.comment("Refusals in the CMG's words (the client reads X-CMG-Status-Text). 401 comes only from auth_request:")
    out.comment("proxied answers pass through untouched (proxy_intercept_errors is off). The pages are URIs, not named")
    out.comment("locations, so that nginx's own 400s for an unparsable request line get them too.")
    for status, _, slug, _ in _REFUSALS:
        out.line(f"error_page {status} = {_REFUSED}/{slug};")
    for _, answer, slug, text in _REFUSALS:
        _refusal_location(out, slug, text, answer)
    out.blank()
    out.comment("The URL map matches raw paths: no absolute-form target, no dot or empty segment, no backslash,")
    out.comment("no percent-encoded separator, dot, control or non-ASCII byte (nginx would otherwise normalise them).")
    bad_request = f"rewrite ^ {_REFUSED}/bad-request last;"
    out.line(f'if ($request ~ "^[^ ]+ [^/]") {{ {bad_request} }}')
    out.line('if ($cmg_request_path ~ "//|/\\.\\.?(/|$)|\\x5c|%(2[EeFf]|5[Cc]|[01][0-9A-Fa-f]|7[Ff]|[89A-Fa-f][0-9A-Fa-f])'
             f'|%([^0-9A-Fa-f]|.[^0-9A-Fa-f]|.?$)|[^\\x21-\\x7e]") {{ {bad_request} }}')
    out.blank()
    out.block("location /", lambda: out.line("return 404;"))
    _aad_location(out)
    for prefix in (urlmap.SERVER_AUTH, urlmap.MUTUAL_AUTH):
        for endpoint in ROLE_ENDPOINTS:
            _role_location(out, prefix, endpoint, validating)
    _content_location(out, validating)
    _service_metadata_locations(out, validating)
    if validating:
        _validation_locations(out, site)


def _refusal_location(out: _Writer, slug: str, text: str, status: int) -> None:
    def body() -> None:
        out.line("internal;")
        out.line(f"add_header {STATUS_TEXT_HEADER} {text} always;")
        out.line("default_type text/plain;")
        out.line(f'return {status} "{text}\\n";')
    out.block(f"location = {_REFUSED}/{slug}", body)


def _aad_location(out: _Writer) -> None:
    out.comment("AADAuthInfo: answered here from the onboarded tenants (nothing behind the CMG serves it).")

    def body() -> None:
        out.line(f'if ($arg_tenantid !~ "^{_GUID}$") {{ return 400; }}')
        _methods(out, _GET)
        out.line("default_type application/json;")
        out.line('if ($cmg_aad_auth_info = "") {')
        out.line(f"    add_header {STATUS_TEXT_HEADER} {TENANT_NOT_ONBOARDED} always;")
        out.line("    return 404 '{}';")
        out.line("}")
        out.line("return 200 $cmg_aad_auth_info;")
    out.block(f'location ~* "^/{urlmap.SERVER_AUTH}/{urlmap.AAD_AUTH_INFO}$"', body)


def _role_location(out: _Writer, prefix: str, endpoint: Endpoint, validating: bool) -> None:
    path = _regex_literal(endpoint.name)

    def body() -> None:
        # In the mock CMG's order: the URL map (path and query), then the method, then the body size.
        if endpoint.query == "none":
            out.line('if ($args != "") { return 400; }')
        elif endpoint.query == "mplist":
            out.line(f'if ($args !~* "^{urlmap.SMS_AUT_QUERY_PATTERN}$") {{ return 404; }}')
        else:
            out.line('if ($args = "") { return 400; }')
        _methods(out, endpoint.methods)
        _body_limit(out, endpoint.max_body_bytes)
        # ServerAuth is TLS without a client certificate: there only a token authenticates.
        by_cert = endpoint.cert_or_token and prefix == urlmap.MUTUAL_AUTH
        if validating:
            # The token service takes an Entra token, every other endpoint a CCM token (or a certificate).
            check = "-entra" if endpoint.name == urlmap.CCM_STS else "-token-or-cert" if by_cert else "-token"
            out.line(f"auth_request /_cmg/validate{check};")
        _forward(out, client_cert=by_cert)
    out.block(f'location ~* "^/{prefix}/{_ROLE_ID}/{path}$"', body)


def _content_location(out: _Writer, validating: bool) -> None:
    def body() -> None:
        for name in ("pid", "cid"):
            out.line(f'if ($arg_{name} !~ "^{_CONTENT_ID}$") {{ return 400; }}')
        _methods(out, _GET)
        _body_limit(out, 0)
        if validating:
            out.line("auth_request /_cmg/validate-token-or-cert;")
        _forward(out, client_cert=True)
    out.block(f'location ~* "^/{_regex_literal(urlmap.CONTENT)}$"', body)


def _service_metadata_locations(out: _Writer, validating: bool) -> None:
    out.comment("ServiceMetadata: the client's certificate check, answered here after the token check (try_files runs")
    out.comment("after auth_request; a plain return would answer before it).")
    for prefix in (urlmap.SERVER_AUTH, urlmap.MUTUAL_AUTH):
        def body(prefix: str = prefix) -> None:
            out.line('if ($args != "") { return 400; }')
            _methods(out, ("GET", "HEAD"))
            _body_limit(out, 0)
            if validating:
                by_cert = prefix == urlmap.MUTUAL_AUTH
                out.line(f"auth_request /_cmg/validate{'-token-or-cert' if by_cert else '-token'};")
            out.line("try_files /.cmg-no-such-file @cmg_service_metadata;")
        out.block(f'location ~* "^/{prefix}/{urlmap.SERVICE_METADATA}$"', body)

    def answer() -> None:
        out.line("default_type text/xml;")
        out.line(f"return 200 '{SERVICE_METADATA_XML}';")
    out.block("location @cmg_service_metadata", answer)


def _validation_locations(out: _Writer, site: ProxySite) -> None:
    _, _, path = site.token_validation
    out.comment("Edge validation (auth_request): the site's validator answers 204 for a valid CCM token (for CCM_STS,")
    out.comment("with ?token=entra, a valid Entra token) and 401 otherwise.")

    def common(query: str = "") -> None:
        out.line("internal;")
        out.line(f"proxy_pass http://cmg_token_validation{path}{query};")
        out.line("proxy_method GET;")
        out.line("proxy_pass_request_body off;")
        out.line('proxy_set_header Content-Length "";')
        out.line('proxy_set_header Content-Type "";')
        out.line(f'proxy_set_header {CLIENT_CERT_HEADER} "";')
        out.line('proxy_set_header Connection "";')
        out.line("proxy_connect_timeout 5s;")
        out.line("proxy_read_timeout 10s;")
    out.block("location = /_cmg/validate-token", common)
    out.block("location = /_cmg/validate-entra", lambda: common("?token=entra"))

    def cert_or_token() -> None:
        out.comment("A client certificate the TLS layer verified against the site CA is enough on MutualAuth.")
        out.line("if ($ssl_client_verify = SUCCESS) { return 204; }")
        common()
    out.block("location = /_cmg/validate-token-or-cert", cert_or_token)


def _methods(out: _Writer, methods: tuple[str, ...]) -> None:
    out.line(f'if ($request_method !~ "^({"|".join(methods)})$") {{ return 405; }}')


def _body_limit(out: _Writer, max_body_bytes: int) -> None:
    if max_body_bytes:
        out.line(f"client_max_body_size {max_body_bytes};")
    else:
        out.line("if ($cmg_has_body) { return 413; }")


def _forward(out: _Writer, *, client_cert: bool) -> None:
    # Every header the client sent goes on (Authorization above all), but the CMG's own headers are always ours.
    value = "$cmg_client_cert" if client_cert else '""'
    out.line(f"proxy_set_header {CLIENT_CERT_HEADER} {value};")
    out.line(f'proxy_set_header {REQUEST_URI_HEADER} "https://$host:$server_port$cmg_request_path";')
    out.line('proxy_set_header Connection "";')
    out.line("proxy_pass https://cmg_connection_points;")


# --- helpers ---------------------------------------------------------------------------------------------------------


class _Writer:
    """Indented nginx configuration text."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._depth = 0

    def line(self, text: str) -> None:
        self._lines.append("    " * self._depth + text)

    def comment(self, text: str) -> None:
        self.line(f"# {text}")

    def blank(self) -> None:
        self._lines.append("")

    def block(self, head: str, fill: Any) -> None:
        self.line(f"{head} {{")
        self._depth += 1
        fill()
        self._depth -= 1
        self.line("}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def _regex_literal(name: str) -> str:
    return name.replace(".", "\\.")


def _worker_user() -> str:
    """``nobody`` and its group when nginx starts as root (its compiled-in group may not exist here), else nothing."""
    if os.geteuid() != 0:
        return ""
    import grp
    import pwd

    try:
        nobody = pwd.getpwnam("nobody")
        return f"nobody {grp.getgrgid(nobody.pw_gid).gr_name}"
    except KeyError:
        return ""
