"""A lean keep-alive HTTP/1.1 client for the Locust users: the same bytes on the wire as Locust's FastHttpSession,
at a fraction of its cost per request.

FastHttpSession spends more of a worker's CPU in its own layers (request metadata, case-insensitive header dicts,
response wrappers) than in talking HTTP. This client writes each request in one ``sendall`` and parses the answer with
httptools; the caller fires Locust's request event itself. What a proxy sees does not change: the request line and
headers are byte for byte what geventhttpclient writes (its header order, its ``Host`` form, Locust's
``Accept-Encoding``, geventhttpclient's default User-Agent where the request names none), TLS is verified with the
context the caller hands over (host name checked), connections are kept alive and reused, and an idle connection the
server closed is noticed before it is used.

It uses the ``socket`` and ``ssl`` modules as they are at call time: under Locust (gevent monkey-patched) they are
gevent's, so it cooperates with the other users; in a plain process (the tests) it blocks as usual.
"""

from __future__ import annotations

import errno
import re
import select
import socket
import ssl
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import quote

import httptools  # type: ignore[import-untyped]

from harness.client import outcome as oc
from harness.client.events import TransportError
from harness.client.transport import classify_exception

#: Locust's FastHttpSession adds this to every request that names no Accept-Encoding.
LOCUST_ACCEPT_ENCODING = "gzip, deflate, br"
#: Methods geventhttpclient sends again on a new connection when the server closed the old one without answering
#: (RFC 9110 section 9.2.2: a non-idempotent request may have been processed, so it is never sent twice).
IDEMPOTENT_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"))
#: Methods that carry ``Content-Length: 0`` when their body is empty (as geventhttpclient and curl send them).
_BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))
_BLOCK = 64 * 1024
#: The characters a request target keeps as they are when requoted (RFC 3986 unreserved and reserved): a target made
#: only of these needs no quoting pass, the usual case.
_PLAIN_TARGET = re.compile(r"[A-Za-z0-9\-._~!#$&'()*+,/:;=?@\[\]]*")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


#: Whether a socket has something to read right now (never waits): the pool's look at an idle connection.
Readable = Callable[[socket.socket], bool]


class ConnectionClosed(Exception):
    """The server closed the connection (or reset it) before the whole answer arrived.

    ``nothing`` is true when not a byte of the answer came (a request that may be sent again, as geventhttpclient
    sends it again); a close mid-answer is never retried."""

    def __init__(self, *, nothing: bool) -> None:
        super().__init__("connection closed." if nothing else "connection closed mid-answer.")
        self.nothing = nothing


class Answer(NamedTuple):
    """An HTTP answer: status, reason phrase, headers (names in lower case, latin-1 text) and the whole body."""

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes


class Origin(NamedTuple):
    """Where an absolute URL points: the host to connect to and verify, its port, and the ``Host`` header value."""

    host: str
    port: int
    host_header: str


def requote(target: str) -> str:
    """``target`` percent-encoded as geventhttpclient sends it (its copy of requests' ``requote_uri``).

    Escapes of unreserved characters are decoded, every other escape kept, and characters outside the reserved and
    unreserved sets quoted; text with a ``%`` that starts no hexadecimal escape is quoted whole, ``%`` included.
    """
    if "%" not in target and _PLAIN_TARGET.fullmatch(target):
        return target
    quoted = _REQUOTED.get(target)
    if quoted is None:
        if len(_REQUOTED) >= _REQUOTED_SIZE:
            _REQUOTED.clear()
        quoted = _REQUOTED[target] = _requote(target)
    return quoted


#: Targets requoted lately (policy body URLs carry braces, and every device of a run fetches the same few). Bounded.
_REQUOTED: dict[str, str] = {}
_REQUOTED_SIZE = 4096


def _requote(target: str) -> str:
    parts = target.split("%")
    for i in range(1, len(parts)):
        code = parts[i][:2]
        if len(code) == 2 and code.isalnum():
            try:
                char = chr(int(code, 16))
            except ValueError:
                return quote(target, safe="!#$&'()*+,/:;=?@[]~")
            parts[i] = char + parts[i][2:] if char in _UNRESERVED else "%" + parts[i]
        else:
            parts[i] = "%" + parts[i]
    return quote("".join(parts), safe="!#$%&'()*+,/:;=?@[]~")


#: Origins by the scheme and authority they were read from (a run talks to a handful of servers). Bounded.
_ORIGINS: dict[str, Origin] = {}
_ORIGINS_SIZE = 256


def split_url(url: str) -> tuple[Origin, str]:
    """The origin of an absolute http(s) URL and its request target (path and query, fragment dropped, requoted)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    slash = rest.find("/")
    authority, target = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    if "?" in authority or "#" in authority:
        cut = min(i for i in (authority.find("?"), authority.find("#")) if i >= 0)
        target = "/" + authority[cut:]
        authority = authority[:cut]
    key = scheme + "://" + authority
    origin = _ORIGINS.get(key)
    if origin is None:
        origin = _origin(scheme.lower(), authority, url)
        if len(_ORIGINS) >= _ORIGINS_SIZE:
            _ORIGINS.clear()
        _ORIGINS[key] = origin
    target = target.split("#", 1)[0]
    if target.endswith("?"):
        target = target[:-1]  # an empty query is no query (as geventhttpclient's URL reads it)
    return origin, requote(target)


def _origin(scheme: str, authority: str, url: str) -> Origin:
    hostport = authority.rsplit("@", 1)[-1]
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = hostport.partition(":")
    default = 443 if scheme == "https" else 80
    try:
        port = int(port_text) if port_text else default
    except ValueError:
        raise ValueError(f"bad port in URL {url!r}") from None
    if not host or not 0 < port < 65536:
        raise ValueError(f"bad host or port in URL {url!r}")
    header = f"[{host}]" if ":" in host else host
    if port not in (80, 443):
        header += f":{port}"
    return Origin(host, port, header)


def request_head(method: str, target: str, headers: dict[str, str], body_length: int, *, host_header: str,
                 default_user_agent: str) -> bytes:
    """The request line and headers exactly as Locust's FastHttpSession (geventhttpclient) writes them.

    Its order: the default User-Agent's place first (taken by the request's own User-Agent when it names one), the
    request's headers, ``Accept-Encoding`` unless named, ``Host``, then ``Content-Length`` for a body (``0`` for an
    empty POST, PUT or PATCH).
    """
    lower = {name.lower() for name in headers}
    user_agent = default_user_agent
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    rest = []
    for name, value in headers.items():
        if name.lower() == "user-agent":
            user_agent = value
        else:
            rest.append(f"{name}: {value}\r\n")
    lines.append(f"User-Agent: {user_agent}\r\n")
    lines += rest
    if "accept-encoding" not in lower:
        lines.append(f"Accept-Encoding: {LOCUST_ACCEPT_ENCODING}\r\n")
    if "host" not in lower:
        lines.append(f"Host: {host_header}\r\n")
    if "content-length" not in lower and (body_length or method in _BODY_METHODS):
        lines.append(f"Content-Length: {body_length}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


class _Reading:
    """httptools callbacks gathering one answer."""

    __slots__ = ("body", "done", "headers", "headers_done", "keep_alive", "parser", "reason")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.keep_alive = False
        self.on_message_begin()

    def on_message_begin(self) -> None:
        # Also after an interim 1xx answer: the final one starts afresh.
        self.reason = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.headers_done = False
        self.done = False

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True
        # Asked now: once the message is complete the parser is ready for the next one and no longer knows.
        self.keep_alive = self.parser.should_keep_alive()


class ConnectionPool:
    """Keep-alive connections to one server with one TLS context: an idle one is reused, else a new one opened.

    ``readable`` looks at an idle connection without waiting (``select`` with no timeout by default; under gevent the
    unpatched one, as a look that never waits needs no hub). ``size`` is how many idle connections are kept (a user
    sending one request at a time needs one); like geventhttpclient, a request the server closed the connection on
    before a byte of answer is sent again on a new connection up to ``size + 1`` times, idempotent methods only.
    """

    def __init__(self, origin: Origin, context: ssl.SSLContext | None, *, connect_timeout: float,
                 network_timeout: float, size: int = 1, readable: Readable | None = None) -> None:
        if not connect_timeout > 0 or not network_timeout > 0:
            raise ValueError(f"timeouts must be > 0 s, got connect {connect_timeout!r}, network {network_timeout!r}")
        if size < 1:
            raise ValueError(f"pool size must be >= 1, got {size!r}")
        self.origin = origin
        self.context = context
        self.connect_timeout = connect_timeout
        self.network_timeout = network_timeout
        self.size = size
        self._readable = readable or _readable
        self._idle: list[socket.socket] = []
        #: Connections opened so far (a test counts reuse with it).
        self.opened = 0

    def request(self, method: str, head: bytes, body: bytes = b"") -> Answer:
        """Send ``head`` + ``body`` and read the whole answer; socket, TLS and parse errors propagate as raised."""
        retries = self.size + 1 if method in IDEMPOTENT_METHODS else 0
        while True:
            sock = self._take()
            try:
                answer, keep = self._exchange(sock, method, head + body)
            except ConnectionClosed as closed:
                _close(sock)
                if closed.nothing and retries > 0:
                    retries -= 1
                    continue
                raise
            except BaseException:
                _close(sock)
                raise
            if keep and len(self._idle) < self.size:
                self._idle.append(sock)
            else:
                _close(sock)
            return answer

    def close(self) -> None:
        """Close every idle connection."""
        while self._idle:
            _close(self._idle.pop())

    def _take(self) -> socket.socket:
        while self._idle:
            sock = self._idle.pop()
            if _alive(sock, self._readable):
                return sock
            _close(sock)
        return self._connect()

    def _connect(self) -> socket.socket:
        origin = self.origin
        sock = socket.create_connection((origin.host, origin.port), timeout=self.connect_timeout)
        try:
            if self.context is not None:  # the handshake runs within the connect timeout, as geventhttpclient's
                sock = self.context.wrap_socket(sock, server_hostname=origin.host)
            sock.settimeout(self.network_timeout)
        except BaseException:
            _close(sock)
            raise
        self.opened += 1
        return sock

    def _exchange(self, sock: socket.socket, method: str, data: bytes) -> tuple[Answer, bool]:
        try:
            sock.sendall(data)
        except OSError as exc:
            # The server may have answered early and closed (a refusal of a large body): read what it sent.
            if exc.errno not in (errno.ECONNRESET, errno.EPIPE):
                raise
        reading = _Reading()
        parser = reading.parser
        received = False
        while True:
            try:
                data = sock.recv(_BLOCK)
            except ConnectionResetError:
                data = b""
            if not data:
                if reading.headers_done and _close_delimited(reading.headers, parser):
                    break  # a body without length ends with the connection
                raise ConnectionClosed(nothing=not received)
            received = True
            parser.feed_data(data)
            if reading.done:
                if parser.get_status_code() >= 200:
                    break
                reading.done = False  # an interim answer (100 Continue): the final one follows
            elif reading.headers_done and method == "HEAD":
                break
        status = parser.get_status_code()
        keep = reading.done and reading.keep_alive
        answer = Answer(status, reading.reason.decode("latin-1"), reading.headers, b"".join(reading.body))
        return answer, keep


def transport_error(error: BaseException, ms: float) -> TransportError:
    """The lifecycle's transport error for a request that got no whole answer: a connection closed before or during
    the answer is a reset; TLS, connect, timeout and parse errors are read as every driver reads them."""
    if isinstance(error, ConnectionClosed):
        return TransportError(oc.RESET, f"{type(error).__name__}: {error}", ms=ms)
    reason, detail = classify_exception(error)
    return TransportError(reason, detail, ms=ms)


def _close_delimited(headers: dict[str, str], parser: httptools.HttpResponseParser) -> bool:
    return ("content-length" not in headers and "chunked" not in headers.get("transfer-encoding", "").lower()
            and parser.get_status_code() >= 200)


def _readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0.0)[0])


def _alive(sock: socket.socket, readable: Readable) -> bool:
    """An idle keep-alive connection is never readable: if it is, the server closed it (or sent stray bytes)."""
    try:
        return sock.fileno() >= 0 and not readable(sock)
    except (OSError, ValueError):
        return False


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
