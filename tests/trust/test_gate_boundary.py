"""Gate thresholds at the boundary: Locust rounds times into buckets, so a value equal to the limit is common."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.gates import evaluate, load_results, parse_gate
from tests.gates.results import REAL_STS_ENTRY, STS, write_results


@pytest.mark.parametrize(("expression", "passes"), [
    ("p95 <= 83", True), ("p95 < 83", False), ("p95 < 84", True),
    ("p95 >= 83", True), ("p95 > 83", False), ("p95 > 82", True),
    ("p95 == 83", True), ("p95 != 83", False), ("p95 != 82", True), ("p95 == 82", False),
])
def test_a_value_equal_to_the_limit(tmp_path: Path, expression: str, passes: bool) -> None:
    """CCM_STS's p95 is exactly 83 ms: ``<=``/``>=``/``==`` hold there and ``<``/``>``/``!=`` do not."""
    folder = write_results(tmp_path, [REAL_STS_ENTRY])
    gate = parse_gate(f'thresholds:\n  "{STS}":\n    - {expression}\n')
    (result,) = evaluate(gate, load_results(folder)).results
    assert result.measured == 83
    assert result.passed is passes


@pytest.mark.parametrize(("expression", "message"), [
    ("failure_ratio <= 1", "always holds"), ("failure_ratio < 1", None), ("failure_ratio > 1", "can never hold"),
    ("failure_ratio >= 1", None), ("p95 < 0", "can never hold"), ("p95 <= 0", None), ("p95 >= 0", "always holds"),
    ("p95 > 0", None), ("failure_ratio < 0", "can never hold"), ("failure_ratio >= 0", "always holds"),
    ("count == 1.5", "can never hold"), ("count == 2", None), ("count != 1.5", "always holds"),
])
def test_thresholds_at_the_edge_of_the_metrics_domain(expression: str, message: str | None) -> None:
    """A threshold is refused only when no value, or every value, of its metric decides it; the edges stay usable."""
    text = f'thresholds:\n  "*":\n    - {expression}\n'
    if message is None:
        assert parse_gate(text).thresholds[0].holds is not None
    else:
        with pytest.raises(ValueError, match=message):
            parse_gate(text)
