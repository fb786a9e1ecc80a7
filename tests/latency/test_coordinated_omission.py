"""The demonstration users want: a stall in the middle of a run, seen by the open model's corrected latency and hidden
from the service time a closed-loop tool reports. Real site, real Locust, a latency fault on every CMG request."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

STALL_MS = 3000.0
SCHEDULE = f"""\
faults:
  - fault: latency
    role: cmg
    start: 8
    duration: 5
    params: {{mean_ms: {STALL_MS:g}, jitter_ms: 0}}
"""


def _run(tmp_path: Path, name: str, *options: str) -> dict[str, object]:
    schedule = tmp_path / "stall.yaml"
    schedule.write_text(SCHEDULE)
    out = tmp_path / name
    result = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--duration", "24", "--out", str(out),
                             "--chaos", str(schedule), *options],
                            capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def open_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return _run(tmp_path_factory.mktemp("open"), "open", "--arrival-rate", "8/s", "--polls-per-device", "1",
                "--max-in-flight", "2")


@pytest.fixture(scope="module")
def closed_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return _run(tmp_path_factory.mktemp("closed"), "closed", "--users", "2", "--devices-per-user", "40")


def test_the_open_model_sees_the_stall_in_corrected_latency_not_in_service_time(open_run: dict) -> None:
    """Corrected p99 shows the seconds the queued requests waited; service p99 stays near the fault-free value."""
    everything = open_run["latency"]["all_requests"]
    assert open_run["model"] == "open"
    assert everything["corrected_ms"]["p99"] >= STALL_MS / 2
    assert everything["service_ms"]["p99"] < 500.0
    assert everything["lateness_ms"]["p99"] >= STALL_MS / 2
    assert open_run["late"] > 0


def test_the_open_model_holds_its_intended_rate_through_the_stall(open_run: dict) -> None:
    """Late work is still done: the achieved rate over the run stays within a few percent of the intended one."""
    rates = open_run["rates"]
    assert rates["achieved_rate_ratio"] >= 0.97
    assert rates["devices_started"] >= 0.9 * rates["devices_intended"]
    assert open_run["unexpected"] == {}


def test_the_closed_model_reports_a_calm_service_time_while_its_devices_waited(closed_run: dict) -> None:
    """The closed model is labelled so; its service p99 (what a closed-loop tool prints) hides the stall that the
    corrected latency of the same run shows."""
    everything = closed_run["latency"]["all_requests"]
    assert closed_run["model"] == "closed"
    assert everything["service_ms"]["p99"] < 500.0
    assert everything["corrected_ms"]["p99"] >= STALL_MS / 2
