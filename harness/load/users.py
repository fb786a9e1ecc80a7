"""Locust users that play simulated ConfigMgr clients, TLS verified as a Windows client would.

Each user plays ``--devices-per-user`` devices of the fleet (a real client holds no connection between policy polls,
so a process plays far more devices than it opens connections). TLS verification is on: FastHttpUser skips it by
default, which would hide every certificate fault. The contexts come from the process's shared :class:`TrustStore`
— one per trust state, never one per user (docs/measurements.md: per-user contexts collapse Locust past ~1,000 users).

The users are FastHttpUsers, but their devices send over :mod:`harness.load.wire`'s kept-alive connections (one pool
per TLS context and server): the bytes FastHttpSession would write, and Locust's request event fired as it fires it,
for a fraction of its CPU per request (its layers cost more than the HTTP exchange itself).
"""

from __future__ import annotations

import random
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

from gevent.monkey import get_original
from geventhttpclient.client import HTTPClient  # type: ignore[import-untyped]
from locust import task
from locust.contrib.fasthttp import FastHttpUser, LocustBadStatusCode, LocustUserAgent

from harness.client import outcome as oc
from harness.client.device import DeviceProfile
from harness.client.events import STEP_ENTRA_TOKEN, Request, Response, TransportError
from harness.client.lifecycle import Lifecycle
from harness.client.transport import Crl, CrlUnavailable, classify_exception, host_port, wire_headers
from harness.fleet.driver import DeviceRun, FleetDriver
from harness.fleet.scheduler import device_indexes
from harness.fleet.seeded import SeededFleet
from harness.fleet.tally import LIFECYCLE_REQUEST_TYPE
from harness.load.context import RunContext
from harness.load.listeners import plugin_of
from harness.load.wire import Answer, ConnectionPool, Origin, request_head, split_url, transport_error

#: The User-Agent geventhttpclient sends on a request that names none (Entra ID's token request): kept on the wire.
GEVENTHTTPCLIENT_USER_AGENT = str(HTTPClient.DEFAULT_HEADERS["User-Agent"])
#: The statuses FastHttpSession counts as a success (2xx and redirects); any other is a failure in Locust's stats.
VALID_STATUSES = LocustUserAgent.valid_response_codes

#: How long a user whose devices have all ended sleeps between looks (nothing is left for it to do).
IDLE_WAIT = 60.0


class StageFailed(Exception):
    """A lifecycle stage whose last exchange failed (the reason code is the message)."""


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
        # The run state is the environment's own (its plugin), never the process's: see harness.load.listeners.
        plugin = plugin_of(environment)
        self.run_context: RunContext = plugin.current_context()
        super().__init__(environment)
        ctx = self.run_context
        number = ctx.next_user_number()
        self.device_indexes = device_indexes(worker_index=ctx.worker_index, worker_count=ctx.worker_count,
                                             user_number=number, devices_per_user=ctx.options.devices_per_user)
        # One generator per user for message ids: a Random per device would cost ~5 KB each.
        self._rng = random.Random(f"{ctx.options.fleet_seed}/{self.device_indexes.start}")
        self._pools: dict[tuple[int, Origin], ConnectionPool] = {}  # by (id of the TLS context, origin)
        self.plugin = plugin
        self.driver = FleetDriver(clock=time.time, send=self._send, report_stage=self._report_stage,
                                  tally=ctx.tally, cmg_url=ctx.endpoints.cmg_url, judge=plugin.judge,
                                  latency=plugin.latency)
        self.admit_devices()

    def admit_devices(self) -> None:
        """Give the driver this user's devices: in the closed model, all of them, due at once."""
        now = time.time()
        for index in self.device_indexes:
            self.driver.add(index, self.make_lifecycle(self.device_profile(index)), due=now)

    def on_stop(self) -> None:
        """Count the devices that were due and never got to send: work the run's end left undone."""
        self.plugin.latency.record_unsent(self.driver.overdue(time.time()))

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
        """The context of ``self.client`` (the site root CA, verified): the devices send over their own connections;
        it is left for locustfiles that send requests of their own."""
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
        try:
            answer = self._http(request.method, request.url, request.name, wire_headers(request), request.body, ctx)
        except Exception as exc:  # noqa: BLE001 - every failure to get an answer is the device's transport error
            return transport_error(exc, _ms(started))
        return Response(answer.status, answer.body, answer.headers.get("x-cmg-status-text") or answer.reason,
                        answer.headers.get("content-type", ""), _ms(started))

    def _http(self, method: str, url: str, name: str, headers: dict[str, str], body: bytes,
              ctx: ssl.SSLContext | None) -> Answer:
        """One exchange over this user's kept-alive connections, reported to Locust as FastHttpSession reported it
        (without catch_response: a status outside 2xx and redirects is a failure); raises what the transport raised."""
        start_time = time.time()
        started = time.perf_counter()
        try:
            origin, target = split_url(url)
            head = request_head(method, target, headers, len(body), host_header=origin.host_header,
                                default_user_agent=GEVENTHTTPCLIENT_USER_AGENT)
            answer = self._pool(ctx, origin).request(method, head, body)
        except Exception as exc:
            self._fire(method, name, url, start_time, _ms(started), 0, exc)
            raise
        status = answer.status
        self._fire(method, name, url, start_time, _ms(started), len(answer.body),
                   None if status in VALID_STATUSES else LocustBadStatusCode(url, code=status))
        return answer

    def _fire(self, method: str, name: str, url: str, start_time: float, ms: float, length: int,
              exception: BaseException | None) -> None:
        self.environment.events.request.fire(request_type=method, name=name, context=self.context(), response=None,
                                             exception=exception, start_time=start_time, url=url,
                                             response_length=length, response_time=ms)

    def _tls_context(self, device: DeviceRun, request: Request, profile: DeviceProfile) -> ssl.SSLContext:
        trust = self.run_context.trust
        if request.step == STEP_ENTRA_TOKEN:
            return self.run_context.site_trust.entra_context()
        crl = None
        if profile.root_ca_present and not profile.nocrlcheck:
            host, port = host_port(request.url)
            crl = self._crl_for(device, host, port)
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
        # Plain HTTP as a rule (a CRL is signed); an https point is verified against the site root CA.
        ctx = self.run_context.site_trust.context(root_ca_present=True) if url.startswith("https:") else None
        try:
            answer = self._http("GET", url, urlsplit(url).path, {}, b"", ctx)
        except Exception as exc:  # noqa: BLE001 - any failure to download it leaves the device without a CRL
            raise CrlUnavailable(f"CRL distribution point {url} unreachable: {exc!r}") from None
        if answer.status != 200:
            raise CrlUnavailable(f"CRL distribution point {url} answered HTTP {answer.status}")
        crl = self.run_context.crls.read(answer.body)
        # Kept until nextUpdate (as Windows does); a CRL already past it is used once, fails, and is not kept.
        device.tls = (url, crl) if now < crl.next_update else None
        return crl

    def _pool(self, ctx: ssl.SSLContext | None, origin: Origin) -> ConnectionPool:
        key = (id(ctx), origin)
        pool = self._pools.get(key)
        if pool is None:
            # Contexts are shared and live as long as the process's trust store: the id stays theirs.
            pool = ConnectionPool(origin, ctx, connect_timeout=self.connection_timeout,
                                  network_timeout=self.network_timeout, size=self.concurrency, readable=_readable)
            self._pools[key] = pool
        return pool

    def _report_stage(self, name: str, ms: float, fail: str) -> None:
        self.environment.events.request.fire(request_type=LIFECYCLE_REQUEST_TYPE, name=name, response_time=ms,
                                             response_length=0, exception=StageFailed(fail) if fail else None,
                                             context={})


#: select() as the OS has it: a look with no timeout never blocks, so it needs none of gevent's hub machinery.
_SELECT = get_original("select", "select")


def _readable(sock: Any) -> bool:
    return bool(_SELECT([sock], [], [], 0.0)[0])


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


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


#: An open-model user admits arriving devices this far ahead of their start (the heap holds them until due).
ADMIT_AHEAD_SECONDS = 1.0
#: The dispatcher looks again at least this often (new arrivals, a device rescheduled sooner).
DISPATCH_LOOK_SECONDS = 0.25


class OpenLifecycleUser(LifecycleUser):
    """The open model: devices start on the plan's schedule and act on their own clocks, concurrently.

    Each user is one dispatcher: arrivals are dealt to users round-robin (``n % slots``), every device that is due is
    run in a greenlet of its own, and a process-wide limit of ``--max-in-flight`` outstanding requests makes the rest
    wait — their lateness is recorded, never hidden. A run of one user per Locust process is the usual form.
    """

    def __init__(self, environment: Any) -> None:
        import gevent.event
        import gevent.pool

        context = plugin_of(environment).current_context()
        model = context.open_model
        if model is None:
            raise RuntimeError("OpenLifecycleUser needs an open model: --arrival-rate, --ramp or --fleet")
        self.model = model
        self.polls = model.polls_per_device
        # One pooled connection per request in flight, per trust state (FastHttpSession's pool size).
        self.concurrency = model.max_in_flight
        self._device_greenlets = gevent.pool.Group()
        self._wake = gevent.event.Event()
        self._starting = 0
        self._waiting_for_slot = 0
        self._arrivals: Any = iter(())
        self._next_arrival: tuple[int, float] | None = None
        super().__init__(environment)
        self._in_flight = self.plugin.in_flight_slots(model.max_in_flight)

    def admit_devices(self) -> None:
        """Deal this user its share of the plan's arrivals; they are admitted as their start comes near."""
        ctx = self.run_context
        # The slot device_indexes gave this user (user number x workers + worker index), among every user's slots.
        slot = self.device_indexes.start // max(ctx.options.devices_per_user, 1)
        users = int(getattr(ctx.options.parsed, "num_users", 1) or 1)
        slots = max(users * ctx.worker_count, slot + 1)
        self._t0 = self.plugin.started_at or time.time()
        self._slot, self._slot_count = slot, slots
        self.plugin.open_users.add(self)
        self._search_n = slot
        self._search_next_at: float | None = None
        self._search_rate = 0.0
        if self.model.search is None:
            self._arrivals = self.model.starts(slot, slots)
            self._next_arrival = next(self._arrivals, None)
        self._rng = random.Random(f"{ctx.options.fleet_seed}/open/{slot}")

    def backlog(self) -> int:
        """Work that is due and not yet sent: due devices, devices waiting to start, requests waiting for a slot."""
        return self.driver.overdue(time.time()) + self._starting + self._waiting_for_slot

    def _admit(self, now: float) -> None:
        if self.model.search is not None:
            self._admit_searched(now)
            return
        while self._next_arrival is not None and self._t0 + self._next_arrival[1] <= now + ADMIT_AHEAD_SECONDS:
            index, offset = self._next_arrival
            self.driver.add(index, self.make_lifecycle(self.device_profile(index)), due=self._t0 + offset)
            self._next_arrival = next(self._arrivals, None)

    def _admit_searched(self, now: float) -> None:
        """Admit arrivals at the rate the capacity search asks for now (this user's share: every ``slots``-th)."""
        rate = self.plugin.target_rate_per_s
        if rate <= 0:
            self._search_next_at = None
            return
        gap = self._slot_count / rate
        if self._search_next_at is None:
            self._search_next_at = now + self._slot / rate  # users' arrivals interleave rather than coincide
        at = self._search_next_at
        if rate != self._search_rate:
            # A new rate starts from now: a long gap of a slower old rate is not waited out.
            self._search_rate = rate
            at = min(at, now + gap)
        while at <= now + ADMIT_AHEAD_SECONDS:
            index = self._search_n
            self.driver.add(index, self.make_lifecycle(self.device_profile(index)), due=at)
            self._search_n += self._slot_count
            at += gap
        self._search_next_at = at

    def wait_time(self) -> float:  # type: ignore[override]
        """The dispatcher never returns between looks; Locust's wait is not used."""
        return 0.0

    @task
    def dispatch(self) -> None:
        """Start every device that is due in a greenlet of its own; sleep until the next is due or one reschedules."""
        while True:
            now = time.time()
            self._admit(now)
            for due, device in self.driver.pop_due():
                self._starting += 1
                self._device_greenlets.spawn(self._run_device, due, device)
            upcoming = [at for at in (self.driver.next_due(),
                                      self._t0 + self._next_arrival[1] if self._next_arrival else None)
                        if at is not None]
            self._wake.clear()
            self._wake.wait(timeout=min([DISPATCH_LOOK_SECONDS, *(max(0.0, at - time.time()) for at in upcoming)]))

    def _run_device(self, due: float, device: DeviceRun) -> None:
        self._starting -= 1
        self.driver.run_device(due, device)
        self._wake.set()  # it may be due again sooner than the dispatcher planned to look

    def _send(self, device: DeviceRun, request: Request) -> Response | TransportError:
        self._waiting_for_slot += 1
        try:
            self._in_flight.acquire()
        finally:
            self._waiting_for_slot -= 1
        try:
            return super()._send(device, request)  # timed from here: the wait for a slot is lateness, not service
        finally:
            self._in_flight.release()

    def on_stop(self) -> None:
        """Count what the run's end left undone (due devices, devices waiting to start or for a slot), stop them."""
        undone = self.backlog()
        self.plugin.open_users.discard(self)
        self._device_greenlets.kill(block=False)
        self.plugin.latency.record_unsent(undone)
