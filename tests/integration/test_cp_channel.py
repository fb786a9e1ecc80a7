"""The connection point's outbound channel: the CP dials the CMG, the CMG sends requests down it, drops and reconnects."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cmg_protocol.clock import system_clock
from cmg_protocol.statuses import NO_CONNECTION_POINT
from harness.cli import main
from mock_site.asgi import respond
from mock_site.config import ConfigError, SiteConfig
from mock_site.cp_channel import (
    CHANNEL_SCOPE_KEY,
    KIND_PING,
    KIND_REQUEST,
    MAX_FRAME_BYTES,
    ChannelClient,
    ChannelClosed,
    ChannelHub,
    ChannelTarget,
    decode_request,
    decode_response,
    encode_frame,
    encode_request,
    encode_response,
    read_frame,
)
from mock_site.logs import SiteLogs
from mock_site.manifest import ManifestError, SiteManifest
from mock_site.pki import SitePki
from mock_site.testing import RunningSite, SiteClient, example_manifest, running_site
from mock_site.upstream import UpstreamError, UpstreamResponse


def _until(check: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``check()`` holds (fails the test after ``timeout``)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started


def _log(running: RunningSite, name: str) -> str:
    path = running.manifest.log_dir / name
    return path.read_text() if path.exists() else ""


@pytest.fixture(scope="module")
def channel_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSite]:
    with running_site(Path(tmp_path_factory.mktemp("channel")), time_scale=60) as running:
        yield running


@pytest.fixture
def channel(channel_site: RunningSite) -> Iterator[RunningSite]:
    channel_site.reset_faults()
    _until(lambda: channel_site.site.channel_hubs["cmg-channel"].connected() == ["cp"], 5)
    yield channel_site
    channel_site.reset_faults()


def _token_request(running: RunningSite) -> Any:
    with SiteClient(running.manifest) as client:
        return client.ccm_sts(client.entra_token())


# ------------------------------------------------------------------------------------------------------- framing
def test_frames_round_trip_and_bad_frames_close_the_channel() -> None:
    method, path, headers, body = decode_request(encode_request(7, "CCM_POST", "/x?y", {"a": "b"}, b"\x00body")[9:])
    assert (method, path, headers, body) == ("CCM_POST", "/x?y", {"a": "b"}, b"\x00body")
    answer = decode_response(encode_response(7, UpstreamResponse(503, "Nope", {"c": "d"}, b"payload"))[9:])
    assert (answer.status, answer.reason, answer.headers, answer.body) == (503, "Nope", {"c": "d"}, b"payload")

    async def read(data: bytes) -> Any:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await read_frame(reader)

    assert asyncio.run(read(encode_frame(KIND_PING, 3))).request_id == 3
    for bad, words in ((encode_frame(99, 1), "unknown frame kind 99"), (encode_frame(KIND_PING, 1)[:5], "closed"),
                       ((MAX_FRAME_BYTES + 1).to_bytes(4, "big") + bytes([KIND_REQUEST]) + b"\0\0\0\1", "limit")):
        with pytest.raises(ChannelClosed, match=words):
            asyncio.run(read(bad))
    with pytest.raises(ChannelClosed, match="not JSON"):
        decode_request(b"\0\0\0\2{x")
    with pytest.raises(ChannelClosed, match="lacks"):
        decode_response(encode_request(1, "GET", "/", {}, b"")[9:])


# ------------------------------------------------------------------------------------------------- the whole site
def test_requests_flow_down_the_channel_the_cp_opened(channel: RunningSite) -> None:
    manifest = channel.manifest
    hub = channel.site.channel_hubs["cmg-channel"]
    assert manifest.cp_hop == "channel" and manifest.channel_ports == (hub.port,)
    before = hub.forwarded
    answer = _token_request(channel)
    assert answer.status_code == 200, answer.text
    assert hub.forwarded == before + 1  # down the channel, not to the CP's HTTPS listener
    assert "connected over TCP-TLS on port" in _log(channel, "CMGService.log")
    assert "is established (TCP-TLS)" in _log(channel, "SMS_CLOUD_PROXYCONNECTOR.log")


def test_cp_disconnected_drops_the_channel_and_the_cp_reconnects(channel: RunningSite) -> None:
    hub = channel.site.channel_hubs["cmg-channel"]
    client = channel.site.channel_clients[0]
    connects = client.connects.get(0, 0)
    channel.set_fault("cp_disconnected", duration=30)
    _until(lambda: hub.connected() == [], 3)
    down = _token_request(channel)
    assert (down.status_code, down.reason_phrase) == (503, NO_CONNECTION_POINT)
    time.sleep(0.8)  # the CP keeps trying, the CMG keeps refusing
    assert hub.connected() == [] and client.connects.get(0, 0) == connects
    channel.clear_fault("cp_disconnected")
    assert _until(lambda: hub.connected() == ["cp"], 3) < 3  # the back-off is bounded (0.5 s at most)
    assert _token_request(channel).status_code == 200
    cmg_log = _log(channel, "CMGService.log")
    assert "Dropping the channel of connection point cp" in cmg_log
    assert "Refused connection point channel on port" in cmg_log and "fault cp_disconnected is on" in cmg_log
    cp_log = _log(channel, "SMS_CLOUD_PROXYCONNECTOR.log")
    assert "ERROR: Failed to build Tcp connection" in cp_log and f"with server localhost:{hub.port}" in cp_log
    assert "is closed: " in cp_log
    assert channel.site.faults.injections()["cp_disconnected"] >= 1  # the refused request counts as an injection


def test_a_cp_restart_closes_and_rebuilds_the_channel(channel: RunningSite) -> None:
    hub = channel.site.channel_hubs["cmg-channel"]
    client = channel.site.channel_clients[0]
    connects = client.connects.get(0, 0)

    async def stop() -> None:
        await client.stop()

    channel.call(stop())
    _until(lambda: hub.connected() == [], 3)
    assert _token_request(channel).status_code == 503
    assert "is closed: the connection point stopped" in _log(channel, "SMS_CLOUD_PROXYCONNECTOR.log")
    channel.call(client.start())
    # The CP counts a channel once the CMG has answered its first check; the hub, once the CP has said HELLO.
    _until(lambda: hub.connected() == ["cp"] and client.connects[0] == connects + 1, 3)
    assert _token_request(channel).status_code == 200
    channel.call(channel.site.restart_connection_points(0.2))
    _until(lambda: hub.connected() == ["cp"] and client.connects[0] == connects + 2, 3)
    assert _token_request(channel).status_code == 200


def test_the_cmg_refuses_a_channel_from_anyone_but_a_connection_point(channel: RunningSite) -> None:
    site = channel.site
    hub = site.channel_hubs["cmg-channel"]
    for name, bundle in (("device", site.pki.device_client_cert("channel-intruder")),
                         ("cmg identity", site.pki.cmg_client_cert()), ("no certificate", None)):
        context = ssl.create_default_context(cafile=str(site.pki.ca_file))
        if bundle is not None:
            bundle.configure_client_context(context)
        answer = b""
        with socket.create_connection(("127.0.0.1", hub.port), timeout=5) as raw:
            try:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(encode_frame(1, 0, b"cp"))
                    tls.sendall(encode_frame(KIND_PING, 0))
                    answer = tls.recv(64)
            except (ssl.SSLError, ConnectionError):
                pass  # refused: a reset, or (without a certificate) a failed handshake
        assert answer == b"", name  # no PONG: the channel was never taken
        assert hub.connected() == ["cp"], name
    cmg_log = _log(channel, "CMGService.log")
    assert "the client certificate is not a connection point's" in cmg_log
    assert "TLS handshake failed" in cmg_log


def test_direct_https_mode_is_kept(tmp_path: Path) -> None:
    with running_site(tmp_path, time_scale=60, cp_hop="https") as running:
        assert running.manifest.cp_hop == "https" and running.manifest.channel_ports == ()
        assert running.site.channel_hubs == {} and running.site.channel_clients == []
        assert _token_request(running).status_code == 200
        running.set_fault("cp_disconnected", duration=30)
        down = _token_request(running)
        assert (down.status_code, down.reason_phrase) == (503, NO_CONNECTION_POINT)


# --------------------------------------------------------------------------------- one channel, several requests
class _Peers:
    """A hub and a CP dialler over real TLS with the site's certificates, around a small app in place of the CP."""

    def __init__(self, tmp_path: Path, app: Any) -> None:
        self.pki = SitePki.load_or_create(tmp_path / "pki", clock=system_clock)
        self.logs = SiteLogs(tmp_path / "logs", clock=system_clock)
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.pki.cmg_server_cert(("localhost",), crl_url="http://127.0.0.1:1/site.crl").configure_server_context(server)
        server.load_verify_locations(cafile=str(self.pki.ca_file))
        server.verify_mode = ssl.CERT_REQUIRED
        self.hub = ChannelHub(instance=0, ssl_context=server, faults=_NoFaults(), logs=self.logs)
        self.app = app
        self.client_context = ssl.create_default_context(cafile=str(self.pki.ca_file))
        self.pki.cp_client_cert().configure_client_context(self.client_context)

    def client(self, context: ssl.SSLContext | None = None) -> ChannelClient:
        return ChannelClient(name="cp", app=self.app, targets=[ChannelTarget("127.0.0.1", self.hub.port, "localhost")],
                             ssl_context=context or self.client_context, logs=self.logs)


class _NoFaults:
    def get(self, name: str, role: str) -> None:
        return None


async def _echo_after_delay(scope: Any, receive: Any, send: Any) -> None:
    """Answers with its path after the delay the query names, and with the channel mark the CP app relies on."""
    delay = float(scope["query_string"].decode() or 0)
    await asyncio.sleep(delay)
    marked = CHANNEL_SCOPE_KEY in scope["extensions"]
    await respond(send, 200, f"{scope['path']} {marked}".encode())


def test_concurrent_requests_share_one_channel_and_come_back_by_id(tmp_path: Path) -> None:
    peers = _Peers(tmp_path, _echo_after_delay)

    async def main() -> tuple[list[str], float, int]:
        await peers.hub.start()
        client = peers.client()
        await client.start()
        assert await peers.hub.wait_connected(1, 5)
        started = time.monotonic()
        # Later requests answer first: answers must be matched by id, not by order.
        answers = await asyncio.gather(*(peers.hub.request("GET", f"/r{n}?{0.4 - n * 0.02:.2f}", {}, b"")
                                         for n in range(20)))
        elapsed = time.monotonic() - started
        connects = client.connects[0]
        await client.stop()
        await peers.hub.stop()
        return [answer.body.decode() for answer in answers], elapsed, connects

    bodies, elapsed, connects = asyncio.run(main())
    assert bodies == [f"/r{n} True" for n in range(20)]
    assert elapsed < 2.0  # together, not one after another (that would take 4.2 s)
    assert connects == 1
    peers.logs.close()


def test_no_channel_fails_fast_and_a_drop_fails_what_is_pending(tmp_path: Path) -> None:
    peers = _Peers(tmp_path, _echo_after_delay)

    async def main() -> tuple[str, str]:
        await peers.hub.start()
        with pytest.raises(UpstreamError) as none:
            await peers.hub.request("GET", "/x", {}, b"")
        client = peers.client()
        await client.start()
        assert await peers.hub.wait_connected(1, 5)
        pending = asyncio.create_task(peers.hub.request("GET", "/slow?5", {}, b""))
        await asyncio.sleep(0.2)
        peers.hub.drop_all("test")
        with pytest.raises(UpstreamError) as dropped:
            await pending
        await client.stop()
        await peers.hub.stop()
        return none.value.kind, dropped.value.kind

    assert asyncio.run(main()) == ("connect", "reset")
    peers.logs.close()


def test_the_cp_refuses_a_cmg_it_cannot_verify(tmp_path: Path) -> None:
    peers = _Peers(tmp_path / "site", _echo_after_delay)
    stranger = SitePki.load_or_create(tmp_path / "other" / "pki", clock=system_clock)
    context = ssl.create_default_context(cafile=str(stranger.ca_file))  # trusts another CA, not the site's
    peers.pki.cp_client_cert().configure_client_context(context)

    async def main() -> list[str]:
        await peers.hub.start()
        client = peers.client(context)
        await client.start()
        await asyncio.sleep(0.5)
        connected = peers.hub.connected()
        await client.stop()
        await peers.hub.stop()
        return connected

    assert asyncio.run(main()) == []
    peers.logs.close()
    cp_log = (tmp_path / "site" / "logs" / "SMS_CLOUD_PROXYCONNECTOR.log").read_text()
    assert "ERROR: Failed to build Tcp connection" in cp_log and "CERTIFICATE_VERIFY_FAILED" in cp_log


# ------------------------------------------------------------------------------------------- manifest, config, CLI
def test_the_manifest_carries_the_hop_and_the_channel_ports(tmp_path: Path) -> None:
    manifest = example_manifest(tmp_path, cp_hop="channel", channel_ports=(10140, 10141))
    data = json.loads(manifest.to_json())
    assert data["cp_hop"] == "channel" and data["channel_ports"] == [10140, 10141]
    assert SiteManifest.from_dict(data) == manifest
    for field, bad, words in (("cp_hop", "pigeon", "must be one of channel, https"),
                              ("channel_ports", [0], "must hold ports 1..65535"),
                              ("channel_ports", "10140", "must be a list of ports")):
        with pytest.raises(ManifestError, match=f"field '{field}' {words}"):
            SiteManifest.from_dict({**data, field: bad})


def test_config_and_up_refuse_an_unknown_hop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="connection point hop must be channel or https, got 'pigeon'"):
        SiteConfig(state_dir=tmp_path, cp_hop="pigeon")
    assert main(["up", "--state-dir", str(tmp_path), "--cp-hop", "pigeon"]) == 2
    assert "--cp-hop: invalid choice: 'pigeon'" in capsys.readouterr().err


def test_every_connection_point_dials_every_cmg_instance(tmp_path: Path) -> None:
    with running_site(tmp_path, time_scale=60, cmg_instances=2, connection_points=2) as running:
        hubs = running.site.channel_hubs
        assert sorted(hubs) == ["cmg-channel", "cmg1-channel"]
        assert running.manifest.channel_ports == tuple(hub.port for hub in hubs.values())
        for hub in hubs.values():
            _until(lambda hub=hub: sorted(hub.connected()) == ["cp", "cp1"], 5)
        second = running.manifest.cmg_urls[1]
        with SiteClient(running.manifest, cmg_url=second) as client:
            entra = client.entra_token()
            assert all(client.ccm_sts(entra).status_code == 200 for _ in range(4))
        assert hubs["cmg1-channel"].forwarded == 4 and hubs["cmg-channel"].forwarded == 0
        assert "Connection point cp1 connected over TCP-TLS" in _log(running, "CMGService_IN_1.log")


def test_in_process_hops_open_no_channel(tmp_path: Path) -> None:
    with running_site(tmp_path, time_scale=60, inprocess_hops=True) as running:
        assert running.site.channel_hubs == {} and running.manifest.cp_hop is None
        assert running.manifest.channel_ports == ()
        assert _token_request(running).status_code == 200
