"""The docs stand alone: every file they link to is in the repository, and the fault reference is the catalogue."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mock_site.faults import CATALOGUE

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])


@pytest.mark.parametrize("page", DOCS, ids=lambda path: path.name)
def test_every_relative_link_names_a_file_of_the_repository(page: Path) -> None:
    """A Markdown link to a relative path points at something that exists (no citing a file the repo lacks)."""
    missing = [target for target in re.findall(r"\]\(([^)#\s]+)", page.read_text())
               if "://" not in target and not (page.parent / target).exists()]
    assert missing == []


def test_no_file_cites_the_design_notes_kept_outside_the_repository() -> None:
    """FAULTS.md and MEASUREMENTS.md are design notes outside the repository: the docs carry their content instead."""
    citing = [str(path.relative_to(ROOT)) for path in ROOT.rglob("*")
              if path.is_file() and path.suffix in (".md", ".py", ".yaml", ".yml")
              and not {".venv", ".git", "results", "state"} & set(path.relative_to(ROOT).parts)
              and re.search(r"(?<![\w/])(FAULTS|MEASUREMENTS)\.md", path.read_text(errors="replace"))
              and path != Path(__file__)]
    assert citing == []


def test_the_fault_reference_lists_every_fault_of_the_catalogue_with_its_expected_outcome() -> None:
    """docs/faults.md holds each server-side fault's row with the catalogue's own expected outcome."""
    text = (ROOT / "docs" / "faults.md").read_text()
    missing = [name for name, spec in CATALOGUE.items()
               if f"| `{name}` |" not in text or spec.expected_outcome not in text]
    assert missing == []


def test_every_fidelity_row_says_same_ours_or_differs_with_a_reason() -> None:
    """docs/fidelity.md is one table; each row's verdict is same, ours (not public), or differs: with its reason."""
    rows = [line for line in (ROOT / "docs" / "fidelity.md").read_text().splitlines()
            if line.startswith("| ") and not line.startswith(("| wire element", "| **", "| device"))]
    table = [row for row in rows if row.count(" | ") >= 3 and not row.startswith("| Entra") and not row.startswith(
        ("| PKI", "| bulk token"))]
    assert len(table) >= 40
    for row in table:
        verdict = row.rstrip(" |").rsplit(" | ", 1)[1].strip()
        assert verdict.startswith(("same", "ours (not public)", "differs: ")), row[:120]
        if verdict.startswith("differs"):
            assert len(verdict.removeprefix("differs: ").strip()) > 10, row[:120]
