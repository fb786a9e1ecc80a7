"""Injected clocks: every piece of logic reads time through a ``Clock``, never ``time.time()`` directly."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""A clock is any zero-argument callable returning seconds since the Unix epoch (UTC)."""


def system_clock() -> float:
    """The real wall clock."""
    return time.time()


class FakeClock:
    """A clock that only moves when a test tells it to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += seconds
