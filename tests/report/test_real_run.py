"""The report from a short real step run (mock site + Locust through ``cmg-harness run``), parsed and rendered in
headless Chromium."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from harness.defaults import LOCUSTFILES_DIR
from harness.report import build_report, write_report
from tests.report.html_check import external_references, read_page

STEPS, STEP_USERS, STEP_HOLD = 5, 3, 8
#: `cmg-harness run` does not forward the step shape's options yet; Locust reads them from ./locust.conf.
LOCUST_CONF = f"step-users = {STEP_USERS}\nsteps = {STEPS}\nstep-hold = {STEP_HOLD}\nstep-start-users = 0\n"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH = 1100


@pytest.fixture(scope="module")
def capacity_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~40 s capacity run: 5 steps of 3 more users, 8 s each."""
    work = tmp_path_factory.mktemp("capacity")
    (work / "locust.conf").write_text(LOCUST_CONF)
    out = work / "results"
    result = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--locustfile",
                             str(LOCUSTFILES_DIR / "capacity.py"), "--duration", str(STEPS * STEP_HOLD),
                             "--out", str(out)], cwd=work, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return out


@pytest.mark.slow
def test_a_real_step_run_gives_one_step_per_user_count(capacity_results: Path) -> None:
    """Every step of the shape shows up with its users, HTTP throughput and percentiles."""
    report = build_report(capacity_results)
    assert [step.users for step in report.steps] == [STEP_USERS * (i + 1) for i in range(STEPS)]
    assert report.source == "histograms"  # stats_history.jsonl: exact per-step figures of HTTP requests
    assert all(step.throughput > 0 and step.p95_ms is not None for step in report.steps)
    assert report.fit is not None  # five steps are enough for the USL fit


@pytest.mark.slow
def test_the_report_of_a_real_run_parses_and_stays_offline(capacity_results: Path) -> None:
    """The written page is well-formed and references nothing outside itself."""
    page = read_page(write_report(capacity_results).read_text())
    assert page.errors == []
    assert external_references(page) == []
    assert page.tags["svg"] == 4


def _chromium(url: str, profile: Path, screenshot: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run",
                           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                           f"--window-size={WIDTH},4200", f"--screenshot={screenshot}", url],
                          capture_output=True, text=True, timeout=120, check=False)


def _console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (Debian's chromium)")
def test_the_console_check_catches_a_page_error(tmp_path: Path) -> None:
    """The console check sees a script error: its silence on the report means something."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>missingFunction();</script></body></html>")
    result = _chromium(page.as_uri(), tmp_path / "profile", tmp_path / "broken.png")
    assert any("missingFunction" in line for line in _console_lines(result.stderr))


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (Debian's chromium)")
def test_the_report_of_a_real_run_renders_in_chromium_without_console_errors(capacity_results: Path, tmp_path: Path,
                                                                             artifacts_dir: Path) -> None:
    """Headless Chromium draws the page to a screenshot and logs nothing to the console."""
    report = write_report(capacity_results)
    screenshot = artifacts_dir / "capacity-report.png"
    result = _chromium(report.as_uri(), tmp_path / "profile", screenshot)
    assert result.returncode == 0, result.stderr[-2000:]
    assert _console_lines(result.stderr) == []
    header = screenshot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">I", header[16:20])[0] == WIDTH
