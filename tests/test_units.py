"""harness.units: durations parsed the same way everywhere, values printed the same way everywhere."""

from __future__ import annotations

import math
from typing import Any

import pytest

from harness import units
from harness.units import (
    format_measure,
    format_prometheus_duration,
    parse_duration_seconds,
    parse_prometheus_duration,
    yaml_duration_seconds,
)


@pytest.mark.parametrize(("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("2m", 120.0), ("1h30m", 5400.0),
                                               ("1.5m", 90.0), (" 10S ", 10.0), ("1h", 3600.0), ("0.001", 0.001),
                                               ("1m0.5s", 60.5)])
def test_durations_read_like_locusts_run_time(text: str, seconds: float) -> None:
    """Plain seconds and h/m/s forms are accepted, fractions and upper case too."""
    assert parse_duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "   ", "0", "0s", "0h0m", "soon", "5 minutes", "-3", "1m-2s", "2s1m", "1d",
                                  "h", "1.5.5s"])
def test_bad_durations_are_refused_naming_the_text(text: str) -> None:
    """Zero, negative, out-of-order or unknown units raise ValueError quoting the text as typed."""
    with pytest.raises(ValueError, match="duration") as caught:
        parse_duration_seconds(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize(("value", "seconds"), [(30, 30.0), (0.5, 0.5), ("30s", 30.0), ("2m", 120.0), ("45", 45.0)])
def test_yaml_durations_are_numbers_or_duration_text(value: Any, seconds: float) -> None:
    """A gate file may write a window as a number of seconds or as duration text."""
    assert yaml_duration_seconds(value) == seconds


@pytest.mark.parametrize("value", [0, -1, 0.0, math.inf, math.nan, True, False, None, "soon", [1]])
def test_bad_yaml_durations_are_refused_naming_the_value(value: Any) -> None:
    """Booleans are no durations (YAML reads ``yes`` as True), nor are 0, infinity or NaN."""
    with pytest.raises(ValueError, match="duration") as caught:
        yaml_duration_seconds(value)
    assert repr(value) in str(caught.value) or repr(str(value)) in str(caught.value)


@pytest.mark.parametrize(("seconds", "text"), [(1, "1s"), (15.0, "15s"), (0.5, "500ms"), (2.25, "2250ms"),
                                               (0.001, "1ms"), (60, "60s")])
def test_seconds_print_as_prometheus_durations(seconds: float, text: str) -> None:
    """Whole seconds stay seconds; anything finer goes to milliseconds (Prometheus takes no fractions)."""
    assert format_prometheus_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0, -1, 0.0004, math.inf, math.nan, True])
def test_unusable_intervals_are_refused_naming_the_value(seconds: Any) -> None:
    """Below a millisecond, not positive, not finite or not a number: ValueError quoting it."""
    with pytest.raises(ValueError) as caught:
        format_prometheus_duration(seconds)
    assert repr(seconds) in str(caught.value)


@pytest.mark.parametrize("text", ["15s", "1m30s", "500ms", "1h", "2d"])
def test_prometheus_duration_text_passes_unchanged(text: str) -> None:
    assert parse_prometheus_duration(text) == text


@pytest.mark.parametrize("text", ["", "5 seconds", "30s1m", "1.5s", "s"])
def test_bad_prometheus_duration_text_is_refused_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match="Prometheus duration") as caught:
        parse_prometheus_duration(text)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize(("value", "unit", "text"), [
    (None, "ms", "none"), (math.nan, "ratio", "none"),
    (9.94, "ms", "9.9 ms"), (10.0, "ms", "10 ms"), (412.6, "ms", "413 ms"),
    (0.0123, "ratio", "1.23 %"), (1.0, "ratio", "100.00 %"),
    (12.345, "rps", "12.3/s"), (7.0, "count", "7"),
])
def test_measured_values_print_with_their_unit(value: float | None, unit: str, text: str) -> None:
    """Latency keeps a decimal below 10 ms, ratios print as percent, rates per second, counts whole."""
    assert format_measure(value, unit) == text


@pytest.mark.parametrize(("text", "per_second"), [
    ("20", 20.0), ("20/s", 20.0), ("1200/m", 20.0), ("3600/h", 1.0), ("0.5/s", 0.5), (" 7/S ", 7.0)])
def test_rates_are_read_per_second_whatever_unit_they_are_written_in(text: str, per_second: float) -> None:
    """A rate without a unit is per second; /m and /h divide by 60 and 3600."""
    assert units.parse_rate_per_second(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["", "0", "0/s", "-1/s", "fast", "20/d", "20/s/s", "1e3"])
def test_an_unusable_rate_is_refused_quoting_it(text: str) -> None:
    """Zero, negatives, unknown units and words raise ValueError naming the text."""
    with pytest.raises(ValueError, match="rate must"):
        units.parse_rate_per_second(text)


def test_a_ramp_is_read_as_target_rates_with_their_durations() -> None:
    """``10/s:1m,50/s:2m`` is two stages: to 10/s over 60 s, then to 50/s over 120 s."""
    assert units.parse_ramp("10/s:1m, 50/s:2m") == [(10.0, 60.0), (50.0, 120.0)]
    with pytest.raises(ValueError, match="RATE:DURATION"):
        units.parse_ramp("10/s")
    with pytest.raises(ValueError, match="duration"):
        units.parse_ramp("10/s:soon")


def test_rates_print_per_second_or_per_minute_when_slow() -> None:
    """27.78/s prints as 27.8/s, 1,500/s with a separator, one every ten minutes as 0.1/m."""
    assert (units.format_rate(27.78), units.format_rate(1500), units.format_rate(1 / 600)) == ("27.8/s", "1,500/s",
                                                                                                "0.1/m")
