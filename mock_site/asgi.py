"""Small raw-ASGI helpers for the roles on the hot path (CMG, connection point, MP).

The request path of a policy poll crosses three roles; plain ASGI with these helpers keeps each hop to a few
microseconds of framework time, where a full framework would cost more than the work itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from mock_site.server import Receive, Scope, Send


class BodyTooLarge(Exception):
    """The request body passed the endpoint's size limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over the {limit}-byte limit")
        self.limit = limit


@dataclass(slots=True)
class HttpRequest:
    """The parts of an ASGI http scope the roles read, decoded once."""

    scope: Scope
    method: str
    path: str
    raw_path: bytes
    query: str
    headers: dict[str, str]

    @classmethod
    def from_scope(cls, scope: Scope) -> HttpRequest:
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            headers[name.decode("latin-1")] = value.decode("latin-1")
        raw_path = scope.get("raw_path") or scope["path"].encode("latin-1", "replace")
        return cls(
            scope=scope,
            method=scope["method"],
            path=scope["path"],
            raw_path=raw_path,
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
        )

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def query_params(self) -> dict[str, str]:
        return dict(parse_qsl(self.query, keep_blank_values=True))

    def bearer_token(self) -> str | None:
        value = self.headers.get("authorization")
        if not value:
            return None
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()

    @property
    def client_host(self) -> str:
        client = self.scope.get("client")
        return client[0] if client else ""

    def declared_length(self) -> int | None:
        value = self.headers.get("content-length")
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            return -1


async def read_body(receive: Receive, limit: int) -> bytes:
    """Read the whole request body, refusing it as soon as it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks) if len(chunks) != 1 else chunks[0]


async def respond(
    send: Send,
    status: int,
    body: bytes = b"",
    *,
    content_type: str = "text/plain; charset=utf-8",
    headers: Iterable[tuple[str, str]] = (),
    reason: str | None = None,
) -> None:
    """Send a complete response; ``reason`` sets the reason phrase (see :class:`mock_site.server.ReasonStatus`)."""
    raw_headers = [(b"content-type", content_type.encode("latin-1")), (b"content-length", str(len(body)).encode())]
    raw_headers.extend((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers)
    start: dict[str, Any] = {"type": "http.response.start", "status": status, "headers": raw_headers}
    if reason is not None:
        start["reason"] = reason
    await send(start)
    await send({"type": "http.response.body", "body": body})


async def respond_error(send: Send, status: int, status_text: str, detail: str = "") -> None:
    """Answer with a ConfigMgr-style status text as the reason phrase and a short body naming it."""
    body = status_text if not detail else f"{status_text}: {detail}"
    await respond(send, status, body.encode("utf-8", "replace"), reason=status_text,
                  headers=[("x-cmg-status-text", status_text)])


def header_items(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


_PHRASES = {status.value: status.phrase.replace(" ", "_") for status in HTTPStatus}


class Meter:
    """A ``send`` that remembers what went out: status, reason phrase and body bytes (for stats and metrics)."""

    __slots__ = ("_send", "reason", "request_bytes", "response_bytes", "status")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 0
        self.reason: str | None = None
        self.request_bytes = 0
        self.response_bytes = 0

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            self.reason = message.get("reason")
        elif message["type"] == "http.response.body":
            self.response_bytes += len(message.get("body", b""))
        await self._send(message)

    @property
    def status_text(self) -> str | None:
        """For an error answer, its status text (the reason phrase, else the standard one); None otherwise."""
        if self.status < 400:
            return None
        return self.reason or _PHRASES.get(self.status, "other")
