"""The run's children die with it: members of a child's process group found in /proc and stopped by PID, and Locust's
workers left behind by a master that died are stopped when the run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.load import headless
from harness.load.interruption import INTERRUPTED_EXIT_CODES, Interruption
from harness.load.process_group import group_members, stop_group
from harness.results.plan import RunPlan
from tests.processes import alive

# A "master" that forks a "worker" into its process group, tells us the worker's PID, and exits at once: the worker,
# re-parented, would wait forever (what Locust's workers do when their master cannot bind its port).
ORPHANING = ("import os, sys, time\n"
             "pid = os.fork()\n"
             "if pid == 0:\n"
             "    time.sleep(120)\n"
             "    os._exit(0)\n"
             "print(pid, flush=True)\n"
             "sys.exit(3)\n")



def test_the_members_of_a_group_are_found_after_their_leader_died_and_stopped_by_pid() -> None:
    leader = subprocess.Popen([sys.executable, "-c", ORPHANING], stdout=subprocess.PIPE, text=True, process_group=0)
    try:
        assert leader.stdout is not None
        worker = int(leader.stdout.readline())
        assert leader.wait(30) == 3
        assert group_members(leader.pid) == [worker] and alive(worker)
        assert stop_group(leader.pid, timeout=5) == [worker]
        assert not alive(worker) and group_members(leader.pid) == []
    finally:
        for pid in group_members(leader.pid):
            os.kill(pid, signal.SIGKILL)


def test_a_group_that_ignores_sigterm_is_killed_after_the_timeout() -> None:
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time\n"
                                 "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
                                 "time.sleep(120)\n"], stdout=subprocess.PIPE, text=True, process_group=0)
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline().strip() == "ready"
        started = time.monotonic()
        assert stop_group(stubborn.pid, timeout=0.5) == [stubborn.pid]
        assert stubborn.wait(10) == -signal.SIGKILL and time.monotonic() - started < 5
    finally:
        if stubborn.poll() is None:
            stubborn.kill()


def test_workers_a_dead_locust_master_left_behind_are_stopped_when_the_run_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """_run_locust returns the master's status and no member of its group outlives it."""
    monkeypatch.setattr(headless, "locust_command", lambda plan: [sys.executable, "-c", ORPHANING])
    code = headless._run_locust(RunPlan(out=tmp_path, workers=1))
    assert code == 3
    worker = int((tmp_path / "locust.log").read_text().split()[0])
    assert not alive(worker)


def test_a_signal_is_noted_not_raised_and_gives_the_shells_exit_code() -> None:
    interruption = Interruption()
    before = signal.getsignal(signal.SIGTERM)
    with interruption.catching():
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not interruption.interrupted and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)  # a second signal is absorbed: the first one names the interruption
        time.sleep(0.05)
    assert (interruption.signal_name, interruption.exit_code) == ("SIGTERM", 143)
    assert signal.getsignal(signal.SIGTERM) == before  # the caller's handler is back
    assert INTERRUPTED_EXIT_CODES == {130, 143}
