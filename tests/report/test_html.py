"""The report page: one self-contained HTML file that parses, with its charts and tables and no network use."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from harness.report import ReportError, build_report, write_report
from harness.report.html import environment, render
from harness.report.svg import Band, Rule, Series, chart
from harness.results.layout import CAPACITY_REPORT
from tests.report.html_check import external_references, read_page
from tests.report.synthetic import START, Step, results_dir

STEPS = [Step(users=4 * (i + 1), seconds=20, rate=20 * (i + 1), latency_ms=5.0 + i) for i in range(5)]


def _page(tmp_path: Path, steps: list[Step] = STEPS, **kwargs: object) -> tuple[str, object]:
    directory = results_dir(tmp_path / "run", steps, **kwargs)  # type: ignore[arg-type]
    html = write_report(directory).read_text()
    return html, read_page(html)


def test_the_report_is_well_formed_html(tmp_path: Path) -> None:
    """html.parser reads the page with every element closed where it was opened."""
    _, page = _page(tmp_path)
    assert page.errors == []  # type: ignore[attr-defined]


def test_the_report_references_nothing_outside_itself(tmp_path: Path) -> None:
    """No src/href to the network, no scripts, no stylesheet links: it opens offline."""
    html, page = _page(tmp_path)
    assert external_references(page) == []  # type: ignore[arg-type]
    assert "script" not in page.tags and "link" not in page.tags  # type: ignore[attr-defined]
    assert "http://" not in html and "https://" not in html


def test_the_check_for_external_references_can_fail() -> None:
    """The reference check flags what a CDN-based report would contain."""
    page = read_page('<html><head><script src="https://cdn.example/x.js"></script></head><body></body></html>')
    assert external_references(page) == ["script src=https://cdn.example/x.js"]


def test_the_report_has_its_four_charts(tmp_path: Path) -> None:
    """Throughput vs users, latency vs throughput, percentiles over time, failures and fault windows."""
    _, page = _page(tmp_path)
    assert page.tags["svg"] == 4  # type: ignore[attr-defined]
    titles = {" ".join(t.split()) for t in page.text}  # type: ignore[attr-defined]
    assert {"Throughput vs users", "Latency percentiles vs throughput", "Percentiles over time",
            "Failures and fault windows over time"} <= titles


def test_the_step_table_has_a_row_per_step(tmp_path: Path) -> None:
    """Each step's users appear in the per-step table with its own throughput."""
    html, _ = _page(tmp_path)
    table = html[html.index("<h2>Per-step statistics</h2>"):html.index("<h2>Saturation")]
    assert table.count("<tr>") == len(STEPS) + 1
    assert "<td>100.00</td>" in table  # the fifth step's 100 req/s, not a run average


def test_the_recommendation_names_the_target_fleet(tmp_path: Path) -> None:
    """The default target is 50,000 clients; the Standard row needs 9 instances."""
    html, _ = _page(tmp_path)
    assert "<b>50,000</b> clients" in html
    assert '<td class="l">Standard (A2_v2), documented</td><td>6,000</td><td>9</td>' in html


def test_assumptions_state_model_time_scale_and_polling_interval(tmp_path: Path) -> None:
    """The page says it is a closed model, the time scale, and the policy interval in site time."""
    html, _ = _page(tmp_path)
    assert "Load model: closed" in html
    assert "1200 (site time runs 1200× faster)" in html
    assert "= 60 min of site time" in html
    assert "C = X × 3600 ÷ r" in html


def test_a_cpu_warning_in_the_locust_log_is_shown(tmp_path: Path) -> None:
    """Locust's CPU warning turns into a warning that the figures describe the generator."""
    html, _ = _page(tmp_path, locust_log="[x] WARNING/root: CPU usage above 90%! This may constrain your throughput\n")
    assert "the load generator was CPU-bound" in html


def test_no_cpu_warning_without_one_in_the_log(tmp_path: Path) -> None:
    """A clean log gives no generator warning."""
    html, _ = _page(tmp_path)
    assert "CPU-bound" not in html


def test_fault_windows_are_drawn_and_listed(tmp_path: Path) -> None:
    """Fault windows from summary.json become shaded bands and a table."""
    windows = [{"name": "crl_unreachable", "role": "crl", "start": START + 30, "end": START + 50}]
    html, _ = _page(tmp_path, fault_windows=windows)
    assert 'class="band"' in html
    assert "crl_unreachable (crl)" in html


def test_without_fault_windows_the_chart_says_so(tmp_path: Path) -> None:
    """A run without a chaos schedule omits the bands with a note."""
    html, _ = _page(tmp_path)
    assert 'class="band"' not in html
    assert "No fault windows recorded" in html


def test_too_few_steps_say_why_there_is_no_fit(tmp_path: Path) -> None:
    """Three steps: no USL fit, and the page says it needs four."""
    html, _ = _page(tmp_path, steps=STEPS[:3])
    assert "needs at least 4 steps" in html


def test_an_aggregated_only_history_is_flagged(tmp_path: Path) -> None:
    """Without histograms or per-endpoint rows the page warns that lifecycle entries are in the figures."""
    html, _ = _page(tmp_path, per_endpoint=False, with_request_log=False)
    assert "without --csv-full-history" in html


def test_histograms_make_the_aggregated_history_enough(tmp_path: Path) -> None:
    """With stats_history.jsonl the Aggregated-only CSV is no problem: figures are HTTP-only and exact."""
    html, _ = _page(tmp_path, per_endpoint=False)
    assert "without --csv-full-history" not in html
    assert "per-second request histograms (stats_history.jsonl)" in html


def test_the_report_goes_into_the_results_directory_by_default(tmp_path: Path) -> None:
    """write_report(RESULTS_DIR) writes RESULTS_DIR/capacity-report.html."""
    directory = results_dir(tmp_path / "run", STEPS)
    assert write_report(directory) == directory / CAPACITY_REPORT
    assert (directory / CAPACITY_REPORT).is_file()


def test_text_from_the_results_is_escaped(tmp_path: Path) -> None:
    """A fault name with markup is shown as text, not interpreted."""
    windows = [{"name": "<img src=x>", "start": START + 30, "end": START + 50}]
    html, page = _page(tmp_path, fault_windows=windows)
    assert "<img" not in html
    assert page.errors == []  # type: ignore[attr-defined]


def test_a_directory_without_a_stats_history_is_refused(tmp_path: Path) -> None:
    """No locust_stats_history.csv: a ReportError naming the file."""
    with pytest.raises(ReportError, match="locust_stats_history.csv"):
        build_report(tmp_path)


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    """A path that is not there is named."""
    with pytest.raises(ReportError, match="not found"):
        build_report(tmp_path / "absent")


def test_a_malformed_fault_window_is_refused(tmp_path: Path) -> None:
    """A fault window without an end is named with its index."""
    directory = results_dir(tmp_path / "run", STEPS, fault_windows=[{"name": "x", "start": START}])
    with pytest.raises(ReportError, match=r"fault_windows\[0\]"):
        build_report(directory)


def test_missing_run_facts_become_stated_assumptions(tmp_path: Path) -> None:
    """Without summary.json and site.json, time scale 1 and one device per user are assumed aloud."""
    directory = results_dir(tmp_path / "run", STEPS)
    (directory / "summary.json").unlink()
    (directory / "site" / "site.json").unlink()
    html = render(build_report(directory))
    assert "time scale not recorded" in html
    assert "devices per Locust user not recorded" in html


def test_a_fault_still_on_at_the_end_runs_to_the_end(tmp_path: Path) -> None:
    """A window without an end (the fault was on at the last poll) is drawn to the chart's edge."""
    windows = [{"name": "cp_disconnected", "role": "cp", "start": START + 30, "end": None}]
    html, page = _page(tmp_path, fault_windows=windows)
    assert 'class="band"' in html
    assert "<td>end of run</td>" in html
    assert page.errors == []  # type: ignore[attr-defined]


MALICIOUS = "<script>alert(1)</script>"


def test_markup_anywhere_in_the_results_comes_out_as_text(tmp_path: Path) -> None:
    """A directory name, locustfile, fault window name and role, warning and assumption holding markup are escaped."""
    windows = [{"name": MALICIOUS, "role": '"><img src=x onerror=alert(1)>', "start": START + 30, "end": START + 50}]
    directory = results_dir(tmp_path / "<b>run&amp;", STEPS, fault_windows=windows)
    summary = json.loads((directory / "summary.json").read_text())
    summary["plan"]["locustfile"] = f"/x/{MALICIOUS}.py"
    (directory / "summary.json").write_text(json.dumps(summary))
    report = build_report(directory)
    report = replace(report, warnings=(*report.warnings, MALICIOUS),
                     facts=replace(report.facts, assumptions=(MALICIOUS,)))
    html = render(report)
    page = read_page(html)
    assert "<script" not in html and "<img" not in html and "<b>run" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert page.errors == [] and "script" not in page.tags and "img" not in page.tags
    text = "\n".join(page.text)
    assert text.count(MALICIOUS) >= 5  # fault table, band label and its tooltip, warning, assumption, run table
    assert "<b>run&amp;" in text  # the directory name as written, not interpreted


def test_chart_texts_are_escaped_before_the_page_inserts_the_svg() -> None:
    """svg.chart escapes every text it writes (the templates insert its markup as is)."""
    svg = chart(title=MALICIOUS, x_label=MALICIOUS, y_label=MALICIOUS,
                series=[Series(MALICIOUS, ((0.0, 1.0), (1.0, 2.0)), color='"><script>x</script>', markers=True)],
                bands=[Band(0.2, 0.4, MALICIOUS)], x_rules=[Rule(0.5, MALICIOUS)], y_rules=[Rule(1.5, MALICIOUS)])
    assert "<script" not in svg
    page = read_page(svg)
    assert page.errors == [] and "script" not in page.tags
    assert sum(MALICIOUS in text for text in page.text) >= 7


def test_a_later_report_extends_the_base_with_the_same_look_and_escaping() -> None:
    """The report family's base template: shared style, a title and content block, autoescaping for every page."""
    page = environment().from_string(
        '{% extends "base.html.j2" %}{% block title %}{{ name }}{% endblock %}'
        "{% block content %}<h1>{{ name }}</h1>{% endblock %}").render(name=MALICIOUS)
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert page.count("&lt;script&gt;") == 2
    shared = environment().get_template("base.html.j2").render()
    style = shared[shared.index("<style>"):shared.index("</style>")]
    assert "svg.chart" in style and style in page
    source, _, _ = environment().loader.get_source(environment(), "capacity.html.j2")  # type: ignore[union-attr]
    assert '{% extends "base.html.j2" %}' in source
