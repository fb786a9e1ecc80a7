"""``cmg-harness report RUN_DIR``: write the HTML report of a run (``report.html``), and the capacity report of a step
run (``capacity-report.html``) with its key figures; ``--capacity`` writes the capacity report alone."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.cli.errors import CliError
from harness.cli.options import add_command, count_at_least, non_negative_float, positive_float
from harness.report.recommend import DEFAULT_LATENCY_TARGET_MS, DEFAULT_TARGET_CLIENTS
from harness.report.steps import DEFAULT_SETTLE
from harness.results.layout import CAPACITY_REPORT, RUN_REPORT


def add_report_command(commands: Any) -> None:
    """The ``report`` subcommand."""
    parser = add_command(commands, "report",
                         help="write the HTML report of a run (and the capacity report of a step-load run)")
    parser.add_argument("results_dir", type=Path, metavar="RUN_DIR",
                        help="the results directory of a cmg-harness run")
    parser.add_argument("--capacity", action="store_true",
                        help="only the capacity report of a step-load run (cmg-harness run --locustfile capacity.py)")
    parser.add_argument("--target-clients", type=count_at_least("target clients", 1), default=DEFAULT_TARGET_CLIENTS,
                        help="capacity report: fleet size to size for")
    parser.add_argument("--latency-target-ms", type=positive_float("latency target"),
                        default=DEFAULT_LATENCY_TARGET_MS,
                        help="capacity report: p95 latency a step must keep to count as served")
    parser.add_argument("--settle", type=non_negative_float("settle"), default=DEFAULT_SETTLE,
                        help="capacity report: seconds dropped at the start of each step (at most half a step)")
    parser.add_argument("--out", type=Path,
                        help=f"the HTML file to write (default: RUN_DIR/{RUN_REPORT}, with --capacity "
                             f"RUN_DIR/{CAPACITY_REPORT})")


def cmd_report(args: argparse.Namespace) -> int:
    """Write the reports; 0 on success, CliError when the results cannot be used (one line saying why)."""
    from harness.report import ReportError
    from harness.report.run_html import write_run_report
    from harness.report.run_report import build_run_report

    try:
        if args.capacity:
            _capacity(args, args.out)
            return 0
        run = build_run_report(args.results_dir)
        unusable = None
        if run.step_run:  # first, so the run report links to it
            try:
                _capacity(args, None)
            except ReportError as error:
                unusable = f"no capacity report: {error}"
        out = write_run_report(args.results_dir, out=args.out)
        print(f"run report: {out}")
        if unusable is not None:
            raise CliError(unusable)
    except ReportError as error:
        raise CliError(str(error)) from None
    except OSError as error:
        raise CliError(f"cannot write the report: {error}") from None
    return 0


def _capacity(args: argparse.Namespace, out: Path | None) -> None:
    """The capacity report and its key figures; a run without steps is refused by saying what the section needs."""
    from harness.report import build_report, save_report, summary_lines
    from harness.report.run_report import RunReportError, build_run_report
    from harness.results.layout import ResultsDir

    try:
        run = build_run_report(args.results_dir)
    except RunReportError:
        run = None  # a plain Locust run (no summary.json) can still have steps: the capacity report judges
    if run is not None and not run.step_run:
        search = " (its capacity search is in report.html)" if run.capacity_search else ""
        raise CliError(f"{args.results_dir} is not a step run{search}: the capacity section needs a step run "
                       "(cmg-harness run --locustfile capacity.py --steps N) or a capacity search (cmg-harness run "
                       "--capacity)")
    report = build_report(args.results_dir, target_clients=args.target_clients,
                          latency_target_ms=args.latency_target_ms, settle=args.settle)
    path = save_report(report, Path(out) if out is not None else ResultsDir(Path(args.results_dir)).file(CAPACITY_REPORT))
    print("\n".join(summary_lines(report)))
    print(f"capacity report: {path}")
