"""Many sans-I/O device lifecycles over one transport, each run when it next needs the network (no Locust import).

A Locust user owns one :class:`FleetDriver`: the user sleeps until :meth:`FleetDriver.next_due`, then calls
:meth:`FleetDriver.run_next`, which runs the earliest device until it waits again (the policy interval, a retry
back-off) or its life ends. The driver also times each lifecycle stage as a whole — install and registration, a CCM
token renewal, a policy cycle — and counts milestones and outcomes into an :class:`OutcomeTally`.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.client import outcome as oc
from harness.client.device import WAM_OK, DeviceProfile
from harness.client.events import (
    STAGE_INSTALL,
    STAGE_POLICY,
    STAGE_REGISTRATION,
    STAGE_RENEWAL,
    Done,
    Request,
    Response,
    TransportError,
    Wait,
)
from harness.client.lifecycle import Lifecycle
from harness.load.scheduler import DeviceScheduler
from harness.load.tally import MILESTONES, OutcomeTally
from mock_site.clock import Clock

#: Names of the ``LIFECYCLE`` entries in Locust's statistics.
INSTALL_REGISTER = "install+register"
TOKEN_RENEWAL = "token renewal"
POLICY_CYCLE = "policy cycle"
STAGE_ENTRIES = {STAGE_INSTALL: INSTALL_REGISTER, STAGE_REGISTRATION: INSTALL_REGISTER, STAGE_RENEWAL: TOKEN_RENEWAL,
                 STAGE_POLICY: POLICY_CYCLE}

#: Milestones a device reaches once (installed; registered: the site handed out its client id) or again and again.
ONCE_ONLY = frozenset({"installed", "registered"})
MILESTONE_BITS = {name: 1 << number for number, name in enumerate(MILESTONES)}

Reply = Response | TransportError
#: Sends a device's request and returns the answer (or the TransportError when none came).
Send = Callable[["DeviceRun", Request], Reply]
#: Called with the stage entry name, its elapsed milliseconds, and the reason code it failed with ('' when it did not).
StageReport = Callable[[str, float, str], None]


def device_faults(profile: DeviceProfile) -> tuple[str, ...]:
    """The FAULTS.md device faults a profile carries (flags such as ``nocrlcheck`` or a PKI certificate are not faults)."""
    faults = []
    if not profile.root_ca_present:
        faults.append("root_ca_missing")
    if not profile.wpj_cert:
        faults.append("wpj_missing")
    if profile.wam != WAM_OK:
        faults.append("wam:" + profile.wam)
    if profile.clock_skew:
        faults.append("clock_skew")
    return tuple(faults)


def reply_reason(reply: Reply) -> str:
    """'' for a 2xx answer, else a reason code for the failed exchange (transport reason or ``http.<status>``)."""
    if type(reply) is TransportError:
        return reply.reason
    status = reply.status  # type: ignore[union-attr]
    return "" if 200 <= status < 300 else oc.http_reason(status)


class DeviceRun:
    """One device's lifecycle plus what the driver tracks about it: open stage spans and milestones reached."""

    __slots__ = (
        "faulted",
        "index",
        "lifecycle",
        "main",
        "main_fail",
        "main_start",
        "polls_seen",
        "reached",
        "renew_fail",
        "renew_start",
        "tls",
    )

    def __init__(self, index: int, lifecycle: Lifecycle, *, faulted: bool) -> None:
        self.index = index
        self.lifecycle = lifecycle
        self.faulted = faulted
        self.main = ""  # the open main span: INSTALL_REGISTER or POLICY_CYCLE ('' when none)
        self.main_start = 0.0
        self.main_fail = ""
        self.renew_start: float | None = None
        self.renew_fail = ""
        self.polls_seen = 0
        self.reached = 0  # bit set of MILESTONE_BITS this device has reached
        self.tls: object = None  # what the transport keeps for this device between requests (its CRL)


class FleetDriver:
    """Runs the lifecycles of many devices, earliest due first, through one ``send`` callable."""

    def __init__(self, *, clock: Clock, send: Send, report_stage: StageReport, tally: OutcomeTally,
                 cmg_url: str) -> None:
        self._clock = clock
        self._cmg_prefix = cmg_url.rstrip("/") + "/"
        self._send = send
        self._report_stage = report_stage
        self._tally = tally
        self._scheduler: DeviceScheduler[DeviceRun] = DeviceScheduler()
        self.finished = 0

    def __len__(self) -> int:
        """Devices still alive (scheduled)."""
        return len(self._scheduler)

    def add(self, index: int, lifecycle: Lifecycle, *, faulted: bool, due: float) -> None:
        """Give the driver a device whose life starts at ``due`` (clock seconds)."""
        self._scheduler.add(DeviceRun(index, lifecycle, faulted=faulted), due)
        self._tally.record_device_started()

    def next_due(self) -> float | None:
        """When the next device needs the network (None once every life has ended)."""
        return self._scheduler.next_due()

    def run_next(self) -> bool:
        """Run the earliest device if it is due, until it waits or its life ends; False when nothing was due."""
        popped = self._scheduler.pop_due(self._clock())
        if popped is None:
            return False
        device = popped[1]
        life = device.lifecycle
        while True:
            action = life.next_request()
            kind = type(action)
            if kind is Request:
                self._exchange(device, action)  # type: ignore[arg-type]
            elif kind is Wait:
                self._on_wait(device)
                self._scheduler.add(device, action.until)  # type: ignore[union-attr]
                return True
            else:
                self._on_done(device, action)  # type: ignore[arg-type]
                return True

    # ------------------------------------------------------------------------------------------ one exchange
    def _exchange(self, device: DeviceRun, request: Request) -> None:
        now = self._clock()
        self._open_spans(device, request, now)
        reply = self._send(device, request)
        if request.url.startswith(self._cmg_prefix):  # the CMGService table counts what the CMG sees
            self._tally.record_request(request.name, len(request.body), answered=type(reply) is Response)
        reason = reply_reason(reply)
        if request.stage == STAGE_RENEWAL:
            device.renew_fail = reason
        else:
            device.main_fail = reason
        device.lifecycle.feed(reply)
        if device.lifecycle.smsid:
            self._milestone(device, "registered")

    def _open_spans(self, device: DeviceRun, request: Request, now: float) -> None:
        stage = request.stage
        if stage == STAGE_RENEWAL:
            if device.renew_start is None:
                device.renew_start, device.renew_fail = now, ""
            return
        self._close_renewal(device, now)
        entry = STAGE_ENTRIES.get(stage, POLICY_CYCLE)
        if stage == STAGE_REGISTRATION:
            self._milestone(device, "installed")
        if device.main and device.main != entry:
            # Install and registration end where polling begins.
            self._close_main(device, now, device.main_fail)
        if not device.main:
            device.main, device.main_start, device.main_fail = entry, now, ""

    # ------------------------------------------------------------------------------------------ span ends
    def _on_wait(self, device: DeviceRun) -> None:
        now = self._clock()
        self._close_renewal(device, now)
        polls = device.lifecycle.polls_done
        if device.main == POLICY_CYCLE and polls > device.polls_seen:
            device.polls_seen = polls
            self._close_main(device, now, device.main_fail)
        # Other waits (retry back-offs during install and registration) belong to the stage: its span runs on.

    def _on_done(self, device: DeviceRun, done: Done) -> None:
        now = self._clock()
        outcome = done.outcome
        failed_entry = STAGE_ENTRIES.get(outcome.stage, "") if not outcome.success else ""
        # The outcome itself is what counts as (un)expected here, not the stage it ended in as well.
        if device.renew_start is not None:
            self._close_renewal(device, now, outcome.reason if failed_entry == TOKEN_RENEWAL else None, final=True)
        if device.main:
            self._close_main(device, now, outcome.reason if failed_entry == device.main else device.main_fail,
                             final=True)
        # For now every failure of a device without device faults is unexpected; chaos schedules will refine this.
        self._tally.record_outcome(outcome.success, outcome.reason, unexpected=not device.faulted)
        self.finished += 1

    def _close_renewal(self, device: DeviceRun, now: float, reason: str | None = None, *, final: bool = False) -> None:
        if device.renew_start is None:
            return
        fail = device.renew_fail if reason is None else reason
        self._report(device, TOKEN_RENEWAL, now - device.renew_start, fail, "renewed", final=final)
        device.renew_start, device.renew_fail = None, ""

    def _close_main(self, device: DeviceRun, now: float, fail: str, *, final: bool = False) -> None:
        entry = device.main
        self._report(device, entry, now - device.main_start, fail, "polled" if entry == POLICY_CYCLE else "",
                     final=final)
        device.main, device.main_fail = "", ""

    def _report(self, device: DeviceRun, entry: str, elapsed: float, fail: str, milestone: str, *,
                final: bool) -> None:
        self._report_stage(entry, elapsed * 1000.0, fail)
        if fail:
            self._tally.record_stage_failure(entry, fail, unexpected=not (device.faulted or final))
        elif milestone:
            self._milestone(device, milestone)

    def _milestone(self, device: DeviceRun, milestone: str) -> None:
        bit = MILESTONE_BITS[milestone]
        first = not device.reached & bit
        if not first and milestone in ONCE_ONLY:
            return
        device.reached |= bit
        self._tally.record_milestone(milestone, first=first)
