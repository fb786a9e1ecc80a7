"""Random GUIDs from an injected generator: message ids on the request path, cheaper than ``uuid4``'s system call."""

from __future__ import annotations

import random


def guid(rng: random.Random) -> str:
    """A version-4-shaped GUID in lower case, drawn from ``rng``."""
    value = rng.getrandbits(128)
    value = (value & ~(0xF000 << 64) | (0x4000 << 64)) & ~(0xC000 << 48) | (0x8000 << 48)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def braced_guid(rng: random.Random) -> str:
    """A GUID in the ``{UPPER-CASE}`` form CCM messaging uses for message ids."""
    return "{" + guid(rng).upper() + "}"
