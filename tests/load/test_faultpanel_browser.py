"""The fault controls driven in headless Chromium: follow the link from Locust's page, switch a fault on, clear it.

Chromium is steered over the DevTools protocol (a WebSocket, spoken with aiohttp), so clicks run the page's own
script against a real Locust web UI and a real site.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mock_site.testing import RunningSite
from tests.load.test_locust_processes import running_web_ui

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (Debian's chromium; ./dev test installs it "
                                                "when root)"),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[str]:
    """Headless Chromium with its DevTools endpoint on a free loopback port; yields the page's WebSocket URL."""
    port = _free_port()
    assert CHROMIUM is not None
    process = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1",
                                f"--user-data-dir={profile}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as answer:
                    targets = json.loads(answer.read())
                page = next(t for t in targets if t["type"] == "page")
                break
            except (OSError, StopIteration):
                assert time.monotonic() < deadline and process.poll() is None, "Chromium did not start"
                time.sleep(0.2)
        yield str(page["webSocketDebuggerUrl"])
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Page:
    """One Chromium page over the DevTools protocol: navigate, evaluate script, wait for a condition."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.ids = iter(range(1, 1_000_000))
        #: Uncaught exceptions and console errors of the page (after ``Runtime.enable``).
        self.errors: list[str] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        await self.socket.send_json({"id": number, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(self.socket.receive_json(), 30)
            event = message.get("method")
            if event == "Runtime.exceptionThrown":
                self.errors.append(str(message["params"]["exceptionDetails"])[:500])
            elif event == "Runtime.consoleAPICalled" and message["params"].get("type") == "error":
                self.errors.append(str(message["params"].get("args"))[:500])
            if message.get("id") == number:
                assert "error" not in message, message
                return dict(message.get("result", {}))

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := await self.evaluate(expression)):
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            await asyncio.sleep(0.2)
        return value


@contextlib.asynccontextmanager
async def page(url: str) -> AsyncIterator[Page]:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=0) as ws:
        yield Page(ws)


def _until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _active(site: RunningSite) -> list[str]:
    request = urllib.request.Request(site.manifest.faults_url,
                                     headers={"Authorization": f"Bearer {site.manifest.faults_token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return [fault["name"] for fault in json.loads(answer.read())["active"]]


def test_a_fault_switched_on_and_off_in_the_browser_is_on_and_off_at_the_site(clean_site: RunningSite,
                                                                               tmp_path: Path) -> None:
    """The plain page (the fallback when Locust shows another UI build): choosing a fault and clicking switches it
    on; its row's button clears it. Locust's own page carries no floating link any more (the tab replaced it)."""
    with running_web_ui(clean_site, tmp_path / "locust.log") as base, chromium(tmp_path / "profile") as devtools:

        async def drive() -> None:
            async with page(devtools) as tab:
                await tab.call("Page.navigate", url=base + "/")
                await tab.wait_for("document.querySelector('#root form') !== null")  # the start form
                assert await tab.evaluate("document.querySelector('a[href$=\"cmg/faults\"]') === null")
                await tab.call("Page.navigate", url=base + "/cmg/faults")
                await tab.wait_for("document.body && document.body.dataset.ready === 'yes' && "
                                   "document.getElementById('fault-name').options.length > 0")
                await tab.evaluate("""(() => {
                    const name = document.getElementById('fault-name');
                    name.value = 'cp_disconnected';
                    name.dispatchEvent(new Event('change'));
                    document.getElementById('fault-duration').value = '60';
                    document.getElementById('fault-set').click();
                })()""")
                await asyncio.to_thread(_until, lambda: _active(clean_site) == ["cp_disconnected"])
                row = "document.querySelector('#active tr[data-fault=\"cp_disconnected\"]')"
                shown = await tab.wait_for(f"{row} && {row}.textContent")
                assert "cp_disconnected" in shown and "cmg" in shown
                await tab.evaluate(f"{row}.querySelector('button.clear').click()")
                await asyncio.to_thread(_until, lambda: _active(clean_site) == [])
                await tab.wait_for(f"!{row}")
                status = await tab.evaluate("document.getElementById('status').textContent")
                assert "cleared" in status or "updated" in status

        asyncio.run(drive())


#: Markup that would run if the page ever parsed what the site sends as HTML (the page's policy allows inline
#: handlers, and the blocked image makes onerror fire).
EVIL = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


class MaliciousFaults:
    """A fault client whose catalogue and active faults carry markup in every text the page shows."""

    def catalogue(self) -> Any:
        return {"faults": [{"name": "latency" + EVIL, "description": "slow replies " + EVIL, "expected_outcome": EVIL,
                            "roles": ["mp", EVIL], "default_role": "mp",
                            "params": [{"name": "mean_ms" + EVIL, "description": EVIL, "type": "str",
                                        "default": EVIL}]}]}

    def list(self) -> Any:
        return {"active": [{"name": EVIL, "role": EVIL, "probability": 1.0, "params": {"mean_ms": EVIL},
                            "remaining_s": 30.0, "injections": 2}],
                "injections": {EVIL: 2}}


class _BareWebUI:
    def __init__(self) -> None:
        from flask import Flask

        self.app = Flask("malicious-faults")

    def auth_required_if_enabled(self, view: Any) -> Any:
        return view


@contextlib.contextmanager
def _serving(app: Any) -> Iterator[str]:
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


def test_markup_from_the_site_is_shown_as_text_and_never_runs(tmp_path: Path) -> None:
    """A fault name, description, role and parameters holding markup appear literally; no element or script is made."""
    from harness.load import faultpanel

    ui = _BareWebUI()
    faultpanel.install(ui, lambda: MaliciousFaults())  # type: ignore[arg-type, return-value]
    with _serving(ui.app) as base, chromium(tmp_path / "profile") as devtools:

        async def drive() -> None:
            async with page(devtools) as tab:
                await tab.call("Page.navigate", url=base + "/cmg/faults")
                await tab.wait_for("document.body && document.body.dataset.ready === 'yes' && "
                                   "document.getElementById('fault-name').options.length > 0 && "
                                   "document.querySelectorAll('#active tr[data-fault]').length > 0")
                await asyncio.sleep(0.5)  # a blocked image's onerror would have fired by now
                assert await tab.evaluate("window.pwned === undefined")
                assert await tab.evaluate("document.querySelectorAll('img').length") == 0
                assert await tab.evaluate("document.querySelectorAll('script').length") == 1
                description = await tab.evaluate("document.getElementById('fault-description').textContent")
                assert description == f"slow replies {EVIL} Expected: {EVIL}"
                active = await tab.evaluate("document.querySelector('#active tr[data-fault]').textContent")
                assert active.count(EVIL) == 3  # name, role, parameters
                option = await tab.evaluate("document.getElementById('fault-name').options[0].textContent")
                assert option == "latency" + EVIL

        asyncio.run(drive())
