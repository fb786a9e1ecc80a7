"""The fault control API: a small REST app, on loopback and behind a bearer token, to switch faults during a run."""

from __future__ import annotations

import hmac
import ipaddress
import json
import math
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mock_site.faults.catalogue import FaultError, UnknownFault, catalogue_dict, get_spec, shown_value
from mock_site.faults.registry import FaultRegistry

#: Largest request body the control API reads.
MAX_BODY_BYTES = 64 * 1024
#: Deepest nesting of arrays and objects the control API parses (a PUT body needs 2: the body and its params).
MAX_JSON_DEPTH = 8
#: The fields a PUT body may hold.
PUT_FIELDS = ("role", "probability", "duration", "params")


class _BadRequest(Exception):
    """A request the control API refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def control_app(faults: FaultRegistry, *, token: str) -> ASGIApp:
    """The control API over ``faults`` (the fault registry); every route needs ``Authorization: Bearer <token>`` from loopback."""
    if not isinstance(token, str) or not token:
        raise FaultError("the fault control API needs a non-empty token")
    api = _ControlApi(faults)
    app = Starlette(
        routes=[
            Route("/faults", api.list_faults, methods=["GET"]),
            Route("/faults/catalogue", api.catalogue, methods=["GET"]),
            Route("/faults/reset", api.reset, methods=["POST"]),
            Route("/faults/{name}", api.set_fault, methods=["PUT"]),
            Route("/faults/{name}", api.clear_fault, methods=["DELETE"]),
        ],
        exception_handlers={HTTPException: _http_exception},  # type: ignore[dict-item]
    )
    return _Guard(app, token)


class _Guard:
    """Refuses non-loopback clients (403) and requests without the bearer token (401) before any route runs."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        if not _is_loopback(scope.get("client")):
            await _error(403, "the fault control API only answers loopback clients")(scope, receive, send)
            return
        given = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        # Constant-time compare, so the token cannot be guessed byte by byte from response times.
        if not hmac.compare_digest(given, self._expected):
            response = _error(401, "missing or wrong bearer token")
            response.headers["WWW-Authenticate"] = "Bearer"
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _ControlApi:
    """The route handlers; every change goes through the registry, which validates before it changes anything."""

    def __init__(self, faults: FaultRegistry) -> None:
        self.faults = faults

    async def list_faults(self, request: Request) -> Response:
        return JSONResponse(
            {
                "active": self.faults.snapshot(),
                "injections": self.faults.injections(),
                "catalogue": catalogue_dict(),
            }
        )

    async def catalogue(self, request: Request) -> Response:
        return JSONResponse(catalogue_dict())

    async def set_fault(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            get_spec(name)  # an unknown fault is a 404 even when the body is bad too
            body = await _read_json(request)
            unknown = sorted(set(body) - set(PUT_FIELDS))
            if unknown:
                raise FaultError(f"unknown field {shown_value(unknown[0])} (fields: {', '.join(PUT_FIELDS)})")
            role = body.get("role")
            if role is not None and not isinstance(role, str):
                raise FaultError(f"role must be a string, got {shown_value(role)}")
            fault = self.faults.set(
                name,
                role=role,
                probability=body.get("probability", 1.0),
                duration=body.get("duration"),
                params=body.get("params"),
            )
        except (FaultError, _BadRequest) as exc:
            return _refusal(exc)
        return JSONResponse(self.faults.describe(fault))

    async def clear_fault(self, request: Request) -> Response:
        name = request.path_params["name"]
        role = request.query_params.get("role")
        try:
            cleared = self.faults.clear(name, role)
        except FaultError as exc:
            return _refusal(exc)
        if not cleared:
            where = f" at role {shown_value(role)}" if role is not None else ""
            return _error(404, f"fault {name!r} is not active{where}")
        now = self.faults.clock()
        return JSONResponse({"cleared": [fault.to_dict(now) for fault in cleared]})

    async def reset(self, request: Request) -> Response:
        cleared = self.faults.reset()
        now = self.faults.clock()
        return JSONResponse({"cleared": [fault.to_dict(now) for fault in cleared]})


async def _read_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object (empty body: no fields), read no further than the size limit."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise _BadRequest(400, f"bad Content-Length {shown_value(declared)}")
        if int(declared) > MAX_BODY_BYTES:
            raise _BadRequest(413, f"request body of {declared} bytes is over the {MAX_BODY_BYTES}-byte limit")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _BadRequest(413, f"request body is over the {MAX_BODY_BYTES}-byte limit")
    if not body.strip():
        return {}
    depth = _nesting_depth(bytes(body), MAX_JSON_DEPTH)
    if depth > MAX_JSON_DEPTH:
        raise _BadRequest(400, f"request body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(body, parse_int=_integer)
    except (ValueError, RecursionError) as exc:
        raise _BadRequest(400, f"request body is not valid JSON: {str(exc)[:80]}") from None
    if not isinstance(data, dict):
        raise _BadRequest(400, f"request body must be a JSON object, got {type(data).__name__}")
    return data


#: Integers with more digits than this are beyond every range the API accepts; they parse as infinity.
_MAX_INTEGER_DIGITS = 100


def _integer(text: str) -> int | float:
    # Python refuses to convert integers of over 4,300 digits (and converting long ones costs time): a number that
    # long becomes an infinity, which the field's own check then refuses, naming the field and its range.
    if len(text.lstrip("-")) > _MAX_INTEGER_DIGITS:
        return -math.inf if text.startswith("-") else math.inf
    return int(text)


def _nesting_depth(body: bytes, limit: int) -> int:
    """How deep arrays and objects nest in ``body``, counting no further than ``limit + 1`` (brackets inside strings
    do not count); the JSON parser recurses once per level, so this runs first."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # closing quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def _is_loopback(client: Any) -> bool:
    if not client:
        return False
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _refusal(exc: Exception) -> Response:
    if isinstance(exc, _BadRequest):
        return _error(exc.status, str(exc))
    return _error(404 if isinstance(exc, UnknownFault) else 400, str(exc))


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


async def _http_exception(request: Request, exc: HTTPException) -> Response:
    # Unknown paths and wrong methods answer in the same JSON shape as every other refusal.
    response = _error(exc.status_code, exc.detail)
    if exc.headers:
        response.headers.update(exc.headers)
    return response
