"""Counting what a load run did: lifecycle outcomes by reason code, device milestones, and the CMGService-style table.

Pure bookkeeping (no Locust import): the Locust listeners feed an :class:`OutcomeTally` per process, workers ship
``drain()`` deltas to the master, which ``merge()``s them; the headless summary reads the same JSON back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from harness.client.stages import LIFECYCLE_REQUEST_TYPE

#: Device milestones counted once per device (how many devices got that far) and per occurrence.
MILESTONES = ("installed", "registered", "renewed", "polled")
#: The ``unexpected`` key of a device that succeeded where it should have failed (``harness.chaos.verdicts.OK``).
UNEXPECTED_SUCCESS = "ok"
_SECTIONS = ("outcomes", "unexpected", "stage_failures", "devices", "events", "request_bytes", "responses")


class TallyError(ValueError):
    """A tally record or a delta from a worker is malformed; the message names the bad value."""


class OutcomeTally:
    """Counters of one process (or, on the master, of the whole run), mergeable from JSON-safe deltas."""

    def __init__(self) -> None:
        self._sections: dict[str, Counter[str]] = {name: Counter() for name in _SECTIONS}
        self._pending: dict[str, Counter[str]] = {name: Counter() for name in _SECTIONS}
        #: Where the run's verdicts come from (a VerdictBook's ``snapshot``): shown under ``verdicts`` when set.
        self.verdicts: Callable[[], dict[str, Any]] | None = None

    def _add(self, section: str, key: str, amount: int = 1) -> None:
        self._sections[section][key] += amount
        self._pending[section][key] += amount

    def record_outcome(self, success: bool, reason: str = "") -> None:
        """Count one finished lifecycle by its reason code (``success`` for one that succeeded)."""
        if success:
            self._add("outcomes", "success")
            return
        if not reason:
            raise TallyError("a failed lifecycle needs a reason code, got ''")
        self._add("outcomes", reason)

    def record_stage_failure(self, stage: str, reason: str) -> None:
        """Count a lifecycle stage (install+register, token renewal, policy cycle) whose last exchange failed."""
        if not reason:
            raise TallyError(f"a failed {stage!r} stage needs a reason code, got ''")
        self._add("stage_failures", stage)

    def record_unexpected(self, outcome: str) -> None:
        """Count one outcome the verdict found unexpected, by reason code (``ok``: a device that should have failed)."""
        if not outcome:
            raise TallyError("an unexpected outcome needs a reason code (or 'ok'), got ''")
        self._add("unexpected", outcome)

    def record_milestone(self, milestone: str, *, first: bool) -> None:
        """Count one milestone occurrence (``first``: the device reached it for the first time)."""
        if milestone not in MILESTONES:
            raise TallyError(f"unknown milestone {milestone!r} (known: {', '.join(MILESTONES)})")
        self._add("events", milestone)
        if first:
            self._add("devices", milestone)

    def record_device_started(self) -> None:
        """Count one device whose life began in this run."""
        self._add("devices", "started")

    def record_request(self, name: str, request_bytes: int, *, answered: bool) -> None:
        """Count the bytes a request sent and whether any HTTP response came back (for the CMGService table)."""
        self._add("request_bytes", name, int(request_bytes))
        if answered:
            self._add("responses", name)

    def drain(self) -> dict[str, dict[str, int]]:
        """What was counted since the last drain, JSON-safe, for a worker's report to the master."""
        delta = {name: dict(counter) for name, counter in self._pending.items() if counter}
        self._pending = {name: Counter() for name in _SECTIONS}
        return delta

    def merge(self, delta: Mapping[str, Any]) -> None:
        """Add a worker's delta (as made by :meth:`drain`) to these counters."""
        if not isinstance(delta, Mapping):
            raise TallyError(f"a tally delta must be a mapping, got {type(delta).__name__}")
        for section, counts in delta.items():
            if section not in self._sections:
                raise TallyError(f"unknown tally section {section!r}")
            if not isinstance(counts, Mapping):
                raise TallyError(f"tally section {section!r} must map names to counts, got {counts!r}")
            for key, amount in counts.items():
                if not isinstance(key, str) or isinstance(amount, bool) or not isinstance(amount, int):
                    raise TallyError(f"tally entry {section}/{key!r} must count with an integer, got {amount!r}")
                self._sections[section][key] += amount

    def reset(self) -> None:
        """Forget everything (a new test started, or the web UI's Reset Stats)."""
        self._sections = {name: Counter() for name in _SECTIONS}
        self._pending = {name: Counter() for name in _SECTIONS}

    @property
    def failed(self) -> int:
        """Lifecycles that ended in failure."""
        return sum(count for reason, count in self._sections["outcomes"].items() if reason != "success")

    @property
    def unexpected_failures(self) -> int:
        """Failed lifecycles and stages the verdicts found unexpected."""
        return sum(count for outcome, count in self._sections["unexpected"].items() if outcome != UNEXPECTED_SUCCESS)

    @property
    def unexpected_successes(self) -> int:
        """Devices that got through where their traits or the faults said they must fail."""
        return self._sections["unexpected"][UNEXPECTED_SUCCESS]

    def snapshot(self) -> dict[str, Any]:
        """Everything counted, in the shape of ``outcomes.json``."""
        sections = self._sections
        return {
            "lifecycles": {"succeeded": sections["outcomes"]["success"], "failed": self.failed,
                           "unexpected_failures": self.unexpected_failures,
                           "unexpected_successes": self.unexpected_successes},
            "outcomes": dict(sorted(sections["outcomes"].items())),
            "unexpected": dict(sorted(sections["unexpected"].items())),
            "stage_failures": dict(sorted(sections["stage_failures"].items())),
            "devices": {key: sections["devices"][key] for key in ("started", *MILESTONES)},
            "events": {key: sections["events"][key] for key in MILESTONES},
            "requests": {name: {"request_bytes": sections["request_bytes"][name],
                                "responses": sections["responses"][name]}
                         for name in sorted(set(sections["request_bytes"]) | set(sections["responses"]))},
            **({"verdicts": self.verdicts()} if self.verdicts is not None else {}),
        }


def cmgservice_table(entries: Iterable[Mapping[str, Any]],
                     requests: Mapping[str, Mapping[str, int]]) -> list[dict[str, Any]]:
    """Rows per RequestUri as CMGService.log prints them, from Locust stats entries plus the tally's request data.

    ``entries`` are Locust stats entries as dicts (``name``, ``method``, ``num_requests``, ``total_content_length``,
    ``total_response_time``). ``requests`` is ``snapshot()["requests"]``, which holds only requests sent to the CMG:
    entries for Entra ID, the CRL distribution point and the lifecycle stages are left out.
    """
    grouped: dict[str, list[float]] = {}
    for entry in entries:
        if entry.get("method") == LIFECYCLE_REQUEST_TYPE or str(entry["name"]) not in requests:
            continue
        row = grouped.setdefault(str(entry["name"]), [0, 0, 0.0])
        row[0] += int(entry["num_requests"])
        row[1] += int(entry["total_content_length"])
        row[2] += float(entry["total_response_time"])
    rows = []
    for name in sorted(grouped):
        count, response_size, total_ms = grouped[name]
        extra = requests.get(name, {})
        rows.append({
            "request_uri": name,
            "request_count": int(count),
            "request_size": int(extra.get("request_bytes", 0)),
            "response_count": int(extra.get("responses", 0)),
            "response_size": int(response_size),
            "average_elapsed_time": round(total_ms / count) if count else 0,
        })
    return rows


def lifecycle_table(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows per lifecycle stage (count, failures, average and slowest ms) from the Locust ``LIFECYCLE`` entries."""
    rows = []
    for entry in entries:
        if entry.get("method") != LIFECYCLE_REQUEST_TYPE:
            continue
        count = int(entry["num_requests"])
        rows.append({
            "stage": str(entry["name"]),
            "count": count,
            "failures": int(entry["num_failures"]),
            "average_ms": round(float(entry["total_response_time"]) / count) if count else 0,
            "max_ms": round(float(entry.get("max_response_time") or 0)),
        })
    return sorted(rows, key=lambda row: row["stage"])
