"""The fleet driver's bookkeeping at its edges: milestones counted only when reached, the span a success is judged
over, the trail's rounding, and the driver's answer when nothing is due (built on tests/fleet/test_driver.py's
scripted site and fake clock)."""

from __future__ import annotations

import dataclasses

import pytest

from harness.client import outcome as oc
from harness.client.events import STEP_AAD_INFO, STEP_CCMSETUP_CAB, STEP_REGISTRATION, Request, Response, TransportError
from harness.fleet.driver import INSTALL_REGISTER, DeviceRun
from tests.fleet.test_driver import STEP_MS, Harness, device


def test_run_next_answers_false_when_nothing_is_due() -> None:
    harness = Harness()
    harness.add(device(), due=harness.clock() + 100.0)
    assert harness.driver.run_next() is False
    assert harness.driver.run_next() is False  # and stays so: nothing ran


def test_a_device_retrying_its_download_has_reached_no_milestone_and_its_stage_runs_on() -> None:
    """A ccmsetup download cut off: the client waits to retry. Until then neither installed nor registered is counted,
    and the install span stays open through the back-off (nothing reported yet); after the retry both are."""
    harness = Harness()
    harness.site.script(STEP_CCMSETUP_CAB, TransportError(oc.RESET))
    harness.add(device())
    harness.driver.run_next()
    devices = harness.tally.snapshot()["devices"]
    assert (devices["installed"], devices["registered"], harness.reports) == (0, 0, [])
    harness.run_until(120.0)
    devices = harness.tally.snapshot()["devices"]
    assert (devices["installed"], devices["registered"]) == (1, 1)
    assert harness.names()[0] == INSTALL_REGISTER and harness.reports[0][2] == ""


def test_a_device_whose_registration_is_refused_is_installed_but_not_registered() -> None:
    harness = Harness()
    harness.site.script(STEP_REGISTRATION, Response(403, reason="MP_Registration_AAD_Token_Invalid"))
    harness.add(device())
    harness.driver.run_next()
    devices = harness.tally.snapshot()["devices"]
    assert (devices["installed"], devices["registered"]) == (1, 0)


def test_a_finished_install_is_judged_over_the_whole_span_from_the_first_request() -> None:
    """The success is judged from when the first request went out to when registration's last exchange ended."""
    harness = Harness()
    start = harness.clock()
    harness.add(device())
    harness.driver.run_next()
    [(_, outcome, span_start, span_end, _)] = harness.judged
    install_requests = sum(1 for r in harness.site.requests if r.stage in ("install", "registration"))
    assert outcome is None
    assert span_start == pytest.approx(start)
    assert span_end == pytest.approx(start + install_requests * STEP_MS / 1000)


def test_trail_times_are_kept_to_a_tenth_of_a_millisecond() -> None:
    harness = Harness()
    harness.site.script(STEP_AAD_INFO, TransportError(oc.TLS_INVALID_CA))
    original = harness.send

    def send(run: DeviceRun, request: Request) -> Response | TransportError:
        return dataclasses.replace(original(run, request), ms=10.26)
    harness.driver._send = send
    harness.add(device(root_ca_present=False))
    harness.driver.run_next()
    [(_, outcome, _, _, trail)] = harness.judged
    assert outcome == "tls.invalid_ca"
    assert {entry.ms for entry in trail} == {10.3}
