"""What a run was asked to do: the :class:`RunPlan`, decided before anything starts and kept as ``run.json``.

The plan is written into the results directory when the run starts (``ResultsDir.write_plan``), so a results
directory says what produced it even when the run was killed before its summary. ``run.json`` carries a schema
version; reading an old or broken one raises :class:`PlanError` naming the field.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.defaults import (
    DEFAULT_DEVICES_PER_USER,
    DEFAULT_DURATION_SECONDS,
    DEFAULT_LOCUSTFILE,
    DEFAULT_SEED,
    DEFAULT_SPAWN_RATE,
    DEFAULT_TIME_SCALE,
    DEFAULT_USERS,
)

#: The version of ``run.json``'s layout; a change to a field's meaning or type raises it.
RUN_PLAN_SCHEMA = 1


class PlanError(ValueError):
    """A ``run.json`` that cannot be read back: wrong schema version, a missing field, or a field of the wrong kind."""


@dataclass(frozen=True)
class RunPlan:
    """Everything one ``cmg-harness run`` does, decided before anything starts."""

    out: Path
    users: int = DEFAULT_USERS
    spawn_rate: float = DEFAULT_SPAWN_RATE
    duration: float = DEFAULT_DURATION_SECONDS
    time_scale: float = DEFAULT_TIME_SCALE
    workers: int = 0
    locustfile: Path = DEFAULT_LOCUSTFILE
    fleet_mix: str = ""
    seed: int = DEFAULT_SEED
    devices_per_user: int = DEFAULT_DEVICES_PER_USER
    seed_clients: int = 0
    extra_locust_args: tuple[str, ...] = field(default=())
    #: A chaos schedule file (its device shares are already in ``fleet_mix``).
    chaos: Path | None = None
    #: The manifest of a site that is already up; None: the run starts the mock site itself.
    site: Path | None = None
    #: The CMG-style proxy the clients go through (Locust's host); None: the site's own CMG.
    target: str | None = None
    #: The CA (PEM) that issued the target's server certificate; None: the site CA.
    ca_file: Path | None = None
    #: Start the embedded site with CMG → CP → MP as in-process calls (its ceiling; for large fleets).
    inprocess_hops: bool = False
    #: ``open`` (devices on their own schedules: --arrival-rate, --ramp, --fleet) or ``closed`` (users with waits).
    model: str = "closed"

    @property
    def devices(self) -> int:
        return self.users * self.devices_per_user

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON values (paths as text), with ``devices`` for readers that want the fleet size."""
        data: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            data[item.name] = str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) \
                else value
        data["devices"] = self.devices
        return data

    def to_json(self) -> dict[str, Any]:
        """What ``run.json`` holds: the schema version, the plan, and the versions of what ran it."""
        return {"schema": RUN_PLAN_SCHEMA, **self.to_dict(), "versions": software_versions()}

    @classmethod
    def from_json(cls, data: Any, *, source: str = "run.json") -> RunPlan:
        """The plan in a ``run.json`` document; PlanError naming ``source`` and the bad field otherwise."""
        if not isinstance(data, Mapping):
            raise PlanError(f"{source} must hold a JSON object, got {type(data).__name__}")
        schema = data.get("schema")
        if schema != RUN_PLAN_SCHEMA:
            raise PlanError(f"{source}: schema {schema!r} is not {RUN_PLAN_SCHEMA} (written by another version of "
                            "cmg-harness)")
        values: dict[str, Any] = {}
        for item in fields(cls):
            if item.name not in data:
                raise PlanError(f"{source}: field {item.name!r} is missing")
            values[item.name] = _field(item.name, data[item.name], source)
        return cls(**values)


#: The distributions whose versions a run records (what a result can differ by besides its plan).
RECORDED_DISTRIBUTIONS = ("cmg-harness", "locust", "httpx", "prometheus-client", "hdrhistogram", "uvicorn")


def software_versions() -> dict[str, str]:
    """The Python and platform a run used, and the version of each recorded distribution ("not installed" if absent)."""
    versions = {"python": platform.python_version(), "platform": platform.platform(terse=True)}
    for name in RECORDED_DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


_PATHS = frozenset({"out", "locustfile"})
_OPTIONAL_PATHS = frozenset({"chaos", "site", "ca_file"})
_WHOLE = frozenset({"users", "workers", "seed", "devices_per_user", "seed_clients"})
_POSITIVE = frozenset({"spawn_rate", "duration", "time_scale"})


def _field(name: str, value: Any, source: str) -> Any:
    def bad(expected: str) -> PlanError:
        return PlanError(f"{source}: field {name!r} must be {expected}, got {value!r}")

    if name in _PATHS or (name in _OPTIONAL_PATHS and value is not None):
        if not isinstance(value, str) or not value:
            raise bad("a path")
        return Path(value)
    if name in _OPTIONAL_PATHS:
        return None
    if name in _WHOLE:
        if isinstance(value, bool) or not isinstance(value, int) or (name != "seed" and value < 0):
            raise bad("a whole number >= 0" if name != "seed" else "a whole number")
        return value
    if name in _POSITIVE:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise bad("a number > 0")
        return float(value)
    if name == "fleet_mix":
        if not isinstance(value, str):
            raise bad("text")
        return value
    if name == "target":
        if value is not None and not isinstance(value, str):
            raise bad("a URL or null")
        return value
    if name == "extra_locust_args":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise bad("a list of text")
        return tuple(value)
    if name == "inprocess_hops":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if name == "model":
        if value not in ("open", "closed"):
            raise bad("'open' or 'closed'")
        return value
    raise bad("a known field")  # a field added to RunPlan without a reader here
