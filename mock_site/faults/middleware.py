"""ASGI middleware that applies one role's per-request faults: delays, errors, resets, throttling, over-capacity."""

from __future__ import annotations

import asyncio
import http
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import cast

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cmg_protocol.clock import Clock
from mock_site.faults.catalogue import CATALOGUE, ROLES, FaultError
from mock_site.faults.registry import ActiveFault, FaultRegistry

Sleep = Callable[[float], Awaitable[None]]

#: The faults this middleware applies; the others are applied by the role apps themselves.
MIDDLEWARE_FAULTS = ("latency", "mp_slow", "reset", "mp_down", "http_error", "bandwidth", "over_capacity")
#: The status text of an MP that refuses requests (docs/faults.md: mp_down).
MP_DOWN_TEXT = "MP unavailable"
#: Server extensions that send a file without passing body bytes through ``send``, which would dodge the throttle.
_ZERO_COPY_EXTENSIONS = ("http.response.pathsend", "http.response.zerocopy")
_DEFAULT_WINDOW_S = cast(float, CATALOGUE["over_capacity"].param("window_s").default)


class ConnectionResetFault(Exception):
    """Raised by :class:`FaultMiddleware` for the ``reset`` fault; the server layer turns it into a TCP reset."""

    def __init__(self, role: str) -> None:
        super().__init__(f"fault 'reset' injected at role {role!r}")
        self.role = role


class ClientWindow:
    """Distinct clients seen within a sliding time window: the over-capacity fault's measure of active clients."""

    def __init__(self, max_clients: int = 1_000_000) -> None:
        # Oldest sighting first, so expiry pops from the front; no lock because one event loop drives it.
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max_clients = max_clients

    def observe(self, client_id: str, now: float, window_s: float) -> int:
        """Record a request from ``client_id`` at ``now``; returns the clients seen within the last ``window_s``."""
        seen = self._seen
        seen[client_id] = now
        seen.move_to_end(client_id)
        cutoff = now - window_s
        while seen:
            oldest = next(iter(seen.values()))
            if oldest > cutoff and len(seen) <= self._max_clients:
                break
            seen.popitem(last=False)
        return len(seen)

    def __len__(self) -> int:
        return len(self._seen)


def client_id(scope: Scope) -> str:
    """Who sent the request: ``scope["state"]["client_id"]`` when an app set it, else the client's address."""
    state = scope.get("state")
    if isinstance(state, Mapping):
        value = state.get("client_id")
        if value:
            return str(value)
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class FaultMiddleware:
    """Pure ASGI middleware applying the generic per-request faults that target ``role``; other scopes pass through."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        faults: FaultRegistry,
        role: str,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
        cmg_instances: int = 1,
    ) -> None:
        if role not in ROLES:
            raise FaultError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
        if isinstance(cmg_instances, bool) or not isinstance(cmg_instances, int) or cmg_instances < 1:
            raise FaultError(f"cmg_instances must be an integer >= 1, got {cmg_instances!r}")
        self.app = app
        self.faults = faults
        self.role = role
        self.clock = clock if clock is not None else faults.clock
        self._sleep = sleep
        self._cmg_instances = cmg_instances
        applies = {name for name in MIDDLEWARE_FAULTS if role in CATALOGUE[name].roles}
        self._latency = "latency" in applies
        self._mp_slow = "mp_slow" in applies
        self._reset = "reset" in applies
        self._mp_down = "mp_down" in applies
        self._http_error = "http_error" in applies
        self._bandwidth = "bandwidth" in applies
        self.clients = ClientWindow() if "over_capacity" in applies else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        faults, role = self.faults, self.role
        if not faults.any_active(role):
            # No fault at this role: nothing to apply. (Over capacity counts clients only while it is on, so its
            # added latency builds up over its window after it is switched on.)
            await self.app(scope, receive, send)
            return
        # Delay first, then abort, as Envoy's fault filter does: a request can be both slow and failed.
        delay_ms = 0.0
        if self._latency and (fault := faults.trigger("latency", role)) is not None:
            jitter = _number(fault, "jitter_ms")
            delay_ms += max(0.0, _number(fault, "mean_ms") + (2.0 * faults.random() - 1.0) * jitter)
        if self._mp_slow and (fault := faults.trigger("mp_slow", role)) is not None:
            delay_ms += _number(fault, "latency_ms")
        if delay_ms > 0:
            await self._sleep(delay_ms / 1000.0)
        if self._reset and faults.trigger("reset", role) is not None:
            raise ConnectionResetFault(role)
        if self._mp_down and faults.trigger("mp_down", role) is not None:
            await _respond(send, 503, MP_DOWN_TEXT)
            return
        if self._http_error and (fault := faults.trigger("http_error", role)) is not None:
            status = int(_number(fault, "status"))
            await _respond(send, status, cast(str | None, fault.params["status_text"]) or _phrase(status))
            return
        if self._bandwidth and (fault := faults.trigger("bandwidth", role)) is not None:
            scope = _without_zero_copy(scope)
            send = self._throttled(send, _number(fault, "kib_per_s") * 1024.0)
        if self.clients is not None and faults.get("over_capacity", role) is not None:
            send = self._capacity_send(scope, send)
        await self.app(scope, receive, send)

    def _throttled(self, send: Send, bytes_per_s: float) -> Send:
        # Tenth-of-a-second slices keep the pacing smooth without waking the event loop for every few bytes.
        slice_bytes = max(1, int(bytes_per_s / 10))
        sleep = self._sleep

        async def throttled_send(message: Message) -> None:
            body = message.get("body", b"") if message["type"] == "http.response.body" else b""
            if not body:
                await send(message)
                return
            more_body = bool(message.get("more_body", False))
            for start in range(0, len(body), slice_bytes):
                piece = body[start : start + slice_bytes]
                await sleep(len(piece) / bytes_per_s)
                last = start + slice_bytes >= len(body)
                await send({"type": "http.response.body", "body": piece, "more_body": more_body or not last})

        return throttled_send

    def _capacity_send(self, scope: Scope, send: Send) -> Send:
        # The client is counted when the answer starts, by which time the role app may have named it in scope["state"].
        async def capacity_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                await self._capacity_delay(scope)
            await send(message)

        return capacity_send

    async def _capacity_delay(self, scope: Scope) -> None:
        assert self.clients is not None
        fault = self.faults.get("over_capacity", self.role)
        window_s = _number(fault, "window_s") if fault is not None else _DEFAULT_WINDOW_S
        active_clients = self.clients.observe(client_id(scope), self.clock(), window_s)
        if fault is None:
            return
        capacity = fault.params["capacity_clients"]
        if capacity is None:
            capacity = _number(fault, "clients_per_instance") * self._cmg_instances
        excess = active_clients - cast(float, capacity)
        if excess <= 0 or self.faults.trigger("over_capacity", self.role) is None:
            return
        delay_ms = min(excess * _number(fault, "ms_per_excess_client"), _number(fault, "max_delay_ms"))
        if delay_ms > 0:
            await self._sleep(delay_ms / 1000.0)


async def _respond(send: Send, status: int, text: str) -> None:
    body = text.encode("ascii", "replace")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            # ASGI has no reason-phrase field: mock_site.server reads this key to write the status text on the status
            # line; other servers ignore it and write the standard phrase, so the text also goes in a header and the body.
            "reason": text,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"x-cmg-status-text", body),  # synthetic: not the public ConfigMgr format
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _number(fault: ActiveFault, key: str) -> float:
    return float(cast(float, fault.params[key]))


def _without_zero_copy(scope: Scope) -> Scope:
    extensions = scope.get("extensions") or {}
    if not any(name in extensions for name in _ZERO_COPY_EXTENSIONS):
        return scope
    kept = {name: value for name, value in extensions.items() if name not in _ZERO_COPY_EXTENSIONS}
    return {**scope, "extensions": kept}
