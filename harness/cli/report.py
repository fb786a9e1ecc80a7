"""``cmg-harness report RESULTS_DIR``: write the capacity report of a step-load run and print its key figures."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.cli.errors import CliError
from harness.cli.options import add_command, count_at_least, non_negative_float, positive_float
from harness.report.recommend import DEFAULT_LATENCY_TARGET_MS, DEFAULT_TARGET_CLIENTS
from harness.report.steps import DEFAULT_SETTLE
from harness.results.layout import CAPACITY_REPORT


def add_report_command(commands: Any) -> None:
    """The ``report`` subcommand."""
    parser = add_command(commands, "report",
                         help="write the capacity-planning report (HTML) of a step-load run")
    parser.add_argument("results_dir", type=Path, metavar="RESULTS_DIR",
                        help="a results directory of a step-load run (cmg-harness run --locustfile capacity.py)")
    parser.add_argument("--target-clients", type=count_at_least("target clients", 1), default=DEFAULT_TARGET_CLIENTS,
                        help="fleet size to size for")
    parser.add_argument("--latency-target-ms", type=positive_float("latency target"),
                        default=DEFAULT_LATENCY_TARGET_MS, help="p95 latency a step must keep to count as served")
    parser.add_argument("--settle", type=non_negative_float("settle"), default=DEFAULT_SETTLE,
                        help="seconds dropped at the start of each step (at most half a step)")
    parser.add_argument("--out", type=Path, help=f"the HTML file to write (default: RESULTS_DIR/{CAPACITY_REPORT})")


def cmd_report(args: argparse.Namespace) -> int:
    """Write the report; 0 on success, CliError when the results cannot be used (one line naming the problem)."""
    from harness.report import ReportError, build_report, save_report, summary_lines
    from harness.results.layout import ResultsDir

    try:
        report = build_report(args.results_dir, target_clients=args.target_clients,
                              latency_target_ms=args.latency_target_ms, settle=args.settle)
        out = save_report(report, Path(args.out) if args.out is not None
                          else ResultsDir(Path(args.results_dir)).file(CAPACITY_REPORT))
    except ReportError as error:
        raise CliError(str(error)) from None
    except OSError as error:
        raise CliError(f"cannot write the report: {error}") from None
    print("\n".join(summary_lines(report)))
    print(f"capacity report: {out}")
    return 0
