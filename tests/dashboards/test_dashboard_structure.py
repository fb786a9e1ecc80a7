"""The Grafana dashboards are well-formed: unique ids, units, a datasource variable, no hard-coded instance, and
every metric and label they name exists on the site, in the client-metrics contract or in the recording rules."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from harness.dashboards import (
    CLIENT_METRICS,
    DashboardError,
    dashboard_expressions,
    iter_panels,
    load_dashboards,
    recording_rules,
    to_promql,
    variable_values,
)
from mock_site.metrics import SiteMetrics
from mock_site.metrics.storage_egress import StorageEgress

DASHBOARDS = load_dashboards()
NAMES = sorted(DASHBOARDS)
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# PromQL words that look like metric names but are functions, keywords or aggregation modifiers.
PROMQL_WORDS = frozenset({
    "sum", "rate", "increase", "histogram_quantile", "by", "without", "or", "and", "unless", "count", "vector",
    "on", "ignoring", "group_left", "group_right", "bool", "max", "min", "avg", "label_values",
})


def _site_series() -> dict[str, set[str]]:
    """Every series name the site exposes, with its labels, from one event of each kind."""
    registry = CollectorRegistry()
    metrics = SiteMetrics("cmg", registry=registry)
    metrics.observe_request("/CCM_Proxy_ServerAuth/{id}/CCM_STS", "POST", 200, 10, 10, 0.01)
    metrics.request_started()
    metrics.fault_injected("latency")
    metrics.token_issued("ccm")
    metrics.token_rejected("expired")
    metrics.registration("created")
    metrics.crl_fetch("ok")
    metrics.forward_error("cp", "timeout")
    egress = StorageEgress(clock=lambda: 1.0)
    egress.served("GUID:A", 10)
    registry.register(egress)
    series: dict[str, set[str]] = {}
    for family in registry.collect():
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def _client_series() -> dict[str, set[str]]:
    series: dict[str, set[str]] = {}
    for name, (kind, labels) in CLIENT_METRICS.items():
        names = [f"{name}_bucket", f"{name}_sum", f"{name}_count"] if kind == "histogram" else [name]
        for series_name in names:
            series[series_name] = set(labels) | ({"le"} if series_name.endswith("_bucket") else set())
    return series


def _rule_series() -> dict[str, set[str]]:
    series: dict[str, set[str]] = {}
    for rule in recording_rules():
        name = rule.where.partition("{")[0]
        series.setdefault(name, {"role", "endpoint"}).update(re.findall(r'(\w+)="', rule.where))
    return series


KNOWN_SERIES = {**_site_series(), **_client_series(), **_rule_series()}


def _panels(name: str) -> list[dict[str, Any]]:
    return iter_panels(DASHBOARDS[name])


def _visual_panels(name: str) -> list[dict[str, Any]]:
    return [panel for panel in _panels(name) if panel.get("type") != "row"]


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (_strings(key) + _strings(value))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return []


def test_the_three_dashboards_are_there() -> None:
    """The overview, client lifecycle and capacity dashboards are all present."""
    assert NAMES == ["capacity.json", "client-lifecycle.json", "cmg-overview.json"]


def test_dashboard_uids_are_unique() -> None:
    """Each dashboard has its own uid, so all three can be imported into one Grafana."""
    uids = [DASHBOARDS[name]["uid"] for name in NAMES]
    assert len(set(uids)) == len(uids) and all(uids)


@pytest.mark.parametrize("name", NAMES)
def test_schema_version_is_modern(name: str) -> None:
    """Dashboards use schema version 39 (Grafana 10.4 / 11), with a title and no fixed database id."""
    dashboard = DASHBOARDS[name]
    assert dashboard["schemaVersion"] == 39
    assert dashboard["title"]
    assert dashboard["id"] is None


@pytest.mark.parametrize("name", NAMES)
def test_panel_ids_are_unique(name: str) -> None:
    """No two panels of a dashboard share an id (rows included)."""
    ids = [panel["id"] for panel in _panels(name)]
    assert len(ids) == len(set(ids)), ids


@pytest.mark.parametrize("name", NAMES)
def test_every_panel_has_a_unit(name: str) -> None:
    """Every panel sets a unit, and every unit override names one."""
    for panel in _visual_panels(name):
        config = panel["fieldConfig"]
        assert config["defaults"].get("unit"), panel["title"]
        for override in config.get("overrides", []):
            for prop in override["properties"]:
                if prop["id"] == "unit":
                    assert prop["value"], panel["title"]


@pytest.mark.parametrize("name", NAMES)
def test_datasource_is_a_template_variable(name: str) -> None:
    """The dashboard declares a Prometheus datasource variable named ``datasource``."""
    variables = {v["name"]: v for v in DASHBOARDS[name]["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


@pytest.mark.parametrize("name", NAMES)
def test_panels_and_queries_use_the_datasource_variable(name: str) -> None:
    """Every panel, target, annotation and query variable points at ``${datasource}``, never at a fixed uid."""
    dashboard = DASHBOARDS[name]
    users = [*_visual_panels(name), *dashboard["annotations"]["list"],
             *(v for v in dashboard["templating"]["list"] if v["type"] == "query")]
    users += [target for panel in _visual_panels(name) for target in panel["targets"]]
    assert users
    for user in users:
        assert user["datasource"] == DATASOURCE, user.get("title") or user.get("name") or user.get("refId")


@pytest.mark.parametrize("name", NAMES)
def test_no_hard_coded_instance_host_or_port(name: str) -> None:
    """No string in the dashboard names an instance label, a host address or a port."""
    forbidden = re.compile(r"\binstance\b|localhost|\b\d{1,3}(?:\.\d{1,3}){3}\b|:\d{2,5}\b")
    offending = [s for s in _strings(DASHBOARDS[name]) if forbidden.search(s)]
    assert offending == []


@pytest.mark.parametrize("name", NAMES)
def test_panels_fit_the_grid_without_overlapping(name: str) -> None:
    """Panels lie inside the 24-column grid and no two of them cover the same cell."""
    taken: dict[tuple[int, int], str] = {}
    for panel in _panels(name):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']!r} overlaps {taken[(x, y)]!r}"
                taken[(x, y)] = panel["title"]


@pytest.mark.parametrize("name", NAMES)
def test_every_panel_queries_something(name: str) -> None:
    """Every non-row panel has at least one target with an expression, and its refIds are unique."""
    for panel in _visual_panels(name):
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]


@pytest.mark.parametrize("name", NAMES)
def test_table_columns_rename_existing_queries(name: str) -> None:
    """A table's column renames refer to queries the panel has, so no column keeps a raw 'Value #X' header."""
    for panel in _visual_panels(name):
        for transformation in panel.get("transformations", []):
            if transformation["id"] == "organize":
                renamed = set(transformation["options"]["renameByName"])
                assert renamed == {f"Value #{t['refId']}" for t in panel["targets"]}, panel["title"]


@pytest.mark.parametrize("name", NAMES)
def test_every_variable_in_an_expression_is_defined(name: str) -> None:
    """Each ``$variable`` in an expression is a Grafana built-in or a variable of the dashboard."""
    values = variable_values(DASHBOARDS[name])
    for expression in dashboard_expressions(name, DASHBOARDS[name]):
        to_promql(expression.expr, values)  # raises DashboardError on an unknown variable


def test_an_undefined_variable_is_refused() -> None:
    """The variable check can fail: an expression using a variable nobody defined raises, naming it."""
    with pytest.raises(DashboardError, match=r"\$tenant"):
        to_promql('cmg_requests_total{tenant="$tenant"}', {})


def _metric_names(promql: str) -> set[str]:
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', promql)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_ranges))
    grouping = {label for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", without_ranges)
                for label in re.findall(r"\w+", group)}
    matchers = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", without_ranges))
    return {w for w in words - PROMQL_WORDS - grouping - matchers if not re.fullmatch(r"\d.*|e\d*", w)}


def _used_labels(promql: str) -> set[str]:
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', promql)
    grouping = {label for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", without_strings)
                for label in re.findall(r"\w+", group)}
    return grouping | set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", without_strings))


EXPRESSIONS = [(name, e) for name in NAMES for e in dashboard_expressions(name, DASHBOARDS[name])]


@pytest.mark.parametrize(("name", "expression"), EXPRESSIONS, ids=[f"{n}:{e.where}" for n, e in EXPRESSIONS])
def test_expressions_name_known_metrics_and_labels(name: str, expression: Any) -> None:
    """Every metric an expression reads exists, and every label it groups or filters by is one those metrics carry."""
    promql = to_promql(expression.expr, variable_values(DASHBOARDS[name]))
    metrics = _metric_names(promql)
    assert metrics, promql
    unknown = metrics - set(KNOWN_SERIES)
    assert not unknown, f"unknown metrics {sorted(unknown)} in {promql}"
    carried = set().union(*(KNOWN_SERIES[m] for m in metrics))
    assert _used_labels(promql) <= carried, f"labels {sorted(_used_labels(promql) - carried)} in {promql}"


def test_the_metric_check_catches_a_misspelt_name() -> None:
    """The name check can fail: a singular ``cmg_request_total`` is not a known series."""
    assert _metric_names("sum(rate(cmg_request_total[1m]))") - set(KNOWN_SERIES) == {"cmg_request_total"}


def test_the_overview_carries_fault_windows_as_annotations() -> None:
    """The CMG overview draws fault injections as an annotation from cmg_fault_injections_total."""
    annotations = DASHBOARDS["cmg-overview.json"]["annotations"]["list"]
    assert any("cmg_fault_injections_total" in a.get("expr", "") for a in annotations)


def test_client_panels_read_only_client_metrics() -> None:
    """The client lifecycle dashboard reads the cmg_client_* contract only, so it can live in its own Grafana folder."""
    for expression in dashboard_expressions("client-lifecycle.json", DASHBOARDS["client-lifecycle.json"]):
        promql = to_promql(expression.expr, variable_values(DASHBOARDS["client-lifecycle.json"]))
        assert all(m.startswith("cmg_client_") for m in _metric_names(promql)), promql


OBSERVABILITY_DOC = (Path(__file__).resolve().parents[2] / "docs" / "observability.md").read_text()


@pytest.mark.parametrize("metric", sorted(CLIENT_METRICS))
def test_the_client_metric_contract_is_documented(metric: str) -> None:
    """docs/observability.md names each client metric the dashboards expect, with its labels."""
    row = next((line for line in OBSERVABILITY_DOC.splitlines() if line.startswith(f"| `{metric}` |")), "")
    assert row, metric
    assert all(label in row for label in CLIENT_METRICS[metric][1])


@pytest.mark.parametrize("record", sorted({r.where.partition("{")[0] for r in recording_rules()}))
def test_every_recording_rule_is_documented(record: str) -> None:
    """docs/observability.md names each recorded series."""
    assert f"`{record}" in OBSERVABILITY_DOC
