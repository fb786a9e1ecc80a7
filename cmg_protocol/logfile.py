"""ConfigMgr log files as CMTrace reads them: one line per entry, flushed at once, rolled over to ``.lo_`` at 250,000 bytes
(one history file), as the client and the site both do.

A file may be shared by several processes (a site served by worker processes): after
:meth:`LogWriter.share_between_processes`, every line is written under an exclusive ``flock`` on a lock file next to the
log, the size that decides the roll-over is the file's own (not this process's count), and a process whose descriptor
still points at a file another process rolled over reopens the log before writing. Each line is one ``write`` on an
``O_APPEND`` descriptor, so lines never interleave.
"""

from __future__ import annotations

import fcntl
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from .clock import Clock
from .logformat import cmtrace_line, smstrace_line

LogStyle = Literal["cmtrace", "smstrace"]

#: ConfigMgr client and server logs roll over at this size (one history file).
DEFAULT_MAX_BYTES = 250_000
#: The history file's suffix: ``CCM_STS.log`` rolls over to ``CCM_STS.lo_``.
HISTORY_SUFFIX = ".lo_"

INFO, WARNING, ERROR = 1, 2, 3



class LogConfigError(ValueError):
    """A log writer was asked for with an unusable name, style or size; the message names it."""


def log_thread_id(ident: int | None = None) -> int:
    """A Windows-looking thread id (4-5 digits, a multiple of 4) for a Python thread, stable for that thread."""
    if ident is None:
        ident = threading.get_ident()
    # Python thread idents are large, aligned addresses; mix the bits so neighbouring threads get unrelated ids.
    mixed = ((ident ^ (ident >> 17)) * 0x9E3779B1) & 0xFFFFFFFF
    return 1024 + (mixed % 15_744) * 4  # 1024 .. 63996, like the ids Windows hands out


class LogWriter:
    """Appends lines to one log file, flushing each line, and rolls the file over to ``.lo_`` at ``max_bytes``."""

    def __init__(
        self,
        path: Path,
        *,
        style: LogStyle,
        component: str,
        clock: Clock,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if style not in ("cmtrace", "smstrace"):
            raise LogConfigError(f"log style must be 'cmtrace' or 'smstrace': {style!r}")
        if not isinstance(max_bytes, int) or max_bytes < 1024:
            raise LogConfigError(f"log max_bytes must be an integer >= 1024: {max_bytes!r}")
        if not isinstance(component, str) or not component or not component.isprintable():
            raise LogConfigError(f"log component must be a printable, non-empty name: {component!r}")
        self.path = Path(path)
        self.history_path = self.path.with_suffix(HISTORY_SUFFIX)
        self.style: LogStyle = style
        self.component = component
        self.max_bytes = max_bytes
        self._clock = clock
        try:
            # Render one line now, so a component the format cannot carry fails here and not on the first write.
            self._line("", INFO, "", datetime.fromtimestamp(0, tz=UTC))
        except ValueError:
            raise LogConfigError(f"log component cannot be written in {style} lines: {component!r}") from None
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size
        self.lock_path = self.path.with_name(f".{self.path.name}.lock")
        self._shared = False
        self._owner = os.getpid()
        self._lock_fd = -1

    def share_between_processes(self) -> None:
        """From now on, other processes may append to the same file: coordinate writes and roll-overs with them."""
        with self._lock:
            self._shared = True

    def _open(self) -> int:
        # An unbuffered descriptor: each line reaches the kernel in one write, so a killed process loses nothing.
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def info(self, text: str, *, file: str = "") -> None:
        """Write an information line (CMTrace type 1)."""
        self.write(text, type=INFO, file=file)

    def warning(self, text: str, *, file: str = "") -> None:
        """Write a warning line (CMTrace type 2; SMS trace lines carry no type)."""
        self.write(text, type=WARNING, file=file)

    def error(self, text: str, *, file: str = "") -> None:
        """Write an error line (CMTrace type 3; SMS trace lines carry no type)."""
        self.write(text, type=ERROR, file=file)

    def write(self, text: str, *, type: int = INFO, file: str = "") -> None:
        """Write one entry in this file's style, timestamped by the clock and tagged with the calling thread."""
        line = self._line(text, type, file, datetime.fromtimestamp(self._clock(), tz=UTC))
        # LF line ends: CMTrace and OneTrace read them, and so does every line-based tool on the harness side.
        data = (line + "\n").encode("utf-8")
        with self._lock:
            if self._fd < 0:
                raise ValueError(f"log {self.path} is closed")
            if self._shared:
                self._write_shared(data)
                return
            if self._size and self._size + len(data) > self.max_bytes:
                self._roll_over()
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            self._size += len(data)

    def _write_shared(self, data: bytes) -> None:
        if self._owner != os.getpid():
            # A forked process: descriptors inherited from the parent share its open file description, and with it the
            # flock, so this process takes its own.
            self._owner = os.getpid()
            self._lock_fd = -1
            self._fd = self._open()
        if self._lock_fd < 0:
            self._lock_fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = -1
            if current != os.fstat(self._fd).st_ino:
                # Another process rolled the file over: this descriptor points at the history file now.
                os.close(self._fd)
                self._fd = self._open()
            size = os.fstat(self._fd).st_size
            if size and size + len(data) > self.max_bytes:
                self._roll_over()
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            self._size = size + len(data)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _line(self, text: str, type: int, file: str, when: datetime) -> str:
        thread = log_thread_id()
        if "\n" in text or "\r" in text:
            # One entry per line: a line break in a message (a client-sent path, a traceback) is written escaped, so
            # line-based readers stay in step and no one can forge an entry.
            text = text.replace("\r", "\\r").replace("\n", "\\n")
        if self.style == "cmtrace":
            return cmtrace_line(text, component=self.component, when=when, type=type, thread=thread, file=file)
        # SMS trace lines have no type and no source file: severity shows only in the text, as in ConfigMgr's own.
        return smstrace_line(text, component=self.component, when=when, thread=thread)

    def _roll_over(self) -> None:
        # Like ConfigMgr: the full file becomes the one history file, replacing any older one, and a new file starts.
        os.close(self._fd)
        os.replace(self.path, self.history_path)
        self._fd = self._open()
        self._size = 0

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1


class NullLogWriter:
    """A writer that drops every line: what ``SiteLogs`` hands out when logging is switched off."""

    def __init__(self, component: str) -> None:
        self.component = component

    def info(self, text: str, *, file: str = "") -> None:
        """Drop an information line."""

    def warning(self, text: str, *, file: str = "") -> None:
        """Drop a warning line."""

    def error(self, text: str, *, file: str = "") -> None:
        """Drop an error line."""

    def write(self, text: str, *, type: int = INFO, file: str = "") -> None:
        """Drop a line."""

    def close(self) -> None:
        """Nothing to close."""
