"""The pieces of ``cmg-harness run`` that need no processes: durations, command lines, the verdict and the summary."""

from __future__ import annotations

import io
import itertools
import json
import os
import signal
import socket
import time
from datetime import datetime
from pathlib import Path

import pytest

from harness.load.headless import (
    RunError,
    RunInterrupted,
    check_port_free,
    execute,
    locust_command,
    master_port_args,
    seeded_fleet_size,
    site_command,
)
from harness.load.interruption import Interruption
from harness.load.run_summary import format_summary, summarize
from harness.results.layout import default_results_path
from harness.results.plan import RunPlan
from mock_site.testing import example_manifest

MANIFEST = example_manifest(Path("/nonexistent")).replace(ccm_token_lifetime_s=24.0, policy_interval_s=3.0,
                                                          db_path=Path("/nonexistent/site.db"))
POLICY = "/CCM_Proxy_ServerAuth/72186325152220500/ccm_system_tokenauth/request"


def test_default_results_go_to_a_timestamped_folder() -> None:
    """results/<timestamp>/ sorts runs by start time."""
    assert default_results_path(datetime(2024, 5, 17, 9, 3, 4)) == Path("results/20240517-090304")


def test_locust_runs_headless_with_every_result_file_in_the_out_dir(tmp_path: Path) -> None:
    """Locust writes CSV, HTML, JSON and our outcomes into OUT and reads the site from OUT/site/site.json."""
    plan = RunPlan(out=tmp_path, users=7, spawn_rate=3.5, duration=42.0, devices_per_user=4, seed=9,
                   fleet_mix="wpj_missing=0.1")
    command = locust_command(plan, python="py")
    assert command[:3] == ["py", "-m", "locust"]
    pairs = dict(itertools.pairwise(command))
    assert pairs["-u"] == "7" and pairs["-r"] == "3.5" and pairs["-t"] == "42s"
    assert pairs["--csv"] == str(tmp_path / "locust") and pairs["--json-file"] == str(tmp_path / "locust")
    assert pairs["--html"] == str(tmp_path / "locust.html") and pairs["--results-dir"] == str(tmp_path)
    assert pairs["--site"] == str(tmp_path / "site" / "site.json")
    assert pairs["--devices-per-user"] == "4" and pairs["--fleet-seed"] == "9"
    assert pairs["--fleet-mix"] == "wpj_missing=0.1"
    assert "--headless" in command and "--processes" not in command


def test_workers_turn_into_locust_processes(tmp_path: Path) -> None:
    """--workers W runs Locust's master with W worker processes, its port on loopback only."""
    command = locust_command(RunPlan(out=tmp_path, workers=3, extra_locust_args=master_port_args(15600)))
    pairs = dict(itertools.pairwise(command))
    assert pairs["--processes"] == "3" and pairs["--master-bind-host"] == "127.0.0.1"
    assert pairs["--master-bind-port"] == pairs["--master-port"] == "15600"


def test_a_port_with_a_listener_is_named_as_taken_and_a_free_one_passes() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(RunError, match=f"Locust master port 127.0.0.1:{port} is taken .*--master-port"):
            check_port_free(port)
    check_port_free(port)  # closed: free again (TIME_WAIT does not count, as for Locust's ZeroMQ socket)


def test_an_interrupted_run_is_marked_with_its_signal_and_does_not_pass(tmp_path: Path) -> None:
    """summary.json says interrupted and by what; the screen says INTERRUPTED first and as its verdict (before the
    result files), not PASS."""
    summary = summarize(RunPlan(out=tmp_path), manifest=MANIFEST, locust_stats=_stats(), outcomes=_outcomes(),
                        registrations=10, locust_exit=0, interrupted_by="SIGTERM")
    assert (summary["interrupted"], summary["signal"], summary["passed"]) == (True, "SIGTERM", False)
    assert summary["problems"] == ["interrupted by SIGTERM"]
    lines = format_summary(summary).splitlines()
    assert lines[0] == "INTERRUPTED by SIGTERM: a partial run"
    assert lines[-2] == "INTERRUPTED by SIGTERM: what was collected until then"
    assert lines[-1] == f"results in {tmp_path}: report.html, summary.json"
    assert "installed 10  registered 10" in "\n".join(lines)


def test_a_run_interrupted_before_the_site_was_up_still_has_a_summary(tmp_path: Path) -> None:
    summary = summarize(RunPlan(out=tmp_path), manifest=None, locust_stats=None, outcomes=None, registrations=None,
                        locust_exit=-1, interrupted_by="SIGINT")
    assert summary["interrupted"] and summary["site"]["ccm_token_lifetime_s"] is None
    assert not any("status -1" in problem for problem in summary["problems"])
    assert format_summary(summary).splitlines()[-2].startswith("INTERRUPTED by SIGINT")


def test_a_finished_run_is_not_marked_interrupted(tmp_path: Path) -> None:
    summary = summarize(RunPlan(out=tmp_path), manifest=MANIFEST, locust_stats=_stats(), outcomes=_outcomes(),
                        registrations=10, locust_exit=0)
    assert (summary["interrupted"], summary["signal"]) == (False, None)
    assert "INTERRUPTED" not in format_summary(summary)


def test_the_site_starts_in_the_out_dir_with_the_runs_time_scale(tmp_path: Path) -> None:
    """The embedded site keeps its state (PKI, database, logs) in OUT/site and seeds clients when asked."""
    command = site_command(RunPlan(out=tmp_path, time_scale=600.0, seed_clients=12), python="py")
    assert command[:5] == ["py", "-m", "harness.cli", "up", "--state-dir"]
    pairs = dict(itertools.pairwise(command))
    assert pairs["--state-dir"] == str(tmp_path / "site") and pairs["--time-scale"] == "600.0"
    assert pairs["--seed-clients"] == "12"
    assert "--inprocess-hops" not in command


def test_the_site_can_start_with_in_process_hops(tmp_path: Path) -> None:
    """--inprocess-hops on the run reaches the site's own command line."""
    assert "--inprocess-hops" in site_command(RunPlan(out=tmp_path, inprocess_hops=True), python="py")


@pytest.mark.parametrize(("users", "workers", "devices", "seeded"), [(10, 0, 5, 50), (10, 3, 5, 60), (2, 4, 1, 4)])
def test_a_steady_state_run_seeds_every_device_it_can_play(users: int, workers: int, devices: int,
                                                           seeded: int) -> None:
    """Users spread over workers may reach slots up to ceil(U/W)*W, so that many users' devices are seeded."""
    assert seeded_fleet_size(users, workers, devices) == seeded


TRAIL = [["aad_info", "/CCM_Proxy_ServerAuth/AADAuthInfo", 200, 3.1, "ok"],
         ["policy_assignments", POLICY, 403, 2.0, "cmg.403"]]


def _verdicts(unexpected: int) -> dict[str, object]:
    examples = {"unexpected_failure:cmg.403": [{"device": "CMGDEV7", "outcome": "cmg.403", "trail": TRAIL,
                                                "explanation": "cmg.403 is not among the predicted outcomes (ok)"}]}
    return {"expected": 10, "unexpected": unexpected,
            "kinds": {"expected_success": 10, **({"unexpected_failure": unexpected} if unexpected else {})},
            "reasons": {"ok": {"expected": 10}, **({"cmg.403": {"unexpected": unexpected}} if unexpected else {})},
            "faults": {"none": {"expected": 10, "unexpected": unexpected}},
            "examples": examples if unexpected else {}, "pending": 0}


def _outcomes(*, unexpected: int = 0, registered: int = 10) -> dict[str, object]:
    return {"lifecycles": {"succeeded": 0, "failed": unexpected, "unexpected_failures": unexpected,
                           "unexpected_successes": 0},
            "outcomes": {"cmg.403": unexpected} if unexpected else {},
            "unexpected": {"cmg.403": unexpected} if unexpected else {}, "stage_failures": {},
            "devices": {"started": 10, "installed": 10, "registered": registered, "renewed": 10, "polled": 10},
            "events": {"installed": 10, "registered": registered, "renewed": 20, "polled": 100},
            "requests": {POLICY: {"request_bytes": 2000, "responses": 100}},
            "verdicts": _verdicts(unexpected), "fault_windows": [], "recovery": [],
            "chaos": {"schedule": None, "applied": [], "errors": []}, "test_started_at": 1000.0}


def _stats() -> list[dict[str, object]]:
    return [{"name": POLICY, "method": "CCM_POST", "num_requests": 100, "num_failures": 0,
             "total_response_time": 1000.0, "total_content_length": 5000, "max_response_time": 40.0},
            {"name": "policy cycle", "method": "LIFECYCLE", "num_requests": 100, "num_failures": 0,
             "total_response_time": 1500.0, "total_content_length": 0, "max_response_time": 60.0}]


def test_a_run_without_unexpected_failures_passes(tmp_path: Path) -> None:
    """Devices progressed and nothing failed unexpectedly: PASS."""
    summary = summarize(RunPlan(out=tmp_path), manifest=MANIFEST, locust_stats=_stats(), outcomes=_outcomes(),
                        registrations=10, locust_exit=0)
    assert summary["passed"] and summary["problems"] == []
    assert summary["site"]["new_registrations"] == 10


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"outcomes": _outcomes(unexpected=2)}, "2 unexpected outcome(s): unexpected_failure:cmg.403"),
    ({"outcomes": {**_outcomes(), "chaos": {"schedule": "s.yaml", "applied": [], "errors": ["line 3: reset: gone"]}}},
     "the chaos schedule could not switch 1 fault(s): line 3: reset: gone"),
    ({"outcomes": None}, "no outcomes.json"),
    ({"locust_exit": 2}, "Locust exited with status 2"),
    ({"outcomes": {"devices": {"started": 5}}}, "no device got anywhere"),
    ({"outcomes": {"devices": {"started": 5}, "unexpected": {"connect": 5}}}, "5 unexpected outcome(s)"),
])
def test_a_run_fails_for_unexpected_failures_or_missing_results(tmp_path: Path, kwargs: dict[str, object],
                                                                problem: str) -> None:
    """Unexpected outcomes, a schedule that failed, a crashed Locust, or no progress make the run fail, saying why."""
    arguments: dict[str, object] = {"manifest": MANIFEST, "locust_stats": _stats(), "outcomes": _outcomes(),
                                    "registrations": 10, "locust_exit": 1}
    arguments.update(kwargs)
    summary = summarize(RunPlan(out=tmp_path), **arguments)  # type: ignore[arg-type]
    assert not summary["passed"]
    assert any(problem in text for text in summary["problems"])


def test_seeded_clients_are_not_counted_as_new_registrations(tmp_path: Path) -> None:
    """A steady-state run's database holds the seeded clients; only the rest are new."""
    summary = summarize(RunPlan(out=tmp_path, seed_clients=40), manifest=MANIFEST, locust_stats=[],
                        outcomes=_outcomes(), registrations=40, locust_exit=0)
    assert summary["site"]["new_registrations"] == 0


def test_the_summary_shows_devices_stages_requests_and_the_verdict(tmp_path: Path) -> None:
    """One screen: how far devices got, lifecycle stage times, the CMGService table, and PASS or FAIL."""
    text = format_summary(summarize(RunPlan(out=tmp_path), manifest=MANIFEST, locust_stats=_stats(),
                                    outcomes=_outcomes(unexpected=1), registrations=9, locust_exit=0))
    assert "installed 10  registered 10  renewed 10  polled 10" in text
    assert "token renewals 20  policy cycles 100" in text
    assert "site DB     registrations 9" in text
    assert "policy cycle" in text and POLICY in text
    assert "2000 B" in text and "10 ms" in text
    assert "unexpected  cmg.403 1" in text
    assert "verdicts    expected 10  unexpected 1" in text
    assert "UNEXPECTED unexpected_failure:cmg.403 CMGDEV7" in text
    assert "trail: aad_info 200 ok > policy_assignments 403 cmg.403" in text
    assert text.splitlines()[-2].startswith("FAIL: 1 unexpected outcome(s)")
    assert text.splitlines()[-1].startswith(f"results in {tmp_path}: ")
    assert len(text.splitlines()) < 40


def test_a_run_where_every_device_failed_as_expected_passes(tmp_path: Path) -> None:
    """A fleet stopped entirely by a fault that predicts it (say, no WPJ certificate anywhere) got nowhere, rightly."""
    outcomes = {**_outcomes(registered=0), "devices": {"started": 10, "installed": 0, "registered": 0,
                                                       "renewed": 0, "polled": 0}}
    summary = summarize(RunPlan(out=tmp_path), manifest=MANIFEST, locust_stats=[], outcomes=outcomes,
                        registrations=0, locust_exit=1)
    assert summary["passed"], summary["problems"]


WINDOWS = [{"name": "cp_disconnected", "role": "cmg", "start": 1010.0, "end": 1015.0, "probability": 1.0,
            "params": {}, "injections": 40, "inferred": False}]
RECOVERY = [{"name": "cp_disconnected", "role": "cmg", "start": 1010.0, "end": 1015.0, "baseline_success_rate": 1.0,
             "worst_success_rate": 0.2, "recovered": True, "recovery_s": 2.0, "baseline_rps": 10.0,
             "peak_rps_after": 30, "storm_rps": 20.0, "storm_requests": 35, "token_baseline_rps": 1.0,
             "token_peak_rps_after": 6, "token_storm_rps": 5.0}]


def test_the_summary_shows_the_fault_windows_and_the_recovery_after_each(tmp_path: Path) -> None:
    """Fault windows print relative to the test start; each window's recovery and storm size print as a table."""
    outcomes = {**_outcomes(), "fault_windows": WINDOWS, "recovery": RECOVERY,
                "chaos": {"schedule": "scenarios/cp-flap.yaml", "applied": [], "errors": []}}
    summary = summarize(RunPlan(out=tmp_path), manifest=MANIFEST, locust_stats=[], outcomes=outcomes,
                        registrations=10, locust_exit=0)
    assert summary["recovery"] == RECOVERY and summary["fault_windows"] == WINDOWS
    text = format_summary(summary)
    assert "faults      chaos schedule scenarios/cp-flap.yaml: cp_disconnected@cmg +10..+15 s" in text
    row = next(line for line in text.splitlines() if line.strip().startswith("cp_disconnected  cmg"))
    assert row.split()[2:] == ["20.0", "2", "20", "35", "5"]


def test_an_existing_sites_earlier_registrations_are_not_counted_as_new(tmp_path: Path) -> None:
    """With --site the database already held clients before the run: only the difference is new."""
    summary = summarize(RunPlan(out=tmp_path, site=tmp_path / "site.json"), manifest=MANIFEST, locust_stats=[],
                        outcomes=_outcomes(), registrations=30, locust_exit=0, registrations_before=18)
    assert summary["site"]["new_registrations"] == 12 and summary["site"]["external"]
    assert "site DB     registrations 12 (+18 already there)" in format_summary(summary)


def test_a_run_through_a_proxy_sends_locust_there_with_its_ca(tmp_path: Path) -> None:
    """--site, --target, --ca-file and --chaos reach Locust as its host and the listeners' options."""
    plan = RunPlan(out=tmp_path, site=tmp_path / "up" / "site.json", target="https://proxy.test:8443",
                   ca_file=tmp_path / "proxy-ca.pem", chaos=tmp_path / "crl.yaml")
    pairs = dict(itertools.pairwise(locust_command(plan, python="py")))
    assert pairs["--site"] == str(tmp_path / "up" / "site.json")
    assert pairs["--host"] == "https://proxy.test:8443"
    assert pairs["--ca-file"] == str(tmp_path / "proxy-ca.pem") and pairs["--chaos"] == str(tmp_path / "crl.yaml")


class _SiteSignalledWhileStarting:
    """A site whose start-up is cut short by SIGTERM to this process (as a process manager would send it)."""

    def __init__(self) -> None:
        self.stopped = False

    def start(self, interruption: Interruption | None = None) -> object:
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while interruption is not None and not interruption.interrupted and time.monotonic() < deadline:
            time.sleep(0.01)
        raise RunInterrupted()

    def stop(self) -> None:
        self.stopped = True


def test_a_signal_before_the_site_is_up_stops_it_and_leaves_an_interrupted_summary(tmp_path: Path) -> None:
    """No Locust is started; the site is stopped, summary.json says interrupted by SIGTERM, and the exit code is 143."""
    site = _SiteSignalledWhileStarting()
    screen = io.StringIO()
    code = execute(RunPlan(out=tmp_path), out=screen, site_factory=lambda plan: site)  # type: ignore[arg-type,return-value]
    assert code == 143 and site.stopped
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["interrupted"], summary["signal"]) == (True, "SIGTERM")
    assert not (tmp_path / "locust.log").exists()
    assert screen.getvalue().strip().splitlines()[-2].startswith("INTERRUPTED by SIGTERM")


# --- the end-of-run screen: percentiles per RequestUri and stage, then outcomes, faults, the gate, files ---------------

def _percentiles(p50: float, p99: float) -> dict[str, float]:
    return {"count": 100, "p50": p50, "p90": p50 * 2, "p99": p99, "p999": p99, "max": p99 * 1.5}


def _measured_outcomes() -> dict[str, object]:
    measures = {"service_ms": _percentiles(4.0, 30.0), "corrected_ms": _percentiles(5.0, 120.0),
                "lateness_ms": _percentiles(0.5, 90.0)}
    return {**_outcomes(unexpected=1), "fault_windows": WINDOWS, "recovery": RECOVERY,
            "test_started_at": 1000.0,
            "chaos": {"schedule": "scenarios/cp-flap.yaml", "applied": [], "errors": []},
            "latency": {"requests": {POLICY: measures}, "stages": {"policy cycle": measures}, "all_requests": {},
                        "late": 0, "unsent": 0}}


def _timed_stats() -> list[dict[str, object]]:
    return [{**entry, "num_failures": 4 if entry["method"] == "CCM_POST" else 0, "start_time": 1000.0,
             "last_request_timestamp": 1050.0} for entry in _stats()]


def _cells(text: str, name: str) -> list[str]:
    # The last row of that name: the measures table comes after the CMGService table.
    row = [line for line in text.splitlines() if line.strip().startswith(name + " ")][-1]
    return row.split()[len(name.split()):]


def test_the_screen_has_counts_rates_and_percentiles_per_request_uri_and_stage(tmp_path: Path) -> None:
    """Requests, failures, requests/s, service and corrected p50/p90/p99/max, lateness p99: one row each."""
    summary = summarize(RunPlan(out=tmp_path), manifest=MANIFEST, locust_stats=_timed_stats(),
                        outcomes=_measured_outcomes(), registrations=10, locust_exit=0)
    assert summary["traffic"][POLICY] == {"requests": 100, "failures": 4, "requests_per_s": 2.0, "stage": False}
    text = format_summary(summary)
    header = next(line for line in text.splitlines() if line.strip().startswith("RequestUri / stage"))
    assert header.split()[3:] == ["requests", "failures", "req/s", "service", "p50", "p90", "p99", "max",
                                  "corrected", "p50", "p90", "p99", "max", "lateness", "p99"]
    assert _cells(text, POLICY) == ["100", "4", "2.0", "4.0", "8.0", "30", "45", "5.0", "10", "120", "180", "90"]
    assert _cells(text, "policy cycle") == ["100", "0", "2.0", "4.0", "8.0", "30", "45", "5.0", "10", "120", "180",
                                            "90"]


def _gate(passed: bool) -> dict[str, object]:
    return {"name": "smoke", "path": "gates/smoke.yaml", "passed": passed, "exit_code": 0 if passed else 3,
            "thresholds": 2, "crossed": [] if passed else ["*: p99 < 1ms"],
            "text": "gate smoke (gates/smoke.yaml):\n  ✓ ...\n" + ("gate PASS: 2 of 2 thresholds held" if passed else
                                                                   "gate FAIL: 1 of 2 thresholds crossed (exit 3)"),
            "files": ["gate-junit.xml", "gate.json"]}


def test_the_screen_ends_with_outcomes_faults_the_gate_the_verdict_and_then_the_files(tmp_path: Path) -> None:
    summary = summarize(RunPlan(out=tmp_path), manifest=MANIFEST, locust_stats=_timed_stats(),
                        outcomes=_measured_outcomes(), registrations=10, locust_exit=0)
    summary["gate"] = _gate(passed=True)
    lines = format_summary(summary).splitlines()

    def first(prefix: str) -> int:
        return next(number for number, line in enumerate(lines) if line.strip().startswith(prefix))

    order = [first(prefix) for prefix in ("requests (as CMGService.log", "RequestUri / stage", "outcomes ",
                                          "verdicts ", "faults ", "recovery after", "gate smoke",
                                          "gate PASS", "FAIL: ", "results in ")]
    assert order == sorted(order)
    assert lines[-1] == f"results in {tmp_path}: report.html, summary.json" and lines[-2].startswith("FAIL: 1 unexpected")


def test_a_crossed_gate_turns_a_passing_run_into_a_fail_after_the_gate_lines(tmp_path: Path) -> None:
    """The bug this fixes: PASS was printed, then the gate failed below it."""
    summary = summarize(RunPlan(out=tmp_path), manifest=MANIFEST, locust_stats=_stats(), outcomes=_outcomes(),
                        registrations=10, locust_exit=0)
    assert format_summary({**summary, "gate": _gate(passed=True)}).splitlines()[-2] == "PASS"
    lines = format_summary({**summary, "gate": _gate(passed=False)}).splitlines()
    assert "PASS" not in lines
    assert lines[-3] == "gate FAIL: 1 of 2 thresholds crossed (exit 3)"
    assert lines[-2] == "FAIL: gate smoke: 1 of 2 thresholds crossed (*: p99 < 1ms)"
    not_judged = format_summary({**summary, "gate": {"name": "smoke", "error": "results directory gone"}})
    assert not_judged.splitlines()[-3:-1] == ["gate smoke: not judged: results directory gone",
                                              "FAIL: the gate could not be judged: results directory gone"]


class _NoSite:
    """A site that never comes up and a run that is interrupted before it does (no processes at all)."""

    def start(self, interruption: Interruption | None = None) -> object:
        raise RunInterrupted()

    def stop(self) -> None:
        pass


def test_an_interrupted_run_says_its_gate_was_not_judged(tmp_path: Path) -> None:
    interruption = Interruption()
    interruption.note(signal.SIGINT)
    gate = type("Gate", (), {"name": "smoke", "path": "gates/smoke.yaml"})()
    screen = io.StringIO()
    code = execute(RunPlan(out=tmp_path), out=screen, site_factory=lambda plan: _NoSite(),  # type: ignore[arg-type,return-value]
                   interruption=interruption, gate=gate)
    assert code == 130
    assert json.loads((tmp_path / "summary.json").read_text())["gate"]["error"] == "the run was interrupted"
    lines = screen.getvalue().strip().splitlines()
    assert lines[-3] == "gate smoke: not judged: the run was interrupted"
    assert lines[-2].startswith("INTERRUPTED by SIGINT: what was collected until then")
    assert lines[-1] == f"results in {tmp_path}: run.json, report.html, summary.json"


def test_a_capacity_report_that_could_not_be_made_says_why_before_the_verdict(tmp_path: Path) -> None:
    summary = summarize(RunPlan(out=tmp_path), manifest=MANIFEST, locust_stats=_stats(), outcomes=_outcomes(),
                        registrations=10, locust_exit=0)
    summary["capacity_report"] = {"error": "no steps in the run"}
    lines = format_summary(summary).splitlines()
    assert lines.index("capacity report not written: no steps in the run") < lines.index("PASS") == len(lines) - 2
