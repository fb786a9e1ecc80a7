"""The gate file: thresholds for a load run, read from YAML and checked before any load starts.

A gate maps selectors (``"*"``, a request name, ``stage:<lifecycle stage>``, ``run``) to threshold expressions such
as ``p95 < 500ms`` or ``failure_ratio <= 1%``, each optionally over a sliding ``window`` and with ``abort_on_fail``
(the idea of k6 thresholds and Gatling assertions). Every mistake is refused with ``file:line``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.client.stages import LIFECYCLE_REQUEST_TYPE, STAGES
from harness.latency.histograms import STAGE as BOOK_STAGE
from harness.units import yaml_duration_seconds

#: Exit code of ``cmg-harness run --gate`` and ``cmg-harness gate`` when a threshold is crossed (Locust's own error
#: exit is 1, a usage error 2).
GATE_FAILED_EXIT = 3


ALL_REQUESTS = "all"
REQUEST = "request"
STAGE = "stage"
RUN = "run"
_REQUESTS_AND_STAGES = frozenset({ALL_REQUESTS, REQUEST, STAGE})
OPERATORS = ("<", "<=", ">", ">=", "==", "!=")


class GateFileError(ValueError):
    """A gate file that cannot be used; ``str()`` reads ``file:line: what is wrong``."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


@dataclass(frozen=True, slots=True)
class Metric:
    """A measurable quantity: its unit, the values it can take, and the selectors it applies to."""

    name: str
    unit: str  # "ms" | "ratio" | "rps" | "count"
    applies_to: frozenset[str]
    low: float = 0.0
    high: float = math.inf
    integer: bool = False
    windowed: bool = True
    #: The selector kinds it may be measured on over the whole run (None: all it applies to); others need a window.
    whole_run: frozenset[str] | None = None


def _latency(name: str) -> Metric:
    return Metric(name, "ms", _REQUESTS_AND_STAGES)


#: The latency book's three measures as the prefix of a metric name: ``corrected_p99_ms`` is corrected latency's p99.
LATENCY_MEASURES: Mapping[str, str] = {"service": "service_ms", "corrected": "corrected_ms", "lateness": "lateness_ms"}
#: The statistics of a latency-book histogram a metric names, as the percentile each stands for (max: 100).
LATENCY_STATISTICS: Mapping[str, float] = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9,
                                           "max": 100.0}
#: Every latency-book metric by name: (measure, statistic), e.g. ``corrected_p99_ms`` -> ("corrected_ms", "p99").
LATENCY_METRICS: Mapping[str, tuple[str, str]] = {
    f"{prefix}_{statistic}_ms": (measure, statistic)
    for prefix, measure in LATENCY_MEASURES.items() for statistic in LATENCY_STATISTICS}
#: Requests sent divided by requests intended (the devices' own schedules asked for them).
ACHIEVED_RATE_RATIO = "achieved_rate_ratio"


METRICS: Mapping[str, Metric] = {metric.name: metric for metric in (
    _latency("p50"), _latency("p90"), _latency("p95"), _latency("p99"), _latency("max"), _latency("avg"),
    Metric("failure_ratio", "ratio", _REQUESTS_AND_STAGES, high=1.0),
    Metric("success_ratio", "ratio", frozenset({STAGE, RUN}), high=1.0),
    Metric("rps", "rps", _REQUESTS_AND_STAGES),
    Metric("count", "count", _REQUESTS_AND_STAGES, integer=True),
    Metric("unexpected_outcomes", "count", frozenset({RUN}), integer=True, windowed=False),
    Metric("renewals", "count", frozenset({RUN}), integer=True, windowed=False),
    Metric("registrations", "count", frozenset({RUN}), integer=True, windowed=False),
    *(_latency(name) for name in LATENCY_METRICS),
    # Above 1 when late work catches up; over the whole run only for all requests (unsent work has no request name).
    Metric(ACHIEVED_RATE_RATIO, "ratio", _REQUESTS_AND_STAGES, whole_run=frozenset({ALL_REQUESTS})),
)}
#: ``p95`` and friends: the quantile each percentile metric stands for.
PERCENTILES: Mapping[str, float] = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}

_EXPRESSION = re.compile(r"^\s*(?P<metric>\S+?)\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)"
                         r"(?:[eE][-+]?\d+)?)\s*(?P<unit>ms|s|%)?\s*$")
_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
#: The units a limit may carry, by the metric's unit (latency in ms or s, ratios as a fraction or in %).
_UNITS = {"ms": ("ms", "s"), "ratio": ("%",)}
_ITEM_KEYS = ("threshold", "window", "abort_on_fail", "delay_abort_eval")


@dataclass(frozen=True, slots=True)
class Selector:
    """Which statistics a threshold reads: every request, requests by name, a lifecycle stage, or the run's tally."""

    text: str
    kind: str
    pattern: re.Pattern[str] | None = None
    stage: str = ""

    def matches(self, method: str, name: str) -> bool:
        """Does the Locust stats entry ``(method, name)`` belong to this selector?"""
        if self.kind == ALL_REQUESTS:
            return method != LIFECYCLE_REQUEST_TYPE
        if self.kind == REQUEST:
            return method != LIFECYCLE_REQUEST_TYPE and self.pattern is not None and self.pattern.fullmatch(name) is not None
        if self.kind == STAGE:
            return method == LIFECYCLE_REQUEST_TYPE and (self.stage == "*" or name == self.stage)
        return False

    def matches_key(self, kind: str, name: str) -> bool:
        """Does the latency book's ``(kind, name)`` (kind ``request`` or ``stage``) belong to this selector?"""
        return self.matches(LIFECYCLE_REQUEST_TYPE if kind == BOOK_STAGE else "", name)


def parse_selector(text: str) -> Selector:
    """The selector written as ``text``; ValueError naming it when it is none of the known forms."""
    if text == "*":
        return Selector(text, ALL_REQUESTS)
    if text == "run":
        return Selector(text, RUN)
    if text.startswith("stage:"):
        stage = text[len("stage:"):].strip()
        if stage != "*" and stage not in STAGES:
            raise ValueError(f"unknown lifecycle stage {stage!r} (known: {', '.join(STAGES)}, or * for all)")
        return Selector(text, STAGE, stage=stage)
    if text.startswith("/"):
        # A {placeholder} stands for one path segment, so one selector covers every role id or tenant id.
        parts = _PLACEHOLDER.split(text)
        pattern = "[^/]+".join(re.escape(part) for part in parts)
        return Selector(text, REQUEST, pattern=re.compile(pattern))
    raise ValueError(f"unknown selector {text!r} (use '*', a request name starting with '/', "
                     "'stage:<name>' or 'run')")


@dataclass(frozen=True, slots=True)
class Threshold:
    """One comparison of a measured value with a limit, where it was written, and how it is watched during the run."""

    selector: Selector
    metric: str
    op: str
    limit: float
    expression: str
    line: int
    window: float | None = None
    abort_on_fail: bool = False
    delay_abort_eval: float = 0.0

    @property
    def id(self) -> str:
        """A stable name: the selector, the expression as written, and the window (JUnit test name, metric label)."""
        text = f"{self.selector.text}: {self.expression}"
        return f"{text} over {self.window:g}s" if self.window else text

    @property
    def unit(self) -> str:
        return METRICS[self.metric].unit

    def holds(self, measured: float) -> bool:
        """Is ``measured`` on the right side of the limit?"""
        return _compare(measured, self.op, self.limit)


@dataclass(frozen=True, slots=True)
class Gate:
    """A parsed gate file."""

    path: str
    name: str
    thresholds: tuple[Threshold, ...]

    @property
    def longest_window(self) -> float:
        """The longest sliding window any threshold uses (0 when none uses one)."""
        return max((threshold.window or 0.0 for threshold in self.thresholds), default=0.0)


def _compare(value: float, op: str, limit: float) -> bool:
    if op == "<":
        return value < limit
    if op == "<=":
        return value <= limit
    if op == ">":
        return value > limit
    if op == ">=":
        return value >= limit
    if op == "==":
        return value == limit
    return value != limit


def _satisfiable(metric: Metric, op: str, limit: float) -> tuple[bool, bool]:
    """(can some value of the metric pass, does every value pass) for ``metric op limit``."""
    low, high = metric.low, metric.high
    on_grid = not metric.integer or float(limit).is_integer()
    if op == "<":
        return low < limit, limit > high
    if op == "<=":
        return low <= limit, limit >= high
    if op == ">":
        return high > limit, limit < low
    if op == ">=":
        return high >= limit, limit <= low
    inside = low <= limit <= high and on_grid
    if op == "==":
        return inside, False
    return True, not inside


def parse_expression(text: str, selector: Selector) -> tuple[str, str, float]:
    """``(metric, operator, limit)`` of an expression such as ``p95 < 500ms`` for ``selector``; ValueError if bad."""
    match = _EXPRESSION.match(text)
    if match is None:
        raise ValueError(f"threshold {text!r} must read METRIC OPERATOR NUMBER, e.g. 'p95 < 500ms' "
                         f"(operators: {' '.join(OPERATORS)})")
    name, op, unit = match["metric"], match["op"], match["unit"] or ""
    metric = METRICS.get(name)
    if metric is None:
        hints = difflib.get_close_matches(name, METRICS, n=2)
        suggestion = f"; did you mean {' or '.join(repr(hint) for hint in hints)}?" if hints else ""
        raise ValueError(f"unknown metric {name!r} (known: {', '.join(METRICS)}){suggestion}")
    kind = selector.kind
    if kind not in metric.applies_to:
        usable = [other.name for other in METRICS.values() if kind in other.applies_to]
        raise ValueError(f"metric {name!r} does not apply to selector {selector.text!r} "
                         f"(it takes: {', '.join(usable)})")
    value = float(match["value"])
    if unit and unit not in _UNITS.get(metric.unit, ()):
        raise ValueError(f"unit {unit!r} does not fit {name!r} (a {metric.unit} value)")
    if unit == "s":
        value *= 1000.0
    elif unit == "%":
        value /= 100.0
    possible, always = _satisfiable(metric, op, value)
    domain = _domain(metric)
    if not possible:
        raise ValueError(f"{text.strip()!r} can never hold: {name} is {domain}")
    if always:
        hint = (" (did you mean a fraction such as 0.01, or 1%?)"
                if metric.unit == "ratio" and metric.high == 1.0 and value >= 1 else "")
        raise ValueError(f"{text.strip()!r} always holds, so it checks nothing: {name} is {domain}{hint}")
    return name, op, value


def _domain(metric: Metric) -> str:
    if metric.unit == "ratio":
        return "a ratio from 0 to 1" if metric.high == 1.0 else "a ratio >= 0"
    if metric.integer:
        return "a whole count >= 0"
    return f"a value >= 0 ({metric.unit})"


class _Reader:
    """Walks the YAML node tree so that every value keeps the line it was written on."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self._constructor = yaml.SafeLoader("")

    def fail(self, node: yaml.Node | None, message: str) -> GateFileError:
        return GateFileError(self.path, node.start_mark.line + 1 if node is not None else 1, message)

    def root(self) -> yaml.Node | None:
        try:
            # The loader checks the characters as it is made: a control character (NUL ...) is a YAML error too.
            loader = yaml.SafeLoader(self.text)
            try:
                return loader.get_single_node()
            finally:
                loader.dispose()
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            line = mark.line + 1 if mark is not None else 1
            raise GateFileError(self.path, line, f"not valid YAML: {error.problem or error}") from None
        except yaml.YAMLError as error:
            raise GateFileError(self.path, 1, f"not valid YAML: {error}") from None

    def scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, "expected a single value here, not a list or mapping")
        return self._constructor.construct_object(node)  # by the resolved tag: bool, int, float or str

    def mapping(self, node: yaml.Node, what: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping")
        seen: dict[str, int] = {}
        items = []
        for key_node, value_node in node.value:
            key = self.scalar(key_node)
            if not isinstance(key, str):
                key = str(key)
            if key in seen:
                raise self.fail(key_node, f"{key!r} appears twice in {what} (first on line {seen[key]})")
            seen[key] = key_node.start_mark.line + 1
            items.append((key, key_node, value_node))
        return items


def parse_gate(text: str, path: str = "<gate>") -> Gate:
    """The gate written in ``text`` (YAML); GateFileError naming ``path:line`` for any mistake."""
    reader = _Reader(path, text)
    root = reader.root()
    if root is None:
        raise GateFileError(path, 1, "the gate file is empty (it needs a 'thresholds' mapping)")
    name = Path(path).stem
    thresholds_node = None
    for key, key_node, value_node in reader.mapping(root, "the gate file"):
        if key == "name":
            name = str(reader.scalar(value_node))
        elif key == "thresholds":
            thresholds_node = value_node
        else:
            raise reader.fail(key_node, f"unknown key {key!r} (a gate file has 'name' and 'thresholds')")
    if thresholds_node is None:
        raise reader.fail(root, "the gate file has no 'thresholds' mapping")
    thresholds: list[Threshold] = []
    ids: dict[str, int] = {}
    for key, key_node, value_node in reader.mapping(thresholds_node, "'thresholds'"):
        try:
            selector = parse_selector(key)
        except ValueError as error:
            raise reader.fail(key_node, str(error)) from None
        items = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        if not items:
            raise reader.fail(value_node, f"selector {key!r} lists no thresholds")
        for item in items:
            threshold = _threshold(reader, selector, item)
            if threshold.id in ids:
                raise reader.fail(item, f"threshold {threshold.id!r} is already on line {ids[threshold.id]}")
            ids[threshold.id] = threshold.line
            thresholds.append(threshold)
    if not thresholds:
        raise reader.fail(thresholds_node, "a gate needs at least one threshold")
    return Gate(path=path, name=name, thresholds=tuple(thresholds))


def _threshold(reader: _Reader, selector: Selector, node: yaml.Node) -> Threshold:
    options: dict[str, tuple[Any, yaml.Node]] = {}
    if isinstance(node, yaml.MappingNode):
        for key, key_node, value_node in reader.mapping(node, "a threshold"):
            if key not in _ITEM_KEYS:
                raise reader.fail(key_node, f"unknown threshold key {key!r} (known: {', '.join(_ITEM_KEYS)})")
            options[key] = (reader.scalar(value_node), value_node)
        if "threshold" not in options:
            raise reader.fail(node, "a threshold written as a mapping needs a 'threshold' key, e.g. "
                                    "'threshold: p95 < 500ms'")
        expression, expression_node = options["threshold"]
    else:
        expression, expression_node = reader.scalar(node), node
    if not isinstance(expression, str):
        raise reader.fail(expression_node, f"threshold {expression!r} must be text such as 'p95 < 500ms'")
    try:
        metric, op, limit = parse_expression(expression, selector)
    except ValueError as error:
        raise reader.fail(expression_node, str(error)) from None
    window = _option_duration(reader, options, "window")
    if window is not None:
        if not METRICS[metric].windowed or selector.kind == RUN:
            raise reader.fail(options["window"][1], f"{metric!r} of {selector.text!r} is a whole-run count: "
                                                    "a window applies to request and stage thresholds only")
        if not float(window).is_integer():
            raise reader.fail(options["window"][1], f"window must be whole seconds, got {window:g} s")
    whole_run = METRICS[metric].whole_run
    if window is None and whole_run is not None and selector.kind not in whole_run:
        raise reader.fail(expression_node, f"{metric!r} of {selector.text!r} needs a window (e.g. 'window: 10s'): "
                                           "work the run's end left unsent is counted for all requests together, "
                                           "so a single request name or stage has an intended rate only in windows")
    abort, abort_node = options.get("abort_on_fail", (False, None))
    if not isinstance(abort, bool):
        raise reader.fail(abort_node, f"abort_on_fail must be true or false, got {abort!r}")
    delay = _option_duration(reader, options, "delay_abort_eval")
    if delay is not None and not abort:
        raise reader.fail(options["delay_abort_eval"][1], "delay_abort_eval needs abort_on_fail: true")
    return Threshold(selector=selector, metric=metric, op=op, limit=limit, expression=" ".join(expression.split()),
                     line=expression_node.start_mark.line + 1, window=window, abort_on_fail=abort,
                     delay_abort_eval=delay or 0.0)


def _option_duration(reader: _Reader, options: Mapping[str, tuple[Any, yaml.Node]], key: str) -> float | None:
    if key not in options:
        return None
    value, node = options[key]
    try:
        return yaml_duration_seconds(value)
    except ValueError as error:
        raise reader.fail(node, f"{key}: {error}") from None


def load_gate(path: str | Path) -> Gate:
    """Read and check the gate file at ``path``; GateFileError (``path:line: ...``) when it is unusable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise GateFileError(str(path), 1, f"cannot read the gate file: {error}") from None
    return parse_gate(text, str(path))
