"""Capacity search (open model): the arrival rate rises step by step until the system under test saturates, then a
bisection narrows the limit; the answer goes to capacity.json. One user per Locust process.

    locust -f locustfiles/capacity_search.py --site state/site.json --headless --capacity-search --slo-p99-ms 500
"""

from locust import events

from harness.load import install
from harness.load.capacity import CapacitySearchShape
from harness.load.users import OpenLifecycleUser

install(events)
__all__ = ["CapacitySearchShape", "OpenLifecycleUser"]
