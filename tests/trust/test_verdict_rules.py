"""Verdict rules at their edges: fault windows touching a device's life, the default Entra lifetime, the explanation
each verdict gives, and the tally's counts and examples when Locust workers' tallies are merged."""

from __future__ import annotations

from harness.chaos.verdicts import NEVER_EXPECTED, FaultWindow, VerdictSettings, VerdictTally, judge
from harness.client import Fleet
from harness.client import outcome as oc

TENANT = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"
SETTINGS = VerdictSettings(onboarded_tenants=frozenset({TENANT}))
DEVICE = Fleet(1, tenant_ids=[TENANT]).device(0)


def _judge(outcome: str | None, windows: list[FaultWindow] = (), profile=DEVICE):  # type: ignore[no-untyped-def]
    return judge(profile, outcome, life_start=100.0, life_end=200.0, windows=windows, settings=SETTINGS)


def test_a_fault_window_that_touches_the_life_at_either_end_counts() -> None:
    """A fault that ended the instant the device started, or began the instant it ended, may still explain it."""
    for start, end in ((50.0, 100.0), (200.0, 250.0)):
        assert _judge(oc.STS_500, [FaultWindow("sts_error", "sts", start, end)]).kind == "expected_failure"
    for start, end in ((50.0, 99.9), (200.1, 250.0)):
        assert _judge(oc.STS_500, [FaultWindow("sts_error", "sts", start, end)]).kind == "unexpected_failure"


def test_the_default_entra_token_lifetime_is_75_minutes() -> None:
    """A device clock up to 75 minutes plus the 300 s leeway behind still gets a usable Entra token; one more
    second behind and CCM_STS refuses it."""
    assert SETTINGS.entra_token_lifetime == 4500.0
    assert _judge(None, profile=DEVICE.with_traits(clock_skew=-4800.0)).kind == "expected_success"
    assert _judge(oc.STS_401, profile=DEVICE.with_traits(clock_skew=-4801.0)).kind == "expected_failure"


def test_an_outcome_that_is_never_expected_is_not_expected_and_says_why() -> None:
    """mp.401 under any fault: expected is False (not merely falsy) and the explanation is the fixed reason."""
    verdict = _judge(oc.MP_401, [FaultWindow("http_error", "cmg", 0, 1000)])
    assert verdict.expected is False and verdict.kind == "unexpected_failure"
    assert verdict.explanation == NEVER_EXPECTED[oc.MP_401]


def test_each_verdict_kind_explains_itself() -> None:
    """Expected: who predicts it; unexpected success: what the device should have failed with; unexpected
    failure: which outcomes were predicted."""
    assert _judge(None).explanation == "ok is what a healthy site predicts"
    window = [FaultWindow("sts_error", "sts", 0, 1000)]
    assert _judge(oc.STS_500, window).explanation == "sts.500 is what sts_error predicts"
    no_ca = DEVICE.with_traits(root_ca_present=False)
    assert _judge(None, profile=no_ca).explanation == (
        "the device should have failed with tls.invalid_ca (root_ca_missing) but succeeded")
    assert _judge(oc.CMG_503).explanation == "cmg.503 is not among the predicted outcomes (ok)"


def test_the_tally_keeps_five_examples_by_default_and_counts_both_unexpected_kinds() -> None:
    """Six unexpected failures keep five examples; unexpected counts failures and successes together."""
    tally = VerdictTally()
    for i in range(6):
        tally.add(_judge(oc.CMG_503), device=f"D{i}")
    tally.add(_judge(None, profile=DEVICE.with_traits(root_ca_present=False)))
    assert len(tally.examples[f"unexpected_failure:{oc.CMG_503}"]) == 5
    assert tally.unexpected == 7 and tally.expected == 0


def test_merging_tallies_keeps_at_most_the_examples_room_left() -> None:
    """A merged worker report adds examples only up to max_examples; a full tally takes none."""
    worker = VerdictTally()
    for i in range(4):
        worker.add(_judge(oc.CMG_503), device=f"W{i}")
    master = VerdictTally(max_examples=5)
    for i in range(3):
        master.add(_judge(oc.CMG_503), device=f"M{i}")
    master.merge(worker.to_dict())
    key = f"unexpected_failure:{oc.CMG_503}"
    assert [e["device"] for e in master.examples[key]] == ["M0", "M1", "M2", "W0", "W1"]
    master.merge(worker.to_dict())
    assert len(master.examples[key]) == 5
    assert master.kinds["unexpected_failure"] == 11
