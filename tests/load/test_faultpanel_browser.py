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

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        await self.socket.send_json({"id": number, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(self.socket.receive_json(), 30)
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
    """Locust's page links to the controls; choosing a fault and clicking switches it on; its row's button clears it."""
    with running_web_ui(clean_site, tmp_path / "locust.log") as base, chromium(tmp_path / "profile") as devtools:

        async def drive() -> None:
            async with page(devtools) as tab:
                await tab.call("Page.navigate", url=base + "/")
                href = await tab.wait_for("document.getElementById('cmg-harness-fault-controls')?.href")
                assert href == base + "/cmg/faults"
                await tab.evaluate("document.getElementById('cmg-harness-fault-controls').click()")
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
