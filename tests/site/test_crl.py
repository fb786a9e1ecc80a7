"""Specification of the CRL distribution point app and the CRL faults it applies."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from cmg_protocol.clock import FakeClock
from mock_site.crl import CRL_PATH, CRL_PEM_PATH, DER_CONTENT_TYPE, DROPPED, crl_app
from mock_site.faults import FaultRegistry
from mock_site.pki import SitePki
from mock_site.server import AbortConnection, ASGIApp, Listener, ServerGroup


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
def pki(tmp_path: Path, clock: FakeClock) -> SitePki:
    return SitePki.load_or_create(tmp_path / "pki", clock=clock)


@pytest.fixture
def faults(clock: FakeClock) -> FaultRegistry:
    return FaultRegistry(clock, random.Random(7))


class Recorder:
    """Collects what the app hands to its metrics hook and its sleep function."""

    def __init__(self) -> None:
        self.observed: list[tuple[str, int, int]] = []
        self.slept: list[float] = []

    def hook(self, path: str, status: int, size: int) -> None:
        self.observed.append((path, status, size))

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


class AppClient:
    """Sends one request at a time straight into an ASGI app (app exceptions propagate to the test)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def request(self, method: str, path: str) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                return await http.request(method, path)

        return asyncio.run(send())

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)


@pytest.fixture
def client(pki: SitePki, faults: FaultRegistry, recorder: Recorder) -> AppClient:
    return AppClient(crl_app(pki, faults=faults, metrics_hook=recorder.hook, sleep=recorder.sleep))


def test_serves_the_current_crl_as_der(client: AppClient, pki: SitePki) -> None:
    """GET /pki/site.crl answers the PKI's CRL in DER with the pkix-crl content type."""
    response = client.get(CRL_PATH)
    assert response.status_code == 200
    assert response.headers["content-type"] == DER_CONTENT_TYPE
    crl = x509.load_der_x509_crl(response.content)
    assert crl.is_signature_valid(pki.ca_certificate.public_key())  # type: ignore[arg-type]


def test_serves_the_same_crl_as_pem(client: AppClient) -> None:
    """GET /pki/site.crl.pem answers the same CRL, PEM-encoded."""
    der = client.get(CRL_PATH).content
    pem = client.get(CRL_PEM_PATH).content
    assert pem.startswith(b"-----BEGIN X509 CRL-----")
    assert x509.load_pem_x509_crl(pem) == x509.load_der_x509_crl(der)


def test_a_revoked_serial_appears_in_the_served_crl(client: AppClient, pki: SitePki) -> None:
    """After pki.revoke() the next download lists the serial (how cmg_cert_revoked reaches devices)."""
    serial = pki.cmg_server_cert(crl_url="http://127.0.0.1:1/pki/site.crl").serial
    pki.revoke(serial)
    crl = x509.load_der_x509_crl(client.get(CRL_PATH).content)
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/pki/other.crl", 404), ("POST", CRL_PATH, 405)])
def test_other_requests_are_refused(client: AppClient, method: str, path: str, status: int) -> None:
    """Only GET of the two CRL paths is served."""
    assert client.request(method, path).status_code == status


def test_crl_expired_serves_a_crl_past_next_update(client: AppClient, faults: FaultRegistry, clock: FakeClock) -> None:
    """With crl_expired on, the served CRL's nextUpdate lies in the past."""
    faults.set("crl_expired")
    crl = x509.load_der_x509_crl(client.get(CRL_PATH).content)
    assert crl.next_update_utc is not None
    assert crl.next_update_utc.timestamp() < clock()


def test_crl_expired_off_again_serves_a_fresh_crl(client: AppClient, faults: FaultRegistry, clock: FakeClock) -> None:
    """Clearing crl_expired brings back a CRL valid into the future."""
    faults.set("crl_expired")
    client.get(CRL_PATH)
    faults.clear("crl_expired")
    crl = x509.load_der_x509_crl(client.get(CRL_PATH).content)
    assert crl.next_update_utc is not None
    assert crl.next_update_utc.timestamp() > clock()


def test_crl_slow_waits_the_configured_latency(client: AppClient, faults: FaultRegistry, recorder: Recorder) -> None:
    """With crl_slow on, the CDP waits latency_ms before it answers, and then answers normally."""
    faults.set("crl_slow", params={"latency_ms": 1500})
    response = client.get(CRL_PATH)
    assert recorder.slept == [1.5]
    assert response.status_code == 200


def test_no_fault_means_no_wait(client: AppClient, recorder: Recorder) -> None:
    """Without crl_slow the CDP does not sleep."""
    client.get(CRL_PATH)
    assert recorder.slept == []


def test_crl_unreachable_aborts_instead_of_answering(client: AppClient, faults: FaultRegistry) -> None:
    """With crl_unreachable on, the app raises AbortConnection so the server drops the connection."""
    faults.set("crl_unreachable")
    with pytest.raises(AbortConnection):
        client.get(CRL_PATH)


def test_crl_unreachable_leaves_other_paths_alone(client: AppClient, faults: FaultRegistry) -> None:
    """The fault targets the CRL download, not unknown paths (those still get 404)."""
    faults.set("crl_unreachable")
    assert client.get("/nothing-here").status_code == 404


def test_fault_injections_are_counted(client: AppClient, faults: FaultRegistry) -> None:
    """Each download hit by a CRL fault counts one injection of that fault."""
    faults.set("crl_expired")
    client.get(CRL_PATH)
    client.get(CRL_PEM_PATH)
    assert faults.injections()["crl_expired"] == 2


def test_metrics_hook_sees_served_and_dropped_requests(
    client: AppClient, faults: FaultRegistry, recorder: Recorder
) -> None:
    """The hook gets (path, 200, bytes) for a download and (path, DROPPED, 0) for a dropped one."""
    size = len(client.get(CRL_PATH).content)
    faults.set("crl_unreachable")
    with pytest.raises(AbortConnection):
        client.get(CRL_PEM_PATH)
    # Status 0, literally: the site's hook counts a status of 0 as "dropped" (no HTTP answer at all).
    assert recorder.observed == [(CRL_PATH, 200, size), (CRL_PEM_PATH, 0, 0)] and DROPPED == 0


def test_crl_unreachable_resets_a_real_connection(pki: SitePki, faults: FaultRegistry) -> None:
    """Served by mock_site.server, crl_unreachable leaves an HTTP client with a transport error and no response."""
    faults.set("crl_unreachable")

    async def fetch() -> Exception | None:
        group = ServerGroup([Listener("crl", crl_app(pki, faults=faults))])
        await group.start()
        try:
            async with httpx.AsyncClient(base_url=group.listeners[0].url, timeout=5) as http:
                await http.get(CRL_PATH)
        except httpx.TransportError as exc:
            return exc
        finally:
            await group.stop()
        return None

    error = asyncio.run(fetch())
    assert isinstance(error, (httpx.ReadError, httpx.RemoteProtocolError))


def test_real_server_serves_the_crl(pki: SitePki, faults: FaultRegistry) -> None:
    """Served by mock_site.server without faults, an HTTP client downloads a parseable CRL."""

    async def fetch() -> bytes:
        group = ServerGroup([Listener("crl", crl_app(pki, faults=faults))])
        await group.start()
        try:
            async with httpx.AsyncClient(base_url=group.listeners[0].url, timeout=5) as http:
                response = await http.get(CRL_PATH)
                response.raise_for_status()
                return response.content
        finally:
            await group.stop()

    assert x509.load_der_x509_crl(asyncio.run(fetch())).issuer == pki.ca_certificate.subject
