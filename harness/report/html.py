"""The capacity report as one self-contained HTML page: inline CSS and SVG, no scripts, no external references."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from html import escape

from harness.report.capacity import SOURCES, CapacityReport
from harness.report.fit import MIN_POINTS
from harness.report.knee import LATENCY_FACTOR, LATENCY_FLOOR_MS, MIN_MARGINAL_EFFICIENCY
from harness.report.recommend import (
    CLIENTS_PER_MANAGEMENT_POINT,
    CONNECTION_POINT_PORTS,
    INSTANCES_PER_CONNECTION_POINT,
    MAX_FAILURE_RATIO,
    MAX_INSTANCES_PER_CMG,
    MAX_MANAGEMENT_POINTS_PER_PRIMARY,
    MIN_CONNECTION_POINTS,
    meets_target,
)
from harness.report.svg import PALETTE, Band, Rule, Series, chart

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1f23; margin: 0;
       background: #f6f7f9; }
main { max-width: 1000px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 32px 0 8px; border-bottom: 1px solid #d8dde3;
     padding-bottom: 4px; } h3 { font-size: 16px; margin: 20px 0 6px; }
.sub { color: #57606a; margin: 0 0 16px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 14px; }
th, td { border: 1px solid #d8dde3; padding: 4px 8px; text-align: right; vertical-align: top; }
th { background: #eef1f4; } td.l, th.l { text-align: left; }
.warn { background: #fff4e5; border-left: 4px solid #D55E00; padding: 8px 12px; margin: 8px 0; }
.note { color: #57606a; font-size: 14px; }
.ok { color: #00734f; font-weight: 600; } .bad { color: #b3261e; font-weight: 600; }
.key { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 10px; margin: 12px 0; }
.key div { background: #eef1f4; border-radius: 6px; padding: 8px 12px; }
.key b { display: block; font-size: 20px; }
svg.chart { width: 100%; height: auto; background: #fff; margin: 6px 0 2px; }
svg .grid { stroke: #e3e7eb; stroke-width: 1; } svg .frame { fill: none; stroke: #9aa4ae; stroke-width: 1; }
svg .tick, svg .legend, svg .axis, svg .rule-label, svg .band-label, svg .empty { font: 12px system-ui, sans-serif;
    fill: #3d444d; }
svg .axis { font-size: 13px; } svg .rule { stroke: #b3261e; stroke-width: 1.5; stroke-dasharray: 4 3; }
svg .rule-label { fill: #b3261e; } svg .band { fill: #D55E00; fill-opacity: 0.15; }
svg .band-label { fill: #8a3b00; }
code { background: #eef1f4; padding: 1px 4px; border-radius: 3px; }
"""


def render(report: CapacityReport) -> str:
    """The whole report page."""
    body = [
        f"<h1>Capacity report — {escape(report.title)}</h1>",
        (f'<p class="sub">{_when(report.run_start)} to {_when(report.run_end)} UTC · '
        f"{len(report.steps)} steps · {escape(_locustfile(report))}</p>"),
        *(f'<div class="warn"><b>Warning:</b> {escape(text)}</div>' for text in report.warnings),
        _key_figures(report),
        "<h2>Recommendation</h2>", _recommendation(report),
        "<h2>Charts</h2>", _charts(report),
        "<h2>Per-step statistics</h2>", _step_table(report),
        "<h2>Saturation and scalability</h2>", _findings(report),
        "<h2>Run and assumptions</h2>", _run_table(report), _assumptions(report),
        "<h2>Method</h2>", _method(report),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>Capacity report — {escape(report.title)}</title>\n"
            f"<style>{_CSS}</style>\n</head>\n<body>\n<main>\n" + "\n".join(body) + "\n</main>\n</body>\n</html>\n")


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _locustfile(report: CapacityReport) -> str:
    name = report.facts.locustfile.replace("\\", "/").rsplit("/", 1)[-1]
    return f"locustfile {name}"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def _key_figures(report: CapacityReport) -> str:
    peak = max(report.steps, key=lambda step: step.throughput)
    cells = [("peak throughput", f"{peak.throughput:,.1f} req/s", f"at {peak.users} users")]
    if report.knee is not None:
        cells.append(("knee", f"{report.knee.step.users} users", f"{report.knee.step.throughput:,.1f} req/s"))
    else:
        cells.append(("knee", "not reached", "every step still scaled"))
    if report.fit is not None and report.fit.peak_users is not None:
        cells.append(("USL peak concurrency", f"{report.fit.peak_users:,.0f} users",
                      f"R² {_r2(report.fit.r_squared)}"))
    elif report.fit is not None:
        cells.append(("USL peak concurrency", "none", "κ = 0: no retrograde region"))
    if report.observed is not None:
        observed = report.observed
        cells.append((f"clients within p95 ≤ {observed.latency_target_ms:g} ms",
                      f"{_bound_word(observed.bound)}{observed.clients:,.0f}",
                      f"{observed.clients_per_instance:,.0f} per CMG instance"))
    items = "".join(f"<div>{escape(label)}<b>{escape(value)}</b>{escape(extra)}</div>" for label, value, extra in cells)
    return f'<div class="key">{items}</div>'


def _bound_word(bound: str) -> str:
    return {"at least": "≥ ", "below": "< "}.get(bound, "")


def _r2(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _recommendation(report: CapacityReport) -> str:
    rows = []
    for sizing in report.sizing:
        per_cmg = " + ".join(str(n) for n in sizing.instances_per_cmg)
        cps = f"{sizing.connection_points}"
        if sizing.connection_points != sizing.connection_points_by_instances:
            cps += f" ({sizing.connection_points_by_instances} by instances; more for ports)"
        rows.append(f'<tr><td class="l">{escape(sizing.basis)}</td><td>{sizing.clients_per_instance:,.0f}</td>'
                    f"<td>{sizing.instances}</td><td>{sizing.cmgs} ({per_cmg})</td><td>{cps}</td>"
                    f"<td>{sizing.clients_per_connection_point:,.0f}</td><td>{sizing.management_points}</td>"
                    f"<td>{sizing.primary_sites}</td></tr>")
    table = ('<table><tr><th class="l">sizing basis</th><th>clients per instance</th><th>CMG VM instances</th>'
             "<th>CMGs (instances each)</th><th>connection points</th><th>clients per CP</th>"
             "<th>management points</th><th>primary sites</th></tr>" + "".join(rows) + "</table>")
    intro = (f"<p>For <b>{report.target_clients:,}</b> clients. Rules: at most {MAX_INSTANCES_PER_CMG} VM instances "
             f"per CMG; one connection point per up to {INSTANCES_PER_CONNECTION_POINT} instances and at least "
             f"{MIN_CONNECTION_POINTS} per CMG for high availability; each client holds a port on its connection "
             f"point (Windows' default dynamic range: {CONNECTION_POINT_PORTS:,}), so more connection points when "
             f"the clients per CP would exceed it (or raise the port range); {CLIENTS_PER_MANAGEMENT_POINT:,} clients "
             f"per management point, up to {MAX_MANAGEMENT_POINTS_PER_PRIMARY} per primary site.</p>")
    return intro + table + _observed_note(report)


def _observed_note(report: CapacityReport) -> str:
    observed = report.observed
    if observed is None:
        return ('<p class="note">No step had a p95 to judge against the latency target: no measured capacity.</p>')
    step = observed.step
    text = {
        "measured": (f"The run met p95 ≤ {observed.latency_target_ms:g} ms (and ≤ {MAX_FAILURE_RATIO:.0%} failures) "
                     f"up to {step.users} users ({observed.throughput:,.1f} req/s) and missed it at the next "
                     "step: that load is the capacity observed at the target."),
        "at least": (f"Every step met p95 ≤ {observed.latency_target_ms:g} ms; the highest, {step.users} users "
                     f"({observed.throughput:,.1f} req/s), is a lower bound of the capacity, which cannot lower "
                     "the documented figures — run more steps to find the limit."),
        "below": (f"Even the first step ({step.users} users, {observed.throughput:,.1f} req/s) missed p95 ≤ "
                  f"{observed.latency_target_ms:g} ms: the capacity is below it."),
    }[observed.bound]
    return (f"<p>{escape(text)} With r = {observed.requests_per_client_hour:,.2f} requests per client per hour "
            f"(measured), that is C = X × 3600 / r = {observed.throughput:,.1f} × 3600 / "
            f"{observed.requests_per_client_hour:,.2f} = <b>{_bound_word(observed.bound)}{observed.clients:,.0f} "
            f"clients</b> over {observed.instances} CMG instance(s), "
            f"{observed.clients_per_instance:,.0f} per instance.</p>")


def _charts(report: CapacityReport) -> str:
    return "\n".join([_throughput_chart(report), _latency_chart(report), _percentile_time_chart(report),
                      _failure_chart(report)])


def _throughput_chart(report: CapacityReport) -> str:
    steps = report.steps
    measured = Series("measured (per step)", tuple((float(s.users), s.throughput) for s in steps),
                      PALETTE[0], markers=True)
    first = steps[0]
    top = max(s.users for s in steps)
    linear = Series("linear from the first step", ((0.0, 0.0), (float(top), first.throughput / first.users * top)),
                    "#8c959f", dashed=True)
    series = [measured, linear]
    if report.fit is not None:
        fit = report.fit
        end = float(top)
        if fit.peak_users is not None and fit.peak_users <= 2 * top:
            end = max(top, fit.peak_users * 1.2)
        curve = tuple((1 + (end - 1) * i / 80, fit.throughput(1 + (end - 1) * i / 80)) for i in range(81))
        series.append(Series("USL fit", curve, PALETTE[1], dashed=True))
    rules = [Rule(float(report.knee.step.users), "knee")] if report.knee is not None else []
    return "<h3>Throughput vs users</h3>" + chart(title="Throughput vs users", x_label="Locust users",
                                                  y_label="requests/s", series=series, x_rules=rules)


def _latency_chart(report: CapacityReport) -> str:
    steps = report.steps
    series = [Series(name, tuple((s.throughput, getattr(s, attr)) for s in steps), color, markers=True)
              for name, attr, color in (("p50", "p50_ms", PALETTE[2]), ("p95", "p95_ms", PALETTE[0]),
                                        ("p99", "p99_ms", PALETTE[1]))]
    highest = max((s.p99_ms or s.p95_ms or 0.0) for s in steps)
    note = ""
    rules = []
    if highest * 3 >= report.latency_target_ms:
        rules.append(Rule(report.latency_target_ms, f"target p95 {report.latency_target_ms:g} ms"))
    else:
        note = (f'<p class="note">Every step stayed far below the latency target of {report.latency_target_ms:g} ms '
                "(not drawn, to keep the scale readable).</p>")
    return ("<h3>Latency percentiles vs throughput</h3>"
            + chart(title="Latency percentiles vs throughput", x_label="requests/s", y_label="ms", series=series,
                    y_rules=rules) + note)


def _step_rules(report: CapacityReport) -> list[Rule]:
    rules = [Rule(step.start - report.run_start, f"{step.users}") for step in report.steps]
    if len(rules) > 12:  # keep labels legible: mark every few steps
        rules = rules[::len(rules) // 12 + 1]
    return rules


def _percentile_time_chart(report: CapacityReport) -> str:
    series = [Series(name, tuple((p.t, getattr(p, attr)) for p in report.series), color)
              for name, attr, color in (("p50", "p50_ms", PALETTE[2]), ("p95", "p95_ms", PALETTE[0]),
                                        ("p99", "p99_ms", PALETTE[1]))]
    return ("<h3>Percentiles over time</h3>"
            + chart(title="Latency percentiles over time", x_label="seconds since the run started (lines: step "
                    "starts, labelled with users)", y_label="ms", series=series, x_rules=_step_rules(report))
            + '<p class="note">Each point is the percentile of the ~10 s before it ('
            + escape(SOURCES[report.source]) + ").</p>")


def _failure_chart(report: CapacityReport) -> str:
    series = [Series("requests/s", tuple((p.t, p.requests_per_s) for p in report.series), PALETTE[0]),
              Series("failures/s", tuple((p.t, p.failures_per_s) for p in report.series), PALETTE[1])]
    windows = report.fault_windows
    bands = [Band(w.start - report.run_start, w.end - report.run_start, w.name + (f" ({w.role})" if w.role else ""))
             for w in windows or ()]
    if windows is None:
        note = ('<p class="note">No fault windows recorded: the run had no chaos schedule (fault windows come from '
                "<code>fault_windows</code> in summary.json or outcomes.json).</p>")
    elif not windows:
        note = '<p class="note">The run recorded no fault windows.</p>'
    else:
        rows = "".join(f'<tr><td class="l">{escape(w.name)}</td><td class="l">{escape(w.role or "all")}</td>'
                       f"<td>{w.start - report.run_start:,.0f}</td><td>{_window_end(w.end - report.run_start)}</td></tr>"
                       for w in windows)
        note = ('<table><tr><th class="l">fault</th><th class="l">role</th><th>from s</th><th>to s</th></tr>'
                + rows + "</table>")
    return ("<h3>Failures and fault windows over time</h3>"
            + chart(title="Requests, failures and fault windows over time", x_label="seconds since the run started",
                    y_label="per second", series=series, bands=bands) + note)


def _window_end(seconds: float) -> str:
    return "end of run" if math.isinf(seconds) else f"{seconds:,.0f}"


def _step_table(report: CapacityReport) -> str:
    devices = report.facts.devices_per_user
    rows = []
    for step in report.steps:
        verdict = meets_target(step, report.latency_target_ms)
        mark = "–" if verdict is None else ('<span class="ok">✓</span>' if verdict else '<span class="bad">✗</span>')
        rows.append(f"<tr><td>{step.index + 1}</td><td>{step.users}</td><td>{step.users * devices:,}</td>"
                    f"<td>{step.duration:,.0f}</td><td>{step.requests:,}</td><td>{step.throughput:,.2f}</td>"
                    f"<td>{step.throughput / step.users:,.3f}</td><td>{_ms(step.mean_ms)}</td>"
                    f"<td>{_ms(step.p50_ms)}</td><td>{_ms(step.p95_ms)}</td><td>{_ms(step.p99_ms)}</td>"
                    f"<td>{step.failures:,}</td><td>{step.failure_ratio:.2%}</td><td>{mark}</td></tr>")
    return ("<table><tr><th>step</th><th>users</th><th>devices</th><th>measured s</th><th>requests</th>"
            "<th>req/s</th><th>req/s per user</th><th>mean ms</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th>"
            f"<th>failures</th><th>failure ratio</th><th>p95 ≤ {report.latency_target_ms:g} ms</th></tr>"
            + "".join(rows) + "</table>")


def _findings(report: CapacityReport) -> str:
    if report.knee is not None:
        knee = (f"<p><b>Knee</b> at {report.knee.step.users} users ({report.knee.step.throughput:,.1f} req/s): the next "
                f"step saturated — {escape(report.knee.reason)}.</p>")
    else:
        knee = "<p><b>Knee</b>: not reached — every step still scaled by the rules below.</p>"
    fit = report.fit
    if fit is None:
        usl = f"<p><b>Universal Scalability Law</b>: {escape(report.fit_note)}.</p>"
    else:
        top = max(step.users for step in report.steps)
        if fit.peak_users is None:
            peak = "none: κ = 0, throughput levels off at λ/σ without falling" if fit.sigma > 0 else \
                "none: σ = κ = 0, throughput grows linearly over the measured range"
        else:
            where = "within" if fit.peak_users <= top else "beyond (an extrapolation)"
            peak = (f"N* = √((1−σ)/κ) = {fit.peak_users:,.1f} users, {where} the measured range, "
                    f"X(N*) = {fit.peak_throughput:,.1f} req/s")
        usl = ("<p><b>Universal Scalability Law</b> X(N) = λN / (1 + σ(N−1) + κN(N−1)), least squares over "
               f"{fit.points} steps:</p><table><tr><th class=\"l\">λ (req/s of one user)</th><td>{fit.lam:,.4g}</td>"
               f"</tr><tr><th class=\"l\">σ (contention)</th><td>{fit.sigma:.4g}</td></tr>"
               f"<tr><th class=\"l\">κ (coherency)</th><td>{fit.kappa:.4g}</td></tr>"
               f"<tr><th class=\"l\">peak concurrency</th><td>{escape(peak)}</td></tr>"
               f"<tr><th class=\"l\">fit quality R²</th><td>{_r2(fit.r_squared)}</td></tr></table>")
        if fit.r_squared is not None and fit.r_squared < 0.9:
            usl += '<p class="note">R² below 0.9: the model describes these steps poorly; treat σ and κ as rough.</p>'
    return knee + usl


def _run_table(report: CapacityReport) -> str:
    facts = report.facts
    interval = "not recorded"
    if facts.policy_interval_s is not None:
        interval = (f"{facts.policy_interval_s:g} s in the run = {facts.policy_interval_s * facts.time_scale / 60:g} "
                    "min of site time")
    rows = [("results", report.title), ("locustfile", facts.locustfile),
            ("Locust workers", str(facts.workers) if facts.workers else "none (one process)"),
            ("time scale", f"{facts.time_scale:g} (site time runs {facts.time_scale:g}× faster)"),
            ("devices per Locust user", str(facts.devices_per_user)), ("policy interval", interval),
            ("CMG instances in the run", str(facts.cmg_instances)),
            ("statistics source", SOURCES[report.source]),
            ("settle period per step", f"{report.settle:g} s (at most half a step)"),
            ("latency target", f"p95 ≤ {report.latency_target_ms:g} ms and ≤ {MAX_FAILURE_RATIO:.0%} failures")]
    return "<table>" + "".join(f'<tr><th class="l">{escape(k)}</th><td class="l">{escape(v)}</td></tr>'
                               for k, v in rows) + "</table>"


def _assumptions(report: CapacityReport) -> str:
    facts = report.facts
    items = [
        ("Load model: closed at the Locust user — each user waits for a reply before its next request — while each "
        f"user plays {facts.devices_per_user} device(s) on policy-interval timers. As long as replies are fast, "
        "requests follow the devices' schedule (open-like arrivals); once a user falls behind, the load turns closed "
        "and throughput is capped at users ÷ response time."),
        (f"Time scale: the run compresses time {facts.time_scale:g}×, so one second of the run carries the requests "
        f"of {facts.time_scale:g} seconds of a real fleet; the clients figures are real-time clients."),
        ("Polling model: r = requests in the measured parts ÷ Σ(devices × seconds) × 3600 ÷ time scale requests per "
        "client per hour; a throughput X supports C = X × 3600 ÷ r clients."),
        ("The documented per-instance figures count simultaneous client connections; the run measures request "
        "throughput and latency. The notification channel each client holds open is not simulated: the port rule "
        "of the connection points stands in for it."),
        (f"The measured figure is of the system under test on this machine with {facts.cmg_instances} CMG "
        "instance(s); it transfers to Azure VM sizes only as a ceiling the proxy chain itself imposes."),
    ]
    items += list(facts.assumptions)
    return "<h3>Assumptions</h3><ul>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"


def _method(report: CapacityReport) -> str:
    return (
        "<ul>"
        "<li><b>Steps</b>: consecutive stats-history rows with the same user count. The first "
        f"{report.settle:g} s of each step (never more than half of it) are dropped — new devices install and "
        "register there. "
        + ("Requests, failures, mean and percentiles are those of the step's own HTTP requests, merged from the "
           "per-second response-time histograms of its measured part (percentiles as Locust computes them)."
           if report.source == "histograms" else
           "Requests, failures and the mean come from differences of Locust's cumulative counts and means over the "
           "rest, so they are exact for the step; percentiles are the median of Locust's ~10 s window percentiles "
           "at the step's rows whose window lies inside the measured part"
           + (", mixed over HTTP endpoints by their requests in each window."
              if report.source == "endpoints" else " (lifecycle stage entries included)."))
        + "</li>"
        "<li><b>Knee</b>: the step before the first whose added users bring less than "
        f"{MIN_MARGINAL_EFFICIENCY:.0%} of the first step's throughput per user, or whose p95 exceeds "
        f"{LATENCY_FACTOR:g}× the first step's by at least {LATENCY_FLOOR_MS:g} ms.</li>"
        f"<li><b>USL fit</b>: least squares over (users, req/s) of the steps, σ in [0, 1], κ ≥ 0, only with at "
        f"least {MIN_POINTS} steps; λ in closed form, σ and κ by grid and pattern search.</li>"
        "<li><b>Generator check</b>: Locust's CPU warning in locust.log, and each step's throughput against "
        "users ÷ (response time + Z), with Z the first step's time between a user's requests not spent waiting; a "
        "step below 75 % of that, to the end of the run, lost time outside the measured responses (steps measured "
        "for under 20 s are not judged).</li>"
        "</ul>")
