"""Load plans, pure arithmetic: how many Locust users at each moment (closed model: step, soak, spike), when each
device starts (open model: constant or ramping arrival rate, a fleet of a size and poll interval), and the capacity
search that raises the arrival rate until the system under test saturates.
"""

from __future__ import annotations

from harness.plans.arrivals import ArrivalError, ArrivalPlan, ArrivalStage, FleetPlan
from harness.plans.search import Capacity, CapacitySearch, SearchError, SearchSettings, StepResult
from harness.plans.users import PlanError, SoakPlan, SpikePlan, StepPlan

__all__ = [
    "ArrivalError",
    "ArrivalPlan",
    "ArrivalStage",
    "Capacity",
    "CapacitySearch",
    "FleetPlan",
    "PlanError",
    "SearchError",
    "SearchSettings",
    "SoakPlan",
    "SpikePlan",
    "StepPlan",
    "StepResult",
]
