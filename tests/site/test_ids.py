"""Message ids: version-4 GUIDs drawn from an injected generator, reproducible from its seed."""

from __future__ import annotations

import random
import uuid

from cmg_protocol.ids import braced_guid, guid


def test_guids_are_version_4_rfc_4122_and_reproducible() -> None:
    """Every id parses as a version-4 RFC 4122 UUID and the same seed gives the same ids."""
    ids = [guid(random.Random(7)) for _ in range(2)]
    assert ids[0] == ids[1]
    rng = random.Random(1)
    for _ in range(1000):
        parsed = uuid.UUID(guid(rng))
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_braced_guids_are_upper_case_in_braces() -> None:
    """CCM messaging writes message ids as {UPPER-CASE-GUID}."""
    text = braced_guid(random.Random(3))
    assert text.startswith("{") and text.endswith("}") and text[1:-1] == text[1:-1].upper()
    uuid.UUID(text[1:-1])
