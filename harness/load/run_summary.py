"""What a ``cmg-harness run`` showed: ``summary.json`` built from the run's files, and the one screen printed at its end.

The run passes only when no outcome was unexpected, the chaos schedule switched every fault, Locust did not crash,
and some device got somewhere (unless every failure was expected); the summary says which problem failed it.
"""

from __future__ import annotations

from typing import Any

from harness.chaos.summary import chaos_problems, chaos_sections, format_chaos
from harness.client.stages import LIFECYCLE_REQUEST_TYPE
from harness.fleet.tally import cmgservice_table, lifecycle_table
from harness.results.layout import LOCUST_LOG, OUTCOMES, ResultsDir, or_none
from harness.results.plan import RunPlan
from mock_site.manifest import SiteManifest


def summarize(plan: RunPlan, *, manifest: SiteManifest | None, locust_stats: list[dict[str, Any]] | None,
              outcomes: dict[str, Any] | None, registrations: int | None, locust_exit: int,
              registrations_before: int | None = None, interrupted_by: str | None = None) -> dict[str, Any]:
    """Everything the run showed, as ``summary.json`` holds it, with the verdict and why.

    The run fails on any unexpected outcome (``harness.chaos.verdicts`` judged each one against the device's traits and the
    faults that were on), a schedule that could not switch a fault, a crashed Locust, or a run in which no device got
    anywhere without that being expected. ``registrations_before``: the count of a site that was already up.
    ``interrupted_by``: the signal (``SIGTERM``) that cut the run short — the summary holds what was collected until
    then, ``interrupted`` is true and the run does not pass; ``manifest`` is None when it came before the site was up.
    """
    problems: list[str] = []
    if interrupted_by is not None:
        problems.append(f"interrupted by {interrupted_by}")
    if locust_exit not in (0, 1) and not (interrupted_by is not None and locust_exit == -1):
        # 1 only says some request failed; the verdicts judge those. -1: Locust never started (interrupted first).
        problems.append(f"Locust exited with status {locust_exit} (see {LOCUST_LOG})")
    if outcomes is None:
        problems.append(f"Locust wrote no {OUTCOMES}")
        outcomes = {}
    devices = outcomes.get("devices", {})
    lifecycles = outcomes.get("lifecycles", {})
    chaos = chaos_sections(outcomes, locust_stats)
    problems += chaos_problems(chaos)
    if outcomes and not chaos["verdicts"].get("expected") and \
            not any(devices.get(key, 0) for key in ("installed", "registered", "renewed", "polled")):
        problems.append("no device got anywhere (none installed, registered, renewed or polled)")
    already = plan.seed_clients if registrations_before is None else registrations_before
    new_registrations = None if registrations is None else registrations - already
    stats = locust_stats or []
    return {
        "plan": plan.to_dict(),
        "interrupted": interrupted_by is not None,
        "signal": interrupted_by,
        "site": {"ccm_token_lifetime_s": None if manifest is None else manifest.ccm_token_lifetime_s,
                 "policy_interval_s": None if manifest is None else manifest.policy_interval_s,
                 "registrations": registrations, "new_registrations": new_registrations,
                 "seeded_clients": plan.seed_clients, "external": plan.site is not None,
                 "registrations_before": registrations_before,
                 "cmg_url": plan.target or (None if manifest is None else manifest.cmg_url)},
        "devices": devices,
        "events": outcomes.get("events", {}),
        "lifecycles": lifecycles,
        "outcomes": outcomes.get("outcomes", {}),
        "unexpected": outcomes.get("unexpected", {}),
        "stage_failures": outcomes.get("stage_failures", {}),
        "stages": lifecycle_table(stats),
        "traffic": traffic_table(stats),
        "requests": cmgservice_table(stats, outcomes.get("requests", {})),
        **measures_section(plan, outcomes),
        "capacity_search": or_none(ResultsDir(plan.out).read_capacity_search),
        **chaos,
        "locust_exit_code": locust_exit,
        "files": ResultsDir(plan.out).run_files(),
        "passed": not problems,
        "problems": problems,
    }


def measures_section(plan: RunPlan, outcomes: dict[str, Any]) -> dict[str, Any]:
    """The model, the three measures per RequestUri and stage, late and unsent work, achieved versus intended rate."""
    latency = outcomes.get("latency") or {}
    rates = outcomes.get("rates") or {}
    return {
        "model": outcomes.get("model", plan.model),
        "model_description": outcomes.get("model_description", ""),
        "latency": {"requests": latency.get("requests", {}), "stages": latency.get("stages", {}),
                    "all_requests": latency.get("all_requests", {})},
        "late": latency.get("late", 0),
        "unsent": latency.get("unsent", 0),
        "rates": rates,
    }


def traffic_table(stats: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per Locust entry name: requests, failures and requests/s over the run (Locust's own span: its first request to
    its last answer), with whether the entry is a lifecycle stage."""
    starts = [float(e["start_time"]) for e in stats if e.get("start_time")]
    ends = [float(e["last_request_timestamp"]) for e in stats if e.get("last_request_timestamp")]
    span = max(ends) - min(starts) if starts and ends else 0.0
    table: dict[str, dict[str, Any]] = {}
    for entry in stats:
        row = table.setdefault(str(entry["name"]), {"requests": 0, "failures": 0, "requests_per_s": None,
                                                    "stage": entry.get("method") == LIFECYCLE_REQUEST_TYPE})
        row["requests"] += int(entry.get("num_requests") or 0)
        row["failures"] += int(entry.get("num_failures") or 0)
        if span > 0:
            row["requests_per_s"] = round(row["requests"] / span, 3)
    return table


def format_measures(summary: dict[str, Any]) -> list[str]:
    """Per RequestUri, then per lifecycle stage: requests, failures, requests/s, service time and corrected latency
    (p50/p90/p99/max) and lateness p99; then late and unsent work."""
    latency = summary.get("latency") or {}
    traffic = summary.get("traffic") or {}
    requests = dict(latency.get("requests", {}))
    stages = dict(latency.get("stages", {}))
    for name, row in traffic.items():  # entries Locust counted that the latency book did not (or a run without it)
        (stages if row.get("stage") else requests).setdefault(name, {})
    rows = [(name, requests[name]) for name in sorted(requests)] + [(name, stages[name]) for name in sorted(stages)]
    if not rows:
        return []
    rates = summary.get("rates") or {}
    lines = [f"requests and lifecycle stages ({summary.get('model', 'closed')} model; ms): service = sent -> answered, "
             "corrected = intended -> answered, lateness = intended -> sent"]

    def measure(values: dict[str, Any], name: str) -> list[str]:
        found = values.get(name) or {}
        return [_ms(found[key]) if isinstance(found.get(key), (int, float)) else "-" for key in PERCENTILE_KEYS]

    def counts(name: str, values: dict[str, Any]) -> list[str]:
        row = traffic.get(name)
        if row is None:
            count = (values.get("service_ms") or {}).get("count")
            return [str(count) if count is not None else "-", "-", "-"]
        per_s = row.get("requests_per_s")
        return [str(row["requests"]), str(row["failures"]), "-" if per_s is None else _rate(per_s)]

    lines += _table(("RequestUri / stage", "requests", "failures", "req/s", "service p50", "p90", "p99", "max",
                     "corrected p50", "p90", "p99", "max", "lateness p99"),
                    [(name, *counts(name, values), *measure(values, "service_ms"), *measure(values, "corrected_ms"),
                      *measure(values, "lateness_ms")[2:3]) for name, values in rows])
    ratio = rates.get("achieved_rate_ratio")
    lines.append(f"late {summary.get('late', 0)}  unsent {summary.get('unsent', 0)}"
                 + (f"  achieved rate {ratio:.1%} of intended" if ratio is not None else ""))
    return lines


PERCENTILE_KEYS = ("p50", "p90", "p99", "max")


def format_capacity_search(search: dict[str, Any] | None) -> list[str]:
    """The capacity search's steps and its answer (nothing for a run without one)."""
    if not search:
        return []
    lines = ["capacity search (open model; each step held "
             f"{search.get('hold_seconds', 0):g} s, the last two thirds measured):"]
    lines += _table(("step", "intended/s", "achieved/s", "corrected p99 ms", "errors", "verdict"),
                    [(number, f"{step['intended_per_s']:.1f}", f"{step['achieved_per_s']:.1f}",
                      _ms(step["corrected_p99_ms"]), f"{step['error_ratio']:.1%}",
                      "passes" if step["passed"] else "fails: " + "; ".join(step["reasons"]))
                     for number, step in enumerate(search.get("steps", []), start=1)])
    lines.append("capacity    " + str((search.get("result") or {}).get("describe", "no answer")))
    return lines


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _rate(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _table(headers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    cells = [headers] + [tuple(str(cell) for cell in row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for number, row in enumerate(cells):
        lines.append("  " + "  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                                      for i, cell in enumerate(row)))
        if number == 0:
            lines.append("  " + "  ".join("-" * width for width in widths))
    return lines


def format_summary(summary: dict[str, Any]) -> str:
    """The screen printed at the end of ``cmg-harness run``: the plan and how far devices got; per RequestUri and
    lifecycle stage the counts, rates and percentiles; outcomes and verdicts; fault windows with recovery; the gate;
    the verdict (which takes the gate in); and last the result files."""
    plan, site, devices = summary["plan"], summary["site"], summary["devices"]
    lifecycles, events = summary["lifecycles"], summary["events"]
    through = f", through {site['cmg_url']}" if plan.get("target") else ""
    model_line = summary.get("model_description") or ""
    lines = [f"INTERRUPTED by {summary.get('signal') or 'a signal'}: a partial run"] if summary.get("interrupted") else []
    lines += [model_line] if model_line else []
    lines += [
        (f"{plan['users']} users x {plan['devices_per_user']} devices = {plan['devices']} devices for "
         f"{plan['duration']:g} s at time scale {plan['time_scale']:g} "
         f"(CCM token {site['ccm_token_lifetime_s'] or 0:.0f} s, policy every {site['policy_interval_s'] or 0:.0f} s), "
         f"fleet mix: {plan['fleet_mix'] or 'none'}{through}"),
        (f"devices     started {devices.get('started', 0)}  installed {devices.get('installed', 0)}  "
         f"registered {devices.get('registered', 0)}  renewed {devices.get('renewed', 0)}  "
         f"polled {devices.get('polled', 0)}"),
        (f"events      registrations {events.get('registered', 0)}  token renewals {events.get('renewed', 0)}  "
         f"policy cycles {events.get('polled', 0)}"),
    ]
    if site["registrations"] is not None:
        if site.get("registrations_before") is not None:
            seeded = f" (+{site['registrations_before']} already there)" if site["registrations_before"] else ""
        else:
            seeded = f" (+{site['seeded_clients']} seeded)" if site["seeded_clients"] else ""
        lines.append(f"site DB     registrations {site['new_registrations']}{seeded}")
    ended = lifecycles.get("succeeded", 0) + lifecycles.get("failed", 0)
    lines.append(f"lifecycles  still running {max(devices.get('started', 0) - ended, 0)}  "
                 f"succeeded {lifecycles.get('succeeded', 0)}  failed {lifecycles.get('failed', 0)}")
    if summary["requests"]:
        lines.append("requests (as CMGService.log counts them, seen from the clients):")
        lines += _table(("RequestUri", "RequestCount", "RequestSize", "ResponseCount", "ResponseSize",
                         "AverageElapsedTime"),
                        [(row["request_uri"], row["request_count"], f"{row['request_size']} B",
                          row["response_count"], f"{row['response_size']} B", f"{row['average_elapsed_time']} ms")
                         for row in summary["requests"]])
    lines += format_measures(summary)
    lines += format_capacity_search(summary.get("capacity_search"))
    if (summary.get("capacity_report") or {}).get("error"):
        lines.append(f"capacity report not written: {summary['capacity_report']['error']}")
    failures = {reason: count for reason, count in summary["outcomes"].items() if reason != "success"}
    if failures:
        lines.append("outcomes    " + "  ".join(f"{reason} {count}" for reason, count in failures.items()))
    if summary["stage_failures"]:
        lines.append("failed stages  " + "  ".join(f"{stage} {count}"
                                                   for stage, count in summary["stage_failures"].items()))
    if summary["unexpected"]:
        lines.append("unexpected  " + "  ".join(f"{reason} {count}" for reason, count in summary["unexpected"].items()))
    lines += format_chaos(summary)
    lines += format_gate(summary.get("gate"))
    lines.append(verdict_line(summary))
    lines.append(f"results in {plan['out']}: " + ", ".join(summary.get("files", [])))
    return "\n".join(lines)


def verdict_line(summary: dict[str, Any]) -> str:
    """PASS, FAIL with why, or INTERRUPTED: the run's own verdict and its gate's together."""
    gate = summary.get("gate") or {}
    if summary.get("interrupted"):
        others = [problem for problem in summary["problems"] if not problem.startswith("interrupted by")]
        return (f"INTERRUPTED by {summary.get('signal') or 'a signal'}: what was collected until then"
                + (" (" + "; ".join(others) + ")" if others else ""))
    problems = list(summary["problems"])
    if gate.get("error"):
        problems.append(f"the gate could not be judged: {gate['error']}")
    elif gate and not gate.get("passed"):
        problems.append(f"gate {gate.get('name', '')}: {len(gate.get('crossed', []))} of {gate.get('thresholds', 0)} "
                        f"thresholds crossed ({', '.join(gate.get('crossed', []))})")
    return "FAIL: " + "; ".join(problems) if problems else "PASS"


def format_gate(gate: dict[str, Any] | None) -> list[str]:
    """The gate's lines (one per threshold and its verdict), or why it was not judged; nothing without a gate."""
    if not gate:
        return []
    if gate.get("error"):
        return [f"gate {gate.get('name', '')}: not judged: {gate['error']}"]
    return str(gate.get("text", "")).splitlines()
