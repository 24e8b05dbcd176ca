"""irRC (Wolchok 2009): new measurable lesions join the burden; irPR >= 50%, irPD >= 25% from nadir, confirmed >= 4 weeks."""

from __future__ import annotations

import pytest

from imaging.response import assess
from tests.response.factory import calls, course, day, new, tp, week

B = day(-3)
PP, PC, PRC = "possible_pseudoprogression", "pseudoprogression_confirmed", "progression_confirmed"


def bi(long_axis_mm, perpendicular_mm=None):
    return {"long_axis_mm": long_axis_mm, "perpendicular_mm": long_axis_mm if perpendicular_mm is None else perpendicular_mm}


NT = {"NT1": "present"}
CASES = [
    # (id, follow-ups, calls, hindsight flags, fragment, best overall response)
    ("new_lesion_joins_burden_not_pd", [tp(week(6), T1=bi(18), nt=NT, new_lesions=[new("N1", 6) | {"perpendicular_mm": 6}])],
     ["irSD"], [set()], "tumour burden 360.0 mm2 (index 324.0 + new measurable 36.0)", "irSD"),
    ("new_lesions_push_burden_to_irpd", [tp(week(6), T1=bi(20), nt=NT, new_lesions=[new("N1", 10) | {"perpendicular_mm": 10}])],
     ["irPD"], [{PP}], "+25.0%", "irPD"),
    ("irpd_confirmed", [tp(week(6), T1=bi(23), nt=NT), tp(week(11), T1=bi(24), nt=NT)], ["irPD", "irPD"], [{PRC}, set()],
     "confirming the irPD", "irPD"),
    ("irpd_not_confirmed", [tp(week(6), T1=bi(23), nt=NT), tp(week(11), T1=bi(20), nt=NT)], ["irPD", "irSD"], [{PC}, set()],
     "is not confirmed", "irSD"),
    ("irpr_confirmed", [tp(week(6), T1=bi(14), nt=NT), tp(week(11), T1=bi(14), nt=NT)], ["irPR", "irPR"], [set(), set()], "-> irPR", "irPR"),
    ("irpr_despite_non_index_progression", [tp(week(6), T1=bi(14), nt={"NT1": "unequivocal_progression"})], ["irPR"], [set()], "-> irPR", "irSD"),
    ("small_new_lesion_precludes_ircr", [tp(week(6), T1=bi(0), nt={"NT1": "absent"}, new_lesions=[new("N1", 3)])], ["irPR"], [set()],
     "preclude irCR", "irSD"),
    ("ircr", [tp(week(6), T1=bi(0), nt={"NT1": "absent"}), tp(week(11), T1=bi(0), nt={"NT1": "absent"})], ["irCR", "irCR"], [set(), set()],
     "-> irCR", "irCR"),
]


@pytest.mark.parametrize("case_id, follow_ups, expected, flags, fragment, bor", CASES, ids=[c[0] for c in CASES])
def test_irrc_cases(case_id, follow_ups, expected, flags, fragment, bor):
    result = assess(course(tp(B, T1=bi(20), nt=NT), *follow_ups, immunotherapy=True), "irrc")
    assert calls(result) == expected
    assert [set(r.flags) & {PP, PC, PRC} for r in result.timepoints[1:]] == flags
    assert fragment in result.timepoints[-1].reason
    assert result.best_overall_response.response == bor


def test_irrc_burden_reported_in_mm2():
    result = assess(course(tp(B, T1=bi(20)), tp(week(6), T1=bi(10))), "irrc")
    assert result.timepoints[-1].sum_products_mm2 == pytest.approx(100.0, abs=1e-9)
    assert result.timepoints[-1].change_from_baseline_pct == pytest.approx(-75.0, abs=0.05)
