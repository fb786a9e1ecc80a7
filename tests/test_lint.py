"""The code stays lint-clean (ruff, with the rules pinned in pyproject.toml) and type-clean (mypy) on the packages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_ruff_finds_nothing() -> None:
    """ruff check over the whole tree reports no finding."""
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--quiet", "."], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(600)
def test_mypy_is_clean_on_the_packages() -> None:
    """mypy reports no error in mock_site and harness."""
    result = subprocess.run([sys.executable, "-m", "mypy", "mock_site", "harness"], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
