"""Short-lived signed URLs on a content-enabled CMG's storage, and the small content XML that hands them out.

The public record shows the shape, not the bytes: ``downloadrestservice.svc/getcontentxmlsecure`` answers with a small
XML that points at the content, the download URL lives on the CMG's storage (its own host), it is short-lived and
signed, and logged samples carry query fields for the tenant, the issuer, the algorithm, the start and expiry times
and the signature. The field names, the string that is signed and the XML element names below are ours.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import ClassVar, Self
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from .xmlbase import MessageError, child_text, escape_text, expect_root, parse_xml

# synthetic: not the public ConfigMgr format (the names of the documented query fields)
TENANT_FIELD = "tid"
OBJECT_FIELD = "oid"  # the client the URL was made for (signed, so storage can count egress per client)
ISSUER_FIELD = "iss"
ALGORITHM_FIELD = "alg"
START_FIELD = "st"
EXPIRY_FIELD = "se"
SIGNATURE_FIELD = "sig"
#: The fields of a signed URL, in the order they are written.
FIELDS = (TENANT_FIELD, OBJECT_FIELD, ISSUER_FIELD, ALGORITHM_FIELD, START_FIELD, EXPIRY_FIELD, SIGNATURE_FIELD)
#: The one signing algorithm (a shared key between the CMG that signs and the storage that checks).
ALGORITHM = "HMACSHA256"  # synthetic: not the public ConfigMgr format
#: The storage container content lives in (the first path segment of a download URL).
CONTAINER = "content"  # synthetic: not the public ConfigMgr format
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: How long a signed URL may be at most: a URL that claims more was not made by the site.
MAX_LIFETIME_SECONDS = 7 * 24 * 3600.0

# Why storage refuses a URL (stable words: metrics and the client's reason codes use them).
EXPIRED = "expired"
NOT_YET_VALID = "not_yet_valid"
BAD_SIGNATURE = "bad_signature"
MALFORMED = "malformed"


class SignedUrlRejected(ValueError):
    """Storage refuses a download URL; ``kind`` is one of expired, not_yet_valid, bad_signature, malformed."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SignedGrant:
    """What a valid signed URL grants: reading ``path`` from ``start`` to ``expiry`` (epoch seconds)."""

    path: str
    tenant_id: str
    object_id: str
    issuer: str
    start: float
    expiry: float


def format_time(epoch: float) -> str:
    """A signed URL's time field: UTC to the second."""
    return time.strftime(_TIME_FORMAT, time.gmtime(epoch))


def parse_time(text: str, what: str) -> float:
    """The epoch seconds of a time field; :class:`SignedUrlRejected` (malformed) naming the field when unreadable."""
    try:
        parsed = time.strptime(text, _TIME_FORMAT)
    except (ValueError, TypeError):
        raise SignedUrlRejected(MALFORMED, f"{what} {text[:40]!r} is not yyyy-MM-ddTHH:mm:ssZ") from None
    return float(calendar.timegm(parsed))


def content_path(package_id: str, content_id: str) -> str:
    """Where a package's content lives on the storage endpoint."""
    return f"/{CONTAINER}/{quote(package_id, safe='')}/{quote(content_id, safe='')}"


class UrlSigner:
    """Makes and checks signed storage URLs with one shared key; ``issuer`` names who signs (the CMG service)."""

    def __init__(self, key: bytes, *, issuer: str) -> None:
        if len(key) < 16:
            raise ValueError(f"a URL signing key needs at least 16 bytes, got {len(key)}")
        self._key = key
        self.issuer = issuer

    def _signature(self, path: str, tenant_id: str, object_id: str, issuer: str, algorithm: str, start: str,
                   expiry: str) -> str:
        # synthetic: not the public ConfigMgr format (the string to sign: every field but the signature, one a line)
        text = "\n".join((path, tenant_id, object_id, issuer, algorithm, start, expiry))
        digest = hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).digest()
        return base64.b64encode(digest).decode("ascii")

    def sign(self, base_url: str, path: str, *, tenant_id: str, object_id: str, start: float, expiry: float) -> str:
        """The signed URL of ``path`` on the storage at ``base_url`` for client ``object_id``, valid from ``start``
        to ``expiry``."""
        if not expiry > start:
            raise ValueError(f"a signed URL must expire after it starts, got start {start!r} and expiry {expiry!r}")
        st, se = format_time(start), format_time(expiry)
        query = {TENANT_FIELD: tenant_id, OBJECT_FIELD: object_id, ISSUER_FIELD: self.issuer,
                 ALGORITHM_FIELD: ALGORITHM, START_FIELD: st, EXPIRY_FIELD: se,
                 SIGNATURE_FIELD: self._signature(path, tenant_id, object_id, self.issuer, ALGORITHM, st, se)}
        return f"{base_url.rstrip('/')}{path}?{urlencode(query)}"

    def verify(self, path: str, query: str, *, now: float, leeway: float = 0.0) -> SignedGrant:
        """The grant of a download request for ``path`` with ``query``; :class:`SignedUrlRejected` saying why not."""
        fields: dict[str, str] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name in fields:
                raise SignedUrlRejected(MALFORMED, f"query field {name!r} given twice")
            fields[name] = value
        missing = [name for name in FIELDS if not fields.get(name)]
        if missing:
            raise SignedUrlRejected(MALFORMED, f"the URL lacks {', '.join(missing)}")
        if fields[ALGORITHM_FIELD] != ALGORITHM:
            raise SignedUrlRejected(MALFORMED, f"algorithm {fields[ALGORITHM_FIELD][:40]!r} is not {ALGORITHM}")
        expected = self._signature(path, fields[TENANT_FIELD], fields[OBJECT_FIELD], fields[ISSUER_FIELD],
                                   fields[ALGORITHM_FIELD], fields[START_FIELD], fields[EXPIRY_FIELD])
        if not hmac.compare_digest(expected.encode("ascii"), fields[SIGNATURE_FIELD].encode("utf-8", "replace")):
            raise SignedUrlRejected(BAD_SIGNATURE, "the signature does not match the URL")
        start = parse_time(fields[START_FIELD], "start time")
        expiry = parse_time(fields[EXPIRY_FIELD], "expiry time")
        if expiry - start > MAX_LIFETIME_SECONDS:
            raise SignedUrlRejected(MALFORMED, f"the URL claims a lifetime of {expiry - start:.0f} s")
        if now + leeway < start:
            raise SignedUrlRejected(NOT_YET_VALID, f"the URL is valid from {fields[START_FIELD]}")
        if now - leeway >= expiry:
            raise SignedUrlRejected(EXPIRED, f"the URL expired at {fields[EXPIRY_FIELD]}")
        return SignedGrant(path=path, tenant_id=fields[TENANT_FIELD], object_id=fields[OBJECT_FIELD],
                           issuer=fields[ISSUER_FIELD], start=start, expiry=expiry)


@dataclass(frozen=True, slots=True)
class ContentXml:
    """``getcontentxmlsecure``'s answer: where the content is (the signed storage URL), its size and hash."""

    ROOT: ClassVar[str] = "ContentInfo"  # synthetic: not the public ConfigMgr format (every element name)

    package_id: str
    url: str
    size: int
    sha256: str

    def to_xml(self) -> str:
        """The reply as XML (UTF-8 text)."""
        return (f'<{self.ROOT}><PackageID>{escape_text(self.package_id)}</PackageID>'
                f'<URL>{escape_text(self.url)}</URL><Size>{self.size}</Size>'
                f'<Hash Algorithm="SHA256">{escape_text(self.sha256)}</Hash></{self.ROOT}>')

    @classmethod
    def from_xml(cls, text: str) -> Self:
        """Read a reply, naming what is missing or wrong."""
        root = parse_xml(text)
        expect_root(root, cls.ROOT)
        url = child_text(root, "URL")
        if urlsplit(url).scheme != "https":
            raise MessageError(f"content URL must be https, got {url[:80]!r}")
        size_text = child_text(root, "Size")
        if not size_text.isdigit():
            raise MessageError(f"content Size must be a whole number, got {size_text[:40]!r}")
        return cls(package_id=child_text(root, "PackageID"), url=url, size=int(size_text),
                   sha256=child_text(root, "Hash"))
