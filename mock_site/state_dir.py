"""The site's state directory: made and proven writable, locked for the site's life, and the fault API's token in it.

One directory holds a site's PKI, database, logs, manifest and fault token; two sites writing into it would corrupt
each other, so a running site holds an exclusive lock on it (per role set, so split roles can share it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from pathlib import Path

FAULTS_TOKEN_NAME = "faults.token"
#: The lock a running site holds on its state directory (``.lock`` for a whole site, ``.lock-<roles>`` for a role set).
LOCK_NAME = ".lock"


class SiteStateError(ValueError):
    """The state directory cannot be used; the message names it and why."""


def prepare_state_dir(state_dir: Path) -> Path:
    """Create the state directory if needed and prove it is writable, or raise :class:`SiteStateError`."""
    state_dir = Path(state_dir)
    if state_dir.exists() and not state_dir.is_dir():
        raise SiteStateError(f"state dir {str(state_dir)!r} exists and is not a directory")
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        probe = state_dir / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise SiteStateError(f"state dir {str(state_dir)!r} is not usable: {exc.strerror or exc}") from None
    return state_dir


class StateDirLock:
    """An exclusive ``flock`` on a lock file in the state directory, held for the site's life, with the holder's PID.

    A second site on the same directory (and role set) would rewrite the manifest, ports and fault token of the first
    under it; it is refused instead, naming the PID that holds the lock. The kernel drops the lock when the holder's
    process ends, however it ends, so a killed site leaves nothing stale behind.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock and write this process's PID into the file, or raise :class:`SiteStateError` naming the
        holder."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise SiteStateError(f"cannot open the lock file {str(self.path)!r}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise SiteStateError(f"state dir {str(self.path.parent)!r} is in use by the site with PID {holder} "
                                 f"(lock {self.path.name}); stop it or choose another --state-dir") from None
        except OSError as exc:
            os.close(fd)
            raise SiteStateError(f"cannot lock {str(self.path)!r}: {exc.strerror or exc}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    @staticmethod
    def _holder(fd: int) -> str:
        # The holder writes its PID just after taking the lock: an empty file is a site in its first instant.
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return text if text.isdigit() else "(unknown: it is starting)"

    def release(self) -> None:
        """Drop the lock (safe to call twice); the file stays, it only matters while locked."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)


def load_or_create_token(state_dir: Path) -> str:
    """The fault API's bearer token from the state dir, or a new one in a file only its owner can ever read."""
    path = Path(state_dir) / FAULTS_TOKEN_NAME
    if path.exists():
        token = path.read_text().strip()
        if token:
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)  # written by an older version, which set the mode after writing
            return token
        path.unlink()  # empty: made anew below, so that its mode is ours
    token = secrets.token_urlsafe(32)
    # Mode 0600 from the moment the file exists (never readable by others, whatever the umask), O_EXCL so that a
    # file or link someone else put there first is never written through.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token)
    return token
