"""Chaos schedules: which faults hit which part of the system, when, for how long, and how often.

A schedule is a YAML (or JSON) file::

    faults:
      - fault: wpj_missing          # a device fault: a share of the fleet, for the whole run
        share: 0.2
      - fault: crl_unreachable      # a server-side fault: from 60 s into the run, for 90 s
        start: 60
        duration: 90
      - fault: ccm_token_lifetime
        start: 120
        duration: 60
        params: {seconds: 30}
      - fault: latency
        role: mp
        start: 30
        duration: 30
        probability: 0.3
        params: {mean_ms: 200, jitter_ms: 50}

Server-side fault names, roles and parameters come from the site's catalogue (``mock_site.faults.CATALOGUE``); device
faults become the fleet mix. Everything is checked before a run starts and a bad entry is refused with its line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from harness.client.device import SHARE_TRAITS, FleetMix, ProfileError
from mock_site.faults import CATALOGUE, FaultError, get_spec

#: Device faults of docs/faults.md (and the two device flags) accepted in a schedule, as fleet-mix names.
DEVICE_FAULTS = frozenset(SHARE_TRAITS)
MAX_RUN_SECONDS = 7 * 24 * 3600.0


class ScheduleError(ValueError):
    """A schedule entry is unusable; the message names the file, the line and the reason."""


@dataclass(frozen=True, slots=True)
class TimedFault:
    """A server-side fault switched on ``start`` seconds into the run for ``duration`` seconds."""

    name: str
    start: float
    duration: float
    role: str | None = None
    probability: float = 1.0
    params: Mapping[str, Any] = field(default_factory=dict)
    line: int = 0

    @property
    def end(self) -> float:
        return self.start + self.duration


@dataclass(frozen=True, slots=True)
class Schedule:
    """A checked chaos schedule: timed server faults plus the device-fault shares of the fleet."""

    timed: tuple[TimedFault, ...] = ()
    device_shares: Mapping[str, float] = field(default_factory=dict)
    skew_seconds: float | None = None

    def fleet_mix(self, base: FleetMix | None = None) -> FleetMix:
        """The fleet mix with this schedule's device shares laid over ``base``."""
        values = {name: getattr(base, name) for name in FleetMix.__dataclass_fields__} if base else {}
        values.update(self.device_shares)
        if self.skew_seconds is not None:
            values["skew_seconds"] = self.skew_seconds
        return FleetMix(**values)

    def fleet_mix_text(self) -> str:
        """The device shares in the ``--fleet-mix`` form (``name=share,...``)."""
        items = [f"{name}={share:g}" for name, share in sorted(self.device_shares.items())]
        if self.skew_seconds is not None:
            items.append(f"skew_seconds={self.skew_seconds:g}")
        return ",".join(items)

    @property
    def length(self) -> float:
        """Seconds from the run's start until the last timed fault has ended."""
        return max((fault.end for fault in self.timed), default=0.0)


def load_schedule(path: Path) -> Schedule:
    """Read and check a schedule file, refusing the first bad entry with its line number."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScheduleError(f"chaos schedule {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    return parse_schedule(text, source=str(path))


def parse_schedule(text: str, *, source: str = "<schedule>") -> Schedule:
    """Check a schedule given as YAML/JSON text; see the module documentation for its shape."""
    try:
        document = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ScheduleError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if document is None:
        raise ScheduleError(f"{source}: the schedule is empty (it needs a 'faults' list)")
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or "faults" not in data or not isinstance(data["faults"], list):
        raise ScheduleError(f"{source}:1: the schedule must be a mapping with a 'faults' list")
    unknown_keys = sorted(set(data) - {"faults"})
    if unknown_keys:
        raise ScheduleError(f"{source}:1: unknown top-level key(s): {', '.join(unknown_keys)}")
    lines = _entry_lines(document)
    timed: list[TimedFault] = []
    shares: dict[str, float] = {}
    skew: float | None = None
    for index, entry in enumerate(data["faults"]):
        line = lines[index] if index < len(lines) else 0
        where = f"{source}:{line}"
        if not isinstance(entry, dict):
            raise ScheduleError(f"{where}: each fault is a mapping with at least 'fault', got {entry!r}")
        name = entry.get("fault")
        if not isinstance(name, str):
            raise ScheduleError(f"{where}: missing 'fault' (the fault's name)")
        if name in DEVICE_FAULTS:
            share, seconds = _device_entry(entry, where)
            if name in shares:
                raise ScheduleError(f"{where}: device fault {name!r} is given twice")
            shares[name] = share
            if seconds is not None:
                skew = seconds
            continue
        timed.append(_timed_entry(name, entry, where, line))
    schedule = Schedule(timed=tuple(timed), device_shares=shares, skew_seconds=skew)
    try:
        schedule.fleet_mix()
    except ProfileError as exc:
        raise ScheduleError(f"{source}: {exc}") from None
    return schedule


def _entry_lines(document: yaml.Node) -> list[int]:
    if not isinstance(document, yaml.MappingNode):
        return []
    for key, value in document.value:
        if key.value == "faults" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def _number(entry: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = entry.get(key, default)
    if value is None:
        raise ScheduleError(f"{where}: missing '{key}'")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScheduleError(f"{where}: '{key}' must be a number, got {value!r}")
    return float(value)


def _device_entry(entry: Mapping[str, Any], where: str) -> tuple[float, float | None]:
    name = entry["fault"]
    allowed = {"fault", "share"} | ({"seconds"} if name == "clock_skew" else set())
    extra = sorted(set(entry) - allowed)
    if extra:
        raise ScheduleError(f"{where}: device fault {name!r} takes only {', '.join(sorted(allowed - {'fault'}))}; "
                            f"got {', '.join(extra)} (device faults last the whole run)")
    share = _number(entry, "share", where)
    if not 0.0 <= share <= 1.0:
        raise ScheduleError(f"{where}: share of {name!r} must be in [0, 1], got {share:g}")
    seconds = _number(entry, "seconds", where) if "seconds" in entry else None
    return share, seconds


def _timed_entry(name: str, entry: Mapping[str, Any], where: str, line: int) -> TimedFault:
    try:
        spec = get_spec(name)
    except FaultError:
        known = sorted(set(CATALOGUE) | DEVICE_FAULTS)
        raise ScheduleError(f"{where}: unknown fault {name!r} (known: {', '.join(known)})") from None
    extra = sorted(set(entry) - {"fault", "start", "duration", "role", "probability", "params"})
    if extra:
        raise ScheduleError(f"{where}: unknown key(s) for {name!r}: {', '.join(extra)}")
    start = _number(entry, "start", where, 0.0)
    duration = _number(entry, "duration", where)
    probability = _number(entry, "probability", where, 1.0)
    if start < 0:
        raise ScheduleError(f"{where}: start of {name!r} must be >= 0 s, got {start:g}")
    if not 0 < duration <= MAX_RUN_SECONDS:
        raise ScheduleError(f"{where}: duration of {name!r} must be > 0 s (every fault ends), got {duration:g}")
    if not 0.0 <= probability <= 1.0:
        raise ScheduleError(f"{where}: probability of {name!r} must be in [0, 1], got {probability:g}")
    role = entry.get("role")
    params = entry.get("params") or {}
    if not isinstance(params, dict):
        raise ScheduleError(f"{where}: params of {name!r} must be a mapping, got {params!r}")
    try:
        spec.resolve_role(role)
        spec.resolve_params(params)
    except FaultError as exc:
        raise ScheduleError(f"{where}: {exc}") from None
    return TimedFault(name=name, start=start, duration=duration, role=role, probability=probability,
                      params=dict(params), line=line)


class FaultSetter(Protocol):
    """What the runner needs of the site's control API (``harness.chaos.FaultClient`` has this shape)."""

    def set(self, name: str, *, role: str | None, probability: float, duration: float | None,
            params: dict[str, Any] | None) -> Any: ...

    def reset(self) -> Any: ...


class ScheduleRunner:
    """Switches a schedule's timed faults on at their start (each with its own duration) and resets all when stopped.

    ``sleep(seconds)`` and ``clock()`` are injected so the runner works under threads, gevent or a fake clock. Errors
    from the control API are kept in ``errors`` rather than raised, so a failed switch does not stop the load.
    """

    def __init__(self, schedule: Schedule, faults: FaultSetter, *, clock: Callable[[], float],
                 wait: Callable[[float], bool] | None = None) -> None:
        self.schedule = schedule
        self.faults = faults
        self.clock = clock
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self.started_at: float | None = None
        self.applied: list[tuple[float, TimedFault]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        """Apply every timed fault at its start; returns when all are applied or :meth:`stop` was called."""
        self.started_at = self.clock()
        for fault in sorted(self.schedule.timed, key=lambda f: f.start):
            delay = self.started_at + fault.start - self.clock()
            if delay > 0 and self._wait(delay):
                return
            if self._stop.is_set():
                return
            try:
                self.faults.set(fault.name, role=fault.role, probability=fault.probability, duration=fault.duration,
                                params=dict(fault.params))
                self.applied.append((self.clock(), fault))
            except Exception as exc:  # the control API refused or is gone: record and carry on
                self.errors.append(f"line {fault.line}: {fault.name}: {exc}")

    def stop(self) -> None:
        """Stop applying and clear every fault on the site (a run that stops early leaves nothing behind)."""
        self._stop.set()
        try:
            self.faults.reset()
        except Exception as exc:
            self.errors.append(f"reset: {exc}")
