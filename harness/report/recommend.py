"""Sizing for a target fleet from the documented CMG figures, and the per-instance capacity a run actually showed.

Documented figures (Microsoft's CMG performance-and-scale and site size-and-scale pages):
6,000 clients per Standard (A2_v2) and 10,000 per Large (A4_v2) CMG VM instance, 1–16 instances per CMG; one CMG
connection point per up to four instances and at least two for high availability; the connection point holds one
port per client (the notification channel) out of Windows' default dynamic range of 16,384; 25,000 clients per
management point, up to 15 management points per primary site.

Measured figure: the polling model. Each client sends r HTTP requests per hour (policy cycles, renewals, …); r is
taken from the run itself — requests in the measured parts of the steps divided by the client-seconds there,
brought back to real time with the time scale: r = requests / Σ(clients × seconds) × 3600 / time_scale. A system
that serves X requests per second within the latency target then serves C = X × 3600 / r clients.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from harness.report.errors import ReportError
from harness.report.steps import StepStats

STANDARD_CLIENTS_PER_INSTANCE = 6_000
LARGE_CLIENTS_PER_INSTANCE = 10_000
MAX_INSTANCES_PER_CMG = 16
INSTANCES_PER_CONNECTION_POINT = 4
MIN_CONNECTION_POINTS = 2
CONNECTION_POINT_PORTS = 16_384
CLIENTS_PER_MANAGEMENT_POINT = 25_000
MAX_MANAGEMENT_POINTS_PER_PRIMARY = 15
DEFAULT_TARGET_CLIENTS = 50_000
DEFAULT_LATENCY_TARGET_MS = 1_000.0
#: A step with more failed requests than this does not meet the target, however fast its replies.
MAX_FAILURE_RATIO = 0.01


class SizingError(ReportError):
    """A sizing input is unusable; the message names it and its value."""


@dataclass(frozen=True, slots=True)
class Sizing:
    """One row of the recommendation table."""

    basis: str                         # "Standard (A2_v2), nominal", "measured in this run", …
    clients_per_instance: float
    target_clients: int
    instances: int
    instances_per_cmg: tuple[int, ...]
    connection_points: int
    connection_points_by_instances: int  # what the 1-per-4-instances and HA rules alone would give
    management_points: int
    primary_sites: int

    @property
    def cmgs(self) -> int:
        return len(self.instances_per_cmg)

    @property
    def clients_per_connection_point(self) -> float:
        return self.target_clients / self.connection_points


def size_fleet(target_clients: int, clients_per_instance: float, *, basis: str) -> Sizing:
    """CMG instances (and CMGs), connection points and management points for ``target_clients``."""
    if isinstance(target_clients, bool) or not isinstance(target_clients, int) or target_clients < 1:
        raise SizingError(f"target clients must be a whole number >= 1, got {target_clients!r}")
    if not (math.isfinite(clients_per_instance) and clients_per_instance > 0):
        raise SizingError(f"clients per instance must be > 0, got {clients_per_instance!r}")
    instances = math.ceil(target_clients / clients_per_instance)
    cmgs = math.ceil(instances / MAX_INSTANCES_PER_CMG)
    # Spread instances evenly; a connection point serves one CMG, so each CMG gets its own.
    per_cmg = tuple(instances // cmgs + (1 if i < instances % cmgs else 0) for i in range(cmgs))
    by_instances = sum(max(MIN_CONNECTION_POINTS, math.ceil(n / INSTANCES_PER_CONNECTION_POINT)) for n in per_cmg)
    connection_points = sum(
        max(MIN_CONNECTION_POINTS, math.ceil(n / INSTANCES_PER_CONNECTION_POINT),
            math.ceil(target_clients * n / instances / CONNECTION_POINT_PORTS))
        for n in per_cmg)
    management_points = math.ceil(target_clients / CLIENTS_PER_MANAGEMENT_POINT)
    return Sizing(basis=basis, clients_per_instance=clients_per_instance, target_clients=target_clients,
                  instances=instances, instances_per_cmg=per_cmg, connection_points=connection_points,
                  connection_points_by_instances=by_instances, management_points=management_points,
                  primary_sites=math.ceil(management_points / MAX_MANAGEMENT_POINTS_PER_PRIMARY))


@dataclass(frozen=True, slots=True)
class ObservedCapacity:
    """What the run showed at the latency target, in requests per second and in clients."""

    latency_target_ms: float
    requests_per_client_hour: float
    step: StepStats          # the step the figure comes from
    bound: str               # "measured": a later step missed the target; "at least": none did; "below": the first did
    throughput: float
    clients: float
    instances: int

    @property
    def clients_per_instance(self) -> float:
        return self.clients / self.instances


def requests_per_client_hour(steps: Sequence[StepStats], *, devices_per_user: int, time_scale: float) -> float:
    """r: HTTP requests per client per (real) hour in the measured parts of ``steps``."""
    if devices_per_user < 1:
        raise SizingError(f"devices per user must be >= 1, got {devices_per_user!r}")
    if not (math.isfinite(time_scale) and time_scale > 0):
        raise SizingError(f"time scale must be > 0, got {time_scale!r}")
    client_seconds = sum(step.users * devices_per_user * step.duration for step in steps)
    requests = sum(step.requests for step in steps)
    if client_seconds <= 0 or requests <= 0:
        raise SizingError("the steps hold no requests to derive a per-client request rate from")
    return requests / client_seconds * 3600.0 / time_scale


def meets_target(step: StepStats, latency_target_ms: float) -> bool | None:
    """Whether ``step`` kept p95 within the target and failures under 1 %; None when it has no p95."""
    if step.p95_ms is None:
        return None
    return step.p95_ms <= latency_target_ms and step.failure_ratio <= MAX_FAILURE_RATIO


def observed_capacity(steps: Sequence[StepStats], *, latency_target_ms: float, devices_per_user: int,
                      time_scale: float, instances: int) -> ObservedCapacity | None:
    """The highest load the run carried within the latency target (the step before the first miss).

    None when no step has a p95 to judge. The figure is conservative: the capacity lies between that step and the
    first step that missed the target.
    """
    if not (math.isfinite(latency_target_ms) and latency_target_ms > 0):
        raise SizingError(f"latency target must be > 0 ms, got {latency_target_ms!r}")
    if instances < 1:
        raise SizingError(f"instances must be >= 1, got {instances!r}")
    judged = [(step, verdict) for step in steps if (verdict := meets_target(step, latency_target_ms)) is not None]
    if not judged:
        return None
    rate = requests_per_client_hour(steps, devices_per_user=devices_per_user, time_scale=time_scale)
    passed = None
    bound = "at least"
    for step, ok in judged:
        if not ok:
            bound = "measured" if passed is not None else "below"
            break
        passed = step
    chosen = passed if passed is not None else judged[0][0]
    throughput = chosen.throughput
    return ObservedCapacity(latency_target_ms=latency_target_ms, requests_per_client_hour=rate, step=chosen,
                            bound=bound, throughput=throughput, clients=throughput * 3600.0 / rate,
                            instances=instances)


def recommend(target_clients: int, observed: ObservedCapacity | None) -> list[Sizing]:
    """The recommendation rows: both documented VM sizes, and the measured capacity when it is below nominal.

    A measured row appears only when the run found a limit ("measured" or "below") lower than the Large figure;
    a run that never missed the target shows only a lower bound, which cannot lower the documented figures.
    """
    rows = [size_fleet(target_clients, STANDARD_CLIENTS_PER_INSTANCE, basis="Standard (A2_v2), documented"),
            size_fleet(target_clients, LARGE_CLIENTS_PER_INSTANCE, basis="Large (A4_v2), documented")]
    if observed is not None and observed.bound != "at least" and observed.clients > 0 \
            and observed.clients_per_instance < LARGE_CLIENTS_PER_INSTANCE:
        per_instance = math.floor(observed.clients_per_instance) or 1
        if observed.bound == "measured":
            basis = f"measured in this run (p95 <= {observed.latency_target_ms:g} ms)"
        else:  # even the first step missed the target: its figure is an upper bound, the counts a minimum
            basis = f"measured in this run: fewer than {per_instance:,} per instance, so at least these counts"
        rows.append(size_fleet(target_clients, per_instance, basis=basis))
    return rows
