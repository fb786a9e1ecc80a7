"""Forwarding hops between roles: CMG → connection point, connection point → MP.

Over the network the hop uses aiohttp (about 0.2 ms CPU per request here, against ~2 ms for httpx under concurrency —
see the project's measurements). When every role lives in one process the hop can instead call the next role's ASGI
app directly (``InProcessUpstream``), which is what the single-process benchmark measures as the ceiling.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from mock_site.server import AbortConnection, ASGIApp

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


@dataclass
class HttpUpstream:
    """A next hop reached over HTTP(S) with a pooled aiohttp session (created in the serving loop on first use)."""

    name: str
    base_url: str
    ssl_context: ssl.SSLContext | None = None
    timeout: float = 30.0
    limit: int = 1000
    _session: aiohttp.ClientSession | None = field(default=None, init=False, repr=False)

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.limit, ssl=self.ssl_context if self.ssl_context is not None else False,
                enable_cleanup_closed=False,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            )
        return self._session

    async def request(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> UpstreamResponse:
        session = self._ensure_session()
        try:
            async with session.request(method, self.base_url + path, headers=dict(headers), data=body or None,
                                       allow_redirects=False) as response:
                data = await response.read()
                return UpstreamResponse(
                    status=response.status,
                    reason=response.reason or "",
                    headers={k.lower(): v for k, v in response.headers.items()},
                    body=data,
                )
        except TimeoutError as exc:
            raise UpstreamError("timeout", f"{self.name} did not answer within {self.timeout} s") from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise UpstreamError("reset", f"{self.name} closed the connection") from exc
        except aiohttp.ClientConnectionError as exc:
            raise UpstreamError("connect", f"{self.name}: {exc}") from exc
        except aiohttp.ClientPayloadError as exc:
            raise UpstreamError("reset", f"{self.name}: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


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
