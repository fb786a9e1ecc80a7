"""The public surface of harness.client."""

from __future__ import annotations

import harness.client


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted (constants first, as ruff sorts) and every name in it exists."""
    names = harness.client.__all__
    assert names == sorted(names, key=lambda name: (not name.isupper(), name))
    assert len(set(names)) == len(names)
    assert all(hasattr(harness.client, name) for name in names)


def test_the_lifecycle_does_not_import_a_transport() -> None:
    """The sans-I/O core stays free of httpx (internals.md: the lifecycle never imports a transport)."""
    from harness.client import events, lifecycle

    for module in (lifecycle, events):
        assert "httpx" not in vars(module) and "transport" not in vars(module)
