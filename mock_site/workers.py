"""A built site served by N worker processes (``cmg-harness up --processes N``), with what must be shared kept shared.

The parent process builds the site as one process would (PKI, database, apps) and binds every listening socket, with
``SO_REUSEPORT``; then it forks the workers. The first worker serves on the sockets it inherited, every other worker
binds its own socket to each port, and the kernel spreads new connections over the workers' sockets. The parent keeps
the control listener (fault API, ``/metrics``, ``/validate``, ``/healthz``) and the site's single description,
``site.json`` (``processes`` and ``worker_pids``).

What is shared, and how (the files live in ``<state dir>/workers/``):

- the site database: one SQLite file in WAL mode; each worker opens its own connection after the fork, writes take
  turns through ``BEGIN IMMEDIATE`` and the busy timeout, and a write is committed before its answer is sent, so a
  SIGKILL loses no registration the site confirmed;
- the fault state: the parent publishes the active faults to ``faults.json`` on every change; workers read it every
  0.1 s, so a switch through the API reaches every worker within
  :data:`~mock_site.faults.state_file.PROPAGATION_BOUND_S`;
- metrics: every worker writes its registry to ``metrics-<pid>.json`` every 0.1 s and as it stops; the parent's
  ``/metrics`` sums them with its own registry, series by series (exact totals, at most one period old); the fault
  injection counts the control API lists come from ``injections-<pid>.json`` the same way;
- CMGService.log: workers drain their per-URI windows into ``cmgservice-<pid>.jsonl`` every 0.1 s; the parent merges
  the journals and writes the log lines, with exact sums;
- the other logs: one file per log name, written by every worker under a lock (whole lines, shared roll-over).

Each response of a worker carries ``x-cmg-harness-worker: <pid>`` so tests can tell the processes apart. A worker dies
with its parent (``PR_SET_PDEATHSIG``); SIGTERM or SIGINT to the parent stops every worker before it exits; a worker
that dies (killed, failing) stops the site with exit code 1, one stopped by a signal stops it with 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import random
import select
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mock_site.asgi import respond
from mock_site.faults.state_file import (
    POLL_PERIOD_S,
    FaultFollower,
    FaultStateFile,
    injections_in,
    write_injections,
)
from mock_site.manifest import SiteManifest
from mock_site.metrics.log_writer import StatsLogger
from mock_site.metrics.traffic import CMGServiceLine, CMGServiceStats
from mock_site.metrics.worker_snapshots import (
    SNAPSHOT_PERIOD_S,
    AggregatedRegistry,
    JournalReader,
    TrafficJournal,
    write_snapshot,
)
from mock_site.server import ASGIApp, Listener, Receive, Scope, Send, ServerGroup

log = logging.getLogger("mock_site.workers")

#: The response header naming the worker process that answered.
WORKER_HEADER = b"x-cmg-harness-worker"  # synthetic: not the public ConfigMgr format
#: Most worker processes ``--processes`` takes.
MAX_PROCESSES = 64
#: How long the parent waits for its workers to finish their in-flight requests before it kills them.
STOP_TIMEOUT_S = 30.0
#: How often the parent looks whether a worker died.
WATCH_PERIOD_S = 0.2

_PR_SET_PDEATHSIG = 1


class ProcessCountError(ValueError):
    """A ``--processes`` value that is neither ``auto`` nor a whole number in range; the message names it."""


def process_count(value: str) -> int:
    """``auto`` (one per core this process may run on) or a whole number 1..:data:`MAX_PROCESSES`."""
    if value == "auto":
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    try:
        count = int(value)
    except ValueError:
        raise ProcessCountError(f"processes must be 'auto' or a whole number 1..{MAX_PROCESSES}, got {value!r}") \
            from None
    if not 1 <= count <= MAX_PROCESSES:
        raise ProcessCountError(f"processes must be 'auto' or a whole number 1..{MAX_PROCESSES}, got {value!r}")
    return count


def worker_header(app: ASGIApp, pid: int) -> ASGIApp:
    """Wrap ``app`` so every response names the worker process ``pid`` that answered."""
    value = str(pid).encode()

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def named_send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", ()), (WORKER_HEADER, value)]
            await send(message)

        await app(scope, receive, named_send if scope["type"] == "http" else send)

    return wrapped


class _MergedWindow:
    """One CMG instance's CMGService window with every worker's journal rows merged in before it is drained."""

    def __init__(self, stats: CMGServiceStats, reader: JournalReader, every: Sequence[CMGServiceStats]) -> None:
        self.stats = stats
        self.reader = reader
        self.every = every

    def drain(self) -> list[CMGServiceLine]:
        self.reader.merge_into(self.every)
        return self.stats.drain()


class WorkerPool:
    """Serves a built :class:`~mock_site.site.Site` from ``processes`` forked workers; the parent keeps the control."""

    def __init__(self, site: Any, processes: int) -> None:
        if processes < 2:
            raise ProcessCountError(f"a worker pool needs at least 2 processes, got {processes!r}")
        self.site = site
        self.processes = processes
        stem = site.manifest_path.stem  # site, site-cp, ...: split roles sharing a state dir keep separate workers
        self.directory = Path(site.config.state_dir) / ("workers" + stem[len("site"):])
        self.pids: list[int] = []
        self._ready_read = self._ready_write = -1

    # ------------------------------------------------------------------ parent
    def run(self, announce: Callable[[SiteManifest], None]) -> int:
        """Fork the workers, serve the control listener until SIGINT/SIGTERM, stop the workers; the exit code."""
        if self.directory.exists():
            shutil.rmtree(self.directory)  # the last run's snapshots and journals must not count again
        self.directory.mkdir(parents=True)
        self.site.logs.share_between_processes()
        for listener in self._role_listeners():
            listener.bind_shared()  # the same port again, now open to the workers' own sockets
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        self._ready_read, self._ready_write = os.pipe()
        for index in range(self.processes):
            pid = os.fork()
            if pid == 0:
                os.close(self._ready_read)
                os._exit(self._worker_main(index, parent))
            self.pids.append(pid)
        os.close(self._ready_write)
        for listener in self._role_listeners():
            if listener.socket is not None:
                listener.socket.close()  # the workers hold them; the parent accepts nothing there
        return asyncio.run(self._parent(announce))

    def _role_listeners(self) -> list[Listener]:
        return [listener for name, listener in self.site.listeners.items() if name != "control"]

    async def _parent(self, announce: Callable[[SiteManifest], None]) -> int:
        site = self.site
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        FaultStateFile(self.directory / "faults.json").follow_from(site.faults)
        directory = self.directory
        site.faults.count_elsewhere(lambda: injections_in(directory))
        control = site.listeners["control"]
        control.app = _aggregating_metrics(control.app, AggregatedRegistry(site.registry, self.directory))
        group = ServerGroup([control])
        await group.start()
        failed = await loop.run_in_executor(None, self._wait_until_serving)
        if failed is not None:
            print(f"cmg-harness: worker process {failed} did not start serving; stopping the site", file=sys.stderr,
                  flush=True)
            await self._stop_workers()
            await group.stop()
            site.db.close()
            site.logs.close()
            site.state_lock.release()
            return 1
        reader = JournalReader(self.directory)
        loggers = [StatsLogger(_MergedWindow(stats, reader, site.cmg_stats),
                               site.logs.writer("CMGService.log" if index == 0 else f"CMGService_IN_{index}.log"),
                               site.config.cmgservice_log_period_seconds)
                   for index, stats in enumerate(site.cmg_stats)]
        tasks = [asyncio.create_task(cmg_logger.run(), name="cmgservice-log") for cmg_logger in loggers]
        tasks.append(asyncio.create_task(_expire_faults(site.faults), name="fault-expiry"))
        # Each worker's connection points dial that worker's own channel ports: the parent's are not served.
        manifest = site.manifest().replace(processes=self.processes, worker_pids=tuple(self.pids),
                                           channel_ports=None)
        manifest.write(site.manifest_path)
        announce(manifest)
        died = await self._watch(stop)
        if died is None:
            print("cmg-harness: stopping the site", flush=True)
        else:
            print(f"cmg-harness: worker process {died} exited; stopping the site", file=sys.stderr, flush=True)
        await self._stop_workers()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await group.stop()
        for cmg_logger in loggers:
            cmg_logger.flush()  # every worker wrote its last journal rows before it exited
        if site._jwks_session is not None:  # /validate fetched the JWKS from a worker's Entra role
            await site._jwks_session.close()
        site.db.close()
        site.logs.close()
        site.state_lock.release()
        return 0 if died is None else 1

    def _wait_until_serving(self) -> int | None:
        """Block until every worker said it serves (one byte each on the ready pipe); the PID of one that died first."""
        ready = 0
        deadline = time.monotonic() + STOP_TIMEOUT_S * 2
        try:
            while ready < self.processes:
                for pid in self.pids:
                    reaped, _status = os.waitpid(pid, os.WNOHANG)
                    if reaped:
                        self.pids.remove(pid)
                        return pid
                if time.monotonic() > deadline:
                    return self.pids[0]
                readable, _, _ = select.select([self._ready_read], [], [], WATCH_PERIOD_S)
                if readable:
                    ready += len(os.read(self._ready_read, self.processes))
            return None
        finally:
            os.close(self._ready_read)

    async def _watch(self, stop: asyncio.Event) -> int | None:
        """Wait for the stop signal or a worker's death (its PID)."""
        while not stop.is_set():
            for pid in self.pids:
                reaped, status = os.waitpid(pid, os.WNOHANG)
                if reaped:
                    self.pids.remove(pid)
                    if os.waitstatus_to_exitcode(status) == 0:
                        # A worker exits 0 only when told to stop (a signal to the whole process group, which
                        # reached it before the parent): the site is being stopped, not failing.
                        return None
                    return pid
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCH_PERIOD_S)
        return None

    async def _stop_workers(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        waiting = list(self.pids)
        while waiting and time.monotonic() < deadline:
            waiting = [pid for pid in waiting if os.waitpid(pid, os.WNOHANG) == (0, 0)]
            if waiting:
                await asyncio.sleep(0.05)
        for pid in waiting:
            log.warning("worker %s did not stop within %.0f s; killing it", pid, STOP_TIMEOUT_S)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)

    # ------------------------------------------------------------------ worker
    def _worker_main(self, index: int, parent: int) -> int:
        try:
            _die_with(parent)
            _reseed_generators()
            self.site.db.reopen_after_fork()
            self.site.listeners["control"].socket.close()
            if index:
                # Worker 0 listens on the socket the parent bound; every other worker on one of its own, so the
                # kernel spreads connections over all of them.
                for listener in self._role_listeners():
                    listener.bind_shared()
            asyncio.run(self._worker(index))
            return 0
        except BaseException:
            traceback.print_exc()
            return 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()

    async def _worker(self, index: int) -> None:
        site = self.site
        pid = os.getpid()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        follower = FaultFollower(FaultStateFile(self.directory / "faults.json"), site.faults)
        follower.poll()
        listeners = self._role_listeners()
        for listener in listeners:
            listener.app = worker_header(listener.app, pid)
        group = ServerGroup(listeners)
        await group.start()
        await site.start_worker_channels()  # this worker's CMG gets its own connection points' channels
        os.write(self._ready_write, b"!")  # serving, and SIGTERM now stops this worker cleanly
        os.close(self._ready_write)
        journal = TrafficJournal(self.directory / f"cmgservice-{pid}.jsonl")
        snapshot = self.directory / f"metrics-{pid}.json"
        injections = self.directory / f"injections-{pid}.json"

        written = [""]

        def publish() -> None:
            for instance, stats in enumerate(site.cmg_stats):
                journal.append(instance, stats.drain())
            written[0] = write_snapshot(site.registry, snapshot, written[0])
            write_injections(site.faults, injections)

        cp_writer = site.logs.writer("SMS_CLOUD_PROXYCONNECTOR.log")
        cp_loggers = [StatsLogger(report, cp_writer, site.config.cp_report_period_seconds)
                      for report in site.cp_reports]
        tasks = [asyncio.create_task(cp_logger.run(), name="cp-report") for cp_logger in cp_loggers]
        tasks.append(asyncio.create_task(_every(POLL_PERIOD_S, follower.poll), name="fault-follower"))
        tasks.append(asyncio.create_task(_every(SNAPSHOT_PERIOD_S, publish), name="metrics-snapshot"))
        await stop.wait()
        await site.stop_channels()
        await group.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for cp_logger in cp_loggers:
            cp_logger.flush()
        publish()
        for upstream in site._upstreams:
            await upstream.close()
        if site._jwks_session is not None:
            await site._jwks_session.close()
        site.db.close()
        site.logs.close()


def _aggregating_metrics(app: ASGIApp, registry: AggregatedRegistry) -> ASGIApp:
    """The control listener with ``/metrics`` answered from every worker's snapshot summed with the parent's own."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/metrics":
            await respond(send, 200, generate_latest(registry), content_type=CONTENT_TYPE_LATEST)  # type: ignore[arg-type]
            return
        await app(scope, receive, send)

    return wrapped


async def _every(period: float, action: Callable[[], Any]) -> None:
    while True:
        await asyncio.sleep(period)
        try:
            action()
        except Exception:
            log.exception("periodic %s failed", getattr(action, "__name__", action))


async def _expire_faults(faults: Any) -> None:
    """Faults expire on read; the parent reads once a second so expiries are published on time too."""
    while True:
        await asyncio.sleep(1.0)
        faults.purge()


def _die_with(parent: int) -> None:
    """Ask the kernel to SIGKILL this worker when its parent dies (a SIGKILLed ``up`` leaves no orphans)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _reseed_generators() -> None:
    """Give every random generator of the site its own sequence in this worker.

    The workers inherit the parent's generators in the same state; left alone they would all draw the same token ids
    (refused by the database as duplicates) and the same SMSIDs.
    """
    for item in gc.get_objects():
        if type(item) is random.Random:
            item.seed(os.urandom(16))
