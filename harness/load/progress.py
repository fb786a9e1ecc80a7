"""Live progress of a long run: the master's status snapshot each second, and its one line on the run's console.

The Locust master (or the single process) samples its state once a second — elapsed and planned time, devices whose
life is under way, requests/s, the corrected p99 of the last seconds, errors, unexpected verdicts, the fault windows
that are on, and a capacity run's step — and writes it to ``progress.json`` in ``--results-dir`` (replaced whole, so a
reader never sees half of one). ``cmg-harness run``, whose Locust writes to ``locust.log``, reads that file while it
waits and shows the status: one line refreshed in place on a terminal (``rich``), plain lines every so often
elsewhere (a CI log). :func:`format_status` turns one snapshot into that line; nothing here needs Locust.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from cmg_protocol.clock import Clock
from harness.latency.histograms import CORRECTED, REQUEST, LatencyDelta, merged_counts, sparse_statistic_ms

log = logging.getLogger("harness.load.progress")

#: The master's status file in the results directory (replaced each second while the test runs).
PROGRESS = "progress.json"
#: Seconds between two snapshots on the master.
SAMPLE_INTERVAL = 1.0
#: The latency book's channel the snapshots take their recent histograms from.
PROGRESS_CHANNEL = "progress"
#: Seconds of answers the live corrected p99 covers (a run's p99 since its start would hide a fault that began now).
P99_WINDOW_SECONDS = 10
#: Seconds between two plain status lines when the console is not a terminal (CI logs).
DEFAULT_PLAIN_INTERVAL = 10.0
#: Times a second the in-place line on a terminal is redrawn.
TERMINAL_REFRESH_PER_SECOND = 2
#: Step states: a step's first part lets queues fill or drain, the rest is what the step is judged on.
SETTLING = "settling"
MEASURING = "measuring"
#: The first seconds of each step of a step run that the capacity report leaves out as settling (at most half a step).
STEP_SETTLE_SECONDS = 5.0


@dataclass(frozen=True)
class StepStatus:
    """Where a capacity run stands: step ``number`` of ``of`` (at most ``of`` for a search), at ``rate`` ``unit``."""

    number: int
    of: int
    rate: float
    unit: str
    state: str
    at_most: bool = False


@dataclass(frozen=True)
class ProgressSnapshot:
    """One status of a running test, as the master saw it."""

    elapsed_s: float
    total_s: float | None
    devices_active: int
    requests_per_s: float
    corrected_p99_ms: float | None
    errors: int
    unexpected: int
    faults_on: tuple[str, ...] = ()
    step: StepStatus | None = None

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["faults_on"] = list(self.faults_on)
        return document

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProgressSnapshot:
        """The snapshot in ``data`` (ValueError naming the field that is unusable)."""
        def number(name: str, *, optional: bool = False) -> float | None:
            value = data.get(name)
            if value is None and optional:
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"progress field {name!r} must be a number, got {value!r}")
            return float(value)

        step = data.get("step")
        if step is not None:
            if not isinstance(step, Mapping):
                raise ValueError(f"progress field 'step' must be an object, got {step!r}")
            try:
                step = StepStatus(number=int(step["number"]), of=int(step["of"]), rate=float(step["rate"]),
                                  unit=str(step["unit"]), state=str(step["state"]),
                                  at_most=bool(step.get("at_most", False)))
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(f"progress field 'step' is unusable: {error}") from None
        faults = data.get("faults_on") or []
        if not isinstance(faults, list):
            raise ValueError(f"progress field 'faults_on' must be a list, got {faults!r}")
        return cls(elapsed_s=number("elapsed_s") or 0.0, total_s=number("total_s", optional=True),
                   devices_active=int(number("devices_active") or 0),
                   requests_per_s=number("requests_per_s") or 0.0,
                   corrected_p99_ms=number("corrected_p99_ms", optional=True), errors=int(number("errors") or 0),
                   unexpected=int(number("unexpected") or 0), faults_on=tuple(str(f) for f in faults), step=step)


def _seconds(value: float) -> str:
    whole = int(value)
    if whole < 60:
        return f"{whole}s"
    minutes, seconds = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s"


def _rate(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def format_status(snapshot: ProgressSnapshot) -> str:
    """The one status line of ``snapshot``: elapsed/total, devices, requests/s, corrected p99, errors, unexpected
    verdicts, the faults that are on, and a capacity run's step."""
    total = f"/{_seconds(snapshot.total_s)}" if snapshot.total_s else ""
    p99 = "-" if snapshot.corrected_p99_ms is None else f"{snapshot.corrected_p99_ms:.0f} ms"
    parts = [f"{_seconds(snapshot.elapsed_s)}{total}", f"devices {snapshot.devices_active}",
             f"{_rate(snapshot.requests_per_s)} req/s", f"p99 corrected {p99}", f"errors {snapshot.errors}",
             f"unexpected {snapshot.unexpected}",
             "faults " + (", ".join(snapshot.faults_on) if snapshot.faults_on else "none")]
    step = snapshot.step
    if step is not None:
        of = f"{'<=' if step.at_most else ''}{step.of}"
        parts.append(f"step {step.number} of {of} at {_rate(step.rate)} {step.unit} {step.state}")
    return "  ".join(parts)


def step_run_status(step_index: int | None, steps: int, users: int, hold: float, run_time: float) -> StepStatus | None:
    """A step run's status ``run_time`` seconds in (None once every step is done): settling for the part of each step
    the capacity report leaves out."""
    if step_index is None:
        return None
    into = run_time - step_index * hold
    settle = min(STEP_SETTLE_SECONDS, hold / 2)
    return StepStatus(number=step_index + 1, of=steps, rate=float(users), unit="users",
                      state=SETTLING if into < settle else MEASURING)


# ------------------------------------------------------------------------------------------ on the Locust master
def recent_p99_ms(deltas: Any) -> float | None:
    """The corrected p99 over every request in ``deltas`` (latency deltas, one a second); None without requests."""
    merged = merged_counts(counts for delta in deltas for (kind, _, measure), counts in delta.histograms.items()
                           if kind == REQUEST and measure == CORRECTED)
    return sparse_statistic_ms(merged, 99.0) if merged else None


class ProgressMonitor:
    """On the master (or a single process) with ``--results-dir``: a greenlet writes the status each second.

    ``plugin`` is the environment's ``LoadPlugin`` (its tally, latency book, run context and start time), read as it
    is when each snapshot is taken.
    """

    def __init__(self, plugin: Any, *, clock: Clock = time.time) -> None:
        self.plugin = plugin
        self._clock = clock
        self._recent: deque[LatencyDelta] = deque(maxlen=P99_WINDOW_SECONDS)
        self._greenlet: Any = None
        self.path: Path | None = None

    def on_test_start(self, environment: Any, **_: Any) -> None:
        self._stop()
        options = environment.parsed_options
        results = getattr(options, "results_dir", "") if options is not None else ""
        if not results or _is_worker(environment.runner):
            return
        self.path = Path(results) / PROGRESS
        self._recent.clear()
        self.plugin.latency.open_channel(PROGRESS_CHANNEL)
        import gevent

        self._greenlet = gevent.spawn(self._run)

    def on_test_stop(self, **_: Any) -> None:
        if self._greenlet is not None:
            self._stop()
            self.write()  # the test's last state, for a reader that looks once more
            self.plugin.latency.close_channel(PROGRESS_CHANNEL)

    def on_quit(self, **_: Any) -> None:
        self._stop()

    def _stop(self) -> None:
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is None:
            return
        import gevent

        if greenlet is not gevent.getcurrent():
            greenlet.kill(block=True)

    def _run(self) -> None:
        import gevent

        while True:
            gevent.sleep(SAMPLE_INTERVAL)
            self.write()

    def write(self) -> Path | None:
        """Take a snapshot and replace ``progress.json`` with it (a failure is logged: progress never stops a run)."""
        if self.path is None:
            return None
        try:
            document = self.snapshot().to_dict()
            tmp = self.path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(document))
            tmp.replace(self.path)
        except (OSError, ValueError, AttributeError, TypeError) as error:
            log.warning("cmg-harness: progress not written: %s", error)
            return None
        return self.path

    def snapshot(self) -> ProgressSnapshot:
        """The status now, from the plugin's tally, latency book and run context and Locust's statistics."""
        plugin = self.plugin
        environment = plugin.environment
        try:
            self._recent.append(plugin.latency.take(PROGRESS_CHANNEL))
        except ValueError:  # the channel was closed (a statistics reset keeps it; only test stop closes it)
            pass
        tally = plugin.tally.snapshot()
        devices, lifecycles = tally.get("devices", {}), tally.get("lifecycles", {})
        ended = lifecycles.get("succeeded", 0) + lifecycles.get("failed", 0)
        verdicts = tally.get("verdicts") or {}
        unexpected = verdicts.get("unexpected")
        if unexpected is None:
            unexpected = lifecycles.get("unexpected_failures", 0) + lifecycles.get("unexpected_successes", 0)
        total = environment.runner.stats.total
        context = plugin.context
        windows = context.timeline.to_list() if context is not None else []
        run_time = getattr(environment.parsed_options, "run_time", None)
        started = plugin.started_at
        return ProgressSnapshot(
            elapsed_s=max(self._clock() - started, 0.0) if started is not None else 0.0,
            total_s=float(run_time) if run_time else None,
            devices_active=max(devices.get("started", 0) - ended, 0),
            requests_per_s=float(total.current_rps or 0.0),
            corrected_p99_ms=recent_p99_ms(self._recent),
            errors=int(total.num_failures), unexpected=int(unexpected),
            faults_on=tuple(f"{w['name']}@{w['role']}" for w in windows if w.get("end") is None),
            step=shape_status(getattr(environment, "shape_class", None)))


def shape_status(shape: Any) -> StepStatus | None:
    """The step of a load shape that has steps (one with a ``status()``), else None."""
    status = getattr(shape, "status", None)
    if not callable(status):
        return None
    try:
        result = status()
    except Exception as error:  # noqa: BLE001 - a shape's bad option is the shape's to report; progress goes on
        log.debug("cmg-harness: no step status: %s", error)
        return None
    return result if isinstance(result, StepStatus) else None


def _is_worker(runner: Any) -> bool:
    """Whether ``runner`` is a Locust worker's (without importing Locust into a process that has not)."""
    runners = sys.modules.get("locust.runners")
    return runners is not None and isinstance(runner, runners.WorkerRunner)


# ------------------------------------------------------------------------------------------ on the run's console
def read_progress(path: Path) -> ProgressSnapshot | None:
    """The snapshot in ``path``; None when there is none yet or it is unusable."""
    try:
        return ProgressSnapshot.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


class ProgressDisplay:
    """Shows the master's status while ``cmg-harness run`` waits: in place on a terminal, plain lines elsewhere.

    :meth:`poll` is called from the run's wait loop; it reads ``path`` when it changed. ``interval``: seconds between
    two plain lines (0: show nothing). ``terminal``: force the in-place line (default: when ``out`` is a TTY).
    """

    def __init__(self, path: Path, out: TextIO, *, interval: float = DEFAULT_PLAIN_INTERVAL,
                 terminal: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.out = out
        self.interval = interval
        self.terminal = _isatty(out) if terminal is None else terminal
        self._clock = clock
        self._seen: str | None = None
        self._next_line = clock() + interval
        self._live: Any = None
        self.latest: ProgressSnapshot | None = None

    def __enter__(self) -> ProgressDisplay:
        if self.interval > 0 and self.terminal:
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            console = Console(file=self.out, force_terminal=True)
            self._live = Live(Text("starting Locust ..."), console=console, transient=True,
                              refresh_per_second=TERMINAL_REFRESH_PER_SECOND, redirect_stdout=False,
                              redirect_stderr=False)
            self._live.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        """Take the in-place line away (the run's screen comes next)."""
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    def poll(self) -> None:
        """Read a new snapshot, if any, and show it (on a terminal at once, else when a plain line is due)."""
        if self.interval <= 0:
            return
        snapshot = self._read()
        if snapshot is not None:
            self.latest = snapshot
        if self.latest is None:
            return
        if self._live is not None:
            if snapshot is not None:
                from rich.text import Text

                self._live.update(Text(format_status(self.latest)))
        elif self._clock() >= self._next_line:
            self._next_line = self._clock() + self.interval
            print(f"progress  {format_status(self.latest)}", file=self.out, flush=True)

    def _read(self) -> ProgressSnapshot | None:
        # Compared by content, not modification time: two writes within the file system's clock tick look alike.
        try:
            text = self.path.read_text()
        except OSError:
            return None
        if text == self._seen:
            return None
        self._seen = text
        try:
            return ProgressSnapshot.from_dict(json.loads(text))
        except (ValueError, TypeError, AttributeError):
            return None


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False
