"""The chaos part of the run summary: verdicts per fault set add up; old summaries (per-fault keys) still read."""

from __future__ import annotations

from harness.chaos.summary import chaos_sections, fault_involvement, format_chaos

FAULT_SETS = {"cp_disconnected + crl_unreachable": {"expected": 4, "unexpected": 1},
              "crl_unreachable": {"expected": 3}, "none": {"expected": 2}}


def _outcomes(faults: dict[str, dict[str, int]], expected: int, unexpected: int) -> dict[str, object]:
    return {"verdicts": {"expected": expected, "unexpected": unexpected, "kinds": {}, "reasons": {},
                         "faults": faults, "examples": {}, "pending": 0}}


def test_the_summary_keeps_one_count_per_outcome_under_its_fault_set() -> None:
    """summary.json's verdicts per fault set add up to expected + unexpected, and the printed line shows the sets."""
    sections = chaos_sections(_outcomes(FAULT_SETS, 9, 1))
    faults = sections["verdicts"]["faults"]
    assert sum(sum(counts.values()) for counts in faults.values()) == 10
    line = next(line for line in format_chaos(sections) if line.startswith("  by fault"))
    assert "cp_disconnected + crl_unreachable 4/1" in line and "crl_unreachable 3/0" in line and "none 2/0" in line


def test_the_per_fault_view_counts_an_overlap_for_each_of_its_faults() -> None:
    """Involvement per single fault: crl_unreachable had a part in 8 outcomes, cp_disconnected in 5."""
    assert fault_involvement(FAULT_SETS) == {"cp_disconnected": {"expected": 4, "unexpected": 1},
                                             "crl_unreachable": {"expected": 7, "unexpected": 1},
                                             "none": {"expected": 2}}


def test_a_summary_written_before_fault_sets_reads_as_sets_of_one() -> None:
    """Old summaries keyed verdicts by single fault; they still format and give the same per-fault view."""
    old = {"crl_unreachable": {"expected": 3}, "sts_error": {"expected": 1, "unexpected": 2}}
    sections = chaos_sections(_outcomes(old, 4, 2))
    assert fault_involvement(sections["verdicts"]["faults"]) == old
    assert any("sts_error 1/2" in line for line in format_chaos(sections))
