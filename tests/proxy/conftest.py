"""Fixtures for the proxy tests: the nginx and HAProxy binaries (or a skip), an echo connection point, and proxies
started by PID."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from harness.proxy import NginxProcess, RenderedHaproxy, RenderedProxy, find_haproxy, find_nginx, process_for, render

ROLE_ID = "72186325152220500"
TENANT = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"
OTHER_TENANT = "c8c82542-203c-4df9-9d86-cdd4dae67e0a"
GOOD_TOKEN = "good-token"


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


class _ValidatorHandler(BaseHTTPRequestHandler):
    """The site's token validation endpoint in miniature: 204 for the one good token, 401 otherwise."""

    protocol_version = "HTTP/1.1"
    seen: Seen

    def do_GET(self) -> None:
        self.seen.validations.append({"path": self.path, "authorization": self.headers.get("Authorization", ""),
                                      "length": self.headers.get("Content-Length", "")})
        good = self.headers.get("Authorization") == f"Bearer {GOOD_TOKEN}"
        self.send_response(204 if good else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class EchoSite:
    """A stand-in site: a trustme CA, the CMG certificate, an echo connection point and a token validator."""

    ca: trustme.CA
    directory: Path
    manifest: dict[str, Any]
    seen: Seen
    _servers: list[ThreadingHTTPServer]

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
    seen = Seen()
    cp_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(cp_context)
    cp = _serve(_EchoHandler, seen, cp_context)
    validator = _serve(_ValidatorHandler, seen, None)
    manifest = {
        "cp_urls": [f"https://127.0.0.1:{cp.server_address[1]}"],
        "cp_server_name": "127.0.0.1",
        "ca_file": str(directory / "ca.pem"),
        "cmg_cert_file": str(directory / "cmg.pem"),
        "cmg_key_file": str(directory / "cmg.key"),
        "token_validation_url": f"http://127.0.0.1:{validator.server_address[1]}/validate",
        "role_id": ROLE_ID,
        "tenants": [
            {"tenant_id": TENANT, "onboarded": True, "client_app_id": "0b7c8ab3-9ea1-4ffa-b2b9-8ffdd944bd8b",
             "resource_uri": "https://ConfigMgrService"},
            {"tenant_id": OTHER_TENANT, "onboarded": False, "client_app_id": "0b7c8ab3-9ea1-4ffa-b2b9-8ffdd944bd8b",
             "resource_uri": "https://ConfigMgrService"},
        ],
    }
    site = EchoSite(ca=ca, directory=directory, manifest=manifest, seen=seen, _servers=[cp, validator])
    yield site
    site.close()


ProxyStarter = Callable[..., RenderedProxy]


@pytest.fixture(scope="module")
def start_proxy(nginx_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyStarter]:
    """Render and start an nginx for a manifest and variant; every nginx started here is stopped by its PID after."""
    running: list[NginxProcess] = []

    def start(manifest: dict[str, Any], variant: str, **overrides: Any) -> RenderedProxy:
        rendered = render(dict(manifest, **overrides), variant=variant,
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

    def start(manifest: dict[str, Any], variant: str, **overrides: Any) -> RenderedHaproxy:
        rendered = render(dict(manifest, **overrides), variant=variant, proxy="haproxy",
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
