"""RECIST 1.1 (Eisenhauer 2009): one row per rule or worked case, expected call and a fragment of the reason.

Numeric assertions on sums and percentages use pytest.approx with abs=0.05:
inputs have 0.1 mm resolution and reasons print one decimal.
"""

from __future__ import annotations

import pytest

from imaging.response import AssessmentOptions, assess
from imaging.response.common import CR, NA, NE, NON_CR_NON_PD, PD, PR, SD
from imaging.response.recist import (
    TABLE_1,
    TABLE_2,
    overall_response_recist,
    progression_by_sum,
    target_response_recist,
)
from tests.response.factory import calls, course, day, lesion, new, node, tp, week

B = day(-3)  # baseline date, before treatment start

# (id, baseline, follow-ups, expected calls, fragment of the last reason)
CASES = [
    ("pr_exactly_30pct", tp(B, T1=30, T2=20), [tp(week(6), T1=20, T2=15)], [PR], "SOD 35.0 mm vs baseline 50.0 mm: -30.0% -> PR"),
    ("sd_minus_20pct", tp(B, T1=30, T2=20), [tp(week(6), T1=25, T2=15)], [SD], "-20.0%"),
    ("pd_plus20pct_plus5mm", tp(B, T1=25), [tp(week(6), T1=30)], [PD], "SOD 30.0 mm vs nadir 25.0 mm: +20.0%, +5.0 mm -> PD"),
    ("not_pd_plus20pct_plus4mm", tp(B, T1=20), [tp(week(6), T1=24)], [SD], "(< +5 mm, not PD) -> SD"),
    ("pd_plus5mm_below_20pct_is_sd", tp(B, T1=50), [tp(week(6), T1=55)], [SD], "+10.0%, +5.0 mm -> SD"),
    ("nadir_below_baseline", tp(B, T1=50), [tp(week(6), T1=30), tp(week(12), T1=36)], [PR, PD],
     "SOD 36.0 mm vs nadir 30.0 mm: +20.0%, +6.0 mm -> PD"),
    ("pr_vs_baseline_even_if_growing_from_nadir", tp(B, T1=100), [tp(week(6), T1=50), tp(week(12), T1=59)], [PR, PR],
     "SOD 59.0 mm vs baseline 100.0 mm: -41.0% -> PR"),
    ("nodes_under_10mm_cr", tp(B, T1=20, N1=node(20)), [tp(week(6), T1=0, N1=node(8))], [CR],
     "all targets gone (nodes < 10 mm short axis), SOD 8.0 mm -> CR"),
    ("node_at_10mm_not_cr", tp(B, T1=20, N1=node(20)), [tp(week(6), T1=0, N1=node(10))], [PR], "-75.0% -> PR"),
    ("too_small_counts_5mm", tp(B, T1=40), [tp(week(6), T1=lesion(None, too_small_to_measure=True))], [PR],
     "T1 too small to measure: counts 5 mm"),
    ("too_small_is_not_cr", tp(B, T1=12), [tp(week(6), T1=lesion(None, too_small_to_measure=True))], [PR], "SOD 5.0 mm"),
    ("new_lesion_alone", tp(B, T1=30), [tp(week(6), T1=30, new_lesions=[new("N1", organ="liver")])], [PD],
     "new lesions: N1 (liver) -> PD"),
    ("target_not_evaluated_ne", tp(B, T1=30, T2=20), [tp(week(6), T1=28, T2=None)], [NE], "T2 not evaluated"),
    ("target_not_evaluated_but_pd", tp(B, T1=30, T2=20), [tp(week(6), T1=70, T2=None)], [PD],
     "T2 not evaluated, but the measured targets alone"),
    ("non_target_unequivocal_pd", tp(B, T1=30, nt={"NT1": "present"}), [tp(week(6), T1=30, nt={"NT1": "unequivocal_progression"})],
     [PD], "NT1 unequivocal progression -> PD"),
    ("non_target_increase_is_not_pd", tp(B, T1=30, nt={"NT1": "present"}), [tp(week(6), T1=30, nt={"NT1": "increase"})],
     [SD], "-> non-CR/non-PD"),
    ("cr_cr_no_new_cr", tp(B, T1=30, nt={"NT1": "present"}), [tp(week(6), T1=0, nt={"NT1": "absent"})], [CR], "-> CR (Table 1)"),
    ("cr_non_cr_non_pd_pr", tp(B, T1=30, nt={"NT1": "present"}), [tp(week(6), T1=0, nt={"NT1": "present"})], [PR], "-> PR (Table 1)"),
    ("cr_not_evaluated_pr", tp(B, T1=30, nt={"NT1": "present"}), [tp(week(6), T1=0, nt={"NT1": "not_evaluated"})], [PR], "-> PR"),
    ("pr_ne_pr", tp(B, T1=30, nt={"NT1": "present"}), [tp(week(6), T1=10, nt={"NT1": "not_evaluated"})], [PR], "-> PR"),
    ("sd_ne_sd", tp(B, T1=30, nt={"NT1": "present"}), [tp(week(6), T1=29, nt={"NT1": "not_evaluated"})], [SD], "-> SD"),
    ("ne_non_pd_ne", tp(B, T1=30, T2=20, nt={"NT1": "present"}), [tp(week(6), T1=29, T2=None, nt={"NT1": "present"})], [NE], "-> NE (Table 1)"),
    ("non_target_missing_from_list", tp(B, T1=30, nt={"NT1": "present"}), [tp(week(6), T1=25)], [SD], "NT1 not evaluated -> NE"),
    ("split_fragments_summed", tp(B, T1=40, T2=20),
     [tp(week(6), T1a=lesion(15, split_from="T1"), T1b=lesion(10, split_from="T1"), T2=20)], [SD],
     "T1 split into T1a, T1b: fragments summed"),
    ("coalesced_counts_zero", tp(B, T1=20, T2=20), [tp(week(6), T1=35, T2=lesion(None, coalesced_into="T1"))], [SD],
     "T2 coalesced into T1: counts 0"),
    ("reappearance_after_cr", tp(B, T1=20), [tp(week(6), T1=0), tp(week(12), T1=3)], [CR, PD], "disease reappeared after CR (T1 3.0 mm) -> PD"),
    ("node_back_over_10_after_cr", tp(B, N1=node(20)), [tp(week(6), N1=node(7)), tp(week(12), N1=node(11))], [CR, PD],
     "disease reappeared after CR (N1 11.0 mm)"),
    ("non_target_back_after_cr", tp(B, T1=20, nt={"NT1": "present"}), [tp(week(6), T1=0, nt={"NT1": "absent"}),
     tp(week(12), T1=0, nt={"NT1": "present"})], [CR, PD], "NT1 present"),
    ("non_target_only_non_cr_non_pd", tp(B, nt={"NT1": "present"}), [tp(week(6), nt={"NT1": "present"})], [NON_CR_NON_PD],
     "no target lesions; non-targets: NT1 present -> non-CR/non-PD; no new lesions -> non-CR/non-PD (Table 2)"),
    ("non_target_only_cr", tp(B, nt={"NT1": "present"}), [tp(week(6), nt={"NT1": "absent"})], [CR], "-> CR (Table 2)"),
    ("non_target_only_ne", tp(B, nt={"NT1": "present"}), [tp(week(6), nt={"NT1": "not_evaluated"})], [NE], "-> NE (Table 2)"),
    ("non_target_only_pd", tp(B, nt={"NT1": "present"}), [tp(week(6), nt={"NT1": "unequivocal_progression"})], [PD], "-> PD (Table 2)"),
    ("non_target_only_new", tp(B, nt={"NT1": "present"}), [tp(week(6), nt={"NT1": "present"}, new_lesions=[new("N1")])], [PD], "-> PD (Table 2)"),
    ("resolved_new_lesion_ignored", tp(B, T1=30), [tp(week(6), T1=30, new_lesions=[new("N1", 0)])], [SD], "no new lesions"),
    ("nadir_from_complete_sums_only", tp(B, T1=30, T2=20), [tp(week(6), T1=10, T2=None), tp(week(12), T1=30, T2=20)], [NE, SD],
     "vs nadir 50.0 mm"),
]


@pytest.mark.parametrize("case_id, baseline, follow_ups, expected, fragment", CASES, ids=[c[0] for c in CASES])
def test_recist_cases(case_id, baseline, follow_ups, expected, fragment):
    result = assess(course(baseline, *follow_ups), "recist")
    assert calls(result) == expected
    assert fragment in result.timepoints[-1].reason


def test_sums_and_changes_reported():
    result = assess(course(tp(B, T1=30, N1=node(20)), tp(week(6), T1=20, N1=node(15)), tp(week(12), T1=25, N1=node(15))), "recist")
    base, first, second = result.timepoints
    assert base.sum_mm == pytest.approx(50.0, abs=1e-9)  # exact sum of 0.1 mm inputs
    assert first.sum_mm == pytest.approx(35.0, abs=1e-9)
    assert first.change_from_baseline_pct == pytest.approx(-30.0, abs=0.05)
    assert second.change_from_nadir_pct == pytest.approx(100 * 5 / 35, abs=0.05)
    assert second.nadir == pytest.approx(35.0, abs=1e-9)
    assert second.nadir_date.isoformat() == week(6)
    assert first.target_response == PR and first.non_target_response is None and first.new_lesions is False
    assert second.days_since_baseline == 12 * 7 + 3


def test_missing_target_flags_and_no_change_pct():
    result = assess(course(tp(B, T1=30, T2=20), tp(week(6), T1=28, T2=None)), "recist")
    row = result.timepoints[-1]
    assert "targets_not_all_evaluated" in row.flags
    assert row.change_from_baseline_pct is None
    assert row.sum_mm == pytest.approx(28.0, abs=1e-9)


# ---- rule functions, directly -----------------------------------------------------------------

@pytest.mark.parametrize("now, nadir, expected", [
    (30.0, 25.0, True),    # +20%, +5 mm
    (24.0, 20.0, False),   # +20%, +4 mm
    (29.9, 25.0, False),   # +19.6%
    (105.0, 100.0, False),  # +5 mm, +5%
    (5.0, 0.0, True),      # from a zero nadir: any +5 mm
    (4.0, 0.0, False),
])
def test_progression_by_sum(now, nadir, expected):
    assert progression_by_sum(now, nadir) is expected


@pytest.mark.parametrize("target, non_target, new_lesions, expected", [
    (CR, CR, False, CR), (CR, NA, False, CR), (CR, NON_CR_NON_PD, False, PR), (CR, NE, False, PR),
    (PR, NON_CR_NON_PD, False, PR), (PR, NE, False, PR), (PR, CR, False, PR), (PR, NA, False, PR),
    (SD, NON_CR_NON_PD, False, SD), (SD, NE, False, SD), (SD, CR, False, SD),
    (NE, NON_CR_NON_PD, False, NE), (NE, CR, False, NE), (NE, NE, False, NE),
    (PD, CR, False, PD), (PD, NE, True, PD), (CR, PD, False, PD), (SD, PD, False, PD),
    (CR, CR, True, PD), (PR, NON_CR_NON_PD, True, PD), (NE, NE, True, PD),
    (NA, CR, False, CR), (NA, NON_CR_NON_PD, False, NON_CR_NON_PD), (NA, NE, False, NE), (NA, PD, False, PD),
    (NA, CR, True, PD), (NA, NA, False, NE), (NA, NA, True, PD),
])
def test_overall_response_tables(target, non_target, new_lesions, expected):
    """RECIST 1.1 Table 1 and Table 2, every row."""
    assert overall_response_recist(target, non_target, new_lesions) == expected


def test_tables_are_data():
    assert all(len(row) == 4 for row in TABLE_1)
    assert all(len(row) == 3 for row in TABLE_2)


def test_target_response_pd_precedes_cr_for_nodes():
    # three target nodes 6 -> 9 mm: CR by size but the sum grew +50%, +9 mm: sec. 4.3.2 keeps nodes in the sum
    response, reason = target_response_recist(27.0, 60.0, 18.0, all_resolved=True)
    assert response == PD and "+9.0 mm" in reason


# ---- best overall response (sec. 4.4.3, Table 3; sec. 4.6.1) ------------------------------------

BOR_CASES = [
    ("cr_confirmed", [(6, 0), (12, 0)], {}, CR, "confirmed by CR"),
    ("pr_confirmed", [(6, 15), (12, 15)], {}, PR, "PR on"),
    ("pr_confirmed_by_cr", [(6, 15), (12, 0)], {}, PR, "confirmed by CR"),
    ("pr_then_sd", [(6, 15), (12, 25)], {}, SD, "not confirmed"),
    ("pr_then_pd_sd_min_met", [(6, 15), (12, 40)], {}, SD, "SD"),
    ("pr_too_early_then_pd", [(4, 15), (8, 40)], {}, PD, "before the 6-week minimum"),
    ("pr_confirmation_too_soon", [(6, 15), (9, 15)], {}, SD, "not confirmed"),
    ("pr_confirmation_window_option", [(6, 15), (11, 15)], {"confirmation_min_weeks": 6}, SD, "not confirmed"),
    ("sd_min_option", [(6, 28)], {"sd_min_weeks": 8}, "NE", "before the 8-week minimum"),
    ("sd_early_then_pd", [(4, 28), (8, 40)], {}, PD, "PD on"),
    ("pd_first", [(6, 40)], {}, PD, "PD on"),
    ("cr_then_pd", [(6, 0), (12, 10)], {}, SD, "SD"),
    ("no_confirmation_option", [(6, 15)], {"confirm_responses": False}, PR, "no confirmation required"),
    ("ne_only", [(6, None)], {}, "NE", "no call qualifies"),
]


@pytest.mark.parametrize("case_id, series, opts, expected, fragment", BOR_CASES, ids=[c[0] for c in BOR_CASES])
def test_best_overall_response(case_id, series, opts, expected, fragment):
    """Baseline T1 = 30 mm; series = (weeks after treatment start, T1 mm or None)."""
    timepoints = [tp(B, T1=30)] + [tp(week(w), T1=size) for w, size in series]
    result = assess(course(*timepoints), "recist", AssessmentOptions(**opts))
    assert result.best_overall_response.response == expected
    assert fragment in result.best_overall_response.reason


def test_bor_ignores_calls_after_progression():
    result = assess(course(tp(B, T1=30), tp(week(4), T1=40), tp(week(10), T1=10), tp(week(16), T1=10)), "recist")
    assert result.best_overall_response.response == PD
    assert "after_progression" in result.timepoints[-1].flags


def test_bor_non_target_only():
    result = assess(course(tp(B, nt={"NT1": "present"}), tp(week(8), nt={"NT1": "present"})), "recist")
    assert result.best_overall_response.response == NON_CR_NON_PD


def test_bor_date_and_dict():
    result = assess(course(tp(B, T1=30), tp(week(6), T1=15), tp(week(12), T1=15)), "recist")
    out = result.to_dict()
    assert out["best_overall_response"] == {"response": PR, "reason": result.best_overall_response.reason, "date": week(6)}
