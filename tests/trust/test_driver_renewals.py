"""The fleet driver's stage spans around CCM token renewals and the ends of lives: which stage a failure is charged to,
the span it is judged over, and the spans that run on through a retry back-off (built on tests/fleet/test_driver.py's
scripted site and fake clock, with replies scripted per stage so that a renewal can fail without the install's CCM
token request failing too)."""

from __future__ import annotations

import random
from collections import deque

import pytest

from cmg_protocol.statuses import INVALID_TOKEN
from harness.client import outcome as oc
from harness.client.events import (
    STAGE_INSTALL,
    STAGE_POLICY,
    STAGE_REGISTRATION,
    STAGE_RENEWAL,
    STEP_AAD_INFO,
    STEP_CCM_TOKEN,
    STEP_POLICY_ASSIGNMENTS,
    STEP_REGISTRATION,
    Request,
    Response,
    TransportError,
)
from harness.client.lifecycle import Lifecycle
from harness.fleet.driver import INSTALL_REGISTER, POLICY_CYCLE, TOKEN_RENEWAL, DeviceRun
from tests.fleet.test_driver import INTERVAL, STEP_MS, Harness, device

STEP_S = STEP_MS / 1000
#: Exchanges of a new device's install and registration, and of a policy cycle that fetches every policy body.
INSTALL_EXCHANGES = 11
#: The first retry back-off (lifecycle: RETRY_BASE_SITE_SECONDS at time scale 1).
BACKOFF_S = 60.0
STS_REFUSED = Response(401, reason="CMGConnector_Unauthorized")  # the CCM token request refused: sts.401


class Staged(Harness):
    """The test driver's harness, with lives of a set number of policy cycles and replies scripted per stage."""

    def __init__(self, *, ccm_lifetime: float = 8 * 3600.0) -> None:
        super().__init__(ccm_lifetime=ccm_lifetime)
        self.scripted: dict[tuple[str, str], deque[Response | TransportError]] = {}

    def script_stage(self, stage: str, step: str, *replies: Response | TransportError) -> None:
        """Answer the next requests of ``step`` made in ``stage`` with ``replies``."""
        self.scripted.setdefault((stage, step), deque()).extend(replies)

    def send(self, device: DeviceRun, request: Request) -> Response | TransportError:
        queued = self.scripted.get((request.stage, request.step))
        if not queued:
            return super().send(device, request)
        self.clock.advance(STEP_S)
        reply = queued.popleft()
        return reply if isinstance(reply, TransportError) else Response(reply.status, reply.body, reply.reason,
                                                                        ms=STEP_MS)

    def add_life(self, *, polls: int) -> float:
        """A device living ``polls`` policy cycles, due now; returns when its first request goes."""
        start = self.clock()
        life = Lifecycle(device(), self.endpoints, clock=self.clock, rng=random.Random(0), polls=polls, trail=False)
        self.driver.add(0, life, due=start)
        return start

    def failures(self) -> list[tuple[str, str]]:
        return [(name, fail) for name, _, fail in self.reports if fail]

    def spans(self) -> list[tuple[str | None, float, float]]:
        """What the judge was handed: (outcome, start, end), rounded to the fake network's 10 ms steps."""
        return [(outcome, round(start, 3), round(end, 3)) for _, outcome, start, end, _ in self.judged]


def test_a_renewal_that_fails_the_last_policy_cycle_fails_that_cycle_too() -> None:
    """The life's last cycle cannot renew its CCM token: the life ends failed, and the cycle it ended in failed with
    the renewal (as any other cycle does), not counted as a successful poll. Judged once: over the renewal."""
    staged = Staged(ccm_lifetime=INTERVAL)  # the second cycle renews first
    start = staged.add_life(polls=2)
    staged.driver.run_next()
    staged.script_stage(STAGE_RENEWAL, STEP_CCM_TOKEN, STS_REFUSED)
    staged.run_until(2 * INTERVAL)
    snapshot = staged.tally.snapshot()
    assert staged.failures() == [(TOKEN_RENEWAL, "sts.401"), (POLICY_CYCLE, "sts.401")]
    assert snapshot["stage_failures"] == {TOKEN_RENEWAL: 1, POLICY_CYCLE: 1}
    assert snapshot["events"]["polled"] == 1  # the first cycle only
    assert snapshot["outcomes"] == {"sts.401": 1}
    second = start + INSTALL_EXCHANGES * STEP_S + INTERVAL
    assert staged.spans()[1:] == [("sts.401", round(second, 3), round(second + STEP_S, 3))]
    assert staged.driver.finished == 1 and len(staged.driver) == 0
