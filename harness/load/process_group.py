"""The processes of a child's own process group, found in ``/proc`` and stopped one by one by PID.

The run starts the site and Locust each as the leader of a new process group. Locust's ``--processes`` workers are
forked into their master's group and stay in it when the master dies (a master that could not bind its port leaves
them waiting for it forever): the group ID still names them after they are re-parented, so they can be found and
stopped by their PIDs. Linux never hands out a PID that is still in use as a process group ID, so no stranger can
be in the group.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

PROC = Path("/proc")
#: How long members get to stop after SIGTERM before they are sent SIGKILL.
GROUP_STOP_TIMEOUT = 10.0
#: How long SIGKILLed members get to disappear (the kernel's part) before the caller moves on.
KILL_WAIT = 2.0


def _stat_fields(stat_text: str) -> list[str]:
    # /proc/<pid>/stat: "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses, so split after the last ')'.
    return stat_text[stat_text.rindex(")") + 2:].split()


def group_members(pgid: int, *, proc: Path = PROC) -> list[int]:
    """PIDs of the live processes (zombies left out) whose process group is ``pgid``."""
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields((entry / "stat").read_text())
        except (OSError, ValueError):
            continue  # gone while we looked
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return sorted(members)


def stop_group(pgid: int, *, timeout: float = GROUP_STOP_TIMEOUT, proc: Path = PROC,
               clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> list[int]:
    """SIGTERM every member of ``pgid`` by PID, SIGKILL those still there after ``timeout``; the PIDs found."""
    found = group_members(pgid, proc=proc)
    for pid in found:
        _signal(pid, signal.SIGTERM)
    deadline = clock() + timeout
    while group_members(pgid, proc=proc) and clock() < deadline:
        sleep(0.1)
    for pid in group_members(pgid, proc=proc):
        _signal(pid, signal.SIGKILL)
    deadline = clock() + KILL_WAIT
    while group_members(pgid, proc=proc) and clock() < deadline:
        sleep(0.05)
    return found


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # ended on its own meanwhile
