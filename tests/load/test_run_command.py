"""``cmg-harness run`` end to end: the mock site and a headless Locust run as subprocesses, results on disk."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.defaults import LOCUSTFILES_DIR
from harness.results.layout import ResultsDir
from mock_site.db import SiteDatabase
from mock_site.manifest import MANIFEST_NAME, SiteManifest
from mock_site.testing import RunningSite, example_manifest
from tests.processes import alive

DEVICES = 12  # 4 users x 3 devices
# 8 s CCM token (renewed after 7.2 s) and a 1 s policy cycle: a 12 s run sees polls and renewals.
RUN = ["--users", "4", "--devices-per-user", "3", "--spawn-rate", "4", "--duration", "12s", "--time-scale", "3600"]


def cmg_harness(*args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def lifecycle_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One short default-locustfile run shared by the tests of this module (a status line every 3 s: its output is a
    pipe, not a terminal, as in CI)."""
    out = tmp_path_factory.mktemp("run") / "results"
    return cmg_harness("run", *RUN, "--out", str(out), "--progress-interval", "3s"), out


@pytest.mark.slow
def test_a_fault_free_run_passes_with_exit_code_0(lifecycle_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """With the default fleet no lifecycle fails, so the run exits 0 and says PASS, followed only by its files."""
    result, out = lifecycle_run
    assert result.returncode == 0, result.stdout + result.stderr
    verdict, files = result.stdout.strip().splitlines()[-2:]
    assert verdict == "PASS"
    assert files.startswith(f"results in {out}: run.json, ") and "summary.json" in files


#: A plain status line: elapsed/total, devices active, requests/s, corrected p99, errors, unexpected verdicts, faults.
STATUS = re.compile(r"^progress  (\d+)s/12s  devices (\d+)  [\d.]+ req/s  p99 corrected (-|\d+ ms)  errors \d+  "
                    r"unexpected \d+  faults none$")


@pytest.mark.slow
def test_a_run_off_a_terminal_prints_a_status_line_every_interval(
        lifecycle_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """In CI (stdout a pipe) the run is not silent: plain status lines come every --progress-interval while Locust
    runs, before the end-of-run screen, with every field filled from the Locust master's progress.json."""
    result, out = lifecycle_run
    lines = result.stdout.splitlines()
    status = [line for line in lines if line.startswith("progress  ")]
    assert len(status) >= 2, result.stdout
    matches = [STATUS.match(line) for line in status]
    assert all(matches), status
    elapsed = [int(match.group(1)) for match in matches if match]
    assert elapsed == sorted(elapsed) and elapsed[-1] - elapsed[0] >= 3
    assert any(match.group(2) != "0" and match.group(3) != "-" for match in matches if match)  # devices, p99 seen
    assert lines.index(status[-1]) < next(n for n, line in enumerate(lines) if line.startswith("devices "))
    assert (out / "progress.json").is_file()


@pytest.mark.slow
def test_every_device_installs_and_registers_once_in_the_site_database(
        lifecycle_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """Registrations in the site database equal the devices that reported a registration: all of them."""
    _, out = lifecycle_run
    summary = json.loads((out / "summary.json").read_text())
    with SiteDatabase(out / "site" / "site.db", clock=time.time) as db:
        registered_in_db = db.count_clients()
    assert summary["devices"]["installed"] == DEVICES
    assert summary["devices"]["registered"] == registered_in_db == DEVICES


@pytest.mark.slow
def test_ccm_tokens_are_renewed_and_policy_polled_within_the_run(
        lifecycle_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """Under the time scale the 8-hour CCM token is renewed and policy is polled during a 12 s run."""
    _, out = lifecycle_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["devices"]["renewed"] >= 1
    assert summary["events"]["polled"] > DEVICES
    assert {row["stage"] for row in summary["stages"]} == {"install+register", "token renewal", "policy cycle"}


@pytest.mark.slow
def test_the_run_records_its_plan_as_run_json(lifecycle_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """run.json reads back as the plan the summary reports (what the run was asked to do)."""
    _, out = lifecycle_run
    plan = ResultsDir(out).read_plan()
    assert plan is not None and plan.out == out
    assert plan.to_dict() == json.loads((out / "summary.json").read_text())["plan"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["run.json", "report.html", "locust.html", "locust_stats.csv",
                                  "locust_stats_history.csv", "locust.json", "outcomes.json", "summary.json",
                                  "site/site.json", "site/logs/CCM_STS.log"])
def test_the_run_leaves_its_results_in_the_out_dir(lifecycle_run: tuple[subprocess.CompletedProcess[str], Path],
                                                   name: str) -> None:
    """Locust's CSV, HTML and JSON, our outcomes and summary, the manifest and the site's logs are all kept."""
    _, out = lifecycle_run
    assert (out / name).is_file()


@pytest.mark.slow
def test_the_summary_lists_cmgservice_rows_per_request_uri(
        lifecycle_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """The CMGService-style table has the CCM messaging endpoint with as many answers as requests."""
    result, out = lifecycle_run
    rows = {row["request_uri"]: row for row in json.loads((out / "summary.json").read_text())["requests"]}
    messaging = rows["/CCM_Proxy_ServerAuth/72186325152220500/ccm_system_tokenauth/request"]
    assert messaging["request_count"] == messaging["response_count"] > 0
    assert messaging["request_size"] > 0 and messaging["response_size"] > 0
    assert "RequestUri" in result.stdout and "AverageElapsedTime" in result.stdout


@pytest.mark.slow
def test_the_site_process_is_stopped_after_the_run(lifecycle_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """The embedded site does not outlive the run."""
    _, out = lifecycle_run
    pid = SiteManifest.read(out / "site" / MANIFEST_NAME).pid
    assert not alive(pid)


@pytest.mark.slow
def test_a_steady_state_run_polls_the_seeded_fleet_without_new_registrations(tmp_path: Path) -> None:
    """steady_state.py plays the clients the site was seeded with: they poll, and the database gains no client."""
    out = tmp_path / "results"
    result = cmg_harness("run", "--users", "2", "--devices-per-user", "2", "--duration", "6", "--time-scale", "3600",
                         "--locustfile", str(LOCUSTFILES_DIR / "steady_state.py"), "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    site = summary["site"]
    assert (site["seeded_clients"], site["registrations"], site["new_registrations"]) == (4, 4, 0)
    assert summary["devices"]["polled"] == 4


@pytest.mark.slow
def test_the_site_is_stopped_even_when_locust_fails(tmp_path: Path) -> None:
    """A locustfile that cannot load fails the run, and the site it started is stopped all the same."""
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('this locustfile is broken')\n")
    out = tmp_path / "results"
    result = cmg_harness("run", "--duration", "5", "--locustfile", str(broken), "--out", str(out))
    assert result.returncode == 1
    assert "FAIL" in result.stdout
    assert not alive(SiteManifest.read(out / "site" / MANIFEST_NAME).pid)


@pytest.mark.slow
def test_a_run_against_a_site_that_is_up_goes_through_the_given_target(site: RunningSite, tmp_path: Path) -> None:
    """--site uses the running site (left running), --target and --ca-file reach the clients, and only new
    registrations count."""
    out = tmp_path / "results"
    cmg_url = site.manifest.cmg_url.replace("127.0.0.1", "localhost")
    result = cmg_harness("run", "--site", str(site.manifest_path), "--target", cmg_url,
                         "--ca-file", site.manifest.ca_file, "--users", "2", "--devices-per-user", "1",
                         "--duration", "5s", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["site"]["external"] and summary["site"]["cmg_url"] == cmg_url
    assert summary["requests"]  # counted only for requests sent to the CMG the clients were given: the target
    assert summary["site"]["new_registrations"] == summary["devices"]["registered"] == 2
    assert summary["plan"]["time_scale"] == site.manifest.time_scale
    assert site.reset_faults() == {"cleared": []}  # the site is still up: the run did not stop it


def test_a_bad_option_exits_2_with_a_one_line_message_naming_the_value() -> None:
    """Run as a subprocess, a bad value stops before anything starts, with exit code 2."""
    result = cmg_harness("run", "--users", "0", timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == "cmg-harness: argument --users: users must be 1..1000000, got 0"


@pytest.mark.parametrize(("args", "named"), [
    (["--duration", "soon"], "'soon'"),
    (["--spawn-rate", "-1"], "'-1'"),
    (["--time-scale", "fast"], "'fast'"),
    (["--workers", "999"], "999"),
    (["--devices-per-user", "0"], "got 0"),
    (["--fleet-mix", "wpj_missing=2"], "'wpj_missing=2'"),
    (["--fleet-mix", "gremlins=0.5"], "gremlins"),
    (["--locustfile", "no/such/locustfile.py"], "'no/such/locustfile.py'"),
])
def test_bad_options_are_named_in_one_line(args: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Each unusable value is refused with exit code 2 and a single line that names it."""
    assert main(["run", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err and err.startswith("cmg-harness: ")


def test_a_bad_chaos_schedule_stops_the_run_before_anything_starts_naming_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A schedule with an unknown fault, a negative duration or a share above 1 exits 2 with file:line and why."""
    schedule = tmp_path / "chaos.yaml"
    schedule.write_text("faults:\n  - {fault: wpj_missing, share: 0.2}\n  - {fault: crl_unreachable, start: 5, "
                        "duration: -3}\n")
    out = tmp_path / "results"
    assert main(["run", "--chaos", str(schedule), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cmg-harness: argument --chaos: ") and f"{schedule}:3: duration of 'crl_unreachable'" in err
    assert not out.exists()


def _manifest(tmp_path: Path, **changes: object) -> Path:
    """A site manifest with every key a run needs (nothing listens behind it)."""
    manifest = example_manifest(tmp_path).replace(**{"cmg_url": "https://127.0.0.1:9", **changes})
    return manifest.write(tmp_path / "site.json")


@pytest.mark.parametrize(("args", "named"), [
    (["--target", "http://proxy.test"], "'http://proxy.test'"),
    (["--target", "https://proxy.test/CCM_Proxy_ServerAuth"], "https://host[:port]"),
    (["--site", "no/such/site.json"], "'no/such/site.json' not found"),
    (["--ca-file", "no/such/ca.pem", "--target", "https://proxy.test"], "'no/such/ca.pem' not found"),
    (["--chaos", "no/such/chaos.yaml"], "'no/such/chaos.yaml' cannot be read"),
])
def test_bad_site_target_and_chaos_options_are_named(args: list[str], named: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Each unusable --site, --target, --ca-file or --chaos is refused with exit code 2 naming the value."""
    assert main(["run", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err


def test_a_ca_file_without_a_target_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--ca-file only makes sense for the certificate of a proxy named by --target."""
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert main(["run", "--ca-file", str(ca)]) == 2
    assert "give --target too" in capsys.readouterr().err


def test_seeding_a_site_that_is_already_up_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The run cannot seed clients into a site it did not start."""
    assert main(["run", "--site", str(_manifest(tmp_path)), "--seed-clients", "5"]) == 2
    assert "cmg-harness up --seed-clients" in capsys.readouterr().err


def test_a_site_without_a_cmg_needs_a_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A site started with --no-cmg has nothing for clients to talk to unless --target names the proxy."""
    assert main(["run", "--site", str(_manifest(tmp_path, cmg_url=None))]) == 2
    assert "give --target" in capsys.readouterr().err


def test_a_non_empty_results_dir_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Results never mix with an earlier run's: an --out that holds files is refused by name."""
    (tmp_path / "old.txt").write_text("earlier run")
    assert main(["run", "--out", str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().err



def test_step_options_belong_to_a_step_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--steps without the capacity locustfile is refused, naming the option."""
    assert main(["run", "--steps", "3", "--out", str(tmp_path / "out")]) == 2
    assert "--steps only applies to a step run" in capsys.readouterr().err


@pytest.mark.slow
def test_a_step_run_lasts_its_steps_and_ends_with_a_capacity_report(tmp_path: Path) -> None:
    """`run --locustfile capacity.py --steps ... --step-hold ...` holds each step and writes capacity-report.html."""
    out = tmp_path / "cap"
    started = time.monotonic()
    finished = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--locustfile", str(LOCUSTFILES_DIR / "capacity.py"),
         "--steps", "2", "--step-users", "2", "--step-hold", "6", "--duration", "300", "--out", str(out),
         "--progress-interval", "1s"],
        capture_output=True, text=True, timeout=240)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert time.monotonic() - started < 200  # the steps (12 s), not --duration (300 s), decide the length
    assert (out / "capacity-report.html").read_text().startswith("<!DOCTYPE html>")
    files = finished.stdout.strip().splitlines()[-1]
    assert files.startswith(f"results in {out}: ") and files.endswith(", capacity-report.html")
    assert json.loads((out / "summary.json").read_text())["capacity_report"] == {"file": "capacity-report.html"}
    # The status names the step, its users and whether it is settling (the report leaves that part out) or measured.
    steps = {line.split("  step ", 1)[1] for line in finished.stdout.splitlines()
             if line.startswith("progress  ") and "  step " in line}
    assert {"1 of 2 at 2.0 users settling", "1 of 2 at 2.0 users measuring", "2 of 2 at 4.0 users measuring"} <= steps


def test_in_process_hops_do_not_apply_to_a_given_site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--inprocess-hops with --site is refused: that site already runs as it was started."""
    manifest = tmp_path / "site.json"
    manifest.write_text("{}")
    assert main(["run", "--site", str(manifest), "--inprocess-hops", "--out", str(tmp_path / "out")]) == 2
    assert "--inprocess-hops" in capsys.readouterr().err


# --- signals to the run alone, and Locust's master port ----------------------------------------------------------------


def _descendants(root: int) -> dict[int, str]:
    """Every process below ``root`` now, by PID, with its start time (so a reused PID is not taken for it)."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
        starts[int(entry.name)] = fields[19]
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found[child] = starts[child]
            todo.append(child)
    return found


def _still_running(pid: int, start: str) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[19] == start and fields[0] not in ("Z", "X")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_run_alone_stops_every_child_and_leaves_a_summary_marked_interrupted(
        tmp_path: Path, signum: signal.Signals) -> None:
    """As CI runners and `timeout` do: the signal goes to the run's PID only. The site, Locust's master and its worker
    all end, summary.json is written from what was collected and says interrupted, and the exit code is 128 + signal."""
    out = tmp_path / "results"
    run = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", *RUN[:6], "--duration", "60",
                            "--time-scale", "3600", "--workers", "1", "--master-port", str(_free_port()),
                            "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    children: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 90
        # Up: the site, Locust's master and its worker are there, and the worker has reported a registered device.
        while time.monotonic() < deadline and run.poll() is None:
            children = _descendants(run.pid)
            history = out / "stats_history.jsonl"
            if len(children) >= 3 and (out / "run.json").is_file() and history.is_file() \
                    and '"install+register"' in history.read_text():
                break
            time.sleep(0.2)
        assert run.poll() is None and len(children) >= 3, f"the run did not come up: {children}"
        children = _descendants(run.pid)
        os.kill(run.pid, signum)
        output, _ = run.communicate(timeout=90)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
        survivors = [pid for pid, start in children.items() if _still_running(pid, start)]
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)
    assert run.returncode == 128 + signum, output
    assert survivors == []
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["interrupted"], summary["signal"], summary["passed"]) == (True, signum.name, False)
    assert summary["devices"]["started"] >= 1  # what Locust had collected when it was stopped
    verdict, files = output.strip().splitlines()[-2:]
    assert verdict.startswith(f"INTERRUPTED by {signum.name}")
    assert files.startswith(f"results in {out}: ") and "summary.json" in files
    # The same screen as a finished run's, with the files Locust wrote when it was stopped, all of them there.
    assert "RequestUri / stage" in output and "devices     started" in output
    listed = files.split(": ", 1)[1].split(", ")
    assert {"outcomes.json", "locust.json", "summary.json"} <= set(listed)
    assert all((out / name).exists() for name in listed)


def test_a_taken_master_port_is_refused_naming_it_before_anything_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["run", "--workers", "1", "--master-port", str(port), "--duration", "5", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"Locust master port 127.0.0.1:{port} is taken" in err and "--master-port" in err
    assert not out.exists()  # no site, no Locust, no results directory


def test_a_master_port_needs_workers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--master-port", "15557", "--out", str(tmp_path / "out")]) == 2
    assert "--master-port is for the master of --workers" in capsys.readouterr().err


def test_the_fault_follower_does_not_fill_locust_log_with_httpx_lines(
        lifecycle_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """The site's fault list is read every second; httpx's INFO line for each read stays out of locust.log."""
    _, out = lifecycle_run
    log = (out / "locust.log").read_text()
    assert "Starting Locust" in log or "Ramping to" in log or "users" in log
    assert "HTTP Request: GET" not in log
