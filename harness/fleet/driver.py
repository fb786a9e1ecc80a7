"""Many sans-I/O device lifecycles over one transport, each run when it next needs the network (no Locust import).

A Locust user owns one :class:`FleetDriver`: the user sleeps until :meth:`FleetDriver.next_due`, then calls
:meth:`FleetDriver.run_next`, which runs the earliest device until it waits again (the policy interval, a retry
back-off) or its life ends. The driver also times each lifecycle stage as a whole — install and registration, a CCM
token renewal, a policy cycle — from its first request to its last reply, retry back-offs included (a stage is judged
once, by its final result), counts milestones and outcomes into an :class:`OutcomeTally`, and hands each outcome
(a life's end, a failed stage, a finished install and registration) with its request trail to a ``judge`` callable,
which weighs it against the faults that were on (``harness.chaos.verdictbook``).
"""

from __future__ import annotations

from collections.abc import Callable

from cmg_protocol.clock import Clock
from harness.client.device import DeviceProfile
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
    classify,
)
from harness.client.lifecycle import Lifecycle
from harness.client.outcome import TrailEntry
from harness.client.stages import INSTALL_REGISTER, POLICY_CYCLE, TOKEN_RENEWAL
from harness.fleet.scheduler import DeviceScheduler
from harness.fleet.tally import MILESTONES, OutcomeTally
from harness.latency.histograms import REQUEST, STAGE, LatencyBook

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
#: Called with a device, its outcome (None: success), the span the outcome covers (clock seconds) and its trail.
Judge = Callable[[DeviceProfile, str | None, float, float, tuple[TrailEntry, ...]], None]
#: Exchanges a device keeps for the trail of its open stage (a long retry sequence keeps its latest).
MAX_TRAIL = 24


class DeviceRun:
    """One device's lifecycle plus what the driver tracks about it: open stage spans and milestones reached."""

    __slots__ = (
        "born",
        "index",
        "intended",
        "lifecycle",
        "main",
        "main_fail",
        "main_intended",
        "main_start",
        "polls_seen",
        "reached",
        "renew_fail",
        "renew_intended",
        "renew_start",
        "tls",
        "trail",
    )

    def __init__(self, index: int, lifecycle: Lifecycle) -> None:
        self.index = index
        self.lifecycle = lifecycle
        self.born: float | None = None  # when its first exchange began
        self.trail: list[TrailEntry] | None = None  # the exchanges of the open stage (None when there are none)
        self.main = ""  # the open main span: INSTALL_REGISTER or POLICY_CYCLE ('' when none)
        self.main_start = 0.0
        self.main_intended = 0.0
        self.main_fail = ""
        self.renew_start: float | None = None
        self.renew_intended = 0.0
        # When the device's schedule meant its next request to go: its due time after a wait, else the moment the
        # answer before it arrived (a chain of exchanges goes on at once). Lateness and corrected latency count from it.
        self.intended = 0.0
        self.renew_fail = ""
        self.polls_seen = 0
        self.reached = 0  # bit set of MILESTONE_BITS this device has reached
        self.tls: object = None  # what the transport keeps for this device between requests (its CRL)


class FleetDriver:
    """Runs the lifecycles of many devices, earliest due first, through one ``send`` callable."""

    def __init__(self, *, clock: Clock, send: Send, report_stage: StageReport, tally: OutcomeTally,
                 cmg_url: str, judge: Judge | None = None, latency: LatencyBook | None = None) -> None:
        self._clock = clock
        self._latency = latency
        self._judge = judge
        self._cmg_prefix = cmg_url.rstrip("/") + "/"
        self._send = send
        self._report_stage = report_stage
        self._tally = tally
        self._scheduler: DeviceScheduler[DeviceRun] = DeviceScheduler()
        self.finished = 0

    def __len__(self) -> int:
        """Devices still alive (scheduled)."""
        return len(self._scheduler)

    def add(self, index: int, lifecycle: Lifecycle, *, due: float) -> None:
        """Give the driver a device whose life starts at ``due`` (clock seconds)."""
        self._scheduler.add(DeviceRun(index, lifecycle), due)
        self._tally.record_device_started()

    def next_due(self) -> float | None:
        """When the next device needs the network (None once every life has ended)."""
        return self._scheduler.next_due()

    def run_next(self) -> bool:
        """Run the earliest device if it is due, until it waits or its life ends; False when nothing was due."""
        popped = self._scheduler.pop_due(self._clock())
        if popped is None:
            return False
        self.run_device(*popped)
        return True

    def pop_due(self) -> list[tuple[float, DeviceRun]]:
        """Take every device that is due now, each with its due time (for a caller that runs them concurrently)."""
        now = self._clock()
        due: list[tuple[float, DeviceRun]] = []
        while (popped := self._scheduler.pop_due(now)) is not None:
            due.append(popped)
        return due

    def overdue(self, now: float) -> int:
        """Devices whose due time has passed without their request going (work a run's end leaves undone)."""
        return self._scheduler.count_due(now)

    def run_device(self, due: float, device: DeviceRun) -> None:
        """Run one device that was due at ``due`` until it waits (it is scheduled again) or its life ends."""
        device.intended = due
        life = device.lifecycle
        while True:
            action = life.next_request()
            kind = type(action)
            if kind is Done:
                self._on_done(device, action)  # type: ignore[arg-type]
                return
            if life.polls_done > device.polls_seen:
                # A policy cycle ended: at its interval's wait, or — when it outran its interval and the lifecycle
                # went on at once — at the next cycle's first request. Any other wait is a retry back-off, which
                # belongs to the stage it interrupts (install, registration, a renewal): that span runs on through it.
                self._end_cycle(device)
            if kind is Wait:
                self._scheduler.add(device, action.until)  # type: ignore[union-attr]
                return
            self._exchange(device, action)  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------------------ one exchange
    def _exchange(self, device: DeviceRun, request: Request) -> None:
        intended = device.intended
        reply = self._send(device, request)
        answered_at = self._clock()
        # The transport times the exchange from the moment it really went out (after any wait for a free slot).
        sent = answered_at - reply.ms / 1000.0
        self._open_spans(device, request, sent, intended)
        if self._latency is not None:
            self._latency.record(REQUEST, request.name, intended=intended, sent=sent, answered=answered_at)
        device.intended = answered_at
        answered = type(reply) is Response
        if request.url.startswith(self._cmg_prefix):  # the CMGService table counts what the CMG sees
            self._tally.record_request(request.name, len(request.body), answered=answered)
        # The lifecycle's own reason codes (sts.401, cmg.503, mp.401, ...): the verdicts are written in them.
        reason = classify(request.step, reply) or ""
        if self._judge is not None:
            trail = device.trail
            if trail is None:
                trail = device.trail = []
            elif len(trail) >= MAX_TRAIL:
                del trail[0]
            trail.append(TrailEntry(request.step, request.name, reply.status if answered else None,  # type: ignore[union-attr]
                                    round(reply.ms, 1), reason or "ok"))
        if request.stage == STAGE_RENEWAL:
            device.renew_fail = reason
        else:
            device.main_fail = reason
        device.lifecycle.feed(reply)
        if device.lifecycle.smsid:
            self._milestone(device, "registered")

    def _open_spans(self, device: DeviceRun, request: Request, now: float, intended: float) -> None:
        if device.born is None:
            device.born = now
        stage = request.stage
        if stage == STAGE_RENEWAL:
            if device.renew_start is None:
                device.renew_start, device.renew_intended, device.renew_fail = now, intended, ""
            if not device.main and device.lifecycle.smsid:
                # A renewal before a policy cycle's first request is part of that cycle.
                device.main, device.main_start, device.main_intended, device.main_fail = POLICY_CYCLE, now, intended, ""
            return
        self._close_renewal(device, now)
        entry = STAGE_ENTRIES.get(stage, POLICY_CYCLE)
        if stage == STAGE_REGISTRATION:
            self._milestone(device, "installed")
        if device.main and device.main != entry:
            # Install and registration end where polling begins.
            self._close_main(device, now, device.main_fail)
        if not device.main:
            device.main, device.main_start, device.main_intended, device.main_fail = entry, now, intended, ""

    # ------------------------------------------------------------------------------------------ span ends
    def _end_cycle(self, device: DeviceRun) -> None:
        """Close the policy cycle that just ended, and a renewal it could not get past (a failed one)."""
        device.polls_seen = device.lifecycle.polls_done
        now = self._clock()
        renewal_failed = device.renew_fail if device.renew_start is not None else ""
        self._close_renewal(device, now)
        if device.main == POLICY_CYCLE:
            if renewal_failed and not device.main_fail:
                # The cycle could not go on without a CCM token: it failed with the renewal, judged once (as that).
                self._close_main(device, now, renewal_failed, judged=True)
            else:
                self._close_main(device, now, device.main_fail)

    def _on_done(self, device: DeviceRun, done: Done) -> None:
        now = self._clock()
        outcome = done.outcome
        failed_entry = STAGE_ENTRIES.get(outcome.stage, "") if not outcome.success else ""
        born = now if device.born is None else device.born
        # A failure is judged over the stage it ended in; a success over the whole life.
        if failed_entry == TOKEN_RENEWAL and device.renew_start is not None:
            start = device.renew_start
        elif failed_entry and device.main:
            start = device.main_start
        else:
            start = born
        trail = tuple(device.trail or ())
        # The outcome itself is judged, not the stage it ended in as well (final=True).
        if device.renew_start is not None:
            self._close_renewal(device, now, outcome.reason if failed_entry == TOKEN_RENEWAL else None, final=True)
        if device.main:
            fail = device.main_fail
            if failed_entry == device.main or (failed_entry == TOKEN_RENEWAL and not fail):
                # A stage that could not go on without its CCM token failed with the renewal, as in _end_cycle.
                fail = outcome.reason
            self._close_main(device, now, fail, final=True)
        self._tally.record_outcome(outcome.success, outcome.reason)
        if self._judge is not None:
            self._judge(device.lifecycle.profile, outcome.reason or None, start, now, trail)
        device.trail = None
        self.finished += 1

    def _close_renewal(self, device: DeviceRun, now: float, reason: str | None = None, *, final: bool = False) -> None:
        if device.renew_start is None:
            return
        fail = device.renew_fail if reason is None else reason
        self._report(device, TOKEN_RENEWAL, device.renew_start, now, fail, "renewed", judged=final,
                     intended=device.renew_intended)
        device.renew_start, device.renew_fail = None, ""

    def _close_main(self, device: DeviceRun, now: float, fail: str, *, final: bool = False,
                    judged: bool = False) -> None:
        entry = device.main
        self._report(device, entry, device.main_start, now, fail, "polled" if entry == POLICY_CYCLE else "",
                     judged=final or judged, intended=device.main_intended)
        if entry == INSTALL_REGISTER and not fail and not final and self._judge is not None:
            # Installed and registered: judged as a success, so a device that should have failed is caught here.
            self._judge(device.lifecycle.profile, None, device.main_start if device.born is None else device.born,
                        now, tuple(device.trail or ()))
        device.main, device.main_fail = "", ""
        if not final:
            device.trail = None

    def _report(self, device: DeviceRun, entry: str, start: float, now: float, fail: str, milestone: str, *,
                judged: bool, intended: float) -> None:
        """Report a closed span; a failure is handed to the judge unless it is judged otherwise (``judged``)."""
        self._report_stage(entry, (now - start) * 1000.0, fail)
        if self._latency is not None:
            self._latency.record(STAGE, entry, intended=min(intended, start), sent=start, answered=now)
        if fail:
            self._tally.record_stage_failure(entry, fail)
            if not judged and self._judge is not None:
                # A failed stage of a device that lives on (a policy cycle, a renewal) is an outcome of its own.
                self._judge(device.lifecycle.profile, fail, start, now, tuple(device.trail or ()))
        elif milestone:
            self._milestone(device, milestone)

    def _milestone(self, device: DeviceRun, milestone: str) -> None:
        bit = MILESTONE_BITS[milestone]
        first = not device.reached & bit
        if not first and milestone in ONCE_ONLY:
            return
        device.reached |= bit
        self._tally.record_milestone(milestone, first=first)
