"""``cmg-harness report RESULTS_DIR``: in-process through main(argv) and once as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from tests.report.synthetic import Step, results_dir

STEPS = [Step(users=4 * (i + 1), seconds=20, rate=20 * (i + 1), latency_ms=5.0) for i in range(4)]


def test_report_writes_the_html_and_prints_the_key_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 0, the file in the results directory, and a short summary on stdout."""
    directory = results_dir(tmp_path / "run", STEPS)
    assert main(["report", str(directory)]) == 0
    out = capsys.readouterr().out
    assert (directory / "capacity-report.html").is_file()
    assert "4 steps, 4..16 users" in out
    assert f"capacity report: {directory / 'capacity-report.html'}" in out


def test_options_reach_the_report(tmp_path: Path) -> None:
    """With --capacity: --target-clients, --latency-target-ms and --out change what is written where."""
    directory = results_dir(tmp_path / "run", STEPS)
    out = tmp_path / "elsewhere.html"
    assert main(["report", str(directory), "--capacity", "--target-clients", "120000", "--latency-target-ms", "250",
                 "--out", str(out)]) == 0
    html = out.read_text()
    assert "<b>120,000</b> clients" in html
    assert "p95 ≤ 250 ms" in html
    assert not (directory / "capacity-report.html").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--target-clients", "0"], "target clients must be >= 1"),
    (["--target-clients", "many"], "target clients must be a whole number"),
    (["--latency-target-ms", "-5"], "latency target must be > 0"),
    (["--settle", "soon"], "settle must be a number"),
])
def test_bad_options_exit_2_naming_the_value(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                             message: str) -> None:
    """A bad option is one line on stderr and exit status 2."""
    directory = results_dir(tmp_path / "run", STEPS)
    assert main(["report", str(directory), *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_directory_without_results_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty directory is refused with the missing file named."""
    assert main(["report", str(tmp_path)]) == 2
    assert "has no summary.json" in capsys.readouterr().err


def test_report_runs_as_a_subprocess(tmp_path: Path) -> None:
    """The installed entry point works end to end outside the test process."""
    directory = results_dir(tmp_path / "run", STEPS)
    result = subprocess.run([sys.executable, "-m", "harness.cli", "report", str(directory)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert (directory / "capacity-report.html").is_file()
