"""Capacity run: new devices in steps of users (``--step-users``, ``--steps``), each step held ``--step-hold`` s.

    locust -f locustfiles/capacity.py --site state/site.json --step-users 50 --steps 8 --step-hold 120
"""

from locust import events

from harness.load import install, install_shapes
from harness.load.shapes import StepLoadShape
from harness.load.users import LifecycleUser

install(events)
install_shapes(events)
__all__ = ["LifecycleUser", "StepLoadShape"]
