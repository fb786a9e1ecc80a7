"""``cmg-harness``: up | run | client | faults | report | gate | dashboards | proxy-config.

One module per command group (``site``: up, faults, dashboards; ``run``: run, client; ``gate``; ``report``;
``proxy``). Every command reports a problem it cannot get past as :class:`~harness.cli.errors.CliError`, which
:func:`main` prints as one line, ``cmg-harness: <message>``, with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from harness.cli.errors import CliError
from harness.cli.gate import add_gate_command, cmd_gate
from harness.cli.options import HelpFormatter, Parser
from harness.cli.proxy import add_proxy_command, cmd_proxy_config
from harness.cli.report import add_report_command, cmd_report
from harness.cli.run import add_run_commands, cmd_client, cmd_run
from harness.cli.site import add_site_commands, cmd_dashboards, cmd_faults, cmd_up

__all__ = ["CliError", "build_parser", "main"]

#: The exit status of a usage error or of a problem named in one line.
USAGE_EXIT = 2

_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "client": cmd_client,
    "dashboards": cmd_dashboards,
    "faults": cmd_faults,
    "gate": cmd_gate,
    "proxy-config": cmd_proxy_config,
    "report": cmd_report,
    "run": cmd_run,
    "up": cmd_up,
}


def build_parser() -> argparse.ArgumentParser:
    """The ``cmg-harness`` parser with every subcommand."""
    parser = Parser(prog="cmg-harness", description="Chaos and load-testing harness for CMG-style proxies.",
                    formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_site_commands(commands)
    add_run_commands(commands)
    add_gate_command(commands)
    add_proxy_command(commands)
    add_report_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cmg-harness``; returns the process exit code."""
    try:
        args = build_parser().parse_args(argv)
        return _COMMANDS[args.command](args)
    except CliError as error:
        print(f"cmg-harness: {error}", file=sys.stderr)
        return USAGE_EXIT
    except KeyboardInterrupt:
        return 130
