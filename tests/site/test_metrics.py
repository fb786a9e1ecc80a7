"""Prometheus metrics per role, the CMGService.log numbers and the connection point traffic report."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from cmg_protocol.clock import FakeClock
from cmg_protocol.logfile import LogWriter
from cmg_protocol.logformat import parse_cmgservice_text, parse_smstrace_line
from mock_site.metrics import (
    MAX_ENDPOINTS,
    OTHER_REQUEST_URI,
    CMGServiceLogger,
    CMGServiceStats,
    ConnectionPointReport,
    MetricLabelError,
    SiteMetrics,
    StatsLogger,
)

STS = "/CCM_Proxy_ServerAuth/{id}/CCM_STS"
GATE_THRESHOLDS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0")


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> SiteMetrics:
    return SiteMetrics("cmg", registry=registry)


def exposition(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


# ---- SiteMetrics ---------------------------------------------------------------------------------------------------


def test_an_observed_request_is_exposed_under_the_documented_names(
    metrics: SiteMetrics, registry: CollectorRegistry
) -> None:
    """One request shows up in the request counter and the size and duration histograms, labelled by route template."""
    metrics.observe_request(STS, "POST", 200, 1974, 1566, 0.218)
    text = exposition(registry)
    assert f'cmg_requests_total{{endpoint="{STS}",method="POST",role="cmg",status="200"}} 1.0' in text
    assert f'cmg_request_size_bytes_sum{{endpoint="{STS}",role="cmg"}} 1974.0' in text
    assert f'cmg_response_size_bytes_sum{{endpoint="{STS}",role="cmg"}} 1566.0' in text
    assert f'cmg_request_duration_seconds_sum{{endpoint="{STS}",role="cmg"}} 0.218' in text
    assert f'cmg_request_duration_seconds_count{{endpoint="{STS}",role="cmg"}} 1.0' in text


@pytest.mark.parametrize("threshold", GATE_THRESHOLDS)
def test_duration_buckets_hold_every_default_gate_threshold(
    metrics: SiteMetrics, registry: CollectorRegistry, threshold: str
) -> None:
    """Each default gate threshold is a bucket bound, so a gate can read the share of requests under it exactly."""
    metrics.observe_request(STS, "POST", 200, 1, 1, 0.001)
    assert f'cmg_request_duration_seconds_bucket{{endpoint="{STS}",le="{threshold}",role="cmg"}} 1.0' in exposition(
        registry
    )


@pytest.mark.parametrize(
    ("call", "sample", "labels"),
    [
        (lambda m: m.fault_injected("latency"), "cmg_fault_injections_total", {"fault": "latency"}),
        (lambda m: m.token_issued("ccm"), "cmg_tokens_issued_total", {"kind": "ccm"}),
        (lambda m: m.token_issued("entra"), "cmg_tokens_issued_total", {"kind": "entra"}),
        (lambda m: m.token_rejected("expired"), "cmg_tokens_rejected_total", {"reason": "expired"}),
        (lambda m: m.registration("created"), "cmg_registrations_total", {"result": "created"}),
        (lambda m: m.crl_fetch("ok"), "cmg_crl_fetches_total", {"result": "ok"}),
        (lambda m: m.forward_error("cp1", "timeout"), "cmg_forward_errors_total", {"target": "cp1", "reason": "timeout"}),
    ],
    ids=["fault", "ccm-token", "entra-token", "rejected", "registration", "crl", "forward-error"],
)
def test_each_event_counter_counts_under_its_name(
    metrics: SiteMetrics, registry: CollectorRegistry, call, sample: str, labels: dict[str, str]
) -> None:
    """Every event method increments its own counter, labelled with the role and the given values."""
    call(metrics)
    call(metrics)
    assert registry.get_sample_value(sample, {"role": "cmg", **labels}) == 2.0


def test_in_flight_gauge_follows_started_and_finished_requests(
    metrics: SiteMetrics, registry: CollectorRegistry
) -> None:
    """The in-flight gauge rises with each started request and falls with each finished one."""
    metrics.request_started()
    metrics.request_started()
    metrics.request_finished()
    assert registry.get_sample_value("cmg_requests_in_flight", {"role": "cmg"}) == 1.0


def test_roles_sharing_one_registry_report_side_by_side(registry: CollectorRegistry) -> None:
    """Several roles in one process share the registry; their samples differ only by the role label."""
    cmg, mp = SiteMetrics("cmg", registry=registry), SiteMetrics("mp", registry=registry)
    cmg.observe_request(STS, "POST", 200, 1, 1, 0.01)
    mp.observe_request("/CCM_STS", "POST", 401, 1, 1, 0.01)
    mp.observe_request("/CCM_STS", "POST", 401, 1, 1, 0.01)
    labels = {"method": "POST"}
    assert registry.get_sample_value("cmg_requests_total", {"role": "cmg", "endpoint": STS, "status": "200", **labels}) == 1
    assert registry.get_sample_value("cmg_requests_total", {"role": "mp", "endpoint": "/CCM_STS", "status": "401", **labels}) == 2


def test_the_hot_path_binds_labels_only_the_first_time(
    metrics: SiteMetrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the first request of a kind, ``observe_request`` reuses cached children and calls no ``.labels()``."""
    from mock_site.metrics.exposition import FastFamily

    calls = []
    original = FastFamily.labels
    monkeypatch.setattr(FastFamily, "labels", lambda self, *a, **k: calls.append(a) or original(self, *a, **k))
    metrics.observe_request(STS, "CCM_POST", 200, 10, 20, 0.01)
    assert len(calls) == 4
    calls.clear()
    for _ in range(100):
        metrics.observe_request(STS, "CCM_POST", 200, 10, 20, 0.01)
    assert calls == []


def test_endpoints_beyond_the_bound_fold_into_other(metrics: SiteMetrics, registry: CollectorRegistry) -> None:
    """A caller that passes raw paths cannot create more than MAX_ENDPOINTS series; the rest count as ``other``."""
    for i in range(MAX_ENDPOINTS + 25):
        metrics.observe_request(f"/raw/{i}", "GET", 200, 1, 1, 0.001)
    endpoints = {
        s.labels["endpoint"] for fam in registry.collect() if fam.name == "cmg_requests" for s in fam.samples
    }
    assert len(endpoints) == MAX_ENDPOINTS + 1
    assert registry.get_sample_value(
        "cmg_requests_total", {"role": "cmg", "endpoint": "other", "method": "GET", "status": "200"}
    ) == 25


def test_an_unknown_method_is_counted_as_other(metrics: SiteMetrics, registry: CollectorRegistry) -> None:
    """Methods outside the known set share the ``other`` label value."""
    metrics.observe_request(STS, "BREW", 405, 1, 1, 0.001)
    assert registry.get_sample_value(
        "cmg_requests_total", {"role": "cmg", "endpoint": STS, "method": "other", "status": "405"}
    ) == 1


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda m: m.observe_request(STS, "GET", 999, 1, 1, 0.1), "999"),
        (lambda m: m.observe_request("", "GET", 200, 1, 1, 0.1), "''"),
        (lambda m: m.token_issued("saml"), "saml"),
        (lambda m: m.fault_injected("Latency Spike"), "Latency Spike"),
        (lambda m: m.forward_error("cp", "/etc/passwd"), "/etc/passwd"),
    ],
    ids=["status", "endpoint", "token-kind", "fault", "reason"],
)
def test_label_values_outside_the_closed_set_raise_naming_them(metrics: SiteMetrics, call, named: str) -> None:
    """A label value the metric does not allow raises a ValueError naming it."""
    with pytest.raises(MetricLabelError) as excinfo:
        call(metrics)
    assert named in str(excinfo.value)


def test_a_bad_role_is_refused_by_name(registry: CollectorRegistry) -> None:
    """The role label is a short lower-case word."""
    with pytest.raises(ValueError, match="CMG Role"):
        SiteMetrics("CMG Role", registry=registry)


# ---- CMGServiceStats -----------------------------------------------------------------------------------------------


def test_cmgservice_numbers_for_a_known_sequence() -> None:
    """Counts, byte sums and the whole-millisecond average come out as the CMGService.log line defines them."""
    stats = CMGServiceStats(FakeClock())
    stats.record("/CCM_PROXY_SERVERAUTH/72057594037937981/CCM_STS", 1000, 500, 0.200)
    stats.record("/CCM_PROXY_SERVERAUTH/72057594037937981/CCM_STS", 974, 1066, 0.236)
    stats.record("/CCM_PROXY_SERVERAUTH/72057594037937981/CCM_STS", 900, 0, 0.050, responded=False)
    [line] = stats.drain()
    assert (line.request_count, line.request_size, line.response_count, line.response_size) == (3, 2874, 2, 1566)
    assert line.average_elapsed_ms == 162  # (200 + 236 + 50) / 3 = 162.0


@pytest.mark.parametrize(("elapsed", "expected_ms"), [(0.0025, 3), (0.0034, 3), (0.00049, 0), (1.5, 1500)])
def test_average_elapsed_time_is_rounded_to_whole_milliseconds(elapsed: float, expected_ms: int) -> None:
    """AverageElapsedTime rounds half up to whole milliseconds."""
    stats = CMGServiceStats(FakeClock())
    stats.record("/a", 1, 1, elapsed)
    assert stats.drain()[0].average_elapsed_ms == expected_ms


def test_the_query_is_dropped_and_the_path_kept_as_sent() -> None:
    """Request URIs group by path without the query, keeping the client's spelling of the path."""
    stats = CMGServiceStats(FakeClock())
    stats.record("/SMS_MP/.sms_pol?{abc}", 10, 10, 0.01)
    stats.record("/SMS_MP/.sms_pol?{def}", 10, 10, 0.01)
    stats.record("/sms_mp/.sms_pol", 10, 10, 0.01)
    drained = [(line.request_uri, line.request_count) for line in stats.drain()]
    assert drained == [("/SMS_MP/.sms_pol", 2), ("/sms_mp/.sms_pol", 1)]


def test_control_characters_and_spaces_in_a_path_are_percent_encoded() -> None:
    """A decoded path holding a line break or spaces cannot forge a log line: such characters are written as %XX."""
    stats = CMGServiceStats(FakeClock())
    stats.record("/a\nRequestUri: /forged", 1, 1, 0.01)
    [line] = stats.drain()
    assert line.request_uri == "/a%0ARequestUri:%20/forged"
    assert parse_cmgservice_text(line.text()).request_uri == line.request_uri.upper()  # upper-cased in the log


def test_drain_returns_the_window_and_starts_a_new_one() -> None:
    """``drain`` hands out the window's lines with its bounds and leaves an empty window behind."""
    clock = FakeClock(1000.0)
    stats = CMGServiceStats(clock)
    stats.record("/a", 1, 1, 0.01)
    clock.advance(300)
    [line] = stats.drain()
    assert (line.window_start, line.window_end) == (1000.0, 1300.0)
    assert stats.drain() == []


def test_request_uris_beyond_the_bound_fold_into_one_row() -> None:
    """Past ``max_request_uris`` distinct paths, new ones share the ``(other)`` row, listed last."""
    stats = CMGServiceStats(FakeClock(), max_request_uris=3)
    for i in range(5):
        stats.record(f"/p{i}", 10, 20, 0.01)
    stats.record("/p1", 10, 20, 0.01)
    lines = stats.drain()
    counted = [(line.request_uri, line.request_count) for line in lines]
    assert counted == [("/p0", 1), ("/p1", 2), ("/p2", 1), (OTHER_REQUEST_URI, 2)]
    assert lines[-1].request_size == 20


def test_a_cmgservice_line_renders_in_the_log_format() -> None:
    """``text()`` gives the CMGService.log traffic line, which parses back to the same numbers."""
    stats = CMGServiceStats(FakeClock())
    stats.record("/CCM_PROXY_SERVERAUTH/72057594037937981/CCM_STS", 1974, 1566, 0.218)
    [line] = stats.drain()
    parsed = parse_cmgservice_text(line.text())
    assert (parsed.request_uri, parsed.request_count, parsed.request_size) == (line.request_uri, 1, 1974)
    assert (parsed.response_count, parsed.response_size, parsed.average_elapsed_ms) == (1, 1566, 218)


# ---- periodic loggers ----------------------------------------------------------------------------------------------


def test_cmgservice_logger_writes_a_line_per_request_uri_each_period(tmp_path: Path) -> None:
    """Run with a tiny real period, the logger writes each RequestUri's line to CMGService.log in SMS trace format."""
    clock = FakeClock()
    stats = CMGServiceStats(clock)
    writer = LogWriter(tmp_path / "CMGService.log", style="smstrace", component="CMGService", clock=clock)
    logger = CMGServiceLogger(stats, writer, period_seconds=0.01)

    async def scenario() -> list[str]:
        task = asyncio.create_task(logger.run())
        stats.record("/a", 5, 6, 0.001)
        stats.record("/b", 5, 6, 0.001)
        try:
            while len(lines := writer.path.read_text().splitlines()) < 2:
                await asyncio.sleep(0.01)
            return lines
        finally:
            task.cancel()

    lines = asyncio.run(asyncio.wait_for(scenario(), timeout=10))
    entries = [parse_smstrace_line(line) for line in lines]
    assert [e.component for e in entries] == ["CMGService", "CMGService"]
    assert [parse_cmgservice_text(e.text).request_uri for e in entries] == ["/A", "/B"]
    writer.close()


def test_flush_writes_what_the_window_holds() -> None:
    """At shutdown ``flush`` writes the open window at once and says how many lines it wrote."""
    stats = CMGServiceStats(FakeClock())
    written: list[str] = []

    class Sink:
        def info(self, text: str, *, file: str = "") -> None:
            written.append(text)

    logger = CMGServiceLogger(stats, Sink(), period_seconds=300)
    stats.record("/a", 1, 1, 0.01)
    assert logger.flush() == 1
    assert logger.flush() == 0
    assert len(written) == 1 and written[0].startswith("RequestUri: /A")


@pytest.mark.parametrize("period", [0, -1.0])
def test_a_non_positive_period_is_refused_by_value(period: float) -> None:
    """The logger needs a period above zero and names the bad one."""
    with pytest.raises(ValueError, match=repr(period)):
        StatsLogger(CMGServiceStats(FakeClock()), None, period)  # type: ignore[arg-type]


# ---- ConnectionPointReport -----------------------------------------------------------------------------------------


def test_connection_point_report_tracks_max_concurrency_and_totals() -> None:
    """The report holds the peak of overlapping requests and the totals of the window."""
    report = ConnectionPointReport()
    a = report.begin("CCM_STS", True, 100)
    b = report.begin("CCM_STS", True, 100)
    c = report.begin("CCM_STS", False, 50)
    a.end(10)
    d = report.begin("CCM_STS", True, 100)
    for exchange in (b, c):
        exchange.end(20)
    d.end(0, failed=True)
    [stats] = report.drain()
    assert stats.max_concurrent_requests == 3
    assert (stats.total_requests, stats.total_requests_with_bearer_token, stats.failed_requests) == (4, 3, 1)
    assert (stats.total_request_bytes, stats.total_response_bytes) == (350, 50)


def test_requests_open_across_a_drain_count_in_the_next_window() -> None:
    """Requests still open when the report is drained start the next window's concurrency."""
    report = ConnectionPointReport()
    open_ones = [report.begin("ccm_system", True, 1) for _ in range(2)]
    assert report.drain()[0].max_concurrent_requests == 2
    late = report.begin("ccm_system", True, 1)
    [stats] = report.drain()
    assert (stats.total_requests, stats.max_concurrent_requests) == (1, 3)
    for exchange in [*open_ones, late]:
        exchange.end(5)
    assert report.drain()[0].total_response_bytes == 15


def test_ending_an_exchange_twice_counts_it_once() -> None:
    """A second ``end`` on the same request changes nothing."""
    report = ConnectionPointReport()
    exchange = report.begin("CCM_STS", False, 1)
    exchange.end(7, failed=True)
    exchange.end(7, failed=True)
    [stats] = report.drain()
    assert (stats.total_response_bytes, stats.failed_requests) == (7, 1)
    second = report.begin("CCM_STS", False, 1)
    assert report.drain()[0].max_concurrent_requests == 1
    second.end(0)


def test_connection_point_endpoints_beyond_the_bound_fold_into_other() -> None:
    """Endpoint names past ``max_endpoints`` share one ``other`` entry."""
    report = ConnectionPointReport(max_endpoints=2)
    for name in ("a", "b", "c", "d"):
        report.begin(name, False, 1).end(1)
    assert [(s.endpoint, s.total_requests) for s in report.drain()] == [("a", 1), ("b", 1), ("other", 2)]


def test_connection_point_report_line_names_every_documented_field() -> None:
    """The report line carries the six documented field names with their values."""
    report = ConnectionPointReport()
    report.begin("CCM_STS", True, 1974).end(1566)
    text = report.drain()[0].text()
    for field in (
        "EndpointName: CCM_STS", "TotalRequests: 1", "TotalRequestsWithBearerToken: 1", "MaxConcurrentRequests: 1",
        "TotalRequestBytes: 1974", "TotalResponseBytes: 1566", "FailedRequests: 0",
    ):
        assert field in text


def test_histogram_buckets_are_cumulative_and_inclusive(metrics: SiteMetrics, registry: CollectorRegistry) -> None:
    """A value equal to a bound lands in that bucket ("le"), buckets add up, and +Inf counts everything."""
    for seconds in (0.005, 0.006, 100.0):
        metrics.observe_request(STS, "CCM_POST", 200, 1, 1, seconds)
    labels = {"role": "cmg", "endpoint": STS}
    bucket = "cmg_request_duration_seconds_bucket"
    assert registry.get_sample_value(bucket, {**labels, "le": "0.005"}) == 1
    assert registry.get_sample_value(bucket, {**labels, "le": "0.01"}) == 2
    assert registry.get_sample_value(bucket, {**labels, "le": "+Inf"}) == 3
    assert registry.get_sample_value("cmg_request_duration_seconds_count", labels) == 3
    assert registry.get_sample_value("cmg_request_duration_seconds_sum", labels) == pytest.approx(100.011)


def test_worker_snapshots_sum_exactly_with_the_control_registry(tmp_path) -> None:
    """Counters and histograms of two workers' snapshots and the control process's own registry add up series by
    series; a family only the control process may report (active faults) is left out of the workers' snapshots."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from mock_site.metrics.worker_snapshots import AggregatedRegistry, write_snapshot

    control = CollectorRegistry()
    SiteMetrics("cmg", registry=control).observe_request("/x", "GET", 200, 10, 20, 0.01)
    for pid, requests in ((1, 3), (2, 4)):
        registry = CollectorRegistry()
        metrics = SiteMetrics("cmg", registry=registry)
        for _ in range(requests):
            metrics.observe_request("/x", "GET", 200, 10, 20, 0.01)
        metrics.token_issued("ccm")
        registry.register(_ActiveFaultsStandIn())
        write_snapshot(registry, tmp_path / f"metrics-{pid}.json")
    text = generate_latest(AggregatedRegistry(control, tmp_path)).decode()  # type: ignore[arg-type]
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("cmg_requests_total", (("endpoint", "/x"), ("method", "GET"), ("role", "cmg"),
                                           ("status", "200")))] == 8
    assert samples[("cmg_request_duration_seconds_count", (("endpoint", "/x"), ("role", "cmg")))] == 8
    assert samples[("cmg_tokens_issued_total", (("kind", "ccm"), ("role", "cmg")))] == 2
    assert not any(name == "cmg_faults_active" for name, _ in samples)


class _ActiveFaultsStandIn:
    def collect(self):  # type: ignore[no-untyped-def]
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily("cmg_faults_active", "stand-in", labels=["role", "fault"])
        family.add_metric(["cmg", "reset"], 1.0)
        yield family


def test_worker_journals_merge_into_the_cmgservice_window_exactly(tmp_path) -> None:
    """Rows two workers drained into their journals add up per RequestUri in the writer's window; a row is merged once."""
    from mock_site.metrics.worker_snapshots import JournalReader, TrafficJournal

    clock = FakeClock(100.0)
    for pid in (1, 2):
        worker = CMGServiceStats(clock)
        for _ in range(pid):
            worker.record("/CCM_STS", 100, 200, 0.002)
        TrafficJournal(tmp_path / f"cmgservice-{pid}.jsonl").append(0, worker.drain())
    writer = CMGServiceStats(clock)
    reader = JournalReader(tmp_path)
    assert reader.merge_into([writer]) == 2 and reader.merge_into([writer]) == 0
    (line,) = writer.drain()
    assert (line.request_uri, line.request_count, line.request_size, line.response_size) == ("/CCM_STS", 3, 300, 600)
