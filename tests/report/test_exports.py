"""The public surface of harness.report."""

from __future__ import annotations

import harness.report


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted and every name in it exists."""
    names = harness.report.__all__
    assert names == sorted(names)
    assert all(hasattr(harness.report, name) for name in names)


def test_write_report_is_exported() -> None:
    """The one call a run needs at its end: write_report(results_dir) -> Path."""
    assert "write_report" in harness.report.__all__


def test_importing_the_report_leaves_locust_out() -> None:
    """The report reads files only: importing it must not pull in Locust (and its gevent patching)."""
    import subprocess
    import sys

    code = "import sys, harness.report, harness.cli.report\nprint('locust' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False"
