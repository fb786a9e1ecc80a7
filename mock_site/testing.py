"""Test helpers for our tests and users' tests: a real mock site on loopback, with real TLS, in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from mock_site.config import SiteConfig
from mock_site.site import Site


@dataclass
class RunningSite:
    """A site serving in a background thread; ``manifest`` is what ``site.json`` holds."""

    site: Site
    manifest: dict[str, Any]
    loop: asyncio.AbstractEventLoop

    @property
    def manifest_path(self) -> Path:
        return self.site.config.state_dir / "site.json"

    def call(self, coroutine: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine in the site's loop (e.g. to touch site state safely) and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def set_fault(self, name: str, **settings: Any) -> dict[str, Any]:
        """Switch a fault on through the real control API."""
        return self._control("PUT", f"/{name}", settings)

    def clear_fault(self, name: str) -> dict[str, Any]:
        return self._control("DELETE", f"/{name}", None)

    def reset_faults(self) -> dict[str, Any]:
        return self._control("POST", "/reset", None)

    def _control(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.manifest["faults_url"] + path, data=data, method=method,
                                         headers={"Authorization": f"Bearer {self.manifest['faults_token']}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback control API
            return json.loads(response.read() or b"{}")


@contextlib.contextmanager
def running_site(state_dir: Path, **config: Any) -> Iterator[RunningSite]:
    """Start a whole mock site on 127.0.0.1 for the duration of the ``with`` block."""
    logs_enabled = config.pop("logs_enabled", True)
    site_config = SiteConfig(state_dir=Path(state_dir), **config)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []
    site_box: list[Site] = []
    stop = asyncio.Event()

    async def main() -> None:
        try:
            site = Site(site_config, logs_enabled=logs_enabled)
            site_box.append(site)
            await site.start()
        except BaseException as exc:  # reported to the caller's thread
            failure.append(exc)
            started.set()
            return
        started.set()
        await stop.wait()
        await site.stop()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), name="mock-site", daemon=True)
    thread.start()
    started.wait(60)
    if failure:
        thread.join(5)
        raise failure[0]
    site = site_box[0]
    try:
        yield RunningSite(site=site, manifest=site.manifest(), loop=loop)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)
        if not thread.is_alive():
            loop.close()
