"""Running the site's ASGI apps under uvicorn, over real TLS, on loopback ports chosen by the OS.

uvicorn does not put the TLS client certificate into the ASGI scope, and the CMG needs it for the
``CCM_Proxy_MutualAuth`` paths; so the HTTP protocol class here adds the ASGI TLS extension
(``scope["extensions"]["tls"]["client_cert_chain"]``). It also lets an app abort the TCP connection (the ``reset``
fault and an unreachable CRL distribution point) by raising :class:`AbortConnection`.

Each listener also bounds what one client can hold, as IIS and http.sys do in front of a real CMG and MP
(:class:`ConnectionLimits`): a connection must finish its TLS handshake and send complete request headers within a
header timeout or it is dropped; a header line over 16 KiB or request headers over a total size are refused with 431
(a request target over 16 KiB with 414); and past a cap on open connections, a new connection is answered 503 with a
reason phrase naming the cap and closed at once, before its request is read. An idle TLS connection costs the site
about 290 KiB (asyncio's TLS read buffer is 256 KiB), so without these bounds a few thousand slow clients exhaust it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from mock_site.limits import ConnectionLimits

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("mock_site.server")

class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that is refused for its size."""


class AbortConnection(Exception):
    """Raised by an app to drop the TCP connection with a reset instead of answering."""


class ReasonStatus(int):
    """A status code that carries its own reason phrase (CMG errors put their status text there)."""

    reason: bytes

    def __new__(cls, status: int, reason: str) -> ReasonStatus:
        value = super().__new__(cls, status)
        # Reason phrases are latin-1 tokens on the wire; drop anything that could split the status line.
        value.reason = reason.encode("latin-1", "replace").replace(b"\r", b" ").replace(b"\n", b" ")
        return value


class _StatusLines(dict):  # type: ignore[type-arg]
    """uvicorn's status-line table, taught to honour :class:`ReasonStatus` (ASGI itself has no reason phrase field)."""

    def __getitem__(self, status: int) -> bytes:
        reason = getattr(status, "reason", None)
        if reason is not None:
            return b"HTTP/1.1 %d %s\r\n" % (int(status), reason)
        return super().__getitem__(status)


if not isinstance(httptools_impl.STATUS_LINE, _StatusLines):
    httptools_impl.STATUS_LINE = _StatusLines(httptools_impl.STATUS_LINE)


def absolute_form_target(scope: Scope) -> bool:
    """Whether the request line named a scheme and host (``GET http://host/path``) instead of a path."""
    return bool(scope.get("extensions", {}).get("cmg.absolute_form"))


def client_cert_der(scope: Scope) -> bytes | None:
    """The DER bytes of the TLS client certificate of this request's connection, if the client sent one."""
    tls = scope.get("extensions", {}).get("tls")
    if not tls:
        return None
    return tls.get("client_cert_der")


CCM_POST_LINE = b"CCM_POST "
POST_LINE = b"POST "


#: The most plaintext one read from a TLS connection asks for. asyncio asks for 256 KiB, and ``SSLObject.read``
#: allocates that much for every call (one that finds no data included) before it learns how much there is; with the
#: mmap threshold pinned at 128 KiB (:class:`MemoryReturner`) each such buffer is a fresh mapping: an mmap, a page
#: fault and an munmap, twice per request. One call returns at most one TLS record, whose plaintext is at most 16 KiB,
#: so a 16 KiB read gets the same bytes in the same number of calls from the heap.
TLS_READ_BYTES = 16 * 1024
#: The most plaintext one TLS record carries: a response head and body that fit are written as one piece.
TLS_RECORD_BYTES = 16 * 1024


def bound_tls_reads(transport: asyncio.BaseTransport) -> None:
    """Make the TLS reads of ``transport`` (asyncio's SSL transport) ask for :data:`TLS_READ_BYTES` at most.

    asyncio has no public setting for it; the read size is the ``max_size`` of the transport's SSL protocol. Any
    other transport (plain TCP, another event loop's) is left alone.
    """
    protocol: Any = getattr(transport, "_ssl_protocol", None)
    size = getattr(protocol, "max_size", None)
    if isinstance(size, int) and size > TLS_READ_BYTES:
        protocol.max_size = TLS_READ_BYTES


class ResponseWriter:
    """What uvicorn's request cycle writes a response through: the head is held until the body, so the two leave in
    one TLS record (or, for a body over one record, one socket write).

    uvicorn writes the status line and headers, then each body part, each with its own ``transport.write``; over TLS
    that is two records and two ``sendto`` calls per answer where one of each would do. The head is held back only
    until the first body part, a close, or the next turn of the event loop, whichever comes first: a HEAD answer (no
    body part follows) leaves on that turn, an app that sends its head and then waits (the ``bandwidth`` fault paces
    the body) still has its head on the wire at once, and an interim ``100 Continue`` goes out when the app waits for
    the request body.
    """

    __slots__ = ("transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if len(held) + len(data) <= TLS_RECORD_BYTES:
                self.transport.write(held + data)  # one TLS record
            else:
                # No copy of a large body: asyncio's TLS transport encrypts both and sends them in one socket write.
                self.transport.writelines((held, data))
        elif data.startswith(b"HTTP/1.1 "):
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self.transport.write(data)

    def flush(self) -> None:
        """Send a held head now."""
        held = self._held
        if held is not None:
            self._held = None
            self.transport.write(held)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class TlsScopeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the ASGI TLS extension, a handle for aborting the connection, CCM_POST, and
    the listener's :class:`ConnectionLimits`.

    ConfigMgr messaging uses the verb ``CCM_POST``, which llhttp (httptools) refuses as an unknown method. At the start
    of each request the verb is rewritten to ``POST`` before parsing and restored in the scope afterwards. WinHTTP and
    the HTTP clients used here do not pipeline requests, so a request line always starts a read; a pipelined CCM_POST
    after another request in the same read would be refused with a 400.

    ``limits`` is set per listener on a subclass (see :func:`protocol_for`); the header timer runs from the moment the
    connection is handed over (its TLS handshake ran under the same timeout) or a kept-alive request begins, until the
    request's headers are complete. uvicorn's own keep-alive timeout covers the idle time between requests.
    """

    limits: ConnectionLimits = ConnectionLimits()
    memory: MemoryReturner | None = None
    _tls_extension: dict[str, Any] | None = None
    _writer: ResponseWriter
    _expect_request_line = True
    _ccm_post_pending = False
    _partial = b""
    _reading_headers = True
    _header_bytes = 0
    _header_timer: asyncio.TimerHandle | None = None
    _refusal: ReasonStatus | None = None
    _refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # answered and closing: whatever else the client sends is not read
        if self._expect_request_line:
            if self._header_timer is None:
                self._arm_header_timer()
            if self._partial:
                data, self._partial = self._partial + data, b""
            if len(data) < len(CCM_POST_LINE) and CCM_POST_LINE.startswith(data):
                self._partial = data  # wait for the rest of the verb
                return
            if data.startswith(CCM_POST_LINE):
                data = POST_LINE + data[len(CCM_POST_LINE):]
                self._ccm_post_pending = True
            self._expect_request_line = False
            self._reading_headers = True
            self._header_bytes = 0
        if self._reading_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        # Headers still incomplete after this read: what the parser holds is bounded by the total before it grows more
        # (one read is at most 256 KiB of ciphertext, so the parser never holds much more than the limit).
        if self._reading_headers and not self._refused and self._header_bytes > self.limits.max_request_headers_bytes:
            self._refuse(self._request_too_long())

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_header_bytes:
            self._refusal = ReasonStatus(414, f"URL Too Long (limit {self.limits.max_header_bytes} bytes)")
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) + 2 > self.limits.max_header_bytes:
            self._refusal = ReasonStatus(431, f"Header Field Too Long (limit {self.limits.max_header_bytes} bytes)")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._cancel_header_timer()
        # The exact size, request line and header lines with their CRLFs, for when the last read also held body bytes.
        size = len(self.url) + 16 + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.limits.max_request_headers_bytes:
            self._refusal = self._request_too_long()
            raise _Refused
        ccm_post, self._ccm_post_pending = self._ccm_post_pending, False
        absolute_form = not self.url.startswith(b"/")
        super().on_headers_complete()
        self.cycle.transport = self._writer  # type: ignore[assignment]
        if absolute_form:
            # uvicorn keeps only the path of "GET http://host/path"; the CMG must know a host was named, to refuse it.
            self.scope["extensions"]["cmg.absolute_form"] = True  # type: ignore[typeddict-item,assignment]
        if ccm_post:
            # The parser saw POST; the app (whose task has not run yet) must see the verb the client sent.
            self.scope["method"] = "CCM_POST"

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._expect_request_line = True

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            # Refused before anything is read: the cap bounds what idle clients can hold, not only what is served.
            self.connections.discard(self)
            self._refuse(ReasonStatus(503, f"Connection Limit Reached ({self.limits.max_connections} "
                                           "connections on this listener)"))
            return
        self._arm_header_timer()
        self._writer = ResponseWriter(transport, self.loop)
        bound_tls_reads(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            der = ssl_object.getpeercert(binary_form=True)
            self._tls_extension = {
                "client_cert_der": der,
                "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
                "tls_version": ssl_object.version(),
            }

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if self.memory is not None:
            self.memory.connection_closed()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        extensions: dict[str, Any] = {"cmg.abort": self._abort}
        if self._tls_extension is not None:
            extensions["tls"] = self._tls_extension
        self.scope["extensions"] = extensions  # type: ignore[typeddict-unknown-key]

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers 400 to every parser error; a callback's size refusal is one and gets its own status.
        refusal, self._refusal = self._refusal, None
        self._refuse(refusal if refusal is not None else ReasonStatus(400, "Bad Request"))

    # --- limits ---------------------------------------------------------------------------------------------------

    def _request_too_long(self) -> ReasonStatus:
        return ReasonStatus(431, f"Request Too Long (headers over {self.limits.max_request_headers_bytes} bytes)")

    def _refuse(self, status: ReasonStatus) -> None:
        """Answer ``status`` with its reason phrase as the body too, and close; nothing more is read."""
        self._refused = True
        self._cancel_header_timer()
        body = status.reason + b"\r\n"
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n"
                             b"connection: close\r\n\r\n%s" % (int(status), status.reason, len(body), body))
        self.transport.close()

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            # Dropped without an answer, as http.sys does (Timer_HeaderWait); abort frees the TLS buffers at once
            # instead of waiting for the client's close_notify.
            log.debug("closing %s: no complete request headers within %g s", self.client,
                      self.limits.header_timeout_s)
            self.transport.abort()

    def _abort(self) -> None:
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER with a zero timeout turns close() into a TCP RST, which is what a reset fault must look like.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


def protocol_for(limits: ConnectionLimits, memory: MemoryReturner | None = None) -> type[TlsScopeProtocol]:
    """The protocol class for a listener with ``limits`` (uvicorn builds protocols from a class and its config)."""
    return type("LimitedTlsScopeProtocol", (TlsScopeProtocol,), {"limits": limits, "memory": memory})


def abort_on_request(app: ASGIApp) -> ASGIApp:
    """Wrap ``app`` so that :class:`AbortConnection` (or a fault's reset) resets the client's connection."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            inner_send = send

            # One wrapper per response message (this runs on every answer the site sends): the reason phrase moves
            # from the message's "reason" key into the status, which the server writes on the status line.
            async def send(message: MutableMapping[str, Any]) -> None:
                reason = message.get("reason")
                if reason is not None and message["type"] == "http.response.start":
                    message = dict(message)
                    message["status"] = ReasonStatus(message["status"], reason)
                    del message["reason"]
                await inner_send(message)

        try:
            await app(scope, receive, send)
        except AbortConnection:
            abort = scope.get("extensions", {}).get("cmg.abort")
            if abort is None:
                raise
            abort()
        except Exception as exc:  # the fault middleware's reset exception, matched by name to avoid an import cycle
            if type(exc).__name__ != "ConnectionResetFault":
                raise
            abort = scope.get("extensions", {}).get("cmg.abort")
            if abort is None:
                raise
            abort()

    return wrapped


@dataclass
class Listener:
    """One ASGI app to serve on one loopback port, with TLS when ``ssl_context`` is given."""

    name: str
    app: ASGIApp
    ssl_context: ssl.SSLContext | None = None
    host: str = "127.0.0.1"
    port: int = 0
    socket: socket.socket | None = field(default=None, repr=False)
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)

    def bind(self) -> int:
        """Bind the listening socket now (port 0 lets the OS choose) and return the port."""
        if self.socket is None:
            self._bind(reuse_port=False)
        return self.port

    def bind_shared(self) -> None:
        """Bind a socket of this process's own to the listener's port with ``SO_REUSEPORT`` (replacing any socket held).

        Worker processes each listen on a socket of their own on one port, and the kernel spreads new connections over
        them by a hash of the address pair. One shared socket would not spread them: asyncio accepts every queued
        connection at once, so whichever worker wakes first takes a whole burst. :class:`OSError` when the port cannot
        be shared (taken by a socket without ``SO_REUSEPORT``).
        """
        if self.socket is not None:
            self.socket.close()
            self.socket = None
        self._bind(reuse_port=True)

    def _bind(self, *, reuse_port: bool) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            if reuse_port or self.port == 0:  # a shared port must be this one; an OS-chosen one has no fallback
                sock.close()
                raise
            # A remembered port is taken: fall back to one the OS picks rather than failing the start.
            log.warning("port %s for %s is busy; letting the OS choose", self.port, self.name)
            sock.bind((self.host, 0))
        sock.listen(2048)
        sock.setblocking(False)
        self.socket = sock
        self.port = sock.getsockname()[1]

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


#: glibc's mallopt parameter for the size from which allocations get their own mapping.
_M_MMAP_THRESHOLD = -3
#: glibc's default for it: asyncio's 256 KiB TLS read buffers lie above it, so each gets a mapping freed on close.
_MMAP_THRESHOLD_BYTES = 128 * 1024


#: Closed connections after which the memory they freed is handed back (see :class:`MemoryReturner`).
TRIM_AFTER_CLOSED_CONNECTIONS = 256
#: How often the site looks whether that many have closed.
TRIM_CHECK_PERIOD_S = 2.0


class MemoryReturner:
    """Hands memory that closed connections freed back to the OS, on glibc (elsewhere it does nothing).

    An idle TLS connection costs the site ~290 KiB: asyncio's 256 KiB read buffer and OpenSSL's state. glibc raises
    its mmap threshold each time a mapped block is freed (the "dynamic" threshold), after which the next 256 KiB buffers
    come from the heap, where freed memory mostly stays in the process; a thousand dropped slow clients would leave the
    site hundreds of MiB larger for good. So the threshold is pinned at its default (which turns the adjustment off:
    every read buffer is unmapped on close), and after many closes ``malloc_trim`` returns the free pages OpenSSL's
    smaller blocks leave scattered through the heap.
    """

    def __init__(self) -> None:
        self.closed = 0
        self._trim: Callable[[int], int] | None = None
        try:
            libc = ctypes.CDLL(None)
            mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
        except (OSError, AttributeError):
            return
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        malloc_trim.argtypes = [ctypes.c_size_t]
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
        self._trim = malloc_trim

    def connection_closed(self) -> None:
        self.closed += 1

    async def run(self) -> None:
        """Every few seconds: trim when enough connections have closed since the last trim (a trim takes ~ms)."""
        while self._trim is not None:
            await asyncio.sleep(TRIM_CHECK_PERIOD_S)
            if self.closed >= TRIM_AFTER_CLOSED_CONNECTIONS:
                self.closed = 0
                self._trim(0)


class _LimitedServer(uvicorn.Server):
    """uvicorn's server on given sockets, with the TLS handshake held to the listener's header timeout.

    asyncio's default handshake timeout is 60 s, and a connection that never starts its handshake holds a 256 KiB read
    buffer all that time; uvicorn does not expose the setting, so the listening part of its start-up is done here.
    """

    def __init__(self, config: uvicorn.Config, limits: ConnectionLimits) -> None:
        super().__init__(config)
        self.limits = limits

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        config = self.config
        state: ServerState = self.server_state

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=state, app_state=self.lifespan.state, _loop=_loop)

        loop = asyncio.get_running_loop()
        handshake_timeout = self.limits.header_timeout_s if config.ssl is not None else None
        self.servers = [await loop.create_server(create_protocol, sock=sock, ssl=config.ssl, backlog=config.backlog,
                                                 ssl_handshake_timeout=handshake_timeout)
                        for sock in sockets or ()]
        self.started = True


class ServerGroup:
    """Runs several :class:`Listener` objects in one asyncio loop until :meth:`stop` is called."""

    def __init__(self, listeners: list[Listener]) -> None:
        self.listeners = listeners
        self._servers: list[uvicorn.Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.memory: MemoryReturner | None = None
        self._memory_task: asyncio.Task[None] | None = None

    def bind(self) -> None:
        for listener in self.listeners:
            listener.bind()

    def _server_for(self, listener: Listener) -> uvicorn.Server:
        context = listener.ssl_context

        def factory(_config: uvicorn.Config, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
            assert context is not None
            return context

        config = uvicorn.Config(
            abort_on_request(listener.app),
            http=protocol_for(listener.limits, self.memory),
            ws="none",
            lifespan="off",
            log_level="warning",
            access_log=False,
            server_header=False,
            date_header=False,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=5,
            ssl_context_factory=factory if context is not None else None,
            limit_max_requests=None,
            backlog=2048,
        )
        server = _LimitedServer(config, listener.limits)
        # The site installs its own signal handling; uvicorn must not take SIGINT/SIGTERM from it.
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        return server

    async def start(self) -> None:
        """Bind every listener and start serving; returns once all are accepting connections."""
        self.bind()
        self.memory = MemoryReturner()
        self._servers = [self._server_for(listener) for listener in self.listeners]
        self._memory_task = asyncio.create_task(self.memory.run(), name="return-memory")
        self._tasks = [
            asyncio.create_task(server.serve(sockets=[listener.socket] if listener.socket else None),
                                name=f"serve-{listener.name}")
            for server, listener in zip(self._servers, self.listeners, strict=True)
        ]
        while not all(server.started for server in self._servers):
            for task in self._tasks:
                if task.done():
                    task.result()  # re-raise a failed start
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish, and close the sockets."""
        for server in self._servers:
            server.should_exit = True
        if self._servers:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._memory_task is not None:
            self._memory_task.cancel()
            await asyncio.gather(self._memory_task, return_exceptions=True)
        for listener in self.listeners:
            if listener.socket is not None:
                listener.socket.close()
