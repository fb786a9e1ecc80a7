"""Judging a load run's device outcomes once the fault timeline has caught up with them (no Locust import).

The driver hands every outcome over as it happens; the fault poller learns of a fault up to a second after it began.
So outcomes wait in :class:`VerdictBook` until the timeline has been synced past their end, and are then judged with
:func:`harness.chaos.verdicts.judge` against the windows known by then. Workers ship the verdicts of each report interval
(``drain()``) to the master, which ``merge()``s them, like the outcome tally.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.chaos.timeline import FaultTimeline
from harness.chaos.verdicts import VerdictSettings, VerdictTally, judge
from harness.client.device import DeviceProfile
from harness.fleet.tally import OutcomeTally

#: Seconds the timeline must be synced past an outcome's end before it is judged (a poll is not instantaneous).
SYNC_LAG = 0.5
#: Seconds an outcome waits at most: a fault API that cannot be reached must not hold outcomes in memory for ever.
MAX_WAIT = 15.0
MAX_EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class PendingOutcome:
    """A device outcome not judged yet: who, what (None: success), over which span, and the exchanges that led to it."""

    profile: DeviceProfile
    outcome: str | None
    start: float
    end: float
    trail: tuple[Sequence[Any], ...] = ()


class VerdictBook:
    """Outcomes waiting for judgement, and the verdict tally of the run (totals plus the delta since the last drain)."""

    def __init__(self, *, tally: OutcomeTally | None = None, max_examples: int = MAX_EXAMPLES,
                 sync_lag: float = SYNC_LAG, max_wait: float = MAX_WAIT) -> None:
        self._tally = tally
        self._max_examples = max_examples
        self._sync_lag = sync_lag
        self._max_wait = max_wait
        self._pending: deque[PendingOutcome] = deque()
        self.total = VerdictTally(max_examples=max_examples)
        self._delta = VerdictTally(max_examples=max_examples)

    def __len__(self) -> int:
        """Outcomes still waiting for judgement."""
        return len(self._pending)

    def submit(self, profile: DeviceProfile, outcome: str | None, *, start: float, end: float,
               trail: Sequence[Sequence[Any]] = ()) -> None:
        """Queue one outcome (``outcome`` None: the device succeeded) of a life or stage from ``start`` to ``end``."""
        self._pending.append(PendingOutcome(profile, outcome, start, end, tuple(trail)))

    def settle(self, timeline: FaultTimeline, settings: VerdictSettings, *, now: float, final: bool = False) -> int:
        """Judge every outcome the timeline has caught up with (all of them when ``final``); returns how many."""
        synced = timeline.synced_at if timeline.synced_at is not None else float("-inf")
        judged = 0
        pending = self._pending
        while pending:
            item = pending[0]
            if not final and item.end > synced - self._sync_lag and item.end > now - self._max_wait:
                break  # outcomes arrive in time order: the rest are newer still
            pending.popleft()
            self._judge(item, timeline, settings)
            judged += 1
        return judged

    def _judge(self, item: PendingOutcome, timeline: FaultTimeline, settings: VerdictSettings) -> None:
        verdict = judge(item.profile, item.outcome, life_start=item.start, life_end=item.end,
                        windows=timeline.windows(), settings=settings)
        device = item.profile.netbios_name
        self.total.add(verdict, device=device, trail=item.trail)
        self._delta.add(verdict, device=device, trail=item.trail)
        if not verdict.expected and self._tally is not None:
            self._tally.record_unexpected(verdict.outcome)

    def drain(self) -> dict[str, Any]:
        """The verdicts judged since the last drain, JSON-safe, for a worker's report ({} when none)."""
        if not self._delta.kinds:
            return {}
        delta = self._delta.to_dict()
        self._delta = VerdictTally(max_examples=self._max_examples)
        return delta

    def merge(self, delta: Mapping[str, Any]) -> None:
        """Add a worker's delta (as made by :meth:`drain`) to the totals."""
        self.total.merge(delta)

    def reset(self) -> None:
        """Forget everything (a new test, or the web UI's Reset Stats)."""
        self._pending.clear()
        self.total = VerdictTally(max_examples=self._max_examples)
        self._delta = VerdictTally(max_examples=self._max_examples)

    def snapshot(self) -> dict[str, Any]:
        """The run's verdicts in the shape of ``outcomes.json``'s ``verdicts``."""
        return {**self.total.to_dict(), "pending": len(self._pending)}
