"""Signed storage URLs and the content XML: what the CMG signs, storage accepts exactly that, for exactly that long."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from cmg_protocol import storage_urls as su
from cmg_protocol.storage_urls import ContentXml, SignedUrlRejected, UrlSigner
from cmg_protocol.xmlbase import MessageError

KEY = b"k" * 32
NOW = 1_750_000_000.0
PATH = su.content_path("CS100001", "CS100001")


def _signed(signer: UrlSigner | None = None, *, start: float = NOW - 60, expiry: float = NOW + 600) -> str:
    signer = signer or UrlSigner(KEY, issuer="urn:sccm:cmg:1")
    return signer.sign("https://127.0.0.1:8444/", PATH, tenant_id="tenant-1", object_id="GUID:ABC", start=start,
                       expiry=expiry)


def _verify(url: str, *, now: float = NOW, key: bytes = KEY, path: str | None = None) -> su.SignedGrant:
    parts = urlsplit(url)
    return UrlSigner(key, issuer="anyone").verify(path or parts.path, parts.query, now=now)


def test_a_signed_url_carries_the_documented_fields_and_verifies() -> None:
    url = _signed()
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "127.0.0.1:8444", "/content/CS100001/CS100001")
    fields = dict(parse_qsl(parts.query))
    assert list(fields) == list(su.FIELDS)
    assert fields["alg"] == "HMACSHA256" and fields["tid"] == "tenant-1" and fields["iss"] == "urn:sccm:cmg:1"
    assert (fields["st"], fields["se"]) == (su.format_time(NOW - 60), su.format_time(NOW + 600))
    grant = _verify(url)
    assert (grant.path, grant.tenant_id, grant.object_id, grant.issuer) == (PATH, "tenant-1", "GUID:ABC",
                                                                            "urn:sccm:cmg:1")
    assert grant.expiry - grant.start == 660


@pytest.mark.parametrize(("now", "kind"), [(NOW + 600, su.EXPIRED), (NOW + 10_000, su.EXPIRED),
                                           (NOW - 61, su.NOT_YET_VALID)])
def test_a_url_outside_its_window_is_refused(now: float, kind: str) -> None:
    with pytest.raises(SignedUrlRejected) as refused:
        _verify(_signed(), now=now)
    assert refused.value.kind == kind


def test_the_last_second_of_the_window_is_still_valid() -> None:
    assert _verify(_signed(), now=NOW + 599).expiry == NOW + 600


@pytest.mark.parametrize("change", [("tid", "tenant-2"), ("oid", "GUID:DEF"), ("iss", "x"), ("se", "2099-01-01T00:00:00Z"),
                                    ("st", "2000-01-01T00:00:00Z")])
def test_any_changed_field_breaks_the_signature(change: tuple[str, str]) -> None:
    parts = urlsplit(_signed())
    fields = dict(parse_qsl(parts.query))
    fields[change[0]] = change[1]
    query = "&".join(f"{k}={v}" for k, v in fields.items())
    with pytest.raises(SignedUrlRejected) as refused:
        UrlSigner(KEY, issuer="x").verify(parts.path, query, now=NOW)
    assert refused.value.kind == su.BAD_SIGNATURE


def test_another_path_or_another_key_breaks_the_signature() -> None:
    with pytest.raises(SignedUrlRejected, match="bad_signature"):
        _verify(_signed(), path=su.content_path("CS100002", "CS100002"))
    with pytest.raises(SignedUrlRejected, match="bad_signature"):
        _verify(_signed(), key=b"z" * 32)


@pytest.mark.parametrize("query", ["", "tid=a", "tid=a&tid=b&oid=o&iss=i&alg=HMACSHA256&st=x&se=y&sig=z",
                                   "tid=a&oid=o&iss=i&alg=HS1&st=x&se=y&sig=z"])
def test_a_url_lacking_or_repeating_fields_is_malformed(query: str) -> None:
    with pytest.raises(SignedUrlRejected) as refused:
        UrlSigner(KEY, issuer="x").verify(PATH, query, now=NOW)
    assert refused.value.kind == su.MALFORMED


def test_a_signed_but_unreadable_time_or_an_overlong_lifetime_is_malformed() -> None:
    with pytest.raises(SignedUrlRejected, match="malformed"):
        _verify(_signed(start=NOW, expiry=NOW + su.MAX_LIFETIME_SECONDS + 1))
    with pytest.raises(SignedUrlRejected, match="not yyyy"):
        su.parse_time("yesterday", "start time")


def test_signing_refuses_a_short_key_and_an_empty_window() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        UrlSigner(b"short", issuer="x")
    with pytest.raises(ValueError, match="expire after"):
        _signed(start=NOW, expiry=NOW)


def test_the_content_xml_round_trips_and_refuses_a_plain_http_url_or_a_bad_size() -> None:
    info = ContentXml(package_id="CS100001", url=_signed(), size=65536, sha256="AB" * 32)
    assert ContentXml.from_xml(info.to_xml()) == info
    with pytest.raises(MessageError, match="https"):
        ContentXml.from_xml(info.to_xml().replace("https://", "http://"))
    with pytest.raises(MessageError, match="whole number"):
        ContentXml.from_xml(info.to_xml().replace("<Size>65536", "<Size>-1"))
