"""The rows of the web UI's chaos tabs: verdicts per fault, reason and example; fault windows of the test."""

from __future__ import annotations

from harness.load.webui import EXTENDED_TABLES, EXTENDED_TABS, fault_rows, trail_text, verdict_rows

VERDICTS = {
    "expected": 7, "unexpected": 1, "pending": 2,
    "faults": {"cp_disconnected": {"expected": 5}, "none": {"expected": 2, "unexpected": 1}},
    "reasons": {"cmg.503": {"expected": 5}, "mp.401": {"unexpected": 1}, "ok": {"expected": 2}},
    "examples": {"unexpected_failure:mp.401": [{
        "device": "CMGDEV0000004", "explanation": "a proxy forwarded a request with an invalid token to the MP",
        "trail": [["ccm_token", "/CCM_Proxy_ServerAuth/1/CCM_STS", 200, 4.0, "ok"],
                  ["policy_assignments", "/CCM_Proxy_ServerAuth/1/ccm_system_tokenauth/request", 401, 2.0, "mp.401"]],
    }]},
}


def test_the_verdict_tab_shows_totals_faults_reasons_then_examples() -> None:
    """One row for the total, one per fault and per reason with both counts, one per unexpected example."""
    rows = verdict_rows(VERDICTS)
    assert rows[0] == {"kind": "total", "name": "all judged outcomes", "expected": 7, "unexpected": 1,
                       "detail": "2 waiting for the fault timeline"}
    assert {(row["kind"], row["name"], row["expected"], row["unexpected"]) for row in rows[1:6]} == {
        ("faults on", "cp_disconnected", 5, 0), ("faults on", "none", 2, 1), ("reason", "cmg.503", 5, 0),
        ("reason", "mp.401", 0, 1), ("reason", "ok", 2, 0)}
    example = rows[-1]
    assert example["kind"] == "example" and example["name"] == "unexpected_failure:mp.401"
    assert example["detail"].startswith("CMGDEV0000004: a proxy forwarded")
    assert example["detail"].endswith("trail: ccm_token 200 ok > policy_assignments 401 mp.401")


def test_an_exchange_without_an_answer_shows_a_dash_for_its_status() -> None:
    """A TLS failure has no HTTP status."""
    assert trail_text([["aad_info", "/CCM_Proxy_ServerAuth/AADAuthInfo", None, 1.0, "tls.invalid_ca"]]) == \
        "aad_info - tls.invalid_ca"


def test_the_fault_tab_places_windows_in_the_test_and_points_to_the_controls() -> None:
    """Windows are given in seconds into the test; one still on has no end; the last row names the controls."""
    windows = [{"name": "crl_unreachable", "role": "crl", "start": 1010.0, "end": 1040.0, "injections": 12,
                "inferred": False},
               {"name": "cp_disconnected", "role": "cmg", "start": 1050.5, "end": None, "injections": 3,
                "inferred": False},
               {"name": "reset", "role": "*", "start": 1060.0, "end": 1061.0, "injections": 1, "inferred": True}]
    rows = fault_rows(windows, started_at=1000.0)
    assert [(r["fault"], r["state"], r["from_s"], r["to_s"], r["injections"]) for r in rows[:3]] == [
        ("crl_unreachable", "ended", 10.0, 40.0, 12), ("cp_disconnected", "on", 50.5, "", 3),
        ("reset", "inferred", 60.0, 61.0, 1)]
    assert "cmg/faults" in rows[-1]["state"]


def test_every_extra_tab_has_a_table_with_its_columns() -> None:
    """Locust's UI needs a table structure for each extended tab it shows."""
    assert {tab["key"] for tab in EXTENDED_TABS} == {table["key"] for table in EXTENDED_TABLES}
    verdict_columns = next(t["structure"] for t in EXTENDED_TABLES if t["key"] == "chaos-verdicts")
    assert set(verdict_rows(VERDICTS)[0]) == {column["key"] for column in verdict_columns}


def test_overlapping_faults_are_one_row_and_the_rows_add_up_to_the_total() -> None:
    """An outcome under two faults is in the "a + b" row only, marked as an overlap; the rows sum to the total."""
    verdicts = {"expected": 9, "unexpected": 2, "pending": 0,
                "faults": {"cp_disconnected + crl_unreachable": {"expected": 4, "unexpected": 1},
                           "crl_unreachable": {"expected": 3}, "none": {"expected": 2, "unexpected": 1}},
                "reasons": {}, "examples": {}}
    rows = verdict_rows(verdicts)
    sets = [row for row in rows if row["kind"] == "faults on"]
    assert [(row["name"], row["detail"]) for row in sets] == [
        ("cp_disconnected + crl_unreachable", "overlap: 2 faults on together"), ("crl_unreachable", ""),
        ("none", "no fault")]
    total = rows[0]
    assert sum(row["expected"] for row in sets) == total["expected"] == 9
    assert sum(row["unexpected"] for row in sets) == total["unexpected"] == 2
