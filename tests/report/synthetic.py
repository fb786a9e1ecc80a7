"""Synthetic Locust stats histories and results directories for the report tests (no Locust run needed)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mock_site.manifest import MANIFEST_NAME
from mock_site.testing import example_manifest

LEVELS = ("50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%")
#: Each endpoint's window percentiles are its step latency times these factors (so p95 = 2 × latency).
FACTORS = (1.0, 1.1, 1.2, 1.3, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0)
HEADER = ("Timestamp,User Count,Type,Name,Requests/s,Failures/s," + ",".join(LEVELS)
          + ",Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,"
          "Total Min Response Time,Total Max Response Time,Total Average Content Size")
START = 1_800_000_000
ENDPOINTS = (("GET", "/CCM_Proxy_ServerAuth/1/SMS_MP/.sms_pol"), ("CCM_POST", "/CCM_Proxy_ServerAuth/1/ccm_system/request"))


@dataclass(frozen=True)
class Step:
    """A synthetic step: ``users`` for ``seconds``, ``rate`` HTTP requests per second (split over two endpoints)."""

    users: int
    seconds: int
    rate: int
    latency_ms: float
    failure_ratio: float = 0.0
    burst: int = 0              # extra requests in the step's first second, each taking ``burst_ms``
    burst_ms: float = 500.0
    tail: bool = False          # a tenth of each second's requests take 3 × latency (the rest: latency)


class _Entry:
    def __init__(self, method: str, name: str) -> None:
        self.method, self.name = method, name
        self.count = 0
        self.failures = 0
        self.total_ms = 0.0
        self.second: dict[str, object] = {}

    def add(self, count: int, latency_ms: float, failures: int = 0) -> None:
        self.count += count
        self.failures += failures
        self.total_ms += count * latency_ms
        if count:
            delta = self.second or {"method": self.method, "name": self.name, "num_requests": 0, "num_failures": 0,
                                    "total_response_time": 0.0, "response_times": {}}
            delta["num_requests"] += count  # type: ignore[operator]
            delta["num_failures"] += failures  # type: ignore[operator]
            delta["total_response_time"] += count * latency_ms  # type: ignore[operator]
            times: dict[str, int] = delta["response_times"]  # type: ignore[assignment]
            times[f"{latency_ms:g}"] = times.get(f"{latency_ms:g}", 0) + count
            self.second = delta

    def take_second(self) -> dict[str, object] | None:
        """What this entry added since the last call (a stats_history.jsonl entry), or None."""
        delta, self.second = self.second, {}
        return delta or None

    def line(self, t: int, users: int, window_latency: float | None) -> str:
        average = self.total_ms / self.count if self.count else 0.0
        if window_latency is None:
            percentiles = ",".join("N/A" for _ in LEVELS)
        else:
            percentiles = ",".join(f"{window_latency * f:g}" for f in FACTORS)
        return (f"{t},{users},{self.method},{self.name},0,0,{percentiles},{self.count},{self.failures},0,"
                f"{average!r},0,0,0")


def history_csv(steps: list[Step], *, per_endpoint: bool = True, lifecycle: bool = True, idle: int = 2) -> str:
    """A stats history, one row set per second: ``idle`` seconds without users, the steps, ``idle`` again."""
    return _histories(steps, per_endpoint=per_endpoint, lifecycle=lifecycle, idle=idle)[0]


def request_log(steps: list[Step], *, idle: int = 2) -> str:
    """The stats_history.jsonl lines of the same run: each second's deltas with response-time histograms."""
    return _histories(steps, per_endpoint=True, lifecycle=True, idle=idle)[1]


def _histories(steps: list[Step], *, per_endpoint: bool, lifecycle: bool, idle: int) -> tuple[str, str]:
    """Both histories of one synthetic run.

    CSV window percentiles are simplified to the running step's latency × ``FACTORS`` (exact for rows whose Locust
    window lies inside a step, which is what the per-step statistics use). The jsonl line of second T holds what
    was added after the row of T−1 up to the row of T, stamped T.
    """
    entries = [_Entry(method, name) for method, name in ENDPOINTS]
    stage = _Entry("LIFECYCLE", "policy cycle")
    lines = [HEADER]
    log: list[str] = []
    t = START

    def emit(users: int, latency: float | None) -> None:
        lines.extend(_rows(t, users, entries, stage, latency, per_endpoint, lifecycle))
        added = [delta for entry in [*entries, stage] if (delta := entry.take_second()) is not None]
        log.append(json.dumps({"t": float(t), "entries": added}))

    for _ in range(idle):
        emit(0, None)
        t += 1
    for step in steps:
        for second in range(step.seconds):
            half = step.rate // 2
            for entry, count in zip(entries, (half, step.rate - half), strict=True):
                slow = count // 10 if step.tail else 0
                entry.add(count - slow, step.latency_ms, round((count - slow) * step.failure_ratio))
                entry.add(slow, 3 * step.latency_ms, round(slow * step.failure_ratio))
            if second == 0 and step.burst:
                entries[0].add(step.burst, step.burst_ms)
            stage.add(step.rate // 2, step.latency_ms * 10)
            emit(step.users, step.latency_ms)
            t += 1
    for _ in range(idle):
        emit(0, None)
        t += 1
    return "\n".join(lines) + "\n", "\n".join(log) + "\n"


def _rows(t: int, users: int, entries: list[_Entry], stage: _Entry, latency: float | None, per_endpoint: bool,
          lifecycle: bool) -> list[str]:
    everything = entries + ([stage] if lifecycle else [])
    rows = [entry.line(t, users, latency) for entry in everything] if per_endpoint else []
    total = _Entry("", "Aggregated")
    for entry in everything:
        total.count += entry.count
        total.failures += entry.failures
        total.total_ms += entry.total_ms
    rows.append(total.line(t, users, latency if total.count else None))
    return rows


def results_dir(path: Path, steps: list[Step], *, per_endpoint: bool = True, with_request_log: bool = True,
                devices_per_user: int = 5,
                time_scale: float = 1200.0, cmg_instances: int = 1, locust_log: str | None = "",
                fault_windows: list[dict[str, object]] | None = None) -> Path:
    """A results directory as ``cmg-harness run`` leaves it, with the files the report reads."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "locust_stats_history.csv").write_text(history_csv(steps, per_endpoint=per_endpoint))
    if with_request_log:
        (path / "stats_history.jsonl").write_text(request_log(steps))
    summary: dict[str, object] = {
        "plan": {"time_scale": time_scale, "devices_per_user": devices_per_user, "workers": 0,
                 "locustfile": "/somewhere/locustfiles/capacity.py"},
        "site": {"policy_interval_s": 3600.0 / time_scale},
    }
    if fault_windows is not None:
        summary["fault_windows"] = fault_windows
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "site").mkdir(exist_ok=True)
    example_manifest(path / "site", time_scale=time_scale, policy_interval_s=3600.0 / time_scale,
                     cmg_urls=tuple(f"https://127.0.0.1:{4000 + i}" for i in range(cmg_instances))
                     ).write(path / "site" / MANIFEST_NAME)
    if locust_log is not None:
        (path / "locust.log").write_text(locust_log)
    return path
