"""The gate file language: what it accepts, and every mistake refused before a run with ``file:line``."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.fleet import driver
from harness.gates import STAGES, GateFileError, load_gate, parse_gate, parse_selector

STS = "/CCM_Proxy_ServerAuth/72186325152220500/CCM_STS"


def refusal(text: str) -> GateFileError:
    with pytest.raises(GateFileError) as caught:
        parse_gate(text, "gates/ci.yaml")
    return caught.value


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ('thresholds:\n  "*":\n    - p59 < 500\n', 3, "unknown metric 'p59'"),
    ('thresholds:\n  "*":\n    - p95 < 500\n  requests:\n    - p95 < 500\n', 4, "unknown selector 'requests'"),
    ("thresholds:\n  stage:install:\n    - p95 < 500\n", 2, "unknown lifecycle stage 'install'"),
    ('thresholds:\n  "*":\n    - failure_ratio > 1.5\n', 3, "can never hold"),
    ('thresholds:\n  "*":\n    - p95 < -1\n', 3, "can never hold"),
    ('thresholds:\n  "*":\n    - count == 0.5\n', 3, "can never hold"),
    ('thresholds:\n  "*":\n    - failure_ratio <= 1\n', 3, "always holds"),
    ("thresholds:\n  run:\n    - unexpected_outcomes >= 0\n", 3, "always holds"),
    ("thresholds:\n  run:\n    - p95 < 500\n", 3, "metric 'p95' does not apply to selector 'run'"),
    ('thresholds:\n  "*":\n    - failure_ratio < 5ms\n', 3, "unit 'ms' does not fit 'failure_ratio'"),
    ('thresholds:\n  "*":\n    - p95 less than 500\n', 3, "must read METRIC OPERATOR NUMBER"),
    ('thresholds:\n  "*":\n    - 500\n', 3, "must be text"),
    ('thresholds:\n  "*": []\n', 2, "lists no thresholds"),
    ('thresholds:\n  "*":\n    - threshold: p95 < 500\n      abort_on_fial: true\n', 4,
     "unknown threshold key 'abort_on_fial'"),
    ('thresholds:\n  "*":\n    - threshold: p95 < 500\n      abort_on_fail: sometimes\n', 4,
     "abort_on_fail must be true or false"),
    ('thresholds:\n  "*":\n    - threshold: p95 < 500\n      delay_abort_eval: 10s\n', 4, "needs abort_on_fail: true"),
    ('thresholds:\n  "*":\n    - window: 10s\n', 3, "needs a 'threshold' key"),
    ("thresholds:\n  run:\n    - threshold: renewals >= 1\n      window: 30s\n", 4, "a window applies to request"),
    ('thresholds:\n  "*":\n    - threshold: p95 < 500\n      window: 2.5s\n', 4, "window must be whole seconds"),
    ('thresholds:\n  "*":\n    - threshold: p95 < 500\n      window: soon\n', 4, "window: duration must look like"),
    ('thresholds:\n  "*":\n    - p95 < 500\n    - p95  <  500\n', 4, "is already on line 3"),
    ('thresholds:\n  "*":\n    - p95 < 500\n  "*":\n    - p99 < 900\n', 4, "appears twice"),
    ('treshold:\n  "*":\n    - p95 < 500\n', 1, "unknown key 'treshold'"),
    ("name: ci\n", 1, "no 'thresholds' mapping"),
    ("", 1, "the gate file is empty"),
    ('thresholds:\n  "*": [p95 < 500\n', 3, "not valid YAML"),
    ("thresholds:\n  - p95 < 500\n", 2, "'thresholds' must be a mapping"),
])
def test_a_mistake_is_refused_naming_file_and_line(text: str, line: int, fragment: str) -> None:
    """Typos, unknown selectors, impossible or vacuous comparisons and bad options are refused at their line."""
    error = refusal(text)
    assert error.line == line
    assert fragment in error.message
    assert str(error).startswith(f"gates/ci.yaml:{line}: ")


def test_an_unknown_metric_suggests_the_nearest_names() -> None:
    """A misspelt metric name comes back with the closest real names."""
    assert "did you mean 'failure_ratio'" in refusal('thresholds:\n  "*": [failure_rate < 0.1]\n').message


def test_a_vacuous_ratio_limit_hints_at_fractions() -> None:
    """``failure_ratio <= 1`` (meant as 1 %) is refused with a hint at 0.01 or 1%."""
    assert "1%" in refusal('thresholds:\n  "*": [failure_ratio <= 1]\n').message


@pytest.mark.parametrize(("expression", "metric", "limit"), [
    ("p95 < 500", "p95", 500.0), ("p95 < 500ms", "p95", 500.0), ("p99 <= 1.5s", "p99", 1500.0),
    ("failure_ratio <= 1%", "failure_ratio", 0.01), ("failure_ratio <= 0.01", "failure_ratio", 0.01),
    ("rps >= 50", "rps", 50.0), ("count > 0", "count", 0.0), ("avg != 0", "avg", 0.0), ("max<2e3", "max", 2000.0),
])
def test_expressions_are_read_in_their_units(expression: str, metric: str, limit: float) -> None:
    """Latency limits are held in ms (``s`` converts), ratios as fractions (``%`` converts)."""
    threshold = parse_gate(f'thresholds:\n  "*":\n    - "{expression}"\n').thresholds[0]
    assert (threshold.metric, threshold.limit) == (metric, pytest.approx(limit))


def test_a_full_gate_keeps_order_options_and_lines() -> None:
    """Each threshold keeps its selector, window, abort settings and the line it was written on."""
    gate = parse_gate("name: nightly\n"
                      "thresholds:\n"
                      '  "*":\n'
                      "    - p95 < 500ms\n"
                      "    - threshold: failure_ratio <= 5%\n"
                      "      window: 30s\n"
                      "      abort_on_fail: true\n"
                      "      delay_abort_eval: 10s\n"
                      "  stage:install+register: p95 < 3s\n"
                      "  run:\n"
                      "    - unexpected_outcomes == 0\n", "nightly.yaml")
    assert gate.name == "nightly"
    assert [t.id for t in gate.thresholds] == ["*: p95 < 500ms", "*: failure_ratio <= 5% over 30s",
                                               "stage:install+register: p95 < 3s", "run: unexpected_outcomes == 0"]
    assert [t.line for t in gate.thresholds] == [4, 5, 9, 11]
    windowed = gate.thresholds[1]
    assert (windowed.window, windowed.abort_on_fail, windowed.delay_abort_eval) == (30.0, True, 10.0)
    assert gate.longest_window == 30.0


def test_a_gate_is_named_after_its_file_unless_it_says_otherwise(tmp_path: Path) -> None:
    """Without ``name:`` the gate's name is the file's stem (the JUnit suite name)."""
    path = tmp_path / "smoke.yaml"
    path.write_text('thresholds:\n  "*": [p95 < 500]\n')
    assert load_gate(path).name == "smoke"


def test_a_missing_gate_file_is_refused_naming_it(tmp_path: Path) -> None:
    """A gate path that does not exist gives a GateFileError with the path."""
    with pytest.raises(GateFileError, match="nowhere.yaml"):
        load_gate(tmp_path / "nowhere.yaml")


@pytest.mark.parametrize(("selector", "method", "name", "matches"), [
    ("*", "POST", STS, True),
    ("*", "LIFECYCLE", "policy cycle", False),
    (STS, "POST", STS, True),
    ("/CCM_Proxy_ServerAuth/{id}/CCM_STS", "POST", STS, True),
    ("/CCM_Proxy_ServerAuth/{id}/CCM_STS", "POST", "/CCM_Proxy_ServerAuth/1/2/CCM_STS", False),
    ("/CCM_Proxy_ServerAuth/{id}/CCM_STS", "POST", STS + "/x", False),
    ("/{tenant}/oauth2/token", "POST", "/2ca9a796-a1a6-43ec-88f1-5935b32155c5/oauth2/token", True),
    ("/CCM_Proxy_ServerAuth/{id}/CCM_STS", "LIFECYCLE", "/CCM_Proxy_ServerAuth/1/CCM_STS", False),
    ("stage:policy cycle", "LIFECYCLE", "policy cycle", True),
    ("stage:policy cycle", "LIFECYCLE", "token renewal", False),
    ("stage:*", "LIFECYCLE", "token renewal", True),
    ("stage:*", "GET", "/x", False),
    ("run", "GET", "/x", False),
])
def test_selectors_pick_their_statistics_entries(selector: str, method: str, name: str, matches: bool) -> None:
    """``*`` takes every request (not the stages), ``{placeholder}`` one path segment, ``stage:`` the stages."""
    assert parse_selector(selector).matches(method, name) is matches


def test_the_known_stages_are_the_ones_the_load_users_time() -> None:
    """The stage names a gate accepts are exactly the LIFECYCLE entries the driver reports."""
    assert set(STAGES) == {driver.INSTALL_REGISTER, driver.TOKEN_RENEWAL, driver.POLICY_CYCLE}
