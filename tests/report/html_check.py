"""A strict-enough reading of the report's HTML with the standard library's html.parser."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "embed", "source", "track",
                  "wbr"})
#: SVG elements the report writes self-closed (``<line .../>``).
SELF_CLOSED = frozenset({"line", "polyline", "circle", "rect", "path"})


@dataclass
class Page:
    """What the parser saw: tag counts, every attribute value, text, and nesting errors."""

    tags: dict[str, int] = field(default_factory=dict)
    attributes: list[tuple[str, str, str]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.page.tags[tag] = self.page.tags.get(tag, 0) + 1
        self.page.attributes += [(tag, name, value or "") for name, value in attrs]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.page.tags[tag] = self.page.tags.get(tag, 0) + 1
        self.page.attributes += [(tag, name, value or "") for name, value in attrs]
        if tag not in SELF_CLOSED | VOID:
            self.page.errors.append(f"unexpected self-closed <{tag}/>")

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.page.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.page.text.append(" ".join(data.split()))


def read_page(html: str) -> Page:
    """Parse ``html``; nesting errors and unclosed elements end up in ``errors``."""
    reader = _Reader()
    reader.feed(html)
    reader.close()
    if reader.stack:
        reader.page.errors.append(f"unclosed: {reader.stack}")
    return reader.page


def external_references(page: Page) -> list[str]:
    """Attribute values that would make the browser fetch something from the network."""
    return [f"{tag} {name}={value}" for tag, name, value in page.attributes
            if name in ("src", "href", "xlink:href", "action", "data") and "//" in value]
