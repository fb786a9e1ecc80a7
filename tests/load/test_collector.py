"""The load process's collector settings: the heap at test start is frozen, young collections are rarer."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from harness.load.collector import YOUNG_THRESHOLD, settle_heap


@pytest.fixture()
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_settling_freezes_the_live_heap_and_raises_only_the_young_threshold() -> None:
    gc.unfreeze()
    kept = [object() for _ in range(1000)]
    _, middle, old = gc.get_threshold()
    frozen = settle_heap()
    assert frozen == gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)


@pytest.mark.usefixtures("restored_collector")
def test_cycles_made_after_settling_are_still_collected() -> None:
    settle_heap()

    class Node:
        pass

    node = Node()
    node.self = node  # type: ignore[attr-defined]
    del node
    assert gc.collect() >= 1
