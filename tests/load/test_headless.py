"""The pieces of ``cmg-harness run`` that need no processes: durations, command lines, the verdict and the summary."""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path

import pytest

from harness.load.headless import (
    RunPlan,
    default_out_dir,
    format_summary,
    locust_command,
    parse_duration,
    seeded_fleet_size,
    site_command,
    summarize,
)

MANIFEST = {"ccm_token_lifetime_s": 24.0, "policy_interval_s": 3.0, "db_path": "/nonexistent/site.db"}
POLICY = "/CCM_Proxy_ServerAuth/72186325152220500/ccm_system_tokenauth/request"


@pytest.mark.parametrize(("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("2m", 120.0), ("1h30m", 5400.0),
                                               ("1.5m", 90.0), (" 10S ", 10.0)])
def test_durations_read_like_locusts_run_time(text: str, seconds: float) -> None:
    """Plain seconds and h/m/s forms are accepted."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "soon", "5 minutes", "-3", "1m-2s"])
def test_bad_durations_are_refused_by_value(text: str) -> None:
    """Anything else raises ValueError quoting the text."""
    with pytest.raises(ValueError, match="duration") as caught:
        parse_duration(text)
    assert repr(text) in str(caught.value)


def test_default_results_go_to_a_timestamped_folder() -> None:
    """results/<timestamp>/ sorts runs by start time."""
    assert default_out_dir(datetime(2024, 5, 17, 9, 3, 4)) == Path("results/20240517-090304")


def test_locust_runs_headless_with_every_result_file_in_the_out_dir(tmp_path: Path) -> None:
    """Locust writes CSV, HTML, JSON and our outcomes into OUT and reads the site from OUT/site/site.json."""
    plan = RunPlan(out=tmp_path, users=7, spawn_rate=3.5, duration=42.0, devices_per_user=4, seed=9,
                   fleet_mix="wpj_missing=0.1")
    command = locust_command(plan, python="py")
    assert command[:3] == ["py", "-m", "locust"]
    pairs = dict(itertools.pairwise(command))
    assert pairs["-u"] == "7" and pairs["-r"] == "3.5" and pairs["-t"] == "42s"
    assert pairs["--csv"] == str(tmp_path / "locust") and pairs["--json-file"] == str(tmp_path / "locust")
    assert pairs["--html"] == str(tmp_path / "report.html") and pairs["--results-dir"] == str(tmp_path)
    assert pairs["--site"] == str(tmp_path / "site" / "site.json")
    assert pairs["--devices-per-user"] == "4" and pairs["--fleet-seed"] == "9"
    assert pairs["--fleet-mix"] == "wpj_missing=0.1"
    assert "--headless" in command and "--processes" not in command


def test_workers_turn_into_locust_processes(tmp_path: Path) -> None:
    """--workers W runs Locust's master with W worker processes."""
    command = locust_command(RunPlan(out=tmp_path, workers=3))
    assert command[command.index("--processes") + 1] == "3"


def test_the_site_starts_in_the_out_dir_with_the_runs_time_scale(tmp_path: Path) -> None:
    """The embedded site keeps its state (PKI, database, logs) in OUT/site and seeds clients when asked."""
    command = site_command(RunPlan(out=tmp_path, time_scale=600.0, seed_clients=12), python="py")
    assert command[:5] == ["py", "-m", "harness.cli", "up", "--state-dir"]
    pairs = dict(itertools.pairwise(command))
    assert pairs["--state-dir"] == str(tmp_path / "site") and pairs["--time-scale"] == "600.0"
    assert pairs["--seed-clients"] == "12"


@pytest.mark.parametrize(("users", "workers", "devices", "seeded"), [(10, 0, 5, 50), (10, 3, 5, 60), (2, 4, 1, 4)])
def test_a_steady_state_run_seeds_every_device_it_can_play(users: int, workers: int, devices: int,
                                                           seeded: int) -> None:
    """Users spread over workers may reach slots up to ceil(U/W)*W, so that many users' devices are seeded."""
    assert seeded_fleet_size(users, workers, devices) == seeded


def _outcomes(*, unexpected: int = 0, registered: int = 10) -> dict[str, object]:
    return {"lifecycles": {"succeeded": 0, "failed": unexpected, "unexpected_failures": unexpected},
            "outcomes": {"cmg.403": unexpected} if unexpected else {},
            "unexpected": {"cmg.403": unexpected} if unexpected else {}, "stage_failures": {},
            "devices": {"started": 10, "installed": 10, "registered": registered, "renewed": 10, "polled": 10},
            "events": {"installed": 10, "registered": registered, "renewed": 20, "polled": 100},
            "requests": {POLICY: {"request_bytes": 2000, "responses": 100}}}


def _stats() -> list[dict[str, object]]:
    return [{"name": POLICY, "method": "CCM_POST", "num_requests": 100, "num_failures": 0,
             "total_response_time": 1000.0, "total_content_length": 5000, "max_response_time": 40.0},
            {"name": "policy cycle", "method": "LIFECYCLE", "num_requests": 100, "num_failures": 0,
             "total_response_time": 1500.0, "total_content_length": 0, "max_response_time": 60.0}]


def test_a_run_without_unexpected_failures_passes(tmp_path: Path) -> None:
    """Devices progressed and nothing failed unexpectedly: PASS."""
    summary = summarize(RunPlan(out=tmp_path), manifest=MANIFEST, locust_stats=_stats(), outcomes=_outcomes(),
                        registrations=10, locust_exit=0)
    assert summary["passed"] and summary["problems"] == []
    assert summary["site"]["new_registrations"] == 10


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"outcomes": _outcomes(unexpected=2)}, "2 lifecycle(s) failed unexpectedly"),
    ({"outcomes": None}, "no outcomes.json"),
    ({"locust_exit": 2}, "Locust exited with status 2"),
    ({"outcomes": {"devices": {"started": 5}}}, "no device got anywhere"),
])
def test_a_run_fails_for_unexpected_failures_or_missing_results(tmp_path: Path, kwargs: dict[str, object],
                                                                problem: str) -> None:
    """Unexpected failures, a crashed Locust, or no progress at all make the run fail, saying why."""
    arguments: dict[str, object] = {"manifest": MANIFEST, "locust_stats": _stats(), "outcomes": _outcomes(),
                                    "registrations": 10, "locust_exit": 1}
    arguments.update(kwargs)
    summary = summarize(RunPlan(out=tmp_path), **arguments)  # type: ignore[arg-type]
    assert not summary["passed"]
    assert any(problem in text for text in summary["problems"])


def test_seeded_clients_are_not_counted_as_new_registrations(tmp_path: Path) -> None:
    """A steady-state run's database holds the seeded clients; only the rest are new."""
    summary = summarize(RunPlan(out=tmp_path, seed_clients=40), manifest=MANIFEST, locust_stats=[],
                        outcomes=_outcomes(), registrations=40, locust_exit=0)
    assert summary["site"]["new_registrations"] == 0


def test_the_summary_shows_devices_stages_requests_and_the_verdict(tmp_path: Path) -> None:
    """One screen: how far devices got, lifecycle stage times, the CMGService table, and PASS or FAIL."""
    text = format_summary(summarize(RunPlan(out=tmp_path), manifest=MANIFEST, locust_stats=_stats(),
                                    outcomes=_outcomes(unexpected=1), registrations=9, locust_exit=0))
    assert "installed 10  registered 10  renewed 10  polled 10" in text
    assert "token renewals 20  policy cycles 100" in text
    assert "site DB     registrations 9" in text
    assert "policy cycle" in text and POLICY in text
    assert "2000 B" in text and "10 ms" in text
    assert "unexpected  cmg.403 1" in text
    assert text.splitlines()[-1].startswith("FAIL: 1 lifecycle(s) failed unexpectedly")
    assert len(text.splitlines()) < 40
