"""The outcome tally and the CMGService-style tables built from Locust's statistics."""

from __future__ import annotations

import json

import pytest

from harness.fleet.tally import OutcomeTally, TallyError, cmgservice_table, lifecycle_table

POLICY = "/CCM_Proxy_ServerAuth/72186325152220500/ccm_system_tokenauth/request"


def test_outcomes_count_by_reason_and_the_verdicts_mark_the_unexpected_ones() -> None:
    """Ended lives count by reason; outcomes the verdicts found unexpected count apart, successes under 'ok'."""
    tally = OutcomeTally()
    tally.record_outcome(False, "cmg.403")
    tally.record_outcome(False, "aad.no_wpj")
    tally.record_outcome(True)
    tally.record_unexpected("cmg.403")
    tally.record_unexpected("ok")
    snapshot = tally.snapshot()
    assert snapshot["outcomes"] == {"aad.no_wpj": 1, "cmg.403": 1, "success": 1}
    assert snapshot["unexpected"] == {"cmg.403": 1, "ok": 1}
    assert snapshot["lifecycles"] == {"succeeded": 1, "failed": 2, "unexpected_failures": 1,
                                      "unexpected_successes": 1}


def test_an_unexpected_outcome_needs_a_reason_code() -> None:
    """An unexpected verdict without a reason code (or 'ok') is refused."""
    with pytest.raises(TallyError, match="reason code"):
        OutcomeTally().record_unexpected("")


def test_the_snapshot_carries_the_verdicts_of_an_attached_source() -> None:
    """With a verdict source attached, the snapshot (and so outcomes.json) holds its verdicts; without, none."""
    tally = OutcomeTally()
    assert "verdicts" not in tally.snapshot()
    tally.verdicts = lambda: {"expected": 3, "unexpected": 0}
    assert tally.snapshot()["verdicts"] == {"expected": 3, "unexpected": 0}


def test_a_failure_needs_a_reason_code() -> None:
    """A failed lifecycle without a reason code is refused."""
    with pytest.raises(TallyError, match="reason code"):
        OutcomeTally().record_outcome(False, "")


def test_milestones_count_devices_once_and_occurrences_every_time() -> None:
    """``devices`` counts devices reaching a milestone, ``events`` every time it happens."""
    tally = OutcomeTally()
    tally.record_milestone("renewed", first=True)
    tally.record_milestone("renewed", first=False)
    snapshot = tally.snapshot()
    assert snapshot["devices"]["renewed"] == 1
    assert snapshot["events"]["renewed"] == 2


def test_an_unknown_milestone_is_refused_by_name() -> None:
    """Milestone names are fixed; a typo fails loudly."""
    with pytest.raises(TallyError, match="'enrolled'"):
        OutcomeTally().record_milestone("enrolled", first=True)


def test_stage_failures_count_per_stage() -> None:
    """A failed stage counts under its stage name; whether it was expected is the verdict's business."""
    tally = OutcomeTally()
    tally.record_stage_failure("policy cycle", "http.500")
    tally.record_stage_failure("policy cycle", "reset")
    snapshot = tally.snapshot()
    assert snapshot["stage_failures"] == {"policy cycle": 2}
    assert snapshot["unexpected"] == {}


def test_worker_deltas_merged_on_the_master_add_up_to_the_workers_counts() -> None:
    """What workers drain and the master merges equals what the workers counted, even over several reports."""
    workers = [OutcomeTally(), OutcomeTally()]
    master = OutcomeTally()
    for number, worker in enumerate(workers):
        worker.record_device_started()
        worker.record_milestone("registered", first=True)
        worker.record_request(POLICY, 1000 + number, answered=True)
        master.merge(json.loads(json.dumps(worker.drain())))  # deltas travel as JSON-like data
        worker.record_outcome(False, "timeout")
        master.merge(worker.drain())
    snapshot = master.snapshot()
    assert snapshot["devices"]["started"] == 2
    assert snapshot["devices"]["registered"] == 2
    assert snapshot["outcomes"] == {"timeout": 2}
    assert snapshot["requests"] == {POLICY: {"request_bytes": 2001, "responses": 2}}


def test_drain_returns_only_what_was_counted_since_the_last_drain() -> None:
    """A second drain with nothing new is empty, while the snapshot keeps the totals."""
    tally = OutcomeTally()
    tally.record_device_started()
    assert tally.drain() == {"devices": {"started": 1}}
    assert tally.drain() == {}
    assert tally.snapshot()["devices"]["started"] == 1


@pytest.mark.parametrize(("delta", "named"), [
    ({"bogus": {"a": 1}}, "bogus"),
    ({"outcomes": {"success": "1"}}, "integer"),
    ({"outcomes": [1]}, "outcomes"),
    ([("outcomes", {})], "mapping"),
])
def test_merge_refuses_malformed_deltas(delta: object, named: str) -> None:
    """A delta that is not what drain() makes is refused, naming what is wrong."""
    with pytest.raises(TallyError, match=named):
        OutcomeTally().merge(delta)  # type: ignore[arg-type]


def test_reset_forgets_totals_and_pending_deltas() -> None:
    """After a reset nothing is counted and nothing is waiting to be sent."""
    tally = OutcomeTally()
    tally.record_outcome(True)
    tally.reset()
    assert tally.snapshot()["lifecycles"]["succeeded"] == 0
    assert tally.drain() == {}


def _entry(name: str, method: str, count: int, size: int, total_ms: float, failures: int = 0,
           max_ms: float = 0.0) -> dict[str, object]:
    return {"name": name, "method": method, "num_requests": count, "total_content_length": size,
            "total_response_time": total_ms, "num_failures": failures, "max_response_time": max_ms}


def test_cmgservice_table_groups_methods_per_request_uri() -> None:
    """Entries of one RequestUri with different methods make one row with summed counts and a joint average."""
    entries = [_entry(POLICY, "CCM_POST", 3, 300, 30.0), _entry(POLICY, "GET", 1, 100, 50.0)]
    rows = cmgservice_table(entries, {POLICY: {"request_bytes": 4000, "responses": 4}})
    assert rows == [{"request_uri": POLICY, "request_count": 4, "request_size": 4000, "response_count": 4,
                     "response_size": 400, "average_elapsed_time": 20}]


def test_cmgservice_table_leaves_out_what_the_cmg_never_sees() -> None:
    """Lifecycle stages and requests to Entra ID or the CRL distribution point have no CMGService row."""
    entries = [_entry(POLICY, "CCM_POST", 1, 10, 5.0), _entry("install+register", "LIFECYCLE", 1, 0, 900.0),
               _entry("/pki/site.crl", "GET", 1, 500, 2.0)]
    rows = cmgservice_table(entries, {POLICY: {"request_bytes": 10, "responses": 1}})
    assert [row["request_uri"] for row in rows] == [POLICY]


def test_lifecycle_table_lists_the_lifecycle_entries_only() -> None:
    """Stage rows carry count, failures, average and slowest time."""
    entries = [_entry("policy cycle", "LIFECYCLE", 4, 0, 40.0, failures=1, max_ms=25.4), _entry(POLICY, "GET", 1, 1, 1)]
    assert lifecycle_table(entries) == [{"stage": "policy cycle", "count": 4, "failures": 1, "average_ms": 10,
                                         "max_ms": 25}]
