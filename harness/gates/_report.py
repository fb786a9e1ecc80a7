"""A gate's verdict for people and for CI: one line per threshold with ✓/✗, JUnit XML, and a JSON verdict."""

from __future__ import annotations

import re
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TextIO

from harness.gates._data import load_results
from harness.gates._evaluate import GateResult, ThresholdResult, evaluate
from harness.gates._spec import GATE_FAILED_EXIT, Gate
from harness.results.layout import GATE_JSON, GATE_JUNIT, ResultsDir
from harness.units import format_measure

PASS_MARK = "✓"
FAIL_MARK = "✗"


def describe(result: ThresholdResult) -> str:
    """``measured X, threshold Y`` plus the detail: the JUnit failure message and the end of a printed line."""
    threshold = result.threshold
    text = (f"measured {format_measure(result.measured, threshold.unit)}, threshold {threshold.metric} {threshold.op} "
            f"{format_measure(threshold.limit, threshold.unit)}")
    return f"{text} ({result.detail})" if result.detail else text


def format_results(result: GateResult) -> str:
    """The printed verdict: one line per threshold, then PASS or FAIL with the exit code."""
    width = max(len(item.threshold.id) for item in result.results)
    lines = [f"gate {result.gate.name} ({result.gate.path}):"]
    for item in result.results:
        mark = PASS_MARK if item.passed else FAIL_MARK
        lines.append(f"  {mark} {item.threshold.id.ljust(width)}  {describe(item)}")
    total = len(result.results)
    if result.passed:
        lines.append(f"gate PASS: {total} of {total} thresholds held")
    else:
        lines.append(f"gate FAIL: {len(result.failures)} of {total} thresholds crossed (exit {GATE_FAILED_EXIT})")
    return "\n".join(lines)


def junit_xml(result: GateResult) -> str:
    """JUnit XML with one test case per threshold; a crossed threshold's failure says measured against limit."""
    suites = ET.Element("testsuites", name="cmg-harness gate", tests=str(len(result.results)),
                        failures=str(len(result.failures)), errors="0")
    suite = ET.SubElement(suites, "testsuite", name=result.gate.name, tests=str(len(result.results)),
                          failures=str(len(result.failures)), errors="0", skipped="0", time="0")
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", name="gate_file", value=result.gate.path)
    for item in result.results:
        threshold = item.threshold
        case = ET.SubElement(suite, "testcase", classname=f"gate.{result.gate.name}", name=threshold.id,
                             file=result.gate.path, line=str(threshold.line), time="0")
        message = describe(item)
        if item.passed:
            ET.SubElement(case, "system-out").text = message
        else:
            failure = ET.SubElement(case, "failure", message=message, type="ThresholdCrossed")
            failure.text = f"{result.gate.path}:{threshold.line}: {threshold.id}: {message}"
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def output_names(gate: Gate) -> tuple[str, str]:
    """The verdict files of ``gate``, named after its file: ``gate-<stem>.json`` and ``gate-<stem>-junit.xml``.

    Judging a run again with another gate file then keeps the first gate's verdict next to the second."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(gate.path).stem).strip("._") or "gate"
    return f"gate-{stem}.json", f"gate-{stem}-junit.xml"


def write_outputs(result: GateResult, folder: Path) -> tuple[Path, Path]:
    """Write the verdict into ``folder`` under the gate file's names (see :func:`output_names`), and as the latest
    verdict under the fixed names ``gate.json`` and ``gate-junit.xml`` that CI jobs publish; the named paths."""
    latest_json, latest_junit = ResultsDir(folder).write_gate_verdict(result.to_dict(), junit_xml(result))
    json_name, junit_name = output_names(result.gate)
    json_path, junit_path = folder / json_name, folder / junit_name
    shutil.copyfile(latest_json, json_path)
    shutil.copyfile(latest_junit, junit_path)
    return json_path, junit_path


def check(gate: Gate, results_dir: str | Path, *, out: TextIO | None = None) -> GateResult:
    """Evaluate ``gate`` on a results directory, print the verdict (to stdout by default), write the files there."""
    out = out if out is not None else sys.stdout
    folder = Path(results_dir)
    result = evaluate(gate, load_results(folder))
    json_path, junit_path = write_outputs(result, folder)
    print(format_results(result), file=out)
    print(f"gate verdict in {json_path} and {junit_path} (the latest verdict also in {GATE_JSON} and {GATE_JUNIT})",
          file=out, flush=True)
    return result


def run_exit_code(run_exit: int, result: GateResult) -> int:
    """The exit code of ``cmg-harness run --gate``: a failed run (1) outranks a crossed threshold (3)."""
    return run_exit if run_exit != 0 else result.exit_code
