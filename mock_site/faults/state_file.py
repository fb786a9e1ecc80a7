"""The fault state a site's worker processes follow: the active faults, written by the process that serves the fault
control API to a file in the state dir on every change, and read again by each worker every :data:`POLL_PERIOD_S`.

A switch through the API therefore reaches every worker process within :data:`PROPAGATION_BOUND_S` (one poll period,
plus the time to read a small file and to re-index, well under a millisecond). Fault ends are clock times, so a fault
expires in every process at the same moment without another write.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mock_site.faults.registry import ActiveFault, FaultEvent, FaultRegistry, InjectionCounts

#: How often a worker process reads the fault state file.
POLL_PERIOD_S = 0.1
#: A documented bound: after the control API answered a switch, every worker process injects by this many seconds.
PROPAGATION_BOUND_S = 0.25


class FaultStateFile:
    """``faults.json`` in a worker directory: a version number and the active faults, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._version = 0

    def publish(self, registry: FaultRegistry) -> None:
        """Write what ``registry`` has on now, with the next version number (the control process calls this)."""
        self._version += 1
        data = {"version": self._version, "faults": [_fault_dict(fault) for fault in registry.active()]}
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(data, out)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def follow_from(self, registry: FaultRegistry) -> None:
        """Publish now and after every change of ``registry``."""

        def changed(_event: FaultEvent) -> None:
            self.publish(registry)

        registry.subscribe(changed)
        self.publish(registry)

    def read(self) -> tuple[int, list[ActiveFault]] | None:
        """The version and the faults in the file; None while there is no readable file."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return int(data["version"]), [_fault_of(item) for item in data["faults"]]


class FaultFollower:
    """A worker's side: applies the file's faults to the worker's registry whenever its version changes."""

    def __init__(self, state: FaultStateFile, registry: FaultRegistry) -> None:
        self.state = state
        self.registry = registry
        self.version = -1

    def poll(self) -> bool:
        """Read the file once; returns whether the registry changed version."""
        read = self.state.read()
        if read is None or read[0] == self.version:
            return False
        self.version, faults = read
        self.registry.adopt(faults)
        return True


def write_injections(registry: FaultRegistry, path: Path) -> None:
    """A worker's injection counts (totals and per active fault), replaced atomically at ``path``."""
    data = {"totals": registry.local_injections(), "hits": registry.hit_counts()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(data, out)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def injections_in(directory: Path) -> InjectionCounts:
    """Every worker's injection counts in ``directory`` (``injections-*.json``), summed."""
    totals: dict[str, int] = {}
    hits: dict[tuple[str, str, float], int] = {}
    for path in sorted(Path(directory).glob("injections-*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # replaced between the listing and the read
        for name, count in data["totals"].items():
            totals[name] = totals.get(name, 0) + int(count)
        for name, role, started_at, count in data["hits"]:
            key = (name, role, float(started_at))
            hits[key] = hits.get(key, 0) + int(count)
    return InjectionCounts(totals=totals, hits=hits)


def _fault_dict(fault: ActiveFault) -> dict[str, Any]:
    return {"name": fault.name, "role": fault.role, "probability": fault.probability, "params": dict(fault.params),
            "started_at": fault.started_at, "ends_at": fault.ends_at}


def _fault_of(item: dict[str, Any]) -> ActiveFault:
    return ActiveFault(name=item["name"], role=item["role"], probability=float(item["probability"]),
                       params=MappingProxyType(dict(item["params"])), started_at=float(item["started_at"]),
                       ends_at=float(item["ends_at"]))
