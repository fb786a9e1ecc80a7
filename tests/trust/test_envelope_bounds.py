"""The edges of the CCM message envelope and of the CMS envelope a secret policy travels in: every refusal with the
value and limit it names, limits at their exact boundary, the fast header reader agreeing with ElementTree field by
field, and the CMS type check's reach into a ContentInfo."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zlib
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from cmg_protocol import envelope
from cmg_protocol.cms import ENVELOPED_DATA_OID, CmsError, decrypt_enveloped, encrypt_enveloped
from cmg_protocol.envelope import (
    BOUNDARY,
    CONTENT_TYPE,
    DECODED_BODY_CACHE_SIZE,
    DEFAULT_MAX_BODY_BYTES,
    MAX_CACHED_BODY_PART,
    MAX_HEADER_BYTES,
    NULL_CORRELATION_ID,
    SMALL_BODY_CHARS,
    EnvelopeError,
    MessageHeader,
    decode_message,
    encode_message,
    header_xml,
)

# --- CMS EnvelopedData ------------------------------------------------------------------------------------------------

def _certificate(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SMS Encryption")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
            .not_valid_after(dt.datetime(2120, 1, 1, tzinfo=dt.UTC)).sign(key, hashes.SHA256()))


@pytest.fixture(scope="module")
def encryption() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key, _certificate(key)


def test_a_certificate_without_an_rsa_key_is_refused_by_name() -> None:
    """A client that registered an EC encryption certificate gets a CmsError saying why, not a library TypeError."""
    with pytest.raises(CmsError, match=r"^the recipient's encryption certificate does not hold an RSA key$"):
        encrypt_enveloped(b"secret", _certificate(ec.generate_private_key(ec.SECP256R1())))


def test_a_policy_over_64_kib_is_opened(encryption: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> None:
    """A large secret policy's ContentInfo has a three-byte length, which moves the type to bytes 5..15: it is still
    seen as EnvelopedData (the type check looks at the first 16 bytes, not 15)."""
    key, certificate = encryption
    plaintext = bytes(range(256)) * 280
    der = encrypt_enveloped(plaintext, certificate)
    assert der[:2] == b"\x30\x83" and der.index(ENVELOPED_DATA_OID) + len(ENVELOPED_DATA_OID) == 16
    assert decrypt_enveloped(der, certificate, key) == plaintext


def test_a_type_past_the_first_16_bytes_is_not_enveloped_data(
        encryption: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> None:
    """The id-envelopedData type ending at byte 17 (a four-byte length) is refused as not EnvelopedData, before the
    CMS library is asked to open it."""
    key, certificate = encryption
    data = b"\x30\x84\x00\x00\x01\x00" + ENVELOPED_DATA_OID + b"\x00" * 256
    with pytest.raises(CmsError, match=r"^not a CMS EnvelopedData \(the ContentInfo's type is not id-envelopedData\)$"):
        decrypt_enveloped(data, certificate, key)


# --- CCM messaging envelope -------------------------------------------------------------------------------------------

HEADER = MessageHeader(
    target_endpoint="MP_PolicyManager",
    source_id="GUID:C66EE0FD-08E7-4B38-B282-7E6954B71139",
    source_host="DEVICE0001",
    target_host="cmg.example",
    message_id="{BD03DEED-D09A-4E63-ADAD-596376FFB0DA}",
    correlation_id="{11111111-2222-3333-4444-555555555555}",
    sent_time="2020-06-24T15:31:46Z",
    reply_mode="Async",
    protocol="https",
    priority=5,
    timeout_ms=70_001,
    client_auth=(("PublicKey", "0602"), ("ClientIDSignature", "9F" * 8), ("PayloadSignature", "A1" * 8)),
)
BODY = '<RequestAssignments SchemaVersion="1.00"/>'
B = BOUNDARY.encode()
_HEAD = b"--" + B + b"\r\ncontent-type: text/plain; charset=UTF-16\r\n\r\n"
_MID = b"\r\n--" + B + b"\r\ncontent-type: application/octet-stream\r\n\r\n"
_END = b"\r\n--" + B + b"--\r\n"


def _raw(body: str = BODY) -> bytes:
    return body.encode("utf-16-le") + b"\x00\x00"


def _message(header_text: str, payload: bytes, *, header_bytes: bytes | None = None, head: bytes = _HEAD,
             mid: bytes = _MID) -> bytes:
    """A hand-built message with our part headers (or the given ones), so a test can change one thing."""
    if header_bytes is None:
        header_bytes = b"\xff\xfe" + header_text.encode("utf-16-le")
    return head + header_bytes + mid + payload + _END


def _plain_header(**changes: object) -> MessageHeader:
    return dataclasses.replace(HEADER, compressed=False, **changes)  # type: ignore[arg-type]


def _refused(reason: str, data: bytes, *, content_type: str | None = CONTENT_TYPE, **kwargs: int) -> None:
    """``data`` is refused with exactly ``reason`` (the whole message, not a part of it)."""
    with pytest.raises(EnvelopeError) as refused:
        decode_message(content_type, data, **kwargs)
    assert str(refused.value) == reason


# The header part's size limit (64 KiB, BOM included), at its edge.

def _header_of_size(size: int) -> str:
    """A header written by header_xml() whose part (BOM and UTF-16LE text) is ``size`` bytes, padded in SourceHost."""
    base = header_xml(_plain_header(source_host=""), len(_raw()))
    pad = (size - 2) // 2 - len(base)
    return header_xml(_plain_header(source_host="H" * pad), len(_raw()))


def test_a_header_part_of_exactly_64_kib_is_read() -> None:
    text = _header_of_size(MAX_HEADER_BYTES)
    assert 2 + 2 * len(text) == MAX_HEADER_BYTES == 65536
    message = decode_message(CONTENT_TYPE, _message(text, _raw()))
    pad = len(text) - len(header_xml(_plain_header(source_host=""), len(_raw())))
    assert message.header == _plain_header(source_host="H" * pad) and message.body_xml == BODY


@pytest.mark.parametrize("extra", [b"\x00", b"H\x00"], ids=["one-byte-over", "one-character-over"])
def test_a_header_part_past_64_kib_is_refused_by_its_size(extra: bytes) -> None:
    """One byte over (an odd size that UTF-16 would refuse too) or one character over: the size is what is named."""
    header_bytes = b"\xff\xfe" + _header_of_size(MAX_HEADER_BYTES).encode("utf-16-le") + extra
    size = MAX_HEADER_BYTES + len(extra)
    _refused(f"header part of {size} bytes exceeds 65536", _message("", _raw(), header_bytes=header_bytes))


# The body's size limits, at their edges: the default (4 MiB) and a small one; compressed and not.

def test_the_default_body_limit_is_4_mib_uncompressed() -> None:
    body = "x" * ((DEFAULT_MAX_BODY_BYTES - 2) // 2)
    header = MessageHeader(target_endpoint="MP_PolicyManager", compressed=False)
    assert decode_message(CONTENT_TYPE, encode_message(header, body)).body_xml == body
    _refused("body of 4194306 bytes exceeds the limit of 4194304 bytes", encode_message(header, body + "x"))


def test_the_default_body_limit_is_4_mib_inflated() -> None:
    body = "x" * ((DEFAULT_MAX_BODY_BYTES - 2) // 2)
    header = MessageHeader(target_endpoint="MP_PolicyManager")
    assert decode_message(CONTENT_TYPE, encode_message(header, body)).body_xml == body
    _refused("decompressed body exceeds the limit of 4194304 bytes", encode_message(header, body + "x"))


def test_an_uncompressed_body_at_the_limit_is_read_and_one_byte_more_refused() -> None:
    header = header_xml(_plain_header(), 100)
    assert decode_message(CONTENT_TYPE, _message(header, _raw("y" * 49)), max_body_bytes=100).body_xml == "y" * 49
    _refused("body of 101 bytes exceeds the limit of 100 bytes", _message(header, _raw("y" * 49) + b"\x00"),
             max_body_bytes=100)


def test_a_body_inflating_to_the_limit_is_read_and_one_byte_more_refused_as_too_large() -> None:
    """101 bytes out of a 100-byte limit is 'exceeds the limit', not 'truncated': the inflater reads one byte past."""
    header = header_xml(dataclasses.replace(HEADER, compressed=True), 100)
    assert decode_message(CONTENT_TYPE, _message(header, zlib.compress(_raw("y" * 49))),
                          max_body_bytes=100).body_xml == "y" * 49
    _refused("decompressed body exceeds the limit of 100 bytes",
             _message(header, zlib.compress(_raw("y" * 49) + b"\x00")), max_body_bytes=100)


@pytest.mark.parametrize(("payload", "reason"), [
    (zlib.compress(_raw())[:-1], "compressed body is truncated"),
    (zlib.compress(_raw()) + b"12345", "5 bytes of trailing data after the compressed body"),
    (b"\x78\x9c\xff\xff", "body is not valid zlib data: Error -3 while decompressing data: invalid block type"),
])
def test_broken_zlib_is_refused_naming_what_is_wrong(payload: bytes, reason: str) -> None:
    header = header_xml(dataclasses.replace(HEADER, compressed=True), len(_raw()))
    _refused(reason, _message(header, payload))


# The header's Offset and Length frame the body.

def test_offset_and_length_reaching_the_end_exactly_are_read_and_one_byte_past_refused() -> None:
    raw = b"\xaa\xbb" + _raw()
    fits = header_xml(_plain_header(), len(raw) - 2).replace('Offset="0"', 'Offset="2"')
    assert decode_message(CONTENT_TYPE, _message(fits, raw)).body_xml == BODY
    past = header_xml(_plain_header(), len(raw)).replace('Offset="0"', 'Offset="2"')
    _refused(f"body is {len(raw)} bytes but the header's Body Offset 2 and Length {len(raw)} reach byte "
             f"{len(raw) + 2}", _message(past, raw))


@pytest.mark.parametrize("length", [1, 3, 85])
def test_an_odd_length_is_refused_naming_it(length: int) -> None:
    _refused(f"Body Length {length} is odd: a UTF-16 body has an even number of bytes",
             _message(header_xml(_plain_header(), length), _raw()))


@pytest.mark.parametrize("length", [0, 2, 4, 6, 84])
def test_an_even_length_reads_that_many_bytes(length: int) -> None:
    """Length counts bytes, NUL terminator included; a NUL pair at the end of the range is dropped."""
    raw = _raw()
    expected = raw[:length].removesuffix(b"\x00\x00").decode("utf-16-le")
    assert decode_message(CONTENT_TYPE, _message(header_xml(_plain_header(), length), raw)).body_xml == expected


def test_a_body_not_in_utf16le_is_refused_naming_the_byte() -> None:
    raw = b"a\x00\x00\xdcb\x00\x00\x00"
    _refused("body is not valid UTF-16LE: illegal encoding at byte 2", _message(header_xml(_plain_header(), 8), raw))


# The body caches' bounds, at their edges.

def test_a_body_part_of_16_kib_is_remembered_and_a_larger_one_decoded_every_time() -> None:
    envelope._DECODED_BODIES.clear()
    at_bound = _raw("z" * (MAX_CACHED_BODY_PART // 2 - 1))
    assert len(at_bound) == MAX_CACHED_BODY_PART == 16384
    first = decode_message(CONTENT_TYPE, _message(header_xml(_plain_header(), len(at_bound)), at_bound))
    again = decode_message(CONTENT_TYPE, _message(header_xml(_plain_header(), len(at_bound)), at_bound))
    assert again.body_xml is first.body_xml and len(envelope._DECODED_BODIES) == 1
    past = at_bound + b"\x00"  # one byte more in the part; the header still frames the same text
    first = decode_message(CONTENT_TYPE, _message(header_xml(_plain_header(), len(at_bound)), past))
    again = decode_message(CONTENT_TYPE, _message(header_xml(_plain_header(), len(at_bound)), past))
    assert again.body_xml == first.body_xml and again.body_xml is not first.body_xml
    assert len(envelope._DECODED_BODIES) == 1


def test_the_decoded_body_cache_holds_256_bodies_and_empties_on_the_next() -> None:
    envelope._DECODED_BODIES.clear()
    for n in range(DECODED_BODY_CACHE_SIZE):
        decode_message(CONTENT_TYPE, encode_message(HEADER, f"<B{n}/>"))
    assert len(envelope._DECODED_BODIES) == DECODED_BODY_CACHE_SIZE == 256
    decode_message(CONTENT_TYPE, encode_message(HEADER, "<Last/>"))
    assert len(envelope._DECODED_BODIES) == 1


def test_a_body_that_fails_is_not_remembered() -> None:
    envelope._DECODED_BODIES.clear()
    bad = _message(header_xml(_plain_header(), 3), _raw())
    for _ in range(2):
        with pytest.raises(EnvelopeError, match="is odd"):
            decode_message(CONTENT_TYPE, bad)
    assert envelope._DECODED_BODIES == {}


def test_bodies_up_to_1024_characters_use_the_small_encoding_cache_and_longer_ones_the_large() -> None:
    envelope._encode_small.cache_clear()
    envelope._encode_large.cache_clear()
    envelope.encoded_body("s" * SMALL_BODY_CHARS, False)
    assert (envelope._encode_small.cache_info().currsize, envelope._encode_large.cache_info().currsize) == (1, 0)
    envelope.encoded_body("s" * (SMALL_BODY_CHARS + 1), False)
    assert (envelope._encode_small.cache_info().currsize, envelope._encode_large.cache_info().currsize) == (1, 1)
    assert SMALL_BODY_CHARS == 1024


def test_the_encoding_caches_hold_2048_small_and_256_large_bodies() -> None:
    """The oldest body is encoded afresh once the cache is full; the next oldest is still remembered."""
    for cache, count, size in ((envelope._encode_small, 2048, 10), (envelope._encode_large, 256, 2000)):
        cache.cache_clear()
        bodies = [f"{n:0{size}d}" for n in range(count + 1)]
        first = [envelope.encoded_body(body, False) for body in bodies]
        assert cache.cache_info().currsize == count
        assert envelope.encoded_body(bodies[1], False) is first[1]
        assert envelope.encoded_body(bodies[0], False) is not first[0]


# zlib: the header announces the default level and a window sized to the body.

@pytest.mark.parametrize(("raw_size", "window_bits"), [(2, 10), (1024, 10), (1026, 11), (4096, 12), (32768, 15),
                                                       (32770, 15), (100_000, 15)])
def test_the_zlib_header_announces_level_6_and_the_smallest_window_from_1_to_32_kib(raw_size: int,
                                                                                    window_bits: int) -> None:
    _, payload = envelope.encoded_body("q" * ((raw_size - 2) // 2), True)
    cmf, flg = payload[0], payload[1]
    assert (cmf & 0x0F, (cmf >> 4) + 8) == (zlib.DEFLATED, window_bits)
    assert flg >> 6 == 2  # FLEVEL 2: the default level (6)
    assert zlib.decompress(payload) == b"q\x00" * ((raw_size - 2) // 2) + b"\x00\x00"


# The multipart framing: Content-Type and boundary, part headers, delimiters. Every refusal names what it refuses.

@pytest.mark.parametrize(("content_type", "reason"), [
    (None, "missing Content-Type: a CCM message is multipart/mixed"),
    ("", "missing Content-Type: a CCM message is multipart/mixed"),
    ("multipart/related; boundary=x", "Content-Type must be multipart/mixed, got 'multipart/related; boundary=x'"),
    ("multipart/mixed; charset=utf-8", "Content-Type has no boundary: 'multipart/mixed; charset=utf-8'"),
    ('multipart/mixed; boundary=""', "Content-Type boundary is not a valid multipart boundary: ''"),
    ('multipart/mixed; boundary="', "Content-Type boundary is not a valid multipart boundary: '\"'"),
    ('multipart/mixed; boundary="ab', "Content-Type boundary is not a valid multipart boundary: '\"ab'"),
    ('multipart/mixed; boundary=ab"', "Content-Type boundary is not a valid multipart boundary: 'ab\"'"),
    ("multipart/mixed; boundary=ab ", None),  # trailing space of the parameter is not part of it: accepted below
    ("multipart/mixed; boundary=a" + "b" * 70, "Content-Type boundary is not a valid multipart boundary: 'a"
     + "b" * 70 + "'"),
    ("multipart/mixed; boundary=ab\u00e9", "Content-Type boundary is not a valid multipart boundary: 'ab\u00e9'"),
])
def test_content_types_refused_name_the_value(content_type: str | None, reason: str | None) -> None:
    data = encode_message(HEADER, BODY).replace(B, b"ab")
    if reason is None:
        assert decode_message(content_type, data).body_xml == BODY
    else:
        _refused(reason, data, content_type=content_type)


@pytest.mark.parametrize("content_type", [
    f'multipart/mixed; charset=x; boundary="{BOUNDARY}"',
    f"multipart/mixed;boundary={BOUNDARY}",
    f' MULTIPART/MIXED ; Boundary = "{BOUNDARY}" ',
])
def test_content_type_parameters_in_any_order_and_case_are_read(content_type: str) -> None:
    assert decode_message(content_type, encode_message(HEADER, BODY)).body_xml == BODY


def test_a_boundary_of_70_characters_is_the_longest_taken() -> None:
    boundary = "a" * 69 + "Z"
    data = encode_message(HEADER, BODY).replace(B, boundary.encode())
    assert decode_message(f"multipart/mixed; boundary={boundary}", data).body_xml == BODY


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda d: d[1:], f"body does not start with the boundary '{BOUNDARY}'"),
    (lambda d: d.replace(_MID, b"", 1)[: -len(_END)], "body has no delimiter after the header part"),
    (lambda d: d.replace(_MID, b"\r\n--" + B + b"content-type", 1), "message has no body part"),
    (lambda d: d[: -len(_END)] + b"\r\n--" + B + b"-\r\n", f"body has no closing delimiter --{BOUNDARY}--"),
    (lambda d: d + b"\r\n\r\nx", "data after the closing delimiter"),
])
def test_broken_framing_is_refused_naming_what_is_missing(mutate: Callable[[bytes], bytes], reason: str) -> None:
    _refused(reason, mutate(encode_message(HEADER, BODY)))


def test_line_ends_after_the_closing_delimiter_are_allowed() -> None:
    data = encode_message(HEADER, BODY)
    assert decode_message(CONTENT_TYPE, data[:-2]).body_xml == BODY
    assert decode_message(CONTENT_TYPE, data + b"\r\n\n\r").body_xml == BODY


@pytest.mark.parametrize(("head", "mid"), [
    (b"--" + B + b"\r\nContent-Type: text/plain;charset=\"utf-16\"\r\n\r\n",
     b"\r\n--" + B + b"\r\nContent-Length: 9\r\n  CONTENT-TYPE :Application/Octet-Stream \r\n\r\n"),
    (b"--" + B + b"\r\nX-Other: a\r\ncontent-type: TEXT/PLAIN; CHARSET=UTF-16\r\n\r\n", _MID),
])
def test_part_headers_in_other_spellings_are_read(head: bytes, mid: bytes) -> None:
    header = header_xml(_plain_header(), len(_raw()))
    message = decode_message(CONTENT_TYPE, _message(header, _raw(), head=head, mid=mid))
    assert (message.header, message.body_xml) == (_plain_header(), BODY)


@pytest.mark.parametrize(("head", "mid", "reason"), [
    (b"--" + B + b"\r\ncontent-type: text/plain; charset=UTF-16\r\n", _MID,
     "header part has no blank line after its headers"),
    (_HEAD, b"\r\n--" + B + b"\r\ncontent-length: 4\r\n\r\n", "body part has no content-type"),
    (b"--" + B + b"\r\ncontent-type: text/plain; charset=UTF-8\r\n\r\n", _MID,
     "header part content-type must be 'text/plain; charset=UTF-16', got 'text/plain; charset=UTF-8'"),
    (_HEAD, b"\r\n--" + B + b"\r\ncontent-type: application/zip\r\n\r\n",
     "body part content-type must be 'application/octet-stream', got 'application/zip'"),
])
def test_bad_part_headers_are_refused_naming_the_part(head: bytes, mid: bytes, reason: str) -> None:
    _refused(reason, _message(header_xml(_plain_header(), len(_raw())), _raw(), head=head, mid=mid))


@pytest.mark.parametrize(("header_bytes", "reason"), [
    (b"<\x00M\x00", "header part is not UTF-16 with a byte order mark"),
    (b"\xff", "header part is not UTF-16 with a byte order mark"),
    (b"\xfe\xff\x00<\x00", "header part is not valid UTF-16: truncated data"),
    (b"\xff\xfe\x00\xdc", "header part is not valid UTF-16: illegal encoding"),
])
def test_a_header_part_not_in_utf16_with_a_bom_is_refused(header_bytes: bytes, reason: str) -> None:
    _refused(reason, _message("", _raw(), header_bytes=header_bytes))


@pytest.mark.parametrize("bom_and_codec", [(b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")])
def test_a_header_in_either_byte_order_reads_every_field(bom_and_codec: tuple[bytes, str]) -> None:
    bom, codec = bom_and_codec
    text = header_xml(_plain_header(source_host="caf\u00e9 \U0001f600"), len(_raw()))
    message = decode_message(CONTENT_TYPE, _message("", _raw(), header_bytes=bom + text.encode(codec)))
    assert message.header == _plain_header(source_host="caf\u00e9 \U0001f600")


# The header: its own checks, its defaults, and what the ElementTree path refuses.

@pytest.mark.parametrize(("priority", "timeout_ms"), [(-1, 0), (0, -1), (-1, -1)])
def test_a_negative_priority_or_timeout_is_refused_naming_both(priority: int, timeout_ms: int) -> None:
    with pytest.raises(EnvelopeError) as refused:
        MessageHeader(target_endpoint="MP_PolicyManager", priority=priority, timeout_ms=timeout_ms)
    assert str(refused.value) == f"Priority and Timeout must be >= 0, got {priority} and {timeout_ms}"


def test_zero_priority_and_timeout_are_taken() -> None:
    header = MessageHeader(target_endpoint="MP_PolicyManager", priority=0, timeout_ms=0)
    assert (header.priority, header.timeout_ms) == (0, 0)


def test_a_header_built_with_only_its_endpoint_has_the_documented_defaults() -> None:
    header = MessageHeader(target_endpoint="MP_PolicyManager", source_host="PC1")
    assert dataclasses.astuple(header) == (
        "MP_PolicyManager", "", "PC1", "", "mp:MP_PolicyManager", "direct:PC1:SccmMessaging", "", NULL_CORRELATION_ID,
        "", "Sync", "http", 3, 600_000, True, True, ())


def test_given_target_address_and_reply_to_are_kept() -> None:
    header = MessageHeader(target_endpoint="MP_LocationManager", target_address="mp:other", reply_to="direct:X:Q")
    assert (header.target_address, header.reply_to) == ("mp:other", "direct:X:Q")


def _foreign(inner: str, msg_attributes: str = "") -> str:
    """A header in a shape the fast reader does not take (elements in another order), read by ElementTree."""
    return f'<Msg{msg_attributes}><TargetEndpoint>MP_PolicyManager</TargetEndpoint>{inner}</Msg>'


_FOREIGN_BODY = f'<Body Type="ByteRange" Offset="0" Length="{len(_raw())}"/>'


def test_a_header_with_only_endpoint_and_body_takes_the_defaults() -> None:
    message = decode_message(CONTENT_TYPE, _message(_foreign(_FOREIGN_BODY), _raw()))
    # A missing CorrelationID reads as empty (not the null one a MessageHeader defaults to): what was sent, or not.
    assert message.header == MessageHeader(target_endpoint="MP_PolicyManager", compressed=False,
                                           reply_compression=False, correlation_id="")
    assert (message.header.priority, message.header.timeout_ms, message.header.reply_mode,
            message.header.protocol) == (3, 600_000, "Sync", "http")


@pytest.mark.parametrize(("text", "reason"), [
    ("<Message><Body/></Message>", "message header root must be <Msg>, got <Message>"),
    ("<Msg><TargetEndpoint>MP_PolicyManager</TargetEndpoint></Msg>", "message header has no <Body> element"),
    (_foreign(f"<Priority>high</Priority>{_FOREIGN_BODY}"), "header Priority is not an integer: 'high'"),
    (_foreign(f"<Priority>-1</Priority>{_FOREIGN_BODY}"), "header Priority must be >= 0, got -1"),
    (_foreign(f"<Timeout>-1</Timeout>{_FOREIGN_BODY}"), "header Timeout must be >= 0, got -1"),
    (_foreign(f"<Priority></Priority>{_FOREIGN_BODY}"), "header Priority is not an integer: ''"),
    (_foreign('<Body Offset="-1" Length="4"/>'), "header Body Offset must be >= 0, got -1"),
    (_foreign('<Body Offset="0" Length="-2"/>'), "header Body Length must be >= 0, got -2"),
    (_foreign('<Body Offset="0"/>'), "header Body Length is not an integer: None"),
    (_foreign(f"<Priority>1</Priority>{_FOREIGN_BODY}").replace("MP_PolicyManager", ""),
     "message header needs a TargetEndpoint"),
    ("<Msg><Body/>", "message header refused: XML is not well-formed: no element found: line 1, column 12"),
])
def test_a_header_elementtree_refuses_names_the_field(text: str, reason: str) -> None:
    _refused(reason, _message(text, _raw()))


def test_zero_priority_timeout_and_offset_are_read() -> None:
    text = _foreign('<Priority>0</Priority><Timeout>0</Timeout><Body Offset="0" Length="0"/>')
    header = decode_message(CONTENT_TYPE, _message(text, _raw())).header
    assert (header.priority, header.timeout_ms) == (0, 0)


@pytest.mark.parametrize(("attribute", "element", "expected"), [
    (' ReplyCompression="zlib"', "", True),
    (' ReplyCompression="ZLIB"', "", True),
    (' ReplyCompression="gzip"', "", False),
    ("", "<ReplyCompression>Zlib</ReplyCompression>", True),
    ("", "<ReplyCompression>none</ReplyCompression>", False),
    ("", "", False),
])
def test_reply_compression_is_read_from_the_attribute_or_a_child_without_case(attribute: str, element: str,
                                                                             expected: bool) -> None:
    text = _foreign(element + _FOREIGN_BODY, attribute)
    assert decode_message(CONTENT_TYPE, _message(text, _raw())).header.reply_compression is expected


@pytest.mark.parametrize(("hooks", "client_auth", "compressed"), [
    ('<Hook3 Name="zlib-compress"/><Hook2 Name="clientauth"><Property Name="A">1</Property>'
     '<Property Name="B"/><Property>3</Property></Hook2>', (("A", "1"), ("B", ""), ("", "3")), True),
    ('<Hook1 Name="other"><Property Name="A">1</Property></Hook1>', (), False),
    ('<Hook2 Name="clientauth"><Property Name="A &amp; B">&lt;x&gt;</Property></Hook2>', (("A & B", "<x>"),), False),
])
def test_hooks_are_read_by_name_in_any_order(hooks: str, client_auth: tuple[tuple[str, str], ...],
                                             compressed: bool) -> None:
    raw = _raw()
    text = _foreign(f"<Hooks>{hooks}</Hooks>{_FOREIGN_BODY}")
    header = decode_message(CONTENT_TYPE, _message(text, zlib.compress(raw) if compressed else raw)).header
    assert (header.client_auth, header.compressed) == (client_auth, compressed)


# The fast header reader: which headers it takes, and that it reads every field as ElementTree does.

def _both(text: str) -> tuple[tuple[MessageHeader, int, int] | None, tuple[MessageHeader, int, int]]:
    return envelope._parse_header_fast(text), envelope._parse_header_xml(text)


def test_every_field_round_trips_through_the_fast_reader_as_elementtree_reads_it() -> None:
    """Every field distinct from every other, so a field read from its neighbour's place shows."""
    for header in (HEADER, _plain_header(reply_compression=False, client_auth=())):
        text = header_xml(header, 123_456)
        fast, full = _both(text)
        assert fast == full == (header, 0, 123_456)
        message = decode_message(CONTENT_TYPE, encode_message(header, BODY))
        assert (message.header, message.body_xml) == (header, BODY)


_PLAIN_ASCII = "".join(chr(c) for c in range(0x80) if c in (0x09, 0x0A) or (c >= 0x20 and chr(c) not in "<>&"))


@pytest.mark.parametrize("field", ["message_id", "source_id", "source_host", "target_address", "target_endpoint",
                                   "target_host", "reply_to", "reply_mode", "protocol", "sent_time", "correlation_id",
                                   "property_name", "property_value"])
@pytest.mark.parametrize("tail", ["", "\u00e9\U0001f600"], ids=["ascii", "unicode"])
def test_values_of_every_character_xml_carries_as_is_take_the_fast_path(field: str, tail: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Printable ASCII (DEL too), TAB and LF in element text, and the same bar TAB, LF and '"' in a property's
    name, are read without ElementTree, in ASCII-only headers and in others: nothing in them needs a parser."""
    name_chars = _PLAIN_ASCII.replace("\t", "").replace("\n", "").replace('"', "") + tail
    if field == "property_name":
        header = dataclasses.replace(HEADER, client_auth=((name_chars, "v"),))
    elif field == "property_value":
        header = dataclasses.replace(HEADER, client_auth=(("N", _PLAIN_ASCII + tail),))
    else:
        header = dataclasses.replace(HEADER, **{field: _PLAIN_ASCII + tail})  # type: ignore[arg-type]
    text = header_xml(header, 84)
    assert envelope._parse_header_fast(text) == envelope._parse_header_xml(text) == (header, 0, 84)

    def no_xml(text: str, **kwargs: object) -> None:
        raise AssertionError("went through ElementTree")

    monkeypatch.setattr(envelope, "parse_xml", no_xml)
    assert decode_message(CONTENT_TYPE, encode_message(header, BODY)).header == header


@pytest.mark.parametrize("odd", ["&", "<", ">", '"', "\t", "\n", "\r", "a&amp;b", "]]>"])
@pytest.mark.parametrize("where", ["name", "value"])
def test_a_property_needing_escapes_round_trips(odd: str, where: str) -> None:
    """Escaped names and values are left to ElementTree, which unescapes them; the fast path never reads them raw."""
    prop = (f"N{odd}", "v") if where == "name" else ("N", f"v{odd}")
    header = dataclasses.replace(HEADER, client_auth=(("PublicKey", "0602"), prop))
    text = header_xml(header, 84)
    fast, full = _both(text)
    assert full == (header, 0, 84) and fast in (None, full)
    assert decode_message(CONTENT_TYPE, encode_message(header, BODY)).header == header


_BUILT = header_xml(HEADER, 84)


@pytest.mark.parametrize(("text", "fast_takes", "check"), [
    (_BUILT, True, {}),
    (_BUILT.replace("<Priority>5<", "<Priority>007<"), True, {"priority": 7}),
    (_BUILT.replace("<Priority>5<", "<Priority>123456789<"), True, {"priority": 123_456_789}),
    (_BUILT.replace("<Priority>5<", "<Priority>1234567890<"), False, {"priority": 1_234_567_890}),
    (_BUILT.replace("<Timeout>70001<", "<Timeout>999999999999<"), True, {"timeout_ms": 999_999_999_999}),
    (_BUILT.replace("<Priority>5<", "<Priority> 5 <"), False, {"priority": 5}),
    (_BUILT.replace('Type="ByteRange" Offset="0" Length="84"', 'Length="84" Offset="0" Type="ByteRange"'), False, {}),
    (_BUILT.replace('<Msg SchemaVersion="1.1" ReplyCompression="zlib">',
                    '<Msg ReplyCompression="zlib" SchemaVersion="1.1">'), False, {}),
    (_BUILT.replace('<Msg SchemaVersion="1.1" ReplyCompression="zlib">', '<Msg SchemaVersion="1.1">'), True,
     {"reply_compression": False}),
    (_BUILT.replace("><", ">\r\n  <"), False, {}),
    (_BUILT.replace("<SentTime>2020-06-24T15:31:46Z</SentTime>", ""), False, {"sent_time": ""}),
    (_BUILT.replace("<SourceID>GUID:C66EE0FD-08E7-4B38-B282-7E6954B71139</SourceID>", "<SourceID/>"), False,
     {"source_id": ""}),
    (_BUILT.replace("<SourceHost>DEVICE0001<", "<SourceHost>A&amp;B&#13;&#x41;<"), False,
     {"source_host": "A&B\rA"}),
    (_BUILT.replace("<SourceHost>DEVICE0001<", "<SourceHost><![CDATA[<x>]]><"), False, {"source_host": "<x>"}),
    (_BUILT.replace("<SourceHost>DEVICE0001<", "<SourceHost>a\r\nb<"), False, {"source_host": "a\nb"}),
    (_BUILT.replace("<SourceHost>DEVICE0001<", "<SourceHost>a\tb\nc<"), True, {"source_host": "a\tb\nc"}),
    (_BUILT.replace('<Hook3 Name="zlib-compress"/>', ""), True, {"compressed": False}),
    (_BUILT.replace('<Property Name="PublicKey">', "<Property Name='PublicKey'>"), False, {}),
    (_BUILT.replace('<Property Name="PublicKey">', '<Property Name="Public&#9;Key">'), False,
     {"client_auth": (("Public\tKey", "0602"), *HEADER.client_auth[1:])}),
    (_BUILT.replace('<Property Name="PublicKey">', '<Property Name="Public\tKey">'), False,
     {"client_auth": (("Public Key", "0602"), *HEADER.client_auth[1:])}),
])
def test_the_fast_reader_agrees_with_elementtree_on_tricky_headers(text: str, fast_takes: bool,
                                                                  check: dict[str, object]) -> None:
    """Headers in shapes near the one header_xml() writes: the fast reader takes exactly the ones it can read
    without a parser, and reads them as ElementTree does; the fields read are the ones expected."""
    fast, full = _both(text)
    assert (fast is not None) is fast_takes
    assert fast in (None, full)
    assert full == (dataclasses.replace(HEADER, **check), 0, 84)  # type: ignore[arg-type]


@pytest.mark.parametrize("number", ["1_0", "\u0663", "\uff13", "\u0668\u0664", "0x10", "1e3", "", "+", "5 5"])
@pytest.mark.parametrize(("old", "new", "name"), [
    ("<Priority>5<", "<Priority>{}<", "Priority"),
    ("<Timeout>70001<", "<Timeout>{}<", "Timeout"),
    ('Length="84"', 'Length="{}"', "Body Length"),
    ('Offset="0"', 'Offset="{}"', "Body Offset"),
])
def test_a_number_not_in_ascii_digits_is_refused_by_both_readers(number: str, old: str, new: str, name: str) -> None:
    """Python's int() takes '1_0' and other scripts' digits; a header holding them is refused, not read as a number
    (the fast reader leaves it to ElementTree, which names it)."""
    text = _BUILT.replace(old, new.format(number))
    assert envelope._parse_header_fast(text) is None
    _refused(f"header {name} is not an integer: {number!r}", _message(text, zlib.compress(_raw())))


@pytest.mark.parametrize(("number", "value"), [("+5", 5), (" 5 ", 5), ("\n05\t", 5), ("-0", 0)])
def test_a_number_with_a_sign_or_spaces_is_read(number: str, value: int) -> None:
    text = _BUILT.replace("<Priority>5<", f"<Priority>{number}<")
    assert envelope._parse_header_xml(text)[0].priority == value
