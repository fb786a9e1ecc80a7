"""Calling a role's ASGI app in-process: one request in, the whole answer out (no sockets, no server, no TLS).

The mutation runner repeats a module's tests once per planted bug, so the edge rules are tested here against the app
object itself, with recording stand-ins for the next hop, the metrics and the logs.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mock_site.server import ASGIApp
from mock_site.upstream import UpstreamError, UpstreamResponse


@dataclass(frozen=True, slots=True)
class Answer:
    """What went back to the client: nothing at all (``status`` 0) or one complete response."""

    status: int
    reason: str | None
    headers: dict[str, str]
    body: bytes
    messages: int  # ASGI messages sent (a response is exactly two)

    @property
    def text(self) -> str:
        return self.body.decode()


def call(app: ASGIApp, method: str, path: str, *, query: str = "", headers: Mapping[str, str] | None = None,
         body: bytes = b"", chunks: list[bytes] | None = None, cert: bytes | None = None,
         absolute_form: bool = False, scope_type: str = "http") -> tuple[Answer, dict[str, Any]]:
    """Run one request through ``app``; returns the answer and the request's scope (whose ``state`` the app fills)."""
    extensions: dict[str, Any] = {}
    if cert is not None:
        extensions["tls"] = {"client_cert_der": cert, "client_cert_chain": []}
    if absolute_form:
        extensions["cmg.absolute_form"] = True
    scope: dict[str, Any] = {
        "type": scope_type, "method": method, "path": path, "raw_path": path.encode(), "scheme": "https",
        "query_string": query.encode(), "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 443), "state": {}, "extensions": extensions,
    }
    parts = list(chunks) if chunks is not None else [body]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if not parts:
            return {"type": "http.disconnect"}
        chunk = parts.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(parts)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    if not sent:
        return Answer(0, None, {}, b"", 0), scope
    start = sent[0]
    assert start["type"] == "http.response.start"
    answer_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    body_out = b"".join(m.get("body", b"") for m in sent[1:])
    return Answer(start["status"], start.get("reason"), answer_headers, body_out, len(sent)), scope


class Upstream:
    """A next hop that records what reached it and answers what the test set (or fails the way the test set)."""

    def __init__(self, name: str, answer: UpstreamResponse | None = None, error: str | None = None) -> None:
        self.name = name
        self.answer = answer or UpstreamResponse(200, "OK", {"content-type": "text/xml"}, b"<ok/>")
        self.error = error
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []

    async def request(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> UpstreamResponse:
        self.requests.append((method, path, dict(headers), body))
        if self.error is not None:
            raise UpstreamError(self.error, f"{self.name} failed: {self.error}")
        return self.answer

    async def close(self) -> None:
        return None


@dataclass
class Metrics:
    """Records every call a role makes on its metrics, in order."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)
    in_flight: int = 0

    def request_started(self) -> None:
        self.in_flight += 1

    def request_finished(self) -> None:
        self.in_flight -= 1

    def observe_request(self, endpoint: str, method: str, status: int, request_bytes: int, response_bytes: int,
                        seconds: float) -> None:
        self.calls.append(("observe", endpoint, method, status, request_bytes, response_bytes, seconds))

    def error_response(self, endpoint: str, status: int, status_text: str) -> None:
        self.calls.append(("error", endpoint, status, status_text))

    def token_rejected(self, kind: str) -> None:
        self.calls.append(("token_rejected", kind))

    def forward_error(self, upstream: str, kind: str) -> None:
        self.calls.append(("forward_error", upstream, kind))

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [c[1:] for c in self.calls if c[0] == kind]


class Logs:
    """A log directory stand-in: every writer appends (file, level, text) to one list."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str]] = []

    def writer(self, name: str) -> Logs.Writer:
        return Logs.Writer(self, name)

    class Writer:
        def __init__(self, logs: Logs, name: str) -> None:
            self.logs, self.name = logs, name

        def info(self, text: str) -> None:
            self.logs.lines.append((self.name, "info", text))

        def warning(self, text: str) -> None:
            self.logs.lines.append((self.name, "warning", text))

        def error(self, text: str) -> None:
            self.logs.lines.append((self.name, "error", text))


class Steps:
    """A perf counter that moves by ``step`` seconds on every reading (elapsed times become exact)."""

    def __init__(self, step: float = 0.25) -> None:
        self.now, self.step = 100.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@functools.cache
def role_certificate_der(common_name: str) -> bytes:
    """A client-auth certificate (DER) with ``common_name``, as the site's role certificates carry: what the peer
    checks of a hop read (the TLS layer, not called here, is what verifies the chain)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)
