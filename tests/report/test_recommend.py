"""Sizing arithmetic from the documented CMG figures, and the capacity a run showed at the latency target."""

from __future__ import annotations

import pytest

from harness.report.recommend import (
    SizingError,
    observed_capacity,
    recommend,
    requests_per_client_hour,
    size_fleet,
)
from tests.report.steps_factory import step


def test_fifty_thousand_clients_on_standard_instances() -> None:
    """50,000 clients: 9 Standard instances, 2 MPs; 3 CPs by instances but 4 to keep each under 16,384 ports."""
    sizing = size_fleet(50_000, 6_000, basis="Standard")
    assert sizing.instances == 9
    assert sizing.instances_per_cmg == (9,)
    assert sizing.connection_points_by_instances == 3
    assert sizing.connection_points == 4
    assert sizing.clients_per_connection_point <= 16_384
    assert sizing.management_points == 2
    assert sizing.primary_sites == 1


@pytest.mark.parametrize(("clients", "per_instance", "instances", "per_cmg", "cps", "mps", "primaries"), [
    (1, 6_000, 1, (1,), 2, 1, 1),                   # HA: two connection points even for one instance
    (6_000, 6_000, 1, (1,), 2, 1, 1),
    (6_001, 6_000, 2, (2,), 2, 1, 1),
    (50_000, 10_000, 5, (5,), 4, 2, 1),             # ports decide: 50,000 / 16,384 -> 4
    (96_000, 6_000, 16, (16,), 6, 4, 1),            # 16 instances: 4 CPs by instances, 6 by ports
    (100_000, 6_000, 17, (9, 8), 7, 4, 1),          # over 16 instances: a second CMG with its own CPs
    (1_000_000, 10_000, 100, (15, 15, 14, 14, 14, 14, 14), 65, 40, 3),  # 2 x 10 + 5 x 9 CPs by ports
])
def test_sizing_table(clients: int, per_instance: int, instances: int, per_cmg: tuple[int, ...], cps: int,
                      mps: int, primaries: int) -> None:
    """Instances, CMGs, connection points, management points and primary sites for a range of fleets."""
    sizing = size_fleet(clients, per_instance, basis="x")
    assert (sizing.instances, sizing.instances_per_cmg, sizing.connection_points, sizing.management_points,
            sizing.primary_sites) == (instances, per_cmg, cps, mps, primaries)


@pytest.mark.parametrize("clients", [0, -5, 2.5, True])
def test_a_bad_target_is_refused(clients: object) -> None:
    """Target clients must be a whole number >= 1."""
    with pytest.raises(SizingError, match="target clients"):
        size_fleet(clients, 6_000, basis="x")  # type: ignore[arg-type]


def test_requests_per_client_hour_follows_the_polling_model() -> None:
    """r = requests / Σ(clients × seconds) × 3600 / time scale."""
    rows = [step(10, 20.0, index=0, seconds=10), step(20, 40.0, index=1, seconds=10)]
    # 600 requests over (50 + 100 clients) × 10 s = 0.4 per client-second; × 3600 / 1200 = 1.2 per hour.
    assert requests_per_client_hour(rows, devices_per_user=5, time_scale=1200.0) == pytest.approx(1.2)


def _run(*p95s: float, failures: tuple[int, ...] = ()) -> list:
    fails = failures or (0,) * len(p95s)
    return [step(10 * (i + 1), 100.0 * (i + 1), p95=p95, failures=f, index=i)
            for i, (p95, f) in enumerate(zip(p95s, fails, strict=True))]


def test_capacity_is_the_step_before_the_first_miss() -> None:
    """The run met the target up to step 2 and missed it at 3: step 2's load is the measured capacity."""
    observed = observed_capacity(_run(100.0, 400.0, 1500.0, 3000.0), latency_target_ms=1000.0, devices_per_user=1,
                                 time_scale=1.0, instances=2)
    assert observed is not None
    assert (observed.step.users, observed.bound) == (20, "measured")
    assert observed.clients == pytest.approx(200.0 * 3600 / observed.requests_per_client_hour)
    assert observed.clients_per_instance == pytest.approx(observed.clients / 2)


def test_a_run_that_never_missed_gives_a_lower_bound() -> None:
    """Every step within the target: the highest is 'at least'."""
    observed = observed_capacity(_run(10.0, 20.0, 30.0), latency_target_ms=1000.0, devices_per_user=1,
                                 time_scale=1.0, instances=1)
    assert observed is not None and (observed.step.users, observed.bound) == (30, "at least")


def test_a_run_that_missed_from_the_start_gives_an_upper_bound() -> None:
    """The first step already missed: the capacity is below it."""
    observed = observed_capacity(_run(2000.0, 3000.0), latency_target_ms=1000.0, devices_per_user=1,
                                 time_scale=1.0, instances=1)
    assert observed is not None and (observed.step.users, observed.bound) == (10, "below")


def test_failures_above_one_percent_miss_the_target_however_fast() -> None:
    """A fast step that failed 5 % of its requests does not count as served."""
    observed = observed_capacity(_run(10.0, 10.0, failures=(0, 100)), latency_target_ms=1000.0, devices_per_user=1,
                                 time_scale=1.0, instances=1)
    assert observed is not None and (observed.step.users, observed.bound) == (10, "measured")


def test_steps_without_p95_give_no_capacity() -> None:
    """Nothing to judge against the target: no figure rather than a guess."""
    assert observed_capacity([step(10, 100.0, p95=None)], latency_target_ms=1000.0, devices_per_user=1,
                             time_scale=1.0, instances=1) is None


def _observed(p95s: tuple[float, ...], time_scale: float) -> object:
    # Polling model: a step of U users x 1 device stands for U x time_scale real clients.
    rows = [step(10 * (i + 1), 100.0 * (i + 1), p95=p95, index=i) for i, p95 in enumerate(p95s)]
    return observed_capacity(rows, latency_target_ms=1000.0, devices_per_user=1, time_scale=time_scale, instances=1)


def test_a_measured_capacity_below_nominal_adds_a_row() -> None:
    """A limit found under 10,000 clients per instance is sized for next to the documented rows."""
    observed = _observed((100.0, 2000.0), time_scale=100.0)  # 10 users -> 1,000 clients
    rows = recommend(50_000, observed)  # type: ignore[arg-type]
    assert len(rows) == 3
    assert rows[2].basis.startswith("measured")
    assert rows[2].clients_per_instance == 1_000
    assert rows[2].instances == 50


def test_a_lower_bound_does_not_lower_the_documented_figures() -> None:
    """A run that never missed the target adds no measured row, however small its figure."""
    observed = _observed((100.0, 200.0), time_scale=1.0)
    assert len(recommend(50_000, observed)) == 2  # type: ignore[arg-type]


def test_a_measured_capacity_above_nominal_adds_no_row() -> None:
    """A proxy chain that carries more than the documented figure leaves the documented sizing standing."""
    observed = _observed((100.0, 2000.0), time_scale=10_000.0)  # 10 users -> 100,000 clients
    assert len(recommend(50_000, observed)) == 2  # type: ignore[arg-type]
