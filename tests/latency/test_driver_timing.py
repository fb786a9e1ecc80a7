"""The fleet driver times every request and stage from its device's intended time, not from when it got round to it."""

from __future__ import annotations

import dataclasses
import random

import pytest

from cmg_protocol.clock import FakeClock
from harness.client import outcome as oc
from harness.client.device import Fleet
from harness.client.events import STEP_CCM_TOKEN, Request, Response, TransportError
from harness.client.lifecycle import Lifecycle
from harness.client.testing import ScriptedSite, scripted_endpoints
from harness.fleet.driver import INSTALL_REGISTER, TOKEN_RENEWAL, DeviceRun, FleetDriver
from harness.fleet.tally import OutcomeTally
from harness.latency.histograms import CORRECTED, LATENESS, SERVICE, LatencyBook

TENANT = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"
SERVICE_S = 0.01


class Timed:
    """A driver over a scripted site whose every exchange takes SERVICE_S of fake time."""

    def __init__(self, *, ccm_lifetime: float = 8 * 3600.0) -> None:
        self.clock = FakeClock()
        self.site = ScriptedSite(self.clock, ccm_lifetime=ccm_lifetime)
        self.book = LatencyBook()
        self.endpoints = scripted_endpoints(policy_interval_s=30.0)
        self.driver = FleetDriver(clock=self.clock, send=self.send, report_stage=lambda *_: None,
                                  tally=OutcomeTally(), cmg_url=self.endpoints.cmg_url, latency=self.book)

    def send(self, device: DeviceRun, request: Request) -> Response | TransportError:
        self.clock.advance(SERVICE_S)
        return dataclasses.replace(self.site.answer(request), ms=SERVICE_S * 1000.0)

    def add(self, index: int, due: float, *, polls: int = 1) -> None:
        profile = Fleet(1, tenant_ids=[TENANT]).device(index)
        life = Lifecycle(profile, self.endpoints, clock=self.clock, rng=random.Random(0), polls=polls, trail=False)
        self.driver.add(index, life, due=due)


def test_a_device_run_late_carries_its_lateness_into_its_first_request() -> None:
    """Due at t0 but run 2 s later: the first request's lateness is 2 s and its corrected latency 2 s + service."""
    timed = Timed()
    start = timed.clock()
    timed.add(0, due=start)
    timed.clock.advance(2.0)
    assert timed.driver.run_next()
    requests = timed.book.summary()["requests"]
    first = requests["/CCM_Proxy_ServerAuth/AADAuthInfo"]
    assert first[LATENESS]["max"] == pytest.approx(2000.0, rel=1e-3)
    assert first[CORRECTED]["max"] == pytest.approx(2010.0, rel=1e-3)
    assert first[SERVICE]["max"] == pytest.approx(10.0, rel=1e-3)


def test_the_next_request_of_a_chain_is_intended_when_the_answer_before_it_came() -> None:
    """After the first exchange, a chain goes on at once: later requests of the install have no lateness."""
    timed = Timed()
    timed.add(0, due=timed.clock())
    timed.clock.advance(2.0)
    timed.driver.run_next()
    requests = timed.book.summary()["requests"]
    later = [values[LATENESS]["max"] for name, values in requests.items() if name != "/CCM_Proxy_ServerAuth/AADAuthInfo"]
    assert later and max(later) <= 0.002


def test_a_stage_is_timed_from_the_intended_start_of_its_first_request() -> None:
    """The install+register stage of a device run 2 s late: corrected = 2 s + the install's service time."""
    timed = Timed()
    timed.add(0, due=timed.clock())
    timed.clock.advance(2.0)
    timed.driver.run_next()
    stage = timed.book.summary()["stages"][INSTALL_REGISTER]
    assert stage[LATENESS]["max"] == pytest.approx(2000.0, rel=1e-3)
    assert stage[CORRECTED]["max"] == pytest.approx(2000.0 + stage[SERVICE]["max"], rel=1e-3)
    assert stage[SERVICE]["max"] >= 5 * SERVICE_S * 1000.0


def test_pop_due_hands_out_every_due_device_with_its_due_time_and_overdue_counts_the_rest() -> None:
    """Three devices due, one not yet: pop_due takes the three (earliest first); overdue counted before popping."""
    timed = Timed()
    now = timed.clock()
    for index, due in enumerate((now - 3, now - 1, now - 2, now + 5)):
        timed.add(index, due=due)
    assert timed.driver.overdue(now) == 3
    popped = timed.driver.pop_due()
    assert [due for due, _ in popped] == [now - 3, now - 2, now - 1]
    assert timed.driver.overdue(now) == 0 and len(timed.driver) == 1


def test_a_renewal_retried_after_a_back_off_is_one_stage_timed_through_the_back_off() -> None:
    """The second cycle's renewal is reset and renewed after its 60 s back-off: the book holds one token renewal,
    served from the first attempt to the renewed reply, not two short ones."""
    timed = Timed(ccm_lifetime=30.0)  # the second cycle renews first
    timed.add(0, due=timed.clock(), polls=2)
    timed.driver.run_next()
    timed.site.script(STEP_CCM_TOKEN, TransportError(oc.RESET, ms=SERVICE_S * 1000.0))
    while (due := timed.driver.next_due()) is not None:  # a life of two cycles: it ends
        timed.clock.now = max(timed.clock.now, due)
        timed.driver.run_next()
    renewal = timed.book.summary()["stages"][TOKEN_RENEWAL][SERVICE]
    assert renewal["count"] == 1
    assert renewal["max"] == pytest.approx(60_000.0 + 2 * SERVICE_S * 1000.0, rel=1e-3)
