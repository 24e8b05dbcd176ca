"""iRECIST (Seymour 2017): confirmation routes, reset, hindsight flags, iBOR (Table 3 of the paper).

One row per case: the calls expected at each follow-up, flags per follow-up, and a reason fragment.
"""

from __future__ import annotations

import pytest

from imaging.response import AssessmentOptions, assess
from tests.response.factory import calls, course, day, new, tp, week

B = day(-3)
NT = {"NT1": "present"}

PP = "possible_pseudoprogression"
PC = "pseudoprogression_confirmed"
PRC = "progression_confirmed"
WIN = "confirmation_interval_outside_window"

CASES = [
    # (id, timepoints after baseline, expected calls, expected hindsight flags per follow-up, reason fragment (last))
    ("target_route", [tp(week(6), T1=62, nt=NT), tp(week(12), T1=67, nt=NT)], ["iUPD", "iCPD"], [{PRC}, set()],
     "SOD 67.0 mm vs 62.0 mm at iUPD: +5.0 mm (>= +5 mm) -> iCPD"),
    ("target_route_cumulative", [tp(week(6), T1=62, nt=NT), tp(week(12), T1=65, nt=NT), tp(week(18), T1=67, nt=NT)],
     ["iUPD", "iUPD", "iCPD"], [{PRC}, {PRC}, {WIN}], "+5.0 mm (>= +5 mm) -> iCPD"),  # 12 weeks after the iUPD
    ("target_plus_4_still_iupd", [tp(week(6), T1=62, nt=NT), tp(week(12), T1=66, nt=NT)], ["iUPD", "iUPD"], [{PP}, {PP}],
     "still progressed (targets still meet PD vs nadir) -> iUPD"),
    ("non_target_route", [tp(week(6), T1=50, nt={"NT1": "unequivocal_progression"}), tp(week(12), T1=50, nt={"NT1": "increase"})],
     ["iUPD", "iCPD"], [{PRC}, set()], "further increase of non-target disease (NT1) -> iCPD"),
    ("non_target_unchanged_still_iupd", [tp(week(6), T1=50, nt={"NT1": "unequivocal_progression"}),
                                         tp(week(12), T1=50, nt={"NT1": "unequivocal_progression"})],
     ["iUPD", "iUPD"], [{PP}, {PP}], "non-targets still unequivocally progressed"),
    ("non_target_resolves_reset", [tp(week(6), T1=50, nt={"NT1": "unequivocal_progression"}), tp(week(12), T1=50, nt=NT)],
     ["iUPD", "iSD"], [{PC}, set()], "not confirmed -> iSD (bar reset"),
    ("nlt_route", [tp(week(6), T1=50, nt=NT, new_lesions=[new("N1", 12)]), tp(week(12), T1=50, nt=NT, new_lesions=[new("N1", 17)])],
     ["iUPD", "iCPD"], [{PRC}, set()], "NLT sum 17.0 mm vs 12.0 mm at iUPD (>= +5 mm)"),
    ("nlnt_route", [tp(week(6), T1=50, nt=NT, new_lesions=[new("N1", None, measurable=False)]),
                    tp(week(12), T1=50, nt=NT, new_lesions=[new("N1", None, measurable=False, status="increase")])],
     ["iUPD", "iCPD"], [{PRC}, set()], "new-lesion non-target increase (N1)"),
    ("additional_new_lesion_route", [tp(week(6), T1=50, nt=NT, new_lesions=[new("N1")]),
                                     tp(week(12), T1=50, nt=NT, new_lesions=[new("N1"), new("N2", organ="bone")])],
     ["iUPD", "iCPD"], [{PRC}, set()], "additional new lesion(s) N2"),
    ("category_newly_pd", [tp(week(6), T1=50, nt=NT, new_lesions=[new("N1")]), tp(week(12), T1=61, nt=NT, new_lesions=[new("N1")])],
     ["iUPD", "iCPD"], [{PRC}, set()], "targets now meet RECIST 1.1 PD"),
    ("new_lesion_unchanged_still_iupd", [tp(week(6), T1=50, nt=NT, new_lesions=[new("N1")]), tp(week(12), T1=50, nt=NT, new_lesions=[new("N1")])],
     ["iUPD", "iUPD"], [{PP}, {PP}], "new lesions still present without further shrinkage"),
    ("new_lesion_with_further_shrinkage_ipr", [tp(week(6), T1=40, nt=NT, new_lesions=[new("N1")]),
                                               tp(week(12), T1=34, nt=NT, new_lesions=[new("N1")])],
     ["iUPD", "iPR"], [{PC}, set()], "not confirmed -> iPR"),
    ("new_lesion_resolved_reset", [tp(week(6), T1=50, nt=NT, new_lesions=[new("N1")]), tp(week(12), T1=50, nt=NT)],
     ["iUPD", "iSD"], [{PC}, set()], "bar reset"),
    ("reset_then_fresh_iupd", [tp(week(6), T1=62, nt=NT), tp(week(12), T1=52, nt=NT), tp(week(18), T1=63, nt=NT),
                               tp(week(24), T1=69, nt=NT)],
     ["iUPD", "iSD", "iUPD", "iCPD"], [{PC}, set(), {PRC}, set()], "vs 63.0 mm at iUPD: +6.0 mm"),
    ("never_confirmed", [tp(week(6), T1=50, nt=NT), tp(week(12), T1=62, nt=NT)], ["iSD", "iUPD"], [set(), {PP}],
     "-> iUPD (unconfirmed progression"),
    ("ne_keeps_episode_open", [tp(week(6), T1=62, nt=NT), tp(week(12), T1=60, nt={"NT1": "not_evaluated"}),
                               tp(week(18), T1=68, nt=NT)],
     ["iUPD", "iUPD", "iCPD"], [{PRC}, {PRC}, {WIN}], "-> iCPD"),  # 12 weeks after the iUPD
    ("too_early_cannot_confirm", [tp(week(6), T1=62, nt=NT), tp(week(8), T1=68, nt=NT), tp(week(13), T1=68, nt=NT)],
     ["iUPD", "iUPD", "iCPD"], [{PRC}, {PRC, WIN}, set()], "-> iCPD"),
    ("early_additional_new_lesion_confirms", [tp(week(6), T1=62, nt=NT), tp(week(8), T1=62, nt=NT, new_lesions=[new("N1")])],
     ["iUPD", "iCPD"], [{PRC}, {WIN}], "additional new lesion(s) N1"),
    ("late_confirmation_flagged", [tp(week(6), T1=62, nt=NT), tp(week(16), T1=70, nt=NT)], ["iUPD", "iCPD"], [{PRC}, {WIN}],
     "outside the 4-8-week window"),
    ("icr_then_reappearance_iupd", [tp(week(6), T1=0, nt={"NT1": "absent"}), tp(week(12), T1=4, nt={"NT1": "absent"})],
     ["iCR", "iUPD"], [set(), {PP}], "disease reappeared after CR"),
    ("non_target_only_inn", [tp(week(6), nt=NT)], ["iNN"], [set()], "-> iNN"),
]


@pytest.mark.parametrize("case_id, follow_ups, expected, flags, fragment", CASES, ids=[c[0] for c in CASES])
def test_irecist_cases(case_id, follow_ups, expected, flags, fragment):
    baseline = tp(B, nt=NT) if case_id == "non_target_only_inn" else tp(B, T1=50, nt=NT)
    result = assess(course(baseline, *follow_ups, immunotherapy=True), "irecist")
    assert calls(result) == expected
    hindsight = {PP, PC, PRC, WIN}
    assert [set(row.flags) & hindsight for row in result.timepoints[1:]] == flags
    assert fragment in result.timepoints[-1].reason


def test_clinically_unstable_flag():
    result = assess(course(tp(B, T1=50), tp(week(6), T1=62, clinical={"clinically_stable": False}), immunotherapy=True), "irecist")
    row = result.timepoints[-1]
    assert row.response == "iUPD" and "clinically_unstable" in row.flags
    assert "treatment would stop" in row.reason


def test_nlt_sum_kept_apart_from_sod():
    result = assess(course(tp(B, T1=50), tp(week(6), T1=50, new_lesions=[new("N1", 12), new("N2", 14, organ="bone")])), "irecist")
    row = result.timepoints[-1]
    assert row.sum_mm == pytest.approx(50.0, abs=1e-9)
    assert row.new_lesion_target_sum_mm == pytest.approx(26.0, abs=1e-9)


def test_nlt_at_most_two_per_organ_and_five():
    lesions = [new(f"N{i}", 10 + i, organ="liver") for i in range(4)]
    result = assess(course(tp(B, T1=50), tp(week(6), T1=50, new_lesions=lesions)), "irecist")
    assert "NLT N3, N2" in result.timepoints[-1].reason and "NLNT N1, N0" in result.timepoints[-1].reason


def test_known_new_lesions_after_reset_need_pd_of_their_own():
    # N1 causes iUPD, then shrinkage of the targets resets to iPR; N1 unchanged afterwards is not a new iUPD
    result = assess(course(
        tp(B, T1=50), tp(week(6), T1=40, new_lesions=[new("N1", 12)]), tp(week(12), T1=30, new_lesions=[new("N1", 12)]),
        tp(week(18), T1=30, new_lesions=[new("N1", 13)]), tp(week(24), T1=30, new_lesions=[new("N1", 18)]),
    ), "irecist")
    assert calls(result) == ["iUPD", "iPR", "iPR", "iUPD"]
    assert "NLT sum meets PD" in result.timepoints[-1].reason


def test_after_icpd_calls_stay_confirmed():
    result = assess(course(tp(B, T1=50), tp(week(6), T1=62), tp(week(12), T1=70), tp(week(18), T1=75)), "irecist")
    assert calls(result) == ["iUPD", "iCPD", "iCPD"]
    assert "after_progression" in result.timepoints[-1].flags


# ---- iBOR: Seymour 2017, Table 3 (randomised study: CR/PR need no confirmation) ---------------------

NO_CONFIRM = AssessmentOptions(confirm_responses=False)
IBOR = [
    ("example_1", [dict(T1=0, nt={"NT1": "absent"}), dict(T1=0, nt={"NT1": "absent"}, new_lesions=[new("N1")]),
                   dict(T1=0, nt={"NT1": "absent"}, new_lesions=[new("N1"), new("N2", organ="bone")])],
     ["iCR", "iUPD", "iCPD"], "iCR"),
    ("example_2", [dict(T1=62), dict(T1=30), dict(T1=0, nt={"NT1": "absent"})], ["iUPD", "iPR", "iCR"], "iCR"),
    ("example_3", [dict(T1=62), dict(T1=30), dict(T1=35.5)], ["iUPD", "iPR", "iSD"], "iPR"),
    ("example_4", [dict(T1=62), dict(T1=45), dict(T1=30)], ["iUPD", "iSD", "iPR"], "iPR"),
    ("example_5", [dict(T1=62), dict(T1=45), dict(T1=45)], ["iUPD", "iSD", "iSD"], "iSD"),
    ("example_6", [dict(T1=62), dict(T1=70), dict(T1=20)], ["iUPD", "iCPD", "iPR"], "iCPD"),
    ("example_7", [dict(T1=62), dict(T1=64), dict(T1=70)], ["iUPD", "iUPD", "iCPD"], "iCPD"),
    ("example_8", [dict(T1=62), dict(T1=None), dict(T1=None)], ["iUPD", "NE", "NE"], "iUPD"),
]


@pytest.mark.parametrize("case_id, follow_ups, expected_calls, expected_bor", IBOR, ids=[c[0] for c in IBOR])
def test_ibor_table_3(case_id, follow_ups, expected_calls, expected_bor):
    timepoints = [tp(B, T1=50, nt=NT)]
    for n, spec in enumerate(follow_ups):
        spec = {"nt": NT, **spec}
        timepoints.append(tp(week(6 * (n + 1)), **spec))
    result = assess(course(*timepoints, immunotherapy=True), "irecist", NO_CONFIRM)
    assert calls(result) == expected_calls
    assert result.best_overall_response.response == expected_bor


def test_ibor_with_confirmation():
    result = assess(course(tp(B, T1=50), tp(week(6), T1=62), tp(week(12), T1=30), tp(week(18), T1=30)), "irecist")
    assert result.best_overall_response.response == "iPR"
    assert "confirmed by iPR" in result.best_overall_response.reason


# ---- confirmation_interval_outside_window: measured from the first iUPD of the episode ---------------


def test_confirmation_interval_is_measured_from_the_first_iupd_of_the_episode():
    """A scan 28 days after the iUPD is inside the 4-8-week window, whatever scan came in between.

    Before the fix the interval ran from the previous assessment: the still-iUPD scan one day earlier
    made it "0.1 weeks" and flagged it outside the window.
    """
    iupd = 42
    result = assess(course(tp(B, T1=50, nt=NT), tp(day(iupd), T1=62, nt=NT), tp(day(iupd + 27), T1=62, nt=NT),
                           tp(day(iupd + 28), T1=62, nt=NT)), "irecist")
    assert calls(result) == ["iUPD", "iUPD", "iUPD"]
    early, on_time = result.timepoints[2], result.timepoints[3]
    assert WIN in early.flags and "3.9 weeks after the first iUPD of this episode" in early.reason
    assert WIN not in on_time.flags
    assert f"4.0 weeks after the first iUPD of this episode ({day(iupd)})" in on_time.reason


def test_confirmation_interval_beyond_the_window_from_the_first_iupd_is_flagged():
    """Still iUPD 6 weeks after the previous assessment but 12 weeks after the first iUPD: outside the window."""
    result = assess(course(tp(B, T1=50, nt=NT), tp(week(6), T1=62, nt=NT), tp(week(12), T1=62, nt=NT),
                           tp(week(18), T1=62, nt=NT)), "irecist")
    assert calls(result) == ["iUPD", "iUPD", "iUPD"]
    assert WIN not in result.timepoints[2].flags
    assert WIN in result.timepoints[3].flags
    assert "12.0 weeks after the first iUPD of this episode" in result.timepoints[3].reason


# ---- the iUPD episode: categories that progress while it is open, references that must be evaluable -------


def test_non_target_progression_inside_an_open_iupd_joins_the_episode():
    """Found by the long search of test_a_new_lesion_never_improves_a_call[irecist] (best response iCPD -> iSD).

    N1 makes the iUPD; two weeks later (too early to confirm) NT1 shows unequivocal progression, so non-target
    disease is iUPD too (Seymour 2017, Table 2); at the next assessment a further increase of NT1 confirms iCPD.
    Before the fix the episode remembered only its first cause: NT1 "increase" was read as no progression, N1
    had gone, and the bar reset to iSD.
    """
    result = assess(course(
        tp(B, T1=50, nt=NT),
        tp(week(6), T1=50, nt=NT, new_lesions=[new("N1")]),
        tp(week(8), T1=50, nt={"NT1": "unequivocal_progression"}, new_lesions=[new("N1")]),
        tp(week(12), T1=50, nt={"NT1": "increase"}),
    ), "irecist")
    assert calls(result) == ["iUPD", "iUPD", "iCPD"]
    assert "further increase of non-target disease (NT1)" in result.timepoints[-1].reason


def test_target_progression_inside_an_open_iupd_is_measured_from_where_it_began():
    """Targets reaching iUPD inside an episode caused by a new lesion take the +5 mm reference from that scan."""
    result = assess(course(
        tp(B, T1=50, nt=NT),
        tp(week(6), T1=50, nt=NT, new_lesions=[new("N1")]),
        tp(week(8), T1=62, nt=NT, new_lesions=[new("N1")]),
        tp(week(12), T1=65, nt=NT),
        tp(week(14), T1=67, nt=NT),
    ), "irecist")
    assert calls(result) == ["iUPD", "iUPD", "iUPD", "iCPD"]
    assert "SOD 67.0 mm vs 62.0 mm at iUPD: +5.0 mm" in result.timepoints[-1].reason


def test_a_partial_sum_at_the_iupd_is_not_the_reference_for_confirmation():
    """T2 not measured at the iUPD: the measured T1 alone makes PD (RECIST 1.1 sec. 4.4.2), but 130 mm is not the SOD.

    Before the fix the partial 130 mm was the iUPD reference and the next, complete SOD (180 mm, nothing grown)
    was a false iCPD ("+50 mm"). The first complete SOD of the episode becomes the reference instead.
    """
    result = assess(course(
        tp(B, T1=50, T2=50, nt=NT),
        tp(week(6), T1=130, T2=None, nt=NT),
        tp(week(12), T1=130, T2=50, nt=NT),
        tp(week(18), T1=136, T2=50, nt=NT),
    ), "irecist")
    assert calls(result) == ["iUPD", "iUPD", "iCPD"]
    assert "SOD 186.0 mm vs 180.0 mm at iUPD" in result.timepoints[-1].reason
