"""Chaos runs end to end: every fault of docs/faults.md switched by a schedule during a short load, judged by the verdicts.

Three short ``cmg-harness run`` loads against the mock site cover every fault: each switches several faults on, one
after another, while devices keep arriving (users spawn one every 2 s) and renew their 8 s CCM tokens, and none of
them may end in an unexpected outcome. A site that forwards invalid tokens, as a broken proxy would, must be caught.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.chaos.schedule import load_schedule
from harness.chaos.summary import fault_involvement
from harness.chaos.verdicts import FaultWindow, VerdictSettings, judge
from harness.client import Fleet
from harness.client.device import SHARE_TRAITS
from mock_site.faults import CATALOGUE
from mock_site.testing import running_site

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
#: 12 users x 2 devices, one user every 2 s; at time scale 3600 the CCM token lives 8 s and policy runs every 1 s.
#: Clock skews are compressed like every duration: 7200 s is 2 real seconds, clear of the 0.08 s allowance either way.
LOAD = ["--users", "12", "--devices-per-user", "2", "--spawn-rate", "0.5", "--time-scale", "3600"]
#: Device flags, not faults: they change what a device may do, not whether it may fail.
DEVICE_FLAGS = {"nocrlcheck", "pki_client_cert", "bulk_token"}

GROUPS = {
    # CRL and certificate faults while devices install, plus every device fault by share (seed 1 gives each at least
    # one device it decides).
    "certificates": ("""
faults:
  - {fault: wpj_missing, share: 0.15}
  - {fault: root_ca_missing, share: 0.1}
  - {fault: pki_client_cert, share: 0.15}
  - {fault: bulk_token, share: 0.2}
  - {fault: nocrlcheck, share: 0.25}
  - {fault: wam_device_token_error, share: 0.15}
  - {fault: no_user_token, share: 0.1}
  - {fault: clock_skew, share: 0.3, seconds: 7200}
  - {fault: crl_unreachable, start: 1, duration: 3}
  - {fault: crl_expired, start: 5, duration: 3}
  - {fault: crl_slow, start: 9, duration: 2, params: {latency_ms: 300}}
  - {fault: over_capacity, start: 12, duration: 2, params: {clients_per_instance: 1, ms_per_excess_client: 20}}
  - {fault: cp_cert_revocation_offline, start: 15, duration: 3}
  - {fault: cmg_cert_revoked, start: 19, duration: 3}
""", 24),
    # Entra, CCM_STS and tenant faults, hitting installs and the renewals every 7.2 s; the content storage and bulk token
    # faults hit the installs among them (a share of the devices installs with a bulk token); then the MP's signature
    # checks, hitting the policy polls every second.
    "tokens": ("""
faults:
  - {fault: bulk_token, share: 0.3}
  - {fault: tenant_not_onboarded, role: cmg, start: 1, duration: 2}
  - {fault: entra_token_expired, start: 4, duration: 2}
  - {fault: entra_bad_signature, start: 7, duration: 2}
  - {fault: entra_wrong_audience, start: 10, duration: 2}
  - {fault: entra_wrong_issuer, start: 13, duration: 2}
  - {fault: sts_unavailable, start: 16, duration: 2}
  - {fault: sts_error, start: 19, duration: 2}
  - {fault: tenant_not_onboarded, role: sts, start: 22, duration: 2}
  - {fault: storage_slow, start: 2, duration: 2, params: {latency_ms: 200}}
  - {fault: signed_url_expired, start: 11, duration: 2}
  - {fault: storage_unreachable, start: 17, duration: 2}
  - {fault: content_hash_mismatch, start: 20, duration: 2}
  - {fault: bulk_token_expired, start: 1, duration: 3}
  - {fault: bulk_token_revoked, start: 8, duration: 3}
  - {fault: policy_signature_mismatch, start: 25, duration: 2}
  - {fault: client_unknown, start: 28, duration: 2}
""", 31),
    # CCM token faults at the CMG and CCM_STS, and the proxy and network chaos.
    "network": ("""
faults:
  - {fault: ccm_token_expired, role: cmg, start: 1, duration: 2}
  - {fault: ccm_token_expired, role: sts, start: 4, duration: 2}
  - {fault: ccm_token_lifetime, start: 7, duration: 2, params: {seconds: 2}}
  - {fault: latency, role: cmg, start: 10, duration: 1.5, params: {mean_ms: 200, jitter_ms: 50}}
  - {fault: http_error, role: cp, start: 12, duration: 1.5, params: {status: 503}}
  - {fault: reset, role: cmg, start: 14, duration: 1.5, probability: 0.5}
  - {fault: cp_disconnected, start: 16, duration: 1.5}
  - {fault: mp_slow, start: 18, duration: 1.5, params: {latency_ms: 400}}
  - {fault: mp_down, start: 20, duration: 1.5}
  - {fault: bandwidth, role: cmg, start: 22, duration: 2, params: {kib_per_s: 128}}
""", 26),
}


def cmg_harness(*args: str, timeout: float = 150.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def _schedules(tmp_path: Path) -> dict[str, Path]:
    paths = {}
    for name, (text, _) in GROUPS.items():
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(text)
    return paths


def test_every_fault_of_faults_md_is_in_one_of_the_chaos_runs(tmp_path: Path) -> None:
    """Every server-side fault of the catalogue and every device fault is switched by one of the runs below."""
    named: set[str] = set()
    for path in _schedules(tmp_path).values():
        schedule = load_schedule(path)
        named |= {fault.name for fault in schedule.timed} | set(schedule.device_shares)
    assert set(CATALOGUE) <= named
    assert set(SHARE_TRAITS) <= named


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda path: path.stem)
def test_every_ready_made_scenario_is_a_valid_schedule(path: Path) -> None:
    """The scenarios in scenarios/ load and check cleanly, and each switches or shares at least one fault."""
    schedule = load_schedule(path)
    assert schedule.timed or schedule.device_shares


def test_the_six_documented_scenarios_are_there() -> None:
    """The scenarios docs/chaos.md describes exist under the names it gives."""
    assert {path.stem for path in SCENARIOS.glob("*.yaml")} >= {
        "crl-outage", "token-expiry-storm", "wpj-less-fleet", "tenant-not-onboarded", "cp-flap", "slow-mp"}


def test_a_management_point_that_is_down_may_fail_ccm_sts_with_500() -> None:
    """CCM_STS lives on the MP: while mp_down is on, the connection point answers token requests 500."""
    tenant = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"
    verdict = judge(Fleet(1, tenant_ids=[tenant]).device(0), "sts.500", life_start=10.0, life_end=11.0,
                    windows=[FaultWindow("mp_down", "mp", 9.0, 12.0)],
                    settings=VerdictSettings(onboarded_tenants=frozenset({tenant})))
    assert verdict.expected


@pytest.fixture(scope="module")
def chaos_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[subprocess.CompletedProcess[str],
                                                                             dict[str, Any]]]:
    """The three runs, one after the other (each brings its own mock site)."""
    base = tmp_path_factory.mktemp("chaos")
    results = {}
    for name, path in _schedules(base).items():
        out = base / f"{name}-results"
        result = cmg_harness("run", *LOAD, "--duration", f"{GROUPS[name][1]}s", "--chaos", str(path),
                             "--out", str(out))
        summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
        results[name] = (result, summary)
    return results


@pytest.mark.slow
@pytest.mark.parametrize("group", sorted(GROUPS))
def test_a_chaos_run_ends_with_no_unexpected_outcome(chaos_runs: dict[str, Any], group: str) -> None:
    """Under every fault of the group the mock site behaves as docs/faults.md predicts: zero unexpected, exit code 0."""
    result, summary = chaos_runs[group]
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert summary["verdicts"]["unexpected"] == 0 and summary["verdicts"]["expected"] > 0
    assert summary["chaos"]["errors"] == []


@pytest.mark.slow
@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_scheduled_fault_shows_as_a_window_of_the_run(chaos_runs: dict[str, Any], group: str,
                                                            tmp_path: Path) -> None:
    """The schedule switched each fault at its time and the fault followers saw it on (at its role)."""
    _, summary = chaos_runs[group]
    schedule = load_schedule(_schedules(tmp_path)[group])
    seen = {(window["name"], window["role"]) for window in summary["fault_windows"] if not window["inferred"]}
    expected = {(fault.name, fault.role or CATALOGUE[fault.name].default_role) for fault in schedule.timed}
    assert expected <= seen
    assert len(summary["chaos"]["applied"]) == len(schedule.timed)


@pytest.mark.slow
def test_device_faults_decide_the_outcomes_of_their_devices(chaos_runs: dict[str, Any]) -> None:
    """Each device fault of the share list stopped at least one device, as docs/faults.md says, and was expected to."""
    _, summary = chaos_runs["certificates"]
    faults = fault_involvement(summary["verdicts"]["faults"])
    for name in set(SHARE_TRAITS) - DEVICE_FLAGS - {"wam_device_token_error"}:  # a WAM error ends in success
        assert faults.get(name, {}).get("expected", 0) >= 1, (name, faults)


@pytest.mark.slow
def test_faults_that_hit_devices_are_counted_as_causes(chaos_runs: dict[str, Any]) -> None:
    """Failures during the windows are put down to the faults that were on, per fault, all expected."""
    causes: dict[str, Any] = {}
    for _, summary in chaos_runs.values():
        causes.update(fault_involvement(summary["verdicts"]["faults"]))
    for name in ("crl_unreachable", "cmg_cert_revoked", "cp_cert_revocation_offline", "tenant_not_onboarded",
                 "entra_bad_signature", "sts_error", "cp_disconnected", "mp_down", "http_error",
                 "policy_signature_mismatch", "client_unknown"):
        assert causes.get(name, {}).get("expected", 0) >= 1 and not causes[name].get("unexpected"), (name, causes)


@pytest.mark.slow
def test_each_window_that_ended_in_time_has_recovery_measures(chaos_runs: dict[str, Any]) -> None:
    """Windows with a baseline before them and time after them report recovery time and storm size."""
    _, summary = chaos_runs["network"]
    measured = {row["name"] for row in summary["recovery"] if "recovered" in row}
    assert {"cp_disconnected", "http_error"} <= measured
    row = next(row for row in summary["recovery"] if row["name"] == "cp_disconnected")
    assert row["worst_success_rate"] < row["baseline_success_rate"] and row["storm_rps"] >= 0


@pytest.mark.slow
def test_a_site_that_forwards_invalid_tokens_is_caught(tmp_path: Path) -> None:
    """CCM tokens issued expired reach the MP through a CMG that skips its checks: unexpected mp.401, exit code 1."""
    schedule = tmp_path / "expired-tokens.yaml"
    schedule.write_text("faults:\n  - {fault: ccm_token_expired, role: sts, start: 0, duration: 30}\n")
    out = tmp_path / "results"
    with running_site(tmp_path / "site", time_scale=3600, unsafe_skip_token_checks=True) as site:
        result = cmg_harness("run", "--site", str(site.manifest_path), "--users", "3", "--devices-per-user", "2",
                             "--spawn-rate", "2", "--duration", "6s", "--chaos", str(schedule), "--out", str(out))
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdicts"]["unexpected"] > 0
    assert summary["verdicts"]["reasons"]["mp.401"]["unexpected"] > 0
    [example, *_] = summary["verdicts"]["examples"]["unexpected_failure:mp.401"]
    assert example["trail"][-1][2:] == [401, example["trail"][-1][3], "mp.401"]
    assert "forwarded a request with an invalid token" in example["explanation"]
    assert "UNEXPECTED unexpected_failure:mp.401" in result.stdout and "FAIL: " in result.stdout
