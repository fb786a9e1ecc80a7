"""The error every bad report input raises (a ValueError whose message names the bad value)."""

from __future__ import annotations


class ReportError(ValueError):
    """A results directory, file or parameter the capacity report cannot use; the message names it."""
