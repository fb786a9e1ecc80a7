"""``cmg-harness gate FILE RESULTS_DIR`` and ``cmg-harness run --gate FILE``: exit codes and refusals before a run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from tests.gates.results import REAL_STS_ENTRY, write_results

PASSING = 'thresholds:\n  "*":\n    - p99 < 500ms\n'
FAILING = 'thresholds:\n  "*":\n    - p99 < 50ms\n'
TYPO = 'thresholds:\n  "*":\n    - p95 < 500ms\n    - failure_ration <= 1%\n'


def gate_file(folder: Path, text: str, name: str = "gate.yaml") -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(("text", "code", "mark"), [(PASSING, 0, "✓"), (FAILING, 3, "✗")])
def test_gate_judges_an_earlier_run_and_exits_0_or_3(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                                     code: int, mark: str) -> None:
    """A held gate exits 0, a crossed one 3; both print the threshold and write the verdict files."""
    results = write_results(tmp_path / "results", [REAL_STS_ENTRY])
    assert main(["gate", gate_file(tmp_path, text), str(results)]) == code
    assert f"{mark} *: p99 <" in capsys.readouterr().out
    assert (results / "gate.json").is_file() and (results / "gate-junit.xml").is_file()
    assert (results / "gate-gate.json").is_file() and (results / "gate-gate-junit.xml").is_file()


def test_judging_again_with_another_gate_file_keeps_the_first_verdict(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Each gate file's verdict is named after it; gate.json and gate-junit.xml hold the latest one."""
    results = write_results(tmp_path / "results", [REAL_STS_ENTRY])
    assert main(["gate", gate_file(tmp_path, PASSING, "lenient.yaml"), str(results)]) == 0
    assert main(["gate", gate_file(tmp_path, FAILING, "strict v2.yaml"), str(results)]) == 3
    out = capsys.readouterr().out
    assert f"gate verdict in {results / 'gate-strict_v2.json'} and {results / 'gate-strict_v2-junit.xml'}" in out
    assert json.loads((results / "gate-lenient.json").read_text())["passed"] is True
    assert json.loads((results / "gate-strict_v2.json").read_text())["passed"] is False
    assert "<failure" not in (results / "gate-lenient-junit.xml").read_text()
    assert "<failure" in (results / "gate-strict_v2-junit.xml").read_text()
    assert (results / "gate.json").read_text() == (results / "gate-strict_v2.json").read_text()
    assert (results / "gate-junit.xml").read_text() == (results / "gate-strict_v2-junit.xml").read_text()


def test_a_gate_file_with_a_typo_is_a_usage_error_naming_its_line(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A misspelt metric exits 2 with ``file:line`` before anything is read or written."""
    results = write_results(tmp_path / "results", [REAL_STS_ENTRY])
    path = gate_file(tmp_path, TYPO)
    assert main(["gate", path, str(results)]) == 2
    assert f"{path}:4: unknown metric 'failure_ration'" in capsys.readouterr().err
    assert not (results / "gate.json").exists()


def test_gate_on_a_missing_results_directory_is_a_usage_error(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Judging a directory that does not exist exits 2 and names it."""
    assert main(["gate", gate_file(tmp_path, PASSING), str(tmp_path / "nothing")]) == 2
    assert "nothing' not found" in capsys.readouterr().err


def test_gate_on_results_without_locust_statistics_names_the_file(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A results directory without locust.json exits 2 and says which file is missing."""
    (tmp_path / "results").mkdir()
    assert main(["gate", gate_file(tmp_path, PASSING), str(tmp_path / "results")]) == 2
    assert "locust.json" in capsys.readouterr().err


def test_run_refuses_a_bad_gate_before_starting_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``run --gate`` with an impossible threshold exits 2 at once: no results directory, no site."""
    path = gate_file(tmp_path, 'thresholds:\n  "*":\n    - failure_ratio > 1.5\n')
    out = tmp_path / "out"
    assert main(["run", "--gate", path, "--out", str(out)]) == 2
    assert f"argument --gate: {path}:3: 'failure_ratio > 1.5' can never hold" in capsys.readouterr().err
    assert not out.exists()


def test_the_gate_command_runs_as_a_program(tmp_path: Path) -> None:
    """``python -m harness.cli gate`` exits 3 on a crossed threshold, as CI sees it."""
    results = write_results(tmp_path / "results", [REAL_STS_ENTRY])
    done = subprocess.run([sys.executable, "-m", "harness.cli", "gate", gate_file(tmp_path, FAILING), str(results)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 3, done.stderr
    assert "gate FAIL: 1 of 1 thresholds crossed (exit 3)" in done.stdout


def test_judging_a_finished_run_again_renders_its_report_with_the_new_verdict(tmp_path: Path) -> None:
    """The run report of a finished run (one with summary.json) is written again after a gate judges it, so it shows
    the verdict of the gate just applied; results without a summary get no report."""
    import shutil

    results = write_results(tmp_path / "run", [REAL_STS_ENTRY])
    fixture = Path(__file__).resolve().parents[1] / "report" / "data" / "run-cp-flap"
    shutil.copy(fixture / "summary.json", results / "summary.json")
    assert main(["gate", gate_file(tmp_path, FAILING, "strict-latency.yaml"), str(results)]) == 3
    report = (results / "report.html").read_text()
    assert "p99 &lt; 50ms" in report or "p99 < 50ms" in report
    bare = write_results(tmp_path / "bare", [REAL_STS_ENTRY])
    main(["gate", gate_file(tmp_path, PASSING), str(bare)])
    assert not (bare / "report.html").exists()
