"""The capacity recommendation at the edge of each threshold: one client more or less changes the count of instances,
CMGs, connection points, management points or primary sites exactly where the documented figures say; a step exactly at
the latency target or at 1 % failures still counts as served; the smallest inputs that are still usable are used, and
the first that is not is refused by name."""

from __future__ import annotations

import math

import pytest

from harness.cli import build_parser
from harness.report.recommend import (
    ObservedCapacity,
    SizingError,
    meets_target,
    observed_capacity,
    recommend,
    requests_per_client_hour,
    size_fleet,
)
from tests.report.steps_factory import step

# --- size_fleet: each documented figure at its edge ---------------------------------------------------------------


@pytest.mark.parametrize(("clients", "standard", "large"), [
    (6_000, 1, 1), (6_001, 2, 1), (10_000, 2, 1), (10_001, 2, 2), (60_000, 10, 6), (60_001, 11, 7),
])
def test_the_documented_rows_use_6000_and_10000_clients_per_instance(clients: int, standard: int, large: int) -> None:
    rows = recommend(clients, None)
    assert [(r.basis, r.clients_per_instance, r.instances) for r in rows] == [
        ("Standard (A2_v2), documented", 6_000, standard), ("Large (A4_v2), documented", 10_000, large)]


@pytest.mark.parametrize(("clients", "per_cmg", "cmgs"), [
    (160_000, (16,), 1),         # 16 instances: still one CMG
    (160_001, (9, 8), 2),        # the 17th instance opens a second CMG
    (320_000, (16, 16), 2),
    (320_001, (11, 11, 11), 3),
])
def test_a_cmg_holds_at_most_16_instances(clients: int, per_cmg: tuple[int, ...], cmgs: int) -> None:
    sizing = size_fleet(clients, 10_000, basis="x")
    assert (sizing.instances_per_cmg, sizing.cmgs) == (per_cmg, cmgs)


@pytest.mark.parametrize(("instances", "by_instances"), [(1, 2), (8, 2), (9, 3), (12, 3), (13, 4), (16, 4)])
def test_one_connection_point_per_four_instances_and_never_fewer_than_two(instances: int, by_instances: int) -> None:
    """One client per instance: the ports never decide, only the instance rules."""
    sizing = size_fleet(instances, 1, basis="x")
    assert (sizing.instances, sizing.connection_points_by_instances, sizing.connection_points) == (
        instances, by_instances, by_instances)


@pytest.mark.parametrize(("clients", "connection_points"), [(32_768, 2), (32_769, 3), (49_152, 3), (49_153, 4)])
def test_a_connection_point_holds_16384_client_ports(clients: int, connection_points: int) -> None:
    """Large instances (4 or 5 of them: two by the instance rules), so the port count alone decides."""
    sizing = size_fleet(clients, 10_000, basis="x")
    assert (sizing.connection_points_by_instances, sizing.connection_points) == (2, connection_points)
    assert sizing.clients_per_connection_point == clients / connection_points


def test_connection_points_by_ports_count_each_cmgs_share_of_the_clients() -> None:
    """17 instances as 9 + 8 on two CMGs: 272,000 clients are 144,000 + 128,000, so 9 + 8 connection points."""
    sizing = size_fleet(272_000, 16_000, basis="x")
    assert sizing.instances_per_cmg == (9, 8)
    assert (sizing.connection_points_by_instances, sizing.connection_points) == (3 + 2, 9 + 8)


@pytest.mark.parametrize(("clients", "mps", "primaries"), [
    (25_000, 1, 1), (25_001, 2, 1), (375_000, 15, 1), (375_001, 16, 2), (750_000, 30, 2), (750_001, 31, 3),
])
def test_25000_clients_per_management_point_and_15_per_primary_site(clients: int, mps: int, primaries: int) -> None:
    sizing = size_fleet(clients, 10_000, basis="x")
    assert (sizing.management_points, sizing.primary_sites) == (mps, primaries)


def test_one_client_per_instance_is_a_usable_figure() -> None:
    assert size_fleet(3, 1, basis="x").instances == 3
    assert size_fleet(3, 0.5, basis="x").instances == 6


@pytest.mark.parametrize("per_instance", [0, 0.0, -0.5, -1, math.nan, math.inf, -math.inf])
def test_a_clients_per_instance_figure_that_is_not_positive_and_finite_is_refused(per_instance: float) -> None:
    with pytest.raises(SizingError, match=r"^clients per instance must be > 0, got "):
        size_fleet(10, per_instance, basis="x")


def test_the_report_command_sizes_for_50000_clients_at_1000_ms_by_default() -> None:
    args = build_parser().parse_args(["report", "results"])
    assert (args.target_clients, args.latency_target_ms) == (50_000, 1_000.0)


# --- the per-client request rate ------------------------------------------------------------------------------------


def test_one_request_in_one_client_second_is_3600_an_hour() -> None:
    """The smallest run that still holds a rate: one user, one measured second, one request."""
    assert requests_per_client_hour([step(1, 1.0, seconds=1)], devices_per_user=1, time_scale=1.0) == 3_600.0


def test_the_rate_counts_clients_as_users_times_devices_over_the_measured_seconds() -> None:
    """2 users x 3 devices x 4 s = 24 client-seconds for 48 requests: 2 per second, 7,200 an hour, 72 at time scale 100."""
    rows = [step(2, 12.0, seconds=4)]
    assert requests_per_client_hour(rows, devices_per_user=3, time_scale=1.0) == 7_200.0
    assert requests_per_client_hour(rows, devices_per_user=3, time_scale=100.0) == 72.0


@pytest.mark.parametrize("rows", [[], [step(10, 0.0)], [step(0, 10.0)]], ids=["no steps", "no requests", "no users"])
def test_steps_without_requests_or_clients_give_no_rate(rows: list) -> None:
    with pytest.raises(SizingError, match=r"^the steps hold no requests to derive a per-client request rate from$"):
        requests_per_client_hour(rows, devices_per_user=1, time_scale=1.0)


@pytest.mark.parametrize("devices", [0, -1])
def test_devices_per_user_below_one_is_refused(devices: int) -> None:
    with pytest.raises(SizingError, match=rf"^devices per user must be >= 1, got {devices}$"):
        requests_per_client_hour([step(1, 1.0)], devices_per_user=devices, time_scale=1.0)


@pytest.mark.parametrize("scale", [0, 0.0, -1.0, math.nan, math.inf])
def test_a_time_scale_that_is_not_positive_and_finite_is_refused(scale: float) -> None:
    with pytest.raises(SizingError, match=r"^time scale must be > 0, got "):
        requests_per_client_hour([step(1, 1.0)], devices_per_user=1, time_scale=scale)


def test_a_time_scale_below_one_is_usable() -> None:
    assert requests_per_client_hour([step(1, 1.0, seconds=1)], devices_per_user=1, time_scale=0.5) == 7_200.0


# --- the latency target ---------------------------------------------------------------------------------------------


def test_a_p95_exactly_at_the_target_meets_it() -> None:
    assert meets_target(step(10, 100.0, p95=1_000.0), 1_000.0) is True
    assert meets_target(step(10, 100.0, p95=1_000.001), 1_000.0) is False


def test_exactly_one_percent_failures_still_meets_the_target() -> None:
    """1,000 requests: 10 failed is 1 % (served), 11 failed is not."""
    assert meets_target(step(10, 100.0, failures=10), 1_000.0) is True
    assert meets_target(step(10, 100.0, failures=11), 1_000.0) is False


def test_a_step_without_requests_has_no_failure_ratio_to_miss() -> None:
    assert meets_target(step(10, 0.0), 1_000.0) is True


def test_a_step_between_judged_steps_without_a_p95_is_passed_over() -> None:
    """Step 2 has no p95: the verdict goes from step 1 (met) to step 3 (missed); the capacity is step 1's."""
    rows = [step(10, 100.0, p95=100.0, index=0), step(20, 200.0, p95=None, index=1),
            step(30, 300.0, p95=5_000.0, index=2)]
    observed = observed_capacity(rows, latency_target_ms=1_000.0, devices_per_user=1, time_scale=1.0, instances=1)
    assert observed is not None
    assert (observed.step.users, observed.bound, observed.throughput) == (10, "measured", 100.0)


def test_the_capacity_in_clients_follows_the_polling_model() -> None:
    """3 steps of 10 s: 6,000 requests over 600 client-seconds is 36,000 an hour per client; step 2 (200 req/s)
    then serves 200 x 3600 / 36,000 = 20 clients, 10 per instance on 2 instances."""
    rows = [step(10, 100.0, p95=100.0, index=0), step(20, 200.0, p95=200.0, index=1),
            step(30, 300.0, p95=2_000.0, index=2)]
    observed = observed_capacity(rows, latency_target_ms=1_000.0, devices_per_user=1, time_scale=1.0, instances=2)
    assert observed is not None
    assert (observed.requests_per_client_hour, observed.clients, observed.clients_per_instance) == (36_000.0, 20.0,
                                                                                                   10.0)


def test_a_run_that_missed_from_the_start_reports_its_first_step() -> None:
    rows = [step(10, 100.0, p95=2_000.0, index=0), step(20, 200.0, p95=3_000.0, index=1),
            step(30, 300.0, p95=100.0, index=2)]
    observed = observed_capacity(rows, latency_target_ms=1_000.0, devices_per_user=1, time_scale=1.0, instances=1)
    assert observed is not None and (observed.step.users, observed.bound) == (10, "below")


def test_a_small_latency_target_and_one_instance_are_usable() -> None:
    observed = observed_capacity([step(10, 100.0, p95=0.5)], latency_target_ms=0.5, devices_per_user=1,
                                 time_scale=1.0, instances=1)
    assert observed is not None and observed.bound == "at least"


@pytest.mark.parametrize("target", [0, 0.0, -1.0, math.nan, math.inf])
def test_a_latency_target_that_is_not_positive_and_finite_is_refused(target: float) -> None:
    with pytest.raises(SizingError, match=r"^latency target must be > 0 ms, got "):
        observed_capacity([step(10, 100.0)], latency_target_ms=target, devices_per_user=1, time_scale=1.0,
                          instances=1)


@pytest.mark.parametrize("instances", [0, -1])
def test_fewer_than_one_instance_is_refused(instances: int) -> None:
    with pytest.raises(SizingError, match=rf"^instances must be >= 1, got {instances}$"):
        observed_capacity([step(10, 100.0)], latency_target_ms=1_000.0, devices_per_user=1, time_scale=1.0,
                          instances=instances)


# --- the measured row -------------------------------------------------------------------------------------------------


def _observed(clients: float, *, bound: str = "measured", instances: int = 1) -> ObservedCapacity:
    return ObservedCapacity(latency_target_ms=250.0, requests_per_client_hour=3_600.0, step=step(10, 100.0),
                            bound=bound, throughput=clients, clients=clients, instances=instances)


def test_a_measured_row_says_at_which_latency_target() -> None:
    rows = recommend(50_000, _observed(2_500.0))
    assert [(r.basis, r.clients_per_instance, r.instances) for r in rows[2:]] == [
        ("measured in this run (p95 <= 250 ms)", 2_500, 20)]


def test_a_run_that_missed_from_the_start_gives_minimum_counts() -> None:
    rows = recommend(50_000, _observed(2_500.0, bound="below"))
    assert [(r.basis, r.clients_per_instance, r.instances) for r in rows[2:]] == [
        ("measured in this run: fewer than 2,500 per instance, so at least these counts", 2_500, 20)]


@pytest.mark.parametrize(("clients", "instances", "rows"), [
    (9_999.9, 1, 3), (10_000.0, 1, 2), (19_999.0, 2, 3), (20_000.0, 2, 2),
])
def test_a_measured_row_appears_only_below_the_large_figure(clients: float, instances: int, rows: int) -> None:
    """Equal to 10,000 per instance is not below the documented Large figure: no row."""
    assert len(recommend(50_000, _observed(clients, instances=instances))) == rows


def test_the_measured_figure_is_rounded_down_to_whole_clients() -> None:
    row = recommend(50_000, _observed(9_999.9))[2]
    assert (row.clients_per_instance, row.instances) == (9_999, 6)


@pytest.mark.parametrize(("clients", "per_instance"), [(1.0, 1), (0.5, 1), (1.5, 1)])
def test_less_than_one_client_per_instance_is_sized_as_one(clients: float, per_instance: int) -> None:
    row = recommend(40, _observed(clients))[2]
    assert (row.clients_per_instance, row.instances) == (per_instance, 40)


@pytest.mark.parametrize("clients", [0.0, -1.0])
def test_a_run_that_served_no_one_adds_no_row(clients: float) -> None:
    assert len(recommend(50_000, _observed(clients))) == 2
