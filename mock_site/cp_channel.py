"""The connection point's outbound channel: the CP dials every CMG instance and the CMG sends client requests down it.

A real connection point opens long-lived TCP-TLS connections *to* each CMG VM instance (one port per instance), checks
them every minute, and the CMG reaches the site only through them. Here each CMG instance runs a :class:`ChannelHub`
(a TLS listener that takes only the site's connection point certificate) and each connection point a
:class:`ChannelClient` that keeps one channel per instance open, reconnecting with a bounded back-off when it drops.
Requests are multiplexed over a channel: each carries an id, answers come back matched by id, in any order.

The framing is ours — # synthetic: not the public ConfigMgr format. Every frame is a 9-byte header (payload length,
kind, request id; big-endian) and a payload. A request's payload is a length-prefixed JSON head (method, path,
headers) and the body; an answer's the same with status, reason and headers. ``HELLO`` names the connection point,
``PING``/``PONG`` are the periodic check, ``FAILURE`` says the connection point reset the request instead of answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import socket
import ssl
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cmg_protocol.ids import guid
from mock_site.peers import PEER_CP, peer_role
from mock_site.server import ASGIApp
from mock_site.upstream import InProcessUpstream, UpstreamError, UpstreamResponse

# synthetic: not the public ConfigMgr format (the whole framing below)
FRAME_HEADER = struct.Struct(">IBI")
HEAD_LENGTH = struct.Struct(">I")
KIND_HELLO = 1
KIND_REQUEST = 2
KIND_RESPONSE = 3
KIND_FAILURE = 4
KIND_PING = 5
KIND_PONG = 6
KINDS = frozenset({KIND_HELLO, KIND_REQUEST, KIND_RESPONSE, KIND_FAILURE, KIND_PING, KIND_PONG})
#: Bound on one frame: the CMG's largest request body or an MP answer (ccmsetup.cab) with room for the head.
MAX_FRAME_BYTES = 64 * 1024 * 1024
#: What the CP's scope carries for a request that came down its channel (the CMG was verified at the handshake).
CHANNEL_SCOPE_KEY = "cmg_channel"

#: The first channel port of a real CMG (instance n listens on 10140 + n); the mock binds free ports unless told.
FIRST_CHANNEL_PORT = 10140


class ChannelClosed(Exception):
    """The channel ended (end of stream, reset, or a frame that breaks the framing)."""


@dataclass(frozen=True, slots=True)
class Frame:
    kind: int
    request_id: int
    payload: bytes


def encode_frame(kind: int, request_id: int, payload: bytes = b"") -> bytes:
    return FRAME_HEADER.pack(len(payload), kind, request_id) + payload


def _with_head(head: Mapping[str, Any], body: bytes) -> bytes:
    encoded = json.dumps(head, separators=(",", ":")).encode()
    return HEAD_LENGTH.pack(len(encoded)) + encoded + body


def _split_head(payload: bytes) -> tuple[dict[str, Any], bytes]:
    if len(payload) < HEAD_LENGTH.size:
        raise ChannelClosed("frame payload shorter than its head length")
    (length,) = HEAD_LENGTH.unpack_from(payload)
    end = HEAD_LENGTH.size + length
    if end > len(payload):
        raise ChannelClosed(f"frame head of {length} bytes runs past the payload")
    try:
        head = json.loads(payload[HEAD_LENGTH.size:end])
    except ValueError as exc:
        raise ChannelClosed(f"frame head is not JSON: {exc}") from None
    if not isinstance(head, dict):
        raise ChannelClosed("frame head is not a JSON object")
    return head, payload[end:]


def encode_request(request_id: int, method: str, path: str, headers: Mapping[str, str], body: bytes) -> bytes:
    return encode_frame(KIND_REQUEST, request_id, _with_head({"m": method, "p": path, "h": dict(headers)}, body))


def decode_request(payload: bytes) -> tuple[str, str, dict[str, str], bytes]:
    head, body = _split_head(payload)
    method, path, headers = head.get("m"), head.get("p"), head.get("h")
    if not isinstance(method, str) or not isinstance(path, str) or not isinstance(headers, dict):
        raise ChannelClosed("request head lacks method, path or headers")
    return method, path, {str(k): str(v) for k, v in headers.items()}, body


def encode_response(request_id: int, answer: UpstreamResponse) -> bytes:
    head = {"s": answer.status, "r": answer.reason, "h": answer.headers}
    return encode_frame(KIND_RESPONSE, request_id, _with_head(head, answer.body))


def decode_response(payload: bytes) -> UpstreamResponse:
    head, body = _split_head(payload)
    status, reason, headers = head.get("s"), head.get("r"), head.get("h")
    if not isinstance(status, int) or not isinstance(reason, str) or not isinstance(headers, dict):
        raise ChannelClosed("response head lacks status, reason or headers")
    return UpstreamResponse(status=status, reason=reason, headers={str(k): str(v) for k, v in headers.items()},
                            body=body)


async def read_frame(reader: asyncio.StreamReader) -> Frame:
    try:
        header = await reader.readexactly(FRAME_HEADER.size)
        length, kind, request_id = FRAME_HEADER.unpack(header)
        if kind not in KINDS:
            raise ChannelClosed(f"unknown frame kind {kind}")
        if length > MAX_FRAME_BYTES:
            raise ChannelClosed(f"frame of {length} bytes is over the {MAX_FRAME_BYTES}-byte limit")
        payload = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError:
        raise ChannelClosed("the other end closed the connection") from None
    except (ConnectionError, ssl.SSLError) as exc:
        raise ChannelClosed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None
    return Frame(kind, request_id, payload)


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.transport.abort()


class _HubChannel:
    """The CMG's end of one channel: pending requests by id."""

    def __init__(self, cp_name: str, connection_id: str, writer: asyncio.StreamWriter) -> None:
        self.cp_name = cp_name
        self.connection_id = connection_id
        self.writer = writer
        self.pending: dict[int, asyncio.Future[UpstreamResponse]] = {}
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids) % 0xFFFFFFFF or next(self._ids)

    def fail_pending(self, reason: str) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(UpstreamError("reset", f"{self.cp_name}: the channel closed ({reason})"))
        self.pending.clear()


class ChannelHub:
    """One CMG instance's channel endpoint: takes channels from connection points and sends requests down them.

    Requests are spread round-robin over the connected channels (one per connection point). While none is connected
    a request fails at once with :class:`UpstreamError` ``connect``; the CMG answers it as having no connection point.
    While the ``cp_disconnected`` fault is on at the CMG, the hub drops every channel and refuses new ones.
    """

    def __init__(self, *, instance: int, ssl_context: ssl.SSLContext, faults: Any, logs: Any, host: str = "127.0.0.1",
                 port: int = 0, timeout: float = 30.0, handshake_timeout: float = 10.0,
                 new_connection_id: Callable[[], str] | None = None) -> None:
        self.instance = instance
        self.ssl_context = ssl_context
        self.faults = faults
        self.log = logs.writer("CMGService.log" if instance == 0 else f"CMGService_IN_{instance}.log") \
            if logs is not None else None
        self.host = host
        self.port = port
        self.timeout = timeout
        self.handshake_timeout = handshake_timeout
        ids = random.Random()
        self.new_connection_id: Callable[[], str] = new_connection_id or (lambda: guid(ids))
        self.channels: list[_HubChannel] = []
        #: Requests sent down the channels since start (what tells a channel hop from a direct one in tests).
        self.forwarded = 0
        self._turn = 0
        self._socket: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    # ---------------------------------------------------------------- serving
    def bind(self) -> int:
        """Bind the listening socket now (so the port is known before serving); returns the port."""
        if self._socket is None:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, self.port))
            except OSError:
                sock.close()
                raise
            sock.listen(128)
            sock.setblocking(False)
            self._socket = sock
            self.port = sock.getsockname()[1]
        return self.port

    def rebind(self) -> int:
        """Close the listening socket bound so far and bind a new one on a free port (a worker process of
        ``up --processes`` takes its own connection points' channels apart from the other workers'); the port."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self.port = 0
        return self.bind()

    async def start(self) -> None:
        self.bind()
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._accept, sock=self._socket, limit=2 ** 20)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for channel in list(self.channels):
            _close(channel.writer)
            channel.fail_pending("the CMG stopped")
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        self.channels.clear()

    def connected(self) -> list[str]:
        """Names of the connection points with a channel open now."""
        return [channel.cp_name for channel in self.channels]

    async def wait_connected(self, count: int, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until ``count`` channels are open; whether they are."""
        deadline = time.monotonic() + timeout
        while len(self.channels) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True

    def _info(self, text: str) -> None:
        if self.log is not None:
            self.log.info(text)

    def _error(self, text: str) -> None:
        if self.log is not None:
            self.log.error(text)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)  # type: ignore[arg-type]
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            pass  # the hub stops: the channel is over (the server's callback must not see a cancelled task)
        finally:
            self._handlers.discard(task)  # type: ignore[arg-type]
            _close(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            await writer.start_tls(self.ssl_context, ssl_handshake_timeout=self.handshake_timeout)
        except (ssl.SSLError, ConnectionError, TimeoutError, OSError) as exc:
            self._error(f"Refused connection point channel from {peer[0]}:{peer[1]} on port {self.port}: "
                        f"TLS handshake failed: {exc}")
            return
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if peer_role(der) != PEER_CP:
            # Signed by the site CA, but not the connection point's certificate (a device, the CMG's own identity).
            self._error(f"Refused connection point channel from {peer[0]}:{peer[1]} on port {self.port}: the client "
                        "certificate is not a connection point's")
            return
        if self.faults.get("cp_disconnected", "cmg") is not None:
            self._error(f"Refused connection point channel on port {self.port}: fault cp_disconnected is on")
            return
        try:
            hello = await asyncio.wait_for(read_frame(reader), self.handshake_timeout)
        except (ChannelClosed, TimeoutError) as exc:
            self._error(f"Refused connection point channel on port {self.port}: no HELLO ({exc})")
            return
        if hello.kind != KIND_HELLO:
            self._error(f"Refused connection point channel on port {self.port}: first frame is kind {hello.kind}")
            return
        cp_name = hello.payload.decode("utf-8", "replace")[:64] or "cp"
        channel = _HubChannel(cp_name, self.new_connection_id(), writer)
        self.channels.append(channel)
        self._changed.set()
        self._info(f"Connection point {cp_name} connected over TCP-TLS on port {self.port} "
                   f"(connection {channel.connection_id})")
        reason = "closed by the connection point"
        try:
            while True:
                frame = await read_frame(reader)
                if frame.kind == KIND_PING:
                    writer.write(encode_frame(KIND_PONG, frame.request_id))
                elif frame.kind in (KIND_RESPONSE, KIND_FAILURE):
                    future = channel.pending.pop(frame.request_id, None)
                    if future is None or future.done():
                        continue  # answer to a request that timed out: dropped
                    if frame.kind == KIND_RESPONSE:
                        future.set_result(decode_response(frame.payload))
                    else:
                        kind, _, detail = frame.payload.decode("utf-8", "replace").partition(":")
                        future.set_exception(UpstreamError(kind if kind in ("reset", "timeout") else "reset",
                                                           f"{cp_name}: {detail or kind}"))
                else:
                    raise ChannelClosed(f"unexpected frame kind {frame.kind} from the connection point")
        except ChannelClosed as closed:
            reason = str(closed) or reason
        except asyncio.CancelledError:
            reason = "the CMG dropped the channel"
            raise
        finally:
            if channel in self.channels:
                self.channels.remove(channel)
            self._changed.set()
            channel.fail_pending(reason)
            self._error(f"Connection point {cp_name} disconnected from port {self.port} "
                        f"(connection {channel.connection_id}): {reason}")

    def drop_all(self, reason: str) -> None:
        """Close every channel (the ``cp_disconnected`` fault); the connection points will try to come back."""
        for channel in list(self.channels):
            self._error(f"Dropping the channel of connection point {channel.cp_name} "
                        f"(connection {channel.connection_id}): {reason}")
            _close(channel.writer)

    def on_fault_change(self, event: Any) -> None:
        """Fault registry listener: ``cp_disconnected`` switched on at the CMG drops the channels (any thread)."""
        fault = getattr(event, "fault", None)
        if getattr(fault, "name", None) != "cp_disconnected" or not event.active or self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to drop
            self._loop.call_soon_threadsafe(self.drop_all, "fault cp_disconnected")

    # ---------------------------------------------------------------- requests
    async def request(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> UpstreamResponse:
        if not self.channels:
            raise UpstreamError("connect", f"no connection point is connected to CMG instance {self.instance}")
        self._turn = (self._turn + 1) % len(self.channels)
        channel = self.channels[self._turn]
        request_id = channel.next_id()
        self.forwarded += 1
        future: asyncio.Future[UpstreamResponse] = asyncio.get_running_loop().create_future()
        channel.pending[request_id] = future
        try:
            # One timer for the whole exchange (asyncio.timeout), not wait_for's extra waiter and callbacks.
            async with asyncio.timeout(self.timeout):
                channel.writer.write(encode_request(request_id, method, path, headers, body))
                await channel.writer.drain()
                return await future
        except TimeoutError:
            raise UpstreamError("timeout", f"{channel.cp_name} did not answer within {self.timeout} s") from None
        except ConnectionError as exc:
            raise UpstreamError("reset", f"{channel.cp_name}: {exc}") from None
        finally:
            channel.pending.pop(request_id, None)


@dataclass(frozen=True, slots=True)
class ChannelTarget:
    """Where a connection point dials: a CMG instance's channel port and the name its certificate carries."""

    host: str
    port: int
    server_hostname: str


class ChannelClient:
    """One connection point's channels: one to every CMG instance, kept open, checked, and rebuilt when they drop.

    Requests that come down a channel are handed to the connection point's own app in-process, marked as coming from
    the CMG (the CMG proved who it is with its server certificate at the handshake).
    """

    def __init__(self, *, name: str, app: ASGIApp, targets: Sequence[ChannelTarget], ssl_context: ssl.SSLContext,
                 logs: Any, check_interval: float = 60.0, check_timeout: float = 10.0,
                 retry_delays: Sequence[float] = (0.1, 0.2, 0.5),
                 new_connection_id: Callable[[], str] | None = None) -> None:
        if not retry_delays or min(retry_delays) <= 0:
            raise ValueError(f"retry delays must be positive, got {list(retry_delays)}")
        self.name = name
        self.targets = list(targets)
        self.ssl_context = ssl_context
        self.log = logs.writer("SMS_CLOUD_PROXYCONNECTOR.log") if logs is not None else None
        self.check_interval = check_interval
        self.check_timeout = check_timeout
        self.retry_delays = tuple(retry_delays)
        ids = random.Random()
        self.new_connection_id: Callable[[], str] = new_connection_id or (lambda: guid(ids))
        self._dispatch = InProcessUpstream(name=name, app=app, scope_extensions={CHANNEL_SCOPE_KEY: {"cp": name}})
        self._tasks: list[asyncio.Task[None]] = []
        self._writers: dict[int, asyncio.StreamWriter] = {}
        #: Channels built since start, per target index (a test waits for a reconnect with it).
        self.connects: dict[int, int] = {}

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    async def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [asyncio.create_task(self._keep(index, target), name=f"{self.name}-channel-{index}")
                       for index, target in enumerate(self.targets)]

    async def stop(self) -> None:
        """Close every channel and stop reconnecting (a connection point that stops or restarts)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _info(self, text: str) -> None:
        if self.log is not None:
            self.log.info(text)

    def _error(self, text: str) -> None:
        if self.log is not None:
            self.log.error(text)

    async def _keep(self, index: int, target: ChannelTarget) -> None:
        """Build the channel, serve it until it drops, wait a bounded back-off, repeat until stopped."""
        failures = 0
        while True:
            connection_id = self.new_connection_id()
            server = f"{target.server_hostname}:{target.port}"
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(target.host, target.port, ssl=self.ssl_context,
                                            server_hostname=target.server_hostname, limit=2 ** 20),
                    self.check_timeout)
            except (OSError, ssl.SSLError, TimeoutError) as exc:
                failures += 1
                # The shape of the connection point's failure line in ConfigMgr's troubleshooting samples.
                self._error(f"ERROR: Failed to build Tcp connection {connection_id} with server {server}. "
                            f"Exception: {type(exc).__name__}: {exc}")
            else:
                reason = await self._serve(index, connection_id, server, reader, writer)
                failures = 0 if reason.startswith("served") else failures + 1
            delay = self.retry_delays[min(failures, len(self.retry_delays) - 1)]
            await asyncio.sleep(delay)

    async def _serve(self, index: int, connection_id: str, server: str, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> str:
        writer.write(encode_frame(KIND_HELLO, 0, self.name.encode()))
        requests: set[asyncio.Task[None]] = set()
        pong = asyncio.Event()
        checker = asyncio.create_task(self._check(writer, pong))
        first = True
        reason = "closed by the CMG"
        try:
            while True:
                frame = await read_frame(reader)
                if first:
                    first = False
                    self.connects[index] = self.connects.get(index, 0) + 1
                    self._writers[index] = writer
                    self._info(f"Connection {connection_id} with server {server} is established (TCP-TLS)")
                if frame.kind == KIND_REQUEST:
                    task = asyncio.create_task(self._answer(frame, writer))
                    requests.add(task)
                    task.add_done_callback(requests.discard)
                elif frame.kind == KIND_PONG:
                    pong.set()
                else:
                    raise ChannelClosed(f"unexpected frame kind {frame.kind} from the CMG")
        except ChannelClosed as closed:
            reason = str(closed) or reason
        except asyncio.CancelledError:
            reason = "the connection point stopped"
            raise
        finally:
            checker.cancel()
            for task in list(requests):
                task.cancel()
            _close(writer)
            self._writers.pop(index, None)
            if first:
                self._error(f"ERROR: Failed to build Tcp connection {connection_id} with server {server}. "
                            f"Exception: the CMG closed the channel before it was established ({reason})")
            else:
                self._error(f"Connection {connection_id} with server {server} is closed: {reason}")
        return reason if first else f"served: {reason}"

    async def _check(self, writer: asyncio.StreamWriter, pong: asyncio.Event) -> None:
        """The periodic check: a PING the CMG must answer within ``check_timeout`` s, else the channel is rebuilt.

        The first check goes out at once, so a channel the CMG refuses is noticed at connect time."""
        for _ in itertools.count():
            pong.clear()
            writer.write(encode_frame(KIND_PING, 0))
            try:
                await asyncio.wait_for(pong.wait(), self.check_timeout)
            except TimeoutError:
                self._error(f"The CMG did not answer the channel check within {self.check_timeout} s")
                _close(writer)
                return
            await asyncio.sleep(self.check_interval)

    async def _answer(self, frame: Frame, writer: asyncio.StreamWriter) -> None:
        try:
            method, path, headers, body = decode_request(frame.payload)
        except ChannelClosed as bad:
            writer.write(encode_frame(KIND_FAILURE, frame.request_id, f"reset:{bad}".encode()))
            return
        try:
            answer = await self._dispatch.request(method, path, headers, body)
        except UpstreamError as failed:
            writer.write(encode_frame(KIND_FAILURE, frame.request_id, f"{failed.kind}:{failed.detail}".encode()))
            return
        except Exception as crashed:  # the CP failed on it: the CMG must hear at once, not wait for its timeout
            self._error(f"Web exception for message {frame.request_id}: {type(crashed).__name__}: {crashed}")
            writer.write(encode_frame(KIND_FAILURE, frame.request_id, f"reset:{type(crashed).__name__}".encode()))
            return
        writer.write(encode_response(frame.request_id, answer))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
