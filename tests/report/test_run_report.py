"""The run report (``report.html``) from a real short chaos run's results, kept in ``data/run-cp-flap`` (a 45 s run of
6 users x 5 devices under ``scenarios/cp-flap.yaml`` with a three-threshold gate), and from variants built from it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.cli import main
from harness.client.stages import LIFECYCLE_REQUEST_TYPE
from harness.report.run_html import CHART_TITLES, render_run, report_after_run, write_run_report
from harness.report.run_report import RunReportError, build_run_report, over_time, verdict_rates
from harness.results.layout import ResultsDir
from tests.report.html_check import external_references, read_page

RUN = Path(__file__).parent / "data" / "run-cp-flap"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH = 1100


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A copy of the real run's results, free to change."""
    return Path(shutil.copytree(RUN, tmp_path / "run-cp-flap"))


def _summary(directory: Path) -> dict[str, object]:
    return json.loads((directory / "summary.json").read_text())


def _rewrite_summary(directory: Path, **changes: object) -> None:
    summary = _summary(directory)
    summary.update(changes)
    (directory / "summary.json").write_text(json.dumps(summary))


def _svgs(html: str) -> list[str]:
    return [part.split("</svg>")[0] for part in html.split("<svg")[1:]]


def test_the_report_is_well_formed_offline_and_has_no_script(run_dir: Path) -> None:
    """html.parser reads it cleanly; nothing is fetched from anywhere."""
    html = write_run_report(run_dir).read_text()
    page = read_page(html)
    assert page.errors == []
    assert external_references(page) == []
    assert "script" not in page.tags and "link" not in page.tags


def test_every_chart_is_drawn_with_the_fault_windows_shaded(run_dir: Path) -> None:
    """Four charts, each titled, each with the run's three cp_disconnected windows as shaded bands."""
    html = write_run_report(run_dir).read_text()
    charts = _svgs(html)
    assert len(charts) == len(CHART_TITLES) == 4
    for title, svg in zip(CHART_TITLES, charts, strict=True):
        assert f"<title>{title}</title>" in svg
        assert svg.count('<rect class="band"') == 3
        assert "cp_disconnected (cmg)" in svg
        assert "<polyline" in svg  # data drawn, not an empty plot


def test_the_cmgservice_table_has_every_request_uri(run_dir: Path) -> None:
    """One row per RequestUri of the summary, with its RequestCount."""
    html = write_run_report(run_dir).read_text()
    table = html[html.index("<h2>Requests (CMGService view)</h2>"):html.index("<h3>Latency per RequestUri")]
    rows = _summary(run_dir)["requests"]
    assert isinstance(rows, list) and rows
    assert table.count("<tr>") == len(rows) + 1
    for row in rows:
        assert f'<td class="l">{row["request_uri"]}</td><td>{row["request_count"]:,}</td>' in table


def test_stage_times_show_service_and_corrected_percentiles(run_dir: Path) -> None:
    """install+register: service p99 and corrected p99 from summary.json's latency.stages, side by side."""
    html = write_run_report(run_dir).read_text()
    stages = html[html.index("<h3>Stage times (ms)</h3>"):html.index("<h2>Verdicts</h2>")]
    measures = _summary(run_dir)["latency"]["stages"]["install+register"]  # type: ignore[index]
    row = stages[stages.index('<td class="l">install+register</td>'):]
    row = row[:row.index("</tr>")]
    assert f"<td>{measures['service_ms']['p99']:,.1f}</td>" in row
    assert f"<td>{measures['corrected_ms']['p99']:,.1f}</td>" in row


def test_verdicts_recovery_gate_and_plan_are_shown(run_dir: Path) -> None:
    """The verdict totals, a recovery row per window, the gate's verdict and the plan's seed and Locust version."""
    html = write_run_report(run_dir).read_text()
    assert '<b class="ok">225 expected</b>' in html
    recovery = html[html.index("<h3>Recovery per window</h3>"):html.index("<h2>Gates</h2>")]
    assert recovery.count('<td class="l">cp_disconnected</td>') == 3
    gates = html[html.index("<h2>Gates</h2>"):html.index("<h2>Run plan</h2>")]
    assert 'short (/tmp/wtb/gate.yaml): <span class="bad">FAIL</span>' in gates
    assert "failure_ratio &lt;= 1%" in gates  # escaped, not markup
    plan = html[html.index("<h2>Run plan</h2>"):]
    assert '<th class="l">seed</th><td class="l">1</td>' in plan
    assert "<td class=\"l\">2.47.0</td>" in plan


def test_the_rates_over_time_add_up_to_the_requests_of_the_history(run_dir: Path) -> None:
    """Each interval's rate times its length gives back every HTTP request the history holds (none lost, none
    counted twice), also when the history is thinned to fewer points."""
    points = ResultsDir(run_dir).read_stats_history()
    assert points is not None
    total = sum(e.num_requests for p in points for e in p.entries if e.method != LIFECYCLE_REQUEST_TYPE)
    for max_points in (600, 7):
        series = over_time(points, points[0].t, max_points=max_points)
        assert len(series) <= max_points
        previous = 0.0
        counted = 0.0
        for point in series:
            counted += point.requests_per_s * (point.t - previous)
            previous = point.t
        assert counted == pytest.approx(total)
    assert any(point.corrected_p99_ms is not None for point in over_time(points, points[0].t))


def test_verdict_rates_come_from_cumulative_counts() -> None:
    """Differences of the cumulative counts per second; a counter reset does not give negative rates."""
    counts = [{"t": 10.0, "expected": 0.0, "unexpected": 0.0}, {"t": 11.0, "expected": 4.0, "unexpected": 1.0},
              {"t": 13.0, "expected": 8.0, "unexpected": 5.0}, {"t": 14.0, "expected": 0.0, "unexpected": 0.0}]
    rates = verdict_rates(counts, 10.0)
    assert [(v.t, v.expected_per_s, v.unexpected_per_s) for v in rates] == [(1.0, 4.0, 1.0), (3.0, 2.0, 2.0),
                                                                            (4.0, 0.0, 0.0)]


def test_unexpected_verdicts_reach_their_chart(run_dir: Path) -> None:
    """Unexpected verdicts in the history are drawn as the chart's unexpected line."""
    lines = (run_dir / "verdict_history.jsonl").read_text().splitlines()
    changed = []
    for number, line in enumerate(lines):
        data = json.loads(line)
        data["unexpected"] = number  # one more every second
        changed.append(json.dumps(data))
    (run_dir / "verdict_history.jsonl").write_text("\n".join(changed) + "\n")
    report = build_run_report(run_dir)
    assert report.verdict_series is not None
    assert max(v.unexpected_per_s for v in report.verdict_series) > 0.5
    verdict_chart = _svgs(render_run(report))[3]
    assert 'stroke="#b3261e"' in verdict_chart


def test_without_a_verdict_history_the_chart_stays_and_says_so(run_dir: Path) -> None:
    """An older run without verdict_history.jsonl still gets all four charts and a note."""
    (run_dir / "verdict_history.jsonl").unlink()
    html = write_run_report(run_dir).read_text()
    assert len(_svgs(html)) == 4
    assert "This run left no verdict history" in html


def test_without_the_request_histograms_locusts_csv_history_stands_in(run_dir: Path) -> None:
    """No stats_history.jsonl: rates and service p99 from Locust's CSV history, no corrected latency."""
    (run_dir / "stats_history.jsonl").unlink()
    report = build_run_report(run_dir)
    assert "CSV history" in report.series_source
    assert report.series and all(point.corrected_p99_ms is None for point in report.series)
    assert sum(point.requests_per_s for point in report.series) > 0


@pytest.mark.parametrize(("result", "shown"), [
    ({"saturated": False, "passing_per_s": 40.0, "failing_per_s": None,
      "describe": "not saturated up to 40.0/s (no step failed; no claim beyond it)"},
     "not saturated up to 40.0/s (no step failed; no claim beyond it)"),
    ({"saturated": True, "passing_per_s": 40.0, "failing_per_s": 60.0,
      "describe": "capacity 50.0/s ± 10.0/s (passes at 40.0/s, fails at 60.0/s: corrected p99 over SLO)"},
     "capacity 50.0/s ± 10.0/s (passes at 40.0/s, fails at 60.0/s: corrected p99 over SLO)"),
])
def test_a_capacity_search_answer_is_shown(run_dir: Path, result: dict[str, object], shown: str) -> None:
    """capacity.json's answer (an interval, or 'not saturated up to X') and its steps."""
    step = {"intended_per_s": 40.0, "achieved_per_s": 39.5, "corrected_p99_ms": 12.0, "error_ratio": 0.0,
            "passed": True, "reasons": []}
    ResultsDir(run_dir).write_capacity_search({"hold_seconds": 12, "steps": [step], "result": result})
    html = write_run_report(run_dir).read_text()
    section = html[html.index("<h2>Capacity</h2>"):html.index("<h2>Run plan</h2>")]
    assert f"<b>{shown}</b>" in section
    assert "<td>40.0</td><td>39.5</td><td>12.0</td><td>0.0%</td>" in section


def test_a_run_without_a_capacity_answer_has_no_capacity_section(run_dir: Path) -> None:
    """A plain lifecycle run shows no capacity section at all."""
    assert "<h2>Capacity</h2>" not in write_run_report(run_dir).read_text()


def test_an_interrupted_run_is_marked(run_dir: Path) -> None:
    """summary.json's interrupted flag and signal head the page."""
    _rewrite_summary(run_dir, interrupted=True, signal="SIGTERM", passed=False, problems=["interrupted by SIGTERM"])
    html = write_run_report(run_dir).read_text()
    assert '<span class="status bad">INTERRUPTED</span>' in html
    assert "<b>Interrupted</b> by SIGTERM" in html


def test_report_command_writes_report_html_of_a_run(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`cmg-harness report RUN_DIR`: report.html, and no capacity report for a run without steps."""
    (run_dir / "report.html").unlink(missing_ok=True)
    assert main(["report", str(run_dir)]) == 0
    assert f"run report: {run_dir / 'report.html'}" in capsys.readouterr().out
    assert (run_dir / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert not (run_dir / "capacity-report.html").exists()


@pytest.mark.parametrize(("prepare", "argv", "message"), [
    (lambda d: (d / "summary.json").unlink(), [],
     "has no summary.json: not the results of a finished cmg-harness run"),
    (lambda d: shutil.rmtree(d), [], "not found"),
    (lambda d: (d / "summary.json").write_text("{not json"), [], "run summary"),
    (lambda d: None, ["--capacity"], "is not a step run: the capacity section needs a step run "
     "(cmg-harness run --locustfile capacity.py --steps N) or a capacity search (cmg-harness run --capacity)"),
])
def test_report_refuses_a_run_it_cannot_use_in_one_line(run_dir: Path, capsys: pytest.CaptureFixture[str],
                                                        prepare: object, argv: list[str], message: str) -> None:
    """Exit 2 and one line on stderr saying why; nothing written."""
    prepare(run_dir)  # type: ignore[operator]
    (run_dir / "report.html").unlink(missing_ok=True) if run_dir.exists() else None
    assert main(["report", str(run_dir), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not (run_dir / "report.html").exists()
    assert not (run_dir / "capacity-report.html").exists()


def test_after_a_run_a_report_that_cannot_be_made_says_why(tmp_path: Path) -> None:
    """The run's call never raises: it names the problem and the run stands."""
    lines: list[str] = []

    class Out:
        def write(self, text: str) -> None:
            lines.append(text)

        def flush(self) -> None:
            pass

    assert report_after_run(tmp_path, Out()) is None  # type: ignore[arg-type]
    assert "cmg-harness: no run report:" in "".join(lines) and "summary.json" in "".join(lines)


def test_a_broken_fault_window_is_named(run_dir: Path) -> None:
    """A fault window that ends before it starts is refused with the file and the record named."""
    _rewrite_summary(run_dir, fault_windows=[{"name": "cp_disconnected", "start": 10.0, "end": 5.0}])
    with pytest.raises(RunReportError, match=r"summary.json: fault_windows\[0\] ends before it starts"):
        build_run_report(run_dir)


def chromium_screenshot(page: Path, profile: Path, screenshot: Path) -> list[str]:
    """Draw ``page`` in headless Chromium to ``screenshot``; the console lines it logged (asserts it worked)."""
    assert CHROMIUM is not None
    result = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                             "--disable-component-update", "--disable-sync", "--no-first-run",
                             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                             f"--window-size={WIDTH},6000", f"--screenshot={screenshot}", page.as_uri()],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {screenshot}")
    return [line for line in result.stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (Debian's chromium)")
def test_the_run_report_renders_in_chromium_without_console_errors(run_dir: Path, tmp_path: Path,
                                                                   artifacts_dir: Path) -> None:
    """Headless Chromium draws the page (screenshot kept in the test's directory) and logs nothing."""
    page = write_run_report(run_dir)
    assert chromium_screenshot(page, tmp_path / "profile", artifacts_dir / "run-report.png") == []


CHAOS = "faults:\n  - fault: cp_disconnected\n    start: 6\n    duration: 4\n"
GATE = "name: quick\nthresholds:\n  run:\n    - unexpected_outcomes == 0\n"


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~20 s headless chaos run with a gate, through `cmg-harness run`."""
    import sys

    work = tmp_path_factory.mktemp("run")
    (work / "chaos.yaml").write_text(CHAOS)
    (work / "gate.yaml").write_text(GATE)
    out = work / "results"
    result = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--users", "4", "--duration", "20",
                             "--chaos", str(work / "chaos.yaml"), "--gate", str(work / "gate.yaml"),
                             "--out", str(out)], cwd=work, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return out


@pytest.mark.slow
def test_a_headless_run_leaves_locusts_report_and_ours(real_run: Path) -> None:
    """locust.html is Locust's; report.html is ours, written again after the gate with its verdict in it."""
    assert "locust" in (real_run / "locust.html").read_text().lower()
    html = (real_run / "report.html").read_text()
    assert "<h1>Run report — results" in html
    assert 'quick (' in html and '<span class="ok">PASS</span>' in html
    assert len(_svgs(html)) == 4
    assert all(svg.count('<rect class="band"') == 1 for svg in _svgs(html))
    summary = _summary(real_run)
    assert "report.html" in summary["files"] and "locust.html" in summary["files"]  # type: ignore[operator]


@pytest.mark.slow
def test_the_verdict_history_ends_at_the_runs_verdict_totals(real_run: Path) -> None:
    """verdict_history.jsonl, written each second on the master, ends with the counts summary.json holds."""
    history = ResultsDir(real_run).read_verdict_history()
    assert history is not None and len(history) >= 15
    verdicts = _summary(real_run)["verdicts"]
    assert history[-1]["expected"] == verdicts["expected"] > 0  # type: ignore[index]
    assert history[-1]["unexpected"] == verdicts["unexpected"]  # type: ignore[index]
    assert all(a["t"] < b["t"] and a["expected"] <= b["expected"] for a, b in zip(history, history[1:], strict=False))


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (Debian's chromium)")
def test_the_report_of_a_real_run_renders_in_chromium(real_run: Path, tmp_path: Path, artifacts_dir: Path) -> None:
    """The report a run wrote draws in headless Chromium with nothing on the console (screenshot kept)."""
    shot = artifacts_dir / "real-run-report.png"
    assert chromium_screenshot(real_run / "report.html", tmp_path / "profile", shot) == []


def test_unexpected_examples_are_shown_with_their_trails(run_dir: Path) -> None:
    """Each unexpected example: its kind, device, explanation and the exchanges that led to it."""
    summary = _summary(run_dir)
    verdicts = dict(summary["verdicts"])  # type: ignore[call-overload]
    verdicts["unexpected"] = 1
    verdicts["examples"] = {"unexpected_failure": [{
        "device": "CMGSIM-00007", "explanation": "cmg.503 while no fault was on",
        "trail": [["policy", "/SMS_MP/.sms_pol", 503, 4.2, "cmg.503"], ["sts", "CCM_STS", None, 0.0, "skipped"]]}]}
    _rewrite_summary(run_dir, verdicts=verdicts)
    html = write_run_report(run_dir).read_text()
    examples = html[html.index("<h3>Unexpected examples</h3>"):html.index("<h2>Fault windows")]
    assert '<td class="l">unexpected_failure</td><td class="l">CMGSIM-00007</td>' in examples
    assert "cmg.503 while no fault was on" in examples
    assert "policy 503 cmg.503 › sts - skipped" in examples


def test_a_step_run_gets_a_capacity_section_linking_its_capacity_report(tmp_path: Path) -> None:
    """A step run (capacity.py) shows the capacity key figures and links capacity-report.html beside it."""
    from tests.report.synthetic import Step, results_dir

    directory = results_dir(tmp_path / "steps", [Step(users=4 * (i + 1), seconds=20, rate=20 * (i + 1),
                                                      latency_ms=5.0) for i in range(4)])
    html = write_run_report(directory).read_text()
    section = html[html.index("<h2>Capacity</h2>"):html.index("<h2>Run plan</h2>")]
    assert "peak throughput" in section
    assert '<a href="capacity-report.html">capacity-report.html</a>' in section


def test_the_gate_monitor_writes_the_verdict_history_each_sample(tmp_path: Path) -> None:
    """One line per sample with the tally's cumulative verdict counts, beside stats_history.jsonl."""
    from types import SimpleNamespace

    from harness.load.gate_listener import GateMonitor

    counts = iter([(0, 0), (3, 1), (7, 2)])

    def snapshot() -> dict[str, object]:
        expected, unexpected = next(counts)
        return {"verdicts": {"expected": expected, "unexpected": unexpected}}

    clock = iter(float(1_000 + n) for n in range(10))
    monitor = GateMonitor(snapshot, clock=lambda: next(clock))
    options = SimpleNamespace(gate="", results_dir=str(tmp_path))
    environment = SimpleNamespace(parsed_options=options, runner=SimpleNamespace(stats=SimpleNamespace(entries={})))
    monitor.on_test_start(environment)
    monitor.sample()
    monitor.on_test_stop(environment)
    history = ResultsDir(tmp_path).read_verdict_history()
    assert history == [{"t": 1001.0, "expected": 0.0, "unexpected": 0.0},  # 1000: the test start
                       {"t": 1002.0, "expected": 3.0, "unexpected": 1.0},
                       {"t": 1003.0, "expected": 7.0, "unexpected": 2.0}]
