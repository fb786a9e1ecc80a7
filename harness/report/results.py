"""What a results directory of ``cmg-harness run`` (or a plain Locust run with ``--csv``) tells the report.

Read: ``locust_stats_history.csv`` (required: the user count of every second), ``stats_history.jsonl`` (the
per-second request histograms, when the run has them), ``summary.json`` (the run plan: time scale, devices per user),
``site/site.json`` (CMG instances, policy interval), ``locust.log`` (CPU warnings), and fault windows from
``summary.json`` or ``outcomes.json`` when the run had a chaos schedule. Whatever is missing becomes a stated
assumption in the report, not an error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.report.errors import ReportError
from harness.report.history import StatsHistory, read_history
from harness.report.requestlog import RequestLog, read_request_log
from mock_site.manifest import MANIFEST_NAME, ManifestError, SiteManifest

HISTORY_FILE = "locust_stats_history.csv"
#: The per-second request histograms the gate listener writes (``harness.gates.STATS_HISTORY``).
REQUEST_LOG_FILE = "stats_history.jsonl"
#: The key under which a run records its fault windows (``harness.chaos.timeline``): a list of {"name", "role",
#: "start", "end"} in epoch seconds, ``end`` None for a fault still on at the end of the run.
FAULT_WINDOWS_KEY = "fault_windows"


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """A server-side fault that was on from ``start`` to ``end`` (epoch seconds; infinite: on until the end)."""

    name: str
    role: str
    start: float
    end: float


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
    """Read ``results_dir``; ReportError when it or its stats history is missing."""
    directory = Path(results_dir)
    if not directory.is_dir():
        raise ReportError(f"results directory {str(directory)!r} not found")
    history_path = directory / HISTORY_FILE
    if not history_path.is_file():
        candidates = sorted(directory.glob("*_stats_history.csv"))
        if len(candidates) != 1:
            raise ReportError(f"results directory {str(directory)!r} has no {HISTORY_FILE} (run Locust with --csv)")
        history_path = candidates[0]
    summary = _json(directory / "summary.json")
    outcomes = _json(directory / "outcomes.json")
    site, unusable = _site_manifest(directory / "site" / MANIFEST_NAME)
    log_path = directory / "locust.log"
    locust_log = log_path.read_text(errors="replace") if log_path.is_file() else None
    log = directory / REQUEST_LOG_FILE
    requests = read_request_log(log) if log.is_file() else None
    return RunResults(directory=directory, history=read_history(history_path), requests=requests,
                      facts=run_facts(summary, site, unusable_site=unusable),
                      locust_log=locust_log, fault_windows=fault_windows(summary, outcomes))


def _site_manifest(path: Path) -> tuple[SiteManifest | None, str | None]:
    """The run's site manifest, or None and (when there was one) why it cannot be used."""
    if not path.is_file():
        return None, None
    try:
        return SiteManifest.read(path), None
    except ManifestError as error:
        return None, str(error)


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


def fault_windows(*sources: dict[str, Any] | None) -> tuple[FaultWindow, ...] | None:
    """Fault windows from the first source that records any under ``fault_windows``; None when none does."""
    for source in sources:
        entries = (source or {}).get(FAULT_WINDOWS_KEY)
        if not isinstance(entries, list):
            continue
        windows = []
        for number, entry in enumerate(entries):
            try:
                start, name = float(entry["start"]), str(entry["name"])
                end = math.inf if entry["end"] is None else float(entry["end"])
            except (KeyError, TypeError, ValueError):
                raise ReportError(f"{FAULT_WINDOWS_KEY}[{number}] needs name, start and end, got {entry!r}") from None
            if not math.isfinite(start) or math.isnan(end) or end < start:
                raise ReportError(f"{FAULT_WINDOWS_KEY}[{number}] ends before it starts: {entry!r}")
            windows.append(FaultWindow(name=name, role=str(entry.get("role") or ""), start=start, end=end))
        return tuple(windows)
    return None


def _json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _positive(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    return None
