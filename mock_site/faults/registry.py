"""The fault registry: which faults are on, at which role, until when, and how often each was injected."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from cmg_protocol.clock import Clock
from mock_site.faults.catalogue import (
    CATALOGUE,
    MAX_DURATION,
    ROLES,
    FaultError,
    FaultSpec,
    ParamValue,
    get_spec,
    shown_value,
)

log = logging.getLogger("mock_site.faults")


@dataclass(frozen=True, slots=True)
class ActiveFault:
    """One fault switched on at one role; ``started_at`` and ``ends_at`` are clock seconds."""

    name: str
    role: str
    probability: float
    params: Mapping[str, ParamValue]
    started_at: float
    ends_at: float

    def remaining(self, now: float) -> float:
        """Seconds left until the fault switches itself off."""
        return max(0.0, self.ends_at - now)

    def expired(self, now: float) -> bool:
        """Whether the fault's end has passed at ``now``."""
        return now >= self.ends_at

    def to_dict(self, now: float, injections: int = 0) -> dict[str, Any]:
        """The fault as JSON-ready data."""
        return {
            "name": self.name,
            "role": self.role,
            "probability": self.probability,
            "params": dict(self.params),
            "started_at": self.started_at,
            "ends_at": self.ends_at,
            "remaining_s": self.remaining(now),
            "injections": injections,
        }


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """A change listeners hear about: ``action`` is set, clear, expire or reset."""

    action: str
    fault: ActiveFault

    @property
    def active(self) -> bool:
        """Whether the fault is on after this event."""
        return self.action == "set"


Listener = Callable[[FaultEvent], None]


@dataclass(frozen=True, slots=True)
class InjectionCounts:
    """Injections counted by other processes following this registry (a site's worker processes).

    ``totals``: per fault name since they started; ``hits``: per (name, role, started_at) of a fault instance, so a
    count belongs to the fault that was on when it was made and not to a later one of the same name.
    """

    totals: Mapping[str, int]
    hits: Mapping[tuple[str, str, float], int]

_NO_FAULTS: Mapping[str, ActiveFault] = MappingProxyType({})


class FaultRegistry:
    """Holds the active faults of a site; safe to share between threads and event loops."""

    def __init__(self, clock: Clock, rng: random.Random, registry: CollectorRegistry | None = None, *,
                 counter: Counter | None = None) -> None:
        """``counter`` lets a site that already has ``cmg_fault_injections_total`` (its metrics) count into it."""
        self.clock = clock
        self._rng = rng
        self._lock = threading.Lock()
        self._faults: dict[tuple[str, str], ActiveFault] = {}
        self._hits: dict[tuple[str, str], int] = {}
        self._totals: dict[str, int] = dict.fromkeys(CATALOGUE, 0)
        # role -> name -> fault, rebuilt on every change and swapped in whole, so trigger() can look up without the lock
        # and a request with no fault on its role costs two dict lookups.
        self._index: Mapping[str, Mapping[str, ActiveFault]] = MappingProxyType({})
        self._listeners: list[Listener] = []
        self._counter: Counter | None = counter
        self._children: dict[tuple[str, str], Any] = {}
        self._elsewhere: Callable[[], InjectionCounts] | None = None
        if counter is None and registry is not None:
            self._counter = Counter(
                "cmg_fault_injections", "Faults injected, by role and fault", ["role", "fault"], registry=registry
            )

    # -- changes -------------------------------------------------------------------------------------------------------

    def set(
        self,
        name: str,
        *,
        role: str | None = None,
        probability: float = 1.0,
        duration: float | None = None,
        params: Mapping[str, object] | None = None,
    ) -> ActiveFault:
        """Switch ``name`` on at ``role`` (default: the catalogue's role), replacing the same fault at that role."""
        spec = get_spec(name)
        target = spec.resolve_role(role)
        chance = _check_probability(probability)
        seconds = _check_duration(duration, spec)
        if params is not None and not isinstance(params, Mapping):
            raise FaultError(f"params of fault {name!r} must be an object, got {shown_value(params)}")
        values = spec.resolve_params(params)
        # Everything is checked before anything changes, so a bad call never loses a fault that is already on.
        now = self.clock()
        fault = ActiveFault(spec.name, target, chance, MappingProxyType(values), now, now + seconds)
        with self._lock:
            events = self._purge_locked(now)
            self._faults[(spec.name, target)] = fault
            self._hits[(spec.name, target)] = 0
            self._reindex_locked()
        events.append(FaultEvent("set", fault))
        self._notify(events)
        return fault

    def clear(self, name: str, role: str | None = None) -> list[ActiveFault]:
        """Switch ``name`` off at ``role`` (default: at every role); returns the faults that were on."""
        spec = get_spec(name)
        if role is not None:
            spec.resolve_role(role)
        now = self.clock()
        with self._lock:
            events = self._purge_locked(now)
            keys = [key for key in self._faults if key[0] == spec.name and (role is None or key[1] == role)]
            removed = [self._remove_locked(key) for key in keys]
            if removed:
                self._reindex_locked()
        events.extend(FaultEvent("clear", fault) for fault in removed)
        self._notify(events)
        return removed

    def reset(self) -> list[ActiveFault]:
        """Switch every fault off; returns the faults that were on (injection totals are kept, like counters)."""
        now = self.clock()
        with self._lock:
            events = self._purge_locked(now)
            removed = [self._remove_locked(key) for key in sorted(self._faults)]
            self._reindex_locked()
        events.extend(FaultEvent("reset", fault) for fault in removed)
        self._notify(events)
        return removed

    def adopt(self, faults: list[ActiveFault]) -> None:
        """Make ``faults`` the active set, as another process's registry has it (a worker following the site's).

        Listeners hear a ``set`` for each fault that is new or changed and a ``clear`` for each one gone; a fault
        that is unchanged keeps its injection count.
        """
        wanted = {(fault.name, fault.role): fault for fault in faults}
        with self._lock:
            gone = [key for key in self._faults if key not in wanted]
            changed = [fault for key, fault in sorted(wanted.items()) if self._faults.get(key) != fault]
            events = [FaultEvent("clear", self._remove_locked(key)) for key in sorted(gone)]
            for fault in changed:
                self._faults[(fault.name, fault.role)] = fault
                self._hits[(fault.name, fault.role)] = 0
            if gone or changed:
                self._reindex_locked()
        events.extend(FaultEvent("set", fault) for fault in changed)
        self._notify(events)

    def purge(self) -> list[ActiveFault]:
        """Drop faults whose end has passed and tell listeners; reads do this too, a site may also call it on a timer."""
        with self._lock:
            events = self._purge_locked(self.clock())
        self._notify(events)
        return [event.fault for event in events]

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback`` with a :class:`FaultEvent` after every change; returns a function that unsubscribes."""
        with self._lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    # -- reads ---------------------------------------------------------------------------------------------------------

    def active(self, role: str | None = None) -> list[ActiveFault]:
        """The faults on now, at ``role`` or at every role, sorted by name and role."""
        if role is not None and role not in ROLES:
            raise FaultError(f"unknown role {shown_value(role)} (roles: {', '.join(ROLES)})")
        self.purge()
        with self._lock:
            faults = sorted(self._faults.values(), key=lambda f: (f.name, f.role))
        return [fault for fault in faults if role is None or fault.role == role]

    def any_active(self, role: str) -> bool:
        """Whether any fault is on at ``role`` (one lookup: the request path's fast exit when none is)."""
        return bool(self._index.get(role))

    def get(self, name: str, role: str) -> ActiveFault | None:
        """The fault ``name`` if it is on at ``role``, without drawing or counting an injection."""
        fault = self._index.get(role, _NO_FAULTS).get(name)
        if fault is None:
            _check_name_role(name, role)
            return None
        if fault.expired(self.clock()):
            self.purge()
            return None
        return fault

    def trigger(self, name: str, role: str) -> ActiveFault | None:
        """The fault if it is on at ``role`` and this request draws it (counted as an injection), else None."""
        fault = self.get(name, role)
        if fault is None:
            return None
        key = (fault.name, fault.role)
        with self._lock:
            if self._faults.get(key) is not fault:  # cleared or replaced since the lookup: use what is on now
                current = self._faults.get(key)
                if current is None:
                    return None
                fault = current
            if not self._draw_locked(fault.probability):
                return None
            self._hits[key] += 1
            self._totals[fault.name] += 1
        if self._counter is not None:
            child = self._children.get(key)
            if child is None:
                child = self._children.setdefault(key, self._counter.labels(role=fault.role, fault=fault.name))
            child.inc()
        return fault

    def injections(self) -> dict[str, int]:
        """Injections per fault name since the registry was created (every catalogue name, zero included), with those
        counted elsewhere (:meth:`count_elsewhere`)."""
        with self._lock:
            totals = dict(self._totals)
        if self._elsewhere is not None:
            for name, count in self._elsewhere().totals.items():
                totals[name] = totals.get(name, 0) + count
        return totals

    def local_injections(self) -> dict[str, int]:
        """Injections this process made, per fault name (those counted elsewhere left out; zeros too)."""
        with self._lock:
            return {name: count for name, count in self._totals.items() if count}

    def hit_counts(self) -> list[tuple[str, str, float, int]]:
        """(name, role, started_at, injections) of each active fault: what a worker reports to the control process."""
        with self._lock:
            return [(fault.name, fault.role, fault.started_at, self._hits[key]) for key, fault in self._faults.items()]

    def count_elsewhere(self, source: Callable[[], InjectionCounts]) -> None:
        """Add the injections ``source`` reports (other processes') to what this registry shows."""
        self._elsewhere = source

    def _hits_of(self, key: tuple[str, str], fault: ActiveFault, elsewhere: InjectionCounts | None) -> int:
        hits = self._hits.get(key, 0) if self._faults.get(key) is fault else 0
        if elsewhere is not None:
            hits += elsewhere.hits.get((fault.name, fault.role, fault.started_at), 0)
        return hits

    def describe(self, fault: ActiveFault) -> dict[str, Any]:
        """``fault`` as JSON-ready data with its injections since it was set."""
        elsewhere = self._elsewhere() if self._elsewhere is not None else None
        with self._lock:
            hits = self._hits_of((fault.name, fault.role), fault, elsewhere)
        return fault.to_dict(self.clock(), hits)

    def snapshot(self) -> list[dict[str, Any]]:
        """The active faults as JSON-ready data (name, role, probability, params, times, injections)."""
        self.purge()
        now = self.clock()
        elsewhere = self._elsewhere() if self._elsewhere is not None else None
        with self._lock:
            faults = sorted(self._faults.items())
            return [fault.to_dict(now, self._hits_of(key, fault, elsewhere)) for key, fault in faults]

    def random(self) -> float:
        """A draw in [0, 1) from the injected rng, for callers (like the middleware's jitter) that share it."""
        with self._lock:
            return self._rng.random()

    # -- internals -----------------------------------------------------------------------------------------------------

    def _draw_locked(self, probability: float) -> bool:
        if probability >= 1.0:
            return True
        if probability <= 0.0:
            return False
        return self._rng.random() < probability

    def _remove_locked(self, key: tuple[str, str]) -> ActiveFault:
        self._hits.pop(key, None)
        return self._faults.pop(key)

    def _purge_locked(self, now: float) -> list[FaultEvent]:
        expired = [key for key, fault in self._faults.items() if fault.expired(now)]
        events = [FaultEvent("expire", self._remove_locked(key)) for key in sorted(expired)]
        if events:
            self._reindex_locked()
        return events

    def _reindex_locked(self) -> None:
        index: dict[str, dict[str, ActiveFault]] = {}
        for (name, role), fault in self._faults.items():
            index.setdefault(role, {})[name] = fault
        self._index = MappingProxyType(index)

    def _notify(self, events: list[FaultEvent]) -> None:
        # Listeners run outside the lock so they may read the registry; one failing listener does not stop the others.
        if not events:
            return
        with self._lock:
            listeners = list(self._listeners)
        for event in events:
            for callback in listeners:
                try:
                    callback(event)
                except Exception:
                    log.exception("fault listener %r failed on %s of %r", callback, event.action, event.fault.name)


_CHECKED: set[tuple[str, str]] = set()


def _check_name_role(name: str, role: str) -> None:
    # Called for every fault lookup on the request path: a valid pair is remembered so it costs one set lookup.
    if (name, role) in _CHECKED:
        return
    get_spec(name)
    if role not in ROLES:
        raise FaultError(f"unknown role {shown_value(role)} (roles: {', '.join(ROLES)})")
    _CHECKED.add((name, role))


def _check_probability(probability: object) -> float:
    if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0.0 <= probability <= 1.0:
        raise FaultError(f"probability must be a number in 0..1, got {shown_value(probability)}")
    return float(probability)


def _check_duration(duration: object, spec: FaultSpec) -> float:
    if duration is None:
        return spec.default_duration
    # The range test alone refuses NaN, the infinities and ints of any size (compared exactly, never converted first).
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not 0 < duration <= MAX_DURATION:
        raise FaultError(f"duration must be a number of seconds in (0, {MAX_DURATION:.0f}], got {shown_value(duration)}")
    return float(duration)
