"""The fleet driver: many lifecycles over one transport, with stage timing, milestones, outcomes and verdict hand-off."""

from __future__ import annotations

import dataclasses
import random

import pytest

from cmg_protocol.clock import FakeClock
from harness.client import outcome as oc
from harness.client.device import DeviceProfile, Fleet
from harness.client.events import (
    STEP_AAD_INFO,
    STEP_CCM_TOKEN,
    STEP_POLICY_ASSIGNMENTS,
    Request,
    Response,
    TransportError,
)
from harness.client.lifecycle import Lifecycle
from harness.client.outcome import TrailEntry
from harness.client.testing import ScriptedSite, scripted_endpoints
from harness.fleet import driver as driver_module
from harness.fleet.driver import INSTALL_REGISTER, POLICY_CYCLE, TOKEN_RENEWAL, DeviceRun, FleetDriver
from harness.fleet.tally import OutcomeTally

TENANT = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"
INTERVAL = 30.0
STEP_MS = 10.0  # the fake network takes this long per exchange


class Harness:
    """A driver over a scripted site with a fake clock that moves STEP_MS per exchange."""

    def __init__(self, *, ccm_lifetime: float = 8 * 3600.0) -> None:
        self.clock = FakeClock()
        self.site = ScriptedSite(self.clock, ccm_lifetime=ccm_lifetime)
        self.tally = OutcomeTally()
        self.reports: list[tuple[str, float, str]] = []
        self.judged: list[tuple[DeviceProfile, str | None, float, float, tuple[TrailEntry, ...]]] = []
        self.endpoints = scripted_endpoints(policy_interval_s=INTERVAL)
        self.driver = FleetDriver(clock=self.clock, send=self.send, report_stage=self.report, tally=self.tally,
                                  cmg_url=self.endpoints.cmg_url, judge=self.judge)

    def judge(self, profile: DeviceProfile, outcome: str | None, start: float, end: float,
              trail: tuple[TrailEntry, ...]) -> None:
        self.judged.append((profile, outcome, start, end, trail))

    def send(self, device: DeviceRun, request: Request) -> Response | TransportError:
        self.clock.advance(STEP_MS / 1000.0)
        # A transport times each exchange from when it went out: here, the fake network's STEP_MS.
        return dataclasses.replace(self.site.answer(request), ms=STEP_MS)

    def report(self, name: str, ms: float, fail: str) -> None:
        self.reports.append((name, ms, fail))

    def add(self, profile: DeviceProfile, *, due: float | None = None) -> None:
        life = Lifecycle(profile, self.endpoints, clock=self.clock, rng=random.Random(0), polls=None, trail=False)
        self.driver.add(profile.index, life, due=self.clock() if due is None else due)

    def run_until(self, seconds: float) -> None:
        """Run every device as it falls due, jumping the clock to each due time, for ``seconds`` of clock time."""
        end = self.clock() + seconds
        while (due := self.driver.next_due()) is not None and due <= end:
            self.clock.now = max(self.clock.now, due)
            self.driver.run_next()

    def names(self) -> list[str]:
        return [name for name, _, _ in self.reports]


def device(index: int = 0, **traits: object) -> DeviceProfile:
    """Device ``index`` of a small fleet, with ``traits`` changed."""
    return Fleet(1, tenant_ids=[TENANT]).device(index).with_traits(**traits)


def test_a_new_device_installs_registers_and_polls_in_its_first_turn() -> None:
    """The first turn runs install and registration, then the first policy cycle, and stops at the policy wait."""
    harness = Harness()
    harness.add(device())
    assert harness.driver.run_next()
    assert harness.names() == [INSTALL_REGISTER, POLICY_CYCLE]
    assert all(not fail for _, _, fail in harness.reports)
    assert harness.tally.snapshot()["devices"] == {"started": 1, "installed": 1, "registered": 1, "renewed": 0,
                                                   "polled": 1}


def test_stage_time_covers_every_exchange_of_the_stage() -> None:
    """The install+register entry spans all its exchanges (each takes STEP_MS on the fake network)."""
    harness = Harness()
    harness.add(device())
    harness.driver.run_next()
    install_requests = sum(1 for r in harness.site.requests if r.stage in ("install", "registration"))
    assert harness.reports[0][1] == pytest.approx(install_requests * STEP_MS)


def test_a_waiting_device_is_not_run_before_its_policy_interval() -> None:
    """After a cycle the device is due one policy interval after the cycle started, and not before."""
    harness = Harness()
    harness.add(device())
    started = harness.clock()
    harness.driver.run_next()
    due = harness.driver.next_due()
    assert due is not None and due > harness.clock()
    assert not harness.driver.run_next()
    assert due == pytest.approx(started + sum(1 for r in harness.site.requests if r.stage in
                                              ("install", "registration")) * STEP_MS / 1000 + INTERVAL)


def test_devices_run_in_due_order() -> None:
    """Of several devices only the ones already due run; later ones wait their turn."""
    harness = Harness()
    harness.add(device(0), due=harness.clock() + 100.0)
    harness.add(device(1))
    harness.driver.run_next()
    assert len(harness.driver) == 2
    assert harness.tally.snapshot()["devices"]["registered"] == 1
    assert not harness.driver.run_next()


def test_policy_cycles_repeat_and_the_ccm_token_is_renewed_before_it_expires() -> None:
    """With a short CCM token, later cycles renew it first; renewals and cycles are counted as they happen."""
    harness = Harness(ccm_lifetime=100.0)
    harness.add(device())
    harness.run_until(300.0)
    snapshot = harness.tally.snapshot()
    assert TOKEN_RENEWAL in harness.names()
    assert snapshot["devices"]["renewed"] == 1
    assert snapshot["events"]["renewed"] >= 2
    assert snapshot["events"]["polled"] == harness.names().count(POLICY_CYCLE) >= 6
    assert snapshot["unexpected"] == {}


def test_a_failed_life_ends_and_is_handed_to_the_judge_with_its_trail() -> None:
    """A TLS failure ends the life: tallied by reason, and judged once over its span with the exchange that failed."""
    harness = Harness()
    harness.site.script(STEP_AAD_INFO, TransportError(oc.TLS_INVALID_CA))
    profile = device(root_ca_present=False)
    start = harness.clock()
    harness.add(profile)
    harness.driver.run_next()
    snapshot = harness.tally.snapshot()
    assert snapshot["outcomes"] == {"tls.invalid_ca": 1}
    assert snapshot["unexpected"] == {}  # the verdict, not the driver, decides what is unexpected
    assert [(name, round(ms), fail) for name, ms, fail in harness.reports] == [
        (INSTALL_REGISTER, STEP_MS, "tls.invalid_ca")]
    assert len(harness.driver) == 0 and harness.driver.finished == 1
    [(judged, outcome, span_start, span_end, trail)] = harness.judged
    assert (judged, outcome, span_start) == (profile, "tls.invalid_ca", start)
    assert span_end == pytest.approx(start + STEP_MS / 1000)
    assert [(entry.step, entry.status, entry.result) for entry in trail] == [(STEP_AAD_INFO, None, "tls.invalid_ca")]


def test_a_finished_install_and_registration_is_judged_as_a_success() -> None:
    """Reaching policy polling hands the judge a success, so a device that should have failed is caught there."""
    harness = Harness()
    harness.add(device())
    harness.driver.run_next()
    [(_, outcome, _, _, trail)] = harness.judged
    assert outcome is None
    assert trail and all(entry.result == "ok" for entry in trail)
    assert trail[-1].step == "ccm_token"


def test_a_failed_policy_cycle_counts_as_a_failed_stage_while_the_life_goes_on() -> None:
    """The client retries policy on the next cycle; the failed cycle is reported, tallied and judged by its reason."""
    harness = Harness()
    harness.site.script(STEP_POLICY_ASSIGNMENTS, Response(500))
    harness.add(device())
    harness.driver.run_next()
    snapshot = harness.tally.snapshot()
    assert harness.reports[-1][0] == POLICY_CYCLE and harness.reports[-1][2] == "http.500"
    assert snapshot["stage_failures"] == {POLICY_CYCLE: 1}
    assert snapshot["devices"]["polled"] == 0
    assert [outcome for _, outcome, _, _, _ in harness.judged] == [None, "http.500"]
    assert [entry.step for entry in harness.judged[-1][4]] == [STEP_POLICY_ASSIGNMENTS]
    harness.run_until(INTERVAL)
    assert harness.tally.snapshot()["devices"]["polled"] == 1


def test_a_failed_renewal_fails_its_policy_cycle_and_is_judged_once() -> None:
    """A cycle that cannot renew the CCM token fails with the renewal's reason; the judge hears of it once."""
    harness = Harness(ccm_lifetime=100.0)
    harness.add(device())
    harness.driver.run_next()
    harness.site.script(STEP_CCM_TOKEN, Response(401, reason="CMGConnector_Unauthorized"))
    harness.run_until(95.0)
    snapshot = harness.tally.snapshot()
    assert snapshot["stage_failures"] == {TOKEN_RENEWAL: 1, POLICY_CYCLE: 1}
    assert (TOKEN_RENEWAL, "sts.401") in [(name, fail) for name, _, fail in harness.reports]
    assert (POLICY_CYCLE, "sts.401") in [(name, fail) for name, _, fail in harness.reports]
    assert [outcome for _, outcome, _, _, _ in harness.judged].count("sts.401") == 1


@pytest.mark.parametrize(("reply", "reason"), [(Response(503), "cmg.503"), (Response(401, reason="MP_Invalid_Token"),
                                                                            "mp.401"),
                                               (TransportError(oc.RESET), "reset")])
def test_stage_failures_carry_the_lifecycles_reason_codes(reply: Response | TransportError, reason: str) -> None:
    """A failed policy request is named as the verdict rules name it (cmg.503, mp.401), not by its bare status."""
    harness = Harness()
    harness.site.script(STEP_POLICY_ASSIGNMENTS, reply)
    harness.add(device())
    harness.driver.run_next()
    assert harness.reports[-1][2] == reason and harness.judged[-1][1] == reason


def test_a_trail_keeps_only_the_latest_exchanges_of_its_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trail of an open stage is bounded (MAX_TRAIL), so a device in a long retry sequence holds little memory."""
    monkeypatch.setattr(driver_module, "MAX_TRAIL", 2)
    harness = Harness()
    harness.add(device())
    harness.driver.run_next()
    [(_, _, _, _, trail)] = harness.judged
    assert [entry.step for entry in trail] == ["registration", "ccm_token"]


def test_without_a_judge_the_driver_keeps_no_trail() -> None:
    """A driver built without a judge (a plain load run) holds no per-device exchange history."""
    harness = Harness()
    harness.driver = FleetDriver(clock=harness.clock, send=harness.send, report_stage=harness.report,
                                 tally=harness.tally, cmg_url=harness.endpoints.cmg_url)
    harness.add(device())
    seen: list[object] = []
    original = harness.send

    def send(run: DeviceRun, request: Request) -> Response | TransportError:
        seen.append(run.trail)
        return original(run, request)

    harness.driver._send = send
    harness.driver.run_next()
    assert seen and all(trail is None for trail in seen)


def test_only_requests_to_the_cmg_enter_the_cmgservice_counts() -> None:
    """Entra ID token requests go elsewhere, so they have no CMGService row; CMG requests carry their body size."""
    harness = Harness()
    harness.add(device())
    harness.driver.run_next()
    requests = harness.tally.snapshot()["requests"]
    assert requests and all(name.startswith(("/CCM_Proxy", "/downloadrestservice")) for name in requests)
    sent = sum(len(r.body) for r in harness.site.requests if r.url.startswith(harness.endpoints.cmg_url))
    assert sum(row["request_bytes"] for row in requests.values()) == sent
