"""The saturation point (knee) of a step-load run: the last step before throughput stops growing with the users
or latency rises sharply.

Method, step by step in run order, each step k compared with the one before it and with the first step:

* throughput: the users added in step k should add throughput at the first step's rate per user; when they add
  less than ``min_marginal_efficiency`` (default half) of it, the system no longer scales;
* latency: p95 (the exact mean when a step has no p95) more than ``latency_factor`` (default 2) times the first
  step's, and at least ``latency_floor_ms`` higher — below that floor a doubling is loopback jitter, not queueing.

The knee is the step before the first one that meets either condition.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from harness.report.steps import StepStats

MIN_MARGINAL_EFFICIENCY = 0.5
LATENCY_FACTOR = 2.0
LATENCY_FLOOR_MS = 20.0


@dataclass(frozen=True, slots=True)
class Knee:
    """The last step that still scaled, the first that did not, and why."""

    step: StepStats
    saturated: StepStats
    reason: str


def find_knee(steps: Sequence[StepStats], *, min_marginal_efficiency: float = MIN_MARGINAL_EFFICIENCY,
              latency_factor: float = LATENCY_FACTOR, latency_floor_ms: float = LATENCY_FLOOR_MS) -> Knee | None:
    """The knee of ``steps`` (in run order), or None when every step still scaled (or there are fewer than two)."""
    if len(steps) < 2 or steps[0].throughput <= 0:
        return None
    first = steps[0]
    per_user = first.throughput / first.users
    first_latency = latency_of(first)
    for previous, step in itertools.pairwise(steps):
        added = step.users - previous.users
        if added > 0:
            efficiency = (step.throughput - previous.throughput) / added / per_user
            if efficiency < min_marginal_efficiency:
                return Knee(previous, step, f"throughput: the {added} users added at {step.users} users brought "
                                            f"{efficiency:.0%} of the first step's throughput per user")
        latency = latency_of(step)
        if latency is not None and first_latency is not None and latency > latency_factor * first_latency \
                and latency - first_latency >= latency_floor_ms:
            kind = "p95" if step.p95_ms is not None and first.p95_ms is not None else "mean"
            return Knee(previous, step, f"latency: {kind} {latency:.0f} ms at {step.users} users is more than "
                                        f"{latency_factor:g}x the first step's {first_latency:.0f} ms")
    return None


def latency_of(step: StepStats) -> float | None:
    """The latency the knee rule compares: p95 when present, else the exact mean."""
    return step.p95_ms if step.p95_ms is not None else step.mean_ms
