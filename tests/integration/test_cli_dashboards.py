"""`cmg-harness dashboards`: the Prometheus config for a running site, and a local Prometheus serving it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from harness.dashboards import find_prometheus
from mock_site.testing import RunningSite


def test_dashboards_writes_the_scrape_config_for_the_site(site: RunningSite, tmp_path: Path) -> None:
    """The config names the site's metrics endpoint and the recording rules."""
    from harness.cli import main

    assert main(["dashboards", "--site", str(site.manifest_path), "--out", str(tmp_path)]) == 0
    config = (tmp_path / "prometheus.yml").read_text()
    assert site.manifest.metrics_url("cmg").split("//")[1].split("/")[0] in config
    assert (tmp_path / "rules" / "cmg_recording.yml").exists()


@pytest.mark.skipif(find_prometheus() is None, reason="the prometheus binary is not installed (apt-get install prometheus)")
def test_dashboards_serve_runs_prometheus_until_stopped(site: RunningSite, tmp_path: Path) -> None:
    """--serve starts Prometheus on loopback, which scrapes the site, and SIGTERM stops both cleanly."""
    process = subprocess.Popen([sys.executable, "-m", "harness.cli", "dashboards", "--site", str(site.manifest_path),
                                "--out", str(tmp_path), "--serve"], stdout=subprocess.PIPE, text=True)
    try:
        url = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not url:
            line = process.stdout.readline() if process.stdout else ""
            if line.startswith("Prometheus on "):
                url = line.split()[2]
        assert url, "prometheus did not report its address"
        assert httpx.get(f"{url}/-/ready", timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    assert code == 0
