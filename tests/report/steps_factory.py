"""StepStats built directly from the figures a test cares about."""

from __future__ import annotations

from harness.report.steps import StepStats


def step(users: int, throughput: float, *, p95: float | None = 10.0, mean: float | None = 5.0,
         failures: int = 0, index: int = 0, seconds: float = 10.0) -> StepStats:
    """A step of ``seconds`` measured seconds carrying ``throughput`` req/s."""
    start = 1_800_000_000.0 + 100 * index
    return StepStats(index=index, users=users, start=start, end=start + seconds + 5, measured_from=start + 5,
                     requests=round(throughput * seconds), failures=failures, mean_ms=mean,
                     p50_ms=None if p95 is None else p95 / 2, p95_ms=p95, p99_ms=None if p95 is None else p95 * 1.5,
                     percentiles_inside=True)


def steps(rows: list[tuple[int, float, float]], *, mean: float = 5.0) -> list[StepStats]:
    """Steps from (users, throughput, p95) rows."""
    return [step(users, throughput, p95=p95, mean=mean, index=i) for i, (users, throughput, p95) in enumerate(rows)]
