"""The USL fit at its edges: the fitted curve's formula, small throughputs, the smallest accepted input, and the
fit quality (R²) as its definition gives it."""

from __future__ import annotations

import pytest

from harness.report.fit import MIN_POINTS, FitError, UslFit, fit_usl


def _usl(lam: float, sigma: float, kappa: float, users: range | tuple[int, ...] = range(1, 11)) -> list[tuple[int, float]]:
    return [(n, lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))) for n in users]


def test_the_fitted_curve_is_the_usl_formula() -> None:
    """X(N) = λN / (1 + σ(N−1) + κN(N−1)): at N = 10 with λ 100, σ 0.1, κ 0.01 that is 1000 / 2.8."""
    fit = UslFit(lam=100.0, sigma=0.1, kappa=0.01, r_squared=None, points=4)
    assert fit.throughput(10) == pytest.approx(1000 / 2.8)
    assert fit.throughput(1) == pytest.approx(100.0)


def test_a_retrograde_curve_of_small_throughputs_keeps_its_coherency_term() -> None:
    """0.1 req/s per user with κ = 0.02: the fit finds κ (and the peak) instead of settling for κ = 0, even though
    the errors involved are far below 1 (req/s)²."""
    fit = fit_usl(_usl(0.1, 0.2, 0.02))
    assert fit.kappa == pytest.approx(0.02, rel=1e-3) and fit.sigma == pytest.approx(0.2, abs=1e-4)
    assert fit.peak_users == pytest.approx((0.8 / 0.02) ** 0.5, rel=1e-3)


def test_four_distinct_steps_are_enough_and_idle_or_slow_steps_are_data() -> None:
    """Exactly MIN_POINTS user counts are accepted; a step at 0 req/s or under 1 req/s is a valid point."""
    assert MIN_POINTS == 4
    assert fit_usl([(1, 0.5), (2, 0.9), (4, 1.5), (8, 2.0)]).points == 4
    assert fit_usl([(1, 0.0), (2, 10.0), (4, 18.0), (8, 30.0)]).points == 4


def test_a_run_without_any_throughput_cannot_be_fitted() -> None:
    """Every step at 0 req/s: FitError saying so, not a fit of nothing."""
    with pytest.raises(FitError, match="every step had 0 req/s"):
        fit_usl([(1, 0.0), (2, 0.0), (4, 0.0), (8, 0.0)])


def test_r_squared_is_one_minus_the_residual_over_the_total_sum_of_squares() -> None:
    """R² of a fit to scattered points equals its definition computed from the fitted curve."""
    points = [(1, 9.0), (2, 21.0), (4, 33.0), (8, 52.0), (12, 55.0), (16, 61.0)]
    fit = fit_usl(points)
    mean = sum(x for _, x in points) / len(points)
    residual = sum((x - fit.throughput(n)) ** 2 for n, x in points)
    total = sum((x - mean) ** 2 for _, x in points)
    assert fit.r_squared == pytest.approx(1 - residual / total, rel=1e-6)
    assert 0.9 < fit.r_squared < 1.0


def test_r_squared_is_undefined_only_for_flat_data() -> None:
    """Throughput the same at every step has no variance to explain: R² is None; a total of exactly 1 is a number."""
    assert fit_usl([(1, 10.0), (2, 10.0), (4, 10.0), (8, 10.0)]).r_squared is None
    assert fit_usl([(1, 9.5), (2, 10.5), (4, 9.5), (8, 10.5)]).r_squared is not None


def test_contention_stays_between_zero_and_one_whatever_the_data() -> None:
    """Better-than-linear scaling fits σ = 0 (not a negative contention); a collapse steeper than σ = 1 can explain
    fits σ = 1 with coherency, never σ > 1."""
    superlinear = fit_usl([(1, 10.0), (2, 21.0), (4, 45.0), (8, 100.0)])
    assert (superlinear.sigma, superlinear.kappa) == (0.0, 0.0)
    for steepness in (1.5, 2.0):
        collapse = fit_usl(_usl(10.0, steepness, 0.0, users=(1, 2, 4, 8)))
        assert collapse.sigma == 1.0 and collapse.kappa > 0


def test_a_system_that_collapses_from_the_second_user_on_is_fitted() -> None:
    """κ = 3 (throughput falls as soon as a second user arrives) is inside the searched range and found."""
    fit = fit_usl(_usl(100.0, 0.1, 3.0, users=(1, 2, 3, 4, 6, 8)))
    assert fit.kappa == pytest.approx(3.0, rel=1e-4) and fit.sigma == pytest.approx(0.1, abs=1e-4)
