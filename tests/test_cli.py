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


# ---- cmg-harness faults: tables for people, --json for scripts ---------------------------------------------------------

def test_faults_catalogue_is_a_table_without_a_site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With no site up, the catalogue is this checkout's: one row per fault with its target, what it does and the
    expected outcome, then the device faults; not the JSON."""
    from mock_site.faults import CATALOGUE, DEVICE_FAULTS

    assert main(["faults", "--site", str(tmp_path / "none.json"), "catalogue"]) == 0
    out = capsys.readouterr().out
    assert not out.lstrip().startswith("{")
    assert "Server-side faults (this checkout's catalogue; no site manifest at" in out
    header = next(line for line in out.splitlines() if "what it does" in line)
    assert all(word in header for word in ("fault", "target", "what it does", "expected outcome"))
    for name in [*CATALOGUE, *(fault.name for fault in DEVICE_FAULTS)]:
        assert f" {name} " in out, name
    crl_slow = out[out.index(" crl_slow "):out.index(" cmg_cert_revoked ")]
    # The "what it does" cell of the row, its wrapped lines joined (the wrapping follows the columns' widths).
    does = " ".join(line.split("│")[3].strip() for line in crl_slow.splitlines() if line.count("│") >= 4)
    assert "params: latency_ms=2000" in does and "answers after a delay" in does
    assert max(len(line) for line in out.splitlines()) <= 120


@pytest.mark.parametrize("where", ["before", "after"])
def test_faults_json_is_the_machine_output(tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str) -> None:
    """``--json`` (before or after the action) prints the catalogue JSON the control API serves."""
    import json

    from mock_site.faults import catalogue_dict

    site = ["--site", str(tmp_path / "none.json")]
    argv = ["faults", *site, "--json", "catalogue"] if where == "before" else ["faults", *site, "catalogue", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out) == catalogue_dict()


def test_faults_on_a_running_site_print_tables_and_json(site: object, capsys: pytest.CaptureFixture[str]) -> None:
    """set, list, clear and reset against a real site: a table of the active faults with time left, injections
    named, a line when none is active; ``--json`` keeps the API's data."""
    import json

    from mock_site.testing import RunningSite

    assert isinstance(site, RunningSite)
    manifest = ["faults", "--site", str(site.manifest_path)]
    site.reset_faults()
    try:
        assert main([*manifest, "list"]) == 0
        assert "No fault is active." in capsys.readouterr().out
        assert main([*manifest, "set", "latency", "--duration", "120", "--param", "mean_ms=5"]) == 0
        out = capsys.readouterr().out
        assert "Switched on" in out and "latency" in out and "mean_ms=5" in out and "cmg" in out
        assert main([*manifest, "list"]) == 0
        out = capsys.readouterr().out
        row = next(line for line in out.splitlines() if " latency " in line)
        assert "cmg" in row and " s " in row and "mean_ms=5" in row
        assert "probability" in out and "time left" in out and "injections" in out
        assert main([*manifest, "list", "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert [fault["name"] for fault in data["active"]] == ["latency"] and "catalogue" in data
        assert main([*manifest, "catalogue"]) == 0
        out = capsys.readouterr().out
        assert f"the site's catalogue, {site.manifest.faults_url}" in out
        assert out.index("Device faults") < out.index("Active faults") and "mean_ms=5" in out.split("Active faults")[1]
        assert main([*manifest, "catalogue", "--json"]) == 0
        assert set(json.loads(capsys.readouterr().out)) == {"faults", "device_faults"}
        assert main([*manifest, "clear", "latency"]) == 0
        assert "clear: switched off" in capsys.readouterr().out
        assert main([*manifest, "reset"]) == 0
        assert "reset: no fault was active." in capsys.readouterr().out
    finally:
        site.reset_faults()
