"""Running the site's ASGI apps under uvicorn, over real TLS, on loopback ports chosen by the OS.

uvicorn does not put the TLS client certificate into the ASGI scope, and the CMG needs it for the
``CCM_Proxy_MutualAuth`` paths; so the HTTP protocol class here adds the ASGI TLS extension
(``scope["extensions"]["tls"]["client_cert_chain"]``). It also lets an app abort the TCP connection (the ``reset``
fault and an unreachable CRL distribution point) by raising :class:`AbortConnection`.
"""

from __future__ import annotations

import asyncio
import contextlib
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

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("mock_site.server")


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


class TlsScopeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the ASGI TLS extension, a handle for aborting the connection, and CCM_POST.

    ConfigMgr messaging uses the verb ``CCM_POST``, which llhttp (httptools) refuses as an unknown method. At the start
    of each request the verb is rewritten to ``POST`` before parsing and restored in the scope afterwards. WinHTTP and
    the HTTP clients used here do not pipeline requests, so a request line always starts a read; a pipelined CCM_POST
    after another request in the same read would be refused with a 400.
    """

    _tls_extension: dict[str, Any] | None = None
    _expect_request_line = True
    _ccm_post_pending = False
    _partial = b""

    def data_received(self, data: bytes) -> None:
        if self._expect_request_line:
            if self._partial:
                data, self._partial = self._partial + data, b""
            if len(data) < len(CCM_POST_LINE) and CCM_POST_LINE.startswith(data):
                self._partial = data  # wait for the rest of the verb
                return
            if data.startswith(CCM_POST_LINE):
                data = POST_LINE + data[len(CCM_POST_LINE):]
                self._ccm_post_pending = True
            self._expect_request_line = False
        super().data_received(data)

    def on_headers_complete(self) -> None:
        ccm_post, self._ccm_post_pending = self._ccm_post_pending, False
        absolute_form = not self.url.startswith(b"/")
        super().on_headers_complete()
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

    def on_message_begin(self) -> None:
        super().on_message_begin()
        extensions: dict[str, Any] = {"cmg.abort": self._abort}
        if self._tls_extension is not None:
            extensions["tls"] = self._tls_extension
        self.scope["extensions"] = extensions  # type: ignore[typeddict-unknown-key]

    def _abort(self) -> None:
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER with a zero timeout turns close() into a TCP RST, which is what a reset fault must look like.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


def abort_on_request(app: ASGIApp) -> ASGIApp:
    """Wrap ``app`` so that :class:`AbortConnection` (or a fault's reset) resets the client's connection."""

    async def send_with_reason(send: Send, message: MutableMapping[str, Any]) -> None:
        reason = message.get("reason")
        if reason is not None and message["type"] == "http.response.start":
            message = dict(message)
            message["status"] = ReasonStatus(message["status"], reason)
            del message["reason"]
        await send(message)

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            inner_send = send

            async def send(message: MutableMapping[str, Any]) -> None:
                await send_with_reason(inner_send, message)

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

    def bind(self) -> int:
        """Bind the listening socket now (port 0 lets the OS choose) and return the port."""
        if self.socket is None:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, self.port))
            except OSError:
                if self.port == 0:
                    raise
                # A remembered port is taken: fall back to one the OS picks rather than failing the start.
                log.warning("port %s for %s is busy; letting the OS choose", self.port, self.name)
                sock.bind((self.host, 0))
            sock.listen(2048)
            sock.setblocking(False)
            self.socket = sock
            self.port = sock.getsockname()[1]
        return self.port

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


class ServerGroup:
    """Runs several :class:`Listener` objects in one asyncio loop until :meth:`stop` is called."""

    def __init__(self, listeners: list[Listener]) -> None:
        self.listeners = listeners
        self._servers: list[uvicorn.Server] = []

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
            http=TlsScopeProtocol,
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
        server = uvicorn.Server(config)
        # The site installs its own signal handling; uvicorn must not take SIGINT/SIGTERM from it.
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        return server

    async def start(self) -> None:
        """Bind every listener and start serving; returns once all are accepting connections."""
        self.bind()
        self._servers = [self._server_for(listener) for listener in self.listeners]
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
        for listener in self.listeners:
            if listener.socket is not None:
                listener.socket.close()
