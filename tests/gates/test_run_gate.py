"""``cmg-harness run --gate`` for real: a held gate exits 0, a crossed one 3, and abort_on_fail ends the run early."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

# 4 users x 3 devices; an 8 s CCM token at time scale 3600, so renewals happen within the run.
RUN = ["--users", "4", "--devices-per-user", "3", "--spawn-rate", "4", "--time-scale", "3600"]
HELD = ('thresholds:\n'
        '  "*":\n'
        '    - p95 < 10s\n'
        '    - failure_ratio <= 5%\n'
        '    - threshold: rps >= 1\n'
        '      window: 3s\n'
        '  stage:install+register:\n'
        '    - success_ratio >= 90%\n'
        '  run:\n'
        '    - unexpected_outcomes == 0\n')
CROSSED = 'thresholds:\n  "*":\n    - p99 < 0.1ms\n    - failure_ratio <= 5%\n'
ABORTING = ('thresholds:\n'
            '  "*":\n'
            '    - threshold: p50 < 0.1ms\n'
            '      window: 2s\n'
            '      abort_on_fail: true\n'
            '      delay_abort_eval: 2s\n')


def gated_run(tmp_path: Path, gate: str, duration: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    path = tmp_path / "gate.yaml"
    path.write_text(gate)
    out = tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", *RUN, "--duration", duration, "--out", str(out),
                           "--gate", str(path)], capture_output=True, text=True, timeout=150, check=False)
    return done, out


@pytest.mark.slow
def test_a_held_gate_passes_the_run_with_exit_0(tmp_path: Path) -> None:
    """Every threshold holds on a fault-free run: exit 0, a passed JSON verdict and an all-green JUnit file."""
    done, out = gated_run(tmp_path, HELD, "8s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "gate PASS: 5 of 5 thresholds held" in done.stdout
    assert json.loads((out / "gate.json").read_text())["passed"] is True
    assert (out / "stats_history.jsonl").stat().st_size > 0
    cases = ET.parse(out / "gate-junit.xml").getroot().findall("./testsuite/testcase")
    assert len(cases) == 5 and all(case.find("failure") is None for case in cases)


@pytest.mark.slow
def test_a_crossed_gate_fails_the_run_with_exit_3(tmp_path: Path) -> None:
    """No real request answers within 0.1 ms: the run itself passes, the gate does not, and the exit code is 3."""
    done, out = gated_run(tmp_path, CROSSED, "6s")
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-2000:]
    # The run itself passed (summary.json), but its screen ends with the gate and a verdict that takes it in,
    # then the result files: no PASS before a gate that fails.
    assert json.loads((out / "summary.json").read_text())["passed"] is True and "\nPASS\n" not in done.stdout
    assert done.stdout.strip().splitlines()[-2].startswith("FAIL: gate ")
    assert "1 of 2 thresholds crossed" in done.stdout.strip().splitlines()[-2]
    verdict = json.loads((out / "gate.json").read_text())
    assert [result["passed"] for result in verdict["results"]] == [False, True]


@pytest.mark.slow
def test_an_abort_on_fail_threshold_stops_the_run_long_before_its_duration(tmp_path: Path) -> None:
    """A 90 s run whose gate is crossed from the start ends within seconds, records why, and exits 3."""
    done, out = gated_run(tmp_path, ABORTING, "90s")
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-2000:]
    abort = json.loads((out / "gate-abort.json").read_text())
    assert abort["threshold"] == "*: p50 < 0.1ms over 2s" and abort["elapsed_s"] < 30
    stats = json.loads((out / "locust.json").read_text())
    last = max(entry["last_request_timestamp"] for entry in stats)
    first = min(entry["start_time"] for entry in stats)
    assert last - first < 30  # requests stopped a minute before the 90 s were up
    assert "aborted the run after" in done.stdout
