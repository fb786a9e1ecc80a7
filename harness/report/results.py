"""What a results directory of ``cmg-harness run`` (or a plain Locust run with ``--csv``) tells the report.

Read through :class:`harness.results.ResultsDir`: ``locust_stats_history.csv`` (required: the user count of every
second), ``stats_history.jsonl`` (the per-second request histograms, when the run has them), ``summary.json`` (the
run plan: time scale, devices per user), ``site/site.json`` (CMG instances, policy interval), ``locust.log`` (CPU
warnings), and fault windows from ``summary.json`` or ``outcomes.json`` when the run had a chaos schedule. Whatever
is missing becomes a stated assumption in the report, not an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.chaos.verdicts import FaultWindow
from harness.report.errors import ReportError
from harness.report.history import StatsHistory, read_history
from harness.report.requestlog import RequestLog, request_log
from harness.results.errors import ResultsError
from harness.results.layout import LOCUST_HISTORY_CSV, STATS_HISTORY, ResultsDir, or_none
from mock_site.manifest import SiteManifest


@dataclass(frozen=True, slots=True)
class RunFacts:
    """The run's parameters the report needs, and the assumptions made where the results did not say."""

    time_scale: float
    devices_per_user: int
    policy_interval_s: float | None   # real seconds between a device's policy cycles in the run
    cmg_instances: int
    locustfile: str
    workers: int
    assumptions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RunResults:
    """The parsed contents of one results directory."""

    directory: Path
    history: StatsHistory
    requests: RequestLog | None       # None: the run left no per-second histograms
    facts: RunFacts
    locust_log: str | None
    fault_windows: tuple[FaultWindow, ...] | None   # None: the run recorded none (no chaos schedule)


def load_results(results_dir: Path) -> RunResults:
    """Read ``results_dir``; ReportError when it or its stats history is missing, or a file it needs is broken."""
    results = ResultsDir(Path(results_dir))
    try:
        results.require()
        history_path = results.locust_history_csv()
        if history_path is None:
            raise ReportError(f"results directory {str(results.path)!r} has no {LOCUST_HISTORY_CSV} "
                              "(run Locust with --csv)")
        points = results.read_stats_history()
        try:
            site, unusable = results.read_site_manifest(), None
        except ResultsError as error:  # a broken manifest costs the facts it holds, stated, not the report
            site, unusable = None, str(error)
        return RunResults(directory=results.path, history=read_history(history_path),
                          requests=None if points is None else request_log(points, source=str(results.file(STATS_HISTORY))),
                          facts=run_facts(or_none(results.read_summary), site, unusable_site=unusable),
                          locust_log=results.read_locust_log(), fault_windows=results.read_fault_windows())
    except ResultsError as error:
        raise ReportError(str(error)) from None


def run_facts(summary: dict[str, Any] | None, site: SiteManifest | None, *,
              unusable_site: str | None = None) -> RunFacts:
    """The run's time scale, devices per user, policy interval and CMG instances, with assumptions for gaps."""
    plan = (summary or {}).get("plan") or {}
    assumptions: list[str] = []
    if unusable_site is not None:
        assumptions.append(f"site manifest ignored: {unusable_site}")
    time_scale = _positive(plan.get("time_scale")) or (site.time_scale if site is not None else None)
    if time_scale is None:
        time_scale = 1.0
        assumptions.append("time scale not recorded (no summary.json or site.json): taken as 1 (real time)")
    devices = plan.get("devices_per_user")
    if not (isinstance(devices, int) and devices >= 1):
        devices = 1
        assumptions.append("devices per Locust user not recorded (no summary.json): taken as 1")
    interval = _positive(((summary or {}).get("site") or {}).get("policy_interval_s")) \
        or (site.policy_interval_s if site is not None else None)
    if site is not None and site.cmg_enabled and site.cmg_urls:
        instances = len(site.cmg_urls)
    else:
        instances = 1
        assumptions.append("CMG instance count unknown (no mock CMG in the run, e.g. a proxy under test): taken as 1")
    return RunFacts(time_scale=time_scale, devices_per_user=devices, policy_interval_s=interval,
                    cmg_instances=instances, locustfile=str(plan.get("locustfile") or "unknown"),
                    workers=int(plan.get("workers") or 0), assumptions=tuple(assumptions))


def _positive(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    return None
