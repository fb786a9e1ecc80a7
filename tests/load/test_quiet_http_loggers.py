"""Locust processes keep httpx's (and httpcore's) per-request lines out of the console and locust.log.

The fault follower reads the site's control API every second, and httpx logs each request at INFO. Run in a fresh
interpreter: importing Locust patches the process with gevent, which the rest of the suite must not get.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import logging

from locust.env import Environment
from locust.event import Events

from harness.load.listeners import install

logging.basicConfig(level=logging.DEBUG, format="%(name)s %(levelname)s %(message)s")  # as Locust's --loglevel DEBUG
events = Events()
install(events)
env = Environment(events=events, parsed_options=None)
logging.getLogger("httpx").info("HTTP Request: GET https://127.0.0.1:1/faults before")
events.init.fire(environment=env, runner=None, web_ui=None)
logging.getLogger("httpx").info("HTTP Request: GET https://127.0.0.1:1/faults after")
logging.getLogger("httpcore.connection").debug("connect_tcp.started after")
logging.getLogger("httpx").warning("a warning still shows")
logging.getLogger("harness.load").info("the harness's own lines still show")
'''


def test_httpx_and_httpcore_lines_stop_at_locusts_init() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    log = done.stderr
    assert "faults before" in log  # the test would see the lines if the plugin did not quiet them
    assert "faults after" not in log and "connect_tcp.started after" not in log
    assert "a warning still shows" in log and "the harness's own lines still show" in log
