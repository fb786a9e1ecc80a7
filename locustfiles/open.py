"""Open model: devices start on a schedule of their own, whatever the latency of others (one user per process).

    locust -f locustfiles/open.py --site state/site.json --users 1 --arrival-rate 20/s
    locust -f locustfiles/open.py --site state/site.json --users 1 --fleet 100000 --poll-interval 60m
"""

from locust import events

from harness.load import install
from harness.load.users import OpenLifecycleUser

install(events)
__all__ = ["OpenLifecycleUser"]
