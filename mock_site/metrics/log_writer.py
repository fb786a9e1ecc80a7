"""The periodic log writers: every period, one stats window drained into CMGService.log or the connection point log."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from mock_site.metrics.traffic import CMGServiceStats


class _Line(Protocol):
    def text(self) -> str: ...


class _Drainable(Protocol):
    def drain(self) -> Sequence[_Line]: ...


class _LineSink(Protocol):
    def info(self, text: str, *, file: str = "") -> None: ...


class StatsLogger:
    """Writes a stats window to a log every period: CMGService.log lines, or the connection point report."""

    def __init__(self, stats: _Drainable, writer: _LineSink, period_seconds: float) -> None:
        if not period_seconds > 0:
            raise ValueError(f"log period must be > 0 seconds, got {period_seconds!r}")
        self.stats = stats
        self.writer = writer
        self.period_seconds = period_seconds

    async def run(self) -> None:
        """Write one line per entry every ``period_seconds`` (real seconds: pass ``config.scaled(...)``) until cancelled."""
        while True:
            await asyncio.sleep(self.period_seconds)
            self.flush()

    def flush(self) -> int:
        """Write what the current window holds now (at shutdown); returns the number of lines written."""
        lines = self.stats.drain()
        for line in lines:
            self.writer.info(line.text())
        return len(lines)


class CMGServiceLogger(StatsLogger):
    """Writes the CMGService.log traffic line of every RequestUri once per period."""

    def __init__(self, stats: CMGServiceStats, writer: _LineSink, period_seconds: float) -> None:
        super().__init__(stats, writer, period_seconds)
