"""The packages' public surfaces: a sorted ``__all__`` of names that exist, and no Locust import on the way."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = [
    "cmg_protocol", "mock_site", "mock_site.faults", "mock_site.metrics", "mock_site.pki", "harness", "harness.chaos",
    "harness.cli", "harness.client", "harness.fleet", "harness.latency", "harness.plans", "harness.results",
]


def _isort_key(name: str) -> tuple[int, str]:
    # Constants, then classes, then functions (the order ruff's RUF022 keeps).
    if name.isupper():
        return (0, name)
    return (1, name) if name[0].isupper() else (2, name)


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_sorted_and_every_name_exists(package: str) -> None:
    """Each package re-exports a sorted ``__all__`` and every listed name is importable from it."""
    module = importlib.import_module(package)
    names = list(module.__all__)
    assert names == sorted(names, key=_isort_key)
    assert [name for name in names if not hasattr(module, name)] == []


def test_importing_the_packages_does_not_import_locust() -> None:
    """Site and harness code must not pull in Locust (gevent patches the whole process)."""
    code = "import sys, mock_site, harness, harness.client, harness.load; print('locust' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
