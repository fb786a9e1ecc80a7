"""Universal Scalability Law fit of throughput against users: X(N) = λN / (1 + σ(N−1) + κN(N−1)).

σ is contention (the serial share of the work), κ coherency delay (the cost of keeping N parties in step); with
κ > 0 throughput peaks at N* = √((1−σ)/κ) and falls beyond it. Fitted by least squares in pure Python: for given
(σ, κ) the best λ has a closed form, so only σ ∈ [0, 1] and κ ≥ 0 are searched — a coarse grid (κ on a log scale)
and then a pattern search that halves its steps, for κ > 0 and for κ = 0 alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from harness.report.errors import ReportError

#: Fewer steps than this leave three parameters under-determined.
MIN_POINTS = 4
_LOG_KAPPA_RANGE = (-15.0, 1.0)


class FitError(ReportError):
    """The points cannot be fitted; the message says why and names the offending value."""


@dataclass(frozen=True, slots=True)
class UslFit:
    """Fitted USL parameters, the fit quality and the peak."""

    lam: float          # throughput of one user alone (req/s)
    sigma: float        # contention, 0–1
    kappa: float        # coherency, >= 0
    r_squared: float | None
    points: int

    def throughput(self, users: float) -> float:
        """The fitted throughput at ``users``."""
        return self.lam * users / (1 + self.sigma * (users - 1) + self.kappa * users * (users - 1))

    @property
    def peak_users(self) -> float | None:
        """N* = √((1−σ)/κ), the user count of peak throughput; None when κ = 0 (no retrograde region)."""
        if self.kappa <= 0:
            return None
        return math.sqrt(max(1 - self.sigma, 0.0) / self.kappa)

    @property
    def peak_throughput(self) -> float | None:
        peak = self.peak_users
        return None if peak is None else self.throughput(peak)


def fit_usl(points: Sequence[tuple[float, float]]) -> UslFit:
    """Least-squares USL fit of (users, throughput) points; needs at least four distinct user counts."""
    checked = [(float(n), float(x)) for n, x in points]
    for n, x in checked:
        if not (math.isfinite(n) and n >= 1):
            raise FitError(f"user counts must be >= 1, got {n!r}")
        if not (math.isfinite(x) and x >= 0):
            raise FitError(f"throughputs must be >= 0, got {x!r}")
    distinct = len({n for n, _ in checked})
    if distinct < MIN_POINTS:
        raise FitError(f"a USL fit needs at least {MIN_POINTS} steps with different user counts, got {distinct}")
    if not any(x > 0 for _, x in checked):
        raise FitError("a USL fit needs some throughput, every step had 0 req/s")
    best = min((_search(checked, sigma, log_kappa) for sigma, log_kappa in _grid_starts(checked)),
               key=lambda found: found[0])
    flat = _search_sigma(checked)
    sse, sigma, kappa = flat if flat[0] <= best[0] else best
    lam = _best_lambda(checked, sigma, kappa)
    mean = sum(x for _, x in checked) / len(checked)
    total = sum((x - mean) ** 2 for _, x in checked)
    r_squared = None if total == 0 else 1 - sse / total
    return UslFit(lam=lam, sigma=sigma, kappa=kappa, r_squared=r_squared, points=len(checked))


def _shape(n: float, sigma: float, kappa: float) -> float:
    return n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


def _best_lambda(points: list[tuple[float, float]], sigma: float, kappa: float) -> float:
    shapes = [_shape(n, sigma, kappa) for n, _ in points]
    return sum(g * x for g, (_, x) in zip(shapes, points, strict=True)) / sum(g * g for g in shapes)


def _sse(points: list[tuple[float, float]], sigma: float, kappa: float) -> float:
    lam = _best_lambda(points, sigma, kappa)
    return sum((x - lam * _shape(n, sigma, kappa)) ** 2 for n, x in points)


def _grid_starts(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    # A coarse grid; the three best cells seed pattern searches (the surface can have shallow valleys).
    cells = []
    for i in range(21):
        sigma = i / 20
        for j in range(33):
            log_kappa = _LOG_KAPPA_RANGE[0] + j * (_LOG_KAPPA_RANGE[1] - _LOG_KAPPA_RANGE[0]) / 32
            cells.append((_sse(points, sigma, 10 ** log_kappa), sigma, log_kappa))
    cells.sort()
    return [(sigma, log_kappa) for _, sigma, log_kappa in cells[:3]]


def _search(points: list[tuple[float, float]], sigma: float, log_kappa: float) -> tuple[float, float, float]:
    """Pattern search in (σ, log10 κ) from a start, halving the steps until they are negligible."""
    low, high = _LOG_KAPPA_RANGE
    best = _sse(points, sigma, 10 ** log_kappa)
    step_sigma, step_log = 0.05, 0.5
    while step_sigma > 1e-12 or step_log > 1e-10:
        moved = False
        for d_sigma, d_log in ((step_sigma, 0), (-step_sigma, 0), (0, step_log), (0, -step_log)):
            s = min(max(sigma + d_sigma, 0.0), 1.0)
            k = min(max(log_kappa + d_log, low), high)
            value = _sse(points, s, 10 ** k)
            if value < best:
                best, sigma, log_kappa, moved = value, s, k, True
        if not moved:
            step_sigma, step_log = step_sigma / 2, step_log / 2
    return best, sigma, 10 ** log_kappa


def _search_sigma(points: list[tuple[float, float]]) -> tuple[float, float, float]:
    """The best σ with κ = 0 (golden-section search; the error is unimodal in σ here)."""
    ratio = (math.sqrt(5) - 1) / 2
    a, b = 0.0, 1.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    for _ in range(80):
        if _sse(points, c, 0.0) < _sse(points, d, 0.0):
            b = d
        else:
            a = c
        c, d = b - ratio * (b - a), a + ratio * (b - a)
    candidates = [(_sse(points, s, 0.0), s, 0.0) for s in (0.0, (a + b) / 2, 1.0)]
    return min(candidates)
