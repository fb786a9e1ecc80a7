"""Signed storage URLs at the edges of their validity: the clock leeway on both sides, the longest lifetime the site
signs, the shortest key, and a field given twice even when one copy is blank."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from cmg_protocol import storage_urls as su
from cmg_protocol.storage_urls import SignedUrlRejected, UrlSigner

KEY = b"k" * 32
START = 1_750_000_000.0
PATH = su.content_path("CS100001", "CS100001")
SEVEN_DAYS = 7 * 24 * 3600.0


def _signed(*, start: float = START, expiry: float = START + 600) -> tuple[str, str]:
    url = UrlSigner(KEY, issuer="urn:sccm:cmg:1").sign("https://127.0.0.1:8444/", PATH, tenant_id="t",
                                                       object_id="GUID:A", start=start, expiry=expiry)
    parts = urlsplit(url)
    return parts.path, parts.query


def _verify(query: str, *, now: float, leeway: float = 30.0) -> su.SignedGrant:
    return UrlSigner(KEY, issuer="x").verify(PATH, query, now=now, leeway=leeway)


def test_the_leeway_opens_the_window_early_up_to_its_last_second() -> None:
    _, query = _signed()
    assert _verify(query, now=START - 30).start == START
    with pytest.raises(SignedUrlRejected, match=r"^not_yet_valid: the URL is valid from 2025-06-15T15:06:40Z$"):
        _verify(query, now=START - 31)


def test_the_leeway_keeps_the_window_open_late_but_not_to_its_end_plus_leeway() -> None:
    _, query = _signed()
    assert _verify(query, now=START + 600 + 29).expiry == START + 600
    with pytest.raises(SignedUrlRejected, match=r"^expired: the URL expired at 2025-06-15T15:16:40Z$"):
        _verify(query, now=START + 600 + 30)


def test_a_url_of_exactly_seven_days_is_the_longest_taken() -> None:
    _, query = _signed(expiry=START + SEVEN_DAYS)
    assert _verify(query, now=START + 1).expiry - START == SEVEN_DAYS
    _, longer = _signed(expiry=START + SEVEN_DAYS + 1)
    with pytest.raises(SignedUrlRejected, match=r"^malformed: the URL claims a lifetime of 604801 s$"):
        _verify(longer, now=START + 1)


def test_a_signing_key_of_sixteen_bytes_is_the_shortest_taken() -> None:
    assert UrlSigner(b"k" * 16, issuer="x").issuer == "x"
    with pytest.raises(ValueError, match=r"^a URL signing key needs at least 16 bytes, got 15$"):
        UrlSigner(b"k" * 15, issuer="x")


def test_a_field_given_twice_is_malformed_even_when_one_copy_is_blank() -> None:
    _, query = _signed()
    with pytest.raises(SignedUrlRejected, match=r"^malformed: query field 'tid' given twice$"):
        _verify("tid=&" + query, now=START)
