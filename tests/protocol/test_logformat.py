"""Specification of the log line formats (PROTOCOL.md §6), checked against the walk-through's own lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cmg_protocol.logformat import (
    CmgServiceTraffic,
    LogFormatError,
    cmgservice_text,
    cmtrace_line,
    parse_cmgservice_text,
    parse_cmtrace_line,
    parse_smstrace_line,
    smstrace_line,
)

# Copied from the walk-through (section 3.2 and 4.1), byte for byte.
WALKTHROUGH_CMGSERVICE = (
    "RequestUri: /CCM_PROXY_SERVERAUTH/72057594037937981/CCM_STS  RequestCount: 1  RequestSize: 1974 Bytes  "
    "ResponseCount: 1  ResponseSize: 1566 Bytes  AverageElapsedTime: 218 ms~~  $$<CMGService>"
    "<06-24-2020 15:31:46.376+00><thread=4992 (0x1380)>"
)
WALKTHROUGH_CMGSERVICE_TEXT_ONLY = (
    "RequestUri: /CCM_PROXY_SERVERAUTH/72057594037937981/CCM_STS  RequestCount: 769  RequestSize: 1081595 Bytes  "
    "ResponseCount: 769     ResponseSize: 36143 Bytes  AverageElapsedTime: 3945 ms"
)
WHEN = datetime(2020, 6, 24, 15, 31, 46, 376000, tzinfo=UTC)


def test_walkthrough_cmgservice_line_parses_and_reformats_exactly() -> None:
    """The walk-through's CMGService.log line parses, and formatting its parts gives the same line back."""
    entry = parse_smstrace_line(WALKTHROUGH_CMGSERVICE)
    assert (entry.component, entry.when, entry.thread) == ("CMGService", WHEN, 4992)
    traffic = parse_cmgservice_text(entry.text)
    assert traffic == CmgServiceTraffic("/CCM_PROXY_SERVERAUTH/72057594037937981/CCM_STS", 1, 1974, 1, 1566, 218)
    text = cmgservice_text(traffic.request_uri, traffic.request_count, traffic.request_size, traffic.response_count,
                           traffic.response_size, traffic.average_elapsed_ms)
    assert smstrace_line(text, component="CMGService", when=WHEN, thread=4992) == WALKTHROUGH_CMGSERVICE


def test_walkthrough_line_with_irregular_spacing_parses() -> None:
    """The walk-through's second sample (five spaces in one place) still parses; formatting normalises to two."""
    traffic = parse_cmgservice_text(WALKTHROUGH_CMGSERVICE_TEXT_ONLY)
    assert (traffic.request_count, traffic.request_size, traffic.response_size, traffic.average_elapsed_ms) == (
        769, 1081595, 36143, 3945)
    assert "ResponseCount: 769  ResponseSize" in cmgservice_text(*vars_of(traffic))


def vars_of(traffic: CmgServiceTraffic) -> tuple[str, int, int, int, int, int]:
    return (traffic.request_uri, traffic.request_count, traffic.request_size, traffic.response_count,
            traffic.response_size, traffic.average_elapsed_ms)


def test_request_uri_is_written_upper_cased_as_the_samples_show() -> None:
    """A client's mixed-case path is written as the CMG prints it: /CCM_PROXY_SERVERAUTH/<id>/CCM_STS."""
    text = cmgservice_text("/CCM_Proxy_ServerAuth/72057594037937981/CCM_STS", 1, 1974, 1, 1566, 218)
    assert text.startswith("RequestUri: /CCM_PROXY_SERVERAUTH/72057594037937981/CCM_STS  RequestCount: 1")
    assert parse_cmgservice_text(cmgservice_text("/a/sms_mp/.sms_aut", 1, 1, 1, 1, 1)).request_uri == "/A/SMS_MP/.SMS_AUT"


def test_average_elapsed_time_is_rounded_to_whole_milliseconds() -> None:
    """A computed average is written in whole milliseconds."""
    assert cmgservice_text("/x", 3, 10, 3, 20, 217.6).endswith("AverageElapsedTime: 218 ms")


@pytest.mark.parametrize(
    ("args", "reason"),
    [(("", 1, 1, 1, 1, 1), "request URI"), (("/a b", 1, 1, 1, 1, 1), "request URI"), (("/x", -1, 1, 1, 1, 1), ">= 0")],
)
def test_bad_traffic_values_are_refused(args: tuple, reason: str) -> None:
    """An empty or spaced URI, or a negative number, raises LogFormatError."""
    with pytest.raises(LogFormatError, match=reason):
        cmgservice_text(*args)


def test_cmtrace_line_has_the_documented_layout() -> None:
    """A CCM log entry reads as CMTrace expects, UTC written as bias +000."""
    line = cmtrace_line("Getting CCM Token from STS server 'MP.MYCORP.COM'", component="ClientIDManagerStartup",
                        when=WHEN, type=1, thread=1234, file="regtask.cpp:1025")
    assert line == (
        "<![LOG[Getting CCM Token from STS server 'MP.MYCORP.COM']LOG]!><time=\"15:31:46.376+000\" "
        'date="06-24-2020" component="ClientIDManagerStartup" context="" type="1" thread="1234" '
        'file="regtask.cpp:1025">'
    )


@pytest.mark.parametrize(("offset_minutes", "cmtrace_bias", "smstrace_bias"),
                         [(0, "+000", "+00"), (120, "-120", "-120"), (-420, "+420", "+420"), (-30, "+030", "+30")])
def test_bias_is_minutes_to_add_to_local_time_for_utc(offset_minutes: int, cmtrace_bias: str, smstrace_bias: str) -> None:
    """BIAS is minus the UTC offset in minutes: UTC+2 writes -120, UTC-7 writes +420."""
    when = WHEN.astimezone(timezone(timedelta(minutes=offset_minutes)))
    assert f'{cmtrace_bias}" date=' in cmtrace_line("x", component="c", when=when)
    assert f"{smstrace_bias}><thread=" in smstrace_line("x", component="c", when=when)
    assert parse_cmtrace_line(cmtrace_line("x", component="c", when=when)).when == WHEN


safe_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=60).filter(lambda t: "]LOG]!>" not in t)
attribute = st.text(st.characters(exclude_categories=("Cs",), exclude_characters='"\r\n'), max_size=20)
times = st.builds(
    lambda dt, minutes: dt.replace(microsecond=dt.microsecond // 1000 * 1000, tzinfo=timezone(timedelta(minutes=minutes))),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)),
    st.integers(-14 * 60, 14 * 60),
)


@given(text=safe_text, component=attribute, when=times, type=st.sampled_from([1, 2, 3]),
       thread=st.integers(0, 2**32), file=attribute)
def test_cmtrace_lines_round_trip(text: str, component: str, when: datetime, type: int, thread: int, file: str) -> None:
    """Any entry parses back to its parts, multi-line text included."""
    entry = parse_cmtrace_line(cmtrace_line(text, component=component, when=when, type=type, thread=thread, file=file))
    assert (entry.text, entry.component, entry.when, entry.type, entry.thread, entry.file) == (
        text, component, when, type, thread, file)
    assert entry.when.utcoffset() == when.utcoffset()


@given(text=st.text(st.characters(exclude_categories=("Cs",)), max_size=60),
       component=st.text(st.characters(exclude_categories=("Cs",), exclude_characters="<>"), max_size=20),
       when=times, thread=st.integers(0, 2**32))
def test_smstrace_lines_round_trip(text: str, component: str, when: datetime, thread: int) -> None:
    """Any entry parses back to its parts."""
    entry = parse_smstrace_line(smstrace_line(text, component=component, when=when, thread=thread))
    assert (entry.text, entry.component, entry.when, entry.thread) == (text, component, when, thread)


def test_cmtrace_end_marker_inside_text_cannot_cut_the_entry() -> None:
    """Text holding ']LOG]!>' is broken up so readers still see one entry."""
    line = cmtrace_line("evil]LOG]!><time=", component="c", when=WHEN)
    assert line.count("]LOG]!>") == 1
    assert parse_cmtrace_line(line).text == "evil]LOG] !><time="


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: cmtrace_line("x", component="c", when=datetime(2020, 1, 1)), "time zone"),
        (lambda: smstrace_line("x", component="c", when=datetime(2020, 1, 1)), "time zone"),
        (lambda: cmtrace_line("x", component='a"b', when=WHEN), "component"),
        (lambda: cmtrace_line("x", component="c", when=WHEN, file="a\nb"), "file"),
        (lambda: cmtrace_line("x", component="c", when=WHEN, type=4), "type"),
        (lambda: cmtrace_line("x", component="c", when=WHEN, thread=-1), "thread"),
        (lambda: smstrace_line("x", component="a>b", when=WHEN), "component"),
    ],
)
def test_values_that_break_the_format_are_refused(call, reason: str) -> None:
    """Naive times, quotes or brackets in attributes, and bad type or thread raise LogFormatError naming them."""
    with pytest.raises(LogFormatError, match=reason):
        call()


@pytest.mark.parametrize(
    ("parse", "line", "reason"),
    [
        (parse_smstrace_line, "text~~  $$<C><06-24-2020 15:31:46.376+00><thread=4992 (0x1381)>", "disagree"),
        (parse_smstrace_line, "text~~  $$<C><13-24-2020 15:31:46.376+00><thread=1 (0x1)>", "valid log date"),
        (parse_smstrace_line, "plain text", "not an SMS-trace line"),
        (parse_cmtrace_line, "plain text", "not a CMTrace line"),
        (parse_cmgservice_text, "RequestUri: /x RequestCount: many", "not a CMGService traffic line"),
    ],
)
def test_lines_that_do_not_fit_are_refused(parse, line: str, reason: str) -> None:
    """Parsers raise LogFormatError for lines in another shape or with inconsistent parts."""
    with pytest.raises(LogFormatError, match=reason):
        parse(line)


def test_parsers_ignore_the_line_ending() -> None:
    """A line read from a file with its CRLF parses like the bare line."""
    assert parse_smstrace_line(WALKTHROUGH_CMGSERVICE + "\r\n").thread == 4992
