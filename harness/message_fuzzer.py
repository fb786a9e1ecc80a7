"""Structure-aware fuzzing of CCM messages: real registration, location and policy bodies in a real envelope, built with
cmg_protocol as the simulated client builds them, then bent in one or two places at a time.

Each case is one request to the CMG's messaging path: what a hostile or broken client could send. The mutations keep
most of the structure valid so that a case gets past the envelope and into the MP's message handling, where odd but
parseable values used to end in a 500. Every choice comes from the injected ``random.Random``: a seed replays a run.
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx

from cmg_protocol import envelope, messages
from cmg_protocol.envelope import MessageHeader
from cmg_protocol.registration import AAD_TOKEN_HEADER

#: Values that have broken parsers and databases before: lengths at limits, separators, XML specials, non-characters.
HOSTILE_TEXT: tuple[str, ...] = (
    "", " ", "A B", "A" * 15, "A" * 16, "a" * 256, "x" * 4096, "GUID:", "GUID:not-a-guid",
    "GUID:00000000-0000-0000-0000-000000000000", "{00000000-0000-0000-0000-000000000000}", "direct:host:",
    "direct::", ":", "mp:", "\\\\server\\share", "../../etc/passwd", "%2F%5C", "<", "&", "&amp;", "]]>",
    "\ufdd0", "\u200b", "\U0001f600", "é", "\u0661\u0662", "-1", "0", "99999999999999999999", "1e400", "NaN",
    "S-1-5-21-" + "1" * 100, "null", "true",
)
#: Whole bodies that are not the message they claim to be.
HOSTILE_BODIES: tuple[str, ...] = (
    "", "<", "not xml", "<!---->" * 28 + "x", "<!--" * 2000, "<!-- -->" * 500 + "<SiteInformationRequest/>",
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><r>&a;</r>',
    "<RequestAssignments>" * 500, "<SiteInformationRequest><![CDATA[x]]></SiteInformationRequest>",
    "<ClientRegistrationRequest/>", "<RequestAssignments/>", "<ContentLocationRequest/>", "\ufeff<a/>",
)
TARGETS = ("MP_ClientRegistration", "MP_LocationManager", "MP_PolicyManager", "MP_Unknown", "")


@dataclass(frozen=True, slots=True)
class FuzzCase:
    """One request: what it mutated (for the report when it fails) and what goes on the wire."""

    mutation: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class FuzzTokens:
    """The credentials cases carry: a valid CCM token (most cases reach the MP), the device's Entra token."""

    ccm: str
    entra: str
    smsid: str


class MessageFuzzer:
    """Produces :class:`FuzzCase` objects from real message shapes, deterministically from ``rng``."""

    def __init__(self, rng: random.Random, *, site_code: str, tokens: FuzzTokens) -> None:
        self.rng = rng
        self.site_code = site_code
        self.tokens = tokens
        self._body_mutations: tuple[Callable[[str], str], ...] = (
            self._replace_value, self._replace_value, self._drop_element, self._duplicate_element,
            self._truncate_text, self._insert_comment, self._whole_body)
        self._wire_mutations: tuple[Callable[[bytes], bytes], ...] = (
            self._flip_bytes, self._truncate_bytes, self._change_length, self._insert_bytes)

    def cases(self, count: int) -> Iterator[FuzzCase]:
        for _ in range(count):
            yield self.case()

    def case(self) -> FuzzCase:
        rng = self.rng
        target, body_xml = self._base()
        mutations = []
        header = self._header(target)
        for _ in range(rng.randint(1, 2)):
            kind = rng.random()
            if kind < 0.5:
                mutate = rng.choice(self._body_mutations)
                body_xml = mutate(body_xml)
                mutations.append(mutate.__name__.lstrip("_"))
            elif kind < 0.8:
                header, name = self._mutate_header(header)
                mutations.append(f"header.{name}")
            else:
                mutations.append("wire")
        try:
            wire = envelope.encode_message(header, body_xml)
        except envelope.EnvelopeError:
            # A value the encoder refuses to write still goes on the wire: substituted in the encoded bytes.
            wire = envelope.encode_message(replace(header, source_host="QQQQ"), body_xml)
            wire = wire.replace("QQQQ".encode("utf-16-le"), "Q\ufffeQQ".encode("utf-16-le"), 1)
            mutations.append("header.nonchar")
        if "wire" in mutations:
            mutate_wire = rng.choice(self._wire_mutations)
            wire = mutate_wire(wire)
            mutations.append(mutate_wire.__name__.lstrip("_"))
        headers = {"Content-Type": envelope.CONTENT_TYPE, "User-Agent": envelope.USER_AGENT,
                   "Authorization": f"Bearer {self.tokens.ccm}"}
        if target == "MP_ClientRegistration":
            headers[AAD_TOKEN_HEADER] = self.tokens.entra
        if rng.random() < 0.05:
            headers["Content-Type"] = rng.choice(("multipart/mixed", "text/plain", 'multipart/mixed; boundary="x"',
                                                  "multipart/mixed; boundary=" + "b" * 200))
            mutations.append("content-type")
        return FuzzCase(mutation="+".join(mutations), target=target, headers=headers, body=wire)

    # --- bases: the messages a client really sends -------------------------------------------------------------------
    def _base(self) -> tuple[str, str]:
        rng = self.rng
        choice = rng.randrange(4)
        if choice == 0:
            return "MP_ClientRegistration", messages.RegistrationRequest(
                netbios_name="FUZZ01", fq_name="fuzz01.contoso.com", locale_id=1033, internet_flag=1,
                agent_version="5.00.8968.1000", signing_cert_hex="3082" + "AB" * 32, encryption_cert_hex="3082",
                timestamp="2026-01-01T00:00:00Z", smsid=self.tokens.smsid, signature_hex="00" * 16).to_xml()
        if choice == 1:
            return "MP_LocationManager", messages.SiteInformationRequest(site_code=self.site_code).to_xml()
        if choice == 2:
            return "MP_LocationManager", messages.ContentLocationRequest(
                site_code=self.site_code, package_id=rng.choice((None, "CS100001")), package_version="1").to_xml()
        return "MP_PolicyManager", messages.RequestAssignments(
            client_id=self.tokens.smsid, fqdn="fuzz01.contoso.com", netbios_name="FUZZ01", sid="",
            site_code=self.site_code).to_xml()

    def _header(self, target: str) -> MessageHeader:
        return MessageHeader(target_endpoint=target, source_id=self.tokens.smsid, source_host="FUZZ01",
                             target_host="mp", message_id="{11111111-2222-3333-4444-555555555555}",
                             sent_time="2026-01-01T00:00:00Z", compressed=self.rng.random() < 0.7)

    # --- header mutations --------------------------------------------------------------------------------------------
    def _mutate_header(self, header: MessageHeader) -> tuple[MessageHeader, str]:
        rng = self.rng
        name = rng.choice(("target_endpoint", "source_host", "source_id", "reply_to", "target_host", "message_id",
                           "correlation_id", "sent_time", "priority", "timeout_ms", "reply_compression"))
        value: Any
        if name == "target_endpoint":
            value = rng.choice(TARGETS + HOSTILE_TEXT[:6])
        elif name in ("priority", "timeout_ms"):
            value = rng.choice((0, 1, 2**31, 10**11))
        elif name == "reply_compression":
            value = not header.reply_compression
        else:
            value = rng.choice(HOSTILE_TEXT)
        try:
            changes: dict[str, Any] = {name: value}
            return replace(header, **changes), name
        except (ValueError, TypeError):  # a header the dataclass itself refuses (no endpoint): keep the original
            return header, name

    # --- body mutations ----------------------------------------------------------------------------------------------
    def _spans(self, xml: str, opener: str, closer: str) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        start = 0
        while len(spans) < 64:
            begin = xml.find(opener, start)
            if begin < 0:
                break
            end = xml.find(closer, begin + len(opener))
            if end < 0:
                break
            spans.append((begin + len(opener), end))
            start = end + len(closer)
        return spans

    def _replace_value(self, xml: str) -> str:
        """An attribute value or an element's text replaced by a hostile value (escaped: the XML stays well-formed)."""
        spans = self._spans(xml, '="', '"') + self._spans(xml, ">", "<")
        if not spans:
            return xml
        begin, end = self.rng.choice(spans)
        value = self.rng.choice(HOSTILE_TEXT)
        escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
        return xml[:begin] + escaped + xml[end:]

    def _drop_element(self, xml: str) -> str:
        spans = self._spans(xml, "<", ">")
        if len(spans) < 2:
            return xml
        begin, end = self.rng.choice(spans[1:])
        return xml[: begin - 1] + xml[end + 1:]

    def _duplicate_element(self, xml: str) -> str:
        spans = self._spans(xml, "<", "/>")
        if not spans:
            return xml
        begin, end = self.rng.choice(spans)
        element = xml[begin - 1: end + 2]
        return xml[:end + 2] + element * self.rng.choice((1, 2, 50)) + xml[end + 2:]

    def _truncate_text(self, xml: str) -> str:
        return xml[: self.rng.randrange(len(xml) + 1)]

    def _insert_comment(self, xml: str) -> str:
        at = self.rng.randrange(len(xml) + 1)
        return xml[:at] + self.rng.choice(("<!-- x -->", "<!---->" * 30, "<!--", "<?pi x?>", "<![CDATA[y]]>")) + xml[at:]

    def _whole_body(self, xml: str) -> str:
        return self.rng.choice(HOSTILE_BODIES)

    # --- wire mutations ----------------------------------------------------------------------------------------------
    def _flip_bytes(self, wire: bytes) -> bytes:
        data = bytearray(wire)
        for _ in range(self.rng.randint(1, 8)):
            data[self.rng.randrange(len(data))] = self.rng.randrange(256)
        return bytes(data)

    def _truncate_bytes(self, wire: bytes) -> bytes:
        return wire[: self.rng.randrange(len(wire))]

    def _change_length(self, wire: bytes) -> bytes:
        marker = 'Length="'.encode("utf-16-le")
        at = wire.find(marker)
        if at < 0:
            return wire
        digits = str(self.rng.choice((0, 1, 2**31, 10**12 - 1))).encode("utf-16-le")
        end = wire.find('"'.encode("utf-16-le"), at + len(marker))
        return wire[: at + len(marker)] + digits + wire[end:]

    def _insert_bytes(self, wire: bytes) -> bytes:
        at = self.rng.randrange(len(wire) + 1)
        blob = self.rng.choice((zlib.compress(b"\x00" * 100_000), b"\r\n--aAbBcCdDv1234567890VxXyYzZ\r\n", b"\xff\xfe",
                                bytes(self.rng.randrange(256) for _ in range(32))))
        return wire[:at] + blob + wire[at:]


@dataclass
class FuzzReport:
    """What a fuzz run saw: statuses by code, the slowest answer, and every case that broke a rule."""

    sent: int = 0
    statuses: dict[int, int] | None = None
    max_seconds: float = 0.0
    slowest: str = ""
    server_errors: list[str] | None = None
    too_slow: list[str] | None = None

    def __post_init__(self) -> None:
        self.statuses = self.statuses if self.statuses is not None else {}
        self.server_errors = self.server_errors if self.server_errors is not None else []
        self.too_slow = self.too_slow if self.too_slow is not None else []


def send_cases(http: httpx.Client, url: str, cases: Iterator[FuzzCase], *, slow_seconds: float = 1.0) -> FuzzReport:
    """CCM_POST every case to ``url`` (the CMG's messaging path), recording status and time of each answer."""
    report = FuzzReport()
    assert report.statuses is not None and report.server_errors is not None and report.too_slow is not None
    for case in cases:
        started = time.perf_counter()
        response = http.request(envelope.CCM_POST, url, headers=case.headers, content=case.body)
        elapsed = time.perf_counter() - started
        report.sent += 1
        report.statuses[response.status_code] = report.statuses.get(response.status_code, 0) + 1
        label = f"{case.target or '-'} {case.mutation}: {response.status_code} {response.reason_phrase}"
        if elapsed > report.max_seconds:
            report.max_seconds, report.slowest = elapsed, f"{label} in {elapsed:.3f} s"
        if response.status_code >= 500:
            report.server_errors.append(label)
        if elapsed > slow_seconds:
            report.too_slow.append(f"{label} in {elapsed:.3f} s")
    return report
