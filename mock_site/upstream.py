"""Forwarding hops between roles: CMG → connection point, connection point → MP.

Over the network the hop is a small keep-alive HTTP/1.1 client on asyncio's transports and httptools
(:class:`HttpUpstream`); aiohttp cost about 0.2 ms CPU per request here and httpx ~2 ms under concurrency. When
every role lives in one process the hop can instead call the next role's ASGI app directly (``InProcessUpstream``),
which is what the single-process benchmark measures as the ceiling.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import httptools

from mock_site.server import AbortConnection, ASGIApp, bound_tls_reads

#: Request headers that cross a hop; everything else stays at the edge (hop-by-hop headers, Host, cookies).
FORWARDED_HEADERS = (
    "authorization",
    "content-type",
    "user-agent",
    "clienttoken",
    "clienttokensignature",
    "x-cmg-client-cert",
    "x-cmg-request-uri",
    "x-cmg-client-id",
    "x-ccm-aad-token",  # registration's Entra identity (cmg_protocol.registration.AAD_TOKEN_HEADER)
)


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes


class UpstreamError(Exception):
    """The next hop could not be reached or did not answer: ``kind`` is connect | timeout | reset."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class Upstream(Protocol):
    name: str

    async def request(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> UpstreamResponse: ...

    async def close(self) -> None: ...


def forwardable(headers: Mapping[str, str]) -> dict[str, str]:
    """The subset of request headers that is passed on to the next hop."""
    return {name: value for name, value in headers.items() if name in FORWARDED_HEADERS}


class _HopConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to the next hop, its responses parsed by httptools (as uvicorn does)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._head_only = False
        self.keep_alive = False
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []

    # --- asyncio.Protocol -------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        bound_tls_reads(transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(ConnectionResetError(f"unreadable response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._finish(ConnectionResetError("the connection closed before the response was complete"))

    # --- httptools callbacks ----------------------------------------------------------------------------------
    def on_status(self, status: bytes) -> None:
        self.reason += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        if self._head_only:  # a HEAD answer announces a length it does not send; the parser would wait for it
            self.keep_alive = False
            self._finish(None)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        self._finish(None)

    # --- use --------------------------------------------------------------------------------------------------
    def _finish(self, error: Exception | None) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    async def exchange(self, head: bytes, body: bytes, head_only: bool) -> UpstreamResponse:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._head_only = head_only
        self.keep_alive = False
        self.reason = ""
        self.headers = {}
        self.chunks = []
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)
        await self._waiter
        return UpstreamResponse(status=self.parser.get_status_code(), reason=self.reason, headers=self.headers,
                                body=b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0])

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


@dataclass
class HttpUpstream:
    """A next hop reached over HTTP(S) on pooled keep-alive connections.

    A small HTTP/1.1 client on asyncio's TLS transport and httptools (the parser the servers use): the hop writes one
    request and reads one response per connection at a time, which is all a hop does, without a general client's
    per-request cost (aiohttp's was ~13 % of the HTTPS chain's CPU in the profile of benchmarks/site_chain.py).
    """

    name: str
    base_url: str
    ssl_context: ssl.SSLContext | None = None
    timeout: float = 30.0
    limit: int = 1000
    #: A pooled connection idle for longer is closed instead of reused: the server may be closing it (the site's
    #: servers keep idle connections 30 s), and a request written into a closing connection would fail as a reset.
    #: 15 s is what aiohttp kept them.
    max_idle_seconds: float = 15.0
    _idle: list[_HopConnection] = field(default_factory=list, init=False, repr=False)
    _open: set[_HopConnection] = field(default_factory=set, init=False, repr=False)
    _slots: asyncio.Semaphore | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"upstream {self.name}: base URL must be http(s)://host[:port], got {self.base_url!r}")
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._prefix = url.path.rstrip("/")
        self._host_header = url.netloc.encode("latin-1")
        self._tls: ssl.SSLContext | None = None
        if url.scheme == "https":
            self._tls = self.ssl_context if self.ssl_context is not None else _unverified_context()

    async def _connect(self) -> _HopConnection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            _HopConnection, self._host, self._port, ssl=self._tls,
            server_hostname=self._host if self._tls is not None else None)
        return connection

    def _take_idle(self, now: float) -> _HopConnection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and now - connection.idle_since <= self.max_idle_seconds:
                return connection
            connection.close()
            self._open.discard(connection)
        return None

    def _head(self, method: str, path: str, headers: Mapping[str, str], length: int) -> bytes:
        lines = [f"{method} {self._prefix}{path} HTTP/1.1\r\n".encode("latin-1"), b"host: ", self._host_header,
                 b"\r\n"]
        for name, value in headers.items():
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        lines.append(b"content-length: %d\r\n\r\n" % length)
        return b"".join(lines)

    async def request(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> UpstreamResponse:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        head = self._head(method, path, headers, len(body))
        loop = asyncio.get_running_loop()
        connection: _HopConnection | None = None
        answer: UpstreamResponse | None = None
        try:
            async with self._slots, asyncio.timeout(self.timeout):
                connection = self._take_idle(loop.time())
                if connection is None:
                    try:
                        connection = await self._connect()
                    except (OSError, ssl.SSLError) as exc:
                        raise UpstreamError("connect", f"{self.name}: {exc}") from exc
                    self._open.add(connection)
                answer = await connection.exchange(head, body, head_only=method == "HEAD")
        except TimeoutError as exc:
            raise UpstreamError("timeout", f"{self.name} did not answer within {self.timeout} s") from exc
        except ConnectionError as exc:
            raise UpstreamError("reset", f"{self.name} closed the connection") from exc
        finally:
            # Back to the pool only after a complete exchange (not after a failure or a cancelled caller).
            if connection is not None:
                if answer is not None and connection.keep_alive and not connection.closed:
                    connection.idle_since = loop.time()
                    self._idle.append(connection)
                else:
                    connection.close()
                    self._open.discard(connection)
        return answer

    async def close(self) -> None:
        self._idle.clear()
        for connection in self._open:
            connection.close()
        self._open.clear()


def _unverified_context() -> ssl.SSLContext:
    # What the aiohttp hop did with no context given (ssl=False): TLS without verifying the next hop.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass
class InProcessUpstream:
    """A next hop that is an ASGI app in the same process, called directly without a socket."""

    name: str
    app: ASGIApp
    #: What the callee sees as the TLS client certificate of the hop (the CP's certificate towards the MP).
    client_cert_der: bytes | None = None
    #: More scope extensions for the callee (the connection point marks requests that came down the CMG's channel).
    scope_extensions: Mapping[str, Any] = field(default_factory=dict)

    async def request(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> UpstreamResponse:
        raw_path, _, query = path.partition("?")
        extensions: dict[str, Any] = dict(self.scope_extensions)
        if self.client_cert_der is not None:
            extensions["tls"] = {"client_cert_der": self.client_cert_der, "client_cert_chain": []}
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "https",
            "path": raw_path,
            "raw_path": raw_path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "root_path": "",
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
            + [(b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 0),
            "server": ("127.0.0.1", 0),
            "state": {},
            "extensions": extensions,
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()  # the request is complete; a disconnect never comes in-process
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 500
        reason = ""
        response_headers: dict[str, str] = {}
        chunks: list[bytes] = []

        async def send(message: Mapping[str, Any]) -> None:
            nonlocal status, reason
            if message["type"] == "http.response.start":
                status = int(message["status"])
                reason = message.get("reason") or ""
                response_headers.update((k.decode("latin-1"), v.decode("latin-1")) for k, v in message["headers"])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, receive, send)
        except AbortConnection as exc:
            raise UpstreamError("reset", f"{self.name} reset the connection") from exc
        except Exception as exc:
            if type(exc).__name__ == "ConnectionResetFault":
                raise UpstreamError("reset", f"{self.name} reset the connection") from exc
            raise
        if not reason:
            reason = response_headers.get("x-cmg-status-text", "")
        return UpstreamResponse(status=status, reason=reason, headers=response_headers, body=b"".join(chunks))

    async def close(self) -> None:
        return None


class ChannelHub(Protocol):
    """The CMG's end of the connection points' outbound channels (``mock_site.cp_channel.ChannelHub``)."""

    def connected(self) -> list[str]: ...

    async def request(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> UpstreamResponse: ...


@dataclass
class ChannelUpstream:
    """The connection points as a CMG instance reaches them: down the channels they opened to it, not by dialling.

    With no channel open a request fails at once (``UpstreamError`` ``connect``): the CMG has no other route.
    """

    name: str
    hub: ChannelHub

    async def request(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> UpstreamResponse:
        return await self.hub.request(method, path, headers, body)

    async def close(self) -> None:
        return None  # the hub's owner (the site) stops it


class RoundRobin:
    """Spreads requests over several upstreams in turn, as the CMG does over its connection points."""

    def __init__(self, upstreams: Sequence[Upstream]) -> None:
        if not upstreams:
            raise ValueError("round robin needs at least one upstream")
        self.upstreams = list(upstreams)
        self._cycle = itertools.cycle(self.upstreams)

    def next(self) -> Upstream:
        return next(self._cycle)

    async def close(self) -> None:
        for upstream in self.upstreams:
            await upstream.close()
