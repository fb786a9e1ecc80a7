"""The site's control listener: the fault control API, Prometheus ``/metrics`` and a health check, on loopback only."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from mock_site.asgi import respond
from mock_site.faults import control_app
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
            await respond(send, 200, generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
        elif path == "/validate" and validator is not None:
            await validator(scope, receive, send)
        elif path == "/healthz":
            await respond(send, 200, b"ok")
        elif path == "/faults" or path.startswith("/faults/"):
            await faults_api(scope, receive, send)
        else:
            await respond(send, 404, b"not found: the control listener serves /faults, /metrics and /healthz")

    return app
