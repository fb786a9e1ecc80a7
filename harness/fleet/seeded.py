"""The clients ``cmg-harness up --seed-clients N`` pre-registered, derived without reading the site database.

``SiteDatabase.seed_clients`` draws, for each client in turn, the Entra device id and then the SMSID from one
``random.Random``; ``cmg-harness up`` seeds that generator with :data:`SEED_CLIENTS_RNG_SEED`. Replaying the same
draws gives every Locust worker, on any host, the same device ids and client ids the site holds.
"""

from __future__ import annotations

import random
import uuid
from typing import NamedTuple

#: The seed ``cmg-harness up --seed-clients`` gives the generator it registers clients from.
SEED_CLIENTS_RNG_SEED = 0


class SeededClient(NamedTuple):
    """One pre-registered client: its Entra device id and the ``GUID:…`` client id (SMSID) the site gave it."""

    device_id: str
    smsid: str


class SeededFleet:
    """Seeded client ``i`` by index, drawn in the site's order and kept as two integers each."""

    def __init__(self, seed: int = SEED_CLIENTS_RNG_SEED) -> None:
        self._rng = random.Random(seed)
        self._draws: list[tuple[int, int]] = []

    def client(self, index: int) -> SeededClient:
        """The ``index``-th client (0-based) a site seeded with this generator registered."""
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"seeded client index must be an integer >= 0, got {index!r}")
        while len(self._draws) <= index:
            device_bits = self._rng.getrandbits(128)
            self._draws.append((device_bits, self._rng.getrandbits(128)))
        device_bits, smsid_bits = self._draws[index]
        device_id = str(uuid.UUID(int=device_bits, version=4))
        smsid = "GUID:" + str(uuid.UUID(int=smsid_bits, version=4)).upper()
        return SeededClient(device_id, smsid)
