"""Each listener bounds what a client can hold: header timeout (TLS handshake included), header sizes, open connections."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cmg_protocol import urlmap
from mock_site.limits import ConnectionLimits
from mock_site.manifest import SiteManifest
from mock_site.testing import RunningSite, SiteClient, running_site

HEADER_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 16


@pytest.fixture(scope="module")
def limited_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSite]:
    limits = ConnectionLimits(header_timeout_s=HEADER_TIMEOUT_S, max_connections=MAX_CONNECTIONS)
    with running_site(Path(tmp_path_factory.mktemp("limited-site")), time_scale=60, logs_enabled=False,
                      connection_limits=limits) as running:
        yield running


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _tls(site: RunningSite, timeout: float = 10.0) -> ssl.SSLSocket:
    """A TLS connection to the CMG, handshake done, nothing sent."""
    context = ssl.create_default_context(cafile=site.manifest.ca_file)
    raw = socket.create_connection(_address(site.manifest.cmg_url), timeout=timeout)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _read_all(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    """Everything the server sends until it closes (bounded)."""
    data = b""
    while len(data) < limit:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            break
        if not chunk:
            break
        data += chunk
    return data


def _status_line(answer: bytes) -> str:
    return answer.split(b"\r\n", 1)[0].decode("latin-1")


def _request(site: RunningSite, head: bytes) -> bytes:
    with _tls(site) as sock:
        try:
            sock.sendall(head)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # refused while still sending: the answer was written before the close
        return _read_all(sock)


def _aad_target(site: RunningSite) -> bytes:
    return urlmap.aad_auth_info_path(site.manifest.tenant_id).encode()


def test_a_header_over_16_kib_is_refused_with_431_and_the_limit_in_the_reason(limited_site: RunningSite) -> None:
    """One header line over IIS's 16 KiB MaxFieldLength is answered 431 naming the limit; the app never runs."""
    head = b"GET " + _aad_target(limited_site) + b" HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (17 * 1024) + b"\r\n\r\n"
    answer = _request(limited_site, head)
    assert _status_line(answer) == "HTTP/1.1 431 Header Field Too Long (limit 16384 bytes)"
    assert b"connection: close" in answer.lower()


def test_headers_over_the_total_are_refused_with_431(limited_site: RunningSite) -> None:
    """Several headers each under 16 KiB but over 64 KiB together are refused as a request too long."""
    lines = b"".join(b"X-Part-%d: %s\r\n" % (i, b"b" * 15000) for i in range(5))
    answer = _request(limited_site, b"GET " + _aad_target(limited_site) + b" HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")
    assert _status_line(answer) == "HTTP/1.1 431 Request Too Long (headers over 65536 bytes)"


def test_a_header_that_never_ends_is_refused_after_the_total_not_read_to_its_end(limited_site: RunningSite) -> None:
    """A 64 MiB header is refused once the total is passed: the site answers and closes long before it is sent."""
    with _tls(limited_site) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Huge: ")
        sent, chunk = 0, b"c" * 65536
        with pytest.raises((BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError)):
            while sent < 64 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
        assert sent < 8 * 1024 * 1024


def test_a_request_target_over_16_kib_is_refused_with_414(limited_site: RunningSite) -> None:
    """The request line is held to the same 16 KiB as a header line."""
    answer = _request(limited_site, b"GET /" + b"p" * (17 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _status_line(answer) == "HTTP/1.1 414 URL Too Long (limit 16384 bytes)"


def test_headers_within_the_limits_are_served(limited_site: RunningSite) -> None:
    """A request with a 15 KiB header line is under the limits and reaches the CMG."""
    head = b"GET " + _aad_target(limited_site) + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " \
        + b"a" * 15000 + b"\r\n\r\n"
    assert _status_line(_request(limited_site, head)) == "HTTP/1.1 200 OK"


@pytest.mark.parametrize("partial", [b"", b"GET / HTTP/1.1\r\nHost: x\r\n", b"CCM_"])
def test_a_connection_without_complete_headers_is_closed_after_the_header_timeout(limited_site: RunningSite,
                                                                                   partial: bytes) -> None:
    """Nothing, part of the headers, or part of the verb: the site drops the connection when the timeout passes."""
    with _tls(limited_site) as sock:
        started = time.monotonic()
        if partial:
            sock.sendall(partial)
        assert _read_all(sock) == b""  # dropped without an answer
        elapsed = time.monotonic() - started
    assert HEADER_TIMEOUT_S - 0.5 <= elapsed <= HEADER_TIMEOUT_S + 5


def test_a_connection_that_never_starts_tls_is_closed_after_the_header_timeout(limited_site: RunningSite) -> None:
    """The TLS handshake runs under the header timeout too (asyncio's own default would be 60 s)."""
    with socket.create_connection(_address(limited_site.manifest.cmg_url), timeout=30) as sock:
        started = time.monotonic()
        assert sock.recv(1024) == b""
        elapsed = time.monotonic() - started
    assert HEADER_TIMEOUT_S - 0.5 <= elapsed <= HEADER_TIMEOUT_S + 5


def test_a_kept_alive_connection_gets_the_header_timeout_for_its_next_request(limited_site: RunningSite) -> None:
    """After a served request, a second request whose headers stall is dropped when the timeout passes."""
    with _tls(limited_site) as sock:
        sock.sendall(b"GET " + _aad_target(limited_site) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while b"\r\n\r\n" not in first:
            first += sock.recv(65536)
        head, _, body = first.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.lower().split(b"\r\n")
                          if line.startswith(b"content-length:")))
        while len(body) < length:
            body += sock.recv(65536)
        assert _status_line(first) == "HTTP/1.1 200 OK"
        time.sleep(0.2)
        sock.sendall(b"GET " + _aad_target(limited_site) + b" HTTP/1.1\r\n")
        started = time.monotonic()
        assert _read_all(sock) == b""
        assert time.monotonic() - started <= HEADER_TIMEOUT_S + 5


def test_connections_beyond_the_cap_are_answered_503_naming_the_cap(limited_site: RunningSite) -> None:
    """With the cap of open connections held, a new one is told 503 with the cap in the reason and closed."""
    with ExitStack() as stack:
        for _ in range(MAX_CONNECTIONS):
            stack.enter_context(_tls(limited_site))
        with _tls(limited_site) as extra:
            answer = _read_all(extra)
        assert _status_line(answer) == \
            f"HTTP/1.1 503 Connection Limit Reached ({MAX_CONNECTIONS} connections on this listener)"
    # The held connections are closed: the listener serves again.
    deadline = time.monotonic() + 10
    while True:
        head = b"GET " + _aad_target(limited_site) + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        status = _status_line(_request(limited_site, head))
        if status == "HTTP/1.1 200 OK" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status == "HTTP/1.1 200 OK"


def test_the_site_client_still_works_under_the_limits(limited_site: RunningSite) -> None:
    """Real exchanges (Entra token, CCM token) fit well inside the header limits."""
    with SiteClient(limited_site.manifest) as client:
        assert client.ccm_token()


@pytest.mark.parametrize("settings", [{"header_timeout_s": 0.0}, {"header_timeout_s": float("nan")},
                                      {"max_header_bytes": 10}, {"max_connections": 0},
                                      {"max_header_bytes": 70_000, "max_request_headers_bytes": 65_536}])
def test_unusable_limits_are_refused_naming_the_value(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        ConnectionLimits(**settings)  # type: ignore[arg-type]


# --- slow clients against a site in its own process, so that its memory is its own -------------------------------

_SITE_PROCESS = """
import json, sys
from pathlib import Path
from mock_site.limits import ConnectionLimits
from mock_site.testing import running_site
with running_site(Path(sys.argv[1]), time_scale=60, logs_enabled=False,
                  connection_limits=ConnectionLimits(header_timeout_s=float(sys.argv[2]))) as site:
    print(json.dumps(site.manifest.to_dict()), flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


@pytest.mark.slow
def test_a_thousand_idle_connections_are_closed_and_memory_returns(tmp_path: Path) -> None:
    """1,000 TLS connections that send nothing are dropped at the header timeout; the site serves meanwhile, and its
    RSS comes back to within 20 % of where it started."""
    import json
    import os
    import subprocess
    import sys

    idle, timeout_s = 1000, 20.0
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    process = subprocess.Popen([sys.executable, "-c", _SITE_PROCESS, str(tmp_path / "site"), str(timeout_s)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert process.stdout is not None
        manifest = SiteManifest.from_dict(json.loads(process.stdout.readline()))
        site = RunningSite(site=None, manifest=manifest, loop=None)  # type: ignore[arg-type]
        with SiteClient(manifest) as client:
            client.ccm_token()  # warm: the first exchanges allocate what the site keeps anyway
            time.sleep(1.0)
            before = _rss_kib(process.pid)
            with ExitStack() as stack:
                started = time.monotonic()
                held = [stack.enter_context(_tls(site, timeout=timeout_s * 3)) for _ in range(idle)]
                opened_s = time.monotonic() - started
                assert opened_s < timeout_s / 2, f"opening {idle} connections took {opened_s:.1f} s"
                during = _rss_kib(process.pid)
                assert client.ccm_token()  # a normal client is served while they are held
                closed = sum(1 for sock in held if _read_all(sock) == b"")
                waited_s = time.monotonic() - started
            assert closed == idle
            assert waited_s < timeout_s + 15
            deadline = time.monotonic() + 10  # the site hands memory back within a few seconds of the closes
            while (after := _rss_kib(process.pid)) > before * 1.2 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert client.ccm_token()
        print(f"site RSS: {before / 1024:.0f} MiB before, {during / 1024:.0f} MiB holding {idle} idle connections, "
              f"{after / 1024:.0f} MiB after they were dropped")
        assert during > before + idle * 100, "the idle connections should have cost memory while held"
        assert after <= before * 1.2
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
