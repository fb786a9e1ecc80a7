"""New devices: install and register through the CMG, then poll policy and renew the CCM token until the run ends.

    locust -f locustfiles/lifecycle.py --site state/site.json
"""

from locust import events

from harness.load import install
from harness.load.users import LifecycleUser

install(events)
__all__ = ["LifecycleUser"]
