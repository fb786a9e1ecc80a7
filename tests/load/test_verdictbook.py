"""The verdict book and the fault follower: outcomes wait for the fault timeline, then are judged and tallied."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cmg_protocol.clock import FakeClock
from harness.chaos.timeline import FaultTimeline
from harness.chaos.verdictbook import VerdictBook
from harness.chaos.verdicts import VerdictSettings
from harness.chaos.watch import FaultFollower
from harness.client.device import Fleet
from harness.fleet.tally import OutcomeTally

TENANT = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"
SETTINGS = VerdictSettings(onboarded_tenants=frozenset({TENANT}))
HEALTHY = Fleet(1, tenant_ids=[TENANT]).device(0)
TRAIL = (("policy_assignments", "/CCM_Proxy_ServerAuth/1/ccm_system_tokenauth/request", 503, 2.5, "cmg.503"),)


def disconnected(started: float, ends: float) -> dict[str, Any]:
    return {"active": [{"name": "cp_disconnected", "role": "cmg", "probability": 1.0, "params": {},
                        "started_at": started, "ends_at": ends, "injections": 1}],
            "injections": {"cp_disconnected": 1}}


def test_an_outcome_waits_until_the_timeline_has_caught_up_with_it() -> None:
    """A failure is not judged before a poll taken after it: the fault that caused it may not be known yet."""
    book, timeline = VerdictBook(sync_lag=0.5), FaultTimeline()
    timeline.observe({"active": [], "injections": {}}, now=100.0)
    book.submit(HEALTHY, "cmg.503", start=100.2, end=100.4, trail=TRAIL)
    assert book.settle(timeline, SETTINGS, now=100.6) == 0 and len(book) == 1
    timeline.observe(disconnected(100.1, 110.0), now=101.0)
    assert book.settle(timeline, SETTINGS, now=101.0) == 1
    assert book.snapshot()["unexpected"] == 0 and book.snapshot()["faults"] == {"cp_disconnected": {"expected": 1}}


def test_a_failure_no_fault_explains_is_unexpected_and_kept_as_an_example_with_its_trail() -> None:
    """A healthy device failing with no fault on is unexpected; the tally counts it by reason too."""
    tally = OutcomeTally()
    book, timeline = VerdictBook(tally=tally), FaultTimeline()
    book.submit(HEALTHY, "cmg.503", start=100.0, end=100.2, trail=TRAIL)
    timeline.observe({"active": [], "injections": {}}, now=101.0)
    book.settle(timeline, SETTINGS, now=101.0)
    snapshot = book.snapshot()
    assert snapshot["unexpected"] == 1 and tally.snapshot()["unexpected"] == {"cmg.503": 1}
    [example] = snapshot["examples"]["unexpected_failure:cmg.503"]
    assert example["device"] == HEALTHY.netbios_name and example["trail"] == [list(TRAIL[0])]


def test_outcomes_do_not_wait_for_ever_when_the_fault_api_is_gone() -> None:
    """Without any poll, an outcome older than max_wait is judged with the windows known (none)."""
    book = VerdictBook(max_wait=5.0)
    book.submit(HEALTHY, None, start=100.0, end=100.0)
    assert book.settle(FaultTimeline(), SETTINGS, now=104.0) == 0
    assert book.settle(FaultTimeline(), SETTINGS, now=106.0) == 1


def test_a_final_settle_judges_everything_left() -> None:
    """When the test stops, every waiting outcome is judged."""
    book = VerdictBook()
    book.submit(HEALTHY, None, start=100.0, end=100.0)
    assert book.settle(FaultTimeline(), SETTINGS, now=100.0, final=True) == 1 and len(book) == 0


def test_worker_deltas_merged_on_the_master_add_up_and_drain_empties_them() -> None:
    """What workers drain (as JSON) and the master merges equals what they judged; a second drain is empty."""
    master = VerdictBook()
    timeline = FaultTimeline()
    timeline.observe({"active": [], "injections": {}}, now=200.0)
    for _ in range(2):
        worker = VerdictBook()
        worker.submit(HEALTHY, None, start=100.0, end=100.0)
        worker.submit(HEALTHY, "reset", start=100.0, end=100.0)
        worker.settle(timeline, SETTINGS, now=200.0)
        master.merge(json.loads(json.dumps(worker.drain())))
        assert worker.drain() == {}
    snapshot = master.snapshot()
    assert (snapshot["expected"], snapshot["unexpected"]) == (2, 2)
    assert snapshot["kinds"] == {"expected_success": 2, "unexpected_failure": 2}


def test_reset_forgets_judged_and_waiting_outcomes() -> None:
    """A new test (or Reset Stats) starts from nothing."""
    book = VerdictBook()
    book.submit(HEALTHY, None, start=1.0, end=1.0)
    book.settle(FaultTimeline(), SETTINGS, now=1.0, final=True)
    book.submit(HEALTHY, None, start=2.0, end=2.0)
    book.reset()
    assert book.snapshot() == {"expected": 0, "unexpected": 0, "kinds": {}, "reasons": {}, "faults": {},
                               "examples": {}, "pending": 0}


class Site:
    """A fault API that answers with the listings given, or fails when given an exception."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)

    def __call__(self) -> Any:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_the_follower_polls_into_the_timeline_and_settles_the_book() -> None:
    """Each poll updates the timeline and judges what it has caught up with."""
    clock = FakeClock(100.0)
    book, timeline = VerdictBook(), FaultTimeline()
    follower = FaultFollower(Site(disconnected(99.0, 110.0)), timeline, book, SETTINGS, clock=clock)
    book.submit(HEALTHY, "cmg.503", start=99.2, end=99.3)
    assert follower.poll()
    assert book.snapshot()["expected"] == 1 and timeline.synced_at == 100.0


def test_the_follower_carries_on_when_the_fault_api_fails() -> None:
    """A failed poll is counted and logged once; outcomes still get judged in the end."""
    clock = FakeClock(100.0)
    book = VerdictBook()
    follower = FaultFollower(Site(ConnectionError("down"), ConnectionError("down")), FaultTimeline(), book, SETTINGS,
                             clock=clock)
    book.submit(HEALTHY, None, start=99.0, end=99.0)
    assert not follower.poll()
    follower.finish()
    assert follower.failures == 2 and follower.last_error == "down" and book.snapshot()["expected"] == 1


def test_the_master_relays_each_fault_list_it_reads() -> None:
    """What the master reads is passed on (without the catalogue) for workers that cannot reach the site."""
    relayed: list[dict[str, Any]] = []
    follower = FaultFollower(Site({**disconnected(99.0, 110.0), "catalogue": {"faults": []}}), FaultTimeline(),
                             VerdictBook(), SETTINGS, clock=FakeClock(100.0), relay=relayed.append)
    follower.poll()
    assert relayed == [disconnected(99.0, 110.0)]


def test_a_worker_that_cannot_reach_the_site_follows_the_masters_relay() -> None:
    """The fault API refuses non-loopback clients: a remote worker's timeline comes from the master's list."""
    timeline = FaultTimeline()
    follower = FaultFollower(Site(PermissionError("403 loopback only")), timeline, VerdictBook(), SETTINGS,
                             clock=FakeClock(100.0), fallback=lambda: disconnected(99.0, 110.0))
    assert follower.poll() and [w["name"] for w in timeline.to_list()] == ["cp_disconnected"]


@pytest.mark.parametrize("outcome", ["mp.401", "reply.malformed"])
def test_outcomes_a_cmg_must_never_cause_are_unexpected_whatever_the_faults(outcome: str) -> None:
    """An MP refusing a forwarded token is never excused, even while token faults are on."""
    book, timeline = VerdictBook(), FaultTimeline()
    timeline.observe({"active": [{"name": "ccm_token_expired", "role": "sts", "probability": 1.0, "params": {},
                                  "started_at": 90.0, "ends_at": 120.0, "injections": 3}],
                      "injections": {"ccm_token_expired": 3}}, now=101.0)
    book.submit(HEALTHY, outcome, start=100.0, end=100.5)
    book.settle(timeline, SETTINGS, now=101.0)
    assert book.snapshot()["unexpected"] == 1


def two_faults(now: float) -> dict[str, Any]:
    return {"active": [{"name": "cp_disconnected", "role": "cmg", "probability": 1.0, "params": {},
                        "started_at": now - 10, "ends_at": now + 10, "injections": 1},
                       {"name": "mp_down", "role": "mp", "probability": 1.0, "params": {},
                        "started_at": now - 5, "ends_at": now + 10, "injections": 1}],
            "injections": {"cp_disconnected": 1, "mp_down": 1}}


def test_an_outcome_under_overlapping_faults_counts_once_under_their_set() -> None:
    """Two faults on together: each outcome is counted once, under "cp_disconnected + mp_down", and the counts per
    fault set add up to the number of judged outcomes (an outcome used to count under every fault)."""
    book, timeline = VerdictBook(), FaultTimeline()
    timeline.observe(two_faults(100.0), now=100.0)
    book.submit(HEALTHY, "cmg.503", start=98.0, end=99.0)
    book.submit(HEALTHY, "mp.401", start=98.0, end=99.0)  # never expected, whatever is on
    book.submit(HEALTHY, None, start=80.0, end=85.0)  # before either fault
    timeline.observe(two_faults(101.0), now=101.0)
    assert book.settle(timeline, SETTINGS, now=101.0) == 3
    snapshot = book.snapshot()
    assert snapshot["faults"] == {"cp_disconnected + mp_down": {"expected": 1, "unexpected": 1},
                                  "none": {"expected": 1}}
    judged = snapshot["expected"] + snapshot["unexpected"]
    assert judged == 3 == sum(sum(counts.values()) for counts in snapshot["faults"].values())


def test_fault_sets_merged_from_workers_still_add_up() -> None:
    """The master's totals from workers' deltas keep one count per outcome; the order faults came on does not matter."""
    master = VerdictBook()
    for order in (("cp_disconnected", "mp_down"), ("mp_down", "cp_disconnected")):
        worker, timeline = VerdictBook(), FaultTimeline()
        data = two_faults(100.0)
        data["active"].sort(key=lambda fault: order.index(fault["name"]))
        timeline.observe(data, now=101.0)
        worker.submit(HEALTHY, "cmg.503", start=98.0, end=99.0)
        worker.settle(timeline, SETTINGS, now=101.0)
        master.merge(worker.drain())
    assert master.snapshot()["faults"] == {"cp_disconnected + mp_down": {"expected": 2}}
