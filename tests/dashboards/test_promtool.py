"""promtool agrees: every dashboard expression parses, the rules check and pass their unit tests, the rendered
config is valid, and the site's live /metrics follows Prometheus' naming conventions."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from harness.dashboards import (
    DASHBOARDS_DIR,
    RULE_FILES,
    RULES_TEST_FILE,
    Expression,
    dashboard_expressions,
    find_promtool,
    load_dashboards,
    to_promql,
    variable_values,
    write_prometheus_config,
)
from mock_site.testing import RunningSite, SiteClient

PROMTOOL = find_promtool()
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool is absent (Debian package prometheus; "
                                                         "./dev installs it)")
DASHBOARDS = load_dashboards()


def _promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], input=stdin, capture_output=True, check=False, text=True, timeout=60)


def _check_as_rules(tmp_path: Path, expressions: list[tuple[Expression, str]]) -> subprocess.CompletedProcess[str]:
    """promtool has no bare query parser in Debian 12's version, so each expression becomes a recording rule.

    One group per expression: promtool's error then names the panel or annotation it came from.
    """
    groups = [{"name": f"{e.source} {e.where}", "rules": [{"record": f"dashboard:expression_{i}", "expr": promql}]}
              for i, (e, promql) in enumerate(expressions)]
    path = tmp_path / "expressions.yml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    return _promtool("check", "rules", str(path))


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_dashboard_expression_parses(tmp_path: Path, name: str) -> None:
    """Each panel target, annotation and variable query is valid PromQL once Grafana's variables are substituted."""
    values = variable_values(DASHBOARDS[name])
    expressions = [(e, to_promql(e.expr, values)) for e in dashboard_expressions(name, DASHBOARDS[name])]
    result = _check_as_rules(tmp_path, expressions)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in result.stdout


def test_the_parse_check_rejects_bad_promql(tmp_path: Path) -> None:
    """The parse check can fail: an unbalanced expression is refused and the error names where it came from."""
    bad = Expression("broken.json", "panel 7 'typo' target A", "sum(rate(cmg_requests_total[1m])")
    result = _check_as_rules(tmp_path, [(bad, bad.expr)])
    assert result.returncode != 0
    assert "panel 7" in result.stdout + result.stderr


def test_the_recording_rules_check() -> None:
    """`promtool check rules` accepts the recording rules file."""
    result = _promtool("check", "rules", str(DASHBOARDS_DIR / RULE_FILES[0]))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_recording_rules_pass_their_unit_tests() -> None:
    """`promtool test rules` gives the expected CMGService numbers for known input series."""
    result = _promtool("test", "rules", str(DASHBOARDS_DIR / RULES_TEST_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rule_unit_tests_can_fail(tmp_path: Path) -> None:
    """The rule tests can fail: with one expected value changed, promtool reports the difference."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "cmg_recording.yml").write_text((DASHBOARDS_DIR / RULE_FILES[0]).read_text())
    altered = (DASHBOARDS_DIR / RULES_TEST_FILE).read_text().replace("value: 1.5", "value: 1.6")
    (rules_dir / "cmg_recording_test.yml").write_text(altered)
    result = _promtool("test", "rules", str(rules_dir / "cmg_recording_test.yml"))
    assert result.returncode != 0
    assert "role_endpoint:cmg_responses:rate1m" in result.stdout + result.stderr


def test_the_config_template_is_valid() -> None:
    """The checked-in prometheus.yml (empty targets) passes `promtool check config`."""
    result = _promtool("check", "config", str(DASHBOARDS_DIR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_rendered_config_is_valid(tmp_path: Path, site: RunningSite) -> None:
    """A config rendered from a running site's manifest, with a Locust target, passes `promtool check config`."""
    path = write_prometheus_config(tmp_path, site.manifest, ["127.0.0.1:9646"], scrape_interval=1)
    result = _promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_live_site_metrics_follow_the_naming_conventions(site: RunningSite) -> None:
    """`promtool check metrics` finds nothing to lint in a scrape of the site after real traffic."""
    with SiteClient(site.manifest) as client:
        device = client.register_device()
        client.policy(device.ccm_token, device.smsid)
        client.ccm_sts("not-a-token")
    scrape = httpx.get(site.manifest.metrics_url("cmg"), timeout=10).text
    assert "cmg_requests_total{" in scrape and "cmg_tokens_rejected_total{" in scrape
    result = _promtool("check", "metrics", stdin=scrape)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), result.stdout
