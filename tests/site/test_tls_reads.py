"""TLS reads ask for at most one record's worth of plaintext, at the site's servers and its hop client, and bodies far
larger than one read still arrive whole."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from pathlib import Path
from typing import Any

from cmg_protocol.clock import system_clock
from mock_site.asgi import read_body, respond
from mock_site.pki import SitePki
from mock_site.server import TLS_READ_BYTES, Listener, Receive, Scope, Send, ServerGroup
from mock_site.upstream import HttpUpstream

BODY = bytes(range(256)) * 1200  # 300 KiB: many TLS records, more than asyncio's 256 KiB read


def test_the_server_and_the_hop_client_read_tls_in_record_sized_calls_and_keep_every_byte(tmp_path: Path) -> None:
    pki = SitePki.load_or_create(tmp_path / "pki", clock=system_clock)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pki.cmg_server_cert(("127.0.0.1",), crl_url="http://127.0.0.1:1/site.crl").configure_server_context(server_context)
    client_context = ssl.create_default_context(cafile=str(pki.ca_file))
    server_read_sizes: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        # The connection's protocol, reached through the abort handle the server puts in every request's scope.
        transport: Any = scope["extensions"]["cmg.abort"].__self__.transport
        server_read_sizes.append(transport._ssl_protocol.max_size)
        body = await read_body(receive, 1 << 20)
        digest = hashlib.sha256(body).hexdigest().encode()
        await respond(send, 200, digest * (len(body) // len(digest) + 1))  # an answer as large as the request

    async def run() -> None:
        group = ServerGroup([Listener("echo", app, server_context)])
        await group.start()
        upstream = HttpUpstream(name="echo", base_url=group.listeners[0].url, ssl_context=client_context)
        try:
            for _ in range(2):
                answer = await upstream.request("CCM_POST", "/ccm_system/request", {}, BODY)
                digest = hashlib.sha256(BODY).hexdigest().encode()
                assert answer.status == 200
                assert answer.body == digest * (len(BODY) // len(digest) + 1)
            (connection,) = upstream._idle
            assert connection.transport is not None
            assert connection.transport._ssl_protocol.max_size == TLS_READ_BYTES  # type: ignore[attr-defined]
        finally:
            await upstream.close()
            await group.stop()

    asyncio.run(run())
    assert server_read_sizes == [TLS_READ_BYTES, TLS_READ_BYTES]
    assert TLS_READ_BYTES >= 16 * 1024  # never below the most plaintext one TLS record holds
