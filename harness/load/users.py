"""Locust users that play simulated ConfigMgr clients through ``FastHttpUser``, TLS verified as a Windows client would.

Each user plays ``--devices-per-user`` devices of the fleet (a real client holds no connection between policy polls,
so a process plays far more devices than it opens connections). TLS verification is on: FastHttpUser skips it by
default, which would hide every certificate fault. The contexts come from the process's shared :class:`TrustStore`
— one per trust state, never one per user (MEASUREMENTS.md: per-user contexts collapse Locust past ~1,000 users).
"""

from __future__ import annotations

import random
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

from geventhttpclient.response import HTTPConnectionClosed  # type: ignore[import-untyped]
from locust import task
from locust.contrib.fasthttp import FastHttpSession, FastHttpUser

from harness.client import outcome as oc
from harness.client.device import DeviceProfile
from harness.client.events import STEP_ENTRA_TOKEN, Request, Response, TransportError
from harness.client.lifecycle import Lifecycle
from harness.client.transport import Crl, CrlUnavailable, classify_exception
from harness.load import listeners
from harness.load.context import RunContext
from harness.load.driver import DeviceRun, FleetDriver
from harness.load.scheduler import device_indexes
from harness.load.seeded import SeededFleet
from harness.load.tally import LIFECYCLE_REQUEST_TYPE

#: How long a user whose devices have all ended sleeps between looks (nothing is left for it to do).
IDLE_WAIT = 60.0


class StageFailed(Exception):
    """A lifecycle stage whose last exchange failed (the reason code is the message)."""


def _fixed_context(ctx: ssl.SSLContext) -> Any:
    # geventhttpclient calls the factory with cafile=<certifi bundle> and, if the factory refuses keyword arguments,
    # loads that bundle into the context it got back: accept and ignore it, so the shared context stays as built.
    def factory(cafile: str | None = None, **_: Any) -> ssl.SSLContext:
        return ctx
    return factory


class LifecycleUser(FastHttpUser):
    """Plays new devices: install, register, then poll policy and renew the CCM token until the run ends."""

    network_timeout = 30.0
    connection_timeout = 10.0
    # A user sends one request at a time: one connection per host is enough.
    concurrency = 1
    max_redirects = 0
    insecure = False
    #: Policy cycles each device runs (None: until the run ends).
    polls: int | None = None

    def __init__(self, environment: Any) -> None:
        self.run_context: RunContext = listeners.current_context(environment)
        super().__init__(environment)
        ctx = self.run_context
        number = ctx.next_user_number()
        self.device_indexes = device_indexes(worker_index=ctx.worker_index, worker_count=ctx.worker_count,
                                             user_number=number, devices_per_user=ctx.options.devices_per_user)
        # One generator per user for message ids: a Random per device would cost ~5 KB each.
        self._rng = random.Random(f"{ctx.options.fleet_seed}/{self.device_indexes.start}")
        self._sessions: dict[int, FastHttpSession] = {}
        self.driver = FleetDriver(clock=time.time, send=self._send, report_stage=self._report_stage,
                                  tally=ctx.tally, cmg_url=ctx.endpoints.cmg_url, judge=listeners.judge)
        now = time.time()
        for index in self.device_indexes:
            self.driver.add(index, self.make_lifecycle(self.device_profile(index)), due=now)

    # ------------------------------------------------------------------------------------------ devices
    def device_profile(self, index: int) -> DeviceProfile:
        """Device ``index`` of the run's fleet."""
        return self.run_context.fleet.device(index)

    def make_lifecycle(self, profile: DeviceProfile) -> Lifecycle:
        """A new life for ``profile`` (no trail and no client logs: a load run keeps per-device memory small)."""
        return Lifecycle(profile, self.run_context.endpoints, clock=time.time, rng=self._rng, polls=self.polls,
                         trail=False)

    def wait_time(self) -> float:  # type: ignore[override]
        """Sleep until the next device is due (Locust stops a waiting user at once, never one mid-exchange)."""
        due = self.driver.next_due()
        return IDLE_WAIT if due is None else max(0.0, due - time.time())

    @task
    def run_next_device(self) -> None:
        """Run the device that is due until it waits again or its life ends."""
        self.driver.run_next()

    def ssl_context_factory(self, cafile: str | None = None, **_: Any) -> ssl.SSLContext:  # type: ignore[override]
        """The default client's context: the site root CA, verified (used for nothing but CRL downloads)."""
        return self.run_context.site_trust.context(root_ca_present=True)

    # ------------------------------------------------------------------------------------------ transport
    def _send(self, device: DeviceRun, request: Request) -> Response | TransportError:
        profile = device.lifecycle.profile
        started = time.perf_counter()
        try:
            ctx = self._tls_context(device, request, profile)
        except CrlUnavailable as exc:
            return TransportError(oc.TLS_REVOCATION_OFFLINE, str(exc), ms=_ms(started))
        except OSError as exc:
            reason, detail = classify_exception(exc)
            return TransportError(reason, detail, ms=_ms(started))
        payload: Any = request.body or None  # bytes go out as they are
        # Without catch_response Locust hands back the response itself: a FastResponse, or an ErrorResponse.
        response: Any = self._session(ctx).request(request.method, request.url, name=request.name, data=payload,
                                                   headers=request.headers, allow_redirects=False)
        ms = _ms(started)
        if not response.status_code:  # Locust's ErrorResponse: no HTTP answer at all
            return _transport_error(response.error, ms)
        headers: Any = response.headers or {}
        status_text = str(headers.get("x-cmg-status-text") or getattr(response._response, "status_message", "") or "")
        try:
            body = response.content or b""
        except Exception:  # noqa: BLE001 - a body cut short is as good as no answer for the lifecycle
            body = b""
        return Response(response.status_code, body, status_text, str(headers.get("content-type", "") or ""), ms)

    def _tls_context(self, device: DeviceRun, request: Request, profile: DeviceProfile) -> ssl.SSLContext:
        trust = self.run_context.trust
        if request.step == STEP_ENTRA_TOKEN:
            return self.run_context.site_trust.entra_context()
        crl = None
        if profile.root_ca_present and not profile.nocrlcheck:
            parts = urlsplit(request.url)
            crl = self._crl_for(device, parts.hostname or "", parts.port or 443)
        return trust.context(root_ca_present=profile.root_ca_present, crl=crl,
                             client_cert=profile.netbios_name if request.client_cert else None)

    def _crl_for(self, device: DeviceRun, host: str, port: int) -> Crl:
        """The CRL this device holds for the server's distribution point, downloaded again once past nextUpdate."""
        try:
            url = self.run_context.cdp_url(host, port)
        except ssl.SSLError as exc:
            raise CrlUnavailable(f"could not read the certificate of {host}:{port}: {exc}") from None
        if url is None:
            raise CrlUnavailable(f"the certificate of {host}:{port} names no CRL distribution point")
        held = device.tls
        now = time.time()
        if type(held) is tuple and held[0] == url and now < held[1].next_update:
            return held[1]
        answer: Any = self.client.request("GET", url, name=urlsplit(url).path, allow_redirects=False)
        if not answer.status_code:
            raise CrlUnavailable(f"CRL distribution point {url} unreachable: {answer.error!r}")
        if answer.status_code != 200:
            raise CrlUnavailable(f"CRL distribution point {url} answered HTTP {answer.status_code}")
        crl = self.run_context.crls.intern(Crl.from_der(answer.content or b""))
        # Kept until nextUpdate (as Windows does); a CRL already past it is used once, fails, and is not kept.
        device.tls = (url, crl) if now < crl.next_update else None
        return crl

    def _session(self, ctx: ssl.SSLContext) -> FastHttpSession:
        session = self._sessions.get(id(ctx))
        if session is None:
            session = FastHttpSession(
                base_url=self.host, request_event=self.environment.events.request, user=self, insecure=False,
                ssl_context_factory=_fixed_context(ctx), network_timeout=self.network_timeout,
                connection_timeout=self.connection_timeout, max_redirects=0, max_retries=0,
                concurrency=self.concurrency)
            self._sessions[id(ctx)] = session
        return session

    def _report_stage(self, name: str, ms: float, fail: str) -> None:
        self.environment.events.request.fire(request_type=LIFECYCLE_REQUEST_TYPE, name=name, response_time=ms,
                                             response_length=0, exception=StageFailed(fail) if fail else None,
                                             context={})


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _transport_error(error: BaseException | None, ms: float) -> TransportError:
    if isinstance(error, HTTPConnectionClosed):
        return TransportError(oc.RESET, f"{type(error).__name__}: {error}", ms=ms)
    if error is None:
        return TransportError(oc.CONNECT, "no answer", ms=ms)
    reason, detail = classify_exception(error)
    return TransportError(reason, detail, ms=ms)


class SteadyStateUser(LifecycleUser):
    """Plays the clients ``cmg-harness up --seed-clients`` pre-registered: device ``i`` is seeded client ``i``.

    The client has no way yet to start a life already registered, so each device first runs install and
    registration once (the site finds the existing registration and hands back the same client id), then polls.
    """

    def device_profile(self, index: int) -> DeviceProfile:
        """Device ``index`` of the fleet wearing seeded client ``index``'s identity in the site's default tenant."""
        seeded = _seeded_fleet().client(index)
        profile = self.run_context.fleet.device(index)
        return profile.with_traits(device_id=seeded.device_id, tenant_id=self.run_context.manifest.tenant_id)


_SEEDED: list[SeededFleet] = []


def _seeded_fleet() -> SeededFleet:
    if not _SEEDED:
        _SEEDED.append(SeededFleet())
    return _SEEDED[0]
