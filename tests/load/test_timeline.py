"""The fault timeline: the site's active faults, polled, as windows that outcomes are judged against."""

from __future__ import annotations

import math
from typing import Any

import pytest

from harness.chaos.timeline import ANY_ROLE, FaultTimeline, TimelineError


def fault(name: str = "cp_disconnected", role: str = "cmg", started: float = 100.0, ends: float = 160.0,
          injections: int = 0, **params: Any) -> dict[str, Any]:
    """One entry of ``GET /faults``'s ``active`` list."""
    return {"name": name, "role": role, "probability": 1.0, "params": params, "started_at": started, "ends_at": ends,
            "remaining_s": ends - started, "injections": injections}


def listing(*active: dict[str, Any], **injections: int) -> dict[str, Any]:
    return {"active": list(active), "injections": injections, "catalogue": {}}


def test_a_window_starts_when_the_site_switched_the_fault_on_not_when_the_poll_saw_it() -> None:
    """The window's start is the site's started_at; while the fault is on the window has no end."""
    timeline = FaultTimeline(grace=0.0)
    timeline.observe(listing(fault(started=100.0)), now=100.8)
    assert [(w["name"], w["role"], w["start"], w["end"]) for w in timeline.to_list()] == [
        ("cp_disconnected", "cmg", 100.0, None)]
    [window] = timeline.windows()
    assert (window.start, window.end) == (100.0, math.inf)


def test_a_fault_that_ran_its_course_ends_at_its_end_time() -> None:
    """Gone from the list after its ends_at: the window ends then, not when the poll noticed."""
    timeline = FaultTimeline(grace=0.0)
    timeline.observe(listing(fault(started=100.0, ends=103.0)), now=101.0)
    timeline.observe(listing(), now=104.0)
    assert timeline.to_list()[0]["end"] == 103.0


def test_a_fault_cleared_early_ends_no_later_than_the_poll_that_missed_it() -> None:
    """Cleared before its end time: the window ends at the first poll that no longer lists it."""
    timeline = FaultTimeline(grace=0.0)
    timeline.observe(listing(fault(started=100.0, ends=400.0)), now=101.0)
    timeline.observe(listing(), now=102.0)
    assert timeline.to_list()[0]["end"] == 102.0


def test_a_fault_switched_on_again_opens_a_new_window() -> None:
    """The same fault at the same role with a new started_at ends the old window where the new one begins."""
    timeline = FaultTimeline(grace=0.0)
    timeline.observe(listing(fault(started=100.0, ends=400.0)), now=101.0)
    timeline.observe(listing(fault(started=105.0, ends=110.0)), now=106.0)
    assert [(w["start"], w["end"]) for w in timeline.to_list()] == [(100.0, 105.0), (105.0, None)]


def test_a_fault_that_came_and_went_between_polls_is_inferred_from_its_injections() -> None:
    """Only the injection count shows it: a window over the two polls, judged at every role the fault can target."""
    timeline = FaultTimeline(grace=0.0)
    timeline.observe(listing(ccm_token_expired=4), now=100.0)
    timeline.observe(listing(ccm_token_expired=9), now=101.0)
    [window] = timeline.to_list()
    assert (window["name"], window["role"], window["start"], window["end"], window["injections"],
            window["inferred"]) == ("ccm_token_expired", ANY_ROLE, 100.0, 101.0, 5, True)
    assert {w.role for w in timeline.windows()} == {"cmg", "sts"}


def test_injections_of_a_fault_the_polls_saw_infer_nothing() -> None:
    """Injections during a window the timeline knows add no second window."""
    timeline = FaultTimeline(grace=0.0)
    timeline.observe(listing(fault(started=99.5), cp_disconnected=0), now=100.0)
    timeline.observe(listing(fault(started=99.5, injections=7), cp_disconnected=7), now=101.0)
    assert len(timeline.to_list()) == 1 and timeline.to_list()[0]["injections"] == 7


def test_judging_windows_are_widened_by_the_grace_and_lingering_faults_outlive_theirs() -> None:
    """A revoked-CMG-certificate CRL stays with the devices that fetched it, so its window never ends."""
    timeline = FaultTimeline(grace=1.0)
    timeline.observe(listing(fault("cmg_cert_revoked", "crl", 100.0, 103.0), fault("crl_unreachable", "crl", 100.0,
                                                                                   103.0)), now=101.0)
    timeline.observe(listing(), now=104.0)
    windows = {w.name: (w.start, w.end) for w in timeline.windows()}
    assert windows == {"cmg_cert_revoked": (99.0, math.inf), "crl_unreachable": (99.0, 104.0)}


def test_parameters_reach_the_judging_windows() -> None:
    """tenant_not_onboarded for one tenant only excuses that tenant's devices, so its parameters are kept."""
    timeline = FaultTimeline()
    timeline.observe(listing(fault("tenant_not_onboarded", "cmg", tenant_id="9aaf466a-3f40-4468-b3cd-f0010f21f05a")),
                     now=101.0)
    assert timeline.windows()[0].params == {"tenant_id": "9aaf466a-3f40-4468-b3cd-f0010f21f05a"}


@pytest.mark.parametrize(("document", "named"), [
    ([], "JSON object"),
    ({"active": {}, "injections": {}}, "'active' list"),
    ({"active": [{"role": "cmg"}], "injections": {}}, "name and a role"),
    ({"active": [fault(started=float("nan"))], "injections": {}}, "started_at"),
    ({"active": [], "injections": {"reset": "3"}}, "'reset'"),
])
def test_a_malformed_fault_list_is_refused_by_value(document: Any, named: str) -> None:
    """An answer that is not the control API's shape raises TimelineError naming what is wrong."""
    with pytest.raises(TimelineError, match=named):
        FaultTimeline().observe(document, now=1.0)


def test_the_last_poll_is_remembered_for_the_ui() -> None:
    """The active faults of the latest poll, and when it was read, are kept."""
    timeline = FaultTimeline()
    timeline.observe(listing(fault()), now=100.5)
    assert timeline.synced_at == 100.5 and [f["name"] for f in timeline.active] == ["cp_disconnected"]
