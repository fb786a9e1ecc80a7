"""``cmg-harness run --arrival-rate … --gate`` with latency-book thresholds, for real: corrected latency and the
achieved rate hold on a healthy site (exit 0), an impossible corrected p99 crosses (exit 3)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

OPEN = ["--arrival-rate", "4/s", "--polls-per-device", "1", "--duration", "8s"]
HELD = ('thresholds:\n'
        '  "*":\n'
        '    - corrected_p99_ms < 20s\n'
        '    - achieved_rate_ratio >= 90%\n'
        '    - threshold: corrected_p99_ms < 20s\n'
        '      window: 3s\n'
        '  /CCM_Proxy_ServerAuth/{id}/CCM_STS:\n'
        '    - lateness_p99_ms < 20s\n'
        '    - threshold: achieved_rate_ratio >= 50%\n'
        '      window: 3s\n'
        '  stage:install+register:\n'
        '    - corrected_max_ms < 30s\n')
IMPOSSIBLE = 'thresholds:\n  "*":\n    - corrected_p99_ms < 0.01ms\n'


def gated_run(tmp_path: Path, gate: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    path = tmp_path / "gate.yaml"
    path.write_text(gate)
    out = tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "harness.cli", "run", *OPEN, "--out", str(out), "--gate", str(path)],
                          capture_output=True, text=True, timeout=150, check=False)
    return done, out


def test_corrected_latency_and_achieved_rate_thresholds_hold_on_a_healthy_open_run(tmp_path: Path) -> None:
    """Every latency-book threshold is measured (none falls back to 'no data') and holds: exit 0."""
    done, out = gated_run(tmp_path, HELD)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "gate PASS: 6 of 6 thresholds held" in done.stdout
    verdict = json.loads((out / "gate.json").read_text())
    assert all(result["measured"] is not None for result in verdict["results"])
    corrected = next(result for result in verdict["results"] if result["id"] == "*: corrected_p99_ms < 20s")
    assert 0 < corrected["measured"] < 20_000
    first = json.loads((out / "stats_history.jsonl").read_text().splitlines()[1])
    assert "latency" in first


def test_an_impossible_corrected_p99_fails_the_run_with_exit_3(tmp_path: Path) -> None:
    """No device's request is answered within 10 µs of when it was meant to go: the gate fails, the run does not."""
    done, out = gated_run(tmp_path, IMPOSSIBLE)
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-2000:]
    # The run itself passed (summary.json), but its screen ends with the gate and a verdict that takes it in,
    # then the result files: no PASS before a gate that fails.
    assert json.loads((out / "summary.json").read_text())["passed"] is True and "\nPASS\n" not in done.stdout
    assert done.stdout.strip().splitlines()[-2].startswith("FAIL: gate ")
    assert "1 of 1 thresholds crossed" in done.stdout.strip().splitlines()[-2]
    assert "gate FAIL: 1 of 1 thresholds crossed (exit 3)" in done.stdout
    (result,) = json.loads((out / "gate.json").read_text())["results"]
    assert result["passed"] is False and result["measured"] > 0.01
