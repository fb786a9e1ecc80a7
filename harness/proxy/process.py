"""Running a rendered nginx or HAProxy in the foreground, by its own PID, for tests and scripts: start, wait until it
serves, stop."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Self

from harness.proxy.haproxy import RenderedHaproxy
from harness.proxy.nginx import RenderedProxy

#: Where Debian puts the binaries (``/usr/sbin`` is not on every user's PATH).
_SBIN = ("/usr/sbin", "/usr/local/sbin")
_FALLBACK_PATHS = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


class ProxyProcessError(RuntimeError):
    """The proxy refused its configuration, did not start serving in time, or is not installed."""


class NginxError(ProxyProcessError):
    """nginx refused the configuration, did not start serving in time, or is not installed."""


class HaproxyError(ProxyProcessError):
    """HAProxy refused the configuration, did not start serving in time, or is not installed."""


def find_nginx() -> str | None:
    """The nginx binary on PATH or in the usual sbin folders, or None when it is not installed."""
    found = shutil.which("nginx")
    if found:
        return found
    return next((path for path in _FALLBACK_PATHS if Path(path).is_file()), None)


def find_haproxy() -> str | None:
    """The haproxy binary on PATH or in the usual sbin folders, or None when it is not installed."""
    found = shutil.which("haproxy")
    if found:
        return found
    return next((f"{folder}/haproxy" for folder in _SBIN if Path(f"{folder}/haproxy").is_file()), None)


class NginxProcess:
    """One nginx master in the foreground (``daemon off``) serving a rendered directory; stopped by its PID."""

    name = "nginx"
    error: type[ProxyProcessError] = NginxError

    def __init__(self, rendered: RenderedProxy | RenderedHaproxy, *, binary: str | None = None,
                 sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic) -> None:
        found = binary or self._find()
        if found is None:
            raise self.error(f"{self.name} is not installed (Debian: apt-get install {self.name})")
        self.binary = found
        self.rendered = rendered
        self._sleep = sleep
        self._monotonic = monotonic
        self._process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    @staticmethod
    def _find() -> str | None:
        return find_nginx()

    def _start_process(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.rendered.command(self.binary), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def check(self) -> None:
        """``nginx -t``: raise NginxError with nginx's own message when the configuration is refused."""
        result = subprocess.run(self.rendered.command(self.binary, test=True), capture_output=True, timeout=30,
                                check=False)
        if result.returncode != 0:
            raise self.error(f"{self.name} refused {self.rendered.config_file}: "
                             f"{(result.stderr or result.stdout).decode(errors='replace').strip()}")

    def start(self, timeout: float = 10.0) -> Self:
        """Start the proxy and return once its port accepts connections (an error with its log if it does not)."""
        if self._process is not None:
            raise self.error(f"{self.name} for {self.rendered.directory} is already started "
                             f"(pid {self._process.pid})")
        if _accepts(self.rendered.host, self.rendered.port):
            # Something else serves there: waiting for the port would mistake it for this proxy.
            raise self.error(f"{self.rendered.host}:{self.rendered.port} is already in use by another process "
                             f"(Address already in use); render again with another --listen port")
        self._process = self._start_process()
        deadline = self._monotonic() + timeout
        while self._monotonic() < deadline:
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                self._process = None
                self._close_output()
                raise self.error(f"{self.name} exited at start: {stderr.strip() or self._log_tail()}")
            if _accepts(self.rendered.host, self.rendered.port):
                return self
            self._sleep(0.05)
        self.stop()
        raise self.error(f"{self.name} did not serve {self.rendered.url} within {timeout:g} s: {self._log_tail()}")

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
        self._close_output()

    def _close_output(self) -> None:
        if self._output is not None:
            self._output.close()
            self._output = None

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


class HaproxyProcess(NginxProcess):
    """One HAProxy in the foreground (``-db``) serving a rendered directory; its output goes to its log file."""

    name = "haproxy"
    error = HaproxyError

    def __init__(self, rendered: RenderedHaproxy, *, binary: str | None = None,
                 sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__(rendered, binary=binary, sleep=sleep, monotonic=monotonic)

    @staticmethod
    def _find() -> str | None:
        return find_haproxy()

    def _start_process(self) -> subprocess.Popen[bytes]:
        # HAProxy logs (access log included) to stdout: the log file holds them and its start-up messages.
        self._output = self.rendered.error_log.open("ab")
        return subprocess.Popen(self.rendered.command(self.binary), stdin=subprocess.DEVNULL, stdout=self._output,
                                stderr=subprocess.STDOUT)


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
