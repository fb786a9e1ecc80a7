"""The results directory of a run: the one place that knows its file names, and reads and writes them.

``cmg-harness run`` fills it: ``run.json`` (the plan) first; Locust's CSV, HTML and JSON, ``locust.log``, the
listeners' ``outcomes.json`` and the gate listener's ``stats_history.jsonl`` (and ``gate-abort.json``) while Locust
runs; ``site.log`` and ``site/`` (manifest, database, logs) from the mock site; ``summary.json`` and the run's own HTML
report ``report.html`` at the end (Locust's stock report is ``locust.html``). Later ``cmg-harness gate`` adds
``gate.json`` and ``gate-junit.xml`` and ``cmg-harness report`` rewrites ``report.html`` (and, for a step run,
``capacity-report.html``).

Reads return None for a file that is not there (what is optional is the reader's call) and raise
:class:`ResultsError` naming the file for one that is there but unusable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from harness.chaos.verdicts import FaultWindow
from harness.results.errors import ResultsError
from harness.results.plan import PlanError, RunPlan
from harness.results.stats import HistoryPoint, StatsEntry, parse_history_lines
from mock_site.manifest import ManifestError, SiteManifest

RUN_PLAN = "run.json"
SUMMARY = "summary.json"
#: The outcome tally the Locust listeners write when the test stops (``harness.load.listeners``).
OUTCOMES = "outcomes.json"
#: Locust's ``--csv`` / ``--json-file`` prefix, and the files it makes of it.
LOCUST_PREFIX = "locust"
LOCUST_JSON = "locust.json"
LOCUST_STATS_CSV = "locust_stats.csv"
LOCUST_HISTORY_CSV = "locust_stats_history.csv"
#: Locust's own HTML report (``--html``), kept beside ours.
LOCUST_HTML = "locust.html"
#: The harness's HTML report of the whole run (``harness.report.run_report``).
RUN_REPORT = "report.html"
LOCUST_LOG = "locust.log"
#: Per-second deltas of every stats entry, written by the gate listener on the master: the source of windows.
STATS_HISTORY = "stats_history.jsonl"
#: Per-second cumulative verdict counts (``{"t", "expected", "unexpected"}``), written beside ``STATS_HISTORY``:
#: the report's unexpected-verdicts-over-time chart.
VERDICT_HISTORY = "verdict_history.jsonl"
#: Written by the gate listener when an ``abort_on_fail`` threshold stopped the run.
GATE_ABORT = "gate-abort.json"
GATE_JSON = "gate.json"
GATE_JUNIT = "gate-junit.xml"
CAPACITY_REPORT = "capacity-report.html"
#: The steps of an open-model capacity search and what it found (``harness.load.capacity``).
CAPACITY_SEARCH = "capacity.json"
SITE_LOG = "site.log"
#: The state directory of the mock site a run starts itself, with its manifest and logs.
SITE_DIR = "site"
SITE_MANIFEST = f"{SITE_DIR}/site.json"
SITE_LOGS = f"{SITE_DIR}/logs/"
#: The key under which ``outcomes.json`` and ``summary.json`` record the fault windows of a chaos run: a list of
#: {"name", "role", "start", "end"} in epoch seconds, ``end`` None for a fault still on at the end of the run.
FAULT_WINDOWS_KEY = "fault_windows"

#: The result files a run leaves, in the order its summary lists them.
RUN_FILES = (RUN_PLAN, RUN_REPORT, LOCUST_HTML, LOCUST_STATS_CSV, LOCUST_JSON, OUTCOMES, CAPACITY_SEARCH, SUMMARY,
             LOCUST_LOG, SITE_LOG, SITE_MANIFEST, SITE_LOGS)
#: Files listed by ``run_files`` before they exist: the summary is written with the list, the report right after it.
_WRITTEN_WITH_SUMMARY = (SUMMARY, RUN_REPORT)

_T = TypeVar("_T")


def or_none(read: Callable[[], _T]) -> _T | None:
    """``read()``, or None when the file it reads is unusable: for readers to whom a broken file is a missing one."""
    try:
        return read()
    except ResultsError:
        return None


def default_results_path(now: datetime) -> Path:
    """``results/<timestamp>/`` for a run started at ``now`` (runs sort by start time)."""
    return Path("results") / now.strftime("%Y%m%d-%H%M%S")


@dataclass(frozen=True)
class ResultsDir:
    """One run's results directory."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # ---- where things go ---------------------------------------------------------------------------------------

    def file(self, name: str) -> Path:
        """The path of the result file ``name`` (one of this module's names)."""
        return self.path / name

    @property
    def locust_prefix(self) -> Path:
        """What Locust's ``--csv`` and ``--json-file`` take."""
        return self.path / LOCUST_PREFIX

    @property
    def site_dir(self) -> Path:
        """The state directory of the mock site the run starts itself."""
        return self.path / SITE_DIR

    @property
    def site_manifest(self) -> Path:
        return self.path / SITE_MANIFEST

    def is_unused(self) -> bool:
        """True when the directory does not exist yet or is empty (a run may write into it)."""
        return not self.path.exists() or (self.path.is_dir() and not any(self.path.iterdir()))

    def run_files(self) -> list[str]:
        """The result files of a run present here (``summary.json`` and ``report.html`` count: they are written with
        this list)."""
        return [name for name in RUN_FILES if name in _WRITTEN_WITH_SUMMARY or (self.path / name).exists()]

    def locust_history_csv(self) -> Path | None:
        """Locust's stats history CSV: ``locust_stats_history.csv``, or the one ``*_stats_history.csv`` of a plain
        Locust run with another ``--csv`` prefix; None when there is none (or several)."""
        path = self.path / LOCUST_HISTORY_CSV
        if path.is_file():
            return path
        candidates = sorted(self.path.glob("*_stats_history.csv"))
        return candidates[0] if len(candidates) == 1 else None

    # ---- writing -----------------------------------------------------------------------------------------------

    def write_plan(self, plan: RunPlan) -> Path:
        """Write ``run.json`` (what the run was asked to do); its path."""
        return self._write_json(RUN_PLAN, plan.to_json())

    def write_summary(self, summary: Mapping[str, Any]) -> Path:
        return self._write_json(SUMMARY, summary)

    def write_gate_verdict(self, verdict: Mapping[str, Any], junit_xml: str) -> tuple[Path, Path]:
        """Write ``gate.json`` and ``gate-junit.xml``; their paths."""
        json_path = self._write_json(GATE_JSON, verdict, strict=True)
        junit_path = self.path / GATE_JUNIT
        junit_path.write_text(junit_xml, encoding="utf-8")
        return json_path, junit_path

    def _write_json(self, name: str, data: Any, *, strict: bool = False) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        path = self.path / name
        text = json.dumps(data, indent=2, allow_nan=not strict)
        path.write_text(text + "\n" if strict else text)
        return path

    # ---- reading -----------------------------------------------------------------------------------------------

    def require(self) -> None:
        """ResultsError when the directory is not there."""
        if not self.path.is_dir():
            raise ResultsError(f"results directory {str(self.path)!r} not found")

    def read_plan(self) -> RunPlan | None:
        """The plan in ``run.json``; ResultsError naming the bad field of an old or broken one."""
        data = self._read_json(RUN_PLAN, "run plan")
        if data is None:
            return None
        try:
            return RunPlan.from_json(data, source=str(self.path / RUN_PLAN))
        except PlanError as error:
            raise ResultsError(str(error)) from None

    def read_plan_document(self) -> dict[str, Any] | None:
        """``run.json`` as written, with fields a newer run added (its versions, say) that :class:`RunPlan` may not
        know."""
        return self._read_object(RUN_PLAN, "run plan")

    def write_capacity_search(self, document: Mapping[str, Any]) -> Path:
        return self._write_json(CAPACITY_SEARCH, document)

    def read_capacity_search(self) -> dict[str, Any] | None:
        return self._read_object(CAPACITY_SEARCH, "capacity search")

    def read_summary(self) -> dict[str, Any] | None:
        return self._read_object(SUMMARY, "run summary")

    def read_outcomes(self) -> dict[str, Any] | None:
        """The listeners' outcome tally."""
        return self._read_object(OUTCOMES, "outcome tally")

    def read_site_manifest(self) -> SiteManifest | None:
        """The manifest of the mock site the run started itself (a run against ``--site`` has none here)."""
        path = self.path / SITE_MANIFEST
        if not path.is_file():
            return None
        try:
            return SiteManifest.read(path)
        except ManifestError as error:
            raise ResultsError(str(error)) from None

    def read_gate_abort(self) -> dict[str, Any] | None:
        return self._read_object(GATE_ABORT, "gate abort record")

    def read_locust_stats_json(self) -> list[dict[str, Any]] | None:
        """Locust's statistics entries as it wrote them (``--json-file``)."""
        data = self._read_json(LOCUST_JSON, "Locust statistics")
        if data is not None and not (isinstance(data, list) and all(isinstance(item, dict) for item in data)):
            raise ResultsError(f"{str(self.path / LOCUST_JSON)!r} must hold a list of statistics entries")
        return data

    def read_locust_stats(self) -> tuple[StatsEntry, ...]:
        """Locust's statistics entries, parsed; ResultsError when ``locust.json`` is missing or malformed."""
        data = self.read_locust_stats_json()
        if data is None:
            raise ResultsError(f"{str(self.path / LOCUST_JSON)!r} not found (Locust writes it with --json-file "
                               f"{self.locust_prefix})")
        return tuple(StatsEntry.from_dict(entry) for entry in data)

    @staticmethod
    def _lines(path: Path) -> list[str] | None:
        """The lines of a per-second history file; None when it is absent, ResultsError when it cannot be read."""
        if not path.is_file():
            return None
        try:
            return path.read_text().splitlines()
        except OSError as error:
            raise ResultsError(f"{str(path)!r} is not readable: {error.strerror or error}") from None

    def read_stats_history(self) -> tuple[HistoryPoint, ...] | None:
        """The per-second history points (``stats_history.jsonl``); a torn last line is left out."""
        path = self.path / STATS_HISTORY
        lines = self._lines(path)
        if lines is None:
            return None
        return parse_history_lines(lines, source=str(path))

    def read_verdict_history(self) -> list[dict[str, float]] | None:
        """The per-second cumulative verdict counts (``verdict_history.jsonl``) as ``{"t", "expected",
        "unexpected"}``; a torn last line is left out, any other bad line raises ResultsError naming it."""
        path = self.path / VERDICT_HISTORY
        lines = self._lines(path)
        if lines is None:
            return None
        points = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                points.append({key: float(data[key]) for key in ("t", "expected", "unexpected")})
            except (ValueError, KeyError, TypeError) as error:
                if number == len(lines):
                    break
                raise ResultsError(f"{str(path)!r} line {number} is not a verdict count: {error}") from None
        return points

    def read_gate_verdicts(self) -> list[tuple[str, dict[str, Any]]]:
        """Every gate verdict here (``gate.json`` and any ``gate-*.json`` of a re-judged run) as (file name, verdict),
        by name; the abort record is not one."""
        verdicts = []
        for path in sorted(self.path.glob("gate*.json")):
            if path.name != GATE_ABORT:
                verdict = self._read_object(path.name, "gate verdict")
                if verdict is not None:
                    verdicts.append((path.name, verdict))
        return verdicts

    def read_locust_log(self) -> str | None:
        path = self.path / LOCUST_LOG
        try:
            return path.read_text(errors="replace") if path.is_file() else None
        except OSError as error:
            raise ResultsError(f"{str(path)!r} is not readable: {error.strerror or error}") from None

    def read_fault_windows(self) -> tuple[FaultWindow, ...] | None:
        """The fault windows the run recorded (``summary.json``, else ``outcomes.json``); None when it recorded none
        (no chaos schedule). A window still on at the end of the run ends at infinity."""
        for name, read in ((SUMMARY, self.read_summary), (OUTCOMES, self.read_outcomes)):
            entries = (or_none(read) or {}).get(FAULT_WINDOWS_KEY)
            if isinstance(entries, list):
                return fault_windows(entries, source=str(self.path / name))
        return None

    def _read_object(self, name: str, what: str) -> dict[str, Any] | None:
        data = self._read_json(name, what)
        if data is not None and not isinstance(data, dict):
            raise ResultsError(f"{str(self.path / name)!r} must hold a JSON object")
        return data

    def _read_json(self, name: str, what: str) -> Any:
        path = self.path / name
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise ResultsError(f"{what} {str(path)!r} is not readable JSON: {error}") from None


def fault_windows(entries: list[Any], *, source: str = FAULT_WINDOWS_KEY) -> tuple[FaultWindow, ...]:
    """Fault windows from their JSON records; ResultsError naming the record that has no name, start and end or
    ends before it starts."""
    windows = []
    for number, entry in enumerate(entries):
        where = f"{source}: {FAULT_WINDOWS_KEY}[{number}]"
        try:
            start, name = float(entry["start"]), str(entry["name"])
            end = math.inf if entry["end"] is None else float(entry["end"])
        except (KeyError, TypeError, ValueError):
            raise ResultsError(f"{where} needs name, start and end, got {entry!r}") from None
        if not math.isfinite(start) or math.isnan(end) or end < start:
            raise ResultsError(f"{where} ends before it starts: {entry!r}")
        params = entry.get("params")
        windows.append(FaultWindow(name=name, role=str(entry.get("role") or ""), start=start, end=end,
                                   params=dict(params) if isinstance(params, Mapping) else {}))
    return tuple(windows)
