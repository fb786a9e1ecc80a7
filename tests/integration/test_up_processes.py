"""`cmg-harness up --processes N`: worker processes sharing the listeners, the database, the fault state, the metrics
and the logs; stopping the parent stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from cmg_protocol import logformat, messages
from mock_site.db import SiteDatabase
from mock_site.faults.state_file import PROPAGATION_BOUND_S
from mock_site.manifest import SiteManifest
from mock_site.testing import SiteClient
from mock_site.workers import WORKER_HEADER
from tests.processes import alive, stop

HEADER = WORKER_HEADER.decode()


def _start(state_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "harness.cli", "up", "--state-dir", str(state_dir), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _manifest(state_dir: Path, process: subprocess.Popen[str]) -> SiteManifest:
    return _named(state_dir / "site.json", process)


def _gone(pids: tuple[int, ...], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(alive(pid) for pid in pids)


def _until_every_worker(manifest: SiteManifest, request: object, limit: int = 400) -> tuple[int, set[str]]:
    """Send requests on fresh connections until every worker answered one; the count sent and the workers seen."""
    wanted = {str(pid) for pid in manifest.worker_pids or ()}
    seen: set[str] = set()
    sent = 0
    while seen != wanted and sent < limit:
        with SiteClient(manifest) as client:  # a new connection: the kernel hands it to whichever worker accepts
            response = request(client)  # type: ignore[operator]
        sent += 1
        seen.add(response.headers[HEADER])
    return sent, seen


def test_two_workers_count_exactly_once_in_metrics_and_cmgservice_log(tmp_path: Path) -> None:
    """N requests spread over both workers: /metrics (served by the parent) and CMGService.log each say exactly N;
    SIGTERM stops the workers with the parent."""
    process = _start(tmp_path, "--processes", "2", "--time-scale", "60", "--cmgservice-log-period", "3600")
    try:
        manifest = _manifest(tmp_path, process)
        assert manifest.processes == 2 and len(manifest.worker_pids or ()) == 2
        assert all(alive(pid) for pid in manifest.worker_pids or ())
        sent, seen = _until_every_worker(manifest, lambda client: client.aad_auth_info())
        assert seen == {str(pid) for pid in manifest.worker_pids or ()}
        for _ in range(20):
            with SiteClient(manifest) as client:
                assert client.aad_auth_info().status_code == 200
        sent += 20
        time.sleep(0.5)  # a few snapshot periods
        scraped = httpx.get(manifest.metrics_url("cmg") or "").text
        counted = sum(sample.value for family in text_string_to_metric_families(scraped)
                      for sample in family.samples
                      if sample.name == "cmg_requests_total" and sample.labels["role"] == "cmg")
        assert counted == sent
    finally:
        code = stop(process)
    assert code == 0
    assert _gone(manifest.worker_pids or ())
    lines = [logformat.parse_cmgservice_text(logformat.parse_smstrace_line(line).text)
             for line in (manifest.log_dir / "CMGService.log").read_text().splitlines() if "RequestUri:" in line]
    assert sum(line.request_count for line in lines) == sent
    assert len({line.request_uri for line in lines}) == len(lines)  # one line per URI: the workers' rows summed


def test_a_fault_switched_through_the_api_reaches_every_worker_within_the_bound(tmp_path: Path) -> None:
    """After the control API answers a switch on (and off), every worker injects (and stops) within the bound."""
    process = _start(tmp_path, "--processes", "2", "--no-logs")
    try:
        manifest = _manifest(tmp_path, process)
        _, before = _until_every_worker(manifest, lambda client: client.aad_auth_info())
        headers = {"Authorization": f"Bearer {manifest.faults_token}"}
        answer = httpx.put(f"{manifest.faults_url}/http_error", headers=headers,
                           json={"duration": 60, "params": {"status": 503}})
        assert answer.status_code == 200, answer.text
        time.sleep(PROPAGATION_BOUND_S)
        failing: set[str] = set()
        injected = 0
        for _ in range(400):
            with SiteClient(manifest) as client:
                response = client.aad_auth_info()
            assert response.status_code == 503, f"worker {response.headers[HEADER]} did not inject in time"
            failing.add(response.headers[HEADER])
            injected += 1
            if failing == before:
                break
        assert failing == before
        time.sleep(0.5)  # a few snapshot periods: the workers' injection counts reach the control process
        listed = httpx.get(manifest.faults_url, headers=headers).json()
        assert listed["active"][0]["injections"] == injected == listed["injections"]["http_error"]
        assert httpx.delete(f"{manifest.faults_url}/http_error", headers=headers).status_code == 200
        time.sleep(PROPAGATION_BOUND_S)
        _, healthy = _until_every_worker(manifest, lambda client: _ok(client.aad_auth_info()))
        assert healthy == before
    finally:
        assert stop(process) == 0


def _ok(response: httpx.Response) -> httpx.Response:
    assert response.status_code == 200, f"worker {response.headers[HEADER]} still injects"
    return response


def test_sigkill_of_the_parent_loses_no_registration_and_leaves_no_worker(tmp_path: Path) -> None:
    """Registrations confirmed by any worker survive a SIGKILL of `up`; the workers die with it; a restart finds them."""
    process = _start(tmp_path, "--processes", "2", "--no-logs")
    confirmed: list[str] = []
    stopping = threading.Event()
    try:
        manifest = _manifest(tmp_path, process)

        def register_forever() -> None:
            while not stopping.is_set():
                try:
                    with SiteClient(manifest) as client:  # new connections: both workers register
                        reply = client.register(client.entra_token(device_id=str(uuid.uuid4())))
                except Exception:
                    return  # the site is gone
                if reply.status_code == 200:
                    confirmed.append(messages.RegistrationResponse.from_xml(reply.reply.body_xml).smsid)

        threads = [threading.Thread(target=register_forever) for _ in range(3)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(confirmed) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.kill()
        process.wait(timeout=10)
        stopping.set()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert len(confirmed) >= 30
    assert _gone(manifest.worker_pids or ())
    restarted = _start(tmp_path, "--processes", "2", "--no-logs")
    try:
        again = _manifest(tmp_path, restarted)
        db = SiteDatabase(again.db_path, clock=time.time)
        try:
            assert all(db.client(smsid) is not None for smsid in confirmed)
        finally:
            db.close()
        _, seen = _until_every_worker(again, lambda client: client.aad_auth_info())
        assert len(seen) == 2
        with SiteClient(again) as client:  # the parent's /validate: CCM tokens, and Entra ones by the workers' JWKS
            entra = client.entra_token(device_id=str(uuid.uuid4()))
            ccm = client.ccm_token(entra)
        for token, query in ((ccm, ""), (entra, "?token=entra")):
            answer = httpx.get(again.token_validation_url + query, headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 204, answer.text
    finally:
        assert stop(restarted, signal.SIGINT) == 0
    assert _gone(again.worker_pids or ())


def test_a_killed_worker_stops_the_site_with_exit_1_naming_it(tmp_path: Path) -> None:
    """SIGKILL of one worker: `up` names it, stops the other worker and exits 1."""
    process = _start(tmp_path, "--processes", "2", "--no-logs")
    try:
        manifest = _manifest(tmp_path, process)
        victim, other = manifest.worker_pids or ()
        os.kill(victim, signal.SIGKILL)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    output = process.stdout.read() if process.stdout else ""
    assert code == 1 and f"worker process {victim} exited" in output
    assert _gone((other,))


def test_workers_stopped_by_sigterm_stop_the_site_cleanly(tmp_path: Path) -> None:
    """SIGTERM reaching the workers before the parent (a stop of the whole process group): the parent stops too,
    exit 0, even before its own signal arrives."""
    process = subprocess.Popen([sys.executable, "-m", "harness.cli", "up", "--state-dir", str(tmp_path),
                                "--processes", "2", "--no-logs"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        manifest = _manifest(tmp_path, process)
        for pid in manifest.worker_pids or ():
            os.kill(pid, signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert _gone(manifest.worker_pids or ())


def test_split_roles_each_with_their_own_workers(tmp_path: Path) -> None:
    """`--role` processes with `--processes 2` each (the backend and the CMG) and one without serve a whole exchange;
    each keeps its worker files apart and its manifest names its own workers."""
    processes = []
    try:
        backend = _start(tmp_path, "--role", "crl", "--role", "entra", "--role", "mp", "--processes", "2", "--no-logs")
        processes.append(backend)
        back = _named(tmp_path / "site-crl-entra-mp.json", backend)
        cp = _start(tmp_path, "--role", "cp", "--processes", "1", "--no-logs", "--join",
                    str(tmp_path / "site-crl-entra-mp.json"))
        processes.append(cp)
        middle = _named(tmp_path / "site-cp.json", cp)
        cmg = _start(tmp_path, "--role", "cmg", "--processes", "2", "--no-logs", "--join",
                     str(tmp_path / "site-crl-entra-mp.json"), "--join", str(tmp_path / "site-cp.json"))
        processes.append(cmg)
        front = _named(tmp_path / "site-cmg.json", cmg)
        assert len(back.worker_pids or ()) == 2 and middle.worker_pids is None and len(front.worker_pids or ()) == 2
        assert (tmp_path / "workers-crl-entra-mp").is_dir() and (tmp_path / "workers-cmg").is_dir()
        for _ in range(4):
            with SiteClient(front) as client:
                device = client.register_device()
                assert client.policy(device.ccm_token, device.smsid).status_code == 200
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                assert stop(process) == 0


def _named(path: Path, process: subprocess.Popen[str]) -> SiteManifest:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.exists():
            manifest = SiteManifest.read(path)
            if manifest.pid == process.pid:
                return manifest
        if process.poll() is not None:
            raise AssertionError(f"cmg-harness up exited early: {process.stdout.read() if process.stdout else ''}")
        time.sleep(0.1)
    raise AssertionError(f"no {path.name} within 60 s")


def test_every_worker_forwards_down_its_own_connection_point_channel(tmp_path: Path) -> None:
    """With the default hop (the connection points dial out), each worker's CMG has its own channel: a CCM token
    request, which the CMG must forward to CCM_STS on the MP, is answered 200 by every worker, never 503 for a
    missing connection point; the manifest names no channel port, since each worker dials ports of its own."""
    process = _start(tmp_path, "--processes", "2", "--time-scale", "60")
    try:
        manifest = _manifest(tmp_path, process)
        assert manifest.cp_hop == "channel" and manifest.channel_ports is None

        def token_request(client: SiteClient) -> httpx.Response:
            entra = client.entra_token(device_id=str(uuid.uuid4()))
            response = client.http.post(client.server_auth("CCM_STS"), headers={"Authorization": "Bearer " + entra})
            assert response.status_code == 200, (response.status_code, response.reason_phrase)
            return response

        _, seen = _until_every_worker(manifest, token_request, limit=200)
        assert seen == {str(pid) for pid in manifest.worker_pids or ()}
    finally:
        assert stop(process) == 0
