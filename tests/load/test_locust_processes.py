"""Locust itself, run as a subprocess against a real site: the capacity step shape and the web UI's extra tabs."""

from __future__ import annotations

import contextlib
import csv
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.defaults import LOCUSTFILES_DIR
from mock_site.testing import RunningSite


def locust(*args: str) -> list[str]:
    return [sys.executable, "-m", "locust", *args]


@pytest.mark.slow
def test_the_capacity_locustfile_steps_users_up_and_ends_the_run_itself(site: RunningSite, tmp_path: Path) -> None:
    """capacity.py holds 1 user, then 2, each for 2 s, then stops on its own and writes its outcomes."""
    result = subprocess.run(locust("-f", str(LOCUSTFILES_DIR / "capacity.py"), "--headless", "--only-summary",
                                   "--site", str(site.manifest_path), "--step-users", "1", "--steps", "2",
                                   "--step-hold", "2", "--devices-per-user", "1", "--csv", str(tmp_path / "locust"),
                                   "--results-dir", str(tmp_path)),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(tmp_path / "locust_stats_history.csv", newline="") as history:
        counts = [int(row["User Count"]) for row in csv.DictReader(history)]
    assert 1 in counts and max(counts) == 2
    outcomes = json.loads((tmp_path / "outcomes.json").read_text())
    assert outcomes["devices"]["registered"] == 2 and outcomes["unexpected"] == {}


def test_a_headless_run_without_a_site_manifest_stops_at_once_naming_the_path(tmp_path: Path) -> None:
    """--site pointing at nothing ends a headless run before any user starts, saying where it looked."""
    missing = tmp_path / "nowhere" / "site.json"
    result = subprocess.run(locust("-f", str(LOCUSTFILES_DIR / "lifecycle.py"), "--headless", "-u", "1", "-t", "5",
                                   "--site", str(missing)), capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert f"cmg-harness: --site: site manifest '{missing}' not found (start a site with" in result.stderr


def test_a_headless_run_with_a_bad_chaos_schedule_stops_at_once_naming_file_and_line(tmp_path: Path) -> None:
    """--chaos is checked when Locust starts: an unknown fault ends a headless run before any user starts."""
    schedule = tmp_path / "chaos.yaml"
    schedule.write_text("faults:\n  - {fault: gremlins, start: 1, duration: 2}\n")
    result = subprocess.run(locust("-f", str(LOCUSTFILES_DIR / "lifecycle.py"), "--headless", "-u", "1", "-t", "5",
                                   "--site", str(tmp_path / "site.json"), "--chaos", str(schedule)),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert f"cmg-harness: --chaos: {schedule}:2: unknown fault 'gremlins'" in result.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read().decode()
    return json.loads(body) if body.lstrip().startswith("{") else body


@contextlib.contextmanager
def running_web_ui(site: RunningSite, log_path: Path, *options: str) -> Iterator[str]:
    """Locust's web UI for lifecycle.py on a free loopback port; yields its base URL, stops it by its PID."""
    port = _free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(locust("-f", str(LOCUSTFILES_DIR / "lifecycle.py"), "--site",
                                          str(site.manifest_path), "--web-host", "127.0.0.1", "--web-port", str(port),
                                          *options), stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    _get(base + "/stats/requests")
                    break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise AssertionError(log_path.read_text()[-2000:]) from None
                    time.sleep(0.2)
            yield base
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def web_ui(site: RunningSite, tmp_path: Path) -> Iterator[str]:
    """The web UI swarming 2 users of 2 devices each from the start (--autostart)."""
    with running_web_ui(site, tmp_path / "locust.log", "--autostart", "-u", "2", "-r", "2",
                        "--devices-per-user", "2") as base:
        yield base


def _tab(stats: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return next((tab["data"] for tab in stats.get("extended_stats", []) if tab["key"] == key), [])


@pytest.mark.slow
def test_the_web_ui_fills_the_cmg_traffic_and_outcome_tabs_while_users_run(web_ui: str) -> None:
    """Each /stats/requests poll carries the CMGService-style rows and the lifecycle counts the tabs show."""
    deadline = time.monotonic() + 30
    while True:
        stats = _get(web_ui + "/stats/requests")
        traffic = _tab(stats, "cmg-traffic")
        outcomes = {row["measure"]: row["count"] for row in _tab(stats, "lifecycle-outcomes")}
        if traffic and outcomes.get("devices registered") == 4:
            break
        assert time.monotonic() < deadline, stats.get("extended_stats")
        time.sleep(0.5)
    uris = {row["request_uri"] for row in traffic}
    assert "/CCM_Proxy_ServerAuth/72186325152220500/CCM_STS" in uris
    verdicts = _wait_for(lambda: _tab(_get(web_ui + "/stats/requests"), "chaos-verdicts"))
    assert verdicts[0]["kind"] == "total" and verdicts[0]["unexpected"] == 0
    assert all(set(row) == {"request_uri", "request_count", "request_size", "response_count", "response_size",
                            "average_elapsed_time"} for row in traffic)


@pytest.mark.slow
def test_the_web_ui_page_declares_the_extra_tabs_and_the_run_options(web_ui: str) -> None:
    """The page's template arguments name the extra tabs, their columns, and the cmg-harness options of the start form;
    the page loads our build of the UI."""
    page = _get(web_ui + "/")
    assert '"extended_tabs"' in page and "CMG traffic" in page and "Lifecycle outcomes" in page
    assert "Chaos verdicts" in page and '"Fault windows"' in page
    assert 'src="./cmg/ui/cmg-harness-ui.js"' in page  # our build of the UI, with the fault controls tab
    assert "AverageElapsedTime" in page
    for option in ("fleet_mix", "fleet_seed", "devices_per_user", "time_scale", "site", "chaos", "ca_file"):
        assert f'"{option}"' in page
    assert '"results_dir"' not in page and '"fleet_workers"' not in page


def _wait_for(predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)
    return value


def _rendered(url: str) -> str:
    """The page as headless Chromium renders it (scripts run, the tab named in ?tab= shown), as text."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser is not None
    result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=8000",
                             "--dump-dom", url], capture_output=True, text=True, timeout=60, check=True)
    body = result.stdout[:result.stdout.find("window.templateArgs")]  # the rendered page, not the inline data
    return " ".join(re.sub(r"<[^>]+>", " ", body).split())


def _rendered_until(url: str, needle: str, attempts: int = 5) -> str:
    """Render until ``needle`` shows: a render can catch the app before it has applied the running state."""
    for _ in range(attempts):
        text = _rendered(url)
        if needle in text:
            return text
    return text


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="needs headless Chromium (Debian's chromium; ./dev test installs it when root)")
def test_a_browser_sees_the_custom_tabs_fill_after_a_swarm_started_from_the_form(site: RunningSite,
                                                                                 tmp_path: Path) -> None:
    """Start a swarm as the start form does (with a cmg-harness option changed), then render both tabs in Chromium."""
    with running_web_ui(site, tmp_path / "locust.log") as base:
        form = urllib.parse.urlencode({"user_count": "1", "spawn_rate": "1", "host": site.manifest.cmg_url,
                                       "devices_per_user": "3"}).encode()
        with urllib.request.urlopen(base + "/swarm", data=form, timeout=10) as answer:
            assert json.loads(answer.read())["success"]
        _wait_for(lambda: {row["measure"]: row["count"] for row in
                           _tab(_get(base + "/stats/requests"), "lifecycle-outcomes")}.get("devices registered") == 3)
        traffic = _rendered_until(base + "/?tab=cmg-traffic", "RequestUri")
        outcomes = _rendered_until(base + "/?tab=lifecycle-outcomes", "Measure")
    assert "RequestUri RequestCount RequestSize (bytes) ResponseCount ResponseSize (bytes) AverageElapsedTime" in traffic
    # The token requests carry their form body (about 1.2 KB each), so RequestSize is not 0.
    assert re.search(r"/CCM_Proxy_ServerAuth/\d+/CCM_STS \d+ [1-9]\d{3,} \d+ \d+ \d+", traffic)
    assert "devices started 3" in outcomes and "devices registered 3" in outcomes
