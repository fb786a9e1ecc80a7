"""The web UI's extra tabs: verdicts per fault set, reason and example; fault windows; the schedule's upcoming
switches; our build of Locust's page with the fault controls tab."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.load.webui import (
    BUILD_DIR,
    CONTROLS_TAB,
    EXTENDED_TABLES,
    EXTENDED_TABS,
    fault_rows,
    trail_text,
    upcoming_rows,
    use_our_build,
    verdict_rows,
)

VERDICTS = {
    "expected": 7, "unexpected": 1, "pending": 2,
    "faults": {"cp_disconnected": {"expected": 5}, "none": {"expected": 2, "unexpected": 1}},
    "reasons": {"cmg.503": {"expected": 5}, "mp.401": {"unexpected": 1}, "ok": {"expected": 2}},
    "examples": {"unexpected_failure:mp.401": [{
        "device": "CMGDEV0000004", "explanation": "a proxy forwarded a request with an invalid token to the MP",
        "trail": [["ccm_token", "/CCM_Proxy_ServerAuth/1/CCM_STS", 200, 4.0, "ok"],
                  ["policy_assignments", "/CCM_Proxy_ServerAuth/1/ccm_system_tokenauth/request", 401, 2.0, "mp.401"]],
    }]},
}


def test_the_verdict_tab_shows_totals_faults_reasons_then_examples() -> None:
    """One row for the total, one per fault and per reason with both counts, one per unexpected example."""
    rows = verdict_rows(VERDICTS)
    assert rows[0] == {"kind": "total", "name": "all judged outcomes", "expected": 7, "unexpected": 1,
                       "detail": "2 waiting for the fault timeline"}
    assert {(row["kind"], row["name"], row["expected"], row["unexpected"]) for row in rows[1:6]} == {
        ("faults on", "cp_disconnected", 5, 0), ("faults on", "none", 2, 1), ("reason", "cmg.503", 5, 0),
        ("reason", "mp.401", 0, 1), ("reason", "ok", 2, 0)}
    example = rows[-1]
    assert example["kind"] == "example" and example["name"] == "unexpected_failure:mp.401"
    assert example["detail"].startswith("CMGDEV0000004: a proxy forwarded")
    assert example["detail"].endswith("trail: ccm_token 200 ok > policy_assignments 401 mp.401")


def test_an_exchange_without_an_answer_shows_a_dash_for_its_status() -> None:
    """A TLS failure has no HTTP status."""
    assert trail_text([["aad_info", "/CCM_Proxy_ServerAuth/AADAuthInfo", None, 1.0, "tls.invalid_ca"]]) == \
        "aad_info - tls.invalid_ca"


def test_the_fault_window_tab_places_windows_in_the_test() -> None:
    """Windows are given in seconds into the test; one still on has no end."""
    windows = [{"name": "crl_unreachable", "role": "crl", "start": 1010.0, "end": 1040.0, "injections": 12,
                "inferred": False},
               {"name": "cp_disconnected", "role": "cmg", "start": 1050.5, "end": None, "injections": 3,
                "inferred": False},
               {"name": "reset", "role": "*", "start": 1060.0, "end": 1061.0, "injections": 1, "inferred": True}]
    rows = fault_rows(windows, started_at=1000.0)
    assert [(r["fault"], r["state"], r["from_s"], r["to_s"], r["injections"]) for r in rows] == [
        ("crl_unreachable", "ended", 10.0, 40.0, 12), ("cp_disconnected", "on", 50.5, "", 3),
        ("reset", "inferred", 60.0, 61.0, 1)]


def test_every_extra_tab_has_a_table_with_its_columns() -> None:
    """Locust's UI needs a table structure for each extended tab it shows."""
    assert {tab["key"] for tab in EXTENDED_TABS} == {table["key"] for table in EXTENDED_TABLES}
    verdict_columns = next(t["structure"] for t in EXTENDED_TABLES if t["key"] == "chaos-verdicts")
    assert set(verdict_rows(VERDICTS)[0]) == {column["key"] for column in verdict_columns}


def test_overlapping_faults_are_one_row_and_the_rows_add_up_to_the_total() -> None:
    """An outcome under two faults is in the "a + b" row only, marked as an overlap; the rows sum to the total."""
    verdicts = {"expected": 9, "unexpected": 2, "pending": 0,
                "faults": {"cp_disconnected + crl_unreachable": {"expected": 4, "unexpected": 1},
                           "crl_unreachable": {"expected": 3}, "none": {"expected": 2, "unexpected": 1}},
                "reasons": {}, "examples": {}}
    rows = verdict_rows(verdicts)
    sets = [row for row in rows if row["kind"] == "faults on"]
    assert [(row["name"], row["detail"]) for row in sets] == [
        ("cp_disconnected + crl_unreachable", "overlap: 2 faults on together"), ("crl_unreachable", ""),
        ("none", "no fault")]
    total = rows[0]
    assert sum(row["expected"] for row in sets) == total["expected"] == 9
    assert sum(row["unexpected"] for row in sets) == total["unexpected"] == 2


def _schedule() -> Any:
    from harness.chaos.schedule import parse_schedule

    return parse_schedule("faults:\n  - fault: crl_unreachable\n    start: 30\n    duration: 60\n"
                          "  - fault: latency\n    role: mp\n    start: 90\n    duration: 10\n")


def test_the_controls_tab_lists_the_schedules_switches_still_to_come_soonest_first() -> None:
    """40 s into the test: crl_unreachable is on (its "off" at 90 s is next, before latency's "on" at the same time)."""
    rows = upcoming_rows(_schedule(), started_at=1000.0, now=1040.0)
    assert [(r["in"], r["at"], r["switch"], r["fault"], r["role"]) for r in rows] == [
        (50.0, 90.0, "off", "crl_unreachable", "crl"), (50.0, 90.0, "on", "latency", "mp"),
        (60.0, 100.0, "off", "latency", "mp")]
    assert rows[0]["line"] == 2


def test_before_the_test_every_switch_is_upcoming_and_without_a_schedule_none() -> None:
    """No test started yet: all four switches, counted from the start; no schedule: no rows."""
    assert [r["in"] for r in upcoming_rows(_schedule(), started_at=None, now=5.0)] == [30.0, 90.0, 90.0, 100.0]
    assert upcoming_rows(None, started_at=1000.0, now=1040.0) == []
    assert len(upcoming_rows(_schedule(), started_at=None, now=0.0, limit=2)) == 2


class _BareWebUI:
    def __init__(self, templates: Path) -> None:
        from flask import Flask

        self.app = Flask("bare-locust", template_folder=str(templates))

    def auth_required_if_enabled(self, view: Any) -> Any:
        return view


@pytest.mark.parametrize("base_path", ["", "/locust"])
def test_our_build_is_locusts_page_and_its_other_templates_stay_locusts(tmp_path: Path, base_path: str) -> None:
    """index.html comes from our build (loading our bundle, relative to the page), Locust's other templates from its
    own folder, and the bundle is served under the base path."""
    from flask import render_template

    (tmp_path / "index.html").write_text("locust's own page")
    (tmp_path / "auth.html").write_text("locust's login page")
    ui = _BareWebUI(tmp_path)
    use_our_build(ui, base_path=base_path)

    @ui.app.route(base_path + "/")
    def index() -> str:
        return render_template("index.html", template_args={"extended_tabs": EXTENDED_TABS})

    @ui.app.route(base_path + "/login")
    def login() -> str:
        return render_template("auth.html")

    client = ui.app.test_client()
    page = client.get(base_path + "/").get_data(as_text=True)
    assert '<script type="module" src="./cmg/ui/cmg-harness-ui.js">' in page and '"cmg-traffic"' in page
    assert client.get(base_path + "/login").get_data(as_text=True) == "locust's login page"
    bundle = client.get(base_path + "/cmg/ui/cmg-harness-ui.js")
    assert bundle.status_code == 200 and bundle.mimetype == "text/javascript"
    assert CONTROLS_TAB.encode() in bundle.get_data()


def test_the_bundle_is_built_from_the_current_sources() -> None:
    """The committed bundle carries the tab's markers: a source change without a rebuild (npm run build in
    harness/load/webui_app) fails here when it renames them."""
    bundle = (BUILD_DIR / "cmg-harness-ui.js").read_text()
    source = (BUILD_DIR.parent / "webui_app" / "src" / "FaultTab.jsx").read_text()
    for marker in ("cmg-fault-tab", "cmg-active-faults", "cmg-schedule", "cmg-catalogue", "./cmg/faults/api",
                   "X-Requested-With", "cmg-harness"):
        assert marker in source and marker in bundle, marker


APP_DIR = BUILD_DIR.parent / "webui_app"


@pytest.mark.skipif(not (APP_DIR / "node_modules" / ".bin" / "esbuild").exists(),
                    reason="needs the UI's build tools (npm ci in harness/load/webui_app)")
def test_a_rebuild_from_the_sources_gives_the_committed_bundle(tmp_path: Path) -> None:
    """The committed bundle is exactly what the package's build script makes of the current sources."""
    import json
    import shlex
    import subprocess

    script = json.loads((APP_DIR / "package.json").read_text())["scripts"]["build"]
    argv = [arg if not arg.startswith("--outfile=") else f"--outfile={tmp_path / 'bundle.js'}"
            for arg in shlex.split(script)]
    subprocess.run([str(APP_DIR / "node_modules" / ".bin" / argv[0]), *argv[1:]], cwd=APP_DIR, check=True,
                   timeout=300)
    assert (tmp_path / "bundle.js").read_bytes() == (BUILD_DIR / "cmg-harness-ui.js").read_bytes()
