"""An already-registered fleet polling policy: start the site with ``cmg-harness up --seed-clients N`` first.

    locust -f locustfiles/steady_state.py --site state/site.json --devices-per-user 100
"""

from locust import events

from harness.load import install
from harness.load.users import SteadyStateUser

install(events)
__all__ = ["SteadyStateUser"]
