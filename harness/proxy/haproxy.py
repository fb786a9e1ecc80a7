"""An HAProxy 2.6 configuration that behaves like a CMG in front of the mock site's connection point, from site.json.

The same duties as the nginx configuration (TLS with the site's CMG certificate, the URL map with everything else
refused, body limits per endpoint, forwarding to the connection points round-robin with the public request URI and the
verified client certificate, AADAuthInfo from the onboarded tenants), in HAProxy's words. The ``validating`` variant
checks tokens itself, with no call back into the site: ``jwt_verify`` against the CCM token signing certificate and the
Entra signing certificates (written next to the configuration), and ``alg``, ``iss``, ``aud``, ``tid``, ``nbf`` and
``exp`` read with ``jwt_header_query`` / ``jwt_payload_query``. An invalid token is answered ``401
CMGService_Invalid_Token`` (status line and ``X-CMG-Status-Text``) and never forwarded.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import ssl
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cmg_protocol import tokens, urlmap
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
from harness.proxy.nginx import (
    CLIENT_CERT_HEADER,
    PROXY_INFO_NAME,
    REQUEST_URI_HEADER,
    ROLE_ENDPOINTS,
    STATUS_TEXT_HEADER,
    VALIDATING,
    VARIANTS,
    Endpoint,
)
from harness.proxy.site import ProxyConfigError, ProxySite, RenderedDirectory, free_port, parse_listen
from mock_site.cmg import SERVICE_METADATA_XML
from mock_site.manifest import SiteManifest

CONFIG_NAME = "haproxy.cfg"
#: The CMG server certificate and its key in one file, as HAProxy's ``crt`` takes them.
SERVER_PEM_NAME = "cmg-server.pem"
#: The CMG's client identity (certificate and key in one PEM) that the proxy presents to the connection points.
IDENTITY_PEM_NAME = "cmg-identity.pem"
#: The public keys ``jwt_verify`` checks signatures with. HAProxy 2.6 reads them with PEM_read_bio_PUBKEY: a
#: SubjectPublicKeyInfo PEM, not the certificate its documentation names.
CCM_SIGNING_KEY_NAME = "ccm-signing-key.pem"
ENTRA_KEY_PREFIX = "entra-signing-key-"
#: The site's token leeway (SiteConfig.token_leeway): clock skew allowed on ``nbf`` and ``exp``, in seconds.
DEFAULT_LEEWAY_S = int(tokens.DEFAULT_LEEWAY)
#: Seconds a client has to send complete request headers (the mock site's own header timeout is the same).
HEADER_TIMEOUT_S = 30

_GUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_CONTENT_ID = "[A-Za-z0-9_.-]{1,64}"

#: The proxy's own refusals: name, status, the CMG's status text (also the reason phrase).
_REFUSALS = (
    ("bad-request", 400, BAD_REQUEST),
    ("invalid-token", 401, INVALID_TOKEN),
    ("not-in-url-map", 404, NOT_IN_URL_MAP),
    ("tenant-not-onboarded", 404, TENANT_NOT_ONBOARDED),
    ("method-not-allowed", 405, METHOD_NOT_ALLOWED),
    ("too-large", 413, TOO_LARGE),
)
#: HAProxy's own errors, answered in the CMG's words.
_ERRORS = ((400, BAD_REQUEST), (503, NO_CONNECTION_POINT), (504, CONNECTION_POINT_TIMEOUT))

# Which token an endpoint takes: only the token service and the registration path take an Entra token; a verified
# client certificate stands in for the CCM token only on MutualAuth (and the content path, which has no prefix).
_ENTRA = "entra"
_CCM_OR_ENTRA = "ccm_or_entra"
_CCM = "ccm"
_CCM_OR_CERT = "ccm_or_cert"


@dataclass(frozen=True, slots=True)
class RenderedHaproxy(RenderedDirectory):
    """A rendered HAProxy directory: its configuration, certificate files and log, the proxy's URL, how to start it."""

    @property
    def config_file(self) -> Path:
        return self.directory / CONFIG_NAME

    @property
    def error_log(self) -> Path:
        """HAProxy's messages and its access log: it logs to stdout/stderr, which the process runner writes here."""
        return self.directory / "logs" / "haproxy.log"

    @property
    def access_log(self) -> Path:
        return self.error_log

    def command(self, haproxy: str = "haproxy", *, test: bool = False) -> list[str]:
        """HAProxy's argv for this directory, in the foreground (``test``: only check the configuration)."""
        return [haproxy, "-f", str(self.config_file)] + (["-c", "-q"] if test else ["-db"])

    def command_line(self, haproxy: str = "haproxy") -> str:
        return shlex.join(self.command(haproxy))


@dataclass(frozen=True, slots=True)
class TokenKeys:
    """What the validating variant checks tokens against: public key files, issuers and audiences."""

    ccm_key: Path
    ccm_issuer: str
    entra_keys: tuple[Path, ...]
    entra_audiences: tuple[str, ...]
    tenants: tuple[str, ...]
    leeway_s: int = DEFAULT_LEEWAY_S


def render(manifest: SiteManifest, *, variant: str, out_dir: Path | str, listen: str = "127.0.0.1:0",
           threads: int = 1, entra_jwks: Mapping[str, Any] | None = None) -> RenderedHaproxy:
    """Write ``haproxy.cfg``, its certificate files and ``proxy.json`` into ``out_dir``; return where they are.

    The validating variant needs the Entra signing certificates: read from ``entra_jwks`` when given, else fetched
    from the site's mock Entra ID (``entra_url``/common/discovery/keys). Entra keys are made when the site starts, so
    render again after the site restarts.
    """
    if variant not in VARIANTS:
        raise ProxyConfigError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if not 1 <= threads <= 64:
        raise ProxyConfigError(f"threads must be 1..64, got {threads!r}")
    site = ProxySite.from_manifest(manifest)
    host, port = parse_listen(listen)
    directory = Path(out_dir).resolve()
    if directory.exists() and not directory.is_dir():
        raise ProxyConfigError(f"output {str(directory)!r} exists and is not a directory")
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    rendered = RenderedHaproxy(directory=directory, variant=variant, host=host, port=port or free_port(host))
    _write_private(directory / SERVER_PEM_NAME, site.cmg_cert_file.read_bytes().rstrip(b"\n") + b"\n"
                   + site.cmg_key_file.read_bytes())
    # HAProxy takes a client certificate and its key as one PEM: the CMG's identity, which the connection points require.
    _write_private(directory / IDENTITY_PEM_NAME, site.cmg_identity_cert_file.read_bytes().rstrip(b"\n") + b"\n"
                   + site.cmg_identity_key_file.read_bytes())
    keys = _token_keys(manifest, site, directory, entra_jwks) if variant == VALIDATING else None
    rendered.config_file.write_text(render_config(site, rendered, keys=keys, threads=threads))
    info = {"url": rendered.url, "variant": variant, "proxy": "haproxy", "config": str(rendered.config_file),
            "command": rendered.command(), "ca_file": str(site.ca_file)}
    (directory / PROXY_INFO_NAME).write_text(json.dumps(info, indent=2) + "\n")
    return rendered


def render_config(site: ProxySite, rendered: RenderedHaproxy, *, keys: TokenKeys | None, threads: int = 1) -> str:
    """The text of ``haproxy.cfg`` (writes nothing); ``keys`` is required for the validating variant."""
    validating = rendered.variant == VALIDATING
    if validating and keys is None:
        raise ProxyConfigError("the validating variant needs the token signing certificates")
    out = _Writer()
    out.line(f"# CMG-style proxy in front of the mock site's connection point: HAProxy, variant {rendered.variant}.")
    out.line("# Rendered by `cmg-harness proxy-config --proxy haproxy`.")
    out.section("global", [
        f"nbthread {threads}",
        "maxconn 4096",
        "# Logs (and the access log) go to stdout; the process runner writes them to logs/haproxy.log.",
        "log stdout format raw local0 info",
        "tune.ssl.default-dh-param 2048",
    ])
    out.section("defaults", [
        "mode http",
        "log global",
        "option http-keep-alive",
        "timeout connect 10s",
        "timeout client 60s",
        "timeout server 60s",
        f"timeout http-request {HEADER_TIMEOUT_S}s  # complete request headers within this (slow clients)",
        "timeout http-keep-alive 30s",
    ])
    out.section("frontend cmg", lambda: _frontend(out, site, rendered, keys))
    out.section("backend cmg_connection_points", lambda: _backend(out, site, rendered))
    return out.text()


# --- the frontend ----------------------------------------------------------------------------------------------------


def _frontend(out: _Writer, site: ProxySite, rendered: RenderedHaproxy, keys: TokenKeys | None) -> None:
    d = rendered.directory
    out.comment("The CMG server certificate; PKI clients on CCM_Proxy_MutualAuth present one issued by the site CA.")
    out.line(f"bind {rendered.host}:{rendered.port} ssl crt {d / SERVER_PEM_NAME} ca-file {site.ca_file} "
             "verify optional ssl-min-ver TLSv1.2")
    out.line("log-format \"%ci [%tr] \\\"%HM %HU %HV\\\" %ST %U %B rt=%Ta cp=%b/%s cp_status=%ST "
             "refusal=%[var(txn.cmg_refusal)]\"")
    out.line("option forwardfor except 127.0.0.0/8")
    for status, text in _ERRORS:
        out.line(f"http-error status {status} content-type text/plain string \"{text}\" hdr {STATUS_TEXT_HEADER} {text}")
    out.blank()
    out.comment("Decisions are taken in the mock CMG's order (URL map, query, method, body, token); the first refusal")
    out.comment("names itself in txn.cmg_refusal and is answered below, so the connection points never see it.")
    out.line("acl cmg_refused var(txn.cmg_refusal) -m found")
    mutual = f"/{urlmap.MUTUAL_AUTH}/"
    out.line(f"acl cmg_mutual path_beg -i {mutual}")
    out.line("acl cmg_cert_verified ssl_c_used ssl_c_verify 0")
    out.line("acl cmg_has_query query -m len gt 0")
    out.line("acl cmg_has_body req.hdr_val(content-length) gt 0")
    out.line("acl cmg_has_body req.hdr(transfer-encoding) -m found")
    out.blank()
    out.comment("No absolute-form target; no dot or empty segment, backslash, percent-encoded separator, dot, control or")
    out.comment("non-ASCII byte in the raw path (the same refusals as the URL map's).")
    _refuse(out, "bad-request", "!{ url_beg / }")
    _refuse(out, "bad-request", "{ path -m reg '//|/\\.\\.?(/|$)|\\x5c|%(2[EeFf]|5[Cc]|[01][0-9A-Fa-f]|7[Ff]|"
                                "[89A-Fa-f][0-9A-Fa-f])|%([^0-9A-Fa-f]|.[^0-9A-Fa-f]|.?$)|[^\\x21-\\x7e]' }")
    out.blank()
    out.comment("The URL map: txn.cmg_ep names the endpoint, txn.cmg_auth the credential it takes.")
    aad_path = f"^/{urlmap.SERVER_AUTH}/{urlmap.AAD_AUTH_INFO}$"
    out.line(f"http-request set-var(txn.cmg_ep) str(aad) if !cmg_refused {{ path -m reg -i {aad_path} }}")
    for index, endpoint in enumerate(ROLE_ENDPOINTS):
        for prefix in (urlmap.SERVER_AUTH, urlmap.MUTUAL_AUTH):
            regex = f"^/{prefix}/[0-9]{{1,20}}/{_regex_literal(endpoint.name)}$"
            auth = _auth(endpoint, prefix)
            out.line(f"http-request set-var(txn.cmg_ep) str(ep{index}) if !cmg_refused {{ path -m reg -i {regex} }}")
            out.line(f"http-request set-var(txn.cmg_auth) str({auth}) if !cmg_refused {{ path -m reg -i {regex} }}")
    content = f"^/{_regex_literal(urlmap.CONTENT)}$"
    out.line(f"http-request set-var(txn.cmg_ep) str(content) if !cmg_refused {{ path -m reg -i {content} }}")
    out.line(f"http-request set-var(txn.cmg_auth) str({_CCM_OR_CERT}) if !cmg_refused {{ path -m reg -i {content} }}")
    for prefix in (urlmap.SERVER_AUTH, urlmap.MUTUAL_AUTH):
        metadata = f"^/{prefix}/{urlmap.SERVICE_METADATA}$"
        auth = _CCM_OR_CERT if prefix == urlmap.MUTUAL_AUTH else _CCM
        out.line(f"http-request set-var(txn.cmg_ep) str(metadata) if !cmg_refused {{ path -m reg -i {metadata} }}")
        out.line(f"http-request set-var(txn.cmg_auth) str({auth}) if !cmg_refused {{ path -m reg -i {metadata} }}")
    _refuse(out, "not-in-url-map", "!{ var(txn.cmg_ep) -m found }")
    out.blank()
    out.comment("Query, method and body size per endpoint.")
    _refuse(out, "bad-request", f"{{ var(txn.cmg_ep) -m str aad }} !{{ query -m reg -i (^|&)tenantid={_GUID}(&|$) }}")
    _methods(out, "aad", ("GET", "HEAD"))
    _refuse(out, "bad-request", "{ var(txn.cmg_ep) -m str aad } cmg_has_body")
    for index, endpoint in enumerate(ROLE_ENDPOINTS):
        ep = f"{{ var(txn.cmg_ep) -m str ep{index} }}"
        if endpoint.query == "none":
            _refuse(out, "bad-request", f"{ep} cmg_has_query")
        elif endpoint.query == "mplist":
            _refuse(out, "not-in-url-map", f"{ep} !{{ query -m reg -i ^{urlmap.SMS_AUT_QUERY_PATTERN}$ }}")
        else:
            _refuse(out, "bad-request", f"{ep} !cmg_has_query")
        _methods(out, f"ep{index}", endpoint.methods)
        if endpoint.max_body_bytes:
            _refuse(out, "too-large", f"{ep} {{ req.hdr_val(content-length) gt {endpoint.max_body_bytes} }}")
        else:
            _refuse(out, "too-large", f"{ep} cmg_has_body")
    for name in ("pid", "cid"):
        _refuse(out, "bad-request",
                f"{{ var(txn.cmg_ep) -m str content }} !{{ query -m reg -i (^|&){name}={_CONTENT_ID}(&|$) }}")
    _methods(out, "content", ("GET", "HEAD"))
    _refuse(out, "too-large", "{ var(txn.cmg_ep) -m str content } cmg_has_body")
    _refuse(out, "bad-request", "{ var(txn.cmg_ep) -m str metadata } cmg_has_query")
    _methods(out, "metadata", ("GET", "HEAD"))
    _refuse(out, "too-large", "{ var(txn.cmg_ep) -m str metadata } cmg_has_body")
    if keys is not None:
        out.blank()
        _token_checks(out, keys)
    out.blank()
    _aad(out, site)
    out.comment("ServiceMetadata, the client's certificate check: answered here once the token checks passed.")
    out.line(f"http-request return status 200 content-type text/xml string '{SERVICE_METADATA_XML}' "
             "if !cmg_refused { var(txn.cmg_ep) -m str metadata }")
    out.blank()
    out.comment("Refusals in the CMG's words: the status text as the body, in X-CMG-Status-Text and as the reason phrase.")
    for slug, status, text in _REFUSALS:
        out.line(f"http-request return status {status} content-type text/plain string \"{text}\" "
                 f"hdr {STATUS_TEXT_HEADER} {text} if {{ var(txn.cmg_refusal) -m str {slug} }}")
    for status, text in {(status, text) for _, status, text in _REFUSALS} | set(_ERRORS):
        out.line(f"http-after-response set-status {status} reason {text} "
                 f"if {{ status {status} }} {{ res.hdr({STATUS_TEXT_HEADER}) -m str {text} }}")
    out.blank()
    out.comment("To the connection points: the CMG's own headers are always ours, whatever the client sent.")
    out.line(f"http-request del-header {CLIENT_CERT_HEADER}")
    out.line(f"http-request set-header {CLIENT_CERT_HEADER} %[ssl_c_der,base64] "
             f"if cmg_cert_verified {{ var(txn.cmg_auth) -m str {_CCM_OR_CERT} }}")
    out.line(f"http-request set-header {REQUEST_URI_HEADER} https://%[req.hdr(host),field(1,:)]:%[dst_port]%[path]")
    out.line("default_backend cmg_connection_points")


def _auth(endpoint: Endpoint, prefix: str) -> str:
    if endpoint.name == urlmap.CCM_STS:
        return _ENTRA
    if endpoint.name == urlmap.CCM_SYSTEM_TOKENAUTH:
        return _CCM_OR_ENTRA
    # ServerAuth is TLS without a client certificate: there only a token authenticates.
    return _CCM_OR_CERT if endpoint.cert_or_token and prefix == urlmap.MUTUAL_AUTH else _CCM


def _token_checks(out: _Writer, keys: TokenKeys) -> None:
    out.comment("Token checks at the edge: the signature against the site's certificates (jwt_verify), then alg, iss,")
    out.comment(f"aud, tid and the lifetime with {keys.leeway_s} s of leeway, as the CMG does. A token that fails any")
    out.comment("check, or a claim that is missing or of another type, leaves the verdict unset: refused.")
    out.line("http-request set-var(txn.cmg_token) http_auth_bearer")
    for name, query in (("alg", "jwt_header_query('$.alg')"), ("iss", "jwt_payload_query('$.iss')"),
                        ("aud", "jwt_payload_query('$.aud')"), ("tid", "jwt_payload_query('$.tid')"),
                        ("exp", "jwt_payload_query('$.exp','int')"), ("nbf", "jwt_payload_query('$.nbf','int')"),
                        ("category", f"jwt_payload_query('$.{tokens.SCCM_TOKEN_CATEGORY}')"),
                        ("type", "jwt_payload_query('$.Type')")):
        out.line(f"http-request set-var(txn.cmg_{name}) var(txn.cmg_token),{query}")
    out.line("http-request set-var(txn.cmg_now) date")
    out.line("acl cmg_rs256 var(txn.cmg_alg) -m str RS256")
    out.line(f"acl cmg_not_expired var(txn.cmg_exp),add({keys.leeway_s}),sub(txn.cmg_now) ge 0")
    out.line(f"acl cmg_started var(txn.cmg_now),add({keys.leeway_s}),sub(txn.cmg_nbf) ge 0")
    out.line(f"acl cmg_ccm_signed var(txn.cmg_token),jwt_verify(\"RS256\",\"{keys.ccm_key}\") -m int 1")
    out.line(f"acl cmg_ccm_issuer var(txn.cmg_iss) -m str {keys.ccm_issuer}")
    out.line(f"acl cmg_ccm_audience var(txn.cmg_aud) -m str {tokens.CCM_AUDIENCE}")
    out.comment("A CCM token, not another site token of the same issuer (a bulk registration token).")
    out.line(f"acl cmg_ccm_category var(txn.cmg_category) -m str {tokens.CCM_TOKEN_CATEGORY}")
    out.line(f"acl cmg_ccm_type var(txn.cmg_type) -m str {' '.join(tokens.TOKEN_TYPES)}")
    for key in keys.entra_keys:  # the current and the previous key: either may have signed a valid token
        out.line(f"acl cmg_entra_signed var(txn.cmg_token),jwt_verify(\"RS256\",\"{key}\") -m int 1")
    out.line(f"acl cmg_entra_audience var(txn.cmg_aud) -m str {' '.join(keys.entra_audiences)}")
    out.line("http-request set-var(txn.cmg_ccm_ok) bool(1) if { var(txn.cmg_token) -m found } cmg_rs256 "
             "cmg_ccm_issuer cmg_ccm_audience cmg_ccm_category cmg_ccm_type cmg_not_expired cmg_started cmg_ccm_signed")
    for tenant in keys.tenants:
        out.line(f"http-request set-var(txn.cmg_entra_tenant) bool(1) if {{ var(txn.cmg_tid) -m str {tenant} }} "
                 f"{{ var(txn.cmg_iss) -m str {tokens.entra_issuer(tenant)} }}")
    out.line("http-request set-var(txn.cmg_entra_ok) bool(1) if { var(txn.cmg_token) -m found } cmg_rs256 "
             "{ var(txn.cmg_entra_tenant) -m bool } cmg_entra_audience cmg_not_expired cmg_started cmg_entra_signed")
    ccm_ok, entra_ok = "{ var(txn.cmg_ccm_ok) -m bool }", "{ var(txn.cmg_entra_ok) -m bool }"
    _refuse(out, "invalid-token", f"{{ var(txn.cmg_auth) -m str {_ENTRA} }} !{entra_ok}")
    _refuse(out, "invalid-token", f"{{ var(txn.cmg_auth) -m str {_CCM_OR_ENTRA} }} !{ccm_ok} !{entra_ok}")
    _refuse(out, "invalid-token", f"{{ var(txn.cmg_auth) -m str {_CCM} }} !{ccm_ok}")
    _refuse(out, "invalid-token", f"{{ var(txn.cmg_auth) -m str {_CCM_OR_CERT} }} !{ccm_ok} !cmg_cert_verified")


def _aad(out: _Writer, site: ProxySite) -> None:
    out.comment("AADAuthInfo for the onboarded tenants (the reply body: synthetic, not the public ConfigMgr format).")
    out.line("acl cmg_aad var(txn.cmg_ep) -m str aad")
    for tenant in site.tenants:
        document = json.dumps({"AADTENANTID": tenant.tenant_id, "AADCLIENTAPPID": tenant.client_app_id,
                               "AADRESOURCEURI": tenant.resource_uri})
        out.line(f"http-request return status 200 content-type application/json string '{document}' "
                 f"if !cmg_refused cmg_aad {{ query -m reg -i (^|&)tenantid={tenant.tenant_id}(&|$) }}")
    out.line(f"http-request return status 404 content-type application/json string '{{}}' "
             f"hdr {STATUS_TEXT_HEADER} {TENANT_NOT_ONBOARDED} if !cmg_refused cmg_aad")


def _refuse(out: _Writer, slug: str, condition: str) -> None:
    out.line(f"http-request set-var(txn.cmg_refusal) str({slug}) if !cmg_refused {condition}")


def _methods(out: _Writer, ep: str, methods: Sequence[str]) -> None:
    _refuse(out, "method-not-allowed", f"{{ var(txn.cmg_ep) -m str {ep} }} !{{ method {' '.join(methods)} }}")


def _backend(out: _Writer, site: ProxySite, rendered: RenderedHaproxy) -> None:
    out.line("balance roundrobin")
    out.line("http-reuse safe")
    out.comment("To the connection points over HTTPS, verifying their certificate against the site CA and presenting")
    out.comment("the CMG's identity: the connection points take work only from the CMG (mutual TLS).")
    for index, (host, port) in enumerate(site.connection_points):
        out.line(f"server cp{index} {host}:{port} ssl verify required ca-file {site.ca_file} "
                 f"verifyhost {site.cp_server_name} sni str({site.cp_server_name}) crt {rendered.directory / IDENTITY_PEM_NAME}")


# --- token keys ------------------------------------------------------------------------------------------------------


def _token_keys(manifest: SiteManifest, site: ProxySite, directory: Path,
                entra_jwks: Mapping[str, Any] | None) -> TokenKeys:
    hierarchy_id = manifest.hierarchy_id
    if not hierarchy_id:
        raise ProxyConfigError("site manifest lacks hierarchy_id (the CCM token issuer)")
    source = manifest.ccm_signing_cert_file or site.ca_file.parent / "ccm-signing.pem"
    if not source.is_file():
        raise ProxyConfigError(f"CCM token signing certificate {str(source)!r} is not a file "
                               "(site manifest ccm_signing_cert_file)")
    ccm_key = directory / CCM_SIGNING_KEY_NAME
    ccm_key.write_bytes(_public_key_pem(source.read_bytes(), pem=True))
    jwks = entra_jwks if entra_jwks is not None else fetch_entra_jwks(manifest, site)
    entra_keys = []
    for old in directory.glob(f"{ENTRA_KEY_PREFIX}*.pem"):
        old.unlink()
    for index, der in enumerate(_x5c_certificates(jwks)):
        path = directory / f"{ENTRA_KEY_PREFIX}{index}.pem"
        path.write_bytes(_public_key_pem(der, pem=False))
        entra_keys.append(path)
    if not entra_keys:
        raise ProxyConfigError("the Entra JWKS lists no signing certificate (x5c)")
    audiences = sorted({tokens.CONFIGMGR_RESOURCE} | {tenant.resource_uri for tenant in site.tenants})
    for value in [*audiences, hierarchy_id]:
        if not value.isprintable() or any(ch in value for ch in " '\"\\{}#"):
            raise ProxyConfigError(f"value {value!r} cannot be written into an HAProxy configuration")
    leeway = manifest.token_leeway_s if manifest.token_leeway_s is not None else DEFAULT_LEEWAY_S
    if not 0 <= leeway <= 86400:
        raise ProxyConfigError(f"site manifest token_leeway_s must be 0..86400 s, got {leeway!r}")
    return TokenKeys(ccm_key=ccm_key, ccm_issuer=tokens.ccm_issuer(hierarchy_id), entra_keys=tuple(entra_keys),
                     entra_audiences=tuple(audiences), tenants=tuple(t.tenant_id for t in site.tenants),
                     leeway_s=int(leeway))


def fetch_entra_jwks(manifest: SiteManifest, site: ProxySite, timeout_s: float = 10.0) -> Mapping[str, Any]:
    """The mock Entra ID's JSON Web Key Set, over HTTPS trusting the site CA."""
    entra_url = manifest.entra_url
    if not entra_url.startswith("https://"):
        raise ProxyConfigError(f"site manifest entra_url must be https://HOST:PORT, got {entra_url!r}")
    context = ssl.create_default_context(cafile=str(site.ca_file))
    try:
        with urllib.request.urlopen(f"{entra_url}/common/discovery/keys", context=context,
                                    timeout=timeout_s) as response:
            document = json.loads(response.read(1024 * 1024))
    except (OSError, ValueError) as error:
        raise ProxyConfigError(f"cannot read the Entra signing keys from {entra_url}: {error}") from None
    if not isinstance(document, dict):
        raise ProxyConfigError(f"the Entra JWKS at {entra_url} is not a JSON object")
    return document


def _public_key_pem(certificate: bytes, *, pem: bool) -> bytes:
    """The public key of a certificate (PEM or DER) as a SubjectPublicKeyInfo PEM."""
    try:
        cert = x509.load_pem_x509_certificate(certificate) if pem else x509.load_der_x509_certificate(certificate)
    except ValueError as error:
        raise ProxyConfigError(f"a token signing certificate cannot be read: {error}") from None
    return cert.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def _x5c_certificates(jwks: Mapping[str, Any]) -> list[bytes]:
    found = []
    for entry in jwks.get("keys") or ():
        chain = entry.get("x5c") if isinstance(entry, dict) else None
        if isinstance(chain, list) and chain and isinstance(chain[0], str):
            try:
                found.append(base64.b64decode(chain[0], validate=True))
            except ValueError:
                raise ProxyConfigError(f"JWKS key {entry.get('kid')!r} has an x5c that is not base64") from None
    return found


# --- helpers ---------------------------------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    """Write a file holding a private key, readable by its owner only from the moment it exists."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def _regex_literal(name: str) -> str:
    return name.replace(".", "\\.")


class _Writer:
    """HAProxy configuration text: sections with indented lines."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._indent = ""

    def line(self, text: str) -> None:
        self._lines.append(self._indent + text)

    def comment(self, text: str) -> None:
        self.line(f"# {text}")

    def blank(self) -> None:
        self._lines.append("")

    def section(self, head: str, body: Any) -> None:
        self.blank()
        self._lines.append(head)
        self._indent = "    "
        if callable(body):
            body()
        else:
            for text in body:
                self.line(text)
        self._indent = ""

    def text(self) -> str:
        return "\n".join(self._lines).lstrip("\n") + "\n"
