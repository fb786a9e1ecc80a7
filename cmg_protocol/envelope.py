"""The CCM messaging envelope: a two-part multipart body holding the ``<Msg>`` header XML and the message XML."""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .xmlbase import MessageError, escape_attr, escape_text, parse_xml

BOUNDARY = "aAbBcCdDv1234567890VxXyYzZ"
CONTENT_TYPE = f'multipart/mixed; boundary="{BOUNDARY}"'
USER_AGENT = "ConfigMgr Messaging HTTP Sender"
CCM_POST = "CCM_POST"
#: The CorrelationID of a message that answers nothing (slots dataclasses hide field defaults, so it is named here).
NULL_CORRELATION_ID = "{00000000-0000-0000-0000-000000000000}"

HEADER_PART_TYPE = "text/plain; charset=UTF-16"
BODY_PART_TYPE = "application/octet-stream"
ZLIB_HOOK = "zlib-compress"
CLIENTAUTH_HOOK = "clientauth"
#: A header larger than this is refused before it is decoded: real ones are about 2 KB.
MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024

_LOCATION_MANAGER = "MP_LocationManager"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_BOUNDARY_CHARS = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")


class EnvelopeError(ValueError):
    """A CCM messaging body cannot be decoded; the message says why."""


@dataclass(frozen=True, slots=True)
class MessageHeader:
    """The ``<Msg>`` header of a CCM message; empty ``target_address`` and ``reply_to`` are derived from the endpoint."""

    target_endpoint: str
    source_id: str = ""
    source_host: str = ""
    target_host: str = ""
    target_address: str = ""
    reply_to: str = ""
    message_id: str = ""
    correlation_id: str = NULL_CORRELATION_ID
    sent_time: str = ""
    reply_mode: str = "Sync"
    protocol: str = "http"
    priority: int = 3
    timeout_ms: int = 600_000
    compressed: bool = True
    reply_compression: bool = True
    #: Properties of the ``clientauth`` hook (PublicKey, ClientIDSignature, PayloadSignature, ...), in order.
    client_auth: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.target_endpoint:
            raise EnvelopeError("message header needs a TargetEndpoint")
        if self.priority < 0 or self.timeout_ms < 0:
            raise EnvelopeError(f"Priority and Timeout must be >= 0, got {self.priority} and {self.timeout_ms}")
        location = self.target_endpoint == _LOCATION_MANAGER
        if not self.target_address:
            address = f"mp:[http]{self.target_endpoint}" if location else f"mp:{self.target_endpoint}"
            object.__setattr__(self, "target_address", address)
        if not self.reply_to:
            queue = "LS_ReplyLocations" if location else "SccmMessaging"
            object.__setattr__(self, "reply_to", f"direct:{self.source_host}:{queue}")


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded CCM message: its header, its body XML, and the body part's bytes as sent (what PayloadSignature
    signs: compressed when the zlib hook is on)."""

    header: MessageHeader
    body_xml: str
    payload: bytes = b""


# --- encoding ------------------------------------------------------------------------------------------------------

_B = BOUNDARY.encode("ascii")
_HEADER_PART_START = b"--" + _B + b"\r\ncontent-type: " + HEADER_PART_TYPE.encode("ascii") + b"\r\n\r\n\xff\xfe"
_BODY_PART_START = b"\r\n--" + _B + b"\r\ncontent-type: " + BODY_PART_TYPE.encode("ascii") + b"\r\n\r\n"
_CLOSE = b"\r\n--" + _B + b"--\r\n"
_ZLIB_HOOK_XML = f'<Hook3 Name="{ZLIB_HOOK}"/>'


def _clientauth_xml(properties: Sequence[tuple[str, str]]) -> str:
    props = "".join(f'<Property Name="{escape_attr(name)}">{escape_text(value)}</Property>'
                    for name, value in properties)
    return f'<Hook2 Name="{CLIENTAUTH_HOOK}">{props}</Hook2>'


def _hooks_xml(header: MessageHeader) -> str:
    hooks = ""
    if header.client_auth:
        hooks += _clientauth_xml(header.client_auth)
    if header.compressed:
        hooks += _ZLIB_HOOK_XML
    return hooks


def header_xml(header: MessageHeader, body_length: int) -> str:
    """The ``<Msg>`` XML for ``header`` announcing an uncompressed body of ``body_length`` bytes."""
    values: tuple[str, ...] = (
        header.message_id, header.source_id, header.source_host, header.target_address, header.target_endpoint,
        header.target_host, header.reply_to, header.reply_mode, header.protocol, header.sent_time, header.correlation_id,
    )
    # One check of all the values (they almost never need escaping) instead of one per value.
    if not _plain("".join(values), _PLAIN_TEXT_ASCII, _NOT_PLAIN_TEXT):
        values = tuple(escape_text(value) for value in values)
    (message_id, source_id, source_host, target_address, target_endpoint, target_host, reply_to, reply_mode,
     protocol, sent_time, correlation_id) = values
    reply_compression = ' ReplyCompression="zlib"' if header.reply_compression else ""
    # A string template, not ElementTree: this runs once per message on the client's hot path.
    return (
        f'<Msg SchemaVersion="1.1"{reply_compression}><ID>{message_id}</ID>'
        f"<SourceID>{source_id}</SourceID><SourceHost>{source_host}</SourceHost>"
        f"<TargetAddress>{target_address}</TargetAddress>"
        f"<TargetEndpoint>{target_endpoint}</TargetEndpoint><TargetHost>{target_host}</TargetHost>"
        f"<ReplyTo>{reply_to}</ReplyTo><ReplyMode>{reply_mode}</ReplyMode>"
        f"<Protocol>{protocol}</Protocol><Priority>{header.priority:d}</Priority>"
        f"<Timeout>{header.timeout_ms:d}</Timeout><SentTime>{sent_time}</SentTime>"
        f"<CorrelationID>{correlation_id}</CorrelationID>"
        f'<Body Type="ByteRange" Offset="0" Length="{body_length:d}"/><Payload Type="inline"/>'
        f"<Hooks>{_hooks_xml(header)}</Hooks></Msg>"
    )


def _compress(data: bytes) -> bytes:
    # zlib.compress() sets up a 256 KiB state for every call, which costs more than compressing a small body; a window
    # sized to the body gives the same output format (any zlib inflater reads it) several times faster.
    wbits = min(15, max(10, (len(data) - 1).bit_length()))
    compressor = zlib.compressobj(6, zlib.DEFLATED, wbits, wbits - 7)
    return compressor.compress(data) + compressor.flush()


def body_bytes(body_xml: str) -> bytes:
    """The uncompressed body bytes: UTF-16LE without a BOM, NUL-terminated."""
    try:
        return body_xml.encode("utf-16-le") + b"\x00\x00"
    except UnicodeEncodeError as exc:
        raise EnvelopeError(f"body text cannot be encoded as UTF-16: {exc.reason} at {exc.start}") from None


def _encode_body(body_xml: str, compressed: bool) -> tuple[int, bytes]:
    raw = body_bytes(body_xml)
    return len(raw), _compress(raw) if compressed else raw


# A site sends the same reply body to many clients (every poll gets the same assignments), and a client sends the same
# request body every cycle: remembering encodings saves the UTF-16 encode and the deflate. Small bodies (a device's
# policy request, a few hundred characters) get room for every device of a busy Locust process; larger ones (replies,
# registrations that never repeat) the last few, so the caches hold a few MB at most.
_encode_small = functools.lru_cache(maxsize=2048)(_encode_body)
_encode_large = functools.lru_cache(maxsize=256)(_encode_body)
SMALL_BODY_CHARS = 1024


def _encoded_body(body_xml: str, compressed: bool) -> tuple[int, bytes]:
    if len(body_xml) <= SMALL_BODY_CHARS:
        return _encode_small(body_xml, compressed)
    return _encode_large(body_xml, compressed)


def encoded_body(body_xml: str, compressed: bool) -> tuple[int, bytes]:
    """The body part ``encode_message`` sends for ``body_xml``: (uncompressed length, bytes as sent)."""
    return _encoded_body(body_xml, compressed)


def encode_message(header: MessageHeader, body_xml: str) -> bytes:
    """The multipart body of a CCM message (send with ``Content-Type: CONTENT_TYPE``)."""
    length, payload = _encoded_body(body_xml, header.compressed)
    try:
        header_part = header_xml(header, length).encode("utf-16-le")
    except MessageError as exc:
        raise EnvelopeError(f"message header cannot be encoded: {exc}") from None
    return b"".join((_HEADER_PART_START, header_part, _BODY_PART_START, payload, _CLOSE))


# --- decoding ------------------------------------------------------------------------------------------------------

# The exact shape header_xml() writes; a header in any other shape takes the ElementTree path. Values are matched up to
# the next '<' (attribute values up to the next '"' or '<'), flat and possessive: no group is repeated but the clientauth
# hook's properties, and each of those starts with a literal that no value can hold, so a header that fails to match
# fails in linear time. What the values hold is checked after the match (_plain_text, _plain_attr): a class this
# simple lets the regular expression engine skip through hundreds of hex digits several times faster.
_VALUE = r"([^<]*+)"
_PROPERTY_START = '<Property Name="'
_PROPERTY_END = "</Property>"
_PROPERTY = f'{_PROPERTY_START}[^"<]*+">[^<]*+{_PROPERTY_END}'
_FAST_HEADER = re.compile(
    r'<Msg SchemaVersion="1\.1"( ReplyCompression="zlib")?>'
    rf"<ID>{_VALUE}</ID><SourceID>{_VALUE}</SourceID><SourceHost>{_VALUE}</SourceHost>"
    rf"<TargetAddress>{_VALUE}</TargetAddress><TargetEndpoint>{_VALUE}</TargetEndpoint>"
    rf"<TargetHost>{_VALUE}</TargetHost><ReplyTo>{_VALUE}</ReplyTo><ReplyMode>{_VALUE}</ReplyMode>"
    rf"<Protocol>{_VALUE}</Protocol><Priority>([0-9]{{1,9}})</Priority><Timeout>([0-9]{{1,12}})</Timeout>"
    rf"<SentTime>{_VALUE}</SentTime><CorrelationID>{_VALUE}</CorrelationID>"
    r'<Body Type="ByteRange" Offset="0" Length="([0-9]{1,12})"/><Payload Type="inline"/>'
    rf'<Hooks>(<Hook2 Name="{CLIENTAUTH_HOOK}">((?:{_PROPERTY})*+)</Hook2>)?'
    rf"((?:{re.escape(_ZLIB_HOOK_XML)})?)</Hooks></Msg>"
)
# Values with '&' (references), '>' (which XML refuses in the sequence "]]>"), control characters, CR (which a parser
# would normalise) or what XML cannot carry (U+FFFE, U+FFFF, lone surrogates) are left to the ElementTree path, which
# decodes or refuses them; in attribute values also TAB and LF (attribute-value normalisation turns them into spaces).
_NOT_PLAIN_TEXT = re.compile("[<>&\x00-\x08\x0b-\x1f\ud800-\udfff\ufffe\uffff]")
_NOT_PLAIN_ATTR = re.compile('["<>&\x00-\x1f\ud800-\udfff\ufffe\uffff]')
#: The ASCII characters of those classes' complements, for the fast check of ASCII values.
_PLAIN_TEXT_ASCII = bytes(c for c in range(0x80) if not _NOT_PLAIN_TEXT.match(chr(c)))
_PLAIN_ATTR_ASCII = bytes(c for c in range(0x80) if not _NOT_PLAIN_ATTR.match(chr(c)))


def _plain(value: str, plain_ascii: bytes, not_plain: re.Pattern[str]) -> bool:
    if value.isascii():
        # Deleting every plain character leaves nothing: a C loop over bytes, far faster than a class in a regex.
        return not value.encode("ascii").translate(None, plain_ascii)
    return not_plain.search(value) is None


def _parse_header_fast(text: str) -> tuple[MessageHeader, int, int] | None:
    m = _FAST_HEADER.fullmatch(text)
    if m is None:
        return None
    g = m.groups()
    client_auth: tuple[tuple[str, str], ...] = ()
    names = ""
    values = "".join(g[1:10]) + g[12] + g[13]
    if g[15] is not None:
        # The run of properties matched the shape above, in which no value holds '<' and no name '"' or '<': so every
        # "</Property>" ends a property and the first '">' in one ends its name (a split costs less than a regex).
        start = len(_PROPERTY_START)
        client_auth = tuple(
            (name, value) for name, _, value in (piece[start:].partition('">') for piece in g[16].split(_PROPERTY_END)[:-1])
        )
        names = "".join(name for name, _ in client_auth)
        values += "".join(value for _, value in client_auth)
    if not (_plain(values, _PLAIN_TEXT_ASCII, _NOT_PLAIN_TEXT) and _plain(names, _PLAIN_ATTR_ASCII, _NOT_PLAIN_ATTR)):
        return None
    header = MessageHeader(
        message_id=g[1],
        source_id=g[2],
        source_host=g[3],
        target_address=g[4],
        target_endpoint=g[5],
        target_host=g[6],
        reply_to=g[7],
        reply_mode=g[8],
        protocol=g[9],
        priority=int(g[10]),
        timeout_ms=int(g[11]),
        sent_time=g[12],
        correlation_id=g[13],
        compressed=bool(g[17]),
        reply_compression=g[0] is not None,
        client_auth=client_auth,
    )
    return header, 0, int(g[14])


# ASCII digits (with the sign and spaces int() allows): int() alone also takes "1_0" and other scripts' digits ("٣"),
# which no client writes, so such a header was read as a number where it must be refused.
_INTEGER = re.compile(r"[ \t\r\n]*[+-]?[0-9]+[ \t\r\n]*")


def _int_field(value: str | None, name: str) -> int:
    if value is None or _INTEGER.fullmatch(value) is None:
        raise EnvelopeError(f"header {name} is not an integer: {value!r}")
    number = int(value)
    if number < 0:
        raise EnvelopeError(f"header {name} must be >= 0, got {number}")
    return number


def _parse_header_xml(text: str) -> tuple[MessageHeader, int, int]:
    try:
        msg = parse_xml(text, max_chars=MAX_HEADER_BYTES)
    except MessageError as exc:
        raise EnvelopeError(f"message header refused: {exc}") from None
    if msg.tag != "Msg":
        raise EnvelopeError(f"message header root must be <Msg>, got <{msg.tag}>")

    def text_of(tag: str, default: str = "") -> str:
        element = msg.find(tag)
        return default if element is None else (element.text or "")

    body = msg.find("Body")
    if body is None:
        raise EnvelopeError("message header has no <Body> element")
    hook_names: list[str] = []
    client_auth: tuple[tuple[str, str], ...] = ()
    for hook in msg.iterfind("Hooks/*"):
        name = hook.get("Name", "")
        hook_names.append(name)
        if name == CLIENTAUTH_HOOK:
            client_auth = tuple((p.get("Name", ""), p.text or "") for p in hook.iterfind("Property"))
    # ReplyCompression is an attribute of <Msg> in what we send; accept it as a child element as well.
    reply_compression = msg.get("ReplyCompression") or text_of("ReplyCompression")
    header = MessageHeader(
        target_endpoint=text_of("TargetEndpoint"),
        source_id=text_of("SourceID"),
        source_host=text_of("SourceHost"),
        target_host=text_of("TargetHost"),
        target_address=text_of("TargetAddress"),
        reply_to=text_of("ReplyTo"),
        message_id=text_of("ID"),
        correlation_id=text_of("CorrelationID"),
        sent_time=text_of("SentTime"),
        reply_mode=text_of("ReplyMode", "Sync"),
        protocol=text_of("Protocol", "http"),
        priority=_int_field(text_of("Priority", "3"), "Priority"),
        timeout_ms=_int_field(text_of("Timeout", "600000"), "Timeout"),
        compressed=ZLIB_HOOK in hook_names,
        reply_compression=reply_compression.lower() == "zlib",
        client_auth=client_auth,
    )
    return header, _int_field(body.get("Offset", "0"), "Body Offset"), _int_field(body.get("Length"), "Body Length")


def _boundary_from(content_type: str | None) -> bytes:
    if content_type == CONTENT_TYPE:
        return _B  # what every CCM client sends: the parse below would give the same
    if not content_type:
        raise EnvelopeError("missing Content-Type: a CCM message is multipart/mixed")
    media_type, _, params = content_type.partition(";")
    if media_type.strip().lower() != "multipart/mixed":
        raise EnvelopeError(f"Content-Type must be multipart/mixed, got {content_type!r}")
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "boundary":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if not _BOUNDARY_CHARS.fullmatch(value):
                raise EnvelopeError(f"Content-Type boundary is not a valid multipart boundary: {value!r}")
            return value.encode("ascii")
    raise EnvelopeError(f"Content-Type has no boundary: {content_type!r}")


#: The part headers encode_message() writes, by part type: a part that starts with them needs no parsing.
_PART_HEADS = {HEADER_PART_TYPE: _HEADER_PART_START[len(b"--" + _B + b"\r\n") : -2],
               BODY_PART_TYPE: _BODY_PART_START[len(b"\r\n--" + _B + b"\r\n") :]}


def _split_part(part: bytes, expected_type: str, which: str) -> bytes:
    head = _PART_HEADS[expected_type]
    if part.startswith(head):
        return part[len(head) :]
    head, sep, content = part.partition(b"\r\n\r\n")
    if not sep:
        raise EnvelopeError(f"{which} part has no blank line after its headers")
    part_type = None
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-type":
            part_type = value.decode("latin-1").strip()
    if part_type is None:
        raise EnvelopeError(f"{which} part has no content-type")
    # Compare without case, spaces or quotes: "text/plain; charset=UTF-16" and 'text/plain;charset="utf-16"' agree.
    if part_type.lower().replace(" ", "").replace('"', "") != expected_type.lower().replace(" ", ""):
        raise EnvelopeError(f"{which} part content-type must be {expected_type!r}, got {part_type!r}")
    return content


def _inflate(payload: bytes, max_body_bytes: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        # max_length bounds the output, so a zlib bomb stops at the limit instead of filling memory.
        raw = inflater.decompress(payload, max_body_bytes + 1)
    except zlib.error as exc:
        raise EnvelopeError(f"body is not valid zlib data: {exc}") from None
    if len(raw) > max_body_bytes:
        raise EnvelopeError(f"decompressed body exceeds the limit of {max_body_bytes} bytes")
    if not inflater.eof:
        raise EnvelopeError("compressed body is truncated")
    if inflater.unused_data:
        raise EnvelopeError(f"{len(inflater.unused_data)} bytes of trailing data after the compressed body")
    return raw


def decode_message(
    content_type: str | None, data: bytes, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> Message:
    """Decode a CCM message body, refusing anything malformed, oversized or inconsistent with its header."""
    boundary = _boundary_from(content_type)
    first = b"--" + boundary + b"\r\n"
    if not data.startswith(first):
        raise EnvelopeError(f"body does not start with the boundary {boundary.decode()!r}")
    delimiter = b"\r\n--" + boundary
    header_end = data.find(delimiter, len(first))
    if header_end < 0:
        raise EnvelopeError("body has no delimiter after the header part")
    body_start = header_end + len(delimiter)
    if data[body_start : body_start + 2] != b"\r\n":
        raise EnvelopeError("message has no body part")
    body_start += 2
    # The body part is binary (compressed) and may contain anything, so its end is the *last* closing delimiter.
    close = delimiter + b"--"
    body_end = data.rfind(close, body_start)
    if body_end < 0:
        raise EnvelopeError(f"body has no closing delimiter --{boundary.decode()}--")
    if data[body_end + len(close) :].strip(b"\r\n"):
        raise EnvelopeError("data after the closing delimiter")

    header_bytes = _split_part(data[len(first) : header_end], HEADER_PART_TYPE, "header")
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise EnvelopeError(f"header part of {len(header_bytes)} bytes exceeds {MAX_HEADER_BYTES}")
    if header_bytes[:2] not in _UTF16_BOMS:
        raise EnvelopeError("header part is not UTF-16 with a byte order mark")
    try:
        header_text = header_bytes.decode("utf-16")
    except UnicodeDecodeError as exc:
        raise EnvelopeError(f"header part is not valid UTF-16: {exc.reason}") from None
    header, offset, length = _parse_header_fast(header_text) or _parse_header_xml(header_text)

    payload = _split_part(data[body_start:body_end], BODY_PART_TYPE, "body")
    if len(payload) > MAX_CACHED_BODY_PART:
        return Message(header=header, payload=payload,
                       body_xml=_decode_body(payload, header.compressed, offset, length, max_body_bytes))
    key = (payload, header.compressed, offset, length, max_body_bytes)
    cached = _DECODED_BODIES.get(key)
    if cached is None:
        cached = _decode_body(payload, header.compressed, offset, length, max_body_bytes)
        if len(_DECODED_BODIES) >= DECODED_BODY_CACHE_SIZE:
            _DECODED_BODIES.clear()
        _DECODED_BODIES[key] = cached
    return Message(header=header, body_xml=cached, payload=payload)


#: Body text by the body part it was read from (and how the header framed it): every device polling a site gets the
#: same policy assignments reply body, so it is inflated and decoded once rather than once per poll. Only bodies that
#: decoded are kept (a bad one is refused every time); bounded (emptied when full).
_DECODED_BODIES: dict[tuple[bytes, bool, int, int, int], str] = {}
DECODED_BODY_CACHE_SIZE = 256
#: Larger body parts are decoded every time (the cache's memory stays a few MB at most).
MAX_CACHED_BODY_PART = 16 * 1024


def _decode_body(payload: bytes, compressed: bool, offset: int, length: int, max_body_bytes: int) -> str:
    """The body text of a message's body part, framed by the header's Offset and Length; EnvelopeError when not."""
    if compressed:
        raw = _inflate(payload, max_body_bytes)
    elif len(payload) > max_body_bytes:
        raise EnvelopeError(f"body of {len(payload)} bytes exceeds the limit of {max_body_bytes} bytes")
    else:
        raw = payload
    # The MP reads the Offset/Length range and ignores what follows it: the public tools compress two more bytes
    # (CR LF) after the NUL-terminated text, and some announce the length without the terminator.
    if offset + length > len(raw):
        raise EnvelopeError(f"body is {len(raw)} bytes but the header's Body Offset {offset} and Length {length} "
                            f"reach byte {offset + length}")
    if length % 2:
        raise EnvelopeError(f"Body Length {length} is odd: a UTF-16 body has an even number of bytes")
    raw = raw[offset : offset + length]
    if raw.endswith(b"\x00\x00"):
        raw = raw[:-2]
    try:
        return raw.decode("utf-16-le")
    except UnicodeDecodeError as exc:
        raise EnvelopeError(f"body is not valid UTF-16LE: {exc.reason} at byte {exc.start}") from None


# --- the clientauth hook's signatures ------------------------------------------------------------------------------


def clientauth_signature(key: rsa.RSAPrivateKey, data: bytes) -> str:
    """Sign ``data`` as the clientauth hook does: RSA PKCS#1 v1.5 with SHA-256, bytes reversed, upper-case hex."""
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())[::-1].hex().upper()


def verify_clientauth_signature(key: rsa.RSAPublicKey, data: bytes, signature_hex: str) -> None:
    """Check a clientauth signature over ``data``, raising EnvelopeError when it does not verify."""
    try:
        signature = bytes.fromhex(signature_hex)[::-1]
    except ValueError:
        raise EnvelopeError(f"clientauth signature is not hex: {signature_hex[:40]!r}") from None
    try:
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise EnvelopeError("clientauth signature does not verify") from None
