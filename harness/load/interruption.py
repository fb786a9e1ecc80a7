"""SIGINT and SIGTERM during ``cmg-harness run``: noted, not raised, so the run can stop its children and keep its results.

CI runners, ``timeout`` and process managers signal the run's PID alone, not its process group; the site and Locust
run in process groups of their own and hear of it only from the run. A handler that raised (Python's default for
SIGINT) could fire inside the clean-up itself and orphan a child; instead the first signal is recorded and the run's
wait loops look at it, and later ones are absorbed while the run stops.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

#: The signals a run stops on, and the exit codes a shell gives a process they end (128 + the signal's number).
SIGNALS = (signal.SIGINT, signal.SIGTERM)
INTERRUPTED_EXIT_CODES = frozenset(128 + int(signum) for signum in SIGNALS)


class Interruption:
    """The first SIGINT or SIGTERM a run received while :meth:`catching` (None: none yet)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def interrupted(self) -> bool:
        return self.signum is not None

    @property
    def signal_name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int | None:
        """128 + the signal's number, as a shell reports a process the signal ended (130 SIGINT, 143 SIGTERM)."""
        return None if self.signum is None else 128 + self.signum

    def note(self, signum: int, frame: FrameType | None = None) -> None:
        """The signal handler: remember the first signal; the run's loops act on it."""
        if self.signum is None:
            self.signum = signum

    @contextlib.contextmanager
    def catching(self) -> Iterator[Interruption]:
        """Note SIGINT and SIGTERM instead of their default action inside the block (main thread only: elsewhere
        Python cannot take signals, and the caller's handlers stay)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {signum: signal.signal(signum, self.note) for signum in SIGNALS}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
