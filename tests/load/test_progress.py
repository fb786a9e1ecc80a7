"""The live status of a run: one snapshot's line, the master's snapshot of its plugin, and the console display."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.latency.histograms import LatencyBook
from harness.load.progress import (
    MEASURING,
    PROGRESS,
    PROGRESS_CHANNEL,
    SETTLING,
    ProgressDisplay,
    ProgressMonitor,
    ProgressSnapshot,
    StepStatus,
    format_status,
    read_progress,
    shape_status,
    step_run_status,
)

SNAPSHOT = ProgressSnapshot(elapsed_s=75.4, total_s=300.0, devices_active=40, requests_per_s=123.46,
                            corrected_p99_ms=812.4, errors=3, unexpected=2,
                            faults_on=("crl_unavailable@cdp", "cp_disconnected@cmg"))


def test_the_status_line_has_every_field() -> None:
    """Elapsed/total, devices active, requests/s, corrected p99, errors, unexpected verdicts, faults that are on."""
    assert format_status(SNAPSHOT) == ("1m15s/5m00s  devices 40  123 req/s  p99 corrected 812 ms  errors 3  "
                                       "unexpected 2  faults crl_unavailable@cdp, cp_disconnected@cmg")


def test_a_status_without_a_total_latency_or_faults_says_so() -> None:
    quiet = ProgressSnapshot(elapsed_s=4.9, total_s=None, devices_active=0, requests_per_s=0.0,
                             corrected_p99_ms=None, errors=0, unexpected=0)
    assert format_status(quiet) == "4s  devices 0  0.0 req/s  p99 corrected -  errors 0  unexpected 0  faults none"


@pytest.mark.parametrize(("step", "text"), [
    (StepStatus(number=2, of=5, rate=30, unit="users", state=SETTLING), "step 2 of 5 at 30.0 users settling"),
    (StepStatus(number=3, of=16, rate=12.5, unit="devices/s", state=MEASURING, at_most=True),
     "step 3 of <=16 at 12.5 devices/s measuring"),
])
def test_a_capacity_run_shows_its_step_its_rate_and_its_state(step: StepStatus, text: str) -> None:
    line = format_status(ProgressSnapshot(**{**SNAPSHOT.__dict__, "step": step}))
    assert line.endswith("  " + text)


def test_a_step_run_settles_for_the_first_seconds_of_each_step_then_measures() -> None:
    assert step_run_status(1, 5, 20, 60.0, 62.0) == StepStatus(2, 5, 20.0, "users", SETTLING)
    assert step_run_status(1, 5, 20, 60.0, 66.0) == StepStatus(2, 5, 20.0, "users", MEASURING)
    # A short step settles for half of it at most.
    assert step_run_status(0, 3, 10, 4.0, 1.9) == StepStatus(1, 3, 10.0, "users", SETTLING)
    assert step_run_status(0, 3, 10, 4.0, 2.1) == StepStatus(1, 3, 10.0, "users", MEASURING)
    assert step_run_status(None, 5, 0, 60.0, 301.0) is None


def test_a_snapshot_survives_its_json_and_a_bad_one_is_refused() -> None:
    snapshot = ProgressSnapshot(**{**SNAPSHOT.__dict__, "step": StepStatus(1, 4, 8.0, "devices/s", SETTLING, True)})
    assert ProgressSnapshot.from_dict(json.loads(json.dumps(snapshot.to_dict()))) == snapshot
    with pytest.raises(ValueError, match="'errors'"):
        ProgressSnapshot.from_dict({**SNAPSHOT.to_dict(), "errors": "many"})
    with pytest.raises(ValueError, match="'step'"):
        ProgressSnapshot.from_dict({**SNAPSHOT.to_dict(), "step": {"number": 1}})


# ------------------------------------------------------------------------------------------ the master's snapshot
class _Tally:
    def snapshot(self) -> dict[str, Any]:
        return {"devices": {"started": 10}, "lifecycles": {"succeeded": 3, "failed": 1},
                "verdicts": {"expected": 6, "unexpected": 2}}


class _Timeline:
    def to_list(self) -> list[dict[str, Any]]:
        return [{"name": "mp_reset", "role": "mp", "start": 1.0, "end": 2.0},
                {"name": "crl_unavailable", "role": "cdp", "start": 3.0, "end": None}]


class _Shape:
    def status(self) -> StepStatus:
        return StepStatus(2, 4, 40.0, "users", MEASURING)


def _plugin(latency: LatencyBook, shape: Any = None) -> Any:
    total = SimpleNamespace(current_rps=42.0, num_failures=5)
    environment = SimpleNamespace(runner=SimpleNamespace(stats=SimpleNamespace(total=total)),
                                  parsed_options=SimpleNamespace(run_time=120, results_dir=""), shape_class=shape)
    return SimpleNamespace(environment=environment, tally=_Tally(), latency=latency,
                           context=SimpleNamespace(timeline=_Timeline()), started_at=1000.0)


def test_the_master_snapshot_reads_the_plugin_and_locusts_statistics() -> None:
    latency = LatencyBook()
    latency.open_channel(PROGRESS_CHANNEL)
    for ms in range(1, 101):  # corrected 1..100 ms: p99 is 99 ms
        latency.record("request", "/x", intended=0.0, sent=0.0, answered=ms / 1000)
    snapshot = ProgressMonitor(_plugin(latency, _Shape()), clock=lambda: 1030.0).snapshot()
    assert snapshot == ProgressSnapshot(elapsed_s=30.0, total_s=120.0, devices_active=6, requests_per_s=42.0,
                                        corrected_p99_ms=pytest.approx(99.0, rel=0.01),  # type: ignore[arg-type]
                                        errors=5, unexpected=2, faults_on=("crl_unavailable@cdp",),
                                        step=StepStatus(2, 4, 40.0, "users", MEASURING))


def test_the_corrected_p99_covers_the_last_seconds_only() -> None:
    """A slow start does not hold the live p99 up for the whole run: it covers the last ten snapshots."""
    latency = LatencyBook()
    latency.open_channel(PROGRESS_CHANNEL)
    monitor = ProgressMonitor(_plugin(latency), clock=lambda: 1030.0)
    latency.record("request", "/x", intended=0.0, sent=0.0, answered=5.0)
    assert monitor.snapshot().corrected_p99_ms == pytest.approx(5000, rel=0.01)
    for _ in range(10):
        latency.record("request", "/x", intended=0.0, sent=0.0, answered=0.01)
        latest = monitor.snapshot()
    assert latest.corrected_p99_ms == pytest.approx(10, rel=0.01)


def test_a_shape_without_steps_or_with_a_broken_status_has_no_step() -> None:
    class Broken:
        def status(self) -> StepStatus:
            raise ValueError("bad --steps")

    assert shape_status(None) is None and shape_status(object()) is None and shape_status(Broken()) is None


def test_the_snapshot_is_written_whole_to_progress_json(tmp_path: Path) -> None:
    latency = LatencyBook()
    latency.open_channel(PROGRESS_CHANNEL)
    monitor = ProgressMonitor(_plugin(latency), clock=lambda: 1010.0)
    monitor.path = tmp_path / PROGRESS
    assert monitor.write() == tmp_path / PROGRESS
    assert read_progress(tmp_path / PROGRESS) == monitor.snapshot()
    assert [p.name for p in tmp_path.iterdir()] == [PROGRESS]  # no temporary file left behind


# ------------------------------------------------------------------------------------------ the run's console
class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _write(path: Path, elapsed: float) -> None:
    path.write_text(json.dumps({**SNAPSHOT.to_dict(), "elapsed_s": elapsed}))


def test_off_a_terminal_a_plain_line_is_printed_every_interval(tmp_path: Path) -> None:
    path, out, clock = tmp_path / PROGRESS, io.StringIO(), _Clock()
    with ProgressDisplay(path, out, interval=10.0, clock=clock) as display:
        display.poll()  # nothing written yet: nothing shown
        for second in range(1, 26):
            clock.now = float(second)
            _write(path, second)
            display.poll()
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["10s/5m00s", "20s/5m00s"]
    assert all(line.startswith("progress  ") and "faults crl_unavailable@cdp" in line for line in lines)


def test_an_interval_of_0_shows_nothing(tmp_path: Path) -> None:
    path, out, clock = tmp_path / PROGRESS, io.StringIO(), _Clock()
    _write(path, 3)
    with ProgressDisplay(path, out, interval=0.0, clock=clock, terminal=True) as display:
        clock.now = 100.0
        display.poll()
    assert out.getvalue() == ""


def test_on_a_terminal_the_line_is_redrawn_in_place_and_taken_away_at_the_end(tmp_path: Path) -> None:
    path, out = tmp_path / PROGRESS, io.StringIO()
    with ProgressDisplay(path, out, terminal=True) as display:
        _write(path, 7)
        display.poll()
        assert display.latest is not None and display.latest.elapsed_s == 7
        display._live.refresh()
    shown = out.getvalue()
    assert "7s/5m00s  devices 40" in shown
    assert "\x1b[" in shown and "\n7s/5m00s" not in shown  # cursor codes from rich, not a printed line
