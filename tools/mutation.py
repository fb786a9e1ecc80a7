"""Mutation testing for the trust-critical modules: plant one small bug at a time, run only the tests that cover it.

A mutant *survives* when its tests still pass: either the tests are too weak there, or the change makes no observable
difference (an equivalent mutant, explained in tools/mutation_equivalents.toml). Score = killed / all mutants.

Why our own runner rather than mutmut 3: mutmut reads one project-wide configuration (one test selection for every
module) and copies the tree into ``mutants/``; here each module runs with only its own tests, under a total time budget,
and survivors are matched against a reviewed list of equivalent mutants.

How it runs: the parent imports pytest and the heavy third-party libraries once, never a project module; each mutant runs
in a forked child that installs the mutated code object for its module (an import hook) and runs pytest on the module's
tests with ``-x``. The child's exit status decides: 0 survived, anything else (or a timeout) killed.

    ./dev mutation                         every configured module, report in results/mutation/report.md
    ./dev mutation --module cmg_protocol/tokens.py --jobs 2 --budget 600
    ./dev mutation --ci                    the fixed CI sample (token and URL-map modules), fails under --min-score
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fnmatch
import importlib.abc
import importlib.machinery
import importlib.util
import os
import random
import signal
import sys
import time
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import CodeType, ModuleType

from tools.mutants import Mutant, Outcome, mutants_of, mutated_code

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS = Path(__file__).resolve().parent / "mutation_equivalents.toml"

#: module (path from the repository root) -> the tests that cover it. Fast, in-process tests only: a mutant run is
#: repeated hundreds of times, so a test that starts a whole site belongs here only when nothing cheaper covers the code.
TARGETS: dict[str, tuple[str, ...]] = {
    "cmg_protocol/tokens.py": ("tests/protocol/test_tokens.py", "tests/trust/test_token_trust.py"),
    "cmg_protocol/urlmap.py": ("tests/protocol/test_urlmap.py", "tests/trust/test_urlmap_trust.py"),
    "mock_site/token_checks.py": ("tests/site/test_token_checks.py", "tests/trust/test_token_trust.py",
                                  "tests/trust/test_key_caches.py"),
    "mock_site/cmg.py": ("tests/trust/test_cmg_app.py",),
    "mock_site/connection_point.py": ("tests/trust/test_connection_point_app.py",),
    "mock_site/faults/registry.py": ("tests/site/test_faults_registry.py", "tests/trust/test_fault_probability.py",
                                     "tests/trust/test_fault_registry_edges.py"),
    "harness/chaos/verdicts.py": ("tests/chaos/test_verdicts.py", "tests/trust/test_verdict_tenants.py",
                                  "tests/trust/test_verdict_rules.py"),
    "harness/fleet/driver.py": ("tests/fleet/test_driver.py", "tests/latency/test_driver_timing.py",
                                "tests/trust/test_driver_spans.py", "tests/trust/test_driver_renewals.py"),
    "harness/gates/_spec.py": ("tests/gates/test_spec.py", "tests/trust/test_gate_spec.py",
                               "tests/trust/test_gate_boundary.py", "tests/gates/test_evaluate.py"),
    "harness/gates/_evaluate.py": ("tests/gates/test_evaluate.py", "tests/trust/test_gate_boundary.py",
                                   "tests/trust/test_gate_evaluation.py"),
    "mock_site/metrics/traffic.py": ("tests/site/test_metrics.py", "tests/trust/test_cmgservice_stats.py",
                                     "tests/trust/test_cmg_app.py"),
    "harness/report/knee.py": ("tests/report/test_knee.py", "tests/trust/test_knee_series.py"),
    "harness/report/fit.py": ("tests/report/test_fit.py", "tests/trust/test_usl_fit.py"),
    "cmg_protocol/clientauth.py": ("tests/protocol/test_clientauth.py", "tests/trust/test_clientauth_bounds.py"),
    "mock_site/hook_checks.py": ("tests/site/test_hook_checks.py",),
    "cmg_protocol/storage_urls.py": ("tests/protocol/test_storage_urls.py", "tests/trust/test_signed_url_window.py"),
    "cmg_protocol/site_tokens.py": ("tests/protocol/test_site_tokens.py", "tests/trust/test_site_token_window.py"),
    "mock_site/sts.py": ("tests/trust/test_ccm_sts.py",),
    "mock_site/storage.py": ("tests/trust/test_storage_app.py",),
    "mock_site/mp.py": ("tests/trust/test_mp_app.py", "tests/site/test_mp_request_cache.py",
                        "tests/site/test_sent_time.py"),
    "mock_site/mp_aut.py": ("tests/trust/test_mp_aut_app.py",),
    "mock_site/crl.py": ("tests/site/test_crl.py",),
    "mock_site/site_tokens.py": ("tests/trust/test_site_token_verifier.py", "tests/trust/test_site_token_window.py"),
    "harness/gates/_latency.py": ("tests/gates/test_latency_metrics.py", "tests/trust/test_latency_gate_edges.py"),
    "harness/plans/arrivals.py": ("tests/plans/test_arrivals.py", "tests/trust/test_arrival_schedule.py"),
    "harness/client/outcome.py": ("tests/client/test_outcome.py", "tests/client/test_lifecycle.py",
                                  "tests/trust/test_client_outcomes.py"),
    "harness/client/_tokens.py": ("tests/client/test_lifecycle.py", "tests/trust/test_client_outcomes.py"),
    "mock_site/pki/revocation.py": ("tests/trust/test_revocation_list.py",),
    "harness/report/recommend.py": ("tests/report/test_recommend.py", "tests/trust/test_recommendation_bounds.py"),
    "harness/latency/histograms.py": ("tests/latency/test_histograms.py", "tests/trust/test_latency_book.py"),
    "cmg_protocol/envelope.py": ("tests/protocol/test_envelope.py", "tests/trust/test_envelope_bounds.py"),
    "cmg_protocol/cms.py": ("tests/protocol/test_clientauth.py", "tests/trust/test_envelope_bounds.py"),
    "harness/results/stats.py": ("tests/gates/test_history.py", "tests/trust/test_results_stats.py"),
    "harness/chaos/recovery.py": ("tests/load/test_recovery.py", "tests/trust/test_recovery_edges.py"),
}
#: The fixed CI sample: these modules, at most this many mutants each, chosen by a fixed seed.
CI_MODULES = ("cmg_protocol/tokens.py", "cmg_protocol/urlmap.py", "cmg_protocol/clientauth.py", "harness/plans/arrivals.py")
CI_SAMPLE = 45
CI_SEED = 18
#: Imported once in the parent so that every forked child starts warm (third-party only: never a project module).
PRELOAD = ("pytest", "jwt", "cryptography.hazmat.primitives.asymmetric.rsa", "httpx", "starlette.applications",
           "hypothesis", "yaml", "prometheus_client")

# --- running ----------------------------------------------------------------------------------------------------------


class _MutantLoader(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves one module's mutated code object; every other import goes the normal way."""

    def __init__(self, name: str, path: str, code: CodeType) -> None:
        self.name, self.path, self.code = name, path, code

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        spec = importlib.util.spec_from_loader(fullname, self, origin=self.path)
        assert spec is not None
        spec.has_location = True
        if self.path.endswith("__init__.py"):
            spec.submodule_search_locations = [str(Path(self.path).parent)]
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        module.__file__ = self.path
        exec(self.code, module.__dict__)  # noqa: S102 (running the mutant is the point)


def module_name(module: str) -> str:
    parts = Path(module).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _child(root: Path, module: str, code: CodeType | None, tests: Sequence[str], test_timeout: float) -> int:
    """In a forked child: install the mutant and run the tests; the return value is the exit status."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    if code is not None:
        sys.meta_path.insert(0, _MutantLoader(module_name(module), str(root / module), code))
    import pytest

    args = ["-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-m", "not slow and not browser",
            "--timeout", str(int(test_timeout)), "--rootdir", str(root), *[str(root / t) for t in tests]]
    return int(pytest.main(args))


def run_mutants(root: Path, module: str, tests: Sequence[str], mutants: Sequence[Mutant | None], *, jobs: int,
                per_mutant_timeout: float, deadline: float) -> Iterator[tuple[Mutant | None, str, float]]:
    """Run each mutant (None: the unmutated baseline) in a forked child, ``jobs`` at a time, until ``deadline``."""
    source = (root / module).read_text()
    filename = str(root / module)
    pending = list(mutants)
    running: dict[int, tuple[Mutant | None, float]] = {}
    while pending or running:
        while pending and len(running) < jobs and time.monotonic() < deadline:
            mutant = pending.pop(0)
            code = mutated_code(mutant, source, filename) if mutant is not None else None
            pid = os.fork()
            if pid == 0:  # pragma: no cover (the child)
                status = 1
                try:
                    status = _child(root, module, code, tests, per_mutant_timeout)
                finally:
                    os._exit(status)
            running[pid] = (mutant, time.monotonic())
        if not running:
            for mutant in pending:  # the time budget ran out
                yield mutant, "skipped", 0.0
            return
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            now = time.monotonic()
            for child, (mutant, started) in list(running.items()):
                if now - started > per_mutant_timeout:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)
                    os.waitpid(child, 0)
                    del running[child]
                    yield mutant, "timeout", now - started
            time.sleep(0.02)
            continue
        if pid not in running:
            continue
        mutant, started = running.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        yield mutant, "survived" if code == 0 else "killed", time.monotonic() - started


# --- equivalents and the report -----------------------------------------------------------------------------------------


def load_equivalents(path: Path = EQUIVALENTS) -> dict[tuple[str, str], str]:
    """(module, mutant key) -> the reason the mutant cannot change behaviour."""
    if not path.exists():
        return {}
    data = tomllib.loads(path.read_text())
    return {(entry["module"], entry["mutant"]): entry["reason"] for entry in data.get("equivalent", [])}


def equivalent_reason(equivalents: dict[tuple[str, str], str], module: str, key: str) -> str | None:
    """Why the mutant ``key`` of ``module`` is equivalent, or None. An entry's name may be a pattern (``*``): for the
    tuning constants of a numerical search, where one reason covers every such change in one function."""
    reason = equivalents.get((module, key))
    if reason is not None:
        return reason
    return next((reason for (m, pattern), reason in equivalents.items()
                 if m == module and "*" in pattern and fnmatch.fnmatchcase(key, pattern)), None)


@dataclasses.dataclass(slots=True)
class ModuleResult:
    module: str
    tests: tuple[str, ...]
    outcomes: list[Outcome]
    baseline_seconds: float

    def count(self, *statuses: str) -> int:
        return sum(1 for o in self.outcomes if o.status in statuses)

    @property
    def run(self) -> int:
        return len(self.outcomes) - self.count("skipped")

    @property
    def score(self) -> float:
        """Killed (timeouts count as killed) over the mutants that ran."""
        return 100.0 * self.count("killed", "timeout") / self.run if self.run else 0.0


def render_report(results: Sequence[ModuleResult], equivalents: dict[tuple[str, str], str], command: str) -> str:
    lines = ["# Mutation testing report", "", f"Command: `{command}`", "",
             "| module | mutants run | killed | survived (equivalent) | skipped (time) | score | score without equivalents |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        survivors = [o for o in r.outcomes if o.status == "survived"]
        explained = sum(1 for o in survivors if equivalent_reason(equivalents, r.module, o.mutant.key) is not None)
        killed = r.count("killed", "timeout")
        denominator = r.run - explained
        adjusted = 100.0 * killed / denominator if denominator else 100.0
        lines.append(f"| `{r.module}` | {r.run} | {killed} | {len(survivors)} ({explained}) | {r.count('skipped')} "
                     f"| {r.score:.1f} % | {adjusted:.1f} % |")
    for r in results:
        survivors = [o for o in r.outcomes if o.status == "survived"]
        lines += ["", f"## `{r.module}`", "", f"Tests: {', '.join(f'`{t}`' for t in r.tests)} "
                  f"(baseline {r.baseline_seconds:.1f} s)", ""]
        if not survivors:
            lines.append("No surviving mutants.")
            continue
        for o in sorted(survivors, key=lambda o: o.mutant.line):
            reason = equivalent_reason(equivalents, r.module, o.mutant.key)
            verdict = f"equivalent: {reason}" if reason else "**UNEXPLAINED**"
            lines.append(f"- line {o.mutant.line} `{o.mutant.key}` — {verdict}")
    return "\n".join(lines) + "\n"


def unexplained(results: Sequence[ModuleResult], equivalents: dict[tuple[str, str], str]) -> list[Mutant]:
    return [o.mutant for r in results for o in r.outcomes
            if o.status == "survived" and equivalent_reason(equivalents, r.module, o.mutant.key) is None]


def sample(mutants: Sequence[Mutant], size: int, seed: int) -> list[Mutant]:
    """A fixed, seeded sample in source order (all of them when there are fewer than ``size``)."""
    if len(mutants) <= size:
        return list(mutants)
    chosen = random.Random(seed).sample(range(len(mutants)), size)
    return [mutants[i] for i in sorted(chosen)]


def mutate_module(root: Path, module: str, tests: Sequence[str], *, jobs: int, deadline: float,
                  sample_size: int | None, seed: int, log: bool = True) -> ModuleResult:
    source = (root / module).read_text()
    mutants = mutants_of(module, source)
    if sample_size is not None:
        mutants = sample(mutants, sample_size, seed)
    started = time.monotonic()
    baseline = list(run_mutants(root, module, tests, [None], jobs=1, per_mutant_timeout=600, deadline=deadline + 600))
    baseline_seconds = time.monotonic() - started
    if baseline[0][1] != "survived":
        raise SystemExit(f"mutation: the tests of {module} fail without any mutant ({' '.join(tests)}); fix them first")
    per_mutant = max(15.0, 4 * baseline_seconds)
    outcomes: list[Outcome] = []
    for mutant, status, seconds in run_mutants(root, module, tests, mutants, jobs=jobs, per_mutant_timeout=per_mutant,
                                               deadline=deadline):
        assert mutant is not None
        outcomes.append(Outcome(mutant, status, seconds))
        if log and status == "survived":
            print(f"  survived: {module}:{mutant.line} {mutant.key}", file=sys.stderr)
    outcomes.sort(key=lambda o: o.mutant.index)
    return ModuleResult(module, tuple(tests), outcomes, baseline_seconds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev mutation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", action="append", choices=sorted(TARGETS), help="a module to mutate (repeatable)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel runners (default 2)")
    parser.add_argument("--budget", type=float, default=1800.0, help="total seconds; mutants left then are 'skipped'")
    parser.add_argument("--sample", type=int, default=None, help="at most this many mutants per module (seeded)")
    parser.add_argument("--seed", type=int, default=CI_SEED)
    parser.add_argument("--ci", action="store_true", help=f"the fixed CI sample: {', '.join(CI_MODULES)}, "
                        f"{CI_SAMPLE} mutants each")
    parser.add_argument("--min-score", type=float, default=None,
                        help="exit 1 when a module scores below this (equivalents excluded) or a survivor is unexplained")
    parser.add_argument("--report", type=Path, default=ROOT / "results" / "mutation" / "report.md")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.budget <= 0:
        parser.error(f"--budget must be > 0, got {args.budget}")
    modules = args.module or (list(CI_MODULES) if args.ci else list(TARGETS))
    sample_size = CI_SAMPLE if args.ci and args.sample is None else args.sample
    min_score = args.min_score if args.min_score is not None else (85.0 if args.ci else None)
    if args.list:
        for module in modules:
            for m in mutants_of(module, (ROOT / module).read_text()):
                print(f"{module}:{m.line} #{m.index} {m.key}")
        return 0
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    deadline = time.monotonic() + args.budget
    results = []
    for module in modules:
        print(f"mutation: {module} ...", file=sys.stderr)
        result = mutate_module(ROOT, module, TARGETS[module], jobs=args.jobs, deadline=deadline,
                               sample_size=sample_size, seed=args.seed)
        print(f"mutation: {module}: {result.score:.1f} % of {result.run} killed", file=sys.stderr)
        results.append(result)
    equivalents = load_equivalents()
    command = "./dev mutation " + " ".join(argv if argv is not None else sys.argv[1:])
    report = render_report(results, equivalents, command.strip())
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(report)
    print(report)
    print(f"mutation: report written to {args.report}", file=sys.stderr)
    if min_score is None:
        return 0
    failed = False
    for r in results:
        survivors = [o for o in r.outcomes if o.status == "survived"]
        explained = sum(1 for o in survivors if equivalent_reason(equivalents, r.module, o.mutant.key) is not None)
        denominator = r.run - explained
        adjusted = 100.0 * r.count("killed", "timeout") / denominator if denominator else 100.0
        if adjusted < min_score or r.count("skipped"):
            print(f"mutation: {r.module} scores {adjusted:.1f} % (< {min_score}) or ran out of time", file=sys.stderr)
            failed = True
    for m in unexplained(results, equivalents):
        print(f"mutation: unexplained survivor {m.module}:{m.line} {m.key}", file=sys.stderr)
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
