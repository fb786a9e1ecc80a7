"""Fault controls in Locust's web UI: routes that relay the site's fault control API, and a self-contained page.

The routes serve the fault controls tab of our UI build (``harness.load.webui``); the plain page at ``cmg/faults`` is
the fallback when Locust shows another build (a user's own ``--build-path``). The browser never sees the fault API's
bearer token: the tab and the page talk to these routes on the Locust web UI, which call the site with the token from
its manifest. Locust's web UI allows cross-origin requests (flask-cors), so a route that changes faults answers only
requests Locust's own pages make: same origin, and a header a plain form cannot send.
No Locust import (Flask only), so the routes are tested on a bare Flask app.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from harness.chaos.faultapi import FaultApiError, FaultClient
from harness.chaos.page import render_fault_page
from mock_site.manifest import SiteManifest

#: Where the page and its API live, under Locust's ``--web-base-path``.
PAGE_PATH = "/cmg/faults"
API_PATH = "/cmg/faults/api"
#: The header the page sends with every call; a cross-site form cannot set it, and a cross-origin script that sets it
#: also sends its Origin, which is refused.
REQUEST_HEADER = ("X-Requested-With", "cmg-harness")
#: The page loads nothing from elsewhere and talks only to its own origin.
PAGE_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_REFUSED_STATUS = re.compile(r"refused \S+ \S+: (\d{3}) ")


class PanelError(ValueError):
    """A request to the fault panel is unusable; the message names the bad value."""


def _foreign(request: Any) -> str | None:
    """Why a state-changing request does not come from the page itself (None when it does)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return f"cross-site request refused (Sec-Fetch-Site: {site})"
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        return f"request from origin {origin!r} refused"
    name, value = REQUEST_HEADER
    if request.headers.get(name) != value:
        return f"the {name}: {value} header is missing"
    return None


def set_arguments(body: Any) -> dict[str, Any]:
    """The keyword arguments of ``FaultClient.set`` from a PUT body, checked for shape (the site checks values)."""
    if not isinstance(body, Mapping):
        raise PanelError(f"the body must be a JSON object, got {body!r:.100}")
    unknown = sorted(set(body) - {"role", "probability", "duration", "params"})
    if unknown:
        raise PanelError(f"unknown field(s) {', '.join(unknown)} (fields: role, probability, duration, params)")
    role = body.get("role") or None
    if role is not None and not isinstance(role, str):
        raise PanelError(f"role must be a string, got {role!r}")
    params = body.get("params") or {}
    if not isinstance(params, Mapping):
        raise PanelError(f"params must be an object, got {params!r:.100}")
    return {"role": role, "probability": body.get("probability", 1.0), "duration": body.get("duration"),
            "params": dict(params)}


def _error_status(error: FaultApiError) -> int:
    match = _REFUSED_STATUS.search(str(error))
    return int(match.group(1)) if match else 502  # not refused: the site could not be reached


def fault_page_html() -> str:
    """The page, rendered with where its API lives (relative to the page) and the header the routes require."""
    return render_fault_page(api_suffix=API_PATH.removeprefix(PAGE_PATH), request_header=REQUEST_HEADER)


def install(web_ui: Any, client: Callable[[], FaultClient], *, base_path: str = "") -> None:
    """Add the page and the API routes to Locust's Flask app (``client``: the site's fault client, built on demand)."""
    from flask import Blueprint, Response, jsonify, request

    blueprint = Blueprint("cmg_harness_faults", __name__, url_prefix=base_path.rstrip("/") or None)
    page = fault_page_html()
    guard = web_ui.auth_required_if_enabled

    def relay(call: Callable[[FaultClient], Any], *, changes: bool = False) -> Any:
        if changes and (reason := _foreign(request)) is not None:
            return jsonify({"error": reason}), 403
        try:
            return jsonify(call(client()))
        except PanelError as error:
            return jsonify({"error": str(error)}), 400
        except FaultApiError as error:
            return jsonify({"error": str(error)}), _error_status(error)

    @blueprint.route(PAGE_PATH)
    @guard
    def fault_page() -> Any:
        return Response(page, mimetype="text/html", headers={"Content-Security-Policy": PAGE_POLICY,
                                                             "Cache-Control": "no-store"})

    @blueprint.route(API_PATH)
    @guard
    def fault_list() -> Any:
        return relay(lambda faults: faults.list())

    @blueprint.route(API_PATH + "/catalogue")
    @guard
    def fault_catalogue() -> Any:
        return relay(lambda faults: faults.catalogue())

    @blueprint.route(API_PATH + "/reset", methods=["POST"])
    @guard
    def fault_reset() -> Any:
        return relay(lambda faults: faults.reset(), changes=True)

    @blueprint.route(API_PATH + "/<name>", methods=["PUT"])
    @guard
    def fault_set(name: str) -> Any:
        return relay(lambda faults: faults.set(name, **set_arguments(request.get_json(silent=True))), changes=True)

    @blueprint.route(API_PATH + "/<name>", methods=["DELETE"])
    @guard
    def fault_clear(name: str) -> Any:
        return relay(lambda faults: faults.clear(name), changes=True)

    web_ui.app.register_blueprint(blueprint)


class ManifestFaultClient:
    """The fault client for the site a manifest names, rebuilt when the manifest names another site or token."""

    def __init__(self, manifest: Callable[[], SiteManifest]) -> None:
        self._manifest = manifest
        self._key: tuple[str, str] | None = None
        self._client: FaultClient | None = None

    def __call__(self) -> FaultClient:
        try:
            manifest = self._manifest()
            key = (manifest.faults_url, manifest.faults_token)
        except (OSError, ValueError) as error:
            raise FaultApiError(f"the site manifest gives no fault API: {error}") from None
        if key != self._key or self._client is None:
            if self._client is not None:
                self._client.close()
            self._client, self._key = FaultClient(*key), key
        return self._client
