"""The open-model options of a Locust run: ``--arrival-rate``, ``--ramp``, ``--fleet``, ``--poll-interval``,
``--max-in-flight``, ``--polls-per-device`` (no Locust import: read from Locust's parsed options, tested in-process).

Without ``--arrival-rate``, ``--ramp`` or ``--fleet`` a run is closed: each Locust user plays its devices one after
another, as before, and every output labels its numbers ``closed``.
"""

from __future__ import annotations

from typing import Any

from harness.plans.arrivals import (
    DEFAULT_MAX_IN_FLIGHT,
    ArrivalError,
    ArrivalPlan,
    ArrivalStage,
    FleetPlan,
    OpenModel,
)
from harness.plans.search import SearchError, SearchSettings
from harness.units import parse_duration_seconds, parse_ramp, parse_rate_per_second

OPEN = "open"
CLOSED = "closed"
#: How long an arrival rate lasts when the run has no ``--run-time`` (a web UI run stops when someone stops it).
OPEN_ENDED_SECONDS = 24 * 3600.0
#: How long a capacity-search step is held by default: a device life at the default time scale is a few seconds.
DEFAULT_SEARCH_HOLD_SECONDS = 30.0


class OpenModelError(ValueError):
    """An open-model option is unusable; the message names the option and its value."""


def add_arguments(parser: Any) -> None:
    """The open-model options (shown in the web UI's start form too)."""
    parser.add_argument("--arrival-rate", default="",
                        help="open model: new devices starting their life per second (20, 20/s, 1200/m)")
    parser.add_argument("--ramp", default="",
                        help="open model: ramping arrival rate, stages RATE:DURATION from 0 (10/s:1m,50/s:2m)")
    parser.add_argument("--fleet", type=int, default=0,
                        help="open model: a steady fleet of this many devices, each polling every --poll-interval")
    parser.add_argument("--poll-interval", default="",
                        help="device time between policy polls (60m; scaled by the site's time scale; "
                             "default: the site's policy interval)")
    parser.add_argument("--max-in-flight", type=int, default=DEFAULT_MAX_IN_FLIGHT,
                        help="open model: outstanding requests per process before new ones wait (and count late)")
    parser.add_argument("--polls-per-device", type=int, default=0,
                        help="policy cycles each device runs before its life ends (0: until the run ends)")
    search = SearchSettings()
    parser.add_argument("--capacity-search", action="store_true", default=False,
                        help="open model: raise the arrival rate step by step until the system saturates, then bisect")
    parser.add_argument("--search-start-rate", default=f"{search.start_rate_per_s:g}/s",
                        help="capacity search: the first step's arrival rate")
    parser.add_argument("--search-max-rate", default=f"{search.max_rate_per_s:g}/s",
                        help="capacity search: never ask for more than this")
    parser.add_argument("--search-hold", type=float, default=DEFAULT_SEARCH_HOLD_SECONDS,
                        help="capacity search: seconds each step is held (the first third settles, the rest counts)")
    parser.add_argument("--search-repeats", type=int, default=search.repeats,
                        help="capacity search: times each rate is measured (the median decides)")
    parser.add_argument("--search-max-steps", type=int, default=search.max_steps,
                        help="capacity search: at most this many steps")
    parser.add_argument("--slo-p99-ms", type=float, default=search.slo_corrected_p99_ms,
                        help="capacity search: a step fails when its corrected p99 passes this")


def open_model_from(options: Any, *, time_scale: float, site_poll_interval_s: float) -> OpenModel | None:
    """The run's open model from Locust's parsed options, or None for a closed run.

    ``time_scale`` and ``site_poll_interval_s`` come from the site: a ``--poll-interval`` is device time (60m) and is
    compressed like every other ConfigMgr duration; without it the site's own (already scaled) interval applies.
    """
    rate_text = str(getattr(options, "arrival_rate", "") or "").strip()
    ramp_text = str(getattr(options, "ramp", "") or "").strip()
    fleet = _whole(options, "fleet", low=0)
    searching = bool(getattr(options, "capacity_search", False))
    chosen = [name for name, given in (("--arrival-rate", rate_text), ("--ramp", ramp_text), ("--fleet", fleet),
                                       ("--capacity-search", searching)) if given]
    if len(chosen) > 1:
        raise OpenModelError(f"choose one of {', '.join(chosen)}: each sets the open model's arrivals")
    polls = _whole(options, "polls_per_device", low=0) or None
    if not chosen:
        return None
    run_time = getattr(options, "run_time", None) or OPEN_ENDED_SECONDS
    try:
        arrivals = fleet_plan = search = None
        if searching:
            search = search_settings(options)
        elif rate_text:
            arrivals = ArrivalPlan.constant(_rate(rate_text), float(run_time))
        elif ramp_text:
            try:
                stages = parse_ramp(ramp_text)
            except ValueError as error:
                raise OpenModelError(f"--ramp {ramp_text!r}: {error}") from None
            arrivals = ArrivalPlan(tuple(ArrivalStage(rate, duration) for rate, duration in stages))
        else:
            fleet_plan = FleetPlan(fleet, poll_interval_seconds(options, time_scale=time_scale,
                                                                site_poll_interval_s=site_poll_interval_s),
                                   seed=int(getattr(options, "fleet_seed", 1) or 1))
        return OpenModel(arrivals=arrivals, fleet=fleet_plan, search=search, max_in_flight=_whole(options, "max_in_flight", low=1,
                                                                                  default=DEFAULT_MAX_IN_FLIGHT),
                         polls_per_device=polls)
    except ArrivalError as error:
        raise OpenModelError(str(error)) from None


def search_settings(options: Any) -> SearchSettings:
    """The capacity search's settings from the ``--search-*`` and ``--slo-p99-ms`` options."""
    defaults = SearchSettings()
    try:
        start = parse_rate_per_second(str(getattr(options, "search_start_rate", "") or f"{defaults.start_rate_per_s}"))
        top = parse_rate_per_second(str(getattr(options, "search_max_rate", "") or f"{defaults.max_rate_per_s}"))
    except ValueError as error:
        raise OpenModelError(f"--search-start-rate/--search-max-rate: {error}") from None
    try:
        return SearchSettings(start_rate_per_s=start, max_rate_per_s=top,
                              slo_corrected_p99_ms=float(getattr(options, "slo_p99_ms", defaults.slo_corrected_p99_ms)),
                              repeats=_whole(options, "search_repeats", low=1, default=defaults.repeats),
                              max_steps=_whole(options, "search_max_steps", low=1, default=defaults.max_steps))
    except SearchError as error:
        raise OpenModelError(f"capacity search: {error}") from None


def search_hold_seconds(options: Any) -> float:
    """How long each capacity-search step is held (``--search-hold``, > 0)."""
    hold = getattr(options, "search_hold", DEFAULT_SEARCH_HOLD_SECONDS)
    if isinstance(hold, bool) or not isinstance(hold, (int, float)) or not hold > 0:
        raise OpenModelError(f"--search-hold must be a number of seconds > 0, got {hold!r}")
    return float(hold)


def poll_interval_seconds(options: Any, *, time_scale: float, site_poll_interval_s: float) -> float:
    """Real seconds between a device's policy polls: ``--poll-interval`` scaled, else the site's own interval."""
    text = str(getattr(options, "poll_interval", "") or "").strip()
    if not text:
        return site_poll_interval_s
    try:
        device_seconds = parse_duration_seconds(text)
    except ValueError as error:
        raise OpenModelError(f"--poll-interval: {error}") from None
    return device_seconds / (time_scale or 1.0)


def _rate(text: str) -> float:
    try:
        return parse_rate_per_second(text)
    except ValueError as error:
        raise OpenModelError(f"--arrival-rate: {error}") from None


def _whole(options: Any, name: str, *, low: int, default: int = 0) -> int:
    value = getattr(options, name, default)
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise OpenModelError(f"{flag} must be a whole number >= {low}, got {value!r}")
    return value
