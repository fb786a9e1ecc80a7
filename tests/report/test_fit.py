"""Universal Scalability Law fit: recovers known parameters, refuses too few steps."""

from __future__ import annotations

import math
import random

import pytest

from harness.report.fit import FitError, fit_usl

USERS = (1, 2, 4, 8, 12, 16, 24, 32)


def _usl(lam: float, sigma: float, kappa: float, users: tuple[int, ...] = USERS, noise: float = 0.0,
         seed: int = 7) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [(n, lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1)) * (1 + rng.gauss(0, noise))) for n in users]


@pytest.mark.parametrize(("lam", "sigma", "kappa"), [(100.0, 0.05, 0.002), (5.0, 0.02, 0.01), (50.0, 0.0, 1e-4),
                                                     (10.0, 0.3, 0.0005)])
def test_exact_data_gives_back_its_parameters(lam: float, sigma: float, kappa: float) -> None:
    """Noise-free USL points are fitted to their own λ, σ, κ."""
    fit = fit_usl(_usl(lam, sigma, kappa))
    assert fit.lam == pytest.approx(lam, rel=1e-4)
    assert fit.sigma == pytest.approx(sigma, abs=1e-4)
    assert fit.kappa == pytest.approx(kappa, rel=1e-3)
    assert fit.r_squared == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_noisy_data_lands_near_its_parameters(seed: int) -> None:
    """With 2 % noise the fit stays close and says the fit is good."""
    fit = fit_usl(_usl(100.0, 0.05, 0.002, noise=0.02, seed=seed))
    assert fit.sigma == pytest.approx(0.05, abs=0.02)
    assert fit.kappa == pytest.approx(0.002, rel=0.25)
    assert fit.r_squared is not None and fit.r_squared > 0.98


def test_peak_concurrency_is_the_square_root_of_one_minus_sigma_over_kappa() -> None:
    """N* = √((1−σ)/κ), and the fitted throughput there is the curve's maximum."""
    fit = fit_usl(_usl(100.0, 0.05, 0.002))
    assert fit.peak_users == pytest.approx(math.sqrt(0.95 / 0.002), rel=1e-3)
    assert fit.peak_throughput == pytest.approx(max(fit.throughput(n / 10) for n in range(10, 1000)), rel=1e-4)


def test_pure_contention_has_no_peak() -> None:
    """κ = 0 data (Amdahl) fits with κ = 0 and no peak concurrency."""
    fit = fit_usl(_usl(10.0, 0.2, 0.0))
    assert fit.kappa == pytest.approx(0.0, abs=1e-12)
    assert fit.peak_users is None


@pytest.mark.parametrize("count", [0, 1, 2, 3])
def test_fewer_than_four_steps_are_refused(count: int) -> None:
    """Three parameters need at least four steps with different user counts."""
    with pytest.raises(FitError, match=f"at least 4 steps .* got {count}"):
        fit_usl(_usl(10.0, 0.1, 0.001, users=USERS[:count]))


def test_repeated_user_counts_do_not_count_as_more_steps() -> None:
    """Six points over three user counts are still three steps."""
    with pytest.raises(FitError, match="got 3"):
        fit_usl(_usl(10.0, 0.1, 0.001, users=(2, 2, 4, 4, 8, 8)))


@pytest.mark.parametrize(("point", "word"), [((0, 5.0), "user counts"), ((3, -1.0), "throughputs"),
                                             ((3, float("nan")), "throughputs")])
def test_impossible_points_are_refused_by_value(point: tuple[float, float], word: str) -> None:
    """Users below 1 or negative / non-finite throughput are named."""
    with pytest.raises(FitError, match=word):
        fit_usl([*_usl(10.0, 0.1, 0.001, users=(1, 2, 4, 8)), point])
