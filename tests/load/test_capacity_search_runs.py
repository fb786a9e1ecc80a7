"""The open-model capacity search end to end on the embedded site: it finds a knee within bounded time, and a plan
that never saturates says so instead of extrapolating."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _search(out: Path, *options: str) -> tuple[dict, dict, float, str]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--capacity", "--out", str(out),
                             "--progress-interval", "1s", *options],
                            capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "capacity    " in result.stdout
    return (json.loads((out / "capacity.json").read_text()), json.loads((out / "summary.json").read_text()), elapsed,
            result.stdout)


def test_a_search_on_the_embedded_site_reaches_a_knee_within_bounded_time(tmp_path: Path) -> None:
    """From 5/s doubling, the embedded site saturates (corrected p99 past a 300 ms SLO, or it falls behind) before
    the step budget is spent; the answer is an interval around the knee, and the summary shows it."""
    # At 120x an hour of token lifetime lasts 30 s: seconds of queueing past the knee do not expire tokens in the queue.
    document, summary, elapsed, _ = _search(tmp_path / "cap", "--search-start-rate", "5/s", "--search-hold", "4",
                                            "--slo-p99-ms", "300", "--search-max-steps", "10", "--time-scale", "120")
    result = document["result"]
    assert result["saturated"] is True
    assert result["passing_per_s"] is None or result["passing_per_s"] < result["failing_per_s"]
    assert len(document["steps"]) <= 10 and elapsed < 10 * 4 + 60
    assert summary["model"] == "open" and summary["capacity_search"]["result"] == result
    first_failure = next(step for step in document["steps"] if not step["passed"])
    assert first_failure["reasons"]


def test_a_search_that_never_saturates_claims_nothing_beyond_its_highest_rate(tmp_path: Path) -> None:
    """Capped at 3/s with a generous SLO the site never fails: 'not saturated up to 3.0/s', and no estimate."""
    document, _, _, stdout = _search(tmp_path / "cap", "--search-start-rate", "2/s", "--search-max-rate", "3/s",
                                     "--search-hold", "3", "--slo-p99-ms", "60000")
    result = document["result"]
    assert result["saturated"] is False and result["estimate_per_s"] is None
    assert result["describe"].startswith("not saturated up to 3.0/s")
    assert [step["intended_per_s"] for step in document["steps"]] == [2.0, 3.0]
    # While it searched, the status named each step (of at most the step budget), its arrival rate and its state.
    steps = {line.split("  step ", 1)[1] for line in stdout.splitlines() if line.startswith("progress  ")
             and "  step " in line}
    assert any(step.startswith("1 of <=16 at 2.0 devices/s ") for step in steps)
    assert any(step.startswith("2 of <=16 at 3.0 devices/s ") for step in steps)
    assert {step.rsplit(" ", 1)[1] for step in steps} <= {"settling", "measuring"}


def test_a_distributed_search_measures_every_step_from_the_workers_reports(tmp_path: Path) -> None:
    """With two Locust workers the master hears of requests only through their reports (every 3 s): each step still
    measures the workers' requests at its own rate (none is judged on an empty window as '0% achieved')."""
    document, summary, _, _ = _search(tmp_path / "cap", "--workers", "2", "--search-start-rate", "4/s",
                                      "--search-max-rate", "8/s", "--search-hold", "3", "--slo-p99-ms", "60000")
    steps = document["steps"]
    assert [step["intended_per_s"] for step in steps] == [4.0, 8.0]
    assert all(step["requests"] > 0 and step["passed"] for step in steps), steps
    assert all(step["achieved_per_s"] >= 0.95 * step["intended_per_s"] for step in steps), steps
    assert document["result"]["describe"].startswith("not saturated up to 8.0/s")
    assert summary["model"] == "open"


def test_a_step_settles_for_a_report_interval_and_measures_one_past_its_hold() -> None:
    """Alone, a 6 s step settles 2 s and ends at 6 s; distributed (3 s reports) it settles 3 s and ends at 9 s."""
    from harness.plans.search import step_window

    assert step_window(6.0, 0.0) == (2.0, 6.0)
    assert step_window(6.0, 3.0) == (3.0, 9.0)
    assert step_window(12.0, 3.0) == (4.0, 15.0)
