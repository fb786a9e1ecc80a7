"""The shipped default gate and CI examples: the gate parses, and each CI job's command line is a valid one."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from harness.cli import build_parser
from harness.gates import GATE_JUNIT, load_gate, parse_gate

ROOT = Path(__file__).resolve().parents[2]
CI_FILES = sorted((ROOT / "examples" / "ci").glob("*.yml"))


def _commands(node: object, shell: bool = False) -> list[str]:
    """Every ``cmg-harness ...`` line of a CI file's shell steps (GitHub ``run:``, GitLab ``script:``)."""
    if isinstance(node, dict):
        return [line for key, value in node.items() for line in _commands(value, key in ("run", "script"))]
    if isinstance(node, list):
        return [line for value in node for line in _commands(value, shell)]
    if isinstance(node, str) and shell:
        return [line.strip() for line in node.splitlines() if line.strip().startswith("cmg-harness ")]
    return []


def test_the_default_gate_parses_and_guards_latency_failures_and_outcomes() -> None:
    """examples/gates/default.yaml is valid and covers requests, stages and the run, with one live abort."""
    gate = load_gate(ROOT / "examples" / "gates" / "default.yaml")
    kinds = {threshold.selector.kind for threshold in gate.thresholds}
    assert {"all", "request", "stage", "run"} <= kinds
    assert any(threshold.abort_on_fail and threshold.window for threshold in gate.thresholds)


def test_the_open_model_gate_parses_and_uses_the_latency_book_metrics() -> None:
    """examples/gates/open-model.yaml is valid and gates corrected latency, lateness and the achieved rate, with a
    windowed per-endpoint rate ratio."""
    gate = load_gate(ROOT / "examples" / "gates" / "open-model.yaml")
    metrics = {threshold.metric for threshold in gate.thresholds}
    assert {"corrected_p99_ms", "lateness_p99_ms", "achieved_rate_ratio"} <= metrics
    assert any(threshold.metric == "achieved_rate_ratio" and threshold.selector.kind == "request" and threshold.window
               for threshold in gate.thresholds)


def test_the_latency_metrics_example_in_the_docs_parses() -> None:
    """The gate shown under 'Corrected latency, lateness and the achieved rate' in docs/gates.md is a valid one."""
    text = (ROOT / "docs" / "gates.md").read_text(encoding="utf-8")
    section = text.split("### Corrected latency, lateness and the achieved rate", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert "corrected_p99_ms" in example and parse_gate(example, "docs/gates.md").thresholds


def test_there_are_ci_examples() -> None:
    """examples/ci holds at least one CI job file."""
    assert CI_FILES


@pytest.mark.parametrize("path", CI_FILES, ids=lambda path: path.name)
def test_each_ci_job_runs_a_valid_gated_command_and_reports_its_junit_file(path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The job's cmg-harness line parses with the real CLI, names the default gate, and the JUnit path matches."""
    document = yaml.safe_load(path.read_text())
    (command,) = _commands(document)
    monkeypatch.chdir(ROOT)  # the job runs from a checkout's root
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert args.command == "run" and Path(args.gate.path) == Path("examples/gates/default.yaml")
    assert f"{args.out}/{GATE_JUNIT}" in path.read_text()
