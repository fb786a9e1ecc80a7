"""Log line formats admins read in CMTrace / OneTrace: CCM (CMTrace), SMS trace, and the CMGService.log traffic text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

CMTRACE_INFO, CMTRACE_WARNING, CMTRACE_ERROR = 1, 2, 3
SMSTRACE_SEPARATOR = "~~  $$"

_CMTRACE_END = "]LOG]!>"
_CMTRACE = re.compile(
    r'<!\[LOG\[(?P<text>.*)\]LOG\]!><time="(?P<time>\d\d:\d\d:\d\d\.\d{3})(?P<bias>[+-]\d{1,4})" '
    r'date="(?P<date>\d\d-\d\d-\d{4})" component="(?P<component>[^"]*)" context="(?P<context>[^"]*)" '
    r'type="(?P<type>[123])" thread="(?P<thread>\d+)" file="(?P<file>[^"]*)">',
    re.DOTALL,
)
_SMSTRACE = re.compile(
    r"(?P<text>.*)~~  \$\$<(?P<component>[^<>]*)><(?P<date>\d\d-\d\d-\d{4}) (?P<time>\d\d:\d\d:\d\d\.\d{3})"
    r"(?P<bias>[+-]\d{1,4})><thread=(?P<thread>\d+) \(0x(?P<hex>[0-9A-Fa-f]+)\)>",
    re.DOTALL,
)
# Whitespace runs are free when parsing: the walk-through itself shows one line with five spaces where two belong.
_CMGSERVICE = re.compile(
    r"RequestUri: (?P<uri>\S+)\s+RequestCount: (?P<rc>\d+)\s+RequestSize: (?P<rs>\d+) Bytes\s+"
    r"ResponseCount: (?P<pc>\d+)\s+ResponseSize: (?P<ps>\d+) Bytes\s+AverageElapsedTime: (?P<ms>\d+) ms"
)


class LogFormatError(ValueError):
    """A log line or a value for one does not fit the format; the message names it."""


@dataclass(frozen=True, slots=True)
class CmtraceEntry:
    """One CMTrace (CCM log) entry; ``when`` carries the writer's UTC offset."""

    text: str
    component: str
    when: datetime
    type: int = CMTRACE_INFO
    thread: int = 0
    file: str = ""
    context: str = ""


@dataclass(frozen=True, slots=True)
class SmstraceEntry:
    """One SMS-trace (site server and CMG log) entry; ``when`` carries the writer's UTC offset."""

    text: str
    component: str
    when: datetime
    thread: int = 0


@dataclass(frozen=True, slots=True)
class CmgServiceTraffic:
    """The numbers of one CMGService.log traffic line, for one request URI over one period."""

    request_uri: str
    request_count: int
    request_size: int
    response_count: int
    response_size: int
    average_elapsed_ms: int


def _bias_minutes(when: datetime) -> int:
    offset = when.utcoffset()
    if offset is None:
        raise LogFormatError(f"log times need a time zone (UTC for the site), got naive {when.isoformat()}")
    # The bias is what to add to local time to get UTC, i.e. minus the UTC offset.
    return -int(offset.total_seconds() // 60)


def _bias(when: datetime, width: int) -> str:
    bias = _bias_minutes(when)
    return f"{'-' if bias < 0 else '+'}{abs(bias):0{width}d}"


def _clock(when: datetime) -> str:
    return f"{when:%H:%M:%S}.{when.microsecond // 1000:03d}"


def _attribute(value: str, name: str) -> str:
    if '"' in value or "\n" in value or "\r" in value:
        raise LogFormatError(f"{name} cannot hold a quote or a line break: {value!r}")
    return value


def _parse_when(date: str, time: str, bias: str) -> datetime:
    try:
        local = datetime.strptime(f"{date} {time}", "%m-%d-%Y %H:%M:%S.%f")
    except ValueError:
        raise LogFormatError(f"not a valid log date and time: {date} {time}") from None
    minutes = int(bias)
    if abs(minutes) >= 24 * 60:
        raise LogFormatError(f"time zone bias out of range: {bias}")
    return local.replace(tzinfo=timezone(timedelta(minutes=-minutes)))


def cmtrace_line(
    text: str, *, component: str, when: datetime, type: int = CMTRACE_INFO, thread: int = 0, file: str = ""
) -> str:
    """One CMTrace entry (no line ending), as the client and the MP write their logs."""
    if type not in (CMTRACE_INFO, CMTRACE_WARNING, CMTRACE_ERROR):
        raise LogFormatError(f"CMTrace type must be 1, 2 or 3, got {type!r}")
    if thread < 0:
        raise LogFormatError(f"thread id must be >= 0, got {thread}")
    # The end marker inside the text would cut the entry short for every reader; break it up.
    if _CMTRACE_END in text:
        text = text.replace(_CMTRACE_END, "]LOG] !>")
    return (
        f'<![LOG[{text}]LOG]!><time="{_clock(when)}{_bias(when, 3)}" date="{when:%m-%d-%Y}" '
        f'component="{_attribute(component, "component")}" context="" type="{type}" thread="{thread}" '
        f'file="{_attribute(file, "file")}">'
    )


def parse_cmtrace_line(line: str) -> CmtraceEntry:
    """Read one CMTrace entry (a trailing line ending is ignored)."""
    found = _CMTRACE.fullmatch(line.rstrip("\r\n"))
    if found is None:
        raise LogFormatError(f"not a CMTrace line: {line[:80]!r}")
    return CmtraceEntry(
        text=found["text"],
        component=found["component"],
        when=_parse_when(found["date"], found["time"], found["bias"]),
        type=int(found["type"]),
        thread=int(found["thread"]),
        file=found["file"],
        context=found["context"],
    )


def smstrace_line(text: str, *, component: str, when: datetime, thread: int = 0) -> str:
    """One SMS-trace entry (no line ending), as the CMG and site server roles write their logs."""
    if thread < 0:
        raise LogFormatError(f"thread id must be >= 0, got {thread}")
    if "<" in component or ">" in component:
        raise LogFormatError(f"component cannot hold '<' or '>': {component!r}")
    return (
        f"{text}{SMSTRACE_SEPARATOR}<{component}><{when:%m-%d-%Y} {_clock(when)}{_bias(when, 2)}>"
        f"<thread={thread} (0x{thread:X})>"
    )


def parse_smstrace_line(line: str) -> SmstraceEntry:
    """Read one SMS-trace entry (a trailing line ending is ignored)."""
    found = _SMSTRACE.fullmatch(line.rstrip("\r\n"))
    if found is None:
        raise LogFormatError(f"not an SMS-trace line: {line[:80]!r}")
    thread = int(found["thread"])
    if int(found["hex"], 16) != thread:
        raise LogFormatError(f"thread {thread} and its hex form 0x{found['hex']} disagree")
    return SmstraceEntry(
        text=found["text"],
        component=found["component"],
        when=_parse_when(found["date"], found["time"], found["bias"]),
        thread=thread,
    )


def cmgservice_text(
    request_uri: str,
    request_count: int,
    request_size: int,
    response_count: int,
    response_size: int,
    average_elapsed_ms: float,
) -> str:
    """The CMGService.log traffic text for one request URI (the SMS-trace line's text part).

    The URI is written upper-cased, as the CMG's samples show it (``/CCM_PROXY_SERVERAUTH/<id>/CCM_STS`` for a client
    that sent ``/CCM_Proxy_ServerAuth/<id>/CCM_STS``).
    """
    if not request_uri or any(ch.isspace() for ch in request_uri):
        raise LogFormatError(f"request URI must be non-empty without spaces: {request_uri!r}")
    numbers = (request_count, request_size, response_count, response_size, average_elapsed_ms)
    if any(n < 0 for n in numbers):
        raise LogFormatError(f"traffic numbers must be >= 0, got {numbers}")
    return (
        f"RequestUri: {request_uri.upper()}  RequestCount: {request_count:d}  RequestSize: {request_size:d} Bytes  "
        f"ResponseCount: {response_count:d}  ResponseSize: {response_size:d} Bytes  "
        f"AverageElapsedTime: {round(average_elapsed_ms):d} ms"
    )


def parse_cmgservice_text(text: str) -> CmgServiceTraffic:
    """Read the numbers of a CMGService.log traffic text (the text part of its SMS-trace line)."""
    found = _CMGSERVICE.fullmatch(text.strip())
    if found is None:
        raise LogFormatError(f"not a CMGService traffic line: {text[:80]!r}")
    return CmgServiceTraffic(
        request_uri=found["uri"],
        request_count=int(found["rc"]),
        request_size=int(found["rs"]),
        response_count=int(found["pc"]),
        response_size=int(found["ps"]),
        average_elapsed_ms=int(found["ms"]),
    )
