"""Chaos schedules: parsing, refusal with line numbers, and the runner's timing and clean-up."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from cmg_protocol.clock import FakeClock
from harness.chaos.schedule import ScheduleError, ScheduleRunner, load_schedule, parse_schedule

EXAMPLE = """\
faults:
  - fault: wpj_missing
    share: 0.2
  - fault: crl_unreachable
    start: 60
    duration: 90
  - fault: ccm_token_lifetime
    start: 120
    duration: 60
    params: {seconds: 30}
  - fault: cp_disconnected
    start: 200
    duration: 20
"""


def test_a_schedule_splits_into_device_shares_and_timed_faults() -> None:
    """Device faults become fleet shares; server faults keep start, duration, role and params."""
    schedule = parse_schedule(EXAMPLE)
    assert schedule.device_shares == {"wpj_missing": 0.2}
    assert [(f.name, f.start, f.duration) for f in schedule.timed] == [
        ("crl_unreachable", 60, 90), ("ccm_token_lifetime", 120, 60), ("cp_disconnected", 200, 20)]
    assert schedule.timed[1].params == {"seconds": 30}
    assert schedule.length == 220
    assert schedule.fleet_mix().wpj_missing == 0.2
    assert schedule.fleet_mix_text() == "wpj_missing=0.2"


@pytest.mark.parametrize("entry, line, words", [
    ("  - fault: no_such_fault\n    duration: 5\n", 4, "unknown fault 'no_such_fault'"),
    ("  - fault: latency\n    duration: -5\n", 4, "must be > 0"),
    ("  - fault: latency\n    start: 10\n", 4, "missing 'duration'"),
    ("  - fault: wpj_missing\n    share: 1.5\n", 4, "share of 'wpj_missing' must be in [0, 1], got 1.5"),
    ("  - fault: latency\n    duration: 5\n    probability: 2\n", 4, "probability"),
    ("  - fault: latency\n    duration: 5\n    role: entra\n", 4, "entra"),
    ("  - fault: latency\n    duration: 5\n    params: {bogus: 1}\n", 4, "bogus"),
    ("  - fault: wpj_missing\n    share: 0.1\n    start: 5\n", 4, "whole run"),
])
def test_bad_entries_are_refused_with_their_line(entry: str, line: int, words: str) -> None:
    """Unknown faults, negative durations, shares above 1 and bad parameters name the file line."""
    text = "faults:\n  - fault: wpj_missing\n    share: 0.1\n" + entry
    with pytest.raises(ScheduleError) as refused:
        parse_schedule(text, source="chaos.yaml")
    assert f"chaos.yaml:{line}:" in str(refused.value)
    assert words in str(refused.value)


@pytest.mark.parametrize("text", ["", "faults: 3\n", "- a\n", "faults: []\nextra: 1\n", "faults: [\n"])
def test_malformed_documents_are_refused(text: str) -> None:
    """An empty, non-mapping or invalid YAML document is refused."""
    with pytest.raises(ScheduleError):
        parse_schedule(text)


def test_missing_file_is_named(tmp_path: Path) -> None:
    """A schedule path that does not exist is refused with its name."""
    with pytest.raises(ScheduleError, match="nope.yaml"):
        load_schedule(tmp_path / "nope.yaml")


class RecordingFaults:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def set(self, name: str, **kwargs: Any) -> None:
        self.calls.append(("set", name, kwargs["duration"]))

    def reset(self) -> None:
        self.calls.append(("reset",))


def test_runner_applies_each_fault_at_its_start_with_its_duration() -> None:
    """The runner waits until each start (on its clock) and sets the fault with its own duration."""
    clock = FakeClock(1000.0)
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(round(seconds, 6))
        clock.advance(seconds)
        return False

    faults = RecordingFaults()
    runner = ScheduleRunner(parse_schedule(EXAMPLE), faults, clock=clock, wait=wait)
    runner.run()
    assert waits == [60.0, 60.0, 80.0]
    assert faults.calls == [("set", "crl_unreachable", 90), ("set", "ccm_token_lifetime", 60),
                            ("set", "cp_disconnected", 20)]
    assert [round(t - 1000.0) for t, _ in runner.applied] == [60, 120, 200]


def test_stopping_early_resets_every_fault() -> None:
    """A run that stops before the schedule ends clears all faults and applies no more."""
    faults = RecordingFaults()
    runner = ScheduleRunner(parse_schedule(EXAMPLE), faults, clock=lambda: 0.0)
    worker = threading.Thread(target=runner.run)
    worker.start()
    runner.stop()
    worker.join(5)
    assert not worker.is_alive()
    assert faults.calls == [("reset",)]


def test_control_api_errors_are_recorded_not_raised() -> None:
    """A fault the site refuses is recorded with its line and the rest still runs."""
    class Refusing(RecordingFaults):
        def set(self, name: str, **kwargs: Any) -> None:
            if name == "crl_unreachable":
                raise RuntimeError("refused")
            super().set(name, **kwargs)

    faults = Refusing()
    clock = FakeClock()
    runner = ScheduleRunner(parse_schedule(EXAMPLE), faults, clock=clock,
                            wait=lambda s: (clock.advance(s), False)[1])
    runner.run()
    assert runner.errors == ["line 4: crl_unreachable: refused"]
    assert len(faults.calls) == 2
