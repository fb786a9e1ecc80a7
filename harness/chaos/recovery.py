"""Recovery after each fault window, from per-second request and failure counts (no Locust import).

For a window that has ended: how long from its end until the request success rate is back to its level before the
fault, and how far the request rate rises above its pre-fault baseline afterwards — the renewal and re-registration
storm — for all requests and for CCM_STS token requests alone. The counts are Locust's per-second ones
(``num_reqs_per_sec`` / ``num_fail_per_sec`` of each statistics entry; the master's hold every worker's).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cmg_protocol.urlmap import CCM_STS
from harness.client.stages import LIFECYCLE_REQUEST_TYPE

#: Seconds before a fault whose success rate and request rate are its baseline.
BASELINE_SECONDS = 10
#: Seconds the success rate must stay back at its baseline level to count as recovered.
SETTLE_SECONDS = 3
#: How far below the baseline success rate (absolute) still counts as recovered.
TOLERANCE = 0.01
#: Seconds after recovery that still count towards the storm.
STORM_SECONDS = 10


class RecoveryError(ValueError):
    """Per-second counts or a window are malformed; the message names the bad value."""


@dataclass(frozen=True, slots=True)
class SecondCounts:
    """Requests, failed requests and CCM_STS token requests per epoch second."""

    requests: Mapping[int, int]
    failures: Mapping[int, int]
    tokens: Mapping[int, int]

    @classmethod
    def from_entries(cls, entries: Iterable[Mapping[str, Any]]) -> SecondCounts:
        """Sum Locust statistics entries (dicts with name, method, num_reqs_per_sec, num_fail_per_sec).

        The ``LIFECYCLE`` entries time whole stages, not requests, so they are left out.
        """
        requests: Counter[int] = Counter()
        failures: Counter[int] = Counter()
        tokens: Counter[int] = Counter()
        for entry in entries:
            if entry.get("method") == LIFECYCLE_REQUEST_TYPE:
                continue
            per_second = _per_second(entry.get("num_reqs_per_sec") or {})
            requests.update(per_second)
            failures.update(_per_second(entry.get("num_fail_per_sec") or {}))
            if str(entry.get("name", "")).endswith("/" + CCM_STS):
                tokens.update(per_second)
        return cls(dict(requests), dict(failures), dict(tokens))


def _per_second(counts: Mapping[Any, Any]) -> dict[int, int]:
    result: dict[int, int] = {}
    for second, count in counts.items():
        try:
            result[int(second)] = int(count)  # JSON turns the integer keys into strings
        except (TypeError, ValueError):
            raise RecoveryError(f"per-second counts map whole seconds to counts, got {second!r}: {count!r}") from None
    return result


def _rate(counts: SecondCounts, seconds: range) -> tuple[int, int]:
    requests = sum(counts.requests.get(s, 0) for s in seconds)
    failures = sum(counts.failures.get(s, 0) for s in seconds)
    return requests, failures


def window_recovery(window: Mapping[str, Any], counts: SecondCounts, *, run_end: float,
                    baseline_seconds: int = BASELINE_SECONDS, settle_seconds: int = SETTLE_SECONDS,
                    tolerance: float = TOLERANCE, storm_seconds: int = STORM_SECONDS) -> dict[str, Any]:
    """The recovery measures of one fault window (``name``, ``role``, ``start``, ``end`` in epoch seconds)."""
    start, end = window.get("start"), window.get("end")
    result: dict[str, Any] = {"name": window.get("name"), "role": window.get("role"), "start": start, "end": end}
    if not isinstance(start, (int, float)) or (end is not None and not isinstance(end, (int, float))):
        raise RecoveryError(f"a fault window needs numeric start and end, got {window!r:.200}")
    if end is None:
        return {**result, "note": "still on when the run ended"}
    last = math.floor(run_end) - 1  # the last whole second of the run
    if math.floor(end) + settle_seconds - 1 > last:
        return {**result, "note": "ended too close to the end of the run to measure recovery"}
    first = min(counts.requests, default=last + 1)
    fault_start, fault_end = math.floor(start), math.floor(end)
    baseline = range(max(first, fault_start - baseline_seconds), fault_start)
    if not baseline:
        return {**result, "note": "no requests before the fault: no baseline to recover to"}
    base_requests, base_failures = _rate(counts, baseline)
    if not base_requests:
        return {**result, "note": "no requests before the fault: no baseline to recover to"}
    base_rate = 1.0 - base_failures / base_requests
    base_rps = base_requests / len(baseline)
    token_rps = sum(counts.tokens.get(s, 0) for s in baseline) / len(baseline)
    during = [1.0 - counts.failures.get(s, 0) / counts.requests[s] for s in range(fault_start, fault_end + 1)
              if counts.requests.get(s)]
    recovered_at = None
    for second in range(fault_end, last - settle_seconds + 2):
        requests, failures = _rate(counts, range(second, second + settle_seconds))
        if requests and 1.0 - failures / requests >= base_rate - tolerance:
            recovered_at = second
            break
    recovery_s = None if recovered_at is None else round(max(0.0, recovered_at - end), 1)
    after = range(fault_end, min(last, fault_end + math.ceil(recovery_s or 0) + storm_seconds) + 1)
    peak = max((counts.requests.get(s, 0) for s in after), default=0)
    token_peak = max((counts.tokens.get(s, 0) for s in after), default=0)
    return {
        **result,
        "baseline_success_rate": round(base_rate, 4),
        "worst_success_rate": round(min(during), 4) if during else None,
        "recovered": recovered_at is not None,
        "recovery_s": recovery_s,
        "baseline_rps": round(base_rps, 1),
        "peak_rps_after": peak,
        "storm_rps": round(max(0.0, peak - base_rps), 1),
        "storm_requests": round(sum(max(0.0, counts.requests.get(s, 0) - base_rps) for s in after)),
        "token_baseline_rps": round(token_rps, 1),
        "token_peak_rps_after": token_peak,
        "token_storm_rps": round(max(0.0, token_peak - token_rps), 1),
    }


def recovery_report(windows: Iterable[Mapping[str, Any]], entries: Iterable[Mapping[str, Any]], *,
                    run_end: float) -> list[dict[str, Any]]:
    """The recovery measures of every window, from Locust statistics entries as dicts."""
    counts = SecondCounts.from_entries(entries)
    return [window_recovery(window, counts, run_end=run_end) for window in windows]
