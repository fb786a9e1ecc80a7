"""Fixtures for the proxy tests: the nginx and HAProxy binaries (or a skip), an echo connection point, and proxies
started by PID."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from cmg_protocol import tokens
from cmg_protocol.clock import system_clock
from harness.proxy import NginxProcess, RenderedHaproxy, RenderedProxy, find_haproxy, find_nginx, process_for, render
from mock_site.cmg import TokenValidator
from mock_site.manifest import ManifestTenant, SiteManifest
from mock_site.testing import example_manifest
from mock_site.token_checks import CcmTokenVerifier, EntraTokenVerifier, JwksCache

ROLE_ID = "72186325152220500"
TENANT = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"
OTHER_TENANT = "c8c82542-203c-4df9-9d86-cdd4dae67e0a"
HIERARCHY = "8ed3174b-e814-41b5-b51c-fb368f0d4003"
# The validating proxy asks the site's real token validation (mock_site.cmg.TokenValidator) about tokens: a CCM token
# signed with this key is the good one; anything else (forged, expired, another key's) is refused by the real rules.
CCM_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CCM_KID = "proxy-tests"


def ccm_token(*, key: rsa.RSAPrivateKey = CCM_KEY, now: float | None = None, lifetime: float = 24 * 3600.0) -> str:
    """A CCM token as the site's CCM_STS signs it (``key`` other than CCM_KEY: a forgery)."""
    return tokens.issue_ccm_token(key=key, kid=CCM_KID, hierarchy_id=HIERARCHY, token_type="Device",
                                  device_id="GUID:1", user_id=tokens.NO_USER, tenant_id=TENANT, smsid="GUID:1",
                                  now=time.time() if now is None else now, lifetime=lifetime)


GOOD_TOKEN = ccm_token()


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    """The nginx binary; the tests that need it are skipped with the reason when it is not installed."""
    binary = find_nginx()
    if binary is None:
        pytest.skip("nginx is not installed (./dev installs the Debian package; or apt-get install nginx)")
    return binary


@pytest.fixture(scope="session")
def haproxy_binary() -> str:
    """The haproxy binary; the tests that need it are skipped with the reason when it is not installed."""
    binary = find_haproxy()
    if binary is None:
        pytest.skip("haproxy is not installed (./dev installs the Debian package; or apt-get install haproxy)")
    return binary


@dataclass
class Seen:
    """What the echo servers received."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    validations: list[dict[str, str]] = field(default_factory=list)


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers every request with JSON describing it (the connection point's view of what the proxy forwarded)."""

    protocol_version = "HTTP/1.1"
    seen: Seen

    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        record = {"method": self.command, "path": self.path, "body": body.decode("latin-1"),
                  "headers": {k.lower(): v for k, v in self.headers.items()}}
        self.seen.requests.append(record)
        data = json.dumps(record).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_HEAD = do_CCM_POST = _echo

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _real_validator(seen: Seen) -> Any:
    """The site's token validation endpoint (the real rules and verifiers), recording each check it is asked."""
    async def no_entra_keys() -> dict[str, Any]:
        return {"keys": []}

    ccm = CcmTokenVerifier({CCM_KID: CCM_KEY.public_key()}, hierarchy_id=HIERARCHY, tenants=lambda: {TENANT},
                           clock=system_clock)
    entra = EntraTokenVerifier(JwksCache(no_entra_keys, clock=system_clock), audiences=[tokens.CONFIGMGR_RESOURCE],
                               tenants=lambda: {TENANT}, clock=system_clock)
    validator = TokenValidator(ccm, entra)

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            seen.validations.append({"path": scope["path"], "authorization": headers.get("authorization", ""),
                                     "length": headers.get("content-length", ""),
                                     "query": scope.get("query_string", b"").decode("latin-1")})
        await validator(scope, receive, send)

    return recording


class _UvicornThread:
    """An ASGI app served by uvicorn on a loopback port in a thread (stopped by ``close``)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.server.started:
            raise RuntimeError("the token validator did not start within 15 s")

    def shutdown(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def server_close(self) -> None:
        self.sock.close()


@dataclass
class EchoSite:
    """A stand-in site: a trustme CA, the CMG certificate, an echo connection point and the real token validator."""

    ca: trustme.CA
    directory: Path
    manifest: SiteManifest
    seen: Seen
    _servers: list[Any]

    def client_cert_files(self, name: str, key_type: trustme.KeyType) -> tuple[Path, Path, bytes]:
        """A device certificate from the site CA: (cert file, key file, DER bytes)."""
        leaf = self.ca.issue_cert(name, key_type=key_type)
        cert_path, key_path = self.directory / f"{name}.pem", self.directory / f"{name}.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert_path))
        leaf.private_key_pem.write_to_path(str(key_path))
        der = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).public_bytes(Encoding.DER)
        return cert_path, key_path, der

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()


def _serve(handler: type[BaseHTTPRequestHandler], seen: Seen, context: ssl.SSLContext | None) -> ThreadingHTTPServer:
    bound = type(handler.__name__, (handler,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), bound)
    server.daemon_threads = True
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name=f"echo-{handler.__name__}", daemon=True).start()
    return server


@pytest.fixture(scope="module")
def echo_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EchoSite]:
    """An echo connection point over HTTPS (certificate for 127.0.0.1 and localhost) and an HTTP validator."""
    directory = tmp_path_factory.mktemp("echo-site")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    cmg = ca.issue_cert("127.0.0.1", "localhost")
    cmg.cert_chain_pems[0].write_to_path(str(directory / "cmg.pem"))
    cmg.private_key_pem.write_to_path(str(directory / "cmg.key"))
    identity = ca.issue_cert("cmg-identity.invalid")  # the CMG's client identity; the echo CP takes no other caller
    identity.cert_chain_pems[0].write_to_path(str(directory / "cmg-identity.pem"))
    identity.private_key_pem.write_to_path(str(directory / "cmg-identity.key"))
    seen = Seen()
    cp_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(cp_context)
    cp_context.load_verify_locations(cafile=str(directory / "ca.pem"))
    cp_context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS, as the site's connection point requires
    cp = _serve(_EchoHandler, seen, cp_context)
    validator = _UvicornThread(_real_validator(seen))
    manifest = example_manifest(directory).replace(
        cmg_url=None, cmg_enabled=False, roles=("crl", "entra", "mp", "cp"), cmg_urls=(),
        cp_urls=(f"https://127.0.0.1:{cp.server_address[1]}",), cp_server_name="127.0.0.1",
        ca_file=directory / "ca.pem", cmg_cert_file=directory / "cmg.pem", cmg_key_file=directory / "cmg.key",
        cmg_identity_cert_file=directory / "cmg-identity.pem", cmg_identity_key_file=directory / "cmg-identity.key",
        token_validation_url=f"http://127.0.0.1:{validator.port}/validate", role_id=ROLE_ID,
        tenants=(ManifestTenant(TENANT, True, "0b7c8ab3-9ea1-4ffa-b2b9-8ffdd944bd8b", "https://ConfigMgrService"),
                 ManifestTenant(OTHER_TENANT, False, "0b7c8ab3-9ea1-4ffa-b2b9-8ffdd944bd8b",
                                "https://ConfigMgrService")))
    site = EchoSite(ca=ca, directory=directory, manifest=manifest, seen=seen, _servers=[cp, validator])
    yield site
    site.close()


ProxyStarter = Callable[..., RenderedProxy]


@pytest.fixture(scope="module")
def start_proxy(nginx_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyStarter]:
    """Render and start an nginx for a manifest and variant; every nginx started here is stopped by its PID after."""
    running: list[NginxProcess] = []

    def start(manifest: SiteManifest, variant: str, **overrides: Any) -> RenderedProxy:
        rendered = render(manifest.replace(**overrides), variant=variant,
                          out_dir=tmp_path_factory.mktemp(f"nginx-{variant}"))
        process = NginxProcess(rendered, binary=nginx_binary)
        running.append(process)
        process.start()
        return rendered

    yield start
    for process in running:
        process.stop()


HaproxyStarter = Callable[..., RenderedHaproxy]


@pytest.fixture(scope="module")
def start_haproxy(haproxy_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaproxyStarter]:
    """Render and start an HAProxy for a manifest and variant; every one started here is stopped by its PID after."""
    running: list[NginxProcess] = []

    def start(manifest: SiteManifest, variant: str, **overrides: Any) -> RenderedHaproxy:
        rendered = render(manifest.replace(**overrides), variant=variant, proxy="haproxy",
                          out_dir=tmp_path_factory.mktemp(f"haproxy-{variant}"))
        assert isinstance(rendered, RenderedHaproxy)
        process = process_for(rendered, binary=haproxy_binary)
        running.append(process)
        process.start()
        return rendered

    yield start
    for process in running:
        process.stop()


@dataclass
class Answer:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(url: str, ca_file: str, method: str, target: str, *, headers: dict[str, str] | None = None,
                body: bytes | None = None, cert: tuple[Path, Path] | None = None) -> Answer:
    """Send ``target`` exactly as written (http.client normalises nothing: dot segments and all reach the proxy)."""
    host, port = url.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=ca_file)
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=15)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, response.reason, {k.lower(): v for k, v in response.getheaders()},
                      response.read())
    finally:
        connection.close()
