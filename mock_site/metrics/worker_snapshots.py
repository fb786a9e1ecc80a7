"""Metrics of a site served by several worker processes: each worker writes what its registry holds to a snapshot file
in the state dir every :data:`SNAPSHOT_PERIOD_S` (and once more as it stops); whoever serves ``/metrics`` sums the
snapshots with its own registry, series by series, so counters and histograms are the exact totals of every process
as of the last snapshot (at most one period old, and exact once traffic stops).

The CMGService.log numbers travel the same way: a worker drains its per-URI window into its journal each period and the
process that writes CMGService.log merges every journal into its own window before writing, so RequestCount and the
other columns are the exact sums over the workers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from mock_site.metrics.exposition import FastFamily, fast_family
from mock_site.metrics.traffic import CMGServiceLine, CMGServiceStats

#: How often a worker writes its metrics snapshot and its CMGService journal.
SNAPSHOT_PERIOD_S = 0.1
#: Families a worker leaves out of its snapshot: the control process's own registry is their one source.
CONTROL_ONLY_FAMILIES = frozenset({"cmg_faults_active"})


def _collectors(registry: CollectorRegistry) -> list[Any]:
    # prometheus_client lists a registry's collectors only privately; the site's hot-path families must be read raw,
    # because rendering them through collect() costs ~10 ms per snapshot.
    with registry._lock:
        return list(registry._collector_to_names)


def _parts(registry: CollectorRegistry) -> dict[str, Any]:
    """The registry as plain data: hot-path families raw, every other collector's samples as collected."""
    fast: list[Any] = []
    other: list[Any] = []
    for collector in _collectors(registry):
        if isinstance(collector, FastFamily):
            fast.append([collector.name, collector.kind, collector.documentation, collector.labelnames,
                         list(collector.bounds), collector.raw()])
            continue
        for family in collector.collect():
            if family.name not in CONTROL_ONLY_FAMILIES:
                other.append([family.name, family.type, family.documentation,
                              [[sample.name, sample.labels, sample.value] for sample in family.samples]])
    return {"fast": fast, "other": other}


def write_snapshot(registry: CollectorRegistry, path: Path, previous: str = "") -> str:
    """Write what ``registry`` holds to ``path`` atomically (a temporary file, then a rename), unless it is
    ``previous`` (what the last call returned) still; returns what the file holds."""
    text = json.dumps(_parts(registry), separators=(",", ":"))
    if text == previous:
        return text  # an idle worker writes nothing
    tmp = path.with_name(f".{path.name}.tmp")  # one writer per snapshot file: a fixed name is enough
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return text


class _Sum:
    """One series being summed: a value, or histogram bucket counts and a sum."""

    __slots__ = ("counts", "sum", "value")

    def __init__(self, bucket_count: int) -> None:
        self.value = 0.0
        self.counts = [0] * bucket_count
        self.sum = 0.0


class AggregatedRegistry:
    """A registry-like collector: ``own``'s families plus every ``metrics-*.json`` snapshot in ``directory``, summed."""

    def __init__(self, own: CollectorRegistry, directory: Path) -> None:
        self.own = own
        self.directory = Path(directory)

    def snapshots(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.directory.glob("metrics-*.json")):
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue  # replaced between the listing and the read: the next scrape sees the new one
        return out

    def collect(self) -> Iterable[Metric]:
        fast: dict[str, tuple[str, str, list[str], tuple[float, ...], dict[tuple[str, ...], _Sum]]] = {}
        merged: dict[str, tuple[str, str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]] = {}
        order: list[str] = []

        def add_fast(name: str, kind: str, documentation: str, labelnames: list[str], bounds: Sequence[float],
                     series: Iterable[Sequence[Any]]) -> None:
            entry = fast.get(name)
            if entry is None:
                entry = fast[name] = (kind, documentation, list(labelnames), tuple(bounds), {})
                order.append(name)
            sums = entry[4]
            for item in series:
                key = tuple(item[0])
                total = sums.get(key)
                if total is None:
                    total = sums[key] = _Sum(len(entry[3]) + 1)
                if kind == "histogram":
                    total.counts = [a + b for a, b in zip(total.counts, item[1], strict=True)]
                    total.sum += item[2]
                else:
                    total.value += item[1]

        def add(name: str, kind: str, documentation: str, samples: Iterable[Sequence[Any]]) -> None:
            entry = merged.get(name)
            if entry is None:
                entry = merged[name] = (kind, documentation, {})
                order.append(name)
            values = entry[2]
            for sample_name, labels, value in samples:
                key = (sample_name, tuple(sorted(labels.items())))
                if key in values and sample_name.endswith("_created"):
                    values[key] = min(values[key], value)  # the series exists since its first process created it
                else:
                    values[key] = values.get(key, 0.0) + value

        for part in [_parts(self.own), *self.snapshots()]:
            for name, kind, documentation, labelnames, bounds, series in part["fast"]:
                add_fast(name, kind, documentation, labelnames, bounds, series)
            for name, kind, documentation, samples in part["other"]:
                add(name, kind, documentation, samples)
        for collector in _collectors(self.own):
            # The control process's own families (active faults) are in its registry only; add them as they are.
            for family in collector.collect() if not isinstance(collector, FastFamily) else ():
                if family.name in CONTROL_ONLY_FAMILIES:
                    add(family.name, family.type, family.documentation,
                        [(s.name, s.labels, s.value) for s in family.samples])
        for name in order:
            if name in fast:
                kind, documentation, labelnames, bounds, sums = fast[name]
                yield fast_family(kind, name, documentation, labelnames, bounds, sums.items())
                continue
            kind, documentation, values = merged[name]
            metric = Metric(name, documentation, kind)
            for (sample_name, labels), value in values.items():
                metric.add_sample(sample_name, dict(labels), value)
            yield metric


class TrafficJournal:
    """One worker's CMGService journal: per-URI rows appended as JSON lines, one line per drained window."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, instance: int, lines: Sequence[CMGServiceLine]) -> None:
        """Append the rows of ``instance``'s drained window (nothing when it is empty), in one write."""
        if not lines:
            return
        rows = [[line.request_uri, line.request_count, line.request_size, line.response_count, line.response_size,
                 line.elapsed_seconds] for line in lines]
        data = (json.dumps({"instance": instance, "rows": rows}) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


class JournalReader:
    """The CMGService.log writer's side: reads what every journal in ``directory`` gained since the last read."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._offsets: dict[Path, int] = {}

    def merge_into(self, stats: Sequence[CMGServiceStats]) -> int:
        """Add every new journal row to the window of its CMG instance; returns the number of rows merged."""
        merged = 0
        for path in sorted(self.directory.glob("cmgservice-*.jsonl")):
            offset = self._offsets.get(path, 0)
            with path.open("rb") as journal:
                journal.seek(offset)
                data = journal.read()
            complete = data[: data.rfind(b"\n") + 1]  # a line still being written is read next time
            self._offsets[path] = offset + len(complete)
            for line in complete.splitlines():
                entry = json.loads(line)
                target = stats[entry["instance"]]
                for uri, request_count, request_size, response_count, response_size, elapsed in entry["rows"]:
                    target.add(uri, request_count, request_size, response_count, response_size, elapsed)
                    merged += 1
        return merged
