"""The harness side of chaos: a client for the mock site's fault control API."""

from __future__ import annotations

from typing import Any

import httpx


class FaultApiError(Exception):
    """The control API refused a call; the message carries its reason."""


class FaultClient:
    """Lists, sets, clears and resets faults on a running site through its control API (bearer token)."""

    def __init__(self, faults_url: str, token: str, *, timeout: float = 10.0) -> None:
        self.base = faults_url.rstrip("/")
        self._client = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=timeout)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self._client.request(method, self.base + path, json=body)
        except httpx.HTTPError as exc:
            raise FaultApiError(f"fault API at {self.base} not reachable: {exc}") from None
        if response.status_code >= 400:
            try:
                reason = response.json().get("error", response.text)
            except ValueError:
                reason = response.text
            raise FaultApiError(f"fault API refused {method} {path or '/'}: {response.status_code} {reason}")
        return response.json() if response.content else {}

    def list(self) -> Any:
        return self._call("GET", "")

    def catalogue(self) -> Any:
        return self._call("GET", "/catalogue")

    def set(self, name: str, *, role: str | None = None, probability: float = 1.0, duration: float | None = None,
            params: dict[str, Any] | None = None) -> Any:
        body: dict[str, Any] = {"probability": probability, "params": params or {}}
        if role is not None:
            body["role"] = role
        if duration is not None:
            body["duration"] = duration
        return self._call("PUT", f"/{name}", body)

    def clear(self, name: str) -> Any:
        return self._call("DELETE", f"/{name}")

    def reset(self) -> Any:
        return self._call("POST", "/reset")

    def close(self) -> None:
        self._client.close()
