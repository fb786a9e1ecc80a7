"""The fleet engine, pure and Locust-free: many sans-I/O device lifecycles over one transport (``driver``), which
device acts next (``scheduler``), the clients a site was seeded with (``seeded``), and what a run did (``tally``).
The Locust users in ``harness.load`` wrap it; tests and benchmarks drive it with a fake clock.
"""

from __future__ import annotations

from harness.fleet.driver import INSTALL_REGISTER, POLICY_CYCLE, TOKEN_RENEWAL, DeviceRun, FleetDriver
from harness.fleet.scheduler import DeviceScheduler, SchedulerError, device_indexes
from harness.fleet.seeded import SeededFleet
from harness.fleet.tally import LIFECYCLE_REQUEST_TYPE, MILESTONES, OutcomeTally, TallyError, cmgservice_table

__all__ = [
    "INSTALL_REGISTER",
    "LIFECYCLE_REQUEST_TYPE",
    "MILESTONES",
    "POLICY_CYCLE",
    "TOKEN_RENEWAL",
    "DeviceRun",
    "DeviceScheduler",
    "FleetDriver",
    "OutcomeTally",
    "SchedulerError",
    "SeededFleet",
    "TallyError",
    "cmgservice_table",
    "device_indexes",
]
