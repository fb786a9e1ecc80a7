"""The mutation runner itself: which mutants it plants, that it applies exactly one, and how it judges survivors."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cmg_mutation_tool", ROOT / "tools" / "mutation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


mutation = _load()

SOURCE = '''"""Doc."""
__all__ = ["f"]
LIMIT = 3


def f(x: int, flag: bool = True) -> bool:
    """Doc of f."""
    if x <= LIMIT and not flag:
        return x + 1 > 0
    return {"k": False}["k"] or f"{x}" == "1"
'''


def _run(code) -> dict:  # type: ignore[no-untyped-def]
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102
    return namespace


def test_the_operators_find_every_point_and_skip_docs_all_and_fstrings() -> None:
    """Comparisons, boolean operators, not, arithmetic, constants (named by key), returns and if-conditions."""
    keys = [m.key for m in mutation.mutants_of("m.py", SOURCE)]
    assert "<module>: const+1: 3" in keys and "<module>: const-1: 3" in keys
    assert "f: compare#0:<=-><: x <= LIMIT" in keys and "f: compare#0:>->>=: x + 1 > 0" in keys
    assert "f: and->or: x <= LIMIT and not flag" in keys
    assert "f: drop-not: not flag" in keys
    assert "f: binop:+->-: x + 1" in keys
    assert "f: flip-bool: 'k': False" in keys
    assert "f: flip-bool: flag: bool = True" not in keys and any(k.startswith("f: flip-bool: True") for k in keys)
    assert "f: negate-if: x <= LIMIT and not flag" in keys
    assert sum(k.startswith("f: return-None") for k in keys) == 2
    assert not any("Doc" in k or "__all__" in k or '"f"' in k for k in keys)


def test_each_mutant_changes_exactly_its_point() -> None:
    """Applying a mutant changes the behaviour it names and nothing else."""
    mutants = {m.key: m for m in mutation.mutants_of("m.py", SOURCE)}
    original = _run(compile(SOURCE, "m.py", "exec"))
    assert original["f"](1, False) is True and original["f"](1) is True and original["f"](5) is False
    flipped = _run(mutation.mutated_code(mutants["f: drop-not: not flag"], SOURCE, "m.py"))
    assert flipped["f"](1, True) is True and flipped["f"](1, False) is True  # 'and flag' at x=1: -> x + 1 > 0
    assert flipped["f"](5) is False
    limit = _run(mutation.mutated_code(mutants["<module>: const-1: 3"], SOURCE, "m.py"))
    assert limit["LIMIT"] == 2 and limit["f"](3, False) is False and original["f"](3, False) is True


def test_duplicate_mutants_are_numbered() -> None:
    """The same change to the same text twice in one function gets #2."""
    keys = [m.key for m in mutation.mutants_of("m.py", "def g(a, b):\n    return a < 1 or b < 1\n")]
    assert "g: const+1: 1" in keys and "g: const+1: 1 #2" in keys


def test_the_report_counts_equivalents_and_flags_the_unexplained() -> None:
    """Score counts every mutant; the adjusted score leaves the listed equivalents out; others are UNEXPLAINED."""
    m = mutation.mutants_of("m.py", SOURCE)
    outcomes = [mutation.Outcome(m[0], "killed", 1.0), mutation.Outcome(m[1], "survived", 1.0),
                mutation.Outcome(m[2], "survived", 1.0), mutation.Outcome(m[3], "timeout", 9.0)]
    result = mutation.ModuleResult("m.py", ("t.py",), outcomes, 1.0)
    equivalents = {("m.py", m[1].key): "cannot matter"}
    report = mutation.render_report([result], equivalents, "./dev mutation")
    assert result.score == 50.0
    assert "| `m.py` | 4 | 2 | 2 (1) | 0 | 50.0 % | 66.7 % |" in report
    assert "equivalent: cannot matter" in report and report.count("**UNEXPLAINED**") == 1
    assert mutation.unexplained([result], equivalents) == [m[2]]


def test_the_sample_is_fixed_by_the_seed() -> None:
    """The CI sample is the same every time for a seed, in source order."""
    m = mutation.mutants_of("m.py", SOURCE)
    assert mutation.sample(m, 3, 18) == mutation.sample(m, 3, 18)
    assert [x.index for x in mutation.sample(m, 3, 18)] == sorted(x.index for x in mutation.sample(m, 3, 18))
    assert mutation.sample(m, 100, 1) == m


def test_every_configured_module_and_test_exists() -> None:
    """The module -> tests table names files that exist, and the equivalents list only configured modules."""
    for module, tests in mutation.TARGETS.items():
        assert (ROOT / module).is_file(), module
        assert all((ROOT / t).is_file() for t in tests), tests
    assert {module for module, _ in mutation.load_equivalents()} <= set(mutation.TARGETS)


def test_a_mutant_is_killed_and_the_baseline_survives(tmp_path: Path) -> None:
    """End to end on a tiny package: the unmutated code passes its test, a planted comparison flip fails it."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "calc.py").write_text("def below(x):\n    return x < 3\n")
    (tmp_path / "test_calc.py").write_text(
        "from pkg.calc import below\n\ndef test_below():\n    assert below(2) and not below(3)\n")
    sys.path.insert(0, str(tmp_path))
    try:
        mutants = mutation.mutants_of("pkg/calc.py", (tmp_path / "pkg" / "calc.py").read_text())
        results = {m.key if m else None: status for m, status, _ in mutation.run_mutants(
            tmp_path, "pkg/calc.py", ["test_calc.py"], [None, *mutants], jobs=2, per_mutant_timeout=60,
            deadline=float("inf"))}
    finally:
        sys.path.remove(str(tmp_path))
    assert results[None] == "survived"
    assert results["below: compare#0:<-><=: x < 3"] == "killed"
    assert results["below: const+1: 3"] == "killed" and results["below: return-None: return x < 3"] == "killed"


@pytest.mark.parametrize("argv", [["--jobs", "0"], ["--budget", "0"], ["--module", "no/such.py"]])
def test_bad_options_are_refused(argv: list[str]) -> None:
    """A bad option exits 2 with argparse's one-line error."""
    with pytest.raises(SystemExit) as stopped:
        mutation.main(argv)
    assert stopped.value.code == 2


def test_an_equivalent_may_name_a_pattern_of_mutants() -> None:
    """An entry with ``*`` covers every matching mutant of its module (and of no other module); exact names win."""
    equivalents = {("m.py", "g: const*"): "tuning", ("m.py", "g: const+1: 1"): "exact", ("n.py", "*"): "other"}
    assert mutation.equivalent_reason(equivalents, "m.py", "g: const+1: 1") == "exact"
    assert mutation.equivalent_reason(equivalents, "m.py", "g: const-1: 2") == "tuning"
    assert mutation.equivalent_reason(equivalents, "m.py", "g: and->or: a and b") is None
    assert mutation.equivalent_reason(equivalents, "m.py", "h: const+1: 1") is None
