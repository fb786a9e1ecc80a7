"""The verified-token cache: entries leave in expiry order, bounds evict the soonest-expiring, nothing is cleared
wholesale, and memory stays flat under a stream of tokens (an injected clock drives every test)."""

from __future__ import annotations

from typing import Any

import pytest

from cmg_protocol.clock import FakeClock
from mock_site.token_checks import ENTRY_OVERHEAD_BYTES, TokenCache

NOW = 1_750_000_000.0


def claims(exp: float) -> dict[str, Any]:
    return {"exp": exp, "smsid": "GUID:1"}


def test_an_entry_is_answered_until_its_exp() -> None:
    """A stored token is answered while valid and not after its ``exp``."""
    clock = FakeClock(NOW)
    cache = TokenCache(clock=clock)
    cache.put("a", claims(NOW + 60))
    assert cache.get("a") == claims(NOW + 60)
    clock.advance(60)
    assert cache.get("a") is None


def test_expired_entries_leave_without_being_looked_up_again() -> None:
    """Storing a new token sweeps out every expired one, whether or not anyone asks for it again."""
    clock = FakeClock(NOW)
    cache = TokenCache(clock=clock)
    for number in range(1000):
        cache.put(f"old{number}", claims(NOW + 10 + number % 7))
    assert len(cache) == 1000
    clock.advance(20)
    cache.put("new", claims(NOW + 3600))
    assert len(cache) == 1
    assert cache.approximate_bytes == len("new") + ENTRY_OVERHEAD_BYTES


def test_sweep_drops_what_expired_and_says_how_many() -> None:
    clock = FakeClock(NOW)
    cache = TokenCache(clock=clock)
    cache.put("soon", claims(NOW + 5))
    cache.put("later", claims(NOW + 50))
    clock.advance(10)
    assert cache.sweep() == 1
    assert cache.get("later") is not None and len(cache) == 1


def test_a_full_cache_evicts_the_soonest_expiring_not_everything() -> None:
    """At the entry bound the token closest to its expiry makes room; the others stay."""
    clock = FakeClock(NOW)
    cache = TokenCache(clock=clock, max_entries=3)
    cache.put("t300", claims(NOW + 300))
    cache.put("t100", claims(NOW + 100))
    cache.put("t200", claims(NOW + 200))
    cache.put("t400", claims(NOW + 400))
    assert len(cache) == 3
    assert cache.get("t100") is None
    assert all(cache.get(token) is not None for token in ("t200", "t300", "t400"))


def test_the_byte_bound_holds_with_long_tokens() -> None:
    """Bounded by approximate bytes too: long tokens make room for each other before the entry bound is reached."""
    clock = FakeClock(NOW)
    limit = 10 * (4096 + ENTRY_OVERHEAD_BYTES)
    cache = TokenCache(clock=clock, max_entries=1000, max_bytes=limit)
    for number in range(50):
        cache.put(f"{number:04d}" + "x" * 4092, claims(NOW + 1000 + number))
    assert len(cache) == 10
    assert cache.approximate_bytes <= limit
    assert cache.get("0049" + "x" * 4092) is not None and cache.get("0000" + "x" * 4092) is None


def test_a_token_in_its_leeway_after_exp_is_not_stored() -> None:
    """A token verified after its exp (within the skew allowance) is not remembered: it would be stale at once."""
    clock = FakeClock(NOW)
    cache = TokenCache(clock=clock)
    cache.put("late", claims(NOW - 10))
    assert len(cache) == 0


def test_a_stream_of_tokens_keeps_the_cache_flat() -> None:
    """Tokens that live 60 s arriving 10 a second for an hour: the cache holds about one lifetime's worth, always."""
    clock = FakeClock(NOW)
    cache = TokenCache(clock=clock)
    sizes = []
    for number in range(36_000):
        cache.put(f"token-{number}", claims(clock() + 60))
        clock.advance(0.1)
        if number % 6000 == 5999:
            sizes.append(len(cache))
    assert max(sizes) <= 601 and min(sizes) >= 599


@pytest.mark.parametrize("entries, size", [(0, 1), (1, 0)])
def test_bounds_below_one_are_refused(entries: int, size: int) -> None:
    with pytest.raises(ValueError, match="bounds"):
        TokenCache(clock=FakeClock(NOW), max_entries=entries, max_bytes=size)
