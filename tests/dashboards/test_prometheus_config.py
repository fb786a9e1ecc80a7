"""harness.dashboards: the scrape config rendered from a site manifest, Grafana variable substitution, and the lists
of expressions the dashboards and rules hold."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import dashboards
from harness.dashboards import (
    DASHBOARDS_DIR,
    LOCUST_JOB,
    SITE_JOB,
    DashboardError,
    Expression,
    PrometheusError,
    dashboard_expressions,
    prometheus_duration,
    recording_rules,
    render_prometheus_config,
    start_prometheus,
    to_promql,
    write_prometheus_config,
)
from mock_site.manifest import RoleUrl, SiteManifest
from mock_site.testing import example_manifest

ROLES = ("cmg", "cp", "mp", "sts", "entra", "crl")


def _manifest(urls: dict[str, str] | None = None) -> SiteManifest:
    """A manifest as a one-process site writes it: every role shares the control listener's /metrics."""
    urls = urls or {role: "http://127.0.0.1:41427/metrics" for role in ROLES}
    return example_manifest(Path("/state"), metrics_urls=tuple(RoleUrl(role, url) for role, url in urls.items()))


def _as_read(**metrics: Any) -> dict[str, Any]:
    """The decoded ``site.json`` of :func:`_manifest` with ``metrics_urls`` replaced (``{}``: the key removed)."""
    data = _manifest().to_dict()
    if metrics:
        data["metrics_urls"] = metrics["urls"]
    else:
        del data["metrics_urls"]
    return data


def _jobs(text: str) -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in yaml.safe_load(text)["scrape_configs"]}


def _targets(job: dict[str, Any]) -> list[str]:
    return [t for group in job["static_configs"] for t in group["targets"]]


def test_roles_sharing_one_endpoint_become_one_target() -> None:
    """A one-process site's six roles share one /metrics URL, scraped once (the role label tells them apart)."""
    job = _jobs(render_prometheus_config(_manifest()))[SITE_JOB]
    assert _targets(job) == ["127.0.0.1:41427"]
    assert (job["scheme"], job["metrics_path"]) == ("http", "/metrics")


def test_roles_on_their_own_ports_become_several_targets() -> None:
    """Roles served from separate ports are each a target of the site job."""
    job = _jobs(render_prometheus_config(_manifest({"cmg": "http://127.0.0.1:9101/metrics",
                                                    "mp": "http://127.0.0.1:9102/metrics"})))[SITE_JOB]
    assert _targets(job) == ["127.0.0.1:9101", "127.0.0.1:9102"]


def test_an_https_metrics_endpoint_trusts_the_site_ca() -> None:
    """A TLS metrics URL is scraped over https with the site's root CA from the manifest."""
    job = _jobs(render_prometheus_config(_manifest({"cmg": "https://127.0.0.1:9443/metrics"})))[SITE_JOB]
    assert job["scheme"] == "https"
    assert job["tls_config"] == {"ca_file": "/state/pki/ca.pem"}


def test_locust_exporters_are_a_job_of_their_own() -> None:
    """Locust exporters given as host:port land in the Locust job with the default /metrics path."""
    job = _jobs(render_prometheus_config(_manifest(), ["127.0.0.1:9646", "127.0.0.1:9647"]))[LOCUST_JOB]
    assert _targets(job) == ["127.0.0.1:9646", "127.0.0.1:9647"]
    assert job["metrics_path"] == "/metrics"


def test_a_locust_exporter_url_keeps_its_path() -> None:
    """A Locust exporter given as a URL keeps its own metrics path."""
    job = _jobs(render_prometheus_config(_manifest(), ["http://127.0.0.1:8089/stats/metrics"]))[LOCUST_JOB]
    assert job["metrics_path"] == "/stats/metrics"


def test_without_locust_exporters_the_locust_job_scrapes_nothing() -> None:
    """With no Locust targets the job stays, empty, so the config is the same shape in every run."""
    assert _targets(_jobs(render_prometheus_config(_manifest()))[LOCUST_JOB]) == []


def test_targets_of_different_paths_get_separate_jobs() -> None:
    """Targets that differ in scheme or path need separate scrape jobs; the extra one is numbered."""
    jobs = _jobs(render_prometheus_config(_manifest({"cmg": "http://127.0.0.1:1/metrics",
                                                     "cp": "http://127.0.0.1:2/other"})))
    assert _targets(jobs[SITE_JOB]) == ["127.0.0.1:1"]
    assert (_targets(jobs[f"{SITE_JOB}-2"]), jobs[f"{SITE_JOB}-2"]["metrics_path"]) == (["127.0.0.1:2"], "/other")


@pytest.mark.parametrize(("interval", "expected"), [(1, "1s"), (0.5, "500ms"), (2.25, "2250ms"), ("15s", "15s")])
def test_intervals_are_written_as_prometheus_durations(interval: float | str, expected: str) -> None:
    """Scrape interval, scrape timeout and rule evaluation interval all follow the requested interval."""
    settings = yaml.safe_load(render_prometheus_config(_manifest(), scrape_interval=interval))["global"]
    assert settings == {"scrape_interval": expected, "scrape_timeout": expected, "evaluation_interval": expected}


def test_the_config_loads_the_recording_rules() -> None:
    """The rendered config loads the recording rules file, relative to its own directory."""
    assert yaml.safe_load(render_prometheus_config(_manifest()))["rule_files"] == ["rules/cmg_recording.yml"]


def test_the_template_holds_no_address_or_port() -> None:
    """The checked-in prometheus.yml names no host or port: those come from the manifest only."""
    text = (DASHBOARDS_DIR / "prometheus.yml").read_text()
    assert not re.search(r"\b\d{1,3}(?:\.\d{1,3}){3}\b|localhost|:\d{2,5}\b", text)


@pytest.mark.parametrize(("manifest", "bad"), [
    (_as_read(), "'metrics_urls' is missing"),
    (_as_read(urls={}), "no metrics_urls"),
    (_as_read(urls={"cmg": "http://127.0.0.1/metrics"}), "http://127.0.0.1/metrics"),
    (_as_read(urls={"cmg": "ftp://127.0.0.1:21/metrics"}), "ftp://127.0.0.1:21/metrics"),
    (_as_read(urls={"cmg": 9100}), "9100"),
])
def test_an_unusable_manifest_is_refused_by_name(manifest: dict[str, Any], bad: str) -> None:
    """A manifest without usable metrics URLs raises DashboardError naming the bad value."""
    with pytest.raises(DashboardError, match=re.escape(bad)):
        render_prometheus_config(manifest)


@pytest.mark.parametrize("target", ["127.0.0.1", "http://127.0.0.1:x/metrics", ""])
def test_an_unusable_locust_target_is_refused_by_name(target: str) -> None:
    """A Locust target without a port raises DashboardError naming it."""
    with pytest.raises(DashboardError, match=re.escape(repr(target))):
        render_prometheus_config(_manifest(), [target])


@pytest.mark.parametrize("interval", ["5 seconds", "", 0, -1, True])
def test_an_unusable_interval_is_refused_by_name(interval: Any) -> None:
    """A scrape interval that is no Prometheus duration or positive number raises, naming it."""
    with pytest.raises(DashboardError, match=re.escape(repr(interval))):
        prometheus_duration(interval)


def test_writing_the_config_copies_the_rules(tmp_path: Path) -> None:
    """write_prometheus_config leaves prometheus.yml and the rules it loads side by side."""
    path = write_prometheus_config(tmp_path, _manifest(), scrape_interval=1)
    assert path == tmp_path / "prometheus.yml"
    assert "127.0.0.1:41427" in path.read_text()
    copied = (tmp_path / "rules" / "cmg_recording.yml").read_text()
    assert copied == (DASHBOARDS_DIR / "rules" / "cmg_recording.yml").read_text()


def test_starting_without_a_binary_says_so(tmp_path: Path) -> None:
    """start_prometheus with a binary that does not exist raises PrometheusError naming it."""
    write_prometheus_config(tmp_path, _manifest())
    with pytest.raises(PrometheusError, match="no-such-prometheus"):
        start_prometheus(tmp_path, binary="no-such-prometheus")


def test_starting_without_a_config_says_so(tmp_path: Path) -> None:
    """start_prometheus in a directory without prometheus.yml raises DashboardError naming the directory."""
    with pytest.raises(DashboardError, match=re.escape(str(tmp_path))):
        start_prometheus(tmp_path, binary=sys.executable)


@pytest.mark.skipif(dashboards.find_prometheus() is None, reason="the prometheus binary is absent (Debian package "
                                                                  "prometheus; ./dev installs it)")
def test_a_config_prometheus_refuses_is_reported_with_its_log(tmp_path: Path) -> None:
    """When Prometheus exits on a bad config, the error carries its log's last lines and no process is left."""
    (tmp_path / "prometheus.yml").write_text("scrape_configs: [{job_name: x, scrape_interval: nonsense}]\n")
    with pytest.raises(PrometheusError, match="exited with status"):
        start_prometheus(tmp_path, ready_timeout=20)


@pytest.mark.parametrize(("expr", "expected"), [
    ("rate(x[$__rate_interval])", "rate(x[1m])"),
    ("increase(x[$__range])", "increase(x[1h])"),
    ('x{endpoint=~"$endpoint"}', 'x{endpoint=~".*"}'),
    ('x{endpoint=~"${endpoint}"}', 'x{endpoint=~".*"}'),
    ('x{endpoint=~"${endpoint:regex}"}', 'x{endpoint=~".*"}'),
    ('x{endpoint=~"[[endpoint]]"}', 'x{endpoint=~".*"}'),
])
def test_grafana_variables_become_valid_promql(expr: str, expected: str) -> None:
    """Every spelling of a Grafana variable is replaced by its value or a built-in default."""
    assert to_promql(expr, {"endpoint": ".*"}) == expected


@pytest.mark.parametrize(("expr", "expected"), [
    ('label_values(cmg_requests_total{role="cmg"}, endpoint)', 'count by (endpoint) (cmg_requests_total{role="cmg"})'),
    ("label_values(role)", 'count by (role) ({role!=""})'),
])
def test_label_values_queries_become_promql(expr: str, expected: str) -> None:
    """A variable's label_values() query becomes the PromQL that lists the same label values."""
    assert to_promql(expr) == expected


def test_expressions_are_collected_from_targets_annotations_and_variables() -> None:
    """dashboard_expressions finds panel targets (rows' folded panels too), annotations and query variables."""
    dashboard = {
        "panels": [{"id": 1, "type": "row", "title": "r", "panels": [
            {"id": 2, "title": "inner", "targets": [{"refId": "A", "expr": "a"}]}]},
            {"id": 3, "title": "outer", "targets": [{"refId": "B", "expr": "b"}, {"refId": "C", "expr": ""}]}],
        "annotations": {"list": [{"name": "faults", "expr": "c"}, {"name": "builtin"}]},
        "templating": {"list": [{"name": "v", "type": "query", "query": {"query": "label_values(d)"}},
                                {"name": "datasource", "type": "datasource", "query": "prometheus"}]},
    }
    found = dashboard_expressions("x.json", dashboard)
    assert [e.expr for e in found] == ["a", "b", "c", "label_values(d)"]
    assert found[0] == Expression("x.json", "panel 2 'inner' target A", "a")


def test_recording_rules_are_listed_with_their_static_labels() -> None:
    """Each recording rule is listed once; the three latency quantiles differ by their quantile label."""
    records = [rule.where for rule in recording_rules()]
    assert len(records) == len(set(records)) == 9
    assert {r for r in records if "quantile" in r} == {
        f'role_endpoint:cmg_request_duration_seconds:quantile_rate1m{{quantile="{q}"}}' for q in ("0.5", "0.95", "0.99")}


def test_the_module_imports_without_locust() -> None:
    """harness.dashboards can be imported in a process that never loads Locust (or gevent's monkey-patching)."""
    code = "import sys, harness.dashboards; assert 'locust' not in sys.modules and 'gevent' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
