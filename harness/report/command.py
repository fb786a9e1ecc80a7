"""``cmg-harness report RESULTS_DIR``: write the capacity report of a step-load run and print its key figures."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

from harness.report.capacity import REPORT_FILE, build_report, save_report, summary_lines
from harness.report.errors import ReportError
from harness.report.recommend import DEFAULT_LATENCY_TARGET_MS, DEFAULT_TARGET_CLIENTS
from harness.report.steps import DEFAULT_SETTLE


def _whole(name: str, low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.replace(",", "").replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{name} must be >= {low}, got {text!r}")
        return value
    return parse


def _number(name: str, *, allow_zero: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {text!r}")
        return value
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``cmg-harness report``."""
    parser.add_argument("results_dir", type=Path, metavar="RESULTS_DIR",
                        help="a results directory of a step-load run (cmg-harness run --locustfile capacity.py)")
    parser.add_argument("--target-clients", type=_whole("target clients", 1), default=DEFAULT_TARGET_CLIENTS,
                        help=f"fleet size to size for (default {DEFAULT_TARGET_CLIENTS:,})")
    parser.add_argument("--latency-target-ms", type=_number("latency target", allow_zero=False),
                        default=DEFAULT_LATENCY_TARGET_MS,
                        help=f"p95 latency a step must keep to count as served (default {DEFAULT_LATENCY_TARGET_MS:g})")
    parser.add_argument("--settle", type=_number("settle", allow_zero=True), default=DEFAULT_SETTLE,
                        help=f"seconds dropped at the start of each step (default {DEFAULT_SETTLE:g}; at most half "
                             "a step)")
    parser.add_argument("--out", type=Path, help=f"the HTML file to write (default RESULTS_DIR/{REPORT_FILE})")


def cmd_report(args: argparse.Namespace) -> int:
    """Write the report; 0 on success, 2 when the results cannot be used (one line naming the problem)."""
    try:
        report = build_report(args.results_dir, target_clients=args.target_clients,
                              latency_target_ms=args.latency_target_ms, settle=args.settle)
        out = save_report(report, Path(args.out) if args.out is not None else Path(args.results_dir) / REPORT_FILE)
    except ReportError as error:
        print(f"cmg-harness: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"cmg-harness: cannot write the report: {error}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(report)))
    print(f"capacity report: {out}")
    return 0
