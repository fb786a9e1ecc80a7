"""The chaos part of a run's summary: verdicts per fault set and per reason, unexpected examples, windows, recovery.

``verdicts["faults"]`` counts each judged outcome once, under the set of faults that explained it (names joined by
``" + "`` when several were on, ``"none"`` when none was), so its counts add up to ``expected + unexpected``. Summaries
written before that counted an outcome under every fault that overlapped it; their keys are single names, which every
reader here takes as a set of one. :func:`fault_involvement` gives the per-fault view back.

Reads what the Locust listeners wrote to ``outcomes.json`` (no Locust import) and turns it into ``summary.json``
sections and the lines ``cmg-harness run`` prints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.chaos.recovery import RecoveryError, SecondCounts, recovery_report
from harness.chaos.verdicts import OVERLAP

#: Unexpected examples printed per kind (summary.json keeps every example the run collected).
PRINTED_EXAMPLES = 2


def chaos_sections(outcomes: Mapping[str, Any], stats: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The summary's chaos sections: ``verdicts``, ``fault_windows``, ``recovery``, ``chaos`` (the schedule) and
    ``test_started_at`` (epoch seconds; fault windows are shown relative to it).

    Recovery is measured again from Locust's statistics (``locust.json``) when they hold per-second counts: in a
    distributed run they include the workers' last reports, which reach the master after the listeners measured.
    """
    verdicts = outcomes.get("verdicts")
    if not isinstance(verdicts, Mapping):
        # Outcomes from a run that judged nothing: count the tally's unexpected outcomes, without detail.
        unexpected = sum((outcomes.get("unexpected") or {}).values())
        verdicts = {"expected": 0, "unexpected": unexpected, "kinds": {}, "reasons": {}, "faults": {},
                    "examples": {}, "pending": 0}
    windows = list(outcomes.get("fault_windows") or [])
    recovery = list(outcomes.get("recovery") or [])
    if windows and stats:
        try:
            seconds = SecondCounts.from_entries(stats).requests
            if seconds:
                recovery = recovery_report(windows, stats, run_end=max(seconds) + 1)
        except RecoveryError:
            pass  # keep what the listeners measured
    return {"verdicts": dict(verdicts), "fault_windows": windows, "recovery": recovery,
            "chaos": dict(outcomes.get("chaos") or {"schedule": None, "applied": [], "errors": []}),
            "test_started_at": outcomes.get("test_started_at")}


def fault_involvement(faults: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """Per single fault, the outcomes it had a part in: the sum over every fault set (``verdicts["faults"]`` key,
    e.g. ``"crl_unreachable + cp_disconnected"``) that holds it. These overlap, unlike the sets themselves: an outcome
    under two faults counts for both, so they do not add up to the number of outcomes."""
    involved: dict[str, dict[str, int]] = {}
    for key, counts in faults.items():
        for fault in key.split(OVERLAP):
            mine = involved.setdefault(fault, {})
            for label, count in counts.items():
                mine[label] = mine.get(label, 0) + int(count)
    return involved


def chaos_problems(sections: Mapping[str, Any]) -> list[str]:
    """Why the chaos part fails the run: unexpected outcomes, or a schedule that could not switch its faults."""
    problems = []
    verdicts = sections["verdicts"]
    unexpected = int(verdicts.get("unexpected", 0))
    if unexpected:
        kinds = sorted(verdicts.get("examples", {}))
        problems.append(f"{unexpected} unexpected outcome(s)" + (f": {', '.join(kinds)}" if kinds else ""))
    errors = sections["chaos"].get("errors") or []
    if errors:
        problems.append(f"the chaos schedule could not switch {len(errors)} fault(s): {errors[0]}")
    return problems


def _counts(name: str, counts: Mapping[str, Mapping[str, int]]) -> str:
    return f"{name:<12}" + "  ".join(f"{key} {value.get('expected', 0)}/{value.get('unexpected', 0)}"
                                     for key, value in counts.items())


def format_chaos(sections: Mapping[str, Any]) -> list[str]:
    """The summary lines of the chaos sections (nothing when the run judged nothing and had no faults)."""
    verdicts, windows, recovery = sections["verdicts"], sections["fault_windows"], sections["recovery"]
    started_at = sections.get("test_started_at")
    lines: list[str] = []
    if verdicts.get("expected", 0) or verdicts.get("unexpected", 0):
        lines.append(f"verdicts    expected {verdicts.get('expected', 0)}  unexpected {verdicts.get('unexpected', 0)}"
                     f"  (per fault set and per reason: expected/unexpected; \"a{OVERLAP}b\": both were on)")
        if verdicts.get("faults"):
            lines.append(_counts("  by fault", verdicts["faults"]))
        if verdicts.get("reasons"):
            lines.append(_counts("  by reason", verdicts["reasons"]))
        for kind, examples in verdicts.get("examples", {}).items():
            for example in examples[:PRINTED_EXAMPLES]:
                trail = " > ".join(f"{step} {'-' if status is None else status} {result}"
                                   for step, _name, status, _ms, result in example.get("trail", []))
                lines.append(f"  UNEXPECTED {kind} {example.get('device', '')}: {example.get('explanation', '')}")
                if trail:
                    lines.append(f"    trail: {trail}")
    schedule = sections["chaos"].get("schedule")
    if windows or schedule:
        origin = started_at if started_at is not None else min((w["start"] for w in windows), default=0.0)
        described = [f"{w['name']}@{w['role']} {w['start'] - origin:+.0f}.."
                     + ("on" if w["end"] is None else f"{w['end'] - origin:+.0f} s") for w in windows]
        lines.append(f"faults      {'chaos schedule ' + schedule + ': ' if schedule else ''}"
                     + ("; ".join(described) if described else "none switched on"))
    measured = [row for row in recovery if "recovered" in row]
    if measured:
        lines.append("recovery after each fault window (success rate back to its pre-fault level; storm = requests/s "
                     "above the pre-fault rate):")
        lines += _recovery_table(measured)
    return lines


def _recovery_table(rows: list[Mapping[str, Any]]) -> list[str]:
    headers = ("fault", "role", "worst ok %", "recovery s", "storm req/s", "storm requests", "token storm req/s")
    cells = [headers] + [(
        str(row["name"]), str(row["role"]),
        "-" if row["worst_success_rate"] is None else f"{row['worst_success_rate'] * 100:.1f}",
        f"{row['recovery_s']:g}" if row["recovered"] else "not recovered",
        f"{row['storm_rps']:g}", str(row["storm_requests"]), f"{row['token_storm_rps']:g}") for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return ["  " + "  ".join(cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(row))
            for row in cells]
