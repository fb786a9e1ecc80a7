"""The Locust users' keep-alive HTTP/1.1 client against scripted TLS servers on loopback (threads, no gevent)."""

from __future__ import annotations

import json
import select
import socket
import ssl
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from harness.client import outcome as oc
from harness.load.wire import (
    LOCUST_ACCEPT_ENCODING,
    ConnectionClosed,
    ConnectionPool,
    request_head,
    requote,
    split_url,
    transport_error,
)
from mock_site.testing import RunningSite

UA = "python/gevent-http-client-test"
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

#: A script plays one connection: it gets the server side of the TLS socket and what the server saw so far.
Script = Callable[[ssl.SSLSocket, "Seen"], None]


@dataclass
class Seen:
    """What a scripted server saw: connections accepted and the requests read (raw bytes)."""

    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


def read_request(conn: ssl.SSLSocket, seen: Seen) -> bytes:
    """One whole request (head, and a body of its Content-Length), recorded; b"" if the client closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)
    seen.requests.append(data[:len(head) + 4] + body)
    return data


class ScriptedServer:
    """A TLS server for 127.0.0.1 whose n-th connection is played by the n-th script (the last one repeats)."""

    def __init__(self, ca: trustme.CA, scripts: list[Script]) -> None:
        self.seen = Seen()
        self._scripts = scripts
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        self._context = context
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        for _ in range(20):  # bounded: no test opens more connections
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            script = self._scripts[min(self.seen.connections, len(self._scripts) - 1)]
            self.seen.connections += 1
            threading.Thread(target=self._play, args=(raw, script), daemon=True).start()

    def _play(self, raw: socket.socket, script: Script) -> None:
        try:
            with self._context.wrap_socket(raw, server_side=True) as conn:
                script(conn, self.seen)
        except (OSError, ssl.SSLError):
            pass

    def close(self) -> None:
        self._listener.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(context)
    return context


@pytest.fixture
def serve(ca: trustme.CA) -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(*scripts: Script) -> ScriptedServer:
        servers.append(ScriptedServer(ca, list(scripts)))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def answer_all(reply: bytes = OK) -> Script:
    """Answer every request on the connection with ``reply`` until the client closes."""
    def script(conn: ssl.SSLSocket, seen: Seen) -> None:
        for _ in range(20):
            if not read_request(conn, seen):
                return
            conn.sendall(reply)
    return script


def answer_once_then_close(reply: bytes = OK) -> Script:
    def script(conn: ssl.SSLSocket, seen: Seen) -> None:
        if read_request(conn, seen):
            conn.sendall(reply)
    return script


def read_and_close(conn: ssl.SSLSocket, seen: Seen) -> None:
    """Take the request and close without a byte of answer (a keep-alive connection the server gave up on)."""
    read_request(conn, seen)


def pool_for(server: ScriptedServer, context: ssl.SSLContext | None, **options: float) -> ConnectionPool:
    origin, _ = split_url(server.url + "/")
    return ConnectionPool(origin, context, connect_timeout=options.get("connect_timeout", 5.0),
                          network_timeout=options.get("network_timeout", 5.0))


def send(pool: ConnectionPool, method: str = "GET", path: str = "/x", body: bytes = b"") -> tuple[int, bytes]:
    head = request_head(method, path, {}, len(body), host_header=pool.origin.host_header, default_user_agent=UA)
    answer = pool.request(method, head, body)
    return answer.status, answer.body


# --- requests on the wire -------------------------------------------------------------------------------------------


def test_a_post_goes_out_as_fasthttpsession_writes_it() -> None:
    """Its User-Agent in the default's place, its headers in order, then Accept-Encoding, Host, Content-Length."""
    head = request_head("POST", "/ccm_system/request", {"Content-Type": "text/xml",
                                                        "User-Agent": "ConfigMgr Messaging HTTP Sender"},
                        5, host_header="127.0.0.1:8443", default_user_agent=UA)
    assert head == (b"POST /ccm_system/request HTTP/1.1\r\nUser-Agent: ConfigMgr Messaging HTTP Sender\r\n"
                    b"Content-Type: text/xml\r\nAccept-Encoding: gzip, deflate, br\r\nHost: 127.0.0.1:8443\r\n"
                    b"Content-Length: 5\r\n\r\n")


def test_a_get_without_a_user_agent_carries_the_default_and_no_content_length() -> None:
    head = request_head("GET", "/SMS_MP/.sms_aut?MPLIST", {"Accept": "*/*"}, 0, host_header="cmg.example",
                        default_user_agent=UA)
    assert head == (f"GET /SMS_MP/.sms_aut?MPLIST HTTP/1.1\r\nUser-Agent: {UA}\r\nAccept: */*\r\n"
                    f"Accept-Encoding: {LOCUST_ACCEPT_ENCODING}\r\nHost: cmg.example\r\n\r\n").encode()


def test_an_empty_post_says_content_length_zero_and_named_headers_are_not_repeated() -> None:
    head = request_head("POST", "/t", {"host": "h", "accept-encoding": "identity"}, 0, host_header="x",
                        default_user_agent=UA)
    assert head == f"POST /t HTTP/1.1\r\nUser-Agent: {UA}\r\nhost: h\r\naccept-encoding: identity\r\n" \
                   f"Content-Length: 0\r\n\r\n".encode()


@pytest.mark.parametrize(("url", "host", "port", "host_header", "target"), [
    ("https://127.0.0.1:8443/a/b?c=d", "127.0.0.1", 8443, "127.0.0.1:8443", "/a/b?c=d"),
    ("https://cmg.example/a", "cmg.example", 443, "cmg.example", "/a"),
    ("http://[::1]:8080/x?", "::1", 8080, "[::1]:8080", "/x"),
    ("https://h:444?q=1#frag", "h", 444, "h:444", "/?q=1"),
    ("https://h/p?x={A}&y=a%20b#f", "h", 443, "h", "/p?x=%7BA%7D&y=a%20b"),
])
def test_urls_split_into_origin_and_requoted_target(url: str, host: str, port: int, host_header: str,
                                                    target: str) -> None:
    origin, got = split_url(url)
    assert (origin.host, origin.port, origin.host_header, got) == (host, port, host_header, target)


@pytest.mark.parametrize(("target", "sent"), [
    ("/SMS_MP/.sms_pol?{6AC3D65A-0AEA}.SHA256:AB", "/SMS_MP/.sms_pol?%7B6AC3D65A-0AEA%7D.SHA256:AB"),
    ("/a%41b%2Fc", "/aAb%2Fc"),  # an escaped unreserved letter is decoded, an escaped slash kept
    ("/a b", "/a%20b"),
    ("/100%zz", "/100%25zz"),  # no escape: the "%" itself is quoted
    ("/50%", "/50%"),
])
def test_targets_are_requoted_as_geventhttpclient_requotes_them(target: str, sent: str) -> None:
    assert requote(target) == sent


def test_a_remembered_requoting_is_the_one_computed_and_the_memo_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.load import wire

    monkeypatch.setattr(wire, "_REQUOTED_SIZE", 3)
    wire._REQUOTED.clear()
    targets = [f"/p?{{{n}}}%41" for n in range(7)]
    for target in targets + targets:
        assert requote(target) == wire._requote(target) == target.replace("{", "%7B").replace("}", "%7D")[:-3] + "A"
        assert len(wire._REQUOTED) <= 3


@pytest.mark.parametrize("url", ["ftp://h/x", "h/x", "https://:443/x", "https://h:0/x", "https://h:port/x"])
def test_a_url_that_is_no_absolute_http_url_is_refused_by_name(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        split_url(url)


# --- connections ------------------------------------------------------------------------------------------------------


def test_two_requests_share_one_kept_alive_connection(serve: Callable[..., ScriptedServer],
                                                      client_context: ssl.SSLContext) -> None:
    server = serve(answer_all())
    pool = pool_for(server, client_context)
    assert send(pool) == (200, b"ok")
    assert send(pool, "POST", "/y", b"body") == (200, b"ok")
    assert (server.seen.connections, pool.opened) == (1, 1)
    assert server.seen.requests[1].endswith(b"Content-Length: 4\r\n\r\nbody")
    pool.close()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_idle_connection_the_server_closed_is_replaced_before_use(serve: Callable[..., ScriptedServer],
                                                                     client_context: ssl.SSLContext,
                                                                     method: str) -> None:
    """The server answered and closed its end: the next request (even a POST, never sent twice) goes on a new one."""
    server = serve(answer_once_then_close(), answer_all())
    pool = pool_for(server, client_context)
    assert send(pool) == (200, b"ok")
    _wait_until_readable(pool)  # the server's close has reached the client
    assert send(pool, method, "/again") == (200, b"ok")
    assert (server.seen.connections, pool.opened, len(server.seen.requests)) == (2, 2, 2)


def _wait_until_readable(pool: ConnectionPool) -> None:
    for sock in pool._idle:
        select.select([sock], [], [], 5.0)


def test_a_get_the_server_closed_on_without_answering_is_sent_once_more(serve: Callable[..., ScriptedServer],
                                                                        client_context: ssl.SSLContext) -> None:
    server = serve(read_and_close, answer_all())
    pool = pool_for(server, client_context)
    assert send(pool) == (200, b"ok")
    assert (server.seen.connections, len(server.seen.requests)) == (2, 2)


def test_a_post_the_server_closed_on_without_answering_is_a_reset_and_not_sent_again(
        serve: Callable[..., ScriptedServer], client_context: ssl.SSLContext) -> None:
    server = serve(read_and_close, answer_all())
    pool = pool_for(server, client_context)
    with pytest.raises(ConnectionClosed) as caught:
        send(pool, "POST", "/ccm_system/request", b"x")
    assert len(server.seen.requests) == 1
    error = transport_error(caught.value, 1.0)
    assert (error.reason, error.detail) == (oc.RESET, "ConnectionClosed: connection closed.")


@pytest.mark.parametrize(("rst", "detail"), [
    (False, "ConnectionClosed: connection closed mid-answer."),
    # A reset discards what the client had not read yet: it may see no byte of the answer at all.
    (True, "ConnectionClosed: connection closed"),
])
def test_a_connection_cut_mid_answer_is_a_reset(serve: Callable[..., ScriptedServer], client_context: ssl.SSLContext,
                                                rst: bool, detail: str) -> None:
    def cut(conn: ssl.SSLSocket, seen: Seen) -> None:
        read_request(conn, seen)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        if rst:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    server = serve(cut)
    pool = pool_for(server, client_context)
    with pytest.raises(ConnectionClosed) as caught:
        send(pool, "POST", "/p", b"x")
    assert len(server.seen.requests) == 1  # a POST is never sent twice
    error = transport_error(caught.value, 1.0)
    assert error.reason == oc.RESET and error.detail.startswith(detail)


def test_a_get_cut_mid_answer_is_not_sent_again(serve: Callable[..., ScriptedServer],
                                               client_context: ssl.SSLContext) -> None:
    """Only a close before any byte of answer is retried (as geventhttpclient retries): a partial answer is a reset."""
    def cut(conn: ssl.SSLSocket, seen: Seen) -> None:
        read_request(conn, seen)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Len")

    server = serve(cut, answer_all())
    pool = pool_for(server, client_context)
    with pytest.raises(ConnectionClosed, match="mid-answer"):
        send(pool)
    assert len(server.seen.requests) == 1


def test_an_interim_answer_is_passed_over_for_the_final_one(serve: Callable[..., ScriptedServer],
                                                            client_context: ssl.SSLContext) -> None:
    def interim(conn: ssl.SSLSocket, seen: Seen) -> None:
        for _ in range(2):
            read_request(conn, seen)
            conn.sendall(b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n")
            conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone")

    server = serve(interim)
    pool = pool_for(server, client_context)
    head = request_head("POST", "/i", {}, 1, host_header=pool.origin.host_header, default_user_agent=UA)
    answer = pool.request("POST", head, b"x")
    assert (answer.status, answer.reason, answer.body, "x-interim" in answer.headers) == (201, "Created", b"done", False)
    assert send(pool, "POST", "/i", b"x") == (201, b"done") and pool.opened == 1


def test_a_certificate_from_an_unknown_ca_is_the_invalid_ca_reason(serve: Callable[..., ScriptedServer]) -> None:
    server = serve(answer_all())
    pool = pool_for(server, ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))  # no root CA: verification fails
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        send(pool)
    error = transport_error(caught.value, 1.0)
    assert error.reason == oc.TLS_INVALID_CA
    assert error.detail == "certificate verify failed: unable to get local issuer certificate (X509 error 20)"


def test_a_server_that_never_answers_is_a_timeout(serve: Callable[..., ScriptedServer],
                                                  client_context: ssl.SSLContext) -> None:
    done = threading.Event()

    def silent(conn: ssl.SSLSocket, seen: Seen) -> None:
        read_request(conn, seen)
        done.wait(10)

    server = serve(silent)
    pool = pool_for(server, client_context, network_timeout=0.3)
    with pytest.raises(TimeoutError) as caught:
        send(pool)
    done.set()
    assert transport_error(caught.value, 1.0).reason == oc.TIMEOUT


def test_a_refused_connection_is_the_connect_reason(client_context: ssl.SSLContext) -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    origin, _ = split_url(f"https://127.0.0.1:{port}/")
    pool = ConnectionPool(origin, client_context, connect_timeout=2.0, network_timeout=2.0)
    with pytest.raises(ConnectionRefusedError) as caught:
        send(pool)
    assert transport_error(caught.value, 1.0).reason == oc.CONNECT


def test_connection_close_from_the_server_is_honoured(serve: Callable[..., ScriptedServer],
                                                      client_context: ssl.SSLContext) -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    server = serve(answer_all(closing))
    pool = pool_for(server, client_context)
    assert send(pool) == (200, b"ok")
    assert not pool._idle  # not kept for the next request
    assert send(pool) == (200, b"ok")
    assert (server.seen.connections, pool.opened) == (2, 2)


def test_a_chunked_answer_is_read_whole_and_the_connection_kept(serve: Callable[..., ScriptedServer],
                                                                client_context: ssl.SSLContext) -> None:
    chunked = (b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\nX-CMG-Status-Text: CMG busy\r\n\r\n"
               b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    server = serve(answer_all(chunked))
    pool = pool_for(server, client_context)
    head = request_head("GET", "/c", {}, 0, host_header=pool.origin.host_header, default_user_agent=UA)
    answer = pool.request("GET", head)
    assert (answer.status, answer.reason, answer.body) == (503, "Service Unavailable", b"hello world")
    assert answer.headers["x-cmg-status-text"] == "CMG busy"
    assert send(pool) == (503, b"hello world")
    assert pool.opened == 1


def test_a_body_without_length_ends_with_the_connection(serve: Callable[..., ScriptedServer],
                                                        client_context: ssl.SSLContext) -> None:
    server = serve(answer_once_then_close(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end"))
    pool = pool_for(server, client_context)
    assert send(pool) == (200, b"to the end")
    assert not pool._idle


def test_bad_pool_settings_are_refused_by_name() -> None:
    origin, _ = split_url("https://127.0.0.1:1/")
    with pytest.raises(ValueError, match="timeouts must be > 0 s, got connect 0"):
        ConnectionPool(origin, None, connect_timeout=0, network_timeout=1)
    with pytest.raises(ValueError, match="pool size must be >= 1, got 0"):
        ConnectionPool(origin, None, connect_timeout=1, network_timeout=1, size=0)


# --- against Locust's own client (in a subprocess: Locust patches the process with gevent) ----------------------------

SAME_BYTES_SCRIPT = r'''
import json, socket, sys, threading
from locust.env import Environment
from locust.contrib.fasthttp import FastHttpSession
from geventhttpclient.url import requote_uri

from harness.load.users import GEVENTHTTPCLIENT_USER_AGENT
from harness.load.wire import ConnectionPool, request_head, requote, split_url

listener = socket.create_server(("127.0.0.1", 0))
port = listener.getsockname()[1]
seen = []


def play(conn):
    with conn:
        data = b""
        for _ in range(200):
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            lengths = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")]
            if sep and len(body) >= (lengths[0] if lengths else 0):
                seen.append(data.decode("latin-1"))
                data = b""
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def serve():
    for _ in range(4):
        conn, _ = listener.accept()
        threading.Thread(target=play, args=(conn,), daemon=True).start()


threading.Thread(target=serve, daemon=True).start()
base = f"http://127.0.0.1:{port}"
requests = [
    ("POST", base + "/ccm_system_windowsauth/request",
     {"Content-Type": 'multipart/mixed; boundary="aAbBcCdDv1234567890VxXyYzZ"',
      "User-Agent": "ConfigMgr Messaging HTTP Sender"}, b"--a\r\n\x00\xff body"),
    ("GET", base + "/SMS_MP/.sms_pol?{6AC3D65A-0AEA-4D69}.SHA256:AB&x=a%20b%41",
     {"ClientToken": "GUID:1;2026-01-01T00:00:00Z", "User-Agent": "SMS CCM 5.0"}, b""),
    ("POST", base + "/tenant/oauth2/token", {"Content-Type": "application/x-www-form-urlencoded"}, b"grant_type=x"),
    ("POST", base + "/empty", {}, b""),
    ("GET", base + "/CCM_Proxy_ServerAuth/AADAuthInfo?TenantID=abc", {"User-Agent": "SMS CCM 5.0"}, b""),
]
env = Environment()
session = FastHttpSession(base_url=base, request_event=env.events.request, user=None, insecure=False, max_redirects=0,
                          max_retries=0, concurrency=1)
for method, url, headers, body in requests:
    session.request(method, url, data=body or None, headers=headers, allow_redirects=False)
theirs = list(seen)
seen.clear()
origin, _ = split_url(base + "/")
pool = ConnectionPool(origin, None, connect_timeout=5, network_timeout=5)
for method, url, headers, body in requests:
    origin, target = split_url(url)
    pool.request(method, request_head(method, target, headers, len(body), host_header=origin.host_header,
                                      default_user_agent=GEVENTHTTPCLIENT_USER_AGENT), body)
targets = ["/a b", "/a%41b%2F", "/100%zz", "/50%", "/x?{y}", "/p%2", "/%C3%A9t%c3%a9", "/ü", "/a;b?c=d&e"]
print(json.dumps({"theirs": theirs, "ours": seen, "requote": [[requote(t), requote_uri(t)] for t in targets]}))
'''


def _script(script: str, *args: str) -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", script, *args], cwd=root, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_the_bytes_on_the_wire_are_those_fasthttpsession_sends() -> None:
    """Request line, header names, values and order, Host, Content-Length and body: byte for byte."""
    report = _script(SAME_BYTES_SCRIPT)
    assert len(report["theirs"]) == 5
    assert report["ours"] == report["theirs"]
    for ours, theirs in report["requote"]:
        assert ours == theirs



USER_SCRIPT = r'''
import json, socket, sys
from pathlib import Path

from locust.argument_parser import LocustArgumentParser
from locust.env import Environment
from locust.event import Events
from locust.stats import StatsError

from harness.client.events import STEP_AAD_INFO, Request
from harness.fleet.driver import DeviceRun
from harness.load.listeners import install, plugin_of
from harness.load.users import LifecycleUser, _readable

site, cmg_url, tenant, work = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
events = Events()
install(events)
parser = LocustArgumentParser()
events.init_command_line_parser.fire(parser=parser)
options = parser.parse_args(["--site", site, "--results-dir", str(work), "--devices-per-user", "1"])
env = Environment(events=events, parsed_options=options, host=cmg_url)
env.create_local_runner()
events.init.fire(environment=env, runner=env.runner, web_ui=None)
fired = []
events.request.add_listener(lambda **kw: fired.append(
    {key: (type(value).__name__ if key == "exception" else value) for key, value in kw.items()
     if key in ("request_type", "name", "response_length", "exception", "context", "url")}))


class Device(LifecycleUser):
    host = cmg_url


user = Device(env)
device = DeviceRun(0, user.make_lifecycle(user.device_profile(0).with_traits(nocrlcheck=True)))
with socket.create_server(("127.0.0.1", 0)) as placeholder:
    closed = placeholder.getsockname()[1]
replies = []
for url in (f"{cmg_url}/CCM_Proxy_ServerAuth/AADAuthInfo?TenantID={tenant}",
            f"{cmg_url}/CCM_Proxy_ServerAuth/AADAuthInfo?TenantID=00000000-0000-0000-0000-00000000dead",
            f"https://127.0.0.1:{closed}/CCM_Proxy_ServerAuth/AADAuthInfo"):
    reply = user._send(device, Request("GET", url, {}, b"", "AADAuthInfo", "install", STEP_AAD_INFO))
    replies.append([type(reply).__name__, getattr(reply, "status", None), getattr(reply, "reason", None),
                    getattr(reply, "content_type", None)])
# A device that checks revocation downloads the CRL first, over the same kind of connection, reported as before.
checking = DeviceRun(1, user.make_lifecycle(user.device_profile(1).with_traits(nocrlcheck=False, root_ca_present=True)))
first_fired = list(fired)
connections = sum(pool.opened for pool in user._pools.values())
fired.clear()
crl_reply = user._send(checking, Request("GET", f"{cmg_url}/CCM_Proxy_ServerAuth/AADAuthInfo?TenantID={tenant}", {},
                                         b"", "AADAuthInfo", "install", STEP_AAD_INFO))
crl_fired = list(fired)
entry = env.stats.get("AADAuthInfo", "GET")
stats = [entry.num_requests, entry.num_failures]
errors = sorted((error.method, error.name, StatsError.parse_error(error.error), error.occurrences)
                for error in env.stats.errors.values())
ours, theirs = socket.socketpair()
idle = _readable(ours)
theirs.close()
readable = [idle, _readable(ours)]
print(json.dumps({"replies": replies, "fired": first_fired, "errors": errors,
                  "connections": connections,
                  "stats": stats, "readable": readable,
                  "crl": [type(crl_reply).__name__, getattr(crl_reply, "status", None), crl_fired,
                          type(checking.tls).__name__]}))
plugin_of(env).on_quit()
'''


def test_the_user_reports_to_locust_what_fasthttpsession_reported(site: RunningSite, tmp_path: Path) -> None:
    """Each request fires Locust's request event once, as FastHttpSession did: method, name, URL, body length, and for
    a status outside 2xx/3xx a LocustBadStatusCode; a connection refused is the exception itself."""
    report = _script(USER_SCRIPT, str(site.manifest_path), str(site.manifest.cmg_url), str(site.manifest.tenant_id),
                     str(tmp_path))
    ok, refused_tenant, refused = report["replies"]
    assert ok[:2] == ["Response", 200] and ok[3].startswith("application/json")
    assert refused_tenant[0] == "Response" and refused_tenant[1] >= 400
    assert refused[:3] == ["TransportError", None, oc.CONNECT]
    assert [(event["request_type"], event["name"], event["exception"], event["context"]) for event in report["fired"]] \
        == [("GET", "AADAuthInfo", "NoneType", {}), ("GET", "AADAuthInfo", "LocustBadStatusCode", {}),
            ("GET", "AADAuthInfo", "ConnectionRefusedError", {})]
    assert report["fired"][0]["response_length"] > 0 and report["fired"][2]["response_length"] == 0
    assert report["fired"][1]["url"].endswith("TenantID=00000000-0000-0000-0000-00000000dead")
    assert report["stats"] == [4, 2]  # the three above and the revocation-checking device's
    assert [error[:2] for error in report["errors"]] == [["GET", "AADAuthInfo"], ["GET", "AADAuthInfo"]]
    assert any(error[2].startswith("LocustBadStatusCode(") and f"code={refused_tenant[1]}" in error[2]
               for error in report["errors"]), report["errors"]
    assert report["connections"] == 1  # the two answers from the site came over one kept-alive connection
    assert report["readable"] == [False, True]  # the idle look: quiet while open, readable once the peer closed
    reply_type, status, crl_fired, held = report["crl"]
    assert (reply_type, status, held) == ("Response", 200, "tuple")  # the device holds the CRL it downloaded
    assert [(event["request_type"], event["exception"]) for event in crl_fired] == [("GET", "NoneType")] * 2
    assert crl_fired[0]["name"].endswith(".crl") and crl_fired[0]["url"].startswith("http://127.0.0.1:")
    assert crl_fired[0]["response_length"] > 0 and crl_fired[1]["name"] == "AADAuthInfo"
