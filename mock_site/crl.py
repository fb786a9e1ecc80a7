"""The CRL distribution point (CDP) named in the CMG server certificate, with the CRL faults applied where they happen.

A device that checks revocation downloads the CRL from here before it trusts the CMG; ``crl_unreachable``,
``crl_expired`` and ``crl_slow`` change what it gets. ``cmg_cert_revoked`` is not applied here: the site revokes the CMG
serial in the PKI, and the next CRL served here lists it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mock_site.pki import SitePki
from mock_site.server import AbortConnection, ASGIApp, Receive, Scope, Send

ROLE = "crl"
CRL_PATH = "/pki/site.crl"  # synthetic: not the public ConfigMgr format (a real CDP path is whatever the CA publishes)
CRL_PEM_PATH = "/pki/site.crl.pem"
DER_CONTENT_TYPE = "application/pkix-crl"  # RFC 5280 section 4.2.1.13 names this type for DER CRLs over HTTP
PEM_CONTENT_TYPE = "application/x-pem-file"
#: Status reported to the metrics hook for a request whose connection was dropped instead of answered.
DROPPED = 0


class ActiveFaultLike(Protocol):
    """The part of an active fault the CDP reads."""

    @property
    def params(self) -> Mapping[str, Any]: ...


class FaultSource(Protocol):
    """Anything that says whether a fault hits this request (``mock_site.faults.FaultRegistry`` does)."""

    def trigger(self, name: str, role: str) -> ActiveFaultLike | None: ...


MetricsHook = Callable[[str, int, int], None]
"""Called once per CRL request with (path, status, response bytes); status is ``DROPPED`` for an aborted connection."""

Sleep = Callable[[float], Awaitable[None]]


def crl_app(
    pki: SitePki, *, faults: FaultSource, metrics_hook: MetricsHook | None = None, sleep: Sleep = asyncio.sleep
) -> ASGIApp:
    """The CDP as an ASGI app: ``GET /pki/site.crl`` (DER) and ``GET /pki/site.crl.pem`` (PEM)."""

    def observe(path: str, status: int, size: int) -> None:
        if metrics_hook is not None:
            metrics_hook(path, status, size)

    async def serve_crl(request: Request) -> Response:
        pem = request.url.path == CRL_PEM_PATH
        slow = faults.trigger("crl_slow", ROLE)
        if slow is not None:
            await sleep(float(slow.params["latency_ms"]) / 1000.0)
        expired = faults.trigger("crl_expired", ROLE) is not None
        body = pki.crl_pem(expired=expired) if pem else pki.crl_der(expired=expired)
        observe(request.url.path, 200, len(body))
        return Response(body, media_type=PEM_CONTENT_TYPE if pem else DER_CONTENT_TYPE)

    routes = [Route(path, serve_crl, methods=["GET"]) for path in (CRL_PATH, CRL_PEM_PATH)]
    inner = Starlette(routes=routes)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # Checked outside Starlette: its error middleware would answer 500 before the abort reached the server.
        if (
            scope["type"] == "http"
            and scope["path"] in (CRL_PATH, CRL_PEM_PATH)
            and faults.trigger("crl_unreachable", ROLE) is not None
        ):
            observe(scope["path"], DROPPED, 0)
            # Under mock_site.server the client sees a TCP reset with no HTTP response: revocation is offline.
            raise AbortConnection("crl_unreachable: CRL distribution point dropped the connection")
        await inner(scope, receive, send)

    return app
