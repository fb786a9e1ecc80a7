"""The one error of the command line."""

from __future__ import annotations


class CliError(Exception):
    """A one-line message for the user: ``main`` prints it as ``cmg-harness: <message>`` and exits with status 2."""
