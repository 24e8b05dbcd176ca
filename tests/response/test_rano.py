"""RANO family: RANO 2010 (Wen 2010, Table 2), RANO 2.0 (Wen 2023), mRANO (Ellingson 2017), iRANO (Okada 2015).

One row per rule: criterion, follow-ups, expected calls, hindsight flags per follow-up, a reason fragment.
Target T1 is 20 x 20 mm (400 mm2) at baseline unless stated; sums of products are exact for 0.1 mm inputs.
"""

from __future__ import annotations

import pytest

from imaging.response import AssessmentOptions, assess
from tests.response.factory import calls, course, day, new, tp, week

B = day(-3)
PP, PC, PRC = "possible_pseudoprogression", "pseudoprogression_confirmed", "progression_confirmed"
HINDSIGHT = {PP, PC, PRC, "steroid_increase"}


def bi(long_axis_mm, perpendicular_mm=None, **extra):
    """A bidimensionally measured target."""
    return {"long_axis_mm": long_axis_mm,
            "perpendicular_mm": long_axis_mm if perpendicular_mm is None else perpendicular_mm, **extra}


def steroids(mg, stable=True, **extra):
    return {"steroid_dose_mg": mg, "clinically_stable": stable, **extra}


def base(**clinical):
    return tp(B, T1=bi(20), nt={"NT1": "present"}, clinical=clinical or None)


NT = {"NT1": "present"}

# (id, criterion, context, follow-ups, expected calls, flags per follow-up, fragment of last reason)
CASES = [
    # ---- RANO 2010, Table 2
    ("rano_pr", "rano", {}, [tp(week(8), T1=bi(14), nt=NT)], ["PR"], [set()], "SPD 196.0 mm2 vs baseline 400.0 mm2: -51.0%"),
    ("rano_pd_25pct", "rano", {}, [tp(week(8), T1=bi(25, 20), nt=NT)], ["PD"], [set()], "vs nadir 400.0 mm2 (2024-01-05): +25.0%"),
    ("rano_sd", "rano", {}, [tp(week(8), T1=bi(24, 20), nt=NT)], ["SD"], [set()], "-> SD"),
    ("rano_cr", "rano", {}, [tp(week(8), T1=bi(0), nt={"NT1": "absent"}, clinical=steroids(0))], ["CR"], [set()], "-> CR"),
    ("rano_cr_needs_no_steroids", "rano", {"clinical": steroids(4)},
     [tp(week(8), T1=bi(0), nt={"NT1": "absent"}, clinical=steroids(4))], ["PR"], [set()], "-> PR"),
    ("rano_non_measurable_increase_blocks_pr", "rano", {}, [tp(week(8), T1=bi(14), nt={"NT1": "increase"})], ["SD"], [set()], "-> SD"),
    ("rano_non_measurable_unequivocal_pd", "rano", {}, [tp(week(8), T1=bi(20), nt={"NT1": "unequivocal_progression"})], ["PD"], [set()],
     "-> PD (non_measurable)"),
    ("rano_new_lesion_pd", "rano", {}, [tp(week(8), T1=bi(20), nt=NT, new_lesions=[new("N1", 6)])], ["PD"], [set()], "-> PD (new)"),
    ("rano_t2_flair_pd", "rano", {}, [tp(week(8), T1=bi(20), nt=NT, clinical={"t2_flair": "increased"})], ["PD"], [set()], "-> PD (t2_flair)"),
    ("rano_clinical_deterioration_pd", "rano", {}, [tp(week(8), T1=bi(20), nt=NT, clinical=steroids(None, False))], ["PD"], [set()],
     "-> PD (clinical deterioration)"),
    ("rano_steroid_increase_neither_sd_nor_pd", "rano", {"clinical": steroids(2)}, [tp(week(8), T1=bi(20), nt=NT, clinical=steroids(8))],
     ["NE"], [{"steroid_increase"}], "neither SD nor PD until the dose returns to baseline -> NE"),
    ("rano_steroid_back_to_baseline_sd_in_hindsight", "rano", {"clinical": steroids(2)},
     [tp(week(8), T1=bi(20), nt=NT, clinical=steroids(8)), tp(week(14), T1=bi(20), nt=NT, clinical=steroids(2))],
     ["SD", "SD"], [{"steroid_increase"}, set()], "-> SD"),
    ("rano_steroid_increase_then_deterioration", "rano", {"clinical": steroids(2)},
     [tp(week(8), T1=bi(20), nt=NT, clinical=steroids(8)), tp(week(14), T1=bi(20), nt=NT, clinical=steroids(8, False))],
     ["NE", "PD"], [{"steroid_increase"}, {"steroid_increase"}], "dated to the steroid increase of 2024-03-04"),
    ("rano_pr_on_higher_steroids_is_not_pr", "rano", {"clinical": steroids(2)}, [tp(week(8), T1=bi(14), nt=NT, clinical=steroids(8))],
     ["NE"], [{"steroid_increase"}], "-> NE"),
    # ---- RANO 2010: 12-week window after radiotherapy
    ("rano_window_hold", "rano", {"radiotherapy_end": day(-10)}, [tp(week(6), T1=bi(25, 22), nt=NT)], ["SD"], [{PP}],
     "within 12 weeks after radiotherapy (2023-12-29) without enhancement outside the radiation field or histology: not PD -> SD"),
    ("rano_window_then_regression", "rano", {"radiotherapy_end": day(-10)},
     [tp(week(6), T1=bi(25, 22), nt=NT), tp(week(16), T1=bi(20), nt=NT)], ["SD", "SD"], [{PC}, set()],
     "the increase within the radiotherapy window was pseudoprogression"),
    ("rano_window_then_progression", "rano", {"radiotherapy_end": day(-10)},
     [tp(week(6), T1=bi(25, 22), nt=NT), tp(week(16), T1=bi(30), nt=NT)], ["SD", "PD"], [{PRC}, set()],
     "progression after the radiotherapy window confirms the earlier increase"),
    ("rano_window_outside_field_is_pd", "rano", {"radiotherapy_end": day(-10)},
     [tp(week(6), T1=bi(20), nt=NT, new_lesions=[new("N1")], clinical={"outside_radiation_field": True})], ["PD"], [set()],
     "(outside the radiation field / histology)"),
    ("rano_window_histology_is_pd", "rano", {"radiotherapy_end": day(-10)},
     [tp(week(6), T1=bi(25, 22), nt=NT, clinical={"histologic_confirmation": True})], ["PD"], [set()], "-> PD (measurable)"),
    ("rano_window_new_lesion_in_field_held", "rano", {"radiotherapy_end": day(-10)},
     [tp(week(6), T1=bi(20), nt=NT, new_lesions=[new("N1")])], ["SD"], [{PP}], "progression (new) within 12 weeks"),
    ("rano_post_rt_reference", "rano", {"radiotherapy_end": week(2)},
     [tp(week(8), T1=bi(30, 20), nt=NT), tp(week(16), T1=bi(30, 21), nt=NT)], ["SD", "SD"], [{PC}, set()],
     "vs nadir 600.0 mm2 (2024-03-04)"),
    # ---- RANO 2.0
    ("rano2_preliminary_then_confirmed", "rano2", {"radiotherapy_end": day(-10)},
     [tp(week(6), T1=bi(25, 22), nt=NT), tp(week(10), T1=bi(26, 22), nt=NT)], ["preliminary PD", "confirmed PD"], [{PRC}, set()],
     "progression persists vs 400.0 mm2 -> confirmed PD"),
    ("rano2_preliminary_then_pseudoprogression", "rano2", {"radiotherapy_end": day(-10)},
     [tp(week(6), T1=bi(25, 22), nt=NT), tp(week(10), T1=bi(20), nt=NT)], ["preliminary PD", "SD"], [{PC}, set()],
     "preliminary PD not confirmed -> SD (pseudoprogression)"),
    ("rano2_preliminary_open", "rano2", {"radiotherapy_end": day(-10)}, [tp(week(6), T1=bi(25, 22), nt=NT)], ["preliminary PD"], [{PP}],
     "needs a confirmation scan -> preliminary PD"),
    ("rano2_confirmation_too_early", "rano2", {"radiotherapy_end": day(-10)},
     [tp(week(6), T1=bi(25, 22), nt=NT), tp(week(8), T1=bi(26, 22), nt=NT), tp(week(11), T1=bi(26, 22), nt=NT)],
     ["preliminary PD", "preliminary PD", "confirmed PD"], [{PRC}, {PRC}, set()], "-> confirmed PD"),
    ("rano2_after_window_pd_at_once", "rano2", {"radiotherapy_end": day(-100)}, [tp(week(6), T1=bi(25, 22), nt=NT)], ["PD"], [set()],
     "-> PD (measurable)"),
    ("rano2_immunotherapy_confirms", "rano2", {"radiotherapy_end": day(-100), "immunotherapy": True},
     [tp(week(6), T1=bi(25, 22), nt=NT)], ["preliminary PD"], [{PP}], "on immunotherapy"),
    ("rano2_t2_flair_not_used", "rano2", {}, [tp(week(8), T1=bi(20), nt=NT, clinical={"t2_flair": "increased"})], ["SD"], [set()],
     "T2/FLAIR increased (not used by RANO 2.0, Wen 2023)"),
    ("rano2_steroids_do_not_block_sd", "rano2", {"clinical": steroids(2)}, [tp(week(8), T1=bi(20), nt=NT, clinical=steroids(8))],
     ["SD"], [{"steroid_increase"}], "-> SD"),
    ("rano2_steroid_increase_blocks_pr", "rano2", {"clinical": steroids(2)}, [tp(week(8), T1=bi(14), nt=NT, clinical=steroids(8))],
     ["SD"], [{"steroid_increase"}], "-> SD"),
    # ---- mRANO
    ("mrano_always_preliminary", "mrano", {}, [tp(week(20), T1=bi(25, 20), nt=NT), tp(week(26), T1=bi(26, 20), nt=NT)],
     ["preliminary PD", "confirmed PD"], [{PRC}, set()], "-> confirmed PD"),
    ("mrano_refuted", "mrano", {}, [tp(week(20), T1=bi(25, 20), nt=NT), tp(week(26), T1=bi(21, 20), nt=NT)],
     ["preliminary PD", "SD"], [{PC}, set()], "(pseudoprogression)"),
    ("mrano_new_non_measurable_lesion_not_pd", "mrano", {}, [tp(week(8), T1=bi(20), nt=NT, new_lesions=[new("N1", 6)])], ["SD"], [set()], "-> SD"),
    ("mrano_new_measurable_lesion_preliminary", "mrano", {}, [tp(week(8), T1=bi(20), nt=NT, new_lesions=[new("N1", 12)])],
     ["preliminary PD"], [{PP}], "progression (new)"),
    ("mrano_ignores_steroids_and_clinical", "mrano", {"clinical": steroids(2)},
     [tp(week(8), T1=bi(14), nt=NT, clinical=steroids(8, False))], ["PR"], [set()], "-> PR"),
    # ---- iRANO
    ("irano_confirmed_and_backdated", "irano", {"immunotherapy": True},
     [tp(week(8), T1=bi(25, 20), nt=NT), tp(week(14), T1=bi(26, 20), nt=NT), tp(week(22), T1=bi(27, 20), nt=NT)],
     ["preliminary PD", "preliminary PD", "confirmed PD"], [{PRC}, {PRC}, set()], "PD dated to 2024-03-04"),
    ("irano_pseudoprogression", "irano", {"immunotherapy": True},
     [tp(week(8), T1=bi(25, 20), nt=NT), tp(week(20), T1=bi(20), nt=NT)], ["preliminary PD", "SD"], [{PC}, set()], "(pseudoprogression)"),
    ("irano_new_lesion_not_pd_by_itself", "irano", {"immunotherapy": True},
     [tp(week(8), T1=bi(20), nt=NT, new_lesions=[new("N1")])], ["preliminary PD"], [{PP}], "iRANO: 8.0 weeks after starting immunotherapy"),
    ("irano_after_six_months_pd", "irano", {"immunotherapy": True}, [tp(week(30), T1=bi(25, 20), nt=NT)], ["PD"], [set()], "-> PD"),
    ("irano_clinical_decline_pd", "irano", {"immunotherapy": True}, [tp(week(8), T1=bi(25, 20), nt=NT, clinical=steroids(None, False))],
     ["PD"], [set()], "-> PD (clinical deterioration)"),
]


@pytest.mark.parametrize("case_id, criterion, context, follow_ups, expected, flags, fragment", CASES, ids=[c[0] for c in CASES])
def test_rano_family_cases(case_id, criterion, context, follow_ups, expected, flags, fragment):
    context = dict(context)
    baseline = base(**context.pop("clinical", {}))
    result = assess(course(baseline, *follow_ups, **context), criterion)
    assert calls(result) == expected
    assert [set(row.flags) & HINDSIGHT for row in result.timepoints[1:]] == flags
    assert fragment in result.timepoints[-1].reason


@pytest.mark.parametrize("criterion, option", [("rano2", "rano2_volumetric"), ("mrano", "mrano_volumetric")])
@pytest.mark.parametrize("volume, expected", [(1400.0, "PD"), (1390.0, "SD"), (350.0, "PR"), (360.0, "SD")])
def test_volumetric_thresholds(criterion, option, volume, expected):
    """RANO 2.0 / mRANO volumetric: PR >= 65% decrease, PD >= 40% increase (baseline 1000 mm3, after the RT window)."""
    c = course(tp(B, T1=bi(20, volume_mm3=1000.0)), tp(week(20), T1=bi(20, volume_mm3=volume)), tp(week(26), T1=bi(20, volume_mm3=volume)),
               radiotherapy_end=day(-100))
    result = assess(c, criterion, AssessmentOptions(**{option: True}))
    first = result.timepoints[1]
    assert first.sum_volume_mm3 == pytest.approx(volume, abs=1e-9)
    if expected == "PD":
        assert first.response in ("PD", "preliminary PD")
    else:
        assert first.response == expected


def test_sum_products_reported_and_nadir():
    result = assess(course(base(), tp(week(8), T1=bi(14), nt=NT), tp(week(16), T1=bi(16), nt=NT)), "rano")
    assert result.timepoints[0].sum_products_mm2 == pytest.approx(400.0, abs=1e-9)
    last = result.timepoints[-1]
    assert last.sum_products_mm2 == pytest.approx(256.0, abs=1e-9)
    assert last.nadir == pytest.approx(196.0, abs=1e-9)
    assert last.change_from_nadir_pct == pytest.approx(100 * 60 / 196, abs=0.05)  # 256 vs 196 mm2: +30.6% -> PD
    assert last.response == "PD"


def test_rano_bor_confirmation():
    result = assess(course(base(), tp(week(8), T1=bi(14), nt=NT), tp(week(13), T1=bi(14), nt=NT)), "rano")
    assert result.best_overall_response.response == "PR"
    result = assess(course(base(), tp(week(8), T1=bi(14), nt=NT), tp(week(10), T1=bi(14), nt=NT)), "rano")
    assert result.best_overall_response.response == "SD"


def test_rano_window_progression_later_confirmed_is_not_sd_for_bor():
    result = assess(course(base(), tp(week(6), T1=bi(25, 22), nt=NT), tp(week(16), T1=bi(30), nt=NT), radiotherapy_end=day(-10)), "rano")
    assert result.best_overall_response.response == "PD"


def test_baseline_before_rt_end_noted_for_rano2():
    result = assess(course(base(), tp(week(8), T1=bi(20), nt=NT), radiotherapy_end=week(2)), "rano2")
    assert "expects the post-radiotherapy scan as baseline" in result.timepoints[0].reason


def test_rano_needs_perpendicular_at_baseline():
    result = assess(course(tp(B, T1=20), tp(week(8), T1=20)), "rano")
    assert "perpendicular diameter missing" in result.timepoints[0].reason
    assert result.timepoints[-1].response == "SD" and result.timepoints[-1].target_response is None


# ---- iRANO (Okada 2015): a new lesion never lowers a call ------------------------------------------------


def test_irano_fresh_progression_during_an_open_episode_is_still_held_for_confirmation():
    """The counterexample of test_a_new_lesion_never_improves_a_call[irano], as a case.

    N1 makes a preliminary PD at week 4 (SPD 100 mm2, the new nadir); at week 8 N1 has gone but the SPD is
    144 mm2 (+44% vs that nadir). Before the fix the open episode was "not confirmed" yet the call was PD at once
    ("preliminary PD not confirmed -> PD (pseudoprogression)"), while the same scan with one more new lesion
    was held as preliminary PD: a new lesion lowered the call. Okada 2015: radiographic progression on the
    follow-up imaging of a preliminary PD is what confirms it, ~3 months (12 weeks) after the first scan.
    """
    result = assess(course(
        tp(B, T1=bi(20)),
        tp(week(4), T1=bi(10), new_lesions=[new("N1", 10)]),
        tp(week(8), T1=bi(12)),
        tp(week(17), T1=bi(12)),
        immunotherapy=True,
    ), "irano")
    assert calls(result) == ["preliminary PD", "preliminary PD", "confirmed PD"]
    assert "progression at this scan (measurable)" in result.timepoints[2].reason
    assert [set(row.flags) & HINDSIGHT for row in result.timepoints[1:]] == [{PRC}, {PRC}, set()]


@pytest.mark.parametrize("episode_open", [False, True])
def test_irano_clinical_decline_with_a_new_lesion_is_pd_at_once(episode_open):
    """Okada 2015: the hold for confirmation is for patients without significant clinical decline."""
    follow_ups = [tp(week(4), T1=bi(25, 20), nt=NT)] if episode_open else []
    result = assess(course(
        base(), *follow_ups,
        tp(week(8), T1=bi(20), nt=NT, new_lesions=[new("N1")], clinical=steroids(None, False)),
        immunotherapy=True,
    ), "irano")
    assert calls(result)[-1] == "PD"
    assert "clinical deterioration" in result.timepoints[-1].reason


def test_irano_fresh_progression_after_six_months_is_pd_at_once_even_with_an_open_preliminary_pd():
    """Found by the long search (best response PD -> preliminary PD): N1 appears at week 27, after the iRANO
    six months, so RANO applies and it is PD at once (Okada 2015). Before the fix, a preliminary PD opened at
    week 20 by another new lesion held it as "still awaiting confirmation" -- a new lesion at week 20 lowered
    the best response. The progression persisted, so the week-20 preliminary PD is confirmed in hindsight.
    """
    result = assess(course(
        tp(B, T1=bi(20), nt=NT),
        tp(week(20), T1=bi(20), nt=NT, new_lesions=[new("N0")]),
        tp(week(27), T1=bi(20), nt=NT, new_lesions=[new("N0"), new("N1")]),
        immunotherapy=True,
    ), "irano")
    assert calls(result) == ["preliminary PD", "PD"]
    assert "RANO applies" in result.timepoints[-1].reason
    assert [set(row.flags) & HINDSIGHT for row in result.timepoints[1:]] == [{PRC}, set()]
    assert result.best_overall_response.response == "PD"


def test_irano_the_same_progression_after_six_months_still_awaits_its_confirmation():
    """Nothing new at week 27 (N0 as at week 20): the preliminary PD of week 20 still waits for its ~3-month scan."""
    result = assess(course(
        tp(B, T1=bi(20), nt=NT),
        tp(week(20), T1=bi(20), nt=NT, new_lesions=[new("N0")]),
        tp(week(27), T1=bi(20), nt=NT, new_lesions=[new("N0")]),
        tp(week(33), T1=bi(20), nt=NT, new_lesions=[new("N0")]),
        immunotherapy=True,
    ), "irano")
    assert calls(result) == ["preliminary PD", "preliminary PD", "confirmed PD"]
