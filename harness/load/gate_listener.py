"""The gate on the Locust master: a per-second statistics history, live threshold verdicts, and ``abort_on_fail``.

On the master (or the single local process) a greenlet samples Locust's statistics once a second. Each sample's
delta is appended to ``stats_history.jsonl`` in ``--results-dir`` (the source of gate windows after the run), with
what the latency book recorded in that second (its HdrHistograms and sent/intended counts, taken from a channel of
the book's own so the workers' report drain is not disturbed). With
``--gate FILE`` every threshold is also measured live — the newest window, or the run so far — for the metrics
exporter, and a crossed ``abort_on_fail`` threshold (past its ``delay_abort_eval``, its window full) stops the run:
the headless run quits, the web UI's test stops. ``gate-abort.json`` then records which threshold did it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from cmg_protocol.clock import Clock
from harness.gates import (
    GATE_ABORT,
    STATS_HISTORY,
    Gate,
    GateFileError,
    GateResult,
    HistoryPoint,
    HistoryRecorder,
    RunData,
    StatsEntry,
    ThresholdResult,
    describe,
    evaluate,
    load_gate,
)
from harness.latency.histograms import LatencyBook
from harness.results.layout import VERDICT_HISTORY

#: The latency book's channel the per-second history takes its deltas from.
HISTORY_CHANNEL = "gate_history"

log = logging.getLogger("harness.load.gate")

#: Seconds between two samples of the statistics (the resolution of gate windows).
SAMPLE_INTERVAL = 1.0


def add_arguments(parser: Any) -> None:
    """The ``--gate`` option of a Locust run."""
    parser.add_argument("--gate", default="", include_in_web_ui=False,
                        help="a gate file (YAML thresholds): watched live, abort_on_fail stops the run")


def stats_entries(stats: Any) -> list[StatsEntry]:
    """Locust's statistics entries (a ``RequestStats``) as gate entries; the histograms are copied."""
    return [StatsEntry(method=str(entry.method or ""), name=str(entry.name), num_requests=entry.num_requests,
                       num_failures=entry.num_failures, total_response_time=float(entry.total_response_time),
                       max_response_time=float(entry.max_response_time or 0.0),
                       response_times=dict(entry.response_times), start_time=float(entry.start_time or 0.0),
                       last_request_timestamp=float(entry.last_request_timestamp or 0.0))
            for entry in stats.entries.values()]


class GateMonitor:
    """Samples the statistics of one Locust environment each second, writes the history, and watches the gate.

    One per environment, made and fed its events by the environment's plugin (``harness.load.listeners``).
    """

    def __init__(self, tally_snapshot: Callable[[], dict[str, Any]], *, latency: LatencyBook | None = None,
                 clock: Clock = time.time) -> None:
        self._tally_snapshot = tally_snapshot
        self._latency = latency
        self._clock = clock
        self.gate: Gate | None = None
        self.environment: Any = None
        self.recorder = HistoryRecorder()
        self.recent: deque[HistoryPoint] = deque(maxlen=2)
        self.latest: GateResult | None = None
        self.aborted: dict[str, Any] | None = None
        self.started_at = 0.0
        self._greenlet: Any = None
        self._history: IO[str] | None = None
        self._verdicts: IO[str] | None = None  # verdict_history.jsonl: cumulative verdict counts, once a second

    def _watching(self, environment: Any) -> bool:
        # Workers send their statistics to the master, which holds the whole run's numbers.
        return environment.parsed_options is not None and not _is_worker(environment.runner)

    def on_init(self, environment: Any, **_: Any) -> None:
        """Read and check the gate file before any user starts."""
        self.environment = environment
        if not self._watching(environment):
            return
        path = getattr(environment.parsed_options, "gate", "") or ""
        if not path:
            return
        try:
            self.gate = load_gate(path)
        except GateFileError as error:
            log.error("cmg-harness: %s", error)
            if getattr(environment.parsed_options, "headless", False):
                raise SystemExit(f"cmg-harness: {error}") from None

    def on_test_start(self, environment: Any, **_: Any) -> None:
        """Start a fresh history (and file) with a baseline sample, and the once-a-second sampler."""
        self.environment = environment
        if not self._watching(environment):
            return
        self._stop_sampler()
        self.recorder.reset()
        window = int(self.gate.longest_window) if self.gate is not None else 0
        self.recent = deque(maxlen=window + 2)
        self.latest, self.aborted = None, None
        self.started_at = self._clock()
        if self._latency is not None:
            self._latency.open_channel(HISTORY_CHANNEL)
        self._history = self._open_history(environment)
        if self._history is not None:
            self._verdicts = open(Path(self._history.name).with_name(VERDICT_HISTORY), "w", encoding="utf-8")
        self.sample()
        import gevent

        self._greenlet = gevent.spawn(self._run_sampler)

    def _open_history(self, environment: Any) -> IO[str] | None:
        results = getattr(environment.parsed_options, "results_dir", "") or ""
        if not results:
            return None
        path = Path(results) / STATS_HISTORY
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", encoding="utf-8")

    def _run_sampler(self) -> None:
        import gevent

        while True:
            gevent.sleep(SAMPLE_INTERVAL)
            self.sample()

    def sample(self) -> HistoryPoint:
        """Take one sample: record the delta, measure the gate, and stop the run if an abort threshold is crossed."""
        entries = tuple(stats_entries(self.environment.runner.stats))
        latency = self._latency.take(HISTORY_CHANNEL) if self._latency is not None else None
        point = self.recorder.sample(self._clock(), entries, latency)
        self.recent.append(point)
        if self._history is not None:
            self._history.write(point.to_json() + "\n")
            self._history.flush()
        if self._verdicts is not None:
            verdicts = self._tally_snapshot().get("verdicts") or {}
            self._verdicts.write(json.dumps({"t": round(point.t, 3), "expected": verdicts.get("expected", 0),
                                             "unexpected": verdicts.get("unexpected", 0)}) + "\n")
            self._verdicts.flush()
        if self.gate is not None:
            self.latest = evaluate(self.gate, self.live_data(entries), latest_window_only=True)
            if self.aborted is None:
                crossed = next(iter(self.abort_candidates(self.latest.results)), None)
                if crossed is not None:
                    self.abort(crossed)
        return point

    def live_data(self, entries: tuple[StatsEntry, ...]) -> RunData:
        """The run so far: its cumulative statistics ``entries``, the recent history, the outcome tally and the
        latency book's whole-run histograms."""
        book = self._latency
        return RunData(entries=entries, history=tuple(self.recent), outcomes=self._tally_snapshot(),
                       latency=book.totals() if book is not None else None,
                       unsent=book.unsent if book is not None else None)

    def abort_candidates(self, results: Iterable[ThresholdResult]) -> list[ThresholdResult]:
        """The crossed ``abort_on_fail`` thresholds that may stop the run now (past their delay, window full)."""
        elapsed = self._clock() - self.started_at
        full = len(self.recent) - 1
        return [result for result in results
                if result.threshold.abort_on_fail and not result.passed and result.measured is not None
                and elapsed >= result.threshold.delay_abort_eval
                and (not result.threshold.window or full >= result.threshold.window)]

    def abort(self, result: ThresholdResult) -> None:
        """Record why the run stops and stop it (from another greenlet: stopping ends this sampler)."""
        elapsed = self._clock() - self.started_at
        self.aborted = {"threshold": result.threshold.id, "elapsed_s": round(elapsed, 3),
                        "measured": result.measured, "detail": describe(result), "line": result.threshold.line,
                        "gate": self.gate.path if self.gate is not None else ""}
        log.warning("cmg-harness gate: %s crossed after %.0f s (%s): stopping the run", result.threshold.id,
                    elapsed, describe(result))
        results = getattr(self.environment.parsed_options, "results_dir", "") or ""
        if results:
            (Path(results) / GATE_ABORT).write_text(json.dumps(self.aborted, indent=2) + "\n")
        import gevent

        gevent.spawn(self._stop_run)

    def _stop_run(self) -> None:
        runner = self.environment.runner
        if getattr(self.environment.parsed_options, "headless", False):
            runner.quit()
        else:
            runner.stop()

    def on_test_stop(self, environment: Any, **_: Any) -> None:
        """Take a last sample (the run's tail) and close the history."""
        if not self._watching(environment) or self._greenlet is None:
            return
        self._stop_sampler()
        self.sample()
        self._close_history()
        if self._latency is not None:
            self._latency.close_channel(HISTORY_CHANNEL)

    def on_quit(self, **_: Any) -> None:
        self._stop_sampler()
        self._close_history()

    def _stop_sampler(self) -> None:
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is None:
            return
        import gevent

        if greenlet is not gevent.getcurrent():
            greenlet.kill(block=True)

    def _close_history(self) -> None:
        for history in (self._history, self._verdicts):
            if history is not None:
                history.close()
        self._history = self._verdicts = None


def _is_worker(runner: Any) -> bool:
    """Whether ``runner`` is a Locust worker's. Without Locust imported it cannot be one, and importing it here would
    monkey-patch a process that is not Locust's (a test's, say) with gevent."""
    runners = sys.modules.get("locust.runners")
    return runners is not None and isinstance(runner, runners.WorkerRunner)
