"""Running a rendered nginx in the foreground, by its own PID, for tests and scripts: start, wait until it serves, stop."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

from harness.proxy.nginx import RenderedProxy

#: Where Debian puts the binary (``/usr/sbin`` is not on every user's PATH).
_FALLBACK_PATHS = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


class NginxError(RuntimeError):
    """nginx refused the configuration, did not start serving in time, or is not installed."""


def find_nginx() -> str | None:
    """The nginx binary on PATH or in the usual sbin folders, or None when it is not installed."""
    found = shutil.which("nginx")
    if found:
        return found
    return next((path for path in _FALLBACK_PATHS if Path(path).is_file()), None)


class NginxProcess:
    """One nginx master in the foreground (``daemon off``) serving a rendered directory; stopped by its PID."""

    def __init__(self, rendered: RenderedProxy, *, binary: str | None = None,
                 sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic) -> None:
        found = binary or find_nginx()
        if found is None:
            raise NginxError("nginx is not installed (Debian: apt-get install nginx)")
        self.binary = found
        self.rendered = rendered
        self._sleep = sleep
        self._monotonic = monotonic
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def check(self) -> None:
        """``nginx -t``: raise NginxError with nginx's own message when the configuration is refused."""
        result = subprocess.run(self.rendered.command(self.binary, test=True), capture_output=True, timeout=30,
                                check=False)
        if result.returncode != 0:
            raise NginxError(f"nginx refused {self.rendered.config_file}: "
                             f"{result.stderr.decode(errors='replace').strip()}")

    def start(self, timeout: float = 10.0) -> Self:
        """Start nginx and return once its port accepts connections (NginxError with the error log if it does not)."""
        if self._process is not None:
            raise NginxError(f"nginx for {self.rendered.directory} is already started (pid {self._process.pid})")
        if _accepts(self.rendered.host, self.rendered.port):
            # Something else serves there: waiting for the port would mistake it for this nginx.
            raise NginxError(f"{self.rendered.host}:{self.rendered.port} is already in use by another process "
                             f"(Address already in use); render again with another --listen port")
        self._process = subprocess.Popen(self.rendered.command(self.binary), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = self._monotonic() + timeout
        while self._monotonic() < deadline:
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                self._process = None
                raise NginxError(f"nginx exited at start: {stderr.strip() or self._log_tail()}")
            if _accepts(self.rendered.host, self.rendered.port):
                return self
            self._sleep(0.05)
        self.stop()
        raise NginxError(f"nginx did not serve {self.rendered.url} within {timeout:g} s: {self._log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown (SIGTERM to the master), then SIGKILL to it if it lingers; a no-op when not running."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        if process.stderr is not None:
            process.stderr.close()

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.rendered.error_log.read_text(errors="replace")
        except OSError:
            return "no error log"
        interesting = [line for line in text.splitlines() if "[notice]" not in line]
        return " | ".join(interesting[-lines:]) or "nothing in the error log"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
