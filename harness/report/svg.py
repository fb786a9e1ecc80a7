"""Inline SVG line and scatter charts for the report: axes with round ticks, series, shaded bands, reference rules.

Plain strings, no scripts and no external references, so the report opens in a browser without network access.
The report templates insert a chart's markup unescaped, so every text that goes into it (title, axis labels, series
names and colours, band and rule labels) passes through ``html.escape`` here, and everything else is a number
formatted here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

#: Colour-blind-safe colours (Okabe–Ito).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 64, 16, 34, 46


@dataclass(frozen=True, slots=True)
class Series:
    """A named series; a None value breaks the line."""

    name: str
    points: tuple[tuple[float, float | None], ...]
    color: str = PALETTE[0]
    line: bool = True
    markers: bool = False
    dashed: bool = False


@dataclass(frozen=True, slots=True)
class Band:
    """A shaded stretch of the x axis (a fault window); an infinite end runs to the edge of the chart."""

    start: float
    end: float
    label: str


@dataclass(frozen=True, slots=True)
class Rule:
    """A reference line at ``value`` (horizontal on the y axis, vertical on the x axis)."""

    value: float
    label: str


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 × a power of ten) covering ``low``–``high``."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"tick range must be finite, got {low!r}..{high!r}")
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value < high + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    return ticks


def format_number(value: float) -> str:
    """Short axis labels: 1.5k, 20, 0.25."""
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if abs(value) >= 10_000:
        return f"{value / 1000:g}k"
    if value == int(value):
        return f"{int(value)}"
    return f"{value:.3g}"


def chart(*, title: str, x_label: str, y_label: str, series: Sequence[Series], bands: Sequence[Band] = (),
          x_rules: Sequence[Rule] = (), y_rules: Sequence[Rule] = (), width: int = 760, height: int = 300,
          y_min: float | None = 0.0) -> str:
    """An SVG chart of ``series`` as one string (empty series give an empty plot with a 'no data' label)."""
    xs = [x for s in series for x, _ in s.points] + [b.start for b in bands] + [b.end for b in bands if math.isfinite(b.end)] \
        + [r.value for r in x_rules]
    ys = [y for s in series for _, y in s.points if y is not None] + [r.value for r in y_rules]
    x_ticks = nice_ticks(min(xs), max(xs)) if xs else nice_ticks(0, 1)
    y_low = y_min if y_min is not None else (min(ys) if ys else 0.0)
    y_ticks = nice_ticks(y_low, max(ys) if ys else 1.0)
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]
    plot_w = width - _MARGIN_LEFT - _MARGIN_RIGHT
    plot_h = height - _MARGIN_TOP - _MARGIN_BOTTOM

    def px(x: float) -> float:
        return _MARGIN_LEFT + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return _MARGIN_TOP + plot_h - (min(max(y, y0), y1) - y0) / (y1 - y0) * plot_h

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>"]
    for band in bands:
        left, right = px(max(band.start, x0)), px(min(band.end, x1))
        parts.append(f'<rect class="band" x="{left:.1f}" y="{_MARGIN_TOP}" width="{max(right - left, 1):.1f}" '
                     f'height="{plot_h}"><title>{escape(band.label)}</title></rect>')
        parts.append(f'<text class="band-label" x="{left + 3:.1f}" y="{_MARGIN_TOP + 12}">{escape(band.label)}</text>')
    for tick in y_ticks:
        parts.append(f'<line class="grid" x1="{_MARGIN_LEFT}" x2="{width - _MARGIN_RIGHT}" y1="{py(tick):.1f}" '
                     f'y2="{py(tick):.1f}"/>')
        parts.append(f'<text class="tick" x="{_MARGIN_LEFT - 6}" y="{py(tick) + 4:.1f}" text-anchor="end">'
                     f"{format_number(tick)}</text>")
    for tick in x_ticks:
        parts.append(f'<line class="grid" x1="{px(tick):.1f}" x2="{px(tick):.1f}" y1="{_MARGIN_TOP}" '
                     f'y2="{_MARGIN_TOP + plot_h}"/>')
        parts.append(f'<text class="tick" x="{px(tick):.1f}" y="{_MARGIN_TOP + plot_h + 16}" text-anchor="middle">'
                     f"{format_number(tick)}</text>")
    parts.append(f'<rect class="frame" x="{_MARGIN_LEFT}" y="{_MARGIN_TOP}" width="{plot_w}" height="{plot_h}"/>')
    for rule in y_rules:
        parts.append(f'<line class="rule" x1="{_MARGIN_LEFT}" x2="{width - _MARGIN_RIGHT}" y1="{py(rule.value):.1f}" '
                     f'y2="{py(rule.value):.1f}"/>')
        parts.append(f'<text class="rule-label" x="{width - _MARGIN_RIGHT - 4}" y="{py(rule.value) - 4:.1f}" '
                     f'text-anchor="end">{escape(rule.label)}</text>')
    for rule in x_rules:
        parts.append(f'<line class="rule" x1="{px(rule.value):.1f}" x2="{px(rule.value):.1f}" y1="{_MARGIN_TOP}" '
                     f'y2="{_MARGIN_TOP + plot_h}"/>')
        parts.append(f'<text class="rule-label" x="{px(rule.value) + 3:.1f}" y="{_MARGIN_TOP + plot_h - 4}">'
                     f"{escape(rule.label)}</text>")
    for item in series:
        dash = ' stroke-dasharray="6 4"' if item.dashed else ""
        if item.line:
            for segment in _segments(item.points):
                path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in segment)
                parts.append(f'<polyline fill="none" stroke="{escape(item.color)}" stroke-width="2"{dash} '
                             f'points="{path}"/>')
        if item.markers:
            for x, y in item.points:
                if y is not None:
                    parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{escape(item.color)}">'
                                 f"<title>{escape(item.name)}: {format_number(x)}, {y:.4g}</title></circle>")
    if not ys:
        parts.append(f'<text class="empty" x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle">no data'
                     "</text>")
    parts.append(_legend(series, width))
    parts.append(f'<text class="axis" x="{_MARGIN_LEFT + plot_w / 2:.0f}" y="{height - 8}" text-anchor="middle">'
                 f"{escape(x_label)}</text>")
    parts.append(f'<text class="axis" transform="translate(14 {_MARGIN_TOP + plot_h / 2:.0f}) rotate(-90)" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _segments(points: Sequence[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    segments: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if y is None:
            if segments[-1]:
                segments.append([])
        else:
            segments[-1].append((x, y))
    return [segment for segment in segments if len(segment) >= 2]


def _legend(series: Sequence[Series], width: int) -> str:
    items = []
    x = _MARGIN_LEFT
    for item in series:
        dash = ' stroke-dasharray="6 4"' if item.dashed else ""
        items.append(f'<line x1="{x}" x2="{x + 18}" y1="14" y2="14" stroke="{escape(item.color)}" stroke-width="3"{dash}/>')
        items.append(f'<text class="legend" x="{x + 23}" y="18">{escape(item.name)}</text>')
        x += 32 + 7 * len(item.name)
        if x > width - 80:
            break
    return "\n".join(items)
