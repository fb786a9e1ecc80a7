"""Specification of the fault control API: auth, set / list / clear / reset, and refusals that lose nothing."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from cmg_protocol.clock import FakeClock
from mock_site.faults import CATALOGUE, MAX_BODY_BYTES, FaultError, FaultRegistry, control_app

TOKEN = "s3cret-control-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def faults() -> FaultRegistry:
    return FaultRegistry(FakeClock(), random.Random(5))


def call(
    faults: FaultRegistry,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = AUTH,
    client: tuple[str, int] = ("127.0.0.1", 40000),
    **kw: Any,
) -> httpx.Response:
    """Send one request to a control app over ``registry`` from ``client``."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=control_app(faults, token=TOKEN), client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return await http.request(method, path, headers=headers, **kw)

    return asyncio.run(send())


@pytest.mark.parametrize("headers", [None, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}])
def test_requests_without_the_token_get_401(faults: FaultRegistry, headers: dict[str, str] | None) -> None:
    """A missing or wrong bearer token gets 401 with a Bearer challenge."""
    response = call(faults, "GET", "/faults", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("address", ["10.0.0.5", "192.168.1.20", "2001:db8::1", "testclient"])
def test_non_loopback_clients_get_403_even_with_the_token(faults: FaultRegistry, address: str) -> None:
    """A client not on loopback is refused with 403 whatever token it sends, and changes nothing."""
    response = call(faults, "PUT", "/faults/reset", client=(address, 40000), json={})
    assert response.status_code == 403
    assert faults.active() == []


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.7", "::1", "::ffff:127.0.0.1"])
def test_loopback_clients_with_the_token_are_served(faults: FaultRegistry, address: str) -> None:
    """Any loopback address, IPv4, IPv6 or mapped, is accepted with the right token."""
    assert call(faults, "GET", "/faults", client=(address, 40000)).status_code == 200


def test_control_app_needs_a_token(faults: FaultRegistry) -> None:
    """Building the API with an empty token is refused."""
    with pytest.raises(FaultError):
        control_app(faults, token="")


def test_put_sets_a_fault_and_returns_it(faults: FaultRegistry) -> None:
    """PUT /faults/{name} switches the fault on and answers with it as data."""
    body = {"role": "mp", "probability": 0.5, "duration": 120, "params": {"status": 502}}
    response = call(faults, "PUT", "/faults/http_error", json=body)
    assert response.status_code == 200
    data = response.json()
    assert (data["name"], data["role"], data["probability"], data["remaining_s"]) == ("http_error", "mp", 0.5, 120)
    assert data["params"] == {"status": 502, "status_text": None}
    assert [(f.name, f.role) for f in faults.active()] == [("http_error", "mp")]


def test_put_with_empty_body_uses_defaults(faults: FaultRegistry) -> None:
    """A PUT with no body sets the fault with the catalogue's defaults."""
    response = call(faults, "PUT", "/faults/mp_down")
    assert (response.status_code, response.json()["role"]) == (200, "mp")


def test_put_reset_sets_the_reset_fault_not_a_reset_of_all(faults: FaultRegistry) -> None:
    """PUT /faults/reset switches on the connection-reset fault; only POST resets everything."""
    faults.set("mp_down")
    assert call(faults, "PUT", "/faults/reset", json={}).status_code == 200
    assert sorted(f.name for f in faults.active()) == ["mp_down", "reset"]


def test_get_faults_lists_active_faults_injections_and_catalogue(faults: FaultRegistry) -> None:
    """GET /faults gives the active faults, injection counts and the catalogue."""
    faults.set("reset")
    faults.trigger("reset", "cmg")
    data = call(faults, "GET", "/faults").json()
    assert [(f["name"], f["injections"]) for f in data["active"]] == [("reset", 1)]
    assert data["injections"]["reset"] == 1
    assert {f["name"] for f in data["catalogue"]["faults"]} == set(CATALOGUE)


def test_get_catalogue_lists_server_and_device_faults(faults: FaultRegistry) -> None:
    """GET /faults/catalogue gives every server-side fault and the device faults."""
    data = call(faults, "GET", "/faults/catalogue").json()
    assert {f["name"] for f in data["faults"]} == set(CATALOGUE)
    assert "wpj_missing" in {f["name"] for f in data["device_faults"]}


def test_delete_clears_an_active_fault(faults: FaultRegistry) -> None:
    """DELETE /faults/{name} switches the fault off and lists what was cleared."""
    faults.set("latency", role="cp")
    response = call(faults, "DELETE", "/faults/latency")
    assert response.status_code == 200
    assert [(f["name"], f["role"]) for f in response.json()["cleared"]] == [("latency", "cp")]
    assert faults.active() == []


def test_delete_with_role_clears_only_that_role(faults: FaultRegistry) -> None:
    """DELETE /faults/{name}?role=… leaves the fault on at other roles."""
    faults.set("latency", role="cp")
    faults.set("latency", role="mp")
    assert call(faults, "DELETE", "/faults/latency?role=mp").status_code == 200
    assert [f.role for f in faults.active()] == ["cp"]


def test_delete_of_an_inactive_fault_is_404(faults: FaultRegistry) -> None:
    """Deleting a fault that is not on answers 404 naming it."""
    response = call(faults, "DELETE", "/faults/latency")
    assert response.status_code == 404
    assert "'latency'" in response.json()["error"]


def test_post_reset_clears_everything(faults: FaultRegistry) -> None:
    """POST /faults/reset switches every fault off."""
    faults.set("latency")
    faults.set("mp_down")
    response = call(faults, "POST", "/faults/reset")
    assert response.status_code == 200
    assert len(response.json()["cleared"]) == 2
    assert faults.active() == []


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"content": b"{not json"}, "not valid JSON"),
        ({"content": b"\xff\xfe"}, "not valid JSON"),
        ({"json": [1, 2]}, "got list"),
        ({"json": {"role": "mp", "probabilty": 0.5}}, "'probabilty'"),
        ({"json": {"role": 3}}, "got 3"),
        ({"json": {"role": "crl"}}, "'crl'"),
        ({"json": {"probability": 2}}, "got 2"),
        ({"json": {"duration": -1}}, "-1"),
        ({"json": {"params": {"mean_ms": -10}}}, "-10"),
        ({"json": {"params": {"speed": 1}}}, "'speed'"),
        ({"json": {"params": "slow"}}, "'slow'"),
    ],
)
def test_bad_put_is_400_naming_the_value_and_loses_nothing(
    faults: FaultRegistry, kwargs: dict[str, Any], fragment: str
) -> None:
    """A bad PUT answers 400 with an error naming the value, and the fault already on stays as it was."""
    before = faults.set("latency", params={"mean_ms": 100})
    response = call(faults, "PUT", "/faults/latency", **kwargs)
    assert response.status_code == 400
    assert fragment in response.json()["error"]
    assert faults.active() == [before]


@pytest.mark.parametrize(("method", "path"), [("PUT", "/faults/no_such_fault"), ("DELETE", "/faults/no_such_fault")])
def test_unknown_fault_is_404_naming_it(faults: FaultRegistry, method: str, path: str) -> None:
    """Setting or clearing a fault not in the catalogue answers 404 naming it."""
    response = call(faults, method, path, json={} if method == "PUT" else None)
    assert response.status_code == 404
    assert "'no_such_fault'" in response.json()["error"]


def test_delete_with_a_bad_role_is_400(faults: FaultRegistry) -> None:
    """DELETE with a role the fault cannot target answers 400 naming the role."""
    faults.set("latency")
    response = call(faults, "DELETE", "/faults/latency?role=entra")
    assert response.status_code == 400
    assert "'entra'" in response.json()["error"]
    assert len(faults.active()) == 1


def test_oversized_body_is_413(faults: FaultRegistry) -> None:
    """A body over the size limit answers 413 and changes nothing."""
    payload = b'{"params": {"status_text": "' + b"x" * MAX_BODY_BYTES + b'"}}'
    response = call(faults, "PUT", "/faults/http_error", content=payload)
    assert response.status_code == 413
    assert faults.active() == []


def test_oversized_chunked_body_is_413(faults: FaultRegistry) -> None:
    """A body over the limit without a Content-Length is cut off while it is read, with 413."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 8192

    response = call(faults, "PUT", "/faults/http_error", content=chunks())
    assert response.status_code == 413


def test_unknown_route_is_404_json(faults: FaultRegistry) -> None:
    """A path outside the API answers 404 in the same JSON error shape."""
    response = call(faults, "GET", "/admin")
    assert response.status_code == 404
    assert "error" in response.json()


_HUGE_INT = b"9" * 400
_VERY_HUGE_INT = b"9" * 5000


@pytest.mark.parametrize(
    ("fault", "body", "fragments"),
    [
        ("latency", b'{"duration": 1e400}', ["duration", "(0, 86400]"]),
        ("latency", b'{"duration": -1e400}', ["duration", "(0, 86400]"]),
        ("latency", b'{"duration": NaN}', ["duration", "(0, 86400]"]),
        ("latency", b'{"duration": Infinity}', ["duration", "(0, 86400]"]),
        ("latency", b'{"duration": -5}', ["duration", "(0, 86400]"]),
        ("latency", b'{"duration": ' + _HUGE_INT + b"}", ["duration", "(0, 86400]"]),
        ("latency", b'{"duration": -' + _VERY_HUGE_INT + b"}", ["duration", "(0, 86400]"]),
        ("latency", b'{"probability": 1e400}', ["probability", "0..1"]),
        ("latency", b'{"probability": NaN}', ["probability", "0..1"]),
        ("latency", b'{"probability": ' + _HUGE_INT + b"}", ["probability", "0..1"]),
        ("latency", b'{"params": {"mean_ms": 1e400}}', ["'mean_ms'", "0..600000"]),
        ("latency", b'{"params": {"mean_ms": -1e400}}', ["'mean_ms'", "0..600000"]),
        ("latency", b'{"params": {"mean_ms": NaN}}', ["'mean_ms'", "0..600000"]),
        ("latency", b'{"params": {"mean_ms": -1}}', ["'mean_ms'", "0..600000"]),
        ("latency", b'{"params": {"mean_ms": ' + _HUGE_INT + b"}}", ["'mean_ms'", "0..600000"]),
        ("latency", b'{"params": {"jitter_ms": ' + _VERY_HUGE_INT + b"}}", ["'jitter_ms'", "0..600000"]),
        ("http_error", b'{"params": {"status": 1e400}}', ["'status'", "400..599"]),
        ("http_error", b'{"params": {"status": NaN}}', ["'status'", "400..599"]),
        ("http_error", b'{"params": {"status": ' + _HUGE_INT + b"}}", ["'status'", "400..599"]),
        ("over_capacity", b'{"params": {"capacity_clients": -' + _HUGE_INT + b"}}", ["'capacity_clients'", "1..10000000"]),
        ("over_capacity", b'{"params": {"window_s": 1e308}}', ["'window_s'", "1..3600"]),
    ],
)
def test_numbers_out_of_range_are_400_naming_the_field_and_its_range(
    faults: FaultRegistry, fault: str, body: bytes, fragments: list[str]
) -> None:
    """Numbers beyond float range, NaN, infinities, negative and huge integers: 400 naming the field and the range."""
    response = call(faults, "PUT", f"/faults/{fault}", content=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    for fragment in fragments:
        assert fragment in error
    assert len(error) < 200  # a 5,000-digit number is not echoed back
    assert faults.active() == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"params": ' + b"[" * 30000 + b"]" * 30000 + b"}",
        b'{"a": ' * 9000 + b"1" + b"}" * 9000,
        b'{"params": {"mean_ms": ' + b"[" * 9 + b"]" * 9 + b"}}",
    ],
    ids=["deep-arrays", "deep-objects", "nine-levels"],
)
def test_deeply_nested_json_is_400_before_it_is_parsed(faults: FaultRegistry, body: bytes) -> None:
    """Arrays or objects nested deeper than the bound are refused with 400 naming the bound (JSON under the size limit)."""
    assert len(body) <= MAX_BODY_BYTES
    response = call(faults, "PUT", "/faults/latency", content=body)
    assert response.status_code == 400
    assert "deeper than 8 levels" in response.json()["error"]


def test_brackets_inside_strings_do_not_count_as_nesting(faults: FaultRegistry) -> None:
    """Only structure counts: a string full of brackets is an ordinary (here: refused) role name."""
    response = call(faults, "PUT", "/faults/latency", content=b'{"role": "' + b"[{" * 40 + b'\\"["}')
    assert response.status_code == 400
    assert "unknown role" in response.json()["error"]


def test_nesting_up_to_the_bound_reaches_the_field_checks(faults: FaultRegistry) -> None:
    """Eight levels parse; the field check then refuses the value by name."""
    body = b'{"params": {"mean_ms": ' + b"[" * 6 + b"]" * 6 + b"}}"
    response = call(faults, "PUT", "/faults/latency", content=body)
    assert response.status_code == 400
    assert "'mean_ms'" in response.json()["error"]


@pytest.mark.parametrize(
    "body",
    [b'{"duration": 1e400}', b'{"params": {"mean_ms": ' + _HUGE_INT + b"}}",
     b'{"params": ' + b"[" * 30000 + b"]" * 30000 + b"}"],
    ids=["float-overflow", "huge-int", "deep"],
)
def test_the_running_site_answers_bad_fault_bodies_with_400(site: Any, body: bytes) -> None:
    """Over the wire, through the site's control listener: 400 with a JSON error, never 500."""
    request = httpx.put(site.manifest.faults_url + "/latency", content=body, timeout=10,
                        headers={"Authorization": f"Bearer {site.manifest.faults_token}"})
    assert request.status_code == 400
    assert request.json()["error"]
