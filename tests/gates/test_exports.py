"""``harness.gates``' public names, and that it stays free of Locust (the CLI imports it)."""

from __future__ import annotations

import subprocess
import sys

import harness.gates


def _isort_key(name: str) -> tuple[int, str]:
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_sorted_constants_classes_functions_and_complete() -> None:
    """``__all__`` lists each public name once, constants then classes then functions, each alphabetically."""
    names = harness.gates.__all__
    assert names == sorted(set(names), key=_isort_key)
    assert all(getattr(harness.gates, name) is not None for name in names)


def test_importing_gates_does_not_import_locust() -> None:
    """Parsing and judging gates never pulls Locust (and its gevent patching) into the process."""
    code = ("import sys, harness.gates, harness.load.exporter\n"
            "harness.gates.parse_gate('thresholds:\\n  run: [renewals >= 1]\\n  \"*\":\\n"
            "    - {threshold: p95 < 5, window: 5s}\\n')\n"
            "print(sorted(m for m in ('locust', 'gevent') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
