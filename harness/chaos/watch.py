"""Following and switching faults alongside a Locust run: the fault follower and the chaos schedule's runner.

Every Locust process follows the site's faults (``GET /faults`` about once a second) into its :class:`FaultTimeline`
and settles the verdicts the timeline has caught up with. The control API answers loopback clients only, so the master
also relays what it reads to the workers, and a worker on another host follows that relay instead. The master, or the
single local process, also runs the chaos schedule. Both run in greenlets; gevent is imported only when they start,
so the follower is tested without it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from cmg_protocol.clock import Clock
from harness.chaos.schedule import FaultSetter, Schedule, ScheduleRunner
from harness.chaos.timeline import FaultTimeline
from harness.chaos.verdictbook import VerdictBook
from harness.chaos.verdicts import VerdictSettings

log = logging.getLogger("harness.load")

#: Seconds between two polls of the site's fault list.
POLL_INTERVAL = 1.0
#: Seconds to wait for a greenlet to finish what it is doing before it is killed.
JOIN_TIMEOUT = 15.0


class FaultFollower:
    """Reads the site's active faults into a timeline and judges the outcomes the timeline has caught up with."""

    def __init__(self, fetch: Callable[[], Mapping[str, Any]], timeline: FaultTimeline, book: VerdictBook,
                 settings: VerdictSettings, *, clock: Clock,
                 relay: Callable[[dict[str, Any]], None] | None = None,
                 fallback: Callable[[], Mapping[str, Any] | None] | None = None) -> None:
        """``relay`` passes each fault list read on (master to workers); ``fallback`` gives the relayed one when the
        site cannot be read here."""
        self.fetch = fetch
        self.relay = relay
        self.fallback = fallback
        self.timeline = timeline
        self.book = book
        self.settings = settings
        self.clock = clock
        self.failures = 0
        self.last_error = ""

    def poll(self) -> bool:
        """One poll, then settle what can be judged; False when the fault list could not be read."""
        try:
            document = self._read()
            self.timeline.observe(document, self.clock())
            ok = True
        except Exception as exc:  # noqa: BLE001 - the site may be gone or busy: outcomes are judged all the same
            self.failures += 1
            if str(exc) != self.last_error:
                log.warning("cmg-harness: cannot read the site's faults (%s); outcomes are judged with the fault "
                            "windows seen so far", exc)
            self.last_error = str(exc)
            ok = False
        self.book.settle(self.timeline, self.settings, now=self.clock())
        return ok

    def _read(self) -> Mapping[str, Any]:
        try:
            document = self.fetch()
        except Exception:
            relayed = self.fallback() if self.fallback is not None else None
            if relayed is None:
                raise
            return relayed
        if self.relay is not None:
            try:
                self.relay({"active": list(document.get("active", [])),
                            "injections": dict(document.get("injections", {}))})
            except Exception as exc:  # noqa: BLE001 - a worker that cannot be told still polls for itself
                log.warning("cmg-harness: cannot relay the fault list to the workers: %s", exc)
        return document

    def finish(self) -> None:
        """A last poll, then judge every outcome still waiting."""
        self.poll()
        self.book.settle(self.timeline, self.settings, now=self.clock(), final=True)


class FaultWatch:
    """The greenlets of one Locust process for one test: the follower, and the schedule runner where there is one."""

    def __init__(self, follower: FaultFollower, *, schedule: Schedule | None = None, faults: FaultSetter | None = None,
                 clock: Clock, interval: float = POLL_INTERVAL) -> None:
        from gevent.event import Event

        self.follower = follower
        self.interval = interval
        self._stopping = Event()
        self._greenlets: list[Any] = []
        self.stopped = False
        # Only a schedule with timed faults switches anything (and resets the site when the run stops).
        self.runner = ScheduleRunner(schedule, faults, clock=clock, wait=self.wait) \
            if schedule is not None and schedule.timed and faults is not None else None

    def start(self) -> None:
        """Start following (and switching, if there is a schedule) in greenlets."""
        import gevent

        self._greenlets.append(gevent.spawn(self._follow))
        if self.runner is not None:
            self._greenlets.append(gevent.spawn(self.runner.run))

    def _follow(self) -> None:
        while not self._stopping.is_set():
            self.follower.poll()
            self._stopping.wait(self.interval)

    def wait(self, seconds: float) -> bool:
        """A gevent-friendly wait for the schedule runner: True once the watch is stopping."""
        return bool(self._stopping.wait(seconds))

    def stop(self) -> None:
        """Stop switching (every fault is then reset), stop following, and judge what is left (safe to call twice)."""
        if self.stopped:
            return
        self.stopped = True
        self._stopping.set()
        for greenlet in self._greenlets:
            greenlet.join(JOIN_TIMEOUT)  # a fault being switched on right now is switched on before the reset
            if not greenlet.dead:
                greenlet.kill(block=True, timeout=JOIN_TIMEOUT)
        if self.runner is not None:
            self.runner.stop()
            for error in self.runner.errors:
                log.error("cmg-harness: chaos schedule: %s", error)
        self.follower.finish()
