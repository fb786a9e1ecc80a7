"""The fault controls tab inside Locust's web UI, driven in headless Chromium against a running site and swarm.

Switch a fault on from the tab, see it among the faults that are on (with its time left) and at the site, see the
verdicts move under it, see the chaos schedule's upcoming switch, switch it off again. A screenshot of the tab is kept
in the test's directory (its path is printed).
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
from pathlib import Path

import pytest

from mock_site.testing import RunningSite
from tests.load.test_faultpanel_browser import CHROMIUM, Page, _active, _until, chromium, page
from tests.load.test_locust_processes import running_web_ui

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (Debian's chromium; ./dev test installs it "
                                                "when root)"),
]

#: A schedule whose only switch comes long after the test: it shows as upcoming and never fires here.
SCHEDULE = """\
faults:
  - fault: crl_slow
    start: 900
    duration: 30
"""


def _active_params(site: RunningSite) -> dict[str, dict[str, object]]:
    request = urllib.request.Request(site.manifest.faults_url,
                                     headers={"Authorization": f"Bearer {site.manifest.faults_token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return {fault["name"]: fault["params"] for fault in json.loads(answer.read())["active"]}


def _verdicts_under(base: str, fault: str) -> int:
    with urllib.request.urlopen(base + "/stats/requests", timeout=10) as answer:
        stats = json.loads(answer.read())
    rows = next((tab["data"] for tab in stats.get("extended_stats", []) if tab["key"] == "chaos-verdicts"), [])
    return sum(int(row["expected"] or 0) + int(row["unexpected"] or 0) for row in rows
               if row["kind"] == "faults on" and fault in row["name"].split(" + "))


async def _open_tab(tab: Page, title: str) -> None:
    await tab.evaluate(f"""(() => {{
        const button = [...document.querySelectorAll('button[role=tab]')].find((b) => b.textContent === {title!r});
        button.click();
    }})()""")


async def _screenshot(tab: Page, path: Path) -> None:
    shot = await tab.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def test_a_fault_switched_from_the_tab_is_on_shows_its_time_left_and_moves_the_verdicts(
        clean_site: RunningSite, tmp_path: Path, artifacts_dir: Path) -> None:
    """With a swarm running: the catalogue, the schedule's upcoming switch; a fault switched on from its row is on at the
    site and in the tab with its time left running down; verdicts count under it; it switches off from its row; a
    fault's parameters go as name=value (an unknown one refused); no script error on the page."""
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text(SCHEDULE)
    with running_web_ui(clean_site, tmp_path / "locust.log", "--autostart", "-u", "2", "-r", "2",
                        "--devices-per-user", "2", "--chaos", str(schedule)) as base, \
            chromium(tmp_path / "profile") as devtools:

        async def drive() -> None:
            async with page(devtools) as tab:
                await tab.call("Runtime.enable")
                await tab.call("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1,
                               mobile=False)
                await tab.call("Page.navigate", url=base + "/?tab=cmg-fault-controls")
                await tab.wait_for("document.querySelector('#cmg-fault-tab')?.dataset.ready === 'yes' && "
                                   "document.querySelectorAll('#cmg-catalogue tr[data-catalogue]').length > 10")
                # The catalogue's description and expected outcome, and the schedule's upcoming switch.
                row = "document.querySelector('#cmg-catalogue tr[data-catalogue=\"cp_disconnected\"]')"
                text = await tab.evaluate(f"{row}.textContent")
                assert "connection point" in text.lower() and "503" in text
                upcoming = await tab.wait_for("[...document.querySelectorAll('#cmg-schedule tr[data-fault]')]"
                                              ".map((r) => r.textContent).join('|')")
                assert "crl_slow" in upcoming and "on" in upcoming and "off" in upcoming
                before = await asyncio.to_thread(_verdicts_under, base, "cp_disconnected")
                assert before == 0

                # Long enough to outlast the wait for verdicts below (the tab's default is 60 s).
                await tab.evaluate(f"""(() => {{
                    const input = {row}.querySelector('input[data-field=duration]');
                    const setValue = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
                    setValue.call(input, '300');
                    input.dispatchEvent(new Event('input', {{bubbles: true}}));
                }})()""")
                await tab.wait_for(f"{row}.querySelector('input[data-field=duration]').value === '300'")
                await tab.evaluate(f"{row}.querySelector('button.switch-on').click()")
                await asyncio.to_thread(_until, lambda: _active(clean_site) == ["cp_disconnected"])
                active = "document.querySelector('#cmg-active-faults tr[data-fault=\"cp_disconnected\"]')"
                await tab.wait_for(f"!!{active}")
                left = float(await tab.evaluate(f"{active}.querySelector('.time-left').textContent"))
                assert 60 < left <= 300
                await tab.wait_for(f"Number({active}.querySelector('.time-left').textContent) < {left}")
                status = await tab.evaluate("document.getElementById('cmg-fault-status').textContent")
                assert "cp_disconnected switched on" in status
                shot = artifacts_dir / "fault-tab.png"
                await _screenshot(tab, shot)
                print(f"fault tab screenshot: {shot}")
                assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000

                # The verdicts move: outcomes under the fault, counted once each, shown in the verdict tab.
                await asyncio.to_thread(_until, lambda: _verdicts_under(base, "cp_disconnected") > 0, 60)
                await _open_tab(tab, "Chaos verdicts")
                await tab.wait_for("[...document.querySelectorAll('tr')].some((r) => "
                                   "r.textContent.startsWith('faults oncp_disconnected'))", 30)
                await _screenshot(tab, artifacts_dir / "verdict-tab.png")

                await _open_tab(tab, "Fault controls")
                await tab.wait_for(f"!!{active}")
                await tab.evaluate(f"{active}.querySelector('button.switch-off').click()")
                await asyncio.to_thread(_until, lambda: _active(clean_site) == [])
                await tab.wait_for(f"!{active}")

                # Parameters as "name=value": an unknown one is refused in the tab, a known one reaches the site.
                latency = "document.querySelector('#cmg-catalogue tr[data-catalogue=\"latency\"]')"
                for text in ("bogus=1", "mean_ms=5"):
                    await tab.evaluate(f"""(() => {{
                        const input = {latency}.querySelector('input[data-field=params]');
                        const setValue = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
                        setValue.call(input, {text!r});
                        input.dispatchEvent(new Event('input', {{bubbles: true}}));
                    }})()""")
                    await tab.wait_for(f"{latency}.querySelector('input[data-field=params]').value === {text!r}")
                    await tab.evaluate(f"{latency}.querySelector('button.switch-on').click()")
                    if text.startswith("bogus"):
                        await tab.wait_for("document.getElementById('cmg-fault-status')?.textContent"
                                           ".includes('unknown parameter')")
                        assert _active(clean_site) == []
                await asyncio.to_thread(_until, lambda: _active_params(clean_site).get("latency", {}).get("mean_ms") == 5)
                await tab.evaluate("document.getElementById('cmg-clear-all').click()")
                await asyncio.to_thread(_until, lambda: _active(clean_site) == [])
                assert tab.errors == []

        asyncio.run(drive())
