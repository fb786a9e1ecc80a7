"""Site log files in the formats admins read with CMTrace: CCM style for MP logs, SMS trace for CMG and connection point."""

from __future__ import annotations

import threading
from pathlib import Path

from cmg_protocol.clock import Clock
from cmg_protocol.logfile import DEFAULT_MAX_BYTES, LogConfigError, LogStyle, LogWriter, NullLogWriter

#: The site's log files: the line style and the component name each one's lines carry.
SITE_LOG_FILES: dict[str, tuple[LogStyle, str]] = {
    "CCM_STS.log": ("cmtrace", "CCM_STS"),
    "MP_RegistrationManager.log": ("cmtrace", "MP_RegistrationManager"),
    "MP_Location.log": ("cmtrace", "MP_LocationManager"),
    "MP_Policy.log": ("cmtrace", "MP_PolicyManager"),
    "MP_GetAuth.log": ("cmtrace", "MP_GetAuth_ISAPI"),
    "CMGService.log": ("smstrace", "CMGService"),
    "SMS_CLOUD_PROXYCONNECTOR.log": ("smstrace", "SMS_CLOUD_PROXYCONNECTOR"),
}


class SiteLogs:
    """The site's log folder: one writer per log file name, in the style and with the component ConfigMgr uses."""

    def __init__(self, log_dir: Path, *, clock: Clock, max_bytes: int = DEFAULT_MAX_BYTES, enabled: bool = True) -> None:
        self.log_dir = Path(log_dir)
        self.enabled = enabled
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._writers: dict[str, LogWriter | NullLogWriter] = {}
        self._shared = False

    def share_between_processes(self) -> None:
        """Worker processes write the same files: every writer, handed out already or later, coordinates with them."""
        with self._lock:
            self._shared = True
            writers = list(self._writers.values())
        for writer in writers:
            if isinstance(writer, LogWriter):
                writer.share_between_processes()

    def writer(self, name: str) -> LogWriter | NullLogWriter:
        """The writer of log file ``name`` (e.g. ``CCM_STS.log``); unknown ``.log`` names get CMTrace lines."""
        existing = self._writers.get(name)
        if existing is not None:
            return existing
        if (
            not isinstance(name, str)
            or not name.endswith(".log")
            or len(name) <= 4
            or Path(name).name != name
            or name.startswith(".")
            or not name.isprintable()
        ):
            raise LogConfigError(f"log name must be a plain file name ending in .log: {name!r}")
        style, component = SITE_LOG_FILES.get(name, ("cmtrace", name[:-4]))
        if name not in SITE_LOG_FILES and "CMGService" in name:
            # Per-instance copies (CMGService_IN_1.log, CMG-<name>-ProxyService_IN_1-CMGService.log) are CMGService logs.
            style, component = "smstrace", "CMGService"
        with self._lock:
            existing = self._writers.get(name)
            if existing is None:
                if self.enabled:
                    existing = LogWriter(
                        self.log_dir / name, style=style, component=component, clock=self._clock,
                        max_bytes=self.max_bytes,
                    )
                    if self._shared:
                        existing.share_between_processes()
                else:
                    existing = NullLogWriter(component)
                self._writers[name] = existing
            return existing

    def close(self) -> None:
        """Close every writer handed out."""
        with self._lock:
            writers, self._writers = list(self._writers.values()), {}
        for w in writers:
            w.close()
