"""Benchmark instrument: the Locust process's CPU seconds and requests between test start and test stop, and its
garbage-collector pauses, written as JSON to ``$CMG_BENCH_CPU_FILE`` — so start-up and report writing do not count
towards a figure per request, and a latency tail can be set against the pauses the process itself took."""

from __future__ import annotations

import gc
import json
import os
import time
from typing import Any

from locust import events

_PAUSES: list[float] = []
_started: dict[str, float] = {}
_state: dict[str, Any] = {}


def _gc_callback(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _state["gc_started"] = time.perf_counter()
    elif "gc_started" in _state:
        _PAUSES.append(time.perf_counter() - _state.pop("gc_started"))


@events.test_start.add_listener
def _on_start(environment: Any, **_: Any) -> None:
    _started["cpu"] = time.process_time()
    _started["wall"] = time.perf_counter()
    gc.callbacks.append(_gc_callback)


@events.test_stop.add_listener
def _on_stop(environment: Any, **_: Any) -> None:
    path = os.environ.get("CMG_BENCH_CPU_FILE")
    if not path or "cpu" not in _started:
        return
    total = environment.runner.stats.total
    pauses = sorted(_PAUSES)
    record = {"cpu_s": time.process_time() - _started["cpu"], "wall_s": time.perf_counter() - _started["wall"],
              "requests": total.num_requests, "gc_pauses": len(pauses),
              "gc_pause_max_ms": round(pauses[-1] * 1000, 2) if pauses else 0.0,
              "gc_pause_total_ms": round(sum(pauses) * 1000, 1)}
    with open(path, "w", encoding="utf-8") as out:
        json.dump(record, out)
