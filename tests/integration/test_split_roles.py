"""Split roles joined by manifest: three `cmg-harness up` processes (one of them in its own network namespace) serve a
device's whole life, and a link that does not serve what its role must is refused at start."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from harness.cli import main
from harness.client.transport import run_client
from mock_site.manifest import SiteManifest

ROOT = Path(__file__).resolve().parents[2]


class Processes:
    """`cmg-harness up` processes started by one test; each is stopped by its own PID at the end."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.started: list[subprocess.Popen[str]] = []

    def up(self, *args: str, prefix: Sequence[str] = ()) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        process = subprocess.Popen([*prefix, sys.executable, "-m", "harness.cli", "up", "--state-dir",
                                    str(self.state_dir), "--no-logs", *args],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.started.append(process)
        return process

    def manifest(self, name: str, process: subprocess.Popen[str]) -> Path:
        """The manifest ``process`` wrote (``site-<roles>.json``), once it is there."""
        path = self.state_dir / name
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if path.exists() and SiteManifest.read(path).pid == process.pid:
                return path
            if process.poll() is not None:
                raise AssertionError(f"cmg-harness up exited early: {process.stdout.read() if process.stdout else ''}")
            time.sleep(0.1)
        raise AssertionError(f"no {name} within 60 s")

    def stop(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    running = Processes(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def _life_succeeds(cmg_manifest: Path) -> None:
    manifest = SiteManifest.read(cmg_manifest)
    outcome = run_client(manifest, "", seed=int(uuid.uuid4().int % 1000), polls=1)
    assert outcome.success, (outcome.reason, outcome.detail)


@pytest.mark.slow
def test_three_role_processes_joined_by_manifest_serve_a_whole_life(processes: Processes,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """CRL + Entra, MP + connection point and the CMG, each joining the manifests of the ones before it."""
    back = processes.up("--role", "crl", "--role", "entra", "--time-scale", "60")
    back_file = processes.manifest("site-crl-entra.json", back)
    middle = processes.up("--role", "mp", "--role", "cp", "--join", str(back_file))
    middle_file = processes.manifest("site-mp-cp.json", middle)
    front = processes.up("--role", "cmg", "--join", str(back_file), "--join", str(middle_file))
    front_file = processes.manifest("site-cmg.json", front)

    joined = SiteManifest.read(front_file)
    crl = SiteManifest.read(back_file)
    assert joined.crl_url == crl.crl_url and joined.crl_url.endswith("/pki/site.crl")
    assert joined.link("cp") == ",".join(SiteManifest.read(middle_file).cp_urls)
    # The CLI's one device: its CRL check follows the CMG certificate's distribution point to the CRL process.
    assert main(["client", "--site", str(front_file), "--json"]) == 0, capsys.readouterr().out
    assert '"success": true' in capsys.readouterr().out


def test_role_sets_lock_the_shared_state_dir_each_for_itself(processes: Processes,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A second process for a role set already running on the state dir is refused naming the PID that runs it; another
    role set joins on the same directory."""
    back = processes.up("--role", "crl", "--role", "entra")
    back_file = processes.manifest("site-crl-entra.json", back)
    code = main(["up", "--state-dir", str(processes.state_dir), "--no-logs", "--role", "entra", "--role", "crl"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"PID {back.pid}" in err and ".lock-crl-entra" in err
    middle = processes.up("--role", "mp", "--role", "cp", "--join", str(back_file))
    assert SiteManifest.read(processes.manifest("site-mp-cp.json", middle)).pid == middle.pid
    assert SiteManifest.read(back_file).pid == back.pid


def test_a_crl_link_to_the_base_url_is_refused_naming_it(processes: Processes,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The CRL distribution point's base URL (what it prints) is not the CRL: refused at start, not at every device."""
    back = processes.up("--role", "crl", "--role", "entra")
    crl = SiteManifest.read(processes.manifest("site-crl-entra.json", back))
    base = crl.crl_url.removesuffix("/pki/site.crl")
    code = main(["up", "--state-dir", str(processes.state_dir), "--role", "mp", "--role", "cp",
                 "--link", f"crl={base}", "--link", f"entra={crl.entra_url}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"--link crl={base}: answered 404" in err and "not a CRL" in err


def test_an_entra_link_to_the_crl_is_refused_naming_what_it_served(processes: Processes,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A link to the wrong role says what answered there."""
    back = processes.up("--role", "crl", "--role", "entra")
    crl = SiteManifest.read(processes.manifest("site-crl-entra.json", back))
    wrong = crl.crl_url.removesuffix("/pki/site.crl").replace("http://", "https://")
    code = main(["up", "--state-dir", str(processes.state_dir), "--role", "mp", "--role", "cp",
                 "--link", f"crl={crl.crl_url}", "--link", f"entra={wrong}"])
    err = capsys.readouterr().err
    assert code == 2 and f"--link entra={wrong}" in err


# --- one role in its own network namespace ----------------------------------------------------------------------------


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def _namespace() -> Iterator[tuple[str, str]]:
    """A network namespace joined to this one by a veth pair: (namespace name, its address). Deleted afterwards."""
    tag = uuid.uuid4().hex[:6]
    name, outside, inside = f"cmgh-{tag}", f"cmgh{tag}a", f"cmgh{tag}b"
    subnet = 10 + int(tag, 16) % 200
    here, there = f"10.200.{subnet}.1", f"10.200.{subnet}.2"
    _ip("netns", "add", name)
    try:
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", name)
        _ip("addr", "add", f"{here}/24", "dev", outside)
        _ip("link", "set", outside, "up")
        _ip("netns", "exec", name, "ip", "addr", "add", f"{there}/24", "dev", inside)
        _ip("netns", "exec", name, "ip", "link", "set", inside, "up")
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name, there
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", outside)  # usually gone with the namespace; never left behind
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("netns", "del", name)


def _namespaces_usable() -> str | None:
    if shutil.which("ip") is None:
        return "needs the ip command (iproute2)"
    if os.geteuid() != 0:
        return "needs root to create a network namespace"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_namespaces_usable() is not None, reason=str(_namespaces_usable()))
def test_a_role_in_another_network_namespace_joins_by_manifest(tmp_path: Path, processes: Processes) -> None:
    """CRL + Entra listen on a veth address inside their own namespace; MP + CP and the CMG here join its manifest,
    and a device's life (Entra token and CRL fetched across the namespaces) succeeds."""
    with _namespace() as (name, address):
        try:
            back = processes.up("--role", "crl", "--role", "entra", "--host", address,
                                prefix=("ip", "netns", "exec", name))
            back_file = processes.manifest("site-crl-entra.json", back)
            crl = SiteManifest.read(back_file)
            assert address in crl.crl_url and address in crl.entra_url
            middle = processes.up("--role", "mp", "--role", "cp", "--join", str(back_file))
            middle_file = processes.manifest("site-mp-cp.json", middle)
            front = processes.up("--role", "cmg", "--join", str(back_file), "--join", str(middle_file))
            _life_succeeds(processes.manifest("site-cmg.json", front))
        finally:
            processes.stop()  # before the namespace (and the address the CRL process listens on) goes
