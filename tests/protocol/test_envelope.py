"""Specification of the CCM messaging envelope (PROTOCOL.md §3)."""

from __future__ import annotations

import dataclasses
import time
import zlib

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from cmg_protocol import envelope
from cmg_protocol.envelope import (
    BOUNDARY,
    CONTENT_TYPE,
    EnvelopeError,
    MessageHeader,
    clientauth_signature,
    decode_message,
    encode_message,
    header_xml,
    verify_clientauth_signature,
)

_INVALID_XML = "".join(chr(c) for c in [*range(9), 11, 12, *range(14, 32), 0xFFFE, 0xFFFF])
xml_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters=_INVALID_XML), max_size=40)

headers = st.builds(
    MessageHeader,
    target_endpoint=xml_text.filter(bool),
    source_id=xml_text,
    source_host=xml_text,
    target_host=xml_text,
    target_address=xml_text,
    reply_to=xml_text,
    message_id=xml_text,
    correlation_id=xml_text,
    sent_time=xml_text,
    reply_mode=xml_text,
    protocol=xml_text,
    priority=st.integers(0, 2**40),
    timeout_ms=st.integers(0, 2**40),
    compressed=st.booleans(),
    reply_compression=st.booleans(),
    client_auth=st.lists(st.tuples(xml_text, xml_text), max_size=3).map(tuple),
)

HEADER = MessageHeader(
    target_endpoint="MP_PolicyManager",
    source_id="GUID:C66EE0FD-08E7-4B38-B282-7E6954B71139",
    source_host="DEVICE0001",
    target_host="cmg.example",
    message_id="{BD03DEED-D09A-4E63-ADAD-596376FFB0DA}",
    sent_time="2020-06-24T15:31:46Z",
)
BODY = '<RequestAssignments SchemaVersion="1.00"/>'
B = BOUNDARY.encode()


def multipart(header_text: str, payload: bytes, *, header_type: bytes = b"text/plain; charset=UTF-16",
              body_type: bytes = b"application/octet-stream", header_bytes: bytes | None = None) -> bytes:
    """A hand-built message, so tests can break one thing at a time."""
    if header_bytes is None:
        header_bytes = b"\xff\xfe" + header_text.encode("utf-16-le")
    return (b"--" + B + b"\r\ncontent-type: " + header_type + b"\r\n\r\n" + header_bytes
            + b"\r\n--" + B + b"\r\ncontent-type: " + body_type + b"\r\n\r\n" + payload + b"\r\n--" + B + b"--\r\n")


def uncompressed(header: MessageHeader) -> MessageHeader:
    return dataclasses.replace(header, compressed=False)


@given(header=headers, body=st.text(max_size=300))
def test_any_header_and_body_round_trip(header: MessageHeader, body: str) -> None:
    """Every header and every body text, astral characters included, decode to what was encoded."""
    message = decode_message(CONTENT_TYPE, encode_message(header, body))
    assert message.header == header
    assert message.body_xml == body


@pytest.mark.parametrize("compressed", [True, False])
@given(body=st.text(st.characters(min_codepoint=0x10000), min_size=1, max_size=50))
def test_astral_bodies_round_trip_compressed_or_not(compressed: bool, body: str) -> None:
    """Characters outside the BMP survive as UTF-16 surrogate pairs, with and without zlib."""
    header = MessageHeader(target_endpoint="MP_PolicyManager", compressed=compressed)
    assert decode_message(CONTENT_TYPE, encode_message(header, body)).body_xml == body


def test_encoded_message_has_the_documented_layout() -> None:
    """Boundary lines, part content types, CRLF line ends and the closing delimiter are as the tools show."""
    data = encode_message(HEADER, BODY)
    assert data.startswith(b"--" + B + b"\r\ncontent-type: text/plain; charset=UTF-16\r\n\r\n\xff\xfe<\x00M\x00s\x00g\x00")
    assert b"\r\n--" + B + b"\r\ncontent-type: application/octet-stream\r\n\r\n" in data
    assert data.endswith(b"\r\n--" + B + b"--\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")[: data.index(b"\xff\xfe")]


def test_uncompressed_body_is_utf16le_without_bom_and_nul_terminated() -> None:
    """Without the zlib hook the body part is the XML in UTF-16LE, no BOM, ending in a UTF-16 NUL."""
    header = MessageHeader(target_endpoint="MP_LocationManager", compressed=False)
    data = encode_message(header, BODY)
    assert BODY.encode("utf-16-le") + b"\x00\x00\r\n--" + B + b"--\r\n" in data


def test_compressed_body_is_zlib_of_the_nul_terminated_text() -> None:
    """With the zlib hook the body part inflates (with any zlib) to the NUL-terminated UTF-16LE text."""
    data = encode_message(HEADER, BODY)
    start = data.index(b"application/octet-stream\r\n\r\n") + len(b"application/octet-stream\r\n\r\n")
    payload = data[start : data.rindex(b"\r\n--" + B + b"--")]
    assert zlib.decompress(payload) == BODY.encode("utf-16-le") + b"\x00\x00"


@pytest.mark.parametrize("compressed", [True, False])
def test_header_announces_uncompressed_length_and_hooks(compressed: bool) -> None:
    """Body Length counts uncompressed bytes (NUL included); the zlib hook is present exactly when compressing."""
    header = MessageHeader(target_endpoint="MP_PolicyManager", compressed=compressed)
    text = encode_message(header, BODY).split(b"\xff\xfe", 1)[1].split(b"\r\n--", 1)[0].decode("utf-16-le")
    assert f'<Body Type="ByteRange" Offset="0" Length="{2 * len(BODY) + 2}"/>' in text
    assert ('<Hook3 Name="zlib-compress"/>' in text) is compressed
    assert '<Payload Type="inline"/>' in text and text.startswith('<Msg SchemaVersion="1.1" ReplyCompression="zlib">')


@pytest.mark.parametrize(
    ("endpoint", "address", "reply_to"),
    [
        ("MP_ClientRegistration", "mp:MP_ClientRegistration", "direct:DEVICE0001:SccmMessaging"),
        ("MP_PolicyManager", "mp:MP_PolicyManager", "direct:DEVICE0001:SccmMessaging"),
        ("MP_LocationManager", "mp:[http]MP_LocationManager", "direct:DEVICE0001:LS_ReplyLocations"),
    ],
)
def test_target_address_and_reply_to_default_from_the_endpoint(endpoint: str, address: str, reply_to: str) -> None:
    """Empty TargetAddress and ReplyTo take the forms the tools show for each MP endpoint."""
    header = MessageHeader(target_endpoint=endpoint, source_host="DEVICE0001")
    assert (header.target_address, header.reply_to) == (address, reply_to)


def test_header_without_target_endpoint_is_refused() -> None:
    """A header must name its TargetEndpoint."""
    with pytest.raises(EnvelopeError, match="TargetEndpoint"):
        MessageHeader(target_endpoint="")


def test_header_in_another_element_order_decodes_through_elementtree() -> None:
    """A foreign header (other order, ReplyCompression as a child, unknown children) still decodes."""
    raw = BODY.encode("utf-16-le") + b"\x00\x00"
    header = (
        f'<Msg SchemaVersion="1.1"><TargetEndpoint>MP_PolicyManager</TargetEndpoint><ID>{{X}}</ID>'
        f"<Extra>ignored</Extra><ReplyCompression>zlib</ReplyCompression><Priority>0</Priority>"
        f'<Body Type="ByteRange" Offset="0" Length="{len(raw)}"/><Hooks><Hook7 Name="zlib-compress"/></Hooks></Msg>'
    )
    message = decode_message(CONTENT_TYPE, multipart(header, zlib.compress(raw)))
    assert message.body_xml == BODY
    assert (message.header.message_id, message.header.priority, message.header.reply_compression) == ("{X}", 0, True)
    assert message.header.compressed


def test_big_endian_header_with_bom_decodes() -> None:
    """'UTF-16 with BOM' admits either byte order in the header part."""
    raw = BODY.encode("utf-16-le") + b"\x00\x00"
    header = header_xml(uncompressed(HEADER), len(raw))
    data = multipart("", raw, header_bytes=b"\xfe\xff" + header.encode("utf-16-be"))
    assert decode_message(CONTENT_TYPE, data).header.message_id == HEADER.message_id


def test_body_holding_the_closing_delimiter_bytes_round_trips() -> None:
    """A body whose bytes contain the closing delimiter is still cut at the real end."""
    body = (b"\r\n--" + B + b"--\r\n").decode("utf-16-le")
    header = MessageHeader(target_endpoint="MP_PolicyManager", compressed=False)
    assert decode_message(CONTENT_TYPE, encode_message(header, body)).body_xml == body


@pytest.mark.parametrize(
    "content_type",
    [
        'multipart/mixed; boundary="aAbBcCdDv1234567890VxXyYzZ"',
        "multipart/mixed; boundary=aAbBcCdDv1234567890VxXyYzZ",
        'Multipart/Mixed;boundary="aAbBcCdDv1234567890VxXyYzZ"',
    ],
)
def test_content_type_spellings_are_accepted(content_type: str) -> None:
    """The media type is matched without case and the boundary quoted or not."""
    assert decode_message(content_type, encode_message(HEADER, BODY)).body_xml == BODY


def _good_raw() -> tuple[str, bytes]:
    raw = BODY.encode("utf-16-le") + b"\x00\x00"
    return header_xml(uncompressed(HEADER), len(raw)), raw


@pytest.mark.parametrize(
    ("content_type", "data", "reason"),
    [
        (None, encode_message(HEADER, BODY), "missing Content-Type"),
        ("application/xml", encode_message(HEADER, BODY), "multipart/mixed"),
        ("multipart/mixed", encode_message(HEADER, BODY), "no boundary"),
        ('multipart/mixed; boundary="other"', encode_message(HEADER, BODY), "does not start with the boundary"),
        ('multipart/mixed; boundary=""', encode_message(HEADER, BODY), "not a valid multipart boundary"),
        (CONTENT_TYPE, encode_message(HEADER, BODY).replace(B + b"--", b"x" * (len(B) + 2)), "closing delimiter"),
        (CONTENT_TYPE, encode_message(HEADER, BODY) + b"junk", "after the closing delimiter"),
        (CONTENT_TYPE, b"--" + B + b"\r\ncontent-type: text/plain; charset=UTF-16\r\n\r\n\xff\xfe", "no delimiter"),
    ],
)
def test_malformed_multipart_is_refused(content_type: str | None, data: bytes, reason: str) -> None:
    """Wrong or missing content type, boundary or delimiters give an EnvelopeError saying which."""
    with pytest.raises(EnvelopeError, match=reason):
        decode_message(content_type, data)


def test_message_without_body_part_is_refused() -> None:
    """A header part followed directly by the closing delimiter has no body part."""
    header, _ = _good_raw()
    data = b"--" + B + b"\r\ncontent-type: text/plain; charset=UTF-16\r\n\r\n\xff\xfe" + header.encode("utf-16-le")
    with pytest.raises(EnvelopeError, match="no body part"):
        decode_message(CONTENT_TYPE, data + b"\r\n--" + B + b"--\r\n")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"header_type": b"text/xml"}, "header part content-type"),
        ({"body_type": b"text/plain"}, "body part content-type"),
        ({"header_bytes": b"<\x00M\x00"}, "byte order mark"),
        ({"header_bytes": b"\xff\xfe<\x00M"}, "not valid UTF-16"),
        ({"header_bytes": b"\xff\xfe\x00\xdc<\x00"}, "not valid UTF-16"),
    ],
)
def test_bad_parts_are_refused(kwargs: dict[str, bytes], reason: str) -> None:
    """Part content types must match and the header must be UTF-16 with a BOM."""
    header, raw = _good_raw()
    with pytest.raises(EnvelopeError, match=reason):
        decode_message(CONTENT_TYPE, multipart(header, raw, **kwargs))


def test_body_that_is_not_utf16_is_refused() -> None:
    """A lone surrogate in the body bytes is bad UTF-16."""
    raw = b"\x00\xd8a\x00\x00\x00"
    header = header_xml(uncompressed(HEADER), len(raw))
    with pytest.raises(EnvelopeError, match="not valid UTF-16LE"):
        decode_message(CONTENT_TYPE, multipart(header, raw))


def test_body_shorter_than_its_length_is_refused() -> None:
    """The header's Offset/Length range must lie inside the body."""
    header, raw = _good_raw()
    with pytest.raises(EnvelopeError, match="Offset 0 and Length"):
        decode_message(CONTENT_TYPE, multipart(header, raw[:-2]))


def test_odd_body_length_is_refused() -> None:
    """A UTF-16 body has an even number of bytes."""
    _, raw = _good_raw()
    with pytest.raises(EnvelopeError, match="is odd"):
        decode_message(CONTENT_TYPE, multipart(header_xml(uncompressed(HEADER), len(raw) - 1), raw))


def _tools_style(body: str, *, compressed: bool, with_terminator: bool) -> bytes:
    """A message built as the public tools build it: the header's elements sorted, ``<Body … />`` with a space, the
    text NUL-terminated and followed by CR LF, the Length without the CR LF (and, for some, without the NUL)."""
    text = body.encode("utf-16-le") + b"\x00\x00\r\n"
    length = len(text) - 2 if with_terminator else len(text) - 4
    hooks = '<Hooks><Hook3 Name="zlib-compress" /></Hooks>' if compressed else "<Hooks />"
    header = (f'<Msg ReplyCompression="zlib" SchemaVersion="1.1"><Body Type="ByteRange" Length="{length}" Offset="0" />'
              f"<CorrelationID>{{00000000-0000-0000-0000-000000000000}}</CorrelationID>{hooks}"
              "<ID>{5DD100CD-DF1D-45F5-BA17-A327F43465F8}</ID><Payload Type=\"inline\" /><Priority>0</Priority>"
              "<Protocol>http</Protocol><ReplyMode>Sync</ReplyMode><ReplyTo>direct:DEV1:SccmMessaging</ReplyTo>"
              "<SentTime>2024-01-01T00:00:00Z</SentTime><SourceHost>DEV1</SourceHost>"
              "<TargetAddress>mp:MP_ClientRegistration</TargetAddress><TargetEndpoint>MP_ClientRegistration"
              "</TargetEndpoint><TargetHost>mp.example</TargetHost><Timeout>60000</Timeout></Msg>")
    payload = zlib.compress(text) if compressed else text
    # Their closing delimiter has no CR LF after it.
    return multipart(header, payload)[:-2]


@pytest.mark.parametrize("with_terminator", [True, False])
@pytest.mark.parametrize("compressed", [True, False])
def test_tools_bytes_with_trailing_crlf_are_read_by_offset_and_length(compressed: bool, with_terminator: bool) -> None:
    """What the public tools send is read as a real MP reads it: the Offset/Length range, whatever follows it."""
    message = decode_message(CONTENT_TYPE, _tools_style(BODY, compressed=compressed, with_terminator=with_terminator))
    assert message.body_xml == BODY
    assert message.header.target_endpoint == "MP_ClientRegistration"
    assert message.header.compressed is compressed


def test_body_offset_skips_leading_bytes() -> None:
    """A non-zero Offset starts the body further in."""
    raw = b"\xAA\xBB" + BODY.encode("utf-16-le") + b"\x00\x00"
    header = header_xml(uncompressed(HEADER), len(raw) - 2).replace('Offset="0"', 'Offset="2"')
    assert decode_message(CONTENT_TYPE, multipart(header, raw)).body_xml == BODY


def test_payload_is_the_body_part_as_sent() -> None:
    """The decoded message keeps the body part's bytes (compressed), which PayloadSignature signs."""
    data = encode_message(HEADER, BODY)
    message = decode_message(CONTENT_TYPE, data)
    assert zlib.decompress(message.payload) == BODY.encode("utf-16-le") + b"\x00\x00"


def test_doctype_in_header_is_refused() -> None:
    """A header with a DTD is refused before any entity could expand."""
    header, raw = _good_raw()
    evil = '<!DOCTYPE Msg [<!ENTITY a "aaaa">]>' + header.replace("<ID>", "<ID>&a;")
    with pytest.raises(EnvelopeError, match="DOCTYPE"):
        decode_message(CONTENT_TYPE, multipart(evil, raw))


def test_zlib_bomb_stops_at_the_limit() -> None:
    """A small compressed body that inflates past max_body_bytes is refused without inflating it all."""
    bomb = zlib.compress(b"\x00" * (8 * 1024 * 1024), 9)
    header = header_xml(HEADER, 8 * 1024 * 1024)
    with pytest.raises(EnvelopeError, match="exceeds the limit of 65536"):
        decode_message(CONTENT_TYPE, multipart(header, bomb), max_body_bytes=64 * 1024)


def test_zlib_bomb_is_refused_at_the_default_limit() -> None:
    """The default limit (4 MiB) also stops a bomb."""
    bomb = zlib.compress(b"\x00" * (8 * 1024 * 1024), 9)
    with pytest.raises(EnvelopeError, match="exceeds the limit"):
        decode_message(CONTENT_TYPE, multipart(header_xml(HEADER, 8 * 1024 * 1024), bomb))


def test_uncompressed_body_over_the_limit_is_refused() -> None:
    """The limit applies to uncompressed bodies as well."""
    header = MessageHeader(target_endpoint="MP_PolicyManager", compressed=False)
    with pytest.raises(EnvelopeError, match="exceeds the limit of 100"):
        decode_message(CONTENT_TYPE, encode_message(header, "x" * 100), max_body_bytes=100)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not zlib at all", "not valid zlib"),
        (zlib.compress(b"a\x00\x00\x00")[:-3], "truncated"),
        (zlib.compress(b"a\x00\x00\x00") + b"extra", "trailing data"),
    ],
)
def test_broken_zlib_is_refused(payload: bytes, reason: str) -> None:
    """Corrupt, truncated or padded zlib data is refused."""
    with pytest.raises(EnvelopeError, match=reason):
        decode_message(CONTENT_TYPE, multipart(header_xml(HEADER, 4), payload))


@pytest.fixture(scope="module")
def client_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_clientauth_properties_travel_in_the_hooks(client_key: rsa.RSAPrivateKey) -> None:
    """The clientauth hook's properties (a signature among them) come back in order."""
    signature = clientauth_signature(client_key, BODY.encode("utf-16-le"))
    header = MessageHeader(target_endpoint="MP_PolicyManager", client_auth=(("PublicKey", "0602"),
                                                                            ("PayloadSignature", signature)))
    decoded = decode_message(CONTENT_TYPE, encode_message(header, BODY)).header
    assert decoded.client_auth == header.client_auth


def test_clientauth_signature_is_reversed_upper_hex_pkcs1(client_key: rsa.RSAPrivateKey) -> None:
    """A clientauth signature verifies over the same bytes and is upper-case hex."""
    signature = clientauth_signature(client_key, b"payload")
    assert signature == signature.upper() and len(signature) == 512
    verify_clientauth_signature(client_key.public_key(), b"payload", signature)


@pytest.mark.parametrize("data", [b"tampered", b"payload "])
def test_clientauth_signature_over_other_bytes_is_refused(client_key: rsa.RSAPrivateKey, data: bytes) -> None:
    """A signature does not verify over different bytes."""
    signature = clientauth_signature(client_key, b"payload")
    with pytest.raises(EnvelopeError, match="does not verify"):
        verify_clientauth_signature(client_key.public_key(), data, signature)


def test_clientauth_signature_that_is_not_hex_is_refused(client_key: rsa.RSAPrivateKey) -> None:
    """A signature must be hex."""
    with pytest.raises(EnvelopeError, match="not hex"):
        verify_clientauth_signature(client_key.public_key(), b"payload", "zz")


@pytest.mark.parametrize("value", ["&" * 30_000, "&amp;" * 6_000 + "<", "a\r" * 15_000, "\t" * 30_000 + "&"])
def test_hostile_header_values_fail_in_linear_time(value: str) -> None:
    """A near-miss of the fast header shape (every value long and odd) is decided quickly, by either path."""
    good = header_xml(MessageHeader(target_endpoint="MP_LocationManager", message_id="{X}"), 10)
    text = good.replace("<SourceHost></SourceHost>", f"<SourceHost>{value}</SourceHost>").replace("</Msg>", "")
    started = time.perf_counter()
    with pytest.raises(EnvelopeError):
        decode_message(CONTENT_TYPE, multipart(text, b"x" * 10))
    assert time.perf_counter() - started < 0.5


def test_a_repeated_body_part_is_decoded_once_and_a_changed_one_afresh() -> None:
    """Byte-identical body parts give the very same body text (decoded once); another body, or the same body part
    framed otherwise by its header, is decoded (and checked) again."""
    from dataclasses import replace

    from cmg_protocol import envelope as env

    env._DECODED_BODIES.clear()
    header = MessageHeader(target_endpoint="MP_PolicyManager", source_host="PC-1")
    first = decode_message(CONTENT_TYPE, encode_message(header, BODY))
    again = decode_message(CONTENT_TYPE, encode_message(replace(header, message_id="{other}"), BODY))
    assert again.body_xml is first.body_xml and again.body_xml == BODY
    other = decode_message(CONTENT_TYPE, encode_message(header, BODY.replace("1.00", "2.00")))
    assert other.body_xml == BODY.replace("1.00", "2.00")
    data = encode_message(header, BODY)
    odd = data.replace(b"L\x00e\x00n\x00g\x00t\x00h\x00=\x00\"\x00", b"L\x00e\x00n\x00g\x00t\x00h\x00=\x00\"\x001\x00", 1)
    with pytest.raises(EnvelopeError):
        decode_message(CONTENT_TYPE, odd)  # the same body part, now announced far longer: refused, not remembered


def test_a_devices_repeated_request_body_keeps_its_encoding_and_a_large_body_uses_the_small_cache_never() -> None:
    """A small body (a device's policy request) is encoded once and remembered among thousands; a large one goes to
    the short cache, so registrations that never repeat cannot push the devices' bodies out."""
    from cmg_protocol import envelope as env

    env._encode_small.cache_clear()
    env._encode_large.cache_clear()
    bodies = [f'<RequestAssignments SchemaVersion="1.00" ClientID="GUID:{n}"/>' for n in range(1500)]
    first = [env.encoded_body(body, True) for body in bodies]
    for _ in range(5):
        env.encoded_body("<Registration>" + "x" * 3000 + "</Registration>" + str(_), True)
    assert all(env.encoded_body(body, True) is pair for body, pair in zip(bodies, first, strict=True))
    assert env._encode_large.cache_info().currsize == 5
    assert env.encoded_body(bodies[0].replace("GUID:0", "GUID:x"), True) != first[0]


def _signed_header(**changes: object) -> MessageHeader:
    """A header as a device's signed policy request carries it: the clientauth hook, then the zlib hook."""
    auth = (("PublicKey", "0602000000A40000525341310008" * 4), ("ClientIDSignature", "9F" * 256),
            ("PayloadSignature", "A1" * 256), ("ClientIDSignatureAlgorithm", "SHA256"))
    return dataclasses.replace(HEADER, client_auth=auth, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("compressed", [True, False])
def test_a_signed_header_takes_the_fast_path(compressed: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The header of every signed request (clientauth hook) is read without ElementTree, properties in order."""
    header = _signed_header(compressed=compressed)
    text = header_xml(header, 84)
    assert envelope._parse_header_fast(text) == (header, 0, 84)

    def no_xml(text: str, **kwargs: object) -> None:
        raise AssertionError("the signed header went through ElementTree")

    monkeypatch.setattr(envelope, "parse_xml", no_xml)
    assert decode_message(CONTENT_TYPE, encode_message(header, BODY)).header == header


def _both_parsers_agree(text: str) -> None:
    fast = envelope._parse_header_fast(text)
    try:
        full: object = envelope._parse_header_xml(text)
    except EnvelopeError as refused:
        full = refused
    if fast is not None:
        assert fast == full


@given(header=headers, length=st.integers(0, 2**40))
def test_fast_and_full_header_parsers_agree_on_every_built_header(header: MessageHeader, length: int) -> None:
    """Whatever header_xml() writes, the fast path reads as ElementTree does (or leaves it to ElementTree)."""
    text = header_xml(header, length)
    _both_parsers_agree(text)
    if all("&" not in value and "<" not in value and ">" not in value and "\r" not in value
           for value in (header.message_id, header.source_id, header.source_host, header.target_address,
                         header.target_endpoint, header.target_host, header.reply_to, header.reply_mode,
                         header.protocol, header.sent_time, header.correlation_id)) \
            and all(not any(c in name for c in '&<>"\r\n\t') and not any(c in value for c in "&<>\r")
                    for name, value in header.client_auth) and length < 10**12 and header.priority < 10**9 \
            and header.timeout_ms < 10**12:
        # Nothing in it needs escaping: the fast path must take it (the signed policy request is such a header).
        assert envelope._parse_header_fast(text) is not None


_ODD = st.sampled_from(['"', "'", "<", ">", "]]>", "&", "&amp;", "&#13;", "\r", "\n", "\t", " ", "\x00", "\ufffe",
                        "\U0001f600", "<Property Name=\"X\">", "</Property>", "<Hook2 Name=\"clientauth\">",
                        "</Hook2>", "<Hook3 Name=\"zlib-compress\"/>", "/>", "<!-- c -->", "<![CDATA[x]]>", "=",
                        "Name", "Property", "-1", "9" * 13])


@given(header=headers, position=st.integers(0, 10_000), cut=st.integers(0, 3), odd=st.lists(_ODD, min_size=1,
                                                                                          max_size=3))
def test_fast_and_full_header_parsers_agree_on_odd_headers(header: MessageHeader, position: int, cut: int,
                                                          odd: list[str]) -> None:
    """A built header with odd text spliced in anywhere (replacing a few characters): the fast path either reads it
    as ElementTree does or leaves it to ElementTree."""
    text = header_xml(_signed_header() if position % 2 else header, 84)
    position %= len(text) + 1
    _both_parsers_agree(text[:position] + "".join(odd) + text[position + cut:])


@pytest.mark.parametrize("odd", [
    '<Property Name="A">x</Property><Property Name="B">y</Property>',  # more properties than were signed
    '<Property Name="A\tB">x</Property>',  # a TAB an attribute value normalises into a space
    '<Property Name="A">]]></Property>',  # not well-formed
    '<Property Name="A">&amp;</Property>',  # a reference
    '<Property Name="A"/>',  # an empty element in the short form
    "<Property>x</Property>",  # no Name
])
def test_fast_and_full_header_parsers_agree_on_odd_properties(odd: str) -> None:
    """Properties in shapes the project does not write are read as ElementTree reads them, or refused as it does."""
    text = header_xml(_signed_header(), 84).replace('<Hook2 Name="clientauth">', f'<Hook2 Name="clientauth">{odd}')
    _both_parsers_agree(text)


@pytest.mark.parametrize("field", ["message_id", "source_id", "source_host", "target_address", "target_endpoint",
                                   "target_host", "reply_to", "reply_mode", "protocol", "sent_time", "correlation_id"])
@pytest.mark.parametrize("value", ["a&b", "<x>", "]]>", "line\r\nnext", "caf\u00e9 & co"])
def test_a_value_needing_escapes_in_any_one_field_round_trips(field: str, value: str) -> None:
    """The header's values are checked together for characters to escape: one such value among plain ones is escaped."""
    header = dataclasses.replace(_signed_header(), **{field: value})
    assert decode_message(CONTENT_TYPE, encode_message(header, BODY)).header == header
