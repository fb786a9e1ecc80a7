"""Finding a system's capacity with an open-model step search: raise the arrival rate until it breaks, then bisect.

A capacity run asks one question: what rate can the system under test carry within its service-level objective? The
search answers it the way a careful engineer would by hand:

1. **geometric steps** from ``start_rate_per_s``, multiplying by ``growth`` while every step passes;
2. at the first failing step, **bisection** between the last passing and the first failing rate until the gap is
   within ``resolution`` (a fraction of the passing rate) or ``max_steps`` is spent;
3. each rate may be measured ``repeats`` times; a rate passes when the **median** of its repeats does, and repeats that
   disagree (some pass, some fail) widen the reported uncertainty instead of being averaged away.

A step *fails* (saturates) when its corrected p99 passes the SLO, when the achieved rate falls behind the intended
rate by more than ``min_achieved_ratio`` allows, or when errors pass ``max_error_ratio``. The answer is an interval:
capacity lies between the highest passing and the lowest failing rate; a search that never failed says "not saturated
up to X" and makes no claim beyond X.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

GROWTH = 2.0
RESOLUTION = 0.1


class SearchError(ValueError):
    """A search setting or step result is unusable; the message names it."""


@dataclass(frozen=True)
class SearchSettings:
    """How the search moves and what counts as saturated."""

    start_rate_per_s: float = 5.0
    growth: float = GROWTH
    max_rate_per_s: float = 10_000.0
    slo_corrected_p99_ms: float = 1_000.0
    min_achieved_ratio: float = 0.95
    max_error_ratio: float = 0.01
    resolution: float = RESOLUTION
    repeats: int = 1
    max_steps: int = 16

    def __post_init__(self) -> None:
        for name in ("start_rate_per_s", "max_rate_per_s", "slo_corrected_p99_ms", "resolution"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise SearchError(f"{name} must be a number > 0, got {value!r}")
        if not (math.isfinite(self.growth) and self.growth > 1):
            raise SearchError(f"growth must be > 1, got {self.growth!r}")
        for name in ("min_achieved_ratio", "max_error_ratio"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value <= 1):
                raise SearchError(f"{name} must be within 0..1, got {value!r}")
        for name, low in (("repeats", 1), ("max_steps", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SearchError(f"{name} must be a whole number >= {low}, got {value!r}")
        if self.start_rate_per_s > self.max_rate_per_s:
            raise SearchError(f"start rate {self.start_rate_per_s:g}/s is above the maximum {self.max_rate_per_s:g}/s")


@dataclass(frozen=True)
class StepResult:
    """What one held step measured."""

    intended_per_s: float
    achieved_per_s: float
    corrected_p99_ms: float
    error_ratio: float

    def failures(self, settings: SearchSettings) -> list[str]:
        """Why this step counts as saturated (empty when it passed)."""
        reasons = []
        if self.corrected_p99_ms > settings.slo_corrected_p99_ms:
            reasons.append(f"corrected p99 {self.corrected_p99_ms:.0f} ms > SLO {settings.slo_corrected_p99_ms:.0f} ms")
        ratio = self.achieved_per_s / self.intended_per_s if self.intended_per_s > 0 else 1.0
        if ratio < settings.min_achieved_ratio:
            reasons.append(f"achieved {self.achieved_per_s:.1f}/s is {ratio:.0%} of the intended "
                           f"{self.intended_per_s:.1f}/s (< {settings.min_achieved_ratio:.0%})")
        if self.error_ratio > settings.max_error_ratio:
            reasons.append(f"errors {self.error_ratio:.1%} > {settings.max_error_ratio:.1%}")
        return reasons


@dataclass(frozen=True)
class RateVerdict:
    """One rate's repeats judged together."""

    rate_per_s: float
    results: tuple[StepResult, ...]
    passed: bool
    unanimous: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Capacity:
    """The search's answer: an interval, or a lower bound when nothing saturated."""

    saturated: bool
    passing_per_s: float | None
    failing_per_s: float | None
    reasons: tuple[str, ...]
    uncertain: bool
    steps: int

    @property
    def estimate_per_s(self) -> float | None:
        """The middle of the interval (None when the search never found a passing or a failing rate)."""
        if self.passing_per_s is None or self.failing_per_s is None:
            return None
        return (self.passing_per_s + self.failing_per_s) / 2.0

    def describe(self) -> str:
        """One line for the report and the console."""
        if not self.saturated:
            if self.passing_per_s is None:
                return "no step was measured"
            return f"not saturated up to {self.passing_per_s:.1f}/s (no step failed; no claim beyond it)"
        if self.passing_per_s is None:
            return (f"saturated already at the first rate {self.failing_per_s:.1f}/s "
                    f"({'; '.join(self.reasons)}): start lower")
        half = (self.failing_per_s - self.passing_per_s) / 2.0  # type: ignore[operator]
        caveat = "; repeats disagreed near the limit" if self.uncertain else ""
        return (f"capacity {self.estimate_per_s:.1f}/s ± {half:.1f}/s (passes at {self.passing_per_s:.1f}/s, "
                f"fails at {self.failing_per_s:.1f}/s: {'; '.join(self.reasons)}){caveat}")


@dataclass
class CapacitySearch:
    """The search's state: feed it each step's result, ask it for the next rate until it says None."""

    settings: SearchSettings = field(default_factory=SearchSettings)
    verdicts: list[RateVerdict] = field(default_factory=list)
    _pending: list[StepResult] = field(default_factory=list)
    _rate: float | None = None
    _steps: int = 0

    def __post_init__(self) -> None:
        self._rate = self.settings.start_rate_per_s

    @property
    def passing(self) -> RateVerdict | None:
        """The highest rate that passed below the lowest that failed (a pass above a failure is noise, not capacity)."""
        failing = self.failing
        passed = [v for v in self.verdicts if v.passed and (failing is None or v.rate_per_s < failing.rate_per_s)]
        return max(passed, key=lambda v: v.rate_per_s) if passed else None

    @property
    def failing(self) -> RateVerdict | None:
        """The lowest rate that failed."""
        failed = [v for v in self.verdicts if not v.passed]
        return min(failed, key=lambda v: v.rate_per_s) if failed else None

    def next_rate(self) -> float | None:
        """The rate the next step should run at, or None when the search is over."""
        return self._rate

    def record(self, result: StepResult) -> None:
        """Feed the result of the step that ran at :meth:`next_rate`."""
        if self._rate is None:
            raise SearchError("the search is over; no step was asked for")
        for name in ("intended_per_s", "achieved_per_s", "corrected_p99_ms", "error_ratio"):
            value = getattr(result, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise SearchError(f"step result {name} must be a number >= 0, got {value!r}")
        self._steps += 1
        self._pending.append(result)
        if len(self._pending) < self.settings.repeats:
            return
        self.verdicts.append(self._judge(self._rate, tuple(self._pending)))
        self._pending = []
        self._rate = self._choose_next()

    def _judge(self, rate: float, results: tuple[StepResult, ...]) -> RateVerdict:
        outcomes = [not r.failures(self.settings) for r in results]
        median = StepResult(rate, statistics.median(r.achieved_per_s for r in results),
                            statistics.median(r.corrected_p99_ms for r in results),
                            statistics.median(r.error_ratio for r in results))
        reasons = tuple(median.failures(self.settings))
        return RateVerdict(rate, results, not reasons, len(set(outcomes)) == 1, reasons)

    def _choose_next(self) -> float | None:
        settings = self.settings
        if self._steps + settings.repeats > settings.max_steps:
            return None
        passing, failing = self.passing, self.failing
        if failing is None:
            assert passing is not None
            if passing.rate_per_s >= settings.max_rate_per_s:
                return None
            return min(settings.max_rate_per_s, passing.rate_per_s * settings.growth)
        if passing is None:
            return None  # the first rate already failed: nothing to bisect
        if failing.rate_per_s - passing.rate_per_s <= settings.resolution * passing.rate_per_s:
            return None
        return (passing.rate_per_s + failing.rate_per_s) / 2.0

    def result(self) -> Capacity:
        """What the search found so far."""
        passing, failing = self.passing, self.failing
        # Repeats that disagreed near the limit, or a rate that passed above one that failed, make the edge fuzzy.
        uncertain = any((not v.unanimous and passing is not None and failing is not None
                         and passing.rate_per_s <= v.rate_per_s <= failing.rate_per_s)
                        or (v.passed and failing is not None and v.rate_per_s > failing.rate_per_s)
                        for v in self.verdicts)
        return Capacity(saturated=failing is not None,
                        passing_per_s=passing.rate_per_s if passing else None,
                        failing_per_s=failing.rate_per_s if failing else None,
                        reasons=failing.reasons if failing else (), uncertain=uncertain, steps=self._steps)


#: The part of a step's hold that settles before measuring.
SETTLE_FRACTION = 1 / 3


def step_window(hold: float, lag: float) -> tuple[float, float]:
    """When a step starts measuring and when it ends, in seconds from its start, for a ``hold`` and a report ``lag``:
    it settles for a third of the hold but at least one lag (what arrives later was sent at this step's rate), and its
    window closes one lag after the hold (the records sent by then have arrived)."""
    return max(hold * SETTLE_FRACTION, lag), hold + lag
