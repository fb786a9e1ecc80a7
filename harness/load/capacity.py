"""The open-model capacity search as a Locust load shape: it sets the arrival rate step by step and stops the run when
the search has its answer (``--capacity-search``; the search itself is ``harness.plans.search``).

Each step holds its rate for ``--search-hold`` seconds: the first third settles (queues fill or drain, the histograms
of the previous rate are left behind), the rest is measured from the run's own latency book through a channel that sees
only that window. A step's measures:

- **corrected p99** of every request whose answer came in the window (intended -> answered, so queueing counts);
- **achieved rate**: the intended rate scaled by sent / (sent + backlog growth) — a system that keeps up leaves no
  backlog of due-but-unsent work; one that falls behind grows it;
- **error ratio**: failed / all requests in Locust's statistics over the window.

Run distributed (``--workers``), the master sees the workers' records only when their stats reports arrive (every
few seconds), so there a step settles for at least one report interval and its measured window runs one report
interval past the hold — what arrives in it was sent at the step's own rate.

At the end the steps and the answer ("capacity X ± Y", or "not saturated up to X") go to ``capacity.json``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from locust import LoadTestShape
from locust.runners import WORKER_REPORT_INTERVAL, MasterRunner

from harness.latency.histograms import CORRECTED, REQUEST, LatencyDelta, merged_counts, sparse_statistic_ms
from harness.load.listeners import LoadPlugin, plugin_of
from harness.load.open_model import OpenModelError, search_hold_seconds, search_settings
from harness.load.progress import MEASURING, SETTLING, StepStatus
from harness.plans.search import CapacitySearch, StepResult, step_window
from harness.results.layout import ResultsDir

log = logging.getLogger("harness.load")
#: The latency book's channel that collects one step's measured window.
STEP_CHANNEL = "capacity-step"


class CapacitySearchShape(LoadTestShape):
    """One open-model user per process; the arrival rate follows the capacity search until it has its answer."""

    def __init__(self) -> None:
        super().__init__()
        self._search: CapacitySearch | None = None
        self._hold = 0.0
        self._lag = 0.0
        self._step_started = 0.0
        self._measuring = False
        self._baseline: tuple[float, int, int, int] | None = None
        self._steps: list[dict[str, Any]] = []
        self._finished = False

    def tick(self) -> tuple[int, float] | None:
        if self.runner is None or self._finished:
            return None
        environment = self.runner.environment
        plugin = plugin_of(environment)
        now = self.get_run_time()
        if self._search is None:
            try:
                self._search = CapacitySearch(search_settings(environment.parsed_options))
                self._hold = search_hold_seconds(environment.parsed_options)
                self._lag = report_lag_seconds(self.runner)
            except OpenModelError as error:
                log.error("cmg-harness: %s; stopping", error)
                return None
            self._start_step(plugin, now)
        elapsed = now - self._step_started
        settle, end = step_window(self._hold, self._lag)
        if not self._measuring and elapsed >= settle:
            self._start_measuring(plugin)
        if elapsed >= end:
            if not self._finish_step(plugin):
                self._finish(plugin, environment)
                return None
            self._start_step(plugin, now)
        users = max(1, getattr(self.runner, "worker_count", 0) or 1)
        return users, float(users)

    def status(self) -> StepStatus | None:
        """The step now (n of at most N, its arrival rate, settling or measuring) for the run's progress line."""
        search = self._search
        rate = search.next_rate() if search is not None and not self._finished else None
        if search is None or rate is None:
            return None
        return StepStatus(number=len(self._steps) + 1, of=search.settings.max_steps, rate=rate, unit="devices/s",
                          state=MEASURING if self._measuring else SETTLING, at_most=True)

    # ------------------------------------------------------------------ steps
    def _start_step(self, plugin: LoadPlugin, now: float) -> None:
        assert self._search is not None
        rate = self._search.next_rate()
        assert rate is not None
        plugin.set_target_rate(rate)
        self._step_started = now
        log.info("cmg-harness: capacity search step %d at %.1f new devices/s", len(self._steps) + 1, rate)

    def _start_measuring(self, plugin: LoadPlugin) -> None:
        self._measuring = True
        plugin.latency.open_channel(STEP_CHANNEL)
        total = plugin.environment.runner.stats.total
        self._baseline = (time.monotonic(), plugin.backlog(), total.num_requests, total.num_failures)

    def _finish_step(self, plugin: LoadPlugin) -> bool:
        """Judge the step just held; False when the search is over."""
        assert self._search is not None
        rate = self._search.next_rate()
        measuring, baseline = self._measuring, self._baseline
        self._measuring, self._baseline = False, None
        if not measuring or baseline is None or rate is None:
            return self._search.next_rate() is not None
        window = plugin.latency.take(STEP_CHANNEL)
        plugin.latency.close_channel(STEP_CHANNEL)
        started, backlog_before, requests_before, failures_before = baseline
        total = plugin.environment.runner.stats.total
        requests = total.num_requests - requests_before
        failures = total.num_failures - failures_before
        corrected_p99, sent = _requests_p99(window)
        growth = max(0, plugin.backlog() - backlog_before)
        ratio = sent / (sent + growth) if sent + growth else 0.0
        result = StepResult(intended_per_s=rate, achieved_per_s=rate * ratio,
                            corrected_p99_ms=corrected_p99,
                            error_ratio=failures / requests if requests else 0.0)
        reasons = result.failures(self._search.settings)
        self._steps.append({**asdict(result), "seconds_measured": round(time.monotonic() - started, 3),
                            "requests": sent, "backlog_growth": growth, "passed": not reasons,
                            "reasons": reasons})
        log.info("cmg-harness: step at %.1f/s: corrected p99 %.0f ms, achieved %.0f%%, errors %.1f%% -> %s",
                 rate, result.corrected_p99_ms, ratio * 100, result.error_ratio * 100,
                 "fails: " + "; ".join(reasons) if reasons else "passes")
        self._search.record(result)
        return self._search.next_rate() is not None

    def _finish(self, plugin: LoadPlugin, environment: Any) -> None:
        self._finished = True
        plugin.set_target_rate(0.0)
        assert self._search is not None
        answer = self._search.result()
        document = {"settings": asdict(self._search.settings), "hold_seconds": self._hold,
                    "steps": self._steps,
                    "result": {**asdict(answer), "estimate_per_s": answer.estimate_per_s,
                               "describe": answer.describe()}}
        log.info("cmg-harness: capacity search: %s", answer.describe())
        results = str(getattr(environment.parsed_options, "results_dir", "") or "")
        if results:
            ResultsDir(Path(results)).write_capacity_search(document)


def report_lag_seconds(runner: Any) -> float:
    """How late a master hears of its workers' requests (their report interval); 0 for a single process."""
    return float(WORKER_REPORT_INTERVAL) if isinstance(runner, MasterRunner) else 0.0


def _requests_p99(window: LatencyDelta) -> tuple[float, int]:
    """Corrected p99 over every request of the window (one merged sparse histogram) and how many there were."""
    merged = merged_counts(counts for (kind, _, measure), counts in window.histograms.items()
                           if kind == REQUEST and measure == CORRECTED)
    return sparse_statistic_ms(merged, 99.0) or 0.0, sum(merged.values())
