"""The parser every command shares and the option types that check values as they are read.

A bad value becomes :class:`~harness.cli.errors.CliError` through the parser (``argument --users: users must be
1..1000000, got 0``); ``--help`` shows each option's default, taken from where the default is defined.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any, NoReturn

from harness.cli.errors import CliError
from harness.units import parse_duration_seconds, parse_ramp, parse_rate_per_second


class Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are CliErrors (one line, exit 2) instead of a usage dump and exit."""

    def error(self, message: str) -> NoReturn:
        raise CliError(message)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` after an option's help, except for switches and options without a default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default, text = action.default, action.help or ""
        unset = default is None or default is False or default == [] or default == argparse.SUPPRESS
        if unset or "%(default)" in text or "(default" in text:  # no default, or the help says it in words
            return action.help
        return super()._get_help_string(action)


def add_command(commands: Any, name: str, **kwargs: Any) -> Parser:
    """A subcommand parser with the shared parser class and help formatter."""
    parser: Parser = commands.add_parser(name, formatter_class=HelpFormatter, **kwargs)
    return parser


def positive_float(name: str) -> Callable[[str], float]:
    """argparse type: a finite number > 0."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{name} must be > 0, got {text!r}")
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{name} must be a finite number, got {text!r}")
        return value
    return parse


def non_negative_float(name: str) -> Callable[[str], float]:
    """argparse type: a finite number >= 0."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"{name} must be >= 0, got {text!r}")
        return value
    return parse


def int_range(name: str, low: int, high: int) -> Callable[[str], int]:
    """argparse type: a whole number from ``low`` to ``high``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{name} must be {low}..{high}, got {value}")
        return value
    return parse


def count_at_least(name: str, low: int) -> Callable[[str], int]:
    """argparse type: a whole number >= ``low``, written with or without thousands separators (``100,000``)."""
    def parse(text: str) -> int:
        try:
            value = int(text.replace(",", "").replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{name} must be >= {low}, got {text!r}")
        return value
    return parse


def rate_text(text: str) -> str:
    """argparse type: a rate (``20``, ``20/s``, ``1200/m``), checked and kept as written for Locust."""
    try:
        parse_rate_per_second(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def ramp_text(text: str) -> str:
    """argparse type: ramp stages (``10/s:1m,50/s:2m``), checked and kept as written for Locust."""
    try:
        parse_ramp(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def duration_text(text: str) -> str:
    """argparse type: a duration, checked and kept as written for Locust."""
    duration_seconds(text)
    return text


def duration_seconds(text: str) -> float:
    """argparse type: a duration (``90``, ``90s``, ``2m``, ``1h30m``) in seconds."""
    try:
        return parse_duration_seconds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
