"""The simulated client's CMTrace logs: the files and lines the Entra walk-through shows on a Windows client.

Logging is optional: a lifecycle without a log builds no log text at all, which is what load runs with thousands of
devices use; a run that wants evidence gives a few (sampled) devices a :class:`ClientLogs` folder each.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, Self

from cmg_protocol.clock import Clock
from cmg_protocol.logfile import DEFAULT_MAX_BYTES, LogWriter
from harness.client import outcome as oc

CCMSETUP = "ccmsetup.log"
ADAL = "ADALOperationProvider.log"
CLIENT_ID_MANAGER = "ClientIDManagerStartup.log"
CCM_MESSAGING = "CcmMessaging.log"
LOCATION_SERVICES = "LocationServices.log"

#: The client's log files and the component name their lines carry.
CLIENT_LOG_FILES: dict[str, str] = {
    CCMSETUP: "ccmsetup",
    ADAL: "ADALOperationProvider",
    CLIENT_ID_MANAGER: "ClientIDManagerStartup",
    CCM_MESSAGING: "CcmMessaging",
    LOCATION_SERVICES: "LocationServices",
}

INFO, WARNING, ERROR = 1, 2, 3


class ClientLogError(ValueError):
    """A client log was asked for by a name the client does not write; the message names it."""


class ClientLog(Protocol):
    """Where a lifecycle writes its log lines: one of :data:`CLIENT_LOG_FILES`, a text, a CMTrace type."""

    def write(self, file: str, text: str, type: int = INFO) -> None: ...


class ClientLogs:
    """One device's log folder: a CMTrace file per client log, rolled over to ``.lo_`` at 250,000 bytes."""

    def __init__(self, log_dir: Path, *, clock: Clock, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.log_dir = Path(log_dir)
        self._clock = clock
        self._max_bytes = max_bytes
        self._writers: dict[str, LogWriter] = {}

    def write(self, file: str, text: str, type: int = INFO) -> None:
        """Append one line to ``file`` (e.g. ``ccmsetup.log``), opening it on first use."""
        writer = self._writers.get(file)
        if writer is None:
            component = CLIENT_LOG_FILES.get(file)
            if component is None:
                raise ClientLogError(f"the client writes no log called {file!r} (logs: {', '.join(CLIENT_LOG_FILES)})")
            writer = LogWriter(self.log_dir / file, style="cmtrace", component=component, clock=self._clock,
                               max_bytes=self._max_bytes)
            self._writers[file] = writer
        writer.write(text, type=type)

    def close(self) -> None:
        """Close every file this folder opened."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class MemoryLog:
    """A log that keeps ``(file, text, type)`` tuples in memory: for tests and for a step table's evidence."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, int]] = []

    def write(self, file: str, text: str, type: int = INFO) -> None:
        """Keep one line."""
        if file not in CLIENT_LOG_FILES:
            raise ClientLogError(f"the client writes no log called {file!r} (logs: {', '.join(CLIENT_LOG_FILES)})")
        self.lines.append((file, text, type))

    def texts(self, file: str | None = None) -> list[str]:
        """The texts written (to ``file`` only, when given), in order."""
        return [text for name, text, _ in self.lines if file is None or name == file]


def log_time(epoch_seconds: float) -> str:
    """A time as the client prints token expiry (``06/25/2020 08:29:35``), in UTC."""
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%m/%d/%Y %H:%M:%S")


def connection_lines(prefix: str, host: str, port: int, path: str, *, token_auth: bool, flags: str, options: str,
                     connection: bool = True, revocation_check: bool = True) -> list[str]:
    """The ccmhttp connection lines: ``<prefix>: Host=…, Path=…, Port=…, Protocol=https, CcmTokenAuth=…, Flags=…``."""
    lines = [(f"{prefix}: Host={host}, Path={path}, Port={port}, Protocol=https, CcmTokenAuth={int(token_auth)}, "
             f"Flags={flags}, Options={options}")]
    if connection:
        lines.append(f"Created connection on port {port}")
        if revocation_check:
            lines.append("Enabled SSL revocation check.")
    return lines


def wam_failure_lines(code: int, account: str) -> list[str]:
    """What ccmsetup logs when WAM cannot get a token for ``account`` (S-1-5-18 for the device token)."""
    return [
        "WAM token request failed. Status 5, Details 'AAD WAM extension error'",
        "Failed to get AAD token..",
        f"Unknown error (Error: {code:08X}; Source: Unknown)",
        f"Failed to get AAD token for '{account}' from WAM API. Error 0x{code:08x}",
    ]


def ccmhttp_error_lines(url: str, reply: object) -> list[str]:
    """The [CCMHTTP] error lines for a failed request: WinHTTP code and flags, or the HTTP status and its text."""
    reason = getattr(reply, "reason", "")
    if reason in oc.TRANSPORT_CODES and not hasattr(reply, "status"):
        code, flags = oc.TRANSPORT_CODES[reason]
        lines = [f"[CCMHTTP] ERROR: URL={url}, Code={code}, Text={oc.winhttp_text(code)}"]
        if flags is not None:
            # synthetic: not the public ConfigMgr format (the wording of the flags line)
            lines.append(f"[CCMHTTP] ERROR INFO: SecureFailureFlags=0x{flags:08x} ({', '.join(oc.flag_names(flags))})")
        return lines
    return [f"[CCMHTTP] ERROR INFO: StatusCode={getattr(reply, 'status', 0)} StatusText={reason}"]
