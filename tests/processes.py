"""Helpers for tests that start processes of their own: stopping one by its handle, and asking whether a PID lives."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM, *, timeout: float = 60.0) -> int:
    """Send ``sig`` to ``process`` and wait for its exit code; killed if it has not exited within ``timeout``."""
    process.send_signal(sig)
    try:
        return process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process: a zombie (exited, not yet reaped) counts as gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
