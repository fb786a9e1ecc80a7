"""``cmg-harness run``: the mock site and a headless Locust run as two subprocesses, then a one-screen summary.

Nothing here imports Locust (it monkey-patches the process with gevent): Locust runs as ``python -m locust`` and its
results come back as files — Locust's CSV, HTML and JSON, and the ``outcomes.json`` our listeners write. With
``--site`` the run uses a site that is already up (in front of which a proxy under test may sit) instead.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from harness.load.interruption import Interruption
from harness.load.process_group import stop_group
from harness.load.progress import DEFAULT_PLAIN_INTERVAL, PROGRESS, ProgressDisplay
from harness.load.run_summary import format_summary, summarize
from harness.results.layout import LOCUST_HTML, LOCUST_LOG, SITE_LOG, ResultsDir, or_none
from harness.results.plan import RunPlan
from mock_site.manifest import ManifestError, SiteManifest

SITE_START_TIMEOUT = 90.0
SITE_STOP_TIMEOUT = 30.0
#: Seconds Locust lets a user finish the device it is driving when the run time is up (no half-done registrations).
STOP_TIMEOUT = 10.0
#: After SIGTERM Locust stops its users (``--stop-timeout``), its workers and writes its files: this long, then SIGKILL.
LOCUST_TERM_TIMEOUT = STOP_TIMEOUT + 20.0
#: Locust's master port (``--master-bind-port``) when ``--master-port`` is not given: Locust's own default.
DEFAULT_MASTER_PORT = 5557
#: Where a run's Locust master listens for its workers: loopback only.
MASTER_BIND_HOST = "127.0.0.1"
#: How often the run looks at its children and for a signal while it waits.
POLL_SECONDS = 0.2


class RunError(Exception):
    """The run could not be carried out (site would not start, Locust crashed); a one-line message for the user."""


class RunInterrupted(Exception):
    """SIGINT or SIGTERM arrived before the site was up: the run stops there (what it noted says which)."""


def manifest_path(plan: RunPlan) -> Path:
    """The manifest of the site the run uses: the one given with ``--site``, else the one the run's own site writes."""
    return plan.site if plan.site is not None else ResultsDir(plan.out).site_manifest


def seeded_fleet_size(users: int, workers: int, devices_per_user: int) -> int:
    """How many clients to pre-register so every device a steady-state run plays is in the site database.

    Users interleave over workers (``scheduler.device_indexes``), so the highest slot is below ceil(U/W)*W.
    """
    worker_count = max(workers, 1)
    return math.ceil(users / worker_count) * worker_count * devices_per_user


def site_command(plan: RunPlan, python: str = sys.executable) -> list[str]:
    """The command line that starts the mock site for ``plan``."""
    command = [python, "-m", "harness.cli", "up", "--state-dir", str(ResultsDir(plan.out).site_dir),
               "--time-scale", repr(plan.time_scale)]
    if plan.seed_clients:
        command += ["--seed-clients", str(plan.seed_clients)]
    if plan.inprocess_hops:
        command.append("--inprocess-hops")
    return command


def locust_command(plan: RunPlan, python: str = sys.executable) -> list[str]:
    """The command line of the headless Locust run for ``plan``."""
    results = ResultsDir(plan.out)
    command = [python, "-m", "locust", "-f", str(plan.locustfile), "--headless",
               "-u", str(plan.users), "-r", repr(plan.spawn_rate), "-t", f"{plan.duration:g}s",
               "--stop-timeout", f"{STOP_TIMEOUT:g}",
               "--csv", str(results.locust_prefix), "--html", str(results.file(LOCUST_HTML)),
               "--json-file", str(results.locust_prefix), "--only-summary",
               "--site", str(manifest_path(plan)), "--results-dir", str(results.path),
               "--time-scale", repr(plan.time_scale), "--fleet-seed", str(plan.seed),
               "--devices-per-user", str(plan.devices_per_user)]
    if plan.fleet_mix:
        command += ["--fleet-mix", plan.fleet_mix]
    if plan.chaos is not None:
        command += ["--chaos", str(plan.chaos)]
    if plan.target:
        command += ["--host", plan.target]
    if plan.ca_file is not None:
        command += ["--ca-file", str(plan.ca_file)]
    if plan.workers:
        command += ["--processes", str(plan.workers), "--master-bind-host", MASTER_BIND_HOST]
    return command + list(plan.extra_locust_args)


def master_port_args(port: int) -> tuple[str, ...]:
    """The Locust options that put a ``--processes`` master and its workers on ``port``."""
    return ("--master-bind-port", str(port), "--master-port", str(port))


def check_port_free(port: int, host: str = MASTER_BIND_HOST) -> None:
    """RunError naming ``host:port`` when something listens there (checked by binding it as Locust's master would)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As ZeroMQ does: a port left in TIME_WAIT by an earlier run is free, one with a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise RunError(f"Locust master port {host}:{port} is taken ({error.strerror or error}): stop what "
                           f"listens there or choose another with --master-port") from None


class SiteProcess:
    """The mock site as a child process: started, waited for until its manifest appears, always stopped by its PID."""

    def __init__(self, command: list[str], manifest_path: Path, log_path: Path) -> None:
        self.command = command
        self.manifest_path = manifest_path
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = SITE_START_TIMEOUT, interruption: Interruption | None = None) -> SiteManifest:
        """Start the site and return its manifest once the site has written it (RunInterrupted on a signal)."""
        self.manifest_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # Its own process group: a Ctrl-C in the terminal reaches the run alone, which stops Locust first and the
            # site last, so Locust's last requests are answered.
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, process_group=0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if interruption is not None and interruption.interrupted:
                raise RunInterrupted()
            manifest = self._manifest()
            if manifest is not None:
                return manifest
            if self.process.poll() is not None:
                raise RunError(f"the mock site exited with status {self.process.returncode} before it was up: "
                               f"{self._log_tail()}")
            time.sleep(POLL_SECONDS / 2)
        raise RunError(f"the mock site did not write {self.manifest_path} within {timeout:g} s")

    def _manifest(self) -> SiteManifest | None:
        # A manifest left by an earlier site in the same directory names another PID: wait for ours.
        try:
            manifest = SiteManifest.read(self.manifest_path)
        except ManifestError:
            return None  # not written yet (or half-written by a site still starting)
        if self.process is None or manifest.pid != self.process.pid:
            return None
        return manifest

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no site output)"
        return lines[-1] if lines else "(no site output)"

    def stop(self, timeout: float = SITE_STOP_TIMEOUT) -> None:
        """Send SIGTERM to the site's PID and wait; SIGKILL it if it does not stop in time (safe to call twice)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout)


class ExistingSite:
    """A site that is already up, named by its manifest: nothing to start, nothing to stop."""

    def __init__(self, manifest_path: Path) -> None:
        self.manifest_path = manifest_path

    def start(self, interruption: Interruption | None = None) -> SiteManifest:
        """The site's manifest."""
        try:
            return SiteManifest.read(self.manifest_path)
        except ManifestError as error:
            raise RunError(str(error)) from None

    def stop(self) -> None:
        """Leave the site running: it is not ours."""


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when the file is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def count_registrations(db_path: Path) -> int:
    """Registered clients in the site database (read after the site has stopped)."""
    from mock_site.db import SiteDatabase

    with SiteDatabase(Path(db_path), clock=time.time) as db:
        return db.count_clients()


def count_registrations_live(db_path: Path) -> int | None:
    """Registered clients in the database of a site that is still running (read-only; None when unreadable)."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"{Path(db_path).resolve().as_uri()}?mode=ro", uri=True,
                                                timeout=10)) as db:
            return int(db.execute("SELECT COUNT(*) FROM clients").fetchone()[0])
    except (sqlite3.Error, ValueError, OSError):
        return None


def execute(plan: RunPlan, *, out: TextIO = sys.stdout,
            site_factory: Callable[[RunPlan], SiteProcess | ExistingSite] | None = None,
            interruption: Interruption | None = None, gate: Any = None,
            progress_interval: float = DEFAULT_PLAIN_INTERVAL, terminal: bool | None = None) -> int:
    """Run the site and Locust for ``plan``, write the results and the summary; 0 when nothing was unexpected.

    While Locust runs, its master's status shows on ``out`` (in place on a terminal, else a line every
    ``progress_interval`` seconds; 0: none). ``gate`` (a loaded gate file) is judged on the results before the
    screen is printed, so the screen ends with the gate, the verdict that takes it in, and the result files; a
    failed run returns 1, else a crossed threshold 3.

    SIGINT or SIGTERM to this process stops Locust (which writes what it has) and the site, then writes a summary
    marked interrupted from what was collected; the return value is then 130 or 143 (128 + the signal's number).
    """
    results = ResultsDir(plan.out)
    results.write_plan(plan)
    interruption = interruption or Interruption()
    site = (site_factory or _site_process)(plan)
    locust_exit = -1
    before: int | None = None
    manifest: SiteManifest | None = None
    with interruption.catching():
        try:
            manifest = site.start(interruption=interruption)
            db_path = manifest.db_path
            if plan.site is not None:
                before = count_registrations_live(db_path)
            what = "site" if plan.site is not None else "mock site up"
            print(f"cmg-harness run: {what} (CCM token {manifest.ccm_token_lifetime_s:.0f} s, policy every "
                  f"{manifest.policy_interval_s:.0f} s); Locust: {plan.users} users x {plan.devices_per_user} devices "
                  f"for {plan.duration:g} s{' through ' + plan.target if plan.target else ''}"
                  f"{', chaos schedule ' + str(plan.chaos) if plan.chaos else ''}; results in {plan.out}",
                  file=out, flush=True)
            if not interruption.interrupted:
                with ProgressDisplay(results.file(PROGRESS), out, interval=progress_interval,
                                     terminal=terminal) as display:
                    locust_exit = _run_locust(plan, interruption, display)
        except RunInterrupted:
            pass  # the site was not up yet: nothing ran, the summary says so
        finally:
            site.stop()
        if interruption.interrupted:
            print(f"cmg-harness run: {interruption.signal_name} received: Locust and the site were stopped; "
                  f"writing what was collected", file=out, flush=True)
        registrations: int | None = None
        if manifest is not None:
            if plan.site is not None:
                registrations = count_registrations_live(manifest.db_path)
            elif manifest.db_path.is_file():
                registrations = count_registrations(manifest.db_path)
        summary = summarize(plan, manifest=manifest, locust_stats=or_none(results.read_locust_stats_json),
                            outcomes=or_none(results.read_outcomes), registrations=registrations,
                            locust_exit=locust_exit, registrations_before=before,
                            interrupted_by=interruption.signal_name)
        exit_code = 0 if summary["passed"] else 1
        if gate is not None:
            if interruption.interrupted:
                summary["gate"] = {"name": gate.name, "path": gate.path, "error": "the run was interrupted"}
            else:
                summary["gate"] = judge_gate(gate, results.path)
                summary["files"] += summary["gate"].get("files", [])
                exit_code = exit_code or int(summary["gate"].get("exit_code", 1))
        results.write_summary(summary)
        if plan.locustfile.stem == "capacity" and not interruption.interrupted:
            # A step run's capacity-planning report reads summary.json; the screen then lists it with the files.
            summary["capacity_report"] = _capacity_report(plan)
            summary["files"] += [summary["capacity_report"]["file"]] if "file" in summary["capacity_report"] else []
            results.write_summary(summary)
        from harness.report.run_html import report_after_run  # jinja2 and the report only when a run ends

        report_after_run(plan.out, out)  # after the gate and the capacity report: it shows both
        print(format_summary(summary), file=out, flush=True)
        # A signal that came while the summary was being written still ends the run as interrupted.
        if interruption.exit_code is not None:
            return interruption.exit_code
    return exit_code


def judge_gate(gate: Any, folder: Path) -> dict[str, Any]:
    """The gate judged on a finished run's results (its files written there): what the summary keeps of it, with
    the lines the screen prints; ``error`` (and exit code 1) when the results cannot be judged."""
    from harness.gates import ResultsError, check, format_results

    before = set(os.listdir(folder))
    try:
        result = check(gate, folder, out=io.StringIO())  # the screen prints the verdict in its place
    except ResultsError as error:
        return {"name": gate.name, "path": gate.path, "error": str(error), "exit_code": 1}
    return {"name": gate.name, "path": gate.path, "passed": result.passed, "exit_code": result.exit_code,
            "thresholds": len(result.results), "crossed": [item.threshold.id for item in result.failures],
            "text": format_results(result), "files": sorted(set(os.listdir(folder)) - before)}


def _capacity_report(plan: RunPlan) -> dict[str, str]:
    """A step run's capacity-planning report: ``file`` (its name in the results) or, when it cannot be made,
    ``error`` saying why (the run stands)."""
    from harness.report import ReportError, write_report

    try:
        return {"file": write_report(plan.out).name}
    except ReportError as error:
        return {"error": str(error)}


def _site_process(plan: RunPlan) -> SiteProcess | ExistingSite:
    if plan.site is not None:
        return ExistingSite(plan.site)
    return SiteProcess(site_command(plan), manifest_path(plan), ResultsDir(plan.out).file(SITE_LOG))


def _run_locust(plan: RunPlan, interruption: Interruption | None = None,
                progress: ProgressDisplay | None = None) -> int:
    """Locust's exit status. It runs as the leader of its own process group with its workers in it; whatever way it
    ends, no member of that group outlives this call."""
    interruption = interruption or Interruption()
    # Locust's own run time, its stop timeout, start-up and report writing, with room to spare on a busy machine.
    limit = plan.duration + STOP_TIMEOUT + 120.0
    log_path = ResultsDir(plan.out).file(LOCUST_LOG)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(locust_command(plan), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, process_group=0)
    try:
        deadline = time.monotonic() + limit
        while not _exited(process):
            if interruption.interrupted:
                _terminate(process)
                break
            if time.monotonic() > deadline:
                _terminate(process)
                raise RunError(f"Locust did not finish within {limit:g} s (see {log_path})")
            if progress is not None:
                progress.poll()
            time.sleep(POLL_SECONDS)
    finally:
        if not _exited(process):  # an error of our own on the way: Locust must not outlive the run
            _terminate(process)
        # The master has exited but is not reaped yet, so its PID (the group's ID) cannot be reused: the workers it
        # left behind (a master that died at start-up) are found by it and stopped.
        stop_group(process.pid)
        process.wait(30)
    return process.returncode


def _exited(process: subprocess.Popen[bytes]) -> bool:
    """True once ``process`` has exited, without reaping it (its PID stays its own until :meth:`Popen.wait`)."""
    if process.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _terminate(process: subprocess.Popen[bytes], timeout: float = LOCUST_TERM_TIMEOUT) -> None:
    """SIGTERM Locust's master by its PID (it stops its users and workers and writes its results), SIGKILL it after
    ``timeout``; returns once it has exited (not reaped)."""
    os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while not _exited(process) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    if not _exited(process):
        os.kill(process.pid, signal.SIGKILL)
        kill_deadline = time.monotonic() + 10.0
        while not _exited(process) and time.monotonic() < kill_deadline:
            time.sleep(0.05)
