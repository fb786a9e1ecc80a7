"""Durations, rates and measured values as people write and read them: parsed from text, printed for reports.

One module for everyone (the CLI, gate files, dashboards, gate verdicts), so ``90s`` means the same thing wherever it
is typed and a latency prints the same way wherever it is shown. It imports nothing from the project: the packages
that parse durations (gates, load, dashboards) all sit above it. Bad input raises ``ValueError`` quoting the value.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = [
    "format_measure",
    "format_rate",
    "format_prometheus_duration",
    "parse_duration_seconds",
    "parse_prometheus_duration",
    "parse_ramp",
    "parse_rate_per_second",
    "yaml_duration_seconds",
]

#: ``1h30m``, ``2m``, ``90s`` or plain ``90`` (seconds): Locust's ``--run-time`` forms, fractions allowed.
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")
#: Prometheus' duration grammar (units in descending order, each at most once).
_PROMETHEUS_DURATION = re.compile(r"(?:\d+y)?(?:\d+w)?(?:\d+d)?(?:\d+h)?(?:\d+m)?(?:\d+s)?(?:\d+ms)?")


def parse_duration_seconds(text: str) -> float:
    """Seconds in ``"90"``, ``"90s"``, ``"2m"`` or ``"1h30m"`` (> 0); ValueError naming the text otherwise."""
    match = _DURATION.match(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"duration must look like 90, 90s, 2m or 1h30m, got {text!r}")
    hours, minutes, seconds = (float(group) if group else 0.0 for group in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if not total > 0:
        raise ValueError(f"duration must be > 0, got {text!r}")
    return total


#: ``20``, ``20/s``, ``1200/m``, ``0.5/s``, ``3600/h``: a count per second unless a unit says otherwise.
_RATE = re.compile(r"^(\d+(?:\.\d+)?)(?:/(s|m|h))?$")
_PER_SECOND = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate_per_second(text: str) -> float:
    """Events per second in ``"20"``, ``"20/s"``, ``"1200/m"`` or ``"3600/h"`` (> 0); ValueError naming the text."""
    match = _RATE.match(str(text).strip().lower())
    if match is None:
        raise ValueError(f"rate must look like 20, 20/s, 1200/m or 3600/h, got {text!r}")
    rate = float(match.group(1)) / _PER_SECOND[match.group(2) or "s"]
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be > 0, got {text!r}")
    return rate


def parse_ramp(text: str) -> list[tuple[float, float]]:
    """``"10/s:1m,50/s:2m"`` as ``[(10.0, 60.0), (50.0, 120.0)]``: each stage's target rate and how long it ramps."""
    stages = []
    for part in str(text).split(","):
        rate, sep, duration = part.strip().partition(":")
        if not sep or not rate or not duration:
            raise ValueError(f"ramp stage must look like RATE:DURATION (e.g. 50/s:2m), got {part.strip()!r}")
        stages.append((parse_rate_per_second(rate), parse_duration_seconds(duration)))
    return stages


def format_rate(per_second: float) -> str:
    """A rate as people read it: ``27.8/s``, ``0.5/s``; below one a minute, per minute (``0.2/m``)."""
    if per_second >= 1 / 60 or per_second == 0:
        return f"{per_second:.3g}/s" if per_second < 100 else f"{per_second:,.0f}/s"
    return f"{per_second * 60:.3g}/m"


def yaml_duration_seconds(value: Any) -> float:
    """Seconds in a YAML duration: a number (``30``) or a duration string (``"30s"``, ``"2m"``); ValueError if bad."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"duration must be > 0, got {value!r}")
        return float(value)
    return parse_duration_seconds(str(value))


def parse_prometheus_duration(text: str) -> str:
    """``text`` when it is a Prometheus duration such as ``"15s"`` or ``"1m30s"``; ValueError naming it otherwise."""
    if not text or not _PROMETHEUS_DURATION.fullmatch(text):
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return text


def format_prometheus_duration(seconds: float) -> str:
    """Seconds as a Prometheus duration: whole seconds as ``"5s"``, anything finer as ``"500ms"``; ValueError if the
    value is no positive number or below a millisecond."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ValueError(f"interval must be a positive number of seconds: {seconds!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"interval must be finite: {seconds!r}")
    milliseconds = round(seconds * 1000)
    if milliseconds < 1:
        raise ValueError(f"interval below one millisecond: {seconds!r}")
    return f"{milliseconds // 1000}s" if milliseconds % 1000 == 0 else f"{milliseconds}ms"


def format_measure(value: float | None, unit: str) -> str:
    """A measured ``value`` in ``unit`` (``ms``, ``ratio``, ``rps`` or a count) for a verdict line; ``none`` when
    nothing was measured. Latencies below 10 ms keep one decimal; ratios print as percent; rates per second."""
    if value is None or math.isnan(value):
        return "none"
    if unit == "ms":
        return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"
    if unit == "ratio":
        return f"{value * 100:.2f} %"
    if unit == "rps":
        return f"{value:.1f}/s"
    return f"{value:.0f}"
