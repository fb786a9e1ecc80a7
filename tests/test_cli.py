"""The ``cmg-harness`` command line as one package: one error type, one-line messages, defaults shown in --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import CliError, build_parser, main
from harness.defaults import DEFAULT_DEVICES_PER_USER, DEFAULT_DURATION_SECONDS, DEFAULT_TIME_SCALE, DEFAULT_USERS
from harness.load.context import LoadOptions


def test_a_cli_error_from_a_command_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A command that cannot go on (here: no results) prints ``cmg-harness: ...`` once and returns 2."""
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cmg-harness: ") and str(tmp_path / "missing") in err


@pytest.mark.parametrize("argv", [[], ["bogus"], ["run", "--users"], ["faults"], ["gate", "only-one-argument"]])
def test_a_usage_error_is_one_line_and_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """argparse's own complaints go the same way, without a usage dump."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and captured.err.startswith("cmg-harness: ")


def test_the_parser_raises_the_one_error_type() -> None:
    with pytest.raises(CliError, match="--users"):
        build_parser().parse_args(["run", "--users", "0"])


def test_run_defaults_are_the_documented_run() -> None:
    """20 users x 5 devices for 60 s at time scale 1200, the devices per user the Locust side takes too."""
    args = build_parser().parse_args(["run"])
    assert (args.users, args.devices_per_user, args.duration, args.time_scale) == \
        (DEFAULT_USERS, DEFAULT_DEVICES_PER_USER, DEFAULT_DURATION_SECONDS, DEFAULT_TIME_SCALE) == (20, 5, 60.0, 1200.0)
    assert LoadOptions().devices_per_user == args.devices_per_user


@pytest.mark.parametrize(("command", "shown"), [
    ("run", ["--devices-per-user DEVICES_PER_USER", "(default: 5)", "(default: 20)", "(default: 1200.0)",
             "(default: 60.0)", "0: one process) (default: 0)"]),
    ("report", ["(default: 50000)", "(default: 1000.0)"]),
    ("up", ["(default: state)", "(default: 300.0)"]),
    ("proxy-config", ["(default: validating)", "(default: state/site.json)"]),
])
def test_help_shows_the_defaults(command: str, shown: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """--help prints each option's default from where it is defined (switches and unset options say nothing)."""
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for item in shown:
        assert item in text
    assert "(default: False)" not in text and "(default: None)" not in text


def test_python_m_harness_cli_runs_main() -> None:
    """``python -m harness.cli`` (how ``cmg-harness run`` starts the site) is the same entry point."""
    result = subprocess.run([sys.executable, "-m", "harness.cli", "gate"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("cmg-harness: ") and result.stderr.count("\n") == 1
