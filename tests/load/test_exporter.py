"""The client metrics exporter: what a scrape shows (in-process, on a fake view), and a real Locust serving it."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from harness.dashboards import CLIENT_METRICS
from harness.defaults import LOCUSTFILES_DIR
from harness.gates import RunData, StatsEntry, evaluate, parse_gate
from harness.latency.histograms import REQUEST, STAGE, LatencyBook
from harness.load.exporter import ClientView, metrics_registry
from mock_site.testing import RunningSite

STS = "/CCM_Proxy_ServerAuth/72186325152220500/CCM_STS"
OUTCOMES: dict[str, Any] = {
    "lifecycles": {"succeeded": 3, "failed": 2, "unexpected_failures": 1},
    "outcomes": {"success": 3, "tls.invalid_ca": 2}, "unexpected": {"tls.invalid_ca": 1},
    "devices": {"started": 10, "installed": 8, "registered": 8, "renewed": 4, "polled": 8},
    "events": {"installed": 8, "registered": 8, "renewed": 6, "polled": 30},
}


def stats(name: str, times: dict[int, int], *, method: str = "POST", failures: int = 0) -> StatsEntry:
    return StatsEntry(method=method, name=name, num_requests=sum(times.values()), num_failures=failures,
                      total_response_time=float(sum(ms * n for ms, n in times.items())), response_times=times)


class View:
    """A changeable scrape source standing in for the Locust runner and tally."""

    def __init__(self, entries: list[StatsEntry], outcomes: dict[str, Any] = OUTCOMES,
                 book: LatencyBook | None = None) -> None:
        self.entries, self.outcomes, self.gate = entries, outcomes, None
        self.book = book or LatencyBook()

    def __call__(self) -> ClientView:
        return ClientView(entries=self.entries, outcomes=self.outcomes, gate=self.gate, latency=self.book.exported())


def scrape(view: View, registry: Any = None) -> dict[str, Any]:
    registry = registry or metrics_registry(view)
    return {family.name: family for family in text_string_to_metric_families(generate_latest(registry).decode())}


def sample(families: dict[str, Any], metric: str, /, **labels: str) -> float:
    family = metric.removesuffix("_total").removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
    for item in families[family].samples:
        if item.name == metric and all(item.labels.get(key) == value for key, value in labels.items()):
            return float(item.value)
    raise AssertionError(f"no sample {metric}{labels}")


def test_requests_are_counted_by_name_and_result() -> None:
    """Successes and failures per request name, summed over the methods that share the name."""
    families = scrape(View([stats(STS, {10: 8}, failures=3), stats(STS, {12: 2}, method="GET")]))
    assert sample(families, "cmg_client_requests_total", name=STS, result="success") == 7
    assert sample(families, "cmg_client_requests_total", name=STS, result="failure") == 3


def test_request_durations_become_cumulative_buckets_in_seconds() -> None:
    """Locust's millisecond histogram turns into Prometheus buckets: 3 at 4 ms, 2 at 40 ms, 1 at 3 s."""
    families = scrape(View([stats(STS, {4: 3, 40: 2, 3000: 1})]))
    bucket = "cmg_client_request_duration_seconds_bucket"
    assert sample(families, bucket, name=STS, le="0.005") == 3
    assert sample(families, bucket, name=STS, le="0.05") == 5
    assert sample(families, bucket, name=STS, le="2.5") == 5
    assert sample(families, bucket, name=STS, le="+Inf") == 6
    assert sample(families, "cmg_client_request_duration_seconds_sum", name=STS) == pytest.approx(3.092)


def test_lifecycle_entries_are_stage_durations_not_requests() -> None:
    """LIFECYCLE entries feed cmg_client_lifecycle_stage_seconds{stage} and stay out of the request metrics."""
    families = scrape(View([stats("policy cycle", {80: 4}, method="LIFECYCLE")]))
    assert sample(families, "cmg_client_lifecycle_stage_seconds_count", stage="policy cycle") == 4
    assert families["cmg_client_requests"].samples == []


def test_outcomes_come_from_the_verdicts_when_the_tally_has_them() -> None:
    """The verdicts' reasons give cmg_client_outcomes_total{reason, verdict} directly."""
    outcomes = {**OUTCOMES, "verdicts": {"reasons": {"ok": {"expected": 9}, "mp.401": {"unexpected": 1}}}}
    families = scrape(View([], outcomes))
    assert sample(families, "cmg_client_outcomes_total", reason="ok", verdict="expected") == 9
    assert sample(families, "cmg_client_outcomes_total", reason="mp.401", verdict="unexpected") == 1
    assert sample(families, "cmg_client_outcomes_total", reason="mp.401", verdict="expected") == 0


def test_without_verdicts_outcomes_are_split_by_the_unexpected_counts() -> None:
    """Two tls.invalid_ca outcomes with one counted unexpected are one expected and one unexpected."""
    families = scrape(View([]))
    assert sample(families, "cmg_client_outcomes_total", reason="tls.invalid_ca", verdict="expected") == 1
    assert sample(families, "cmg_client_outcomes_total", reason="tls.invalid_ca", verdict="unexpected") == 1
    assert sample(families, "cmg_client_outcomes_total", reason="success", verdict="expected") == 3


def test_derived_outcome_counters_never_go_down_until_the_tally_resets() -> None:
    """A later unexpected stage failure cannot lower the expected count; a new test (fewer devices) may."""
    view = View([])
    registry = metrics_registry(view)
    scrape(view, registry)
    view.outcomes = {**OUTCOMES, "unexpected": {"tls.invalid_ca": 2}}
    families = scrape(view, registry)
    assert sample(families, "cmg_client_outcomes_total", reason="tls.invalid_ca", verdict="expected") == 1
    view.outcomes = {**OUTCOMES, "devices": {"started": 1}, "unexpected": {"tls.invalid_ca": 2}}
    families = scrape(view, registry)
    assert sample(families, "cmg_client_outcomes_total", reason="tls.invalid_ca", verdict="expected") == 0


def test_active_devices_and_renewals_come_from_the_tally() -> None:
    """10 started less 5 ended is 5 active devices; 6 renewals happened."""
    families = scrape(View([]))
    assert sample(families, "cmg_client_devices_active") == 5
    assert sample(families, "cmg_client_renewals_total") == 6


def test_gate_verdicts_are_exported_per_threshold() -> None:
    """Each threshold shows ok 0/1, its measured value and its limit; the gate as a whole shows passed."""
    gate = parse_gate(f'thresholds:\n  "*":\n    - p99 < 50ms\n    - p50 < 50ms\n  "{STS}/x":\n    - p95 < 9\n')
    view = View([stats(STS, {10: 98, 100: 2})])
    view.gate = evaluate(gate, RunData(entries=tuple(view.entries)))
    families = scrape(view)
    assert sample(families, "cmg_client_gate_threshold_ok", threshold="*: p99 < 50ms") == 0
    assert sample(families, "cmg_client_gate_threshold_ok", threshold="*: p50 < 50ms") == 1
    assert sample(families, "cmg_client_gate_threshold_measured", threshold="*: p99 < 50ms") == 100
    assert sample(families, "cmg_client_gate_threshold_limit", threshold="*: p99 < 50ms") == 50
    assert sample(families, "cmg_client_gate_passed") == 0
    unmeasured = [s for s in families["cmg_client_gate_threshold_measured"].samples if "/x" in s.labels["threshold"]]
    assert unmeasured == []


def test_every_contract_metric_is_exported_with_its_type_and_labels() -> None:
    """The families match the client contract the dashboards read (harness.dashboards.CLIENT_METRICS)."""
    book = LatencyBook()
    book.record(REQUEST, STS, intended=0.0, sent=0.001, answered=0.01)
    families = scrape(View([stats(STS, {10: 1}), stats("policy cycle", {80: 1}, method="LIFECYCLE")], book=book))
    for name, (kind, labels) in CLIENT_METRICS.items():
        family = families[name.removesuffix("_total")]
        assert family.type == kind
        series = [s for s in family.samples if not s.name.endswith(("_sum", "_count"))]
        assert series and all(set(s.labels) - {"le"} == set(labels) for s in series), name


def test_the_three_latency_measures_are_exported_as_histograms() -> None:
    """Service, lateness and corrected latency per name are cmg_client_*_seconds histograms with cumulative buckets:
    a 20 ms and a 2 s corrected latency land under 0.025 s and 2.5 s (not under 0.01 s or 1 s), lateness of 1.99 s
    under 2.5 s but not 1 s, and the sum is 2.02 s; a stage is kept apart from a request of the same name."""
    book = LatencyBook()
    book.record(REQUEST, "/x", intended=0.0, sent=0.0, answered=0.020)
    book.record(REQUEST, "/x", intended=0.0, sent=1.99, answered=2.0)
    book.record(STAGE, "/x", intended=0.0, sent=0.0, answered=0.001)
    families = scrape(View([], book=book))
    corrected = "cmg_client_corrected_seconds_bucket"
    assert [sample(families, corrected, kind="request", name="/x", le=le) for le in ("0.01", "0.025", "1.0", "2.5")] \
        == [0, 1, 1, 2]
    assert sample(families, corrected, kind="stage", name="/x", le="0.001") == 1
    assert sample(families, "cmg_client_lateness_seconds_bucket", kind="request", name="/x", le="1.0") == 1
    assert sample(families, "cmg_client_lateness_seconds_bucket", kind="request", name="/x", le="2.5") == 2
    assert sample(families, "cmg_client_service_seconds_count", kind="request", name="/x") == 2
    assert sample(families, "cmg_client_corrected_seconds_bucket", kind="request", name="/x", le="+Inf") == 2
    assert sample(families, "cmg_client_corrected_seconds_sum", kind="request", name="/x") == pytest.approx(2.02, 0.002)


def test_exported_latency_merged_from_workers_equals_one_book_of_all_samples() -> None:
    """A master fed two workers' drained deltas counts the same Prometheus buckets and sums as one book that saw every
    sample (the buckets are placed by HdrHistogram bucket, which survives the sparse wire form)."""
    import random

    rng = random.Random(7)
    whole, master, workers = LatencyBook(), LatencyBook(), [LatencyBook(), LatencyBook()]
    for index in range(3000):
        intended = rng.uniform(0, 100)
        sent = intended + rng.expovariate(1 / 0.02)
        answered = sent + rng.lognormvariate(-4, 1.5)
        name = ("/a", "/b")[index % 2]
        whole.record(REQUEST, name, intended=intended, sent=sent, answered=answered)
        workers[index % 2].record(REQUEST, name, intended=intended, sent=sent, answered=answered)
    for worker in workers:
        master.merge(worker.drain())
    assert sorted(master.exported()) == sorted(whole.exported())
    for key, buckets in whole.exported().items():
        assert master.exported()[key].cumulative() == buckets.cumulative(), key
    assert sum(whole.exported()[(REQUEST, "/a", "corrected_ms")].counts) == 1500


def test_the_exporter_uses_its_own_registry() -> None:
    """Nothing is registered in prometheus_client's global registry."""
    metrics_registry(View([]))
    assert not [name for name in REGISTRY._names_to_collectors if name.startswith("cmg_client")]


# ------------------------------------------------------------------------------------------ a real Locust


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _scrape_until(url: str, ready: str, deadline: float) -> dict[str, Any]:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
            families = {family.name: family for family in text_string_to_metric_families(text)}
            if ready in text and families["cmg_client_requests"].samples:
                return families
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} never showed {ready}")


@pytest.fixture
def locust_process(site: RunningSite, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[int, Any]]:
    """Locust (headless, 10 s) with --metrics-port and a gate; yields the port and the process, stops it by PID."""
    port = _free_port()
    gate = tmp_path / "gate.yaml"
    gate.write_text('thresholds:\n  "*":\n    - p99 < 60s\n    - threshold: rps >= 1\n      window: 2s\n')
    with open(tmp_path / "locust.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "locust", "-f", str(LOCUSTFILES_DIR / "lifecycle.py"),
                                    "--headless", "-u", "2", "-r", "2", "-t", "10", "--only-summary", "--site",
                                    str(site.manifest_path), "--devices-per-user", "2", "--metrics-port", str(port),
                                    "--gate", str(gate), *request.param], stdout=log, stderr=subprocess.STDOUT)
        try:
            yield port, process
        finally:
            if process.poll() is None:
                process.terminate()
            process.wait(30)


@pytest.mark.slow
@pytest.mark.parametrize("locust_process", [(), ("--processes", "1")], indirect=True, ids=["local", "master+worker"])
def test_a_running_locust_serves_the_client_metrics_and_gate_verdicts(locust_process: tuple[int, Any]) -> None:
    """During a run /metrics on 127.0.0.1 shows requests, stages and the gate (with a worker: the master's merge)."""
    port, process = locust_process
    # The gate is measured once a second: wait for a measurement made after the first requests.
    families = _scrape_until(f"http://127.0.0.1:{port}/metrics",
                             'cmg_client_gate_threshold_measured{threshold="*: p99 < 60s"}', time.monotonic() + 25)
    assert sample(families, "cmg_client_requests_total", name="/CCM_Proxy_ServerAuth/AADAuthInfo",
                  result="success") >= 1
    assert sample(families, "cmg_client_gate_threshold_ok", threshold="*: p99 < 60s") == 1
    assert sample(families, "cmg_client_devices_active") >= 1
    assert process.wait(40) == 0
