"""The site's control listener: the fault control API, Prometheus ``/metrics`` and a health check, on loopback only."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from mock_site.asgi import respond
from mock_site.faults import control_app
from mock_site.metrics.exposition import exposition
from mock_site.server import ASGIApp, Receive, Scope, Send


def control_listener_app(faults: Any, *, token: str, registry: CollectorRegistry,
                         validator: ASGIApp | None = None) -> ASGIApp:
    """``/faults…`` goes to the fault control API (bearer token); ``/metrics``, ``/healthz`` and ``/validate`` are open."""
    faults_api = control_app(faults, token=token)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/metrics":
            body, content_type = exposition(registry)
            await respond(send, 200, body, content_type=content_type)
        elif path == "/validate" and validator is not None:
            await validator(scope, receive, send)
        elif path == "/healthz":
            await respond(send, 200, b"ok")
        elif path == "/faults" or path.startswith("/faults/"):
            await faults_api(scope, receive, send)
        else:
            await respond(send, 404, b"not found: the control listener serves /faults, /metrics and /healthz")

    return app
