"""A response's head and body leave the site's servers together: a small answer is one TLS record, a head is never
held back while the app waits, and nothing is lost at the end of a HEAD answer or before a close."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cmg_protocol.clock import system_clock
from mock_site.asgi import read_body, respond
from mock_site.pki import SitePki
from mock_site.server import TLS_RECORD_BYTES, Listener, Receive, ResponseWriter, Scope, Send, ServerGroup

APPLICATION_DATA = 23
PAUSE_S = 0.6


class RecordCountingClient:
    """A TLS 1.2 client over a plain socket that counts the application-data records the server sends.

    TLS 1.2, because a TLS 1.3 server also sends its session tickets as application-data records."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")
        self.raw = b""
        self.records: list[int] = []  # plaintext-bearing record lengths, in arrival order
        self.arrivals: list[tuple[float, bytes]] = []  # (monotonic time, plaintext) per read
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._feed()
        self._flush()

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _feed(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.raw += chunk
        while len(self.raw) >= 5 and len(self.raw) >= 5 + int.from_bytes(self.raw[3:5], "big"):
            length = int.from_bytes(self.raw[3:5], "big")
            if self.raw[0] == APPLICATION_DATA:
                self.records.append(length)
            self.raw = self.raw[5 + length :]
        self.incoming.write(chunk)

    def send(self, request: bytes) -> None:
        self.tls.write(request)
        self._flush()

    def answer(self, *, head_only: bool = False) -> bytes:
        """Read one whole answer (by its Content-Length), noting when each piece of plaintext arrived."""
        received = b""
        while True:
            try:
                piece = self.tls.read(65536)
            except ssl.SSLWantReadError:
                self._feed()
                continue
            if not piece:
                return received  # close_notify
            self.arrivals.append((time.monotonic(), piece))
            received += piece
            head, sep, body = received.partition(b"\r\n\r\n")
            if sep:
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                if head_only or len(body) >= length:
                    return received

    def close(self) -> None:
        self.sock.close()


@contextmanager
def serving(tmp_path: Path, app: Callable[[Scope, Receive, Send], object]) -> Iterator[tuple[int, ssl.SSLContext]]:
    """The app behind the site's server stack (TLS, uvicorn, the site's protocol class) on a loopback port."""
    pki = SitePki.load_or_create(tmp_path / "pki", clock=system_clock)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pki.cmg_server_cert(("127.0.0.1",), crl_url="http://127.0.0.1:1/site.crl").configure_server_context(server_context)
    client_context = ssl.create_default_context(cafile=str(pki.ca_file))
    client_context.maximum_version = ssl.TLSVersion.TLSv1_2
    loop = asyncio.new_event_loop()
    group = ServerGroup([Listener("writes", app, server_context)])  # type: ignore[arg-type]
    loop.run_until_complete(group.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield group.listeners[0].port, client_context
    finally:
        asyncio.run_coroutine_threadsafe(group.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


@contextmanager
def connected(tmp_path: Path, app: Callable[[Scope, Receive, Send], object]) -> Iterator[RecordCountingClient]:
    """A record-counting client connected to ``app`` behind the site's server stack."""
    with serving(tmp_path, app) as (port, context):
        client = RecordCountingClient(port, context)
        try:
            yield client
        finally:
            client.close()


async def small_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await read_body(receive, 1 << 20)
    size = int(scope["query_string"] or b"2")
    close = [("connection", "close")] if scope["path"] == "/close" else []
    await respond(send, 200, b"k" * size, headers=close)


def test_a_small_answer_is_one_tls_record_with_head_and_body_and_the_connection_stays_usable(tmp_path: Path) -> None:
    with connected(tmp_path, small_app) as client:
        for _ in range(2):  # the second request on the same kept-alive connection
            before = len(client.records)
            client.send(b"GET /?2 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = client.answer()
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nkk")
            assert len(client.records) - before == 1, client.records


def test_a_head_and_body_over_one_record_arrive_whole(tmp_path: Path) -> None:
    size = 40_000  # head plus body over one record: two pieces, one socket write
    with connected(tmp_path, small_app) as client:
        client.send(b"GET /?%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % size)
        answer = client.answer()
        assert answer.endswith(b"\r\n\r\n" + b"k" * size)
        assert sum(client.records) >= size


def test_a_head_answer_is_sent_although_no_body_part_follows(tmp_path: Path) -> None:
    with connected(tmp_path, small_app) as client:
        client.send(b"HEAD /?5 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = client.answer(head_only=True)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 5\r\n" in head
        assert head.endswith(b"\r\n\r\n")  # no body bytes for HEAD
        client.send(b"GET /?3 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # and the connection goes on
        assert client.answer().endswith(b"\r\n\r\nkkk")


@pytest.mark.parametrize(("method", "ending"), [(b"GET", b"\r\n\r\nkkkk"), (b"HEAD", b"\r\n\r\n")])
def test_an_answer_that_closes_the_connection_is_written_before_the_close(tmp_path: Path, method: bytes,
                                                                          ending: bytes) -> None:
    with connected(tmp_path, small_app) as client:
        client.send(method + b" /close?4 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = client.answer(head_only=method == b"HEAD")
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"connection: close\r\n" in answer and answer.endswith(ending)


def test_a_head_is_on_the_wire_while_the_app_waits_before_its_body(tmp_path: Path) -> None:
    async def slow_body(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await asyncio.sleep(PAUSE_S)  # as the bandwidth fault paces a body
        await send({"type": "http.response.body", "body": b"late"})

    with connected(tmp_path, slow_body) as client:
        client.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = client.answer()
        assert answer.endswith(b"\r\n\r\nlate")
        (head_at, head), (body_at, body) = client.arrivals
        assert head.endswith(b"\r\n\r\n") and body == b"late"
        assert body_at - head_at >= PAUSE_S / 2  # the head did not wait for the body


def test_an_interim_100_continue_is_sent_before_the_body_is_read(tmp_path: Path) -> None:
    with connected(tmp_path, small_app) as client:
        client.send(b"POST /?2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            try:
                interim += client.tls.read(65536)
            except ssl.SSLWantReadError:
                client._feed()
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        client.send(b"abc")
        assert client.answer().endswith(b"\r\n\r\nkk")



class RecordingTransport:
    """What a ResponseWriter hands its transport, call by call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[bytes, ...]]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", (data,)))

    def writelines(self, pieces: tuple[bytes, ...]) -> None:
        self.calls.append(("writelines", tuple(pieces)))


def test_a_head_is_joined_to_a_body_that_fits_one_record_and_handed_over_with_a_larger_one_uncopied() -> None:
    loop = asyncio.new_event_loop()
    try:
        transport = RecordingTransport()
        writer = ResponseWriter(transport, loop)  # type: ignore[arg-type]
        head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"
        writer.write(head)
        assert transport.calls == []  # held for the body
        writer.write(b"ok")
        exact = b"x" * (TLS_RECORD_BYTES - len(head))  # together, exactly one record
        writer.write(head)
        writer.write(exact)
        large = exact + b"x"  # one byte over
        writer.write(head)
        writer.write(large)
        assert transport.calls[:2] == [("write", (head + b"ok",)), ("write", (head + exact,))]
        kind, pieces = transport.calls[2]
        assert kind == "writelines" and pieces[0] == head and pieces[1] is large
    finally:
        loop.close()
