"""XML text for CCM messages: escaping for building, a guarded parser for reading, and the field readers messages share.

Message bodies come from the wire, so parsing goes through defusedxml: no DTD, entity or external reference is honoured.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import defusedxml.ElementTree as defused_ET
from defusedxml import DefusedXmlException

#: Largest XML text parse_xml accepts: a 4 MiB UTF-16 body decodes to 2 Mi characters.
MAX_XML_CHARS = 2 * 1024 * 1024

# Characters XML 1.0 cannot carry at all (not even as character references).
_INVALID_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# Anything that needs escaping, or that may be invalid; values without these are emitted as they are (the fast path).
#: The ASCII characters element content carries as they are (everything but & < > CR and the C0 controls save TAB, LF).
_TEXT_SAFE_ASCII = bytes(c for c in range(0x80) if c in (0x09, 0x0A) or (c >= 0x20 and chr(c) not in "&<>"))
_TEXT_SPECIAL = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ATTR_SPECIAL = re.compile("[&<>\"\r\n\t\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# The root element's name once the prolog is skipped; a single bounded match at one position, no repetition of groups.
_NAME = re.compile(r"[A-Za-z_][\w.\-]{0,255}(?::[A-Za-z_][\w.\-]{0,255})?")
#: How far into a text root_tag looks for the root element (a real prolog is a few dozen characters).
ROOT_TAG_SCAN_CHARS = 64 * 1024
_XML_SPACE = " \t\r\n"


class MessageError(ValueError):
    """A message's XML is unusable (malformed, refused, or missing something); the message names what."""


def _check_chars(value: str) -> None:
    bad = _INVALID_XML_CHAR.search(value)
    if bad is not None:
        raise MessageError(f"character U+{ord(bad.group()):04X} cannot be carried in XML (in {value[:40]!r})")


def escape_text(value: str) -> str:
    """Escape ``value`` for element content so that a parser gives back exactly ``value``."""
    if len(value) > 64 and value.isascii():
        # Long ASCII text (hex signatures and key blobs, hundreds of characters, several per message): deleting the
        # characters that need nothing leaves nothing, found ten times faster than the regular expression's scan.
        if not value.encode("ascii").translate(None, _TEXT_SAFE_ASCII):
            return value
    elif _TEXT_SPECIAL.search(value) is None:
        return value
    _check_chars(value)
    # A parser turns a literal CR into LF; the character reference keeps it.
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def escape_attr(value: str) -> str:
    """Escape ``value`` for a double-quoted attribute so that a parser gives back exactly ``value``."""
    if _ATTR_SPECIAL.search(value) is None:
        return value
    _check_chars(value)
    # Attribute-value normalisation turns literal CR, LF and TAB into spaces; references survive it.
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\r", "&#13;")
        .replace("\n", "&#10;")
        .replace("\t", "&#9;")
    )


def parse_xml(text: str, *, max_chars: int = MAX_XML_CHARS) -> ET.Element:
    """Parse message XML from the wire, refusing DTDs, entities, external references and texts over ``max_chars``."""
    if not isinstance(text, str):
        raise TypeError(f"parse_xml takes str, got {type(text).__name__}")
    if len(text) > max_chars:
        raise MessageError(f"XML text of {len(text)} characters exceeds the limit of {max_chars}")
    try:
        if "<!" not in text:
            # Without "<!" there is no DOCTYPE, hence no entity declaration and nothing external to fetch; expat
            # refuses undeclared entity references. Such text (every message we build) takes the C parser, which
            # is about three times faster than defusedxml's pure-Python one.
            return ET.fromstring(text)
        # Anything with markup declarations goes through defusedxml, which refuses any DTD: no entity expansion, no
        # external entity, no fetch. (CDATA sections and comments also start with "<!" and parse normally there.)
        return defused_ET.fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise MessageError(f"XML with DOCTYPE or ENTITY is refused ({type(exc).__name__})") from None
    except ET.ParseError as exc:
        raise MessageError(f"XML is not well-formed: {exc}") from None


def root_tag(text: str) -> str:
    """Name of the root element, read from the first characters without parsing the document.

    A plain scanner, not a regular expression over the prolog: every step moves forward, so a text of nested or
    unclosed comments costs time linear in its length (bounded by ``ROOT_TAG_SCAN_CHARS``) instead of backtracking.
    """
    end = min(len(text), ROOT_TAG_SCAN_CHARS)
    pos = 1 if text.startswith("\ufeff") else 0
    seen_declaration = False
    while True:
        while pos < end and text[pos] in _XML_SPACE:
            pos += 1
        if text.startswith("<?xml", pos) and not seen_declaration:
            close = text.find("?>", pos, end)
            if close < 0:
                break
            pos, seen_declaration = close + 2, True
            continue
        if text.startswith("<!--", pos):
            close = text.find("-->", pos + 4, end)
            if close < 0:
                break
            pos, seen_declaration = close + 3, True
            continue
        if text.startswith("<", pos):
            found = _NAME.match(text, pos + 1, end)
            if found is not None:
                return found.group()
        break
    raise MessageError(f"no root element at the start of {text[:60]!r}")


def expect_root(element: ET.Element, tag: str) -> None:
    if element.tag != tag:
        raise MessageError(f"expected root <{tag}>, got <{element.tag}>")


def required_attr(element: ET.Element, name: str) -> str:
    value = element.get(name)
    if value is None:
        raise MessageError(f"<{element.tag}> is missing attribute {name}")
    return value


def required_child(element: ET.Element, path: str) -> ET.Element:
    found = element.find(path)
    if found is None:
        raise MessageError(f"<{element.tag}> is missing element {path}")
    return found


def child_text(element: ET.Element, path: str) -> str:
    return required_child(element, path).text or ""


def parse_int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise MessageError(f"{what} is not an integer: {value!r}") from None


def as_int(value: int | str, what: str) -> int:
    # XML attributes are text, so callers may hand over "63"; keep the field an int either way.
    if isinstance(value, str):
        return parse_int(value, what)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MessageError(f"{what} must be an integer, got {value!r}")
    return value


def flag_text(value: bool) -> str:
    return "1" if value else "0"


def parse_flag(value: str, what: str) -> bool:
    if value not in ("0", "1"):
        raise MessageError(f"{what} must be 0 or 1, got {value!r}")
    return value == "1"
