"""``./dev``: its usage text, the caller's directory kept for paths, and setup steps that say what they do.

Every test runs a copy of the script in a fake checkout whose ``.venv`` holds stand-in programs that record how they
were called, with a PATH of our own: no test creates or reinstalls a real environment or installs a package.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT / "dev"
#: The programs the script itself needs from PATH (everything else it calls is in the fake .venv or faked here).
TOOLS = ("bash", "env", "sed", "dirname", "touch", "cat")

#: A stand-in program: appends "<name> <cwd> <args...>" to $DEV_CALLS, one line per call.
RECORDER = """#!/bin/sh
echo "$(basename "$0") $PWD $*" >> "$DEV_CALLS"
"""
#: A stand-in ``python3`` that answers ``-m venv DIR`` by making DIR/bin with recording python, pip and cmg-harness.
FAKE_PYTHON = """#!/bin/sh
echo "python3 $PWD $*" >> "$DEV_CALLS"
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
    mkdir -p "$3/bin"
    for program in python pip cmg-harness; do cp "$RECORDER_FILE" "$3/bin/$program"; chmod +x "$3/bin/$program"; done
fi
"""


def _write_program(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of ``dev`` next to a pyproject.toml, with no .venv yet."""
    repo = tmp_path / "checkout"
    repo.mkdir()
    shutil.copy2(DEV, repo / "dev")
    (repo / "pyproject.toml").write_text("[project]\nname = 'fake'\n")
    return repo


def _installed(repo: Path) -> None:
    """Give the checkout a ready .venv (stand-ins, and a stamp newer than pyproject.toml)."""
    for program in ("python", "pip", "cmg-harness"):
        _write_program(repo / ".venv" / "bin" / program, RECORDER)
    stamp = repo / ".venv" / ".installed"
    stamp.touch()
    later = (repo / "pyproject.toml").stat().st_mtime + 10
    os.utime(stamp, (later, later))


def _run(repo: Path, args: list[str], cwd: Path, tmp_path: Path, *, uid: int = 1000, apt: bool = False,
         test_programs: bool = False) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the checkout's ``dev`` from ``cwd`` with a PATH of our own; its output and the stand-ins' calls."""
    bin_dir = tmp_path / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        for tool in TOOLS:
            found = shutil.which(tool)
            assert found, f"{tool} is needed to run ./dev"
            (bin_dir / tool).symlink_to(found)
        _write_program(bin_dir / "basename", "#!/bin/sh\necho \"${1##*/}\"\n")
        _write_program(bin_dir / "mkdir", f"#!/bin/sh\nexec {shutil.which('mkdir')} \"$@\"\n")
        _write_program(bin_dir / "cp", f"#!/bin/sh\nexec {shutil.which('cp')} \"$@\"\n")
        _write_program(bin_dir / "chmod", f"#!/bin/sh\nexec {shutil.which('chmod')} \"$@\"\n")
        _write_program(bin_dir / "python3", FAKE_PYTHON)
    _write_program(bin_dir / "id", f"#!/bin/sh\necho {uid}\n")
    if apt:
        _write_program(bin_dir / "apt-get", RECORDER)
    if test_programs:  # the programs the test suite drives are "installed": ./dev wants no Debian package
        for program in ("prometheus", "promtool", "nginx", "haproxy", "chromium"):
            _write_program(bin_dir / program, "#!/bin/sh\n")
    calls = tmp_path / "calls.log"
    calls.write_text("")
    recorder = _write_program(tmp_path / "recorder.sh", RECORDER)
    environment = {"PATH": str(bin_dir), "HOME": str(tmp_path / "home"), "DEV_CALLS": str(calls),
                   "RECORDER_FILE": str(recorder)}
    done = subprocess.run([str(repo / "dev"), *args], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=60, check=False)
    return done, calls.read_text().splitlines()


def test_help_prints_the_usage_and_no_line_of_the_script(tmp_path: Path, checkout: Path) -> None:
    done, calls = _run(checkout, ["help"], tmp_path, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("One entry point")
    assert any(line.strip().startswith("./dev run") for line in lines)
    assert not any(line.startswith(("#", "set ", "here=", "venv=")) for line in lines), lines
    assert done.stderr == "" and calls == []  # help sets nothing up


def test_help_is_the_default_and_matches_the_real_script(tmp_path: Path) -> None:
    """The real ``./dev`` with no arguments prints the same usage, ending at the comment block."""
    done = subprocess.run([str(DEV)], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0 and "set -euo pipefail" not in done.stdout
    assert done.stdout.splitlines()[-1].startswith("Paths you give are relative to the directory")


def test_a_command_runs_in_the_callers_directory(tmp_path: Path, checkout: Path) -> None:
    """``./dev run --out x`` from elsewhere runs cmg-harness there, so ``x`` is the caller's ``x``."""
    _installed(checkout)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done, calls = _run(checkout, ["run", "--out", "x"], elsewhere, tmp_path)
    assert done.returncode == 0, done.stderr
    assert calls == [f"cmg-harness {elsewhere} run --out x"]
    assert done.stderr == ""  # a ready environment is not set up again


def test_test_paths_from_the_callers_directory_are_made_absolute(tmp_path: Path, checkout: Path) -> None:
    """pytest runs from the checkout, so a relative test path given from elsewhere is passed as an absolute one."""
    _installed(checkout)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "tests").mkdir(parents=True)
    (elsewhere / "tests" / "test_x.py").write_text("")
    done, calls = _run(checkout, ["test", "-q", "tests/test_x.py::test_y", "-k", "missing_name"], elsewhere, tmp_path,
                       test_programs=True)
    assert done.returncode == 0, done.stderr
    assert calls == [f"python {checkout} -m pytest -q {elsewhere}/tests/test_x.py::test_y -k missing_name"]


def test_first_setup_says_what_each_step_does(tmp_path: Path, checkout: Path) -> None:
    """Creating .venv and installing the Python packages are each announced on stderr before they run."""
    done, calls = _run(checkout, ["faults", "catalogue"], tmp_path, tmp_path)
    assert done.returncode == 0, done.stderr
    said = done.stderr.splitlines()
    assert any("creating the Python environment" in line and ".venv" in line for line in said), said
    assert any("installing Python packages into .venv" in line for line in said), said
    assert all(line.startswith("dev: ") for line in said)
    venv = checkout / ".venv"
    assert calls[0] == f"python3 {tmp_path} -m venv {venv}"
    assert f"pip {tmp_path} install --quiet -e {checkout}[test]" in calls
    assert calls[-1] == f"cmg-harness {tmp_path} faults catalogue"
    assert done.stdout == ""  # the steps speak on stderr; stdout is the command's
    # The second time nothing is set up and nothing is said.
    done, calls = _run(checkout, ["faults", "catalogue"], tmp_path, tmp_path)
    assert done.stderr == "" and calls == [f"cmg-harness {tmp_path} faults catalogue"]


def test_debian_packages_are_announced_and_installed_as_root(tmp_path: Path, checkout: Path) -> None:
    """As root with apt-get, the missing test programs are installed, saying which; never the real apt-get here."""
    _installed(checkout)
    missing = [name for name in ("prometheus", "nginx", "haproxy", "chromium") if not Path(f"/usr/sbin/{name}").exists()]
    if not missing:
        pytest.skip("every test program is in /usr/sbin here, so ./dev wants no package")
    done, calls = _run(checkout, ["test"], tmp_path, tmp_path, uid=0, apt=True)
    assert done.returncode == 0, done.stderr
    said = done.stderr.splitlines()
    announced = next(line for line in said if "installing Debian packages" in line)
    assert all(name in announced for name in missing)
    assert any("apt-get update" in line for line in said)
    assert [call.split()[2] for call in calls if call.startswith("apt-get")] == ["update", "install"]


def test_without_root_the_debian_step_says_the_tests_will_skip(tmp_path: Path, checkout: Path) -> None:
    _installed(checkout)
    if all(Path(f"/usr/sbin/{name}").exists() for name in ("prometheus", "nginx", "haproxy", "chromium")):
        pytest.skip("every test program is in /usr/sbin here")
    done, calls = _run(checkout, ["test"], tmp_path, tmp_path, uid=1000, apt=True)
    assert done.returncode == 0
    assert "not root or no apt-get" in done.stderr and "will be skipped" in done.stderr
    assert not any(call.startswith("apt-get") for call in calls)
