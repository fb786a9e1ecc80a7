"""Small results directories in the shapes a real ``cmg-harness run`` leaves (copied from one, then trimmed)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

T0 = 1795958255.0
STS = "/CCM_Proxy_ServerAuth/72186325152220500/CCM_STS"
POLICY = "/CCM_Proxy_ServerAuth/72186325152220500/SMS_MP/.sms_pol"

#: A real CCM_STS entry of ``locust.json``; Locust's CSV gave it p50 17, p90 47, p95 83, p99 100, max 104.24 ms.
REAL_STS_ENTRY: dict[str, Any] = {
    "name": STS, "method": "POST", "last_request_timestamp": 1795958257.7245498, "start_time": 1795958255.6677234,
    "num_requests": 200, "num_none_requests": 0, "num_failures": 0, "total_response_time": 4769.024314005037,
    "max_response_time": 104.2428870000549, "min_response_time": 6.32067200012898, "total_content_length": 211834,
    "response_times": {"83": 1, "89": 2, "93": 1, "98": 2, "100": 4, "23": 5, "17": 19, "19": 6, "20": 9, "21": 10,
                       "18": 6, "13": 10, "24": 6, "28": 7, "16": 19, "11": 11, "14": 15, "7": 1, "10": 11, "6": 1,
                       "15": 14, "12": 7, "8": 3, "27": 4, "29": 1, "45": 2, "46": 1, "47": 2, "48": 1, "66": 2,
                       "67": 1, "68": 2, "82": 1, "74": 1, "33": 2, "31": 1, "26": 1, "25": 5, "30": 1, "9": 1,
                       "22": 1},
    "num_reqs_per_sec": {"1795958255": 32, "1795958256": 94, "1795958257": 74}, "num_fail_per_sec": {},
}

#: ``outcomes.json`` of a fault-free 15 s run (trimmed to the sections gates read).
OUTCOMES: dict[str, Any] = {
    "lifecycles": {"succeeded": 0, "failed": 0, "unexpected_failures": 0},
    "outcomes": {}, "unexpected": {}, "stage_failures": {},
    "devices": {"started": 100, "installed": 100, "registered": 100, "renewed": 40, "polled": 100},
    "events": {"installed": 100, "registered": 100, "renewed": 40, "polled": 500},
    "requests": {STS: {"request_bytes": 0, "responses": 200}},
}


def entry(name: str, times: Mapping[int, int], *, method: str = "GET", failures: int = 0, start: float = T0,
          end: float = T0 + 10, max_ms: float | None = None) -> dict[str, Any]:
    """A ``locust.json`` entry whose requests took ``times`` (ms -> count)."""
    count = sum(times.values())
    return {"name": name, "method": method, "last_request_timestamp": end, "start_time": start,
            "num_requests": count, "num_none_requests": 0, "num_failures": failures,
            "total_response_time": float(sum(ms * n for ms, n in times.items())),
            "max_response_time": float(max(times)) if max_ms is None else max_ms,
            "min_response_time": float(min(times)), "total_content_length": 0,
            "response_times": {str(ms): n for ms, n in times.items()}, "num_reqs_per_sec": {}, "num_fail_per_sec": {}}


def point(t: float, *entries: tuple[str, str, Mapping[int, int], int]) -> dict[str, Any]:
    """A ``stats_history.jsonl`` line: (method, name, times, failures) added in the second ending at ``t``."""
    return {"t": t, "entries": [
        {"method": method, "name": name, "num_requests": sum(times.values()), "num_failures": failures,
         "total_response_time": float(sum(ms * n for ms, n in times.items())),
         "response_times": {str(ms): n for ms, n in times.items()}} for method, name, times, failures in entries]}


def steady_history(seconds: int, per_second: Sequence[Mapping[int, int]] | None = None, *,
                   name: str = STS, method: str = "POST") -> list[dict[str, Any]]:
    """A baseline point, then one point per second (each second's times from ``per_second``, default 10 x 20 ms)."""
    lines = [point(T0)]
    for second in range(1, seconds + 1):
        times = per_second[second - 1] if per_second is not None else {20: 10}
        lines.append(point(T0 + second, (method, name, times, 0)))
    return lines


def write_results(folder: Path, entries: Iterable[Mapping[str, Any]], *, outcomes: Mapping[str, Any] | None = OUTCOMES,
                  history: Iterable[Mapping[str, Any]] | None = None) -> Path:
    """A results directory with ``locust.json`` and, when given, ``outcomes.json`` and ``stats_history.jsonl``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "locust.json").write_text(json.dumps(list(entries)))
    if outcomes is not None:
        (folder / "outcomes.json").write_text(json.dumps(outcomes))
    if history is not None:
        (folder / "stats_history.jsonl").write_text("".join(json.dumps(line) + "\n" for line in history))
    return folder
