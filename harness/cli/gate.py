"""``cmg-harness gate FILE RESULTS_DIR``, and the gate file option ``cmg-harness run --gate`` shares with it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.cli.errors import CliError
from harness.cli.options import add_command
from harness.results.layout import SUMMARY


def gate_file(text: str) -> Any:
    """argparse type: the gate file at ``text``, read and checked before anything runs (errors name file:line)."""
    from harness.gates import GateFileError, load_gate

    try:
        return load_gate(text)
    except GateFileError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_gate_command(commands: Any) -> None:
    """The ``gate`` subcommand."""
    parser = add_command(commands, "gate",
                         help="judge an earlier run's results against a gate file (exit 3: crossed)")
    parser.add_argument("gate", type=gate_file, metavar="FILE", help="the gate file (YAML thresholds)")
    parser.add_argument("results", type=Path, metavar="RESULTS_DIR",
                        help="the results directory of an earlier `cmg-harness run`")


def cmd_gate(args: argparse.Namespace) -> int:
    """Judge an earlier run's results against a gate: 0 when every threshold holds, 3 when one is crossed."""
    from harness.gates import ResultsError, check

    try:
        result = check(args.gate, args.results)
    except ResultsError as error:
        raise CliError(str(error)) from None
    if (Path(args.results) / SUMMARY).is_file():
        from harness.report.run_html import report_after_run  # jinja2 only when there is a report to write

        report_after_run(Path(args.results), sys.stdout)  # again, now with this gate's verdict in it
    return result.exit_code
