"""The verdict for people and CI: ✓/✗ lines, JUnit XML with one test case per threshold, a JSON verdict, exit codes."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.gates import GATE_FAILED_EXIT, GateResult, check, parse_gate, run_exit_code
from tests.gates.results import REAL_STS_ENTRY, write_results

GATE = ('thresholds:\n'
        '  "*":\n'
        '    - p95 < 500ms\n'
        '    - p99 < 50ms\n'
        '    - failure_ratio <= 1%\n'
        '  run:\n'
        '    - unexpected_outcomes == 0\n')


@pytest.fixture
def judged(tmp_path: Path) -> tuple[GateResult, Path, str]:
    """The sample gate judged on a results directory holding one real CCM_STS entry (p99 100 ms)."""
    folder = write_results(tmp_path / "results", [REAL_STS_ENTRY])
    printed = io.StringIO()
    result = check(parse_gate(GATE, "gates/ci.yaml"), folder, out=printed)
    return result, folder, printed.getvalue()


def test_each_threshold_is_printed_with_its_measurement_and_a_mark(judged: tuple[GateResult, Path, str]) -> None:
    """One ✓ or ✗ line per threshold with measured and limit, then the overall FAIL with exit code 3."""
    _, _, printed = judged
    lines = printed.splitlines()
    assert any(line.strip().startswith("✓ *: p95 < 500ms") and "measured 83 ms" in line for line in lines)
    assert any(line.strip().startswith("✗ *: p99 < 50ms") and "measured 100 ms, threshold p99 < 50 ms" in line
               for line in lines)
    assert "gate FAIL: 1 of 4 thresholds crossed (exit 3)" in lines


def test_junit_xml_has_one_test_case_per_threshold(judged: tuple[GateResult, Path, str]) -> None:
    """gate-junit.xml parses, and its cases are the gate's thresholds, in order."""
    result, folder, _ = judged
    root = ET.parse(folder / "gate-junit.xml").getroot()
    cases = root.findall("./testsuite/testcase")
    assert [case.get("name") for case in cases] == [t.id for t in result.gate.thresholds]
    assert root.get("tests") == "4" and root.get("failures") == "1"


def test_a_crossed_threshold_is_a_junit_failure_saying_measured_against_limit(
        judged: tuple[GateResult, Path, str]) -> None:
    """Only the crossed case carries <failure>, whose message gives the measured value and the threshold."""
    _, folder, _ = judged
    cases = ET.parse(folder / "gate-junit.xml").getroot().findall("./testsuite/testcase")
    failed = [case for case in cases if case.find("failure") is not None]
    assert [case.get("name") for case in failed] == ["*: p99 < 50ms"]
    failure = failed[0].find("failure")
    assert failure is not None
    assert failure.get("message") == "measured 100 ms, threshold p99 < 50 ms"
    assert (failure.text or "").startswith("gates/ci.yaml:4: ")


def test_the_json_verdict_holds_every_threshold_and_the_exit_code(judged: tuple[GateResult, Path, str]) -> None:
    """gate.json says failed, exit 3, and per threshold the measured value, limit, unit and line."""
    _, folder, _ = judged
    verdict = json.loads((folder / "gate.json").read_text())
    assert (verdict["passed"], verdict["exit_code"], verdict["failed"]) == (False, GATE_FAILED_EXIT, 1)
    p99 = verdict["results"][1]
    assert (p99["id"], p99["measured"], p99["limit"], p99["unit"], p99["line"], p99["passed"]) == \
        ("*: p99 < 50ms", 100.0, 50.0, "ms", 4, False)


def test_a_passing_gate_exits_0_and_a_failing_one_3(tmp_path: Path) -> None:
    """The exit code of a gate is 0 when every threshold holds and 3 (not Locust's 1, not usage's 2) otherwise."""
    folder = write_results(tmp_path, [REAL_STS_ENTRY])
    out = io.StringIO()
    passing = check(parse_gate('thresholds:\n  "*": [p99 < 500]\n'), folder, out=out)
    failing = check(parse_gate('thresholds:\n  "*": [p99 < 50]\n'), folder, out=out)
    assert (passing.exit_code, failing.exit_code) == (0, 3)


@pytest.mark.parametrize(("run_exit", "gate_passed", "expected"), [(0, True, 0), (0, False, 3), (1, False, 1),
                                                                   (1, True, 1)])
def test_a_failed_run_outranks_a_crossed_threshold(tmp_path: Path, run_exit: int, gate_passed: bool,
                                                   expected: int) -> None:
    """``run --gate`` exits 1 when the run itself failed, else 3 when the gate failed, else 0."""
    folder = write_results(tmp_path, [REAL_STS_ENTRY])
    limit = 500 if gate_passed else 50
    result = check(parse_gate(f'thresholds:\n  "*": [p99 < {limit}]\n'), folder, out=io.StringIO())
    assert run_exit_code(run_exit, result) == expected
