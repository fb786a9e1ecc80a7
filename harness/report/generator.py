"""Was the load generator the bottleneck? Then the figures describe Locust, not the system under test.

Two signs, both reported as warnings:

* Locust's own CPU warning in ``locust.log`` (it checks its process CPU every few seconds, above 90 %);
* throughput below what the measured latency allows. Each Locust user waits for a reply before its next request,
  so by the response time law X = N / (R + Z), with Z the time a user spends not waiting for a reply (its devices'
  timers, its own work). Z is taken from the first step judged (Z = N₁/X₁ − R₁). Steps whose throughput falls short
  of N / (R + Z) by more than the tolerance lost time that is not in the measured response times: the generator
  did not send on schedule. Only steps measured for at least ``min_seconds`` are judged (shorter ones alias with
  the devices' polling rhythm), and only a shortfall that lasts to the end of the run counts — a generator that
  ran out of CPU does not recover under more load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.report.errors import ReportError
from harness.report.steps import StepStats

#: Substrings of Locust's CPU warnings (single process, master about itself, master about workers).
CPU_WARNING_MARKERS = ("CPU usage above", "CPU usage was too high", "CPU usage threshold was exceeded")
SHORTFALL_TOLERANCE = 0.75
MIN_JUDGED_SECONDS = 20.0


@dataclass(frozen=True, slots=True)
class Shortfall:
    """A step whose throughput is below what its users and response time allow."""

    step: StepStats
    expected_throughput: float


def cpu_warnings(log_text: str) -> list[str]:
    """The lines of a Locust log that carry a CPU warning."""
    return [line.strip() for line in log_text.splitlines() if any(marker in line for marker in CPU_WARNING_MARKERS)]


def throughput_shortfalls(steps: Sequence[StepStats], *, tolerance: float = SHORTFALL_TOLERANCE,
                          min_seconds: float = MIN_JUDGED_SECONDS) -> list[Shortfall]:
    """The steps, from the first on to the last, whose throughput stayed below ``tolerance`` × N / (R + Z)."""
    if not 0 < tolerance <= 1:
        raise ReportError(f"tolerance must be in (0, 1], got {tolerance!r}")
    judged = [step for step in steps if step.duration >= min_seconds and step.mean_ms is not None]
    if len(judged) < 2 or judged[0].throughput <= 0:
        return []
    first = judged[0]
    think = first.users / first.throughput - first.mean_ms / 1000.0  # type: ignore[operator]
    if think <= 0:
        return []  # the first step was already busy all the time: no slack to compare against
    trailing: list[Shortfall] = []
    for step in judged[1:]:
        expected = step.users / (step.mean_ms / 1000.0 + think)  # type: ignore[operator]
        if step.throughput < tolerance * expected:
            trailing.append(Shortfall(step, expected))
        else:
            trailing = []  # it recovered: what came before was noise, not a saturated generator
    return trailing
