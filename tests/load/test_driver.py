"""The fleet driver: many lifecycles over one transport, with stage timing, milestones and outcomes tallied."""

from __future__ import annotations

import random

import pytest

from harness.client import outcome as oc
from harness.client.device import WAM_DEVICE_FAILS_D0090016, DeviceProfile, Fleet
from harness.client.events import STEP_AAD_INFO, STEP_POLICY_ASSIGNMENTS, Request, Response, TransportError
from harness.client.lifecycle import Lifecycle
from harness.client.testing import ScriptedSite, scripted_endpoints
from harness.load.driver import (
    INSTALL_REGISTER,
    POLICY_CYCLE,
    TOKEN_RENEWAL,
    DeviceRun,
    FleetDriver,
    device_faults,
    reply_reason,
)
from harness.load.tally import OutcomeTally
from mock_site.clock import FakeClock

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
        self.endpoints = scripted_endpoints(policy_interval_s=INTERVAL)
        self.driver = FleetDriver(clock=self.clock, send=self.send, report_stage=self.report, tally=self.tally,
                                  cmg_url=self.endpoints.cmg_url)

    def send(self, device: DeviceRun, request: Request) -> Response | TransportError:
        self.clock.advance(STEP_MS / 1000.0)
        return self.site.answer(request)

    def report(self, name: str, ms: float, fail: str) -> None:
        self.reports.append((name, ms, fail))

    def add(self, profile: DeviceProfile, *, due: float | None = None) -> None:
        life = Lifecycle(profile, self.endpoints, clock=self.clock, rng=random.Random(0), polls=None, trail=False)
        self.driver.add(profile.index, life, faulted=bool(device_faults(profile)),
                        due=self.clock() if due is None else due)

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


@pytest.mark.parametrize(("profile", "unexpected"), [(device(), {"tls.invalid_ca": 1}),
                                                     (device(root_ca_present=False), {})])
def test_a_failed_life_is_unexpected_only_for_a_device_without_faults(profile: DeviceProfile,
                                                                       unexpected: dict[str, int]) -> None:
    """A TLS failure ends the life; it counts as unexpected unless the device carries a device fault."""
    harness = Harness()
    harness.site.script(STEP_AAD_INFO, TransportError(oc.TLS_INVALID_CA))
    harness.add(profile)
    harness.driver.run_next()
    snapshot = harness.tally.snapshot()
    assert snapshot["outcomes"] == {"tls.invalid_ca": 1}
    assert snapshot["unexpected"] == unexpected
    assert [(name, round(ms), fail) for name, ms, fail in harness.reports] == [
        (INSTALL_REGISTER, STEP_MS, "tls.invalid_ca")]
    assert len(harness.driver) == 0 and harness.driver.finished == 1


def test_a_failed_policy_cycle_counts_as_a_failed_stage_while_the_life_goes_on() -> None:
    """The client retries policy on the next cycle; the failed cycle is reported and tallied by its reason."""
    harness = Harness()
    harness.site.script(STEP_POLICY_ASSIGNMENTS, Response(500))
    harness.add(device())
    harness.driver.run_next()
    snapshot = harness.tally.snapshot()
    assert harness.reports[-1][0] == POLICY_CYCLE and harness.reports[-1][2] == "http.500"
    assert snapshot["stage_failures"] == {POLICY_CYCLE: 1}
    assert snapshot["unexpected"] == {"http.500": 1}
    assert snapshot["devices"]["polled"] == 0
    harness.run_until(INTERVAL)
    assert harness.tally.snapshot()["devices"]["polled"] == 1


def test_only_requests_to_the_cmg_enter_the_cmgservice_counts() -> None:
    """Entra ID token requests go elsewhere, so they have no CMGService row; CMG requests carry their body size."""
    harness = Harness()
    harness.add(device())
    harness.driver.run_next()
    requests = harness.tally.snapshot()["requests"]
    assert requests and all(name.startswith(("/CCM_Proxy", "/downloadrestservice")) for name in requests)
    sent = sum(len(r.body) for r in harness.site.requests if r.url.startswith(harness.endpoints.cmg_url))
    assert sum(row["request_bytes"] for row in requests.values()) == sent


@pytest.mark.parametrize(("traits", "faults"), [
    ({}, ()),
    ({"nocrlcheck": True, "pki_client_cert": True}, ()),
    ({"root_ca_present": False}, ("root_ca_missing",)),
    ({"wpj_cert": False, "clock_skew": 900.0}, ("wpj_missing", "clock_skew")),
    ({"wam": WAM_DEVICE_FAILS_D0090016}, ("wam:" + WAM_DEVICE_FAILS_D0090016,)),
])
def test_device_faults_name_the_faults_a_profile_carries(traits: dict[str, object], faults: tuple[str, ...]) -> None:
    """Flags such as /NoCRLCheck or a PKI certificate are not faults; a missing root CA or WPJ certificate is."""
    assert device_faults(device(0, **traits)) == faults


@pytest.mark.parametrize(("reply", "reason"), [(Response(204), ""), (Response(401), "http.401"),
                                               (TransportError(oc.RESET), "reset")])
def test_reply_reason_names_a_failed_exchange(reply: Response | TransportError, reason: str) -> None:
    """2xx is success; anything else is an HTTP or transport reason code."""
    assert reply_reason(reply) == reason
