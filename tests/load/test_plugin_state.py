"""The cmg-harness plugin state belongs to one Locust environment: two environments in one process share nothing.

Run in a fresh interpreter: importing Locust patches the process with gevent, which the rest of the suite must not get.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from mock_site.testing import RunningSite

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import json, sys
from pathlib import Path

from locust import events as locust_events
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment
from locust.event import Events

from harness.load.listeners import install, plugin_of
from harness.load.users import LifecycleUser

site, cmg_url, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
report = {}


def environment(name, events=None):
    events = events or Events()
    install(events)
    install(events)  # a locustfile loaded twice: still one set of listeners
    parser = LocustArgumentParser()
    events.init_command_line_parser.fire(parser=parser)
    options = parser.parse_args(["--site", site, "--results-dir", str(work / name), "--devices-per-user", "2"])
    env = Environment(events=events, parsed_options=options, host=cmg_url)
    env.create_local_runner()
    events.init.fire(environment=env, runner=env.runner, web_ui=None)
    return env


def outcomes(name):
    path = work / name / "outcomes.json"
    return json.loads(path.read_text())["devices"]["started"] if path.exists() else None


a, b = environment("a"), environment("b")
pa, pb = plugin_of(a), plugin_of(b)
report["own_plugins"] = pa is not pb and pa.environment is a and pb.environment is b and plugin_of(a) is pa
report["own_parts"] = pa.tally is not pb.tally and pa.verdicts is not pb.verdicts \
    and pa.monitor is not pb.monitor and pa.exporter is not pb.exporter
report["init_listeners"] = len(a.events.init._handlers)

# A user of a reads a's run state: a gets a run context (counting into a's tally), b has none.
class Device(LifecycleUser):
    host = cmg_url


user = Device(a)
report["user_context"] = user.run_context is pa.context and pa.context.tally is pa.tally and pb.context is None
report["user_judge"] = user.driver._judge == pa.judge
report["counts_after_a"] = [pa.tally.snapshot()["devices"]["started"], pb.tally.snapshot()["devices"]["started"]]

# A worker's report of a reaches b only when handed over (as a master's worker_report would).
data = {}
a.events.report_to_master.fire(client_id="a", data=data)
b.events.worker_report.fire(client_id="a", data=data)
report["counts_after_report"] = [pa.tally.snapshot()["devices"]["started"], pb.tally.snapshot()["devices"]["started"]]

# Stopping a's test writes a's outcomes to a's results only.
a.events.test_stop.fire(environment=a)
report["outcomes_after_a_stop"] = [outcomes("a"), outcomes("b")]
b.events.test_stop.fire(environment=b)
report["outcomes_after_b_stop"] = [outcomes("a"), outcomes("b")]

# Two environments on one events object (as Locust's own module-level one): events that name an environment reach
# only its plugin.
c, d = environment("c", locust_events), environment("d", locust_events)
plugin_of(c).tally.record_device_started()
locust_events.test_stop.fire(environment=d)
report["shared_events_stop_d"] = [outcomes("c"), outcomes("d")]
report["shared_plugins"] = plugin_of(c) is not plugin_of(d)

for env in (a, b, c, d):
    plugin_of(env).on_quit()
print(json.dumps(report))
'''


def _run(site: RunningSite, work: Path) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(site.manifest_path), site.manifest.cmg_url,
                             str(work)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_two_environments_in_one_process_share_no_plugin_state(site: RunningSite, tmp_path: Path) -> None:
    """Each environment has its own plugin (tally, verdicts, run context, gate, exporter); users, reports and
    results follow their environment; an events object shared by two environments keeps their tests apart."""
    report = _run(site, tmp_path)
    assert report["own_plugins"] and report["own_parts"]
    assert report["init_listeners"] == 1
    assert report["user_context"] and report["user_judge"]
    assert report["counts_after_a"] == [2, 0]  # the user's two devices started in a only
    assert report["counts_after_report"] == [2, 2]
    assert report["outcomes_after_a_stop"] == [2, None]
    assert report["outcomes_after_b_stop"] == [2, 2]
    assert report["shared_events_stop_d"] == [None, 0]
    assert report["shared_plugins"]
