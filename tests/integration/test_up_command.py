"""`cmg-harness up` as users run it: a real process, its manifest, clean shutdown, and no lost registrations."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from cmg_protocol import messages
from harness.cli import main
from mock_site.db import SiteDatabase
from mock_site.manifest import SiteManifest
from mock_site.testing import SiteClient
from tests.processes import stop

MANIFEST_KEYS = ("cmg_url", "server_auth_prefix", "mutual_auth_prefix", "ca_file", "crl_url", "entra_url",
                 "tenant_id", "site_code", "faults_url", "faults_token", "metrics_urls", "log_dir", "db_path")


def _start(state_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "harness.cli", "up", "--state-dir", str(state_dir), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_manifest(state_dir: Path, process: subprocess.Popen[str], since: float) -> SiteManifest:
    return _wait_for_named(state_dir / "site.json", process, since)


def test_up_writes_a_manifest_an_outside_script_can_use(tmp_path: Path) -> None:
    """site.json names every documented key and the site answers at the URLs it gives; SIGTERM stops it cleanly."""
    started = time.time() - 1
    process = _start(tmp_path, "--time-scale", "60")
    try:
        manifest = _wait_for_manifest(tmp_path, process, started)
        written = json.loads((tmp_path / "site.json").read_text())
        assert all(key in written for key in MANIFEST_KEYS) and written["schema_version"] == 1
        with SiteClient(manifest) as client:
            assert client.aad_auth_info().status_code == 200
            assert client.ccm_token()
    finally:
        code = stop(process)
    assert code == 0
    assert (manifest.log_dir / "CMGService.log").read_text().count("RequestUri:") >= 1


def test_the_hidden_unsafe_flag_runs_a_token_blind_cmg(tmp_path: Path) -> None:
    """``up --unsafe-skip-token-checks`` forwards a request with a garbage token, so the MP is the one refusing it."""
    started = time.time() - 1
    process = _start(tmp_path, "--time-scale", "60", "--no-logs", "--unsafe-skip-token-checks")
    try:
        manifest = _wait_for_manifest(tmp_path, process, started)
        with SiteClient(manifest) as client:
            response = client.policy("not-a-jwt", "GUID:00000000-0000-0000-0000-000000000001")
    finally:
        stop(process)
    assert (response.status_code, response.reason_phrase) == (401, "MP_Invalid_Token")


def test_sigkill_mid_registration_loses_no_completed_registration(tmp_path: Path) -> None:
    """Registrations the site confirmed before a SIGKILL are all in the database after a restart on the same dir."""
    started = time.time() - 1
    process = _start(tmp_path, "--no-logs")
    confirmed: list[str] = []
    stopping = threading.Event()
    try:
        manifest = _wait_for_manifest(tmp_path, process, started)

        def register_forever() -> None:
            with SiteClient(manifest) as client:
                while not stopping.is_set():
                    try:
                        reply = client.register(client.entra_token(device_id=str(uuid.uuid4())))
                    except Exception:
                        return  # the site is gone
                    if reply.status_code == 200:
                        confirmed.append(messages.RegistrationResponse.from_xml(reply.reply.body_xml).smsid)

        worker = threading.Thread(target=register_forever)
        worker.start()
        deadline = time.monotonic() + 20
        while len(confirmed) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.kill()  # SIGKILL while registrations are in flight
        process.wait(timeout=10)
        stopping.set()
        worker.join(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert len(confirmed) >= 20

    restarted = _start(tmp_path, "--no-logs")
    try:
        manifest = _wait_for_manifest(tmp_path, restarted, time.time() - 1)
        db = SiteDatabase(manifest.db_path, clock=time.time)
        try:
            assert all(db.client(smsid) is not None for smsid in confirmed)
        finally:
            db.close()
        with SiteClient(manifest) as client:  # the same PKI: the old root CA still validates the restarted site
            assert client.aad_auth_info().status_code == 200
    finally:
        assert stop(restarted) == 0


def test_a_second_up_on_a_state_dir_in_use_is_refused_naming_the_pid(tmp_path: Path) -> None:
    """Two `up` processes on one state dir: the second exits 2 with one line naming the first's PID and leaves the
    first's manifest and fault token as they were; once the first has stopped, the directory can be used again."""
    started = time.time() - 1
    first = _start(tmp_path, "--no-logs")
    try:
        manifest = _wait_for_manifest(tmp_path, first, started)
        written, token = (tmp_path / "site.json").read_text(), (tmp_path / "faults.token").read_text()
        second = subprocess.run([sys.executable, "-m", "harness.cli", "up", "--state-dir", str(tmp_path), "--no-logs"],
                                capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 2, second.stdout + second.stderr
        err = second.stderr.strip()
        assert len(err.splitlines()) == 1 and f"PID {first.pid}" in err and str(tmp_path) in err
        assert (tmp_path / "site.json").read_text() == written
        assert (tmp_path / "faults.token").read_text() == token
        with SiteClient(manifest) as client:  # the first site serves on, undisturbed
            assert client.aad_auth_info().status_code == 200
    finally:
        assert stop(first) == 0
    again = _start(tmp_path, "--no-logs")
    try:
        assert _wait_for_manifest(tmp_path, again, time.time() - 1).pid == again.pid
    finally:
        assert stop(again) == 0


@pytest.mark.parametrize("argv, message", [
    (["up", "--time-scale", "0"], "time scale must be > 0"),
    (["up", "--time-scale", "fast"], "time scale must be a number"),
    (["up", "--cmg-instances", "17"], "cmg instances must be 1..16"),
    (["up", "--processes", "0"], "processes must be 'auto' or a whole number 1..64, got '0'"),
    (["up", "--processes", "many"], "processes must be 'auto' or a whole number 1..64, got 'many'"),
    (["bogus"], "invalid choice"),
])
def test_bad_flags_get_a_one_line_error(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad flags exit 2 with one line naming the problem."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1


def test_unusable_state_dir_gets_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A state dir that is a file is refused with its name."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    assert main(["up", "--state-dir", str(not_a_dir)]) == 2
    err = capsys.readouterr().err
    assert str(not_a_dir) in err and "not a directory" in err


def test_unwritable_state_dir_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """A state dir that cannot be created or written (here under /proc, which even root cannot write) is refused."""
    assert main(["up", "--state-dir", "/proc/cmg-harness-state"]) == 2
    err = capsys.readouterr().err
    assert "/proc/cmg-harness-state" in err and "not usable" in err


def test_roles_run_in_separate_processes_linked_by_url(tmp_path: Path) -> None:
    """CRL+Entra+MP, the connection point and the CMG each in their own process still serve a whole exchange."""
    processes = []
    try:
        started = time.time() - 1
        backend = _start(tmp_path, "--role", "crl", "--role", "entra", "--role", "mp")
        processes.append(backend)
        back = _wait_for_named(tmp_path / "site-crl-entra-mp.json", backend, started)
        cp = _start(tmp_path, "--role", "cp", "--link", f"mp={back.mp_url}", "--link", f"crl={back.crl_url}",
                    "--link", f"entra={back.entra_url}")
        processes.append(cp)
        middle = _wait_for_named(tmp_path / "site-cp.json", cp, started)
        cmg = _start(tmp_path, "--role", "cmg", "--link", f"cp={middle.cp_urls[0]}",
                     "--link", f"crl={back.crl_url}", "--link", f"entra={back.entra_url}",
                     "--link", f"mp={back.mp_url}")
        processes.append(cmg)
        front = _wait_for_named(tmp_path / "site-cmg.json", cmg, started)
        with SiteClient(front) as client:
            device = client.register_device()
            assert client.policy(device.ccm_token, device.smsid).status_code == 200
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                stop(process)


def test_a_role_without_its_link_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A CMG alone without the connection point's URL is a one-line error naming the missing link."""
    assert main(["up", "--state-dir", str(tmp_path), "--role", "cmg"]) == 2
    assert "--link crl=URL" in capsys.readouterr().err


def _wait_for_named(path: Path, process: subprocess.Popen[str], since: float) -> SiteManifest:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_mtime >= since:
            manifest = SiteManifest.read(path)  # written atomically: never seen half-written
            if manifest.pid == process.pid:
                return manifest
        if process.poll() is not None:
            raise AssertionError(f"cmg-harness up exited early: {process.stdout.read() if process.stdout else ''}")
        time.sleep(0.1)
    raise AssertionError(f"no {path.name} within 60 s")
