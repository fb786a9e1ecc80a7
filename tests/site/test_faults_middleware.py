"""Specification of FaultMiddleware: the per-request faults a role applies, driven through a tiny inner ASGI app."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from cmg_protocol.clock import FakeClock
from mock_site.faults import ClientWindow, ConnectionResetFault, FaultError, FaultMiddleware, FaultRegistry

T = TypeVar("T")
BODY = b"policy body"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class FakeSleep:
    """Records the delays asked for instead of sleeping."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class InnerApp:
    """The role app behind the middleware: names the client from a header (as role apps do) and answers BODY."""

    def __init__(self, body: bytes = BODY) -> None:
        self.body = body
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        if scope["type"] != "http":
            return
        for name, value in scope["headers"]:
            if name == b"x-client":
                scope.setdefault("state", {})["client_id"] = value.decode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": self.body})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def faults(clock: FakeClock) -> FaultRegistry:
    return FaultRegistry(clock, random.Random(99))


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def inner() -> InnerApp:
    return InnerApp()


def middleware(inner: InnerApp, faults: FaultRegistry, sleep: FakeSleep, role: str = "cmg", **kw: Any) -> Any:
    return FaultMiddleware(inner, faults=faults, role=role, sleep=sleep, **kw)


async def get(app: Any, path: str = "/", headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, **kw)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.get(path, headers=headers)


async def raw_call(app: Any, scope: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Drive ``app`` with one GET and return every message it sent."""
    messages: list[dict[str, Any]] = []
    base: dict[str, Any] = {"type": "http", "method": "GET", "path": "/", "headers": [], "client": ("127.0.0.1", 1)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app({**base, **(scope or {})}, receive, send)
    return messages


def test_without_faults_the_request_passes_untouched(faults: FaultRegistry, sleep: FakeSleep, inner: InnerApp) -> None:
    """With no fault on, the inner app answers and nothing sleeps."""
    response = run(get(middleware(inner, faults, sleep)))
    assert (response.status_code, response.content) == (200, BODY)
    assert sleep.calls == []


def test_latency_delays_the_request_by_the_mean(faults: FaultRegistry, sleep: FakeSleep, inner: InnerApp) -> None:
    """latency without jitter sleeps exactly mean_ms before the request is handled."""
    faults.set("latency", params={"mean_ms": 250})
    response = run(get(middleware(inner, faults, sleep)))
    assert response.status_code == 200
    assert sleep.calls == [0.25]


def test_latency_jitter_stays_within_the_band(faults: FaultRegistry, sleep: FakeSleep, inner: InnerApp) -> None:
    """With jitter, delays vary and stay within mean ± jitter."""
    faults.set("latency", params={"mean_ms": 100, "jitter_ms": 50})
    app = middleware(inner, faults, sleep)

    async def many() -> None:
        for _ in range(40):
            await get(app)

    run(many())
    assert all(0.05 <= delay <= 0.15 for delay in sleep.calls)
    assert len(set(sleep.calls)) > 1


def test_fault_at_another_role_is_not_applied(faults: FaultRegistry, sleep: FakeSleep, inner: InnerApp) -> None:
    """A fault set at the MP does not slow the CMG."""
    faults.set("latency", role="mp")
    run(get(middleware(inner, faults, sleep, role="cmg")))
    assert sleep.calls == []


def test_mp_slow_delays_requests_at_the_mp(faults: FaultRegistry, sleep: FakeSleep, inner: InnerApp) -> None:
    """mp_slow sleeps latency_ms at the MP role."""
    faults.set("mp_slow", params={"latency_ms": 1500})
    run(get(middleware(inner, faults, sleep, role="mp")))
    assert sleep.calls == [1.5]


def test_http_error_answers_with_status_and_text(faults: FaultRegistry, sleep: FakeSleep, inner: InnerApp) -> None:
    """http_error answers with the status, its text in the body and X-CMG-Status-Text, without calling the app."""
    faults.set("http_error", params={"status": 502, "status_text": "Proxy Gone"})
    response = run(get(middleware(inner, faults, sleep)))
    assert (response.status_code, response.text) == (502, "Proxy Gone")
    assert response.headers["x-cmg-status-text"] == "Proxy Gone"
    assert inner.scopes == []


def test_http_error_defaults_to_the_standard_phrase(faults: FaultRegistry, sleep: FakeSleep, inner: InnerApp) -> None:
    """Without a status text, http_error uses the standard reason phrase of the status."""
    faults.set("http_error", params={"status": 504})
    response = run(get(middleware(inner, faults, sleep)))
    assert (response.status_code, response.text) == (504, "Gateway Timeout")


def test_http_error_passes_the_text_as_reason(faults: FaultRegistry, sleep: FakeSleep, inner: InnerApp) -> None:
    """The response start message carries the status text under "reason" for the server layer's status line."""
    faults.set("http_error", params={"status": 500, "status_text": "CMGConnector_InternalServerError"})
    messages = run(raw_call(middleware(inner, faults, sleep)))
    assert messages[0]["reason"] == "CMGConnector_InternalServerError"


def test_reset_raises_and_sends_nothing(faults: FaultRegistry, sleep: FakeSleep, inner: InnerApp) -> None:
    """reset raises ConnectionResetFault for the server layer, before the app runs or any response starts."""
    faults.set("reset", role="cp")
    sent: list[dict[str, Any]] = []

    async def call() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await middleware(inner, faults, sleep, role="cp")({"type": "http", "headers": []}, receive, send)

    with pytest.raises(ConnectionResetFault) as error:
        run(call())
    assert error.value.role == "cp"
    assert (sent, inner.scopes) == ([], [])


def test_reset_propagates_through_an_http_client(faults: FaultRegistry, sleep: FakeSleep, inner: InnerApp) -> None:
    """An HTTP client driving the app sees the reset exception rather than a response."""
    faults.set("reset")
    with pytest.raises(ConnectionResetFault):
        run(get(middleware(inner, faults, sleep)))


def test_mp_down_answers_503_mp_unavailable(faults: FaultRegistry, sleep: FakeSleep, inner: InnerApp) -> None:
    """mp_down makes the MP answer 503 with the text MP unavailable."""
    faults.set("mp_down")
    response = run(get(middleware(inner, faults, sleep, role="mp")))
    assert (response.status_code, response.text) == (503, "MP unavailable")
    assert response.headers["x-cmg-status-text"] == "MP unavailable"


def test_delay_comes_before_an_error(faults: FaultRegistry, sleep: FakeSleep, inner: InnerApp) -> None:
    """A request hit by latency and http_error is first delayed, then failed."""
    faults.set("latency", params={"mean_ms": 100})
    faults.set("http_error", params={"status": 500})
    response = run(get(middleware(inner, faults, sleep)))
    assert (response.status_code, sleep.calls) == (500, [0.1])


def test_undrawn_fault_is_neither_applied_nor_counted(faults: FaultRegistry, sleep: FakeSleep, inner: InnerApp) -> None:
    """With probability 0 the request passes and no injection is counted."""
    faults.set("http_error", probability=0.0)
    response = run(get(middleware(inner, faults, sleep)))
    assert response.status_code == 200
    assert faults.injections()["http_error"] == 0


def test_applied_fault_is_counted(faults: FaultRegistry, sleep: FakeSleep, inner: InnerApp) -> None:
    """Each request a fault hits counts one injection."""
    faults.set("mp_down")
    app = middleware(inner, faults, sleep, role="mp")

    async def twice() -> None:
        await get(app)
        await get(app)

    run(twice())
    assert faults.injections()["mp_down"] == 2


def test_bandwidth_throttles_the_body_in_slices(faults: FaultRegistry, sleep: FakeSleep) -> None:
    """bandwidth sends the body in slices, sleeping so the total time matches the rate, and keeps every byte."""
    body = bytes(range(256)) * 40  # 10 KiB
    faults.set("bandwidth", params={"kib_per_s": 4})
    messages = run(raw_call(middleware(InnerApp(body), faults, sleep)))
    parts = [m for m in messages if m["type"] == "http.response.body"]
    assert b"".join(m["body"] for m in parts) == body
    assert [m["more_body"] for m in parts] == [True] * (len(parts) - 1) + [False]
    assert len(parts) > 20
    assert sum(sleep.calls) == pytest.approx(len(body) / 4096)


def test_bandwidth_body_arrives_whole_over_http(faults: FaultRegistry, sleep: FakeSleep) -> None:
    """A throttled download still delivers the whole body to an HTTP client."""
    body = b"x" * 5000
    faults.set("bandwidth", params={"kib_per_s": 1})
    response = run(get(middleware(InnerApp(body), faults, sleep)))
    assert response.content == body


def test_bandwidth_hides_zero_copy_sends(faults: FaultRegistry, sleep: FakeSleep, inner: InnerApp) -> None:
    """While throttling, the app is not offered pathsend, which would bypass the throttle."""
    faults.set("bandwidth")
    extensions = {"http.response.pathsend": {}, "tls": {"client_cert_der": None}}
    run(raw_call(middleware(inner, faults, sleep), {"extensions": extensions}))
    assert inner.scopes[0]["extensions"] == {"tls": {"client_cert_der": None}}


async def from_clients(app: Any, clients: list[str]) -> list[int]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return [(await client.get("/", headers={"x-client": c})).status_code for c in clients]


def test_over_capacity_delays_grow_with_the_excess(faults: FaultRegistry, sleep: FakeSleep, inner: InnerApp) -> None:
    """Above capacity each answer is delayed by ms_per_excess_client per extra client, and none is refused."""
    faults.set("over_capacity", params={"capacity_clients": 2, "ms_per_excess_client": 10})
    statuses = run(from_clients(middleware(inner, faults, sleep), ["a", "b", "c", "d", "a"]))
    assert statuses == [200] * 5
    assert sleep.calls == pytest.approx([0.01, 0.02, 0.02])


def test_over_capacity_uses_clients_per_instance_times_instances(
    faults: FaultRegistry, sleep: FakeSleep, inner: InnerApp
) -> None:
    """Without capacity_clients, capacity is clients_per_instance × CMG instances."""
    faults.set("over_capacity", params={"clients_per_instance": 2, "ms_per_excess_client": 1})
    run(from_clients(middleware(inner, faults, sleep, cmg_instances=2), ["a", "b", "c", "d", "e"]))
    assert sleep.calls == pytest.approx([0.001])


def test_over_capacity_delay_is_capped(faults: FaultRegistry, sleep: FakeSleep, inner: InnerApp) -> None:
    """The added delay never exceeds max_delay_ms."""
    faults.set(
        "over_capacity", params={"capacity_clients": 1, "ms_per_excess_client": 500, "max_delay_ms": 700}
    )
    run(from_clients(middleware(inner, faults, sleep), ["a", "b", "c", "d"]))
    assert sleep.calls == pytest.approx([0.5, 0.7, 0.7])


def test_over_capacity_forgets_clients_after_the_window(
    faults: FaultRegistry, sleep: FakeSleep, inner: InnerApp, clock: FakeClock
) -> None:
    """Clients not seen within window_s no longer count as active."""
    faults.set("over_capacity", params={"capacity_clients": 1, "ms_per_excess_client": 10, "window_s": 30})
    app = middleware(inner, faults, sleep)
    run(from_clients(app, ["a", "b"]))
    clock.advance(31)
    run(from_clients(app, ["c"]))
    assert sleep.calls == pytest.approx([0.01])


def test_over_capacity_falls_back_to_the_client_address(faults: FaultRegistry, sleep: FakeSleep) -> None:
    """Without a client id in scope state, requests are told apart by client address."""
    faults.set("over_capacity", params={"capacity_clients": 1, "ms_per_excess_client": 10})

    async def plain(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = FaultMiddleware(plain, faults=faults, role="cmg", sleep=sleep)

    async def from_addresses() -> None:
        for address in ["127.0.0.2", "127.0.0.3", "127.0.0.3"]:
            await get(app, client=(address, 5000))

    run(from_addresses())
    assert sleep.calls == pytest.approx([0.01, 0.01])


@pytest.mark.parametrize("scope_type", ["lifespan", "websocket"])
def test_non_http_scopes_pass_through(
    faults: FaultRegistry, sleep: FakeSleep, inner: InnerApp, scope_type: str
) -> None:
    """Lifespan and websocket scopes reach the app untouched even while faults are on."""
    faults.set("reset")

    async def call() -> None:
        async def receive() -> dict[str, Any]:
            return {}

        async def send(message: dict[str, Any]) -> None:
            return None

        await middleware(inner, faults, sleep)({"type": scope_type}, receive, send)

    run(call())
    assert [scope["type"] for scope in inner.scopes] == [scope_type]


@pytest.mark.parametrize(("kwargs", "fragment"), [({"role": "edge"}, "'edge'"), ({"cmg_instances": 0}, "got 0")])
def test_middleware_refuses_bad_settings(faults: FaultRegistry, kwargs: dict[str, Any], fragment: str) -> None:
    """An unknown role or a CMG instance count below 1 raises FaultError naming it."""
    settings: dict[str, Any] = {"role": "cmg", **kwargs}
    with pytest.raises(FaultError, match=fragment):
        FaultMiddleware(InnerApp(), faults=faults, **settings)


def test_client_window_counts_distinct_clients_in_the_window() -> None:
    """A client counts once however often it calls, until the window passes it by."""
    window = ClientWindow()
    assert [window.observe(c, t, 10) for c, t in [("a", 0), ("a", 1), ("b", 2), ("c", 11.5)]] == [1, 1, 2, 2]


def test_client_window_keeps_at_most_max_clients() -> None:
    """The window drops its oldest clients beyond max_clients, bounding memory."""
    window = ClientWindow(max_clients=3)
    for n in range(10):
        window.observe(str(n), 0, 60)
    assert len(window) == 3
