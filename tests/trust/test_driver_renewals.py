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


def _renewal_before_a_registration_retry(renewal_reply: Response | TransportError, *,
                                         run_s: float) -> tuple[Staged, float, float]:
    """Registration answered 503 and retried after a back-off, by which time the CCM token is due: its renewal gets
    ``renewal_reply``. Returns the run, the life's start and the renewal's first request."""
    staged = Staged(ccm_lifetime=INTERVAL)
    staged.script_stage(STAGE_REGISTRATION, STEP_REGISTRATION, Response(503))
    staged.script_stage(STAGE_RENEWAL, STEP_CCM_TOKEN, renewal_reply)
    start = staged.add_life(polls=1)
    staged.run_until(run_s)
    return staged, start, start + 10 * STEP_S + BACKOFF_S  # ten exchanges up to the refused registration, a back-off


def test_a_life_ended_by_the_renewal_before_a_registration_retry_is_judged_over_that_renewal() -> None:
    """Registration answered 503 and retried after a back-off; by then the CCM token is due, and its renewal fails the
    life. The outcome is judged over the renewal alone (not the install), the install+register stage keeps its own
    reason, and the renewal, closed by the life's end, is judged once, as the outcome."""
    staged, start, renewal = _renewal_before_a_registration_retry(STS_REFUSED, run_s=2 * BACKOFF_S)
    assert staged.failures() == [(TOKEN_RENEWAL, "sts.401"), (INSTALL_REGISTER, "cmg.503")]
    assert staged.spans() == [("sts.401", round(renewal, 3), round(renewal + STEP_S, 3))]
    assert staged.reports[1][1] == pytest.approx((renewal + STEP_S - start) * 1000.0)
    assert staged.tally.snapshot()["devices"]["registered"] == 0


def test_an_unreadable_renewal_reply_fails_the_renewal_and_its_cycle_with_the_lifes_reason() -> None:
    """The STS answers 200 with a body that is not a token: the exchange itself looks fine, but the life ends with
    reply.malformed, and that is the reason the renewal and the cycle it opened are charged with (nothing renewed)."""
    staged = Staged(ccm_lifetime=INTERVAL)
    staged.add_life(polls=2)
    staged.driver.run_next()
    staged.script_stage(STAGE_RENEWAL, STEP_CCM_TOKEN, Response(200, b"not json"))
    staged.run_until(2 * INTERVAL)
    assert staged.failures() == [(TOKEN_RENEWAL, oc.BAD_REPLY), (POLICY_CYCLE, oc.BAD_REPLY)]
    assert staged.tally.snapshot()["devices"]["renewed"] == 0
    assert [outcome for outcome, _, _ in staged.spans()] == [None, oc.BAD_REPLY]


def test_an_unreadable_reply_fails_the_stage_it_came_in() -> None:
    """AADAuthInfo answers 200 with a body that is not JSON: install+register fails with reply.malformed, judged once
    over the one exchange."""
    staged = Staged()
    staged.script_stage(STAGE_INSTALL, STEP_AAD_INFO, Response(200, b"not json"))
    start = staged.add_life(polls=1)
    staged.driver.run_next()
    assert [(name, fail) for name, _, fail in staged.reports] == [(INSTALL_REGISTER, oc.BAD_REPLY)]
    assert staged.spans() == [(oc.BAD_REPLY, round(start, 3), round(start + STEP_S, 3))]
    assert staged.tally.snapshot()["stage_failures"] == {INSTALL_REGISTER: 1}


def test_a_successful_life_is_judged_over_the_whole_life() -> None:
    """Two clean cycles: the success is judged from the first request of the install to the end of the last cycle."""
    staged = Staged()
    start = staged.add_life(polls=2)
    staged.run_until(2 * INTERVAL)
    end = start + INSTALL_EXCHANGES * STEP_S + INTERVAL + STEP_S  # the second cycle: one poll, nothing new to fetch
    assert staged.spans() == [(None, round(start, 3), round(start + INSTALL_EXCHANGES * STEP_S, 3)),
                              (None, round(start, 3), round(end, 3))]
    assert staged.tally.snapshot()["outcomes"] == {"success": 1}


def test_a_failed_last_cycle_is_judged_over_that_cycle() -> None:
    """The last cycle's policy request answered 500: the life fails, judged over that cycle, not the whole life."""
    staged = Staged()
    start = staged.add_life(polls=2)
    staged.driver.run_next()
    staged.script_stage(STAGE_POLICY, STEP_POLICY_ASSIGNMENTS, Response(500))
    staged.run_until(2 * INTERVAL)
    second = start + INSTALL_EXCHANGES * STEP_S + INTERVAL
    assert staged.spans()[1:] == [("http.500", round(second, 3), round(second + STEP_S, 3))]
    assert staged.failures() == [(POLICY_CYCLE, "http.500")]


def test_a_life_that_fails_before_its_first_request_is_judged_at_that_moment() -> None:
    """A token-authenticated device given no bulk registration token fails before sending anything: judged over an
    empty span at the moment it failed, with no stage reported."""
    staged = Staged()
    staged.clock.advance(5.0)
    now = staged.clock()
    life = Lifecycle(device(bulk_token=True), staged.endpoints, clock=staged.clock,
                     rng=random.Random(0), polls=1, trail=False)
    staged.driver.add(0, life, due=now)
    staged.driver.run_next()
    assert [outcome for _, outcome, _, _, _ in staged.judged] == ["cmg.401"]
    assert staged.spans() == [("cmg.401", round(now, 3), round(now, 3))]
    assert staged.reports == []


def test_a_renewal_back_off_inside_a_policy_cycle_leaves_the_cycle_open() -> None:
    """The first cycle's policy request finds the CCM token refused (CMGService_Invalid_Token); the renewal is reset and
    retried after a back-off. The cycle runs on through the back-off: one span from its first request to its last, not
    closed at the back-off nor restarted by the renewal."""
    staged = Staged()
    staged.script_stage(STAGE_POLICY, STEP_POLICY_ASSIGNMENTS, Response(401, reason=INVALID_TOKEN))
    staged.script_stage(STAGE_RENEWAL, STEP_CCM_TOKEN, TransportError(oc.RESET))
    start = staged.add_life(polls=1)
    staged.run_until(2 * BACKOFF_S)
    cycles = [(ms, fail) for name, ms, fail in staged.reports if name == POLICY_CYCLE]
    cycle = start + INSTALL_EXCHANGES * STEP_S
    # 401, reset, back-off, renewed, the retried policy request and six policy bodies
    end = cycle + 2 * STEP_S + BACKOFF_S + 8 * STEP_S
    assert [(round(ms), fail) for ms, fail in cycles] == [(round((end - cycle) * 1000.0), "")]
    assert staged.spans()[-1] == (None, round(start, 3), round(end, 3))
    assert staged.tally.snapshot()["events"]["polled"] == 1


def test_a_cycle_refused_then_failing_its_renewal_keeps_its_own_reason() -> None:
    """The policy request finds the CCM token refused (cmg.401) and the renewal then fails (sts.401): the cycle is
    charged with its own refusal and judged as that over the whole cycle, the renewal over its own exchange."""
    staged = Staged()
    staged.script_stage(STAGE_POLICY, STEP_POLICY_ASSIGNMENTS, Response(401, reason=INVALID_TOKEN))
    staged.script_stage(STAGE_RENEWAL, STEP_CCM_TOKEN, STS_REFUSED)
    start = staged.add_life(polls=2)
    staged.driver.run_next()
    cycle = start + INSTALL_EXCHANGES * STEP_S
    assert staged.failures() == [(TOKEN_RENEWAL, "sts.401"), (POLICY_CYCLE, "cmg.401")]
    assert staged.spans()[1:] == [("sts.401", round(cycle + STEP_S, 3), round(cycle + 2 * STEP_S, 3)),
                                  ("cmg.401", round(cycle, 3), round(cycle + 2 * STEP_S, 3))]


# A renewal whose CCM token request fails transiently is retried after a back-off, as an install step is; the renewal
# is one stage from its first request to its last reply, back-offs included, judged once by its final result.
RESET = TransportError(oc.RESET, ms=STEP_MS)


def test_a_renewal_reset_and_retried_after_its_back_off_is_one_successful_renewal() -> None:
    """The second cycle's renewal is reset, and renewed after the back-off: one token renewal entry, not failed,
    timed from the reset request to the renewed reply (the back-off included); nothing failed, nothing judged but the
    install and the life's success, and the device counted as renewed once."""
    staged = Staged(ccm_lifetime=INTERVAL)  # the second cycle renews first
    start = staged.add_life(polls=2)
    staged.driver.run_next()
    staged.script_stage(STAGE_RENEWAL, STEP_CCM_TOKEN, RESET)
    staged.run_until(2 * INTERVAL + 2 * BACKOFF_S)
    second = start + INSTALL_EXCHANGES * STEP_S + INTERVAL
    renewed = second + 2 * STEP_S + BACKOFF_S  # reset, back-off, renewed
    renewals = [(round(ms), fail) for name, ms, fail in staged.reports if name == TOKEN_RENEWAL]
    assert renewals == [(round((renewed - second) * 1000.0), "")]
    assert staged.failures() == []
    assert [outcome for outcome, _, _ in staged.spans()] == [None, None]
    snapshot = staged.tally.snapshot()
    assert snapshot["stage_failures"] == {}
    assert (snapshot["devices"]["renewed"], snapshot["events"]["renewed"]) == (1, 1)
    cycles = [round(ms) for name, ms, _ in staged.reports if name == POLICY_CYCLE]
    assert cycles[1:] == [round((renewed + STEP_S - second) * 1000.0)]  # the renewal opened the cycle


def _second_cycle_renewal_reset_three_times(*, polls: int) -> tuple[Staged, float, float]:
    """A life of ``polls`` cycles whose second cycle's renewal is reset on all three attempts (back-offs of one and two
    BACKOFF_S between them). Returns the run, the renewal's first request and the moment it gave up."""
    staged = Staged(ccm_lifetime=INTERVAL)
    start = staged.add_life(polls=polls)
    staged.driver.run_next()
    staged.script_stage(STAGE_RENEWAL, STEP_CCM_TOKEN, RESET, RESET, RESET)
    staged.run_until(2 * INTERVAL + 4 * BACKOFF_S)
    second = start + INSTALL_EXCHANGES * STEP_S + INTERVAL
    return staged, second, second + 3 * STEP_S + 3 * BACKOFF_S


def test_a_renewal_reset_on_every_attempt_is_one_failed_renewal_judged_over_all_of_them() -> None:
    """The second of three cycles cannot renew: reset, back-off, reset, longer back-off, reset. One token renewal entry
    fails with the reason it finally failed with, spanning every attempt and both back-offs, judged once over that
    span; the cycle fails with it (not judged again), and the third cycle renews and polls as usual."""
    staged, second, gave_up = _second_cycle_renewal_reset_three_times(polls=3)
    assert staged.failures() == [(TOKEN_RENEWAL, oc.RESET), (POLICY_CYCLE, oc.RESET)]
    renewals = [(round(ms), fail) for name, ms, fail in staged.reports if name == TOKEN_RENEWAL]
    assert renewals == [(round((gave_up - second) * 1000.0), oc.RESET), (round(STEP_MS), "")]
    assert staged.spans()[1:-1] == [(oc.RESET, round(second, 3), round(gave_up, 3))]
    snapshot = staged.tally.snapshot()
    assert snapshot["stage_failures"] == {TOKEN_RENEWAL: 1, POLICY_CYCLE: 1}
    assert snapshot["outcomes"] == {"success": 1}
    assert snapshot["events"]["polled"] == 2


def test_a_life_ended_by_a_renewal_reset_on_every_attempt_is_judged_over_the_whole_renewal() -> None:
    """The last cycle's renewal is reset three times: the life ends with reset, judged once, over the renewal from
    its first attempt to its last (back-offs included), and the renewal and its cycle each fail once."""
    staged, second, gave_up = _second_cycle_renewal_reset_three_times(polls=2)
    assert staged.failures() == [(TOKEN_RENEWAL, oc.RESET), (POLICY_CYCLE, oc.RESET)]
    assert staged.spans()[1:] == [(oc.RESET, round(second, 3), round(gave_up, 3))]
    assert staged.reports[-2][1] == pytest.approx((gave_up - second) * 1000.0)
    assert staged.tally.snapshot()["outcomes"] == {oc.RESET: 1}


def test_a_renewal_before_a_registration_retry_runs_on_through_its_own_back_off() -> None:
    """Registration answered 503; by its retry the CCM token is due, and the renewal is reset once and renewed after
    a back-off. One successful renewal spanning its back-off, install+register succeeds (its span running on through
    both back-offs), and only the successes are judged."""
    staged, start, renewal = _renewal_before_a_registration_retry(RESET, run_s=3 * BACKOFF_S)
    renewed = renewal + 2 * STEP_S + BACKOFF_S
    installed = renewed + 2 * STEP_S  # registration, then its new CCM token
    assert staged.failures() == []
    assert staged.reports[0] == (TOKEN_RENEWAL, pytest.approx((renewed - renewal) * 1000.0), "")
    assert staged.reports[1] == (INSTALL_REGISTER, pytest.approx((installed - start) * 1000.0), "")
    assert [outcome for outcome, _, _ in staged.spans()] == [None, None]
    assert staged.spans()[0] == (None, round(start, 3), round(installed, 3))


def test_a_cycle_that_outruns_its_policy_interval_is_still_a_cycle_of_its_own() -> None:
    """The first cycle's renewal waits out a 60 s back-off, longer than the 30 s interval, so the lifecycle goes on to
    the second cycle without waiting. The driver still ends the first cycle there: two policy cycle entries, two polls
    counted, the second timed from its own first request."""
    staged = Staged()
    staged.script_stage(STAGE_POLICY, STEP_POLICY_ASSIGNMENTS, Response(401, reason=INVALID_TOKEN))
    staged.script_stage(STAGE_RENEWAL, STEP_CCM_TOKEN, RESET)
    start = staged.add_life(polls=2)
    staged.run_until(2 * BACKOFF_S)
    cycle = start + INSTALL_EXCHANGES * STEP_S
    first_end = cycle + 3 * STEP_S + BACKOFF_S + 7 * STEP_S  # 401, reset, back-off, renewed, the retried poll, 6 bodies
    cycles = [round(ms) for name, ms, _ in staged.reports if name == POLICY_CYCLE]
    assert cycles == [round((first_end - cycle) * 1000.0), round(STEP_MS)]
    assert staged.tally.snapshot()["events"]["polled"] == 2
    assert staged.failures() == []
