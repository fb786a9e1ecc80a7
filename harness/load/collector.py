"""The garbage collector of a load-generating process, set so its pauses do not become the run's lateness.

A Locust process holding thousands of simulated devices has a large heap of long-lived objects (modules, the site's
trust material, device profiles, the latency book). CPython's full collections walk all of it; measured here they
stalled the event loop for tens of milliseconds at a time, and every request due during a stall is sent late — the
generator's own pause shows up as lateness (and as corrected latency) that the system under test never caused.

At test start the heap built so far is moved out of the collector's view (``gc.freeze``: those objects are kept and
never scanned again; plain reference counting still frees what the run drops), and young collections run less often.
Cyclic garbage made during the run is still collected.
"""

from __future__ import annotations

import gc

#: Allocations between young-generation collections (CPython's default is 700): fewer, equally short, pauses.
YOUNG_THRESHOLD = 20_000


def settle_heap() -> int:
    """Collect once, freeze what survives, raise the young threshold; the number of objects frozen."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    return gc.get_freeze_count()
