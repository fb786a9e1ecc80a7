"""Fault windows as the load side sees them: the site's active faults, polled about once a second, as start/end windows.

Each Locust process (workers too) polls ``GET /faults`` and feeds every answer to :meth:`FaultTimeline.observe`. A
window starts at the fault's ``started_at`` on the site (not when the poll saw it) and ends at its ``ends_at``, or when
a poll no longer lists it (cleared early). A fault that came and went between two polls shows only in the injection
counts; it becomes a window spanning those two polls at every role it can target. No Locust import here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.chaos.verdicts import FaultWindow
from mock_site.faults import CATALOGUE

#: Seconds a window is widened on both sides when outcomes are judged: the poll's and the site's clocks, and a reply
#: already on its way when the fault switched.
GRACE = 1.0
#: Faults whose effect outlives the window (seconds; inf: until the run ends). A device keeps the CRL that lists the
#: CMG certificate as revoked until that CRL's nextUpdate (7 days on the mock site), so tls.revoked goes on after it.
DEFAULT_LINGER: Mapping[str, float] = {"cmg_cert_revoked": math.inf}
#: The role of a window inferred from injection counts alone: the poll did not see where the fault was on.
ANY_ROLE = "*"


class TimelineError(ValueError):
    """A ``GET /faults`` answer does not have the documented shape; the message names the bad value."""


@dataclass(slots=True)
class _Window:
    name: str
    role: str
    start: float
    ends_at: float
    end: float | None = None  # None while the fault is on
    probability: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    injections: int = 0
    inferred: bool = False


class FaultTimeline:
    """The fault windows of one run, built from successive snapshots of the site's control API."""

    def __init__(self, *, grace: float = GRACE, linger: Mapping[str, float] = DEFAULT_LINGER) -> None:
        self.grace = grace
        self.linger = dict(linger)
        self._open: dict[tuple[str, str], _Window] = {}
        self._closed: list[_Window] = []
        self._injections: dict[str, int] | None = None
        self._judging: list[FaultWindow] | None = None  # rebuilt only after a change: judged outcomes read it often
        self.synced_at: float | None = None
        self.last_document: Mapping[str, Any] = {}

    def observe(self, document: Mapping[str, Any], now: float) -> None:
        """Take one ``GET /faults`` answer read at ``now`` (epoch seconds)."""
        active, injections = _checked(document)
        seen: set[tuple[str, str]] = set()
        for item in active:
            key = (item["name"], item["role"])
            started = float(item["started_at"])
            window = self._open.get(key)
            if window is not None and window.start != started:  # switched on again: the old window ended then
                window.end = min(window.ends_at, started)
                self._closed.append(self._open.pop(key))
                window = None
            if window is None:
                window = _Window(item["name"], item["role"], started, float(item["ends_at"]),
                                 probability=float(item.get("probability", 1.0)), params=dict(item.get("params") or {}))
                self._open[key] = window
                self._judging = None
            window.ends_at = float(item["ends_at"])
            window.injections = int(item.get("injections", 0))
            seen.add(key)
        for key in [key for key in self._open if key not in seen]:
            window = self._open.pop(key)
            window.end = max(window.start, min(window.ends_at, now))
            self._closed.append(window)
            self._judging = None
        if self._injections is not None and self.synced_at is not None:
            for name, count in injections.items():
                if count > self._injections.get(name, 0) and not self._covered(name, self.synced_at, now):
                    self._closed.append(_Window(name, ANY_ROLE, self.synced_at, now, end=now,
                                                injections=count - self._injections.get(name, 0), inferred=True))
                    self._judging = None
        self._injections = dict(injections)
        self.synced_at = now
        self.last_document = document

    def _covered(self, name: str, start: float, end: float) -> bool:
        for window in (*self._open.values(), *self._closed):
            if window.name == name and window.start <= end and start <= (window.end if window.end is not None
                                                                          else math.inf):
                return True
        return False

    def windows(self) -> list[FaultWindow]:
        """The windows to judge outcomes against: widened by the grace, lingering faults kept on, open ones endless."""
        if self._judging is None:
            judging = []
            for window in (*self._closed, *self._open.values()):
                end = (math.inf if window.end is None else window.end) + self.linger.get(window.name, 0.0) + self.grace
                roles = CATALOGUE[window.name].roles if window.role == ANY_ROLE and window.name in CATALOGUE \
                    else (window.role,)
                judging += [FaultWindow(window.name, role, window.start - self.grace, end, dict(window.params))
                            for role in roles]
            self._judging = judging
        return self._judging

    def to_list(self) -> list[dict[str, Any]]:
        """Every window as JSON-ready data, by start (``end`` None: still on at the last poll)."""
        windows = sorted((*self._closed, *self._open.values()), key=lambda w: (w.start, w.name, w.role))
        return [{"name": w.name, "role": w.role, "start": w.start, "end": w.end, "probability": w.probability,
                 "params": w.params, "injections": w.injections, "inferred": w.inferred} for w in windows]

    @property
    def active(self) -> list[dict[str, Any]]:
        """The faults on at the last poll, as the control API listed them."""
        return list(self.last_document.get("active", []))


def _checked(document: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    if not isinstance(document, Mapping):
        raise TimelineError(f"a fault list must be a JSON object, got {type(document).__name__}")
    active = document.get("active", [])
    injections = document.get("injections", {})
    if not isinstance(active, list) or not isinstance(injections, Mapping):
        raise TimelineError(f"a fault list needs an 'active' list and an 'injections' object, got {document!r:.200}")
    for item in active:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str) \
                or not isinstance(item.get("role"), str):
            raise TimelineError(f"an active fault needs a name and a role, got {item!r:.200}")
        for key in ("started_at", "ends_at"):
            value = item.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TimelineError(f"active fault {item['name']!r} needs a numeric {key}, got {value!r}")
    for name, count in injections.items():
        if isinstance(count, bool) or not isinstance(count, int):
            raise TimelineError(f"injection count of {name!r} must be an integer, got {count!r}")
    return active, dict(injections)
