"""RunPlan: what a run was asked to do, written as run.json and read back, refusing an old or broken one by field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.defaults import DEFAULT_DEVICES_PER_USER, DEFAULT_USERS
from harness.results.errors import ResultsError
from harness.results.layout import ResultsDir
from harness.results.plan import RUN_PLAN_SCHEMA, PlanError, RunPlan


def _plan(tmp_path: Path) -> RunPlan:
    return RunPlan(out=tmp_path / "out", users=7, spawn_rate=2.5, duration=42.0, time_scale=600.0, workers=2,
                   fleet_mix="wpj_missing=0.1", seed=9, devices_per_user=3, seed_clients=12,
                   extra_locust_args=("--steps", "2"), chaos=tmp_path / "chaos.yaml", site=tmp_path / "site.json",
                   target="https://proxy.test:8443", ca_file=tmp_path / "ca.pem", inprocess_hops=True)


def test_a_plan_survives_run_json(tmp_path: Path) -> None:
    """Every field comes back as it was written, paths as paths and the Locust arguments as a tuple."""
    plan = _plan(tmp_path)
    results = ResultsDir(tmp_path / "out")
    path = results.write_plan(plan)
    assert path == tmp_path / "out" / "run.json"
    assert json.loads(path.read_text())["schema"] == RUN_PLAN_SCHEMA
    assert results.read_plan() == plan


def test_the_default_plan_is_the_documented_run(tmp_path: Path) -> None:
    """20 users x 5 devices, the same constant the Locust side takes."""
    from harness.load.context import LoadOptions

    plan = RunPlan(out=tmp_path)
    assert (plan.users, plan.devices_per_user, plan.devices) == (DEFAULT_USERS, DEFAULT_DEVICES_PER_USER, 100)
    assert LoadOptions().devices_per_user == plan.devices_per_user


def test_a_run_without_run_json_has_no_plan(tmp_path: Path) -> None:
    assert ResultsDir(tmp_path).read_plan() is None


def _document(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    document = _plan(tmp_path).to_json()
    document.update(changes)
    return document


@pytest.mark.parametrize(("changes", "named"), [
    ({"schema": 0}, "schema 0"),
    ({"schema": None}, "schema None"),
    ({"users": "many"}, "'users'"),
    ({"users": True}, "'users'"),
    ({"workers": -1}, "'workers'"),
    ({"duration": 0}, "'duration'"),
    ({"spawn_rate": "fast"}, "'spawn_rate'"),
    ({"out": 3}, "'out'"),
    ({"site": ""}, "'site'"),
    ({"extra_locust_args": "--steps 2"}, "'extra_locust_args'"),
    ({"inprocess_hops": "yes"}, "'inprocess_hops'"),
    ({"target": 8443}, "'target'"),
    ({"fleet_mix": None}, "'fleet_mix'"),
])
def test_a_broken_plan_is_refused_naming_the_field(tmp_path: Path, changes: dict[str, Any], named: str) -> None:
    """An old schema or a field of the wrong kind raises PlanError naming the file and the field."""
    with pytest.raises(PlanError, match="run.json") as caught:
        RunPlan.from_json(_document(tmp_path, **changes), source="x/run.json")
    assert named in str(caught.value)


def test_a_missing_field_is_named(tmp_path: Path) -> None:
    document = _document(tmp_path)
    del document["seed"]
    with pytest.raises(PlanError, match="field 'seed' is missing"):
        RunPlan.from_json(document)


def test_a_run_json_that_is_no_object_is_refused() -> None:
    with pytest.raises(PlanError, match="JSON object"):
        RunPlan.from_json([1, 2])


def test_reading_a_broken_run_json_raises_results_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps(_document(tmp_path, users=-5)))
    with pytest.raises(ResultsError, match=r"run\.json: field 'users'"):
        ResultsDir(tmp_path).read_plan()
    (tmp_path / "run.json").write_text("{")
    with pytest.raises(ResultsError, match="not readable JSON"):
        ResultsDir(tmp_path).read_plan()


def test_run_json_records_the_versions_that_ran_the_plan(tmp_path: Path) -> None:
    """run.json names the Python, the platform and the installed versions of the harness and Locust, and reading the
    plan back ignores them (they describe the run, they are not options)."""
    import platform
    from importlib import metadata

    results = ResultsDir(tmp_path)
    results.write_plan(RunPlan(out=tmp_path))
    written = json.loads((tmp_path / "run.json").read_text())
    assert written["versions"]["python"] == platform.python_version()
    assert written["versions"]["locust"] == metadata.version("locust")
    assert written["versions"]["cmg-harness"] == metadata.version("cmg-harness")
    assert results.read_plan() == RunPlan(out=tmp_path)
