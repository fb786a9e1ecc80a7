"""The HTML templates are package data: every template file is matched by pyproject's package-data globs."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("package", ["harness.report", "harness.chaos"])
def test_every_template_is_installed_with_its_package(package: str) -> None:
    """A wheel carries the templates a package renders (setuptools installs only what package-data names)."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][package]
    directory = ROOT.joinpath(*package.split("."))
    templates = sorted(p.relative_to(directory) for p in (directory / "templates").iterdir() if p.is_file())
    assert templates, f"{package} has no templates"
    assert [t for t in templates if not any(t.match(pattern) for pattern in globs)] == []


def test_the_dependency_is_declared() -> None:
    """The templates need Jinja2 at run time, not only in the test environment."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.lower().startswith("jinja2") for d in dependencies)
