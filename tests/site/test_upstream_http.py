"""The HTTP hop client: keep-alive reuse, and the failure kinds the roles map to status texts (connect/timeout/reset)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from mock_site.upstream import HttpUpstream, UpstreamError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


async def _serve(handler: Handler) -> tuple[asyncio.Server, str, list[int]]:
    connections: list[int] = []

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(counted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", connections


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    for _ in range(100):
        try:
            head, body = await _read_request(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        answer = head.split(b"\r\n", 1)[0] + b"|" + body
        writer.write(b"HTTP/1.1 201 Made Here\r\nX-Cmg-Status-Text: Fine\r\ncontent-length: %d\r\n\r\n%s"
                     % (len(answer), answer))
        await writer.drain()


def test_requests_reuse_one_keep_alive_connection_and_read_status_reason_headers_body() -> None:
    async def run() -> None:
        server, url, connections = await _serve(_echo)
        upstream = HttpUpstream(name="mp", base_url=url)
        try:
            for n in range(5):
                answer = await upstream.request("CCM_POST", f"/ccm_system/request?n={n}", {"x-a": "1"}, b"body")
                assert (answer.status, answer.reason) == (201, "Made Here")
                assert answer.headers["x-cmg-status-text"] == "Fine"
                assert answer.body == f"CCM_POST /ccm_system/request?n={n} HTTP/1.1|body".encode()
            assert len(connections) == 1
        finally:
            await upstream.close()
            server.close()

    asyncio.run(run())


def test_a_connection_idle_past_the_limit_is_not_reused() -> None:
    async def run() -> None:
        server, url, connections = await _serve(_echo)
        upstream = HttpUpstream(name="mp", base_url=url, max_idle_seconds=0.0)
        try:
            await upstream.request("GET", "/", {}, b"")
            await asyncio.sleep(0.01)
            await upstream.request("GET", "/", {}, b"")
            assert len(connections) == 2
        finally:
            await upstream.close()
            server.close()

    asyncio.run(run())


def test_a_head_answer_completes_without_the_body_it_announces() -> None:
    async def head_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async def run() -> None:
        server, url, _ = await _serve(head_only)
        upstream = HttpUpstream(name="mp", base_url=url, timeout=2.0)
        try:
            answer = await upstream.request("HEAD", "/", {}, b"")
            assert (answer.status, answer.body) == (200, b"")
        finally:
            await upstream.close()
            server.close()

    asyncio.run(run())


@pytest.mark.parametrize("kind", ["reset", "timeout", "connect"])
def test_failures_are_named_by_kind(kind: str) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart")  # then closes mid-body
        await writer.drain()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(5)

    async def run() -> None:
        server, url, _ = await _serve(hang_up if kind == "reset" else silent)
        if kind == "connect":
            server.close()
            await server.wait_closed()
        upstream = HttpUpstream(name="mp", base_url=url, timeout=0.3)
        try:
            with pytest.raises(UpstreamError) as failed:
                await upstream.request("GET", "/", {}, b"")
            assert failed.value.kind == kind
        finally:
            await upstream.close()
            server.close()

    asyncio.run(run())


def test_a_base_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="ftp://x"):
        HttpUpstream(name="mp", base_url="ftp://x")
