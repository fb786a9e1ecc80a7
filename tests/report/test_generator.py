"""Load-generator checks: Locust's CPU warning and throughput below what the response time allows."""

from __future__ import annotations

import pytest

from harness.report.generator import cpu_warnings, throughput_shortfalls
from tests.report.steps_factory import step

CLEAN_LOG = ("[2026-11-29 13:20:56,071] vm/INFO/locust.runners: Shape test starting.\n"
             "[2026-11-29 13:21:36,188] vm/INFO/locust.main: Shape test completed, shutting down\n")


@pytest.mark.parametrize("warning", [
    ("vm/WARNING/root: CPU usage above 90%! This may constrain your throughput and may even give inconsistent "
     "response time measurements!"),
    "vm/WARNING/locust.runners: CPU usage was too high at some point during the test!",
    "vm/WARNING/locust.runners: CPU usage threshold was exceeded on workers during the test!",
])
def test_locusts_cpu_warnings_are_found(warning: str) -> None:
    """Each of Locust's CPU warnings (single process, master, workers) is picked out of the log."""
    assert cpu_warnings(CLEAN_LOG + f"[2026-11-29 13:21:00,000] {warning}\n") == [
        f"[2026-11-29 13:21:00,000] {warning}"]


def test_a_clean_log_has_no_cpu_warning() -> None:
    """No warning, no finding."""
    assert cpu_warnings(CLEAN_LOG) == []


def _steps(*rows: tuple[int, float, float], seconds: float = 30.0) -> list:
    return [step(users, throughput, mean=mean, index=i, seconds=seconds)
            for i, (users, throughput, mean) in enumerate(rows)]


def test_throughput_proportional_to_users_is_no_shortfall() -> None:
    """Users doubled, throughput doubled, latency flat: the generator kept up."""
    assert throughput_shortfalls(_steps((10, 100.0, 5.0), (20, 200.0, 5.0))) == []


def test_lower_throughput_explained_by_longer_responses_is_no_shortfall() -> None:
    """Closed-model users slow down when replies take longer: that is the system, not the generator."""
    # First step: 10 users, 100 req/s, 5 ms -> each user idles 95 ms between requests.
    assert throughput_shortfalls(_steps((10, 100.0, 5.0), (20, 100.0, 105.0))) == []


def test_throughput_lost_outside_the_measured_responses_is_a_shortfall() -> None:
    """Users doubled, latency flat, throughput flat to the end: the generator did not send on schedule."""
    found = throughput_shortfalls(_steps((10, 100.0, 5.0), (20, 200.0, 5.0), (30, 200.0, 5.0), (40, 200.0, 5.0)))
    assert [s.step.users for s in found] == [30, 40]
    assert found[0].expected_throughput == pytest.approx(300.0)


def test_a_shortfall_that_recovers_is_noise() -> None:
    """One low step followed by steps on the line again is not a saturated generator."""
    assert throughput_shortfalls(_steps((10, 100.0, 5.0), (20, 100.0, 5.0), (30, 300.0, 5.0))) == []


def test_steps_too_short_to_measure_the_polling_rhythm_are_not_judged() -> None:
    """Steps measured for under 20 s alias with the devices' polling: no verdict either way."""
    assert throughput_shortfalls(_steps((10, 100.0, 5.0), (20, 100.0, 5.0), seconds=4.0)) == []


@pytest.mark.parametrize("tolerance", [0.0, 1.5])
def test_a_tolerance_outside_zero_to_one_is_refused(tolerance: float) -> None:
    """The tolerance is a fraction of the expected throughput."""
    with pytest.raises(ValueError, match="tolerance"):
        throughput_shortfalls([step(10, 100.0)], tolerance=tolerance)
