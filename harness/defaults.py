"""The defaults of a load run and of the site it runs against, defined once.

``cmg-harness run`` (its options and ``--help``), the :class:`~harness.results.plan.RunPlan` a run records, and the
Locust-side options of a plain ``locust -f`` run all read these names, so ``./dev run`` and a hand-started Locust play
the same fleet. This module imports nothing from the project (the low packages and the Locust side both read it).
"""

from __future__ import annotations

from pathlib import Path

#: Where the thin Locust entry points live (a source checkout; ``pip install -e .`` keeps them next to the package).
LOCUSTFILES_DIR = Path(__file__).resolve().parents[1] / "locustfiles"
DEFAULT_LOCUSTFILE = LOCUSTFILES_DIR / "lifecycle.py"
#: The locustfile of an open-model run (--arrival-rate, --ramp, --fleet).
OPEN_LOCUSTFILE = LOCUSTFILES_DIR / "open.py"
#: The locustfile of an open-model capacity search (--capacity).
CAPACITY_SEARCH_LOCUSTFILE = LOCUSTFILES_DIR / "capacity_search.py"

#: The mock site's state directory (PKI, database, logs) and the manifest ``cmg-harness up`` writes into it.
DEFAULT_STATE_DIR = Path("state")
DEFAULT_SITE = "state/site.json"

#: Locust users of a run, and the simulated devices each plays: 20 x 5 = 100 devices.
DEFAULT_USERS = 20
DEFAULT_DEVICES_PER_USER = 5
#: Users started per second.
DEFAULT_SPAWN_RATE = 10.0
#: How long Locust runs, in seconds.
DEFAULT_DURATION_SECONDS = 60.0
#: With this time scale the 8 h CCM token lasts 24 s (renewed at 90 %) and the 60 min policy cycle 3 s, so one
#: minute shows install, registration, polling and renewal.
DEFAULT_TIME_SCALE = 1200.0
#: The fleet seed: the same seed plays the same devices.
DEFAULT_SEED = 1
