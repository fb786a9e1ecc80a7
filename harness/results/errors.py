"""The one error of reading a results directory."""

from __future__ import annotations


class ResultsError(ValueError):
    """A results directory lacks a file a reader needs, or holds one that is malformed; the message names it."""
