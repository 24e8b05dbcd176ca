"""RANO-LGG (van den Bent et al., Lancet Oncol 2011;12:583-93) and RANO 2.0's rules for non-enhancing and mixed
tumours (Wen et al., J Clin Oncol 2023;41:5187-99).

The course's ``target`` lesions are the T2/FLAIR lesions (long axis and perpendicular measured on T2/FLAIR).
Target T1 is 40 x 30 mm (T2/FLAIR sum of products 1200 mm2) at baseline unless stated; products are exact for
0.1 mm inputs. One row per rule, as in test_rano.py: follow-ups, expected calls, a fragment of the last reason.
"""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import example, given
from typer.testing import CliRunner

from imaging.response import AssessmentOptions, CourseError, assess, course_from_dict
from imaging.response.rano import MIXED_COMBINATION, combine_mixed
from tests.response.factory import calls, course, day, new, tp, week
from tests.response.test_invariants import SETTINGS, courses

B = day(-3)
PP, PC, PRC = "possible_pseudoprogression", "pseudoprogression_confirmed", "progression_confirmed"
HINDSIGHT = {PP, PC, PRC, "steroid_increase", "non_measurable_progression"}


def bi(long_axis_mm, perpendicular_mm=None, **extra):
    """A bidimensionally measured target (on T2/FLAIR for these criteria)."""
    return {"long_axis_mm": long_axis_mm,
            "perpendicular_mm": long_axis_mm if perpendicular_mm is None else perpendicular_mm, **extra}


def clin(**fields):
    return fields


NT = {"NT1": "present"}


def base(**clinical):
    return tp(B, T1=bi(40, 30), nt=NT, clinical=clinical or None)


# ------------------------------------------------------------------------------------------- RANO-LGG, time points

# (id, follow-ups, expected calls, hindsight flags per follow-up, fragment of the last reason)
LGG_CASES = [
    # van den Bent 2011: CR = disappearance of all T2/FLAIR disease, no new or increased enhancement, off steroids,
    # clinically stable.
    ("cr", [tp(week(8), T1=bi(0), nt={"NT1": "absent"}, clinical=clin(steroid_dose_mg=0))], ["CR"], [set()], "-> CR"),
    # PR: >= 50% decrease of the T2/FLAIR sum of products from baseline (600 vs 1200 mm2: exactly -50%).
    ("pr_at_50pct", [tp(week(8), T1=bi(30, 20), nt=NT)], ["PR"], [set()],
     "T2/FLAIR SPD 600.0 mm2 vs baseline 1200.0 mm2: -50.0%"),
    # MR: a 25% to < 50% decrease (900 mm2: exactly -25%).
    ("mr_at_25pct", [tp(week(8), T1=bi(30, 30), nt=NT)], ["MR"], [set()], "measurable disease: minor_decrease"),
    ("mr_just_above_pr", [tp(week(8), T1=bi(30.1, 20), nt=NT)], ["MR"], [set()], "-49.8%"),
    # SD: less than 25% decrease to less than 25% increase (910 mm2: -24.2%).
    ("sd_below_mr", [tp(week(8), T1=bi(35, 26), nt=NT)], ["SD"], [set()], "-24.2%"),
    ("sd_growth_below_25pct", [tp(week(8), T1=bi(49.8, 30), nt=NT)], ["SD"], [set()], "+24.5%"),
    # PD: >= 25% increase of the T2/FLAIR sum of products from the smallest measurement (the nadir, 900 mm2 at week
    # 8): 1125 mm2 is +25.0% from the nadir but -6.2% from baseline.
    ("pd_25pct_from_nadir", [tp(week(8), T1=bi(30, 30), nt=NT), tp(week(16), T1=bi(45, 25), nt=NT)], ["MR", "PD"],
     [set(), set()], "vs nadir 900.0 mm2 (2024-03-04): +25.0%"),
    ("sd_24pct_from_nadir", [tp(week(8), T1=bi(30, 30), nt=NT), tp(week(16), T1=bi(40, 28), nt=NT)], ["MR", "SD"],
     [set(), set()], "+24.4%"),
    # PD: any new lesion (measurable or not).
    ("pd_new_lesion", [tp(week(8), T1=bi(40, 30), nt=NT, new_lesions=[new("N1", 6)])], ["PD"], [set()], "-> PD (new)"),
    # PD: new or increased enhancement (radiological evidence of malignant transformation).
    ("pd_new_enhancement", [tp(week(8), T1=bi(40, 30), nt=NT, clinical=clin(enhancement="new"))], ["PD"], [set()],
     "new enhancement (radiological evidence of malignant transformation) -> PD (enhancement)"),
    ("pd_increased_enhancement_while_shrinking", [tp(week(8), T1=bi(30, 20), nt=NT, clinical=clin(enhancement="increased"))],
     ["PD"], [set()], "-> PD (enhancement)"),
    ("stable_enhancement_is_not_pd", [tp(week(8), T1=bi(30, 30), nt=NT, clinical=clin(enhancement="stable"))], ["MR"],
     [set()], "enhancement present, not increased"),
    # PD: clinical deterioration.
    ("pd_clinical_deterioration", [tp(week(8), T1=bi(40, 30), nt=NT, clinical=clin(clinically_stable=False))], ["PD"],
     [set()], "-> PD (clinical deterioration)"),
    # CR needs any enhancement that had been present to have resolved: PR instead.
    ("cr_needs_enhancement_gone", [tp(week(8), T1=bi(0), nt={"NT1": "absent"}, clinical=clin(enhancement="stable"))],
     ["PR"], [set()], "-> PR"),
    # CR needs steroids off (physiological doses allowed); the dose of baseline allows PR.
    ("cr_needs_no_steroids", [tp(week(8), T1=bi(0), nt={"NT1": "absent"}, clinical=clin(steroid_dose_mg=4))],
     ["PR"], [set()], "-> PR"),
    # Steroids as RANO 2010: stable imaging on a higher dose is neither SD nor PD; back to baseline -> SD in hindsight.
    ("steroid_increase_then_back", [tp(week(8), T1=bi(40, 30), nt=NT, clinical=clin(steroid_dose_mg=8)),
                                    tp(week(14), T1=bi(40, 30), nt=NT, clinical=clin(steroid_dose_mg=0))],
     ["SD", "SD"], [{"steroid_increase"}, set()], "-> SD"),
    ("mr_on_higher_steroids_is_not_mr", [tp(week(8), T1=bi(30, 30), nt=NT, clinical=clin(steroid_dose_mg=8))],
     ["NE"], [{"steroid_increase"}], "neither SD nor PD until the dose returns to baseline -> NE"),
    # Reading: the paper's PD list names no progression of non-measurable disease; it blocks a response.
    ("non_measurable_progression_blocks_response", [tp(week(8), T1=bi(30, 20), nt={"NT1": "unequivocal_progression"})],
     ["SD"], [{"non_measurable_progression"}], "not among the PD criteria of RANO-LGG, van den Bent 2011"),
    # The T2/FLAIR disease is measured: the qualitative T2/FLAIR field is not a second PD route.
    ("qualitative_t2_flair_not_used", [tp(week(8), T1=bi(40, 30), nt=NT, clinical=clin(t2_flair="increased"))], ["SD"],
     [set()], "T2/FLAIR increased (not used by RANO-LGG, van den Bent 2011: the T2/FLAIR disease is measured)"),
    # No radiotherapy window in RANO-LGG: growth soon after radiotherapy is PD, with no pseudoprogression flags.
    ("no_radiotherapy_window", [tp(week(6), T1=bi(50, 30), nt=NT)], ["PD"], [set()], "-> PD (measurable)"),
]


@pytest.mark.parametrize("case_id, follow_ups, expected, flags, fragment", LGG_CASES, ids=[c[0] for c in LGG_CASES])
def test_ranolgg_time_point_calls(case_id, follow_ups, expected, flags, fragment):
    steroid_cases = ("cr_needs_no_steroids", "steroid_increase_then_back", "mr_on_higher_steroids_is_not_mr")
    baseline = base(steroid_dose_mg=4 if case_id == "cr_needs_no_steroids" else 0) if case_id in steroid_cases else base()
    radiotherapy_end = day(-10) if case_id == "no_radiotherapy_window" else None
    result = assess(course(baseline, *follow_ups, radiotherapy_end=radiotherapy_end), "ranolgg")
    assert calls(result) == expected
    assert [set(row.flags) & HINDSIGHT for row in result.timepoints[1:]] == flags
    assert fragment in result.timepoints[-1].reason
    assert not {PP, PC, PRC} & {flag for row in result.timepoints for flag in row.flags}


def test_ranolgg_reports_the_t2_flair_sum_of_products():
    result = assess(course(base(), tp(week(8), T1=bi(30, 30), nt=NT)), "ranolgg")
    baseline, follow = result.timepoints
    assert baseline.sum_products_mm2 == pytest.approx(1200.0, abs=1e-9)
    assert "T2/FLAIR SPD 1200.0 mm2" in baseline.reason
    assert follow.sum_products_mm2 == pytest.approx(900.0, abs=1e-9)
    assert follow.change_from_baseline_pct == pytest.approx(-25.0, abs=1e-9)
    assert follow.target_response == "minor_decrease"
    assert follow.to_dict()["response"] == "MR"


# ------------------------------------------------------------------------------------------- RANO-LGG, selection


def test_ranolgg_measurable_t2_flair_lesion_needs_both_diameters_10mm():
    """van den Bent 2011: measurable = both perpendicular diameters >= 10 mm (on >= 2 slices)."""
    result = assess(course(tp(B, T1=bi(40, 30), T2=bi(12, 8)), tp(week(8), T1=bi(40, 30), T2=bi(12, 8))), "ranolgg")
    assert "T2: perpendicular 8.0 mm < 10.0 mm: non-target" in result.timepoints[0].reason
    assert result.timepoints[0].sum_products_mm2 == pytest.approx(1200.0, abs=1e-9)


def test_ranolgg_up_to_five_targets():
    """Reading: RANO-LGG sets no number of targets; RANO 2010's 5 is taken."""
    sizes = {f"T{i}": bi(10 + i * 5) for i in range(6)}
    result = assess(course(tp(B, **sizes), tp(week(8), **sizes)), "ranolgg")
    assert "T0: beyond the 5-target limit: non-target" in result.timepoints[0].reason


def test_component_decides_which_targets_a_criterion_measures():
    """A course with both measurements: ranolgg follows the T2/FLAIR targets, rano (2010) the enhancing ones."""
    c = course(
        tp(B, E1=bi(20, component="enhancing"), F1=bi(40, 30, component="non_enhancing")),
        tp(week(8), E1=bi(20), F1=bi(30, 30)),
    )
    lgg, rano = assess(c, "ranolgg"), assess(c, "rano")
    assert lgg.timepoints[0].sum_products_mm2 == pytest.approx(1200.0, abs=1e-9)
    assert "E1: enhancing component, not assessed by this criterion" in lgg.timepoints[0].reason
    assert calls(lgg) == ["MR"]
    assert rano.timepoints[0].sum_products_mm2 == pytest.approx(400.0, abs=1e-9)
    assert "F1: non-enhancing (T2/FLAIR) component, not assessed by this criterion" in rano.timepoints[0].reason
    assert calls(rano) == ["SD"]


# ------------------------------------------------------------------------------------------- RANO-LGG, best response


@pytest.mark.parametrize("follow_ups, expected, fragment", [
    # PR sustained for at least 4 weeks (van den Bent 2011): confirmed by PR 5 weeks later.
    ([(8, bi(30, 20)), (13, bi(30, 20))], "PR", "PR on 2024-03-04 confirmed by PR on 2024-04-08 (5.0 weeks later, >= 4)"),
    # Too early (2 weeks) and nothing later: not confirmed, SD.
    ([(8, bi(30, 20)), (10, bi(30, 20))], "SD", "PR on 2024-03-04 not confirmed (no PR/CR >= 4 weeks later)"),
    # MR confirmed by MR (reading: MR needs the same confirmation).
    ([(8, bi(30, 30)), (13, bi(30, 29))], "MR", "MR on 2024-03-04 confirmed by MR on 2024-04-08"),
    # MR not confirmed: SD.
    ([(8, bi(30, 30)), (13, bi(40, 30))], "SD", "MR on 2024-03-04 not confirmed (no MR/PR/CR >= 4 weeks later)"),
    # PR then MR (720 mm2: -40% vs baseline, +20% vs the 600 mm2 nadir): the response sustained is MR.
    ([(8, bi(30, 20)), (13, bi(30, 24))], "MR", "PR on 2024-03-04 confirmed by MR on 2024-04-08"),
    # CR confirmed by CR.
    ([(8, bi(0)), (13, bi(0))], "CR", "CR on 2024-03-04 confirmed by CR"),
])
def test_ranolgg_best_overall_response_confirmation(follow_ups, expected, fragment):
    c = course(tp(B, T1=bi(40, 30), clinical={"steroid_dose_mg": 0}),
               *(tp(week(w), T1=size, clinical={"steroid_dose_mg": 0}) for w, size in follow_ups))
    bor = assess(c, "ranolgg").best_overall_response
    assert bor.response == expected
    assert fragment in bor.reason


def test_ranolgg_confirmation_is_configurable():
    """The paper asks confirmation of PR only; ``ranolgg_confirm_responses=("PR",)`` is that literal reading."""
    c = course(base(), tp(week(8), T1=bi(30, 30), nt=NT), tp(week(10), T1=bi(40, 30), nt=NT, new_lesions=[new("N1")]))
    assert assess(c, "ranolgg").best_overall_response.response == "SD"
    literal = assess(c, "ranolgg", AssessmentOptions(ranolgg_confirm_responses=("PR",))).best_overall_response
    assert literal.response == "MR" and "no confirmation required" in literal.reason
    with pytest.raises(CourseError, match="ranolgg_confirm_responses"):
        AssessmentOptions(ranolgg_confirm_responses=("SD",))


def test_ranolgg_best_response_pd():
    c = course(base(), tp(week(8), T1=bi(40, 30), nt=NT, clinical=clin(enhancement="new")))
    bor = assess(c, "ranolgg").best_overall_response
    assert bor.response == "PD"


# ------------------------------------------------------------------------------------------- invariant


def _below_pd_without_other_trigger(row, tp) -> bool:
    """The T2/FLAIR sum is below +25% of the nadir and nothing else RANO-LGG calls PD is there."""
    grown = (row.sum_products_mm2 is not None and row.nadir is not None and row.sum_products_mm2 > row.nadir
             and row.sum_products_mm2 >= 1.25 * row.nadir - 1e-6)
    new_lesion = any(lesion.long_axis_mm != 0 for lesion in tp.new_lesions)
    enhancement = tp.clinical.enhancement in ("new", "increased")
    decline = not tp.clinical.clinically_stable
    return not (grown or new_lesion or enhancement or decline)


#: A course where the only change is unequivocal progression of a non-measurable lesion and a reader's
#: "T2/FLAIR increased": neither is PD under RANO-LGG (reading; the paper's PD list names neither).
NON_MEASURABLE_ONLY = {
    "patient_id": "H",
    "context": {"treatment_start": "2024-01-08", "radiotherapy_end": None, "immunotherapy": False},
    "timepoints": [
        {"date": "2024-01-08", "target": [{"lesion": "T0", "long_axis_mm": 20.0, "perpendicular_mm": 20.0}],
         "non_target": [{"lesion": "NT0"}]},
        {"date": "2024-03-04", "target": [{"lesion": "T0", "long_axis_mm": 20.0, "perpendicular_mm": 20.0}],
         "non_target": [{"lesion": "NT0", "status": "unequivocal_progression"}], "clinical": {"t2_flair": "increased"}},
    ],
}


@SETTINGS
@given(data=courses())
@example(data=NON_MEASURABLE_ONLY)
def test_ranolgg_never_pd_below_25pct_without_new_lesion_enhancement_or_decline(data):
    """van den Bent 2011: PD is a >= 25% increase of the T2/FLAIR sum of products from the smallest measurement, a new
    lesion, new or increased enhancement, or clinical deterioration. Below +25% of the nadir (or with the sum not
    evaluable and the measured lesions below it), with none of the others, the call is never PD."""
    c = course_from_dict(data)
    result = assess(c, "ranolgg")
    by_date = {tp.date: tp for tp in c.timepoints}
    for row in result.timepoints:
        if row.response == "PD":
            assert not _below_pd_without_other_trigger(row, by_date[row.date]), row.reason


# ------------------------------------------------------------------------------------------- RANO 2.0, non-enhancing


def test_rano2_non_enhancing_minor_response_and_t2_flair_measurement():
    """RANO 2.0 (Wen 2023) for non-enhancing (IDH-mutant, lower-grade) tumours: the T2/FLAIR lesions are measured
    (sum of products), the minor response (25% to < 50% decrease) is a response category, PR >= 50% decrease,
    PD >= 25% increase from the nadir -- as RANO-LGG."""
    c = course(base(), tp(week(8), T1=bi(30, 30), nt=NT), tp(week(14), T1=bi(30, 20), nt=NT),
               tp(week(20), T1=bi(30, 25), nt=NT), tumour="non_enhancing")
    result = assess(c, "rano2")
    assert calls(result) == ["MR", "PR", "PD"]
    assert "T2/FLAIR SPD 600.0 mm2" in result.timepoints[2].reason
    assert "vs nadir 600.0 mm2 (2024-04-15): +25.0%" in result.timepoints[3].reason
    assert result.best_overall_response.response == "MR"   # PR (week 14) not sustained; MR (week 8) by PR 6 weeks later


def test_rano2_enhancing_has_no_minor_response_and_is_unchanged():
    """``context.tumour`` null or ``enhancing``: RANO 2.0 exactly as before the field existed."""
    follow = [tp(week(8), T1=bi(30, 30), nt=NT, clinical=clin(enhancement="new")), tp(week(14), T1=bi(50, 30), nt=NT)]
    plain = assess(course(base(), *follow), "rano2")
    assert calls(plain) == ["SD", "PD"]
    enhancing = assess(course(base(), *follow, tumour="enhancing"), "rano2")
    assert enhancing.to_dict() == plain.to_dict()


def test_rano2_non_enhancing_new_enhancement_after_radiotherapy_needs_confirmation():
    """RANO 2.0 (Wen 2023): progression within 12 weeks after radiotherapy needs a confirmation scan (preliminary PD).
    Reading for non-enhancing tumours: new enhancement is progression (as RANO-LGG) and so is held the same way;
    enhancement gone at the next scan refutes it, enhancement still there confirms it."""
    refuted = assess(course(
        base(), tp(week(6), T1=bi(40, 30), nt=NT, clinical=clin(enhancement="new")),
        tp(week(11), T1=bi(40, 30), nt=NT, clinical=clin(enhancement="none")),
        radiotherapy_end=day(-10), tumour="non_enhancing"), "rano2")
    assert calls(refuted) == ["preliminary PD", "SD"]
    assert PC in refuted.timepoints[1].flags and "pseudoprogression" in refuted.timepoints[2].reason
    confirmed = assess(course(
        base(), tp(week(6), T1=bi(40, 30), nt=NT, clinical=clin(enhancement="new")),
        tp(week(11), T1=bi(40, 30), nt=NT, clinical=clin(enhancement="stable")),
        radiotherapy_end=day(-10), tumour="non_enhancing"), "rano2")
    assert calls(confirmed) == ["preliminary PD", "confirmed PD"]
    assert PRC in confirmed.timepoints[1].flags
    later = assess(course(base(), tp(week(20), T1=bi(40, 30), nt=NT, clinical=clin(enhancement="increased")),
                          radiotherapy_end=day(-100), tumour="non_enhancing"), "rano2")
    assert calls(later) == ["PD"]


def test_rano2_non_enhancing_steroids_block_mr_not_sd():
    """RANO 2.0: steroids only hold back responses (CR, PR and, here, MR); an increase does not prevent SD."""
    c = course(base(steroid_dose_mg=2), tp(week(8), T1=bi(30, 30), nt=NT, clinical=clin(steroid_dose_mg=8)),
               tumour="non_enhancing")
    assert calls(assess(c, "rano2")) == ["SD"]


@pytest.mark.parametrize("volume, expected", [(650.0, "MR"), (660.0, "SD"), (350.0, "PR"), (1400.0, "PD")])
def test_rano2_non_enhancing_volumetric_minor_response(volume, expected):
    """Volumetric option: PR >= 65% and PD >= 40% (Wen 2023); MR >= 35% decrease, the sphere-equivalent of 25% in two
    dimensions (reading, ``rano2_volumetric_minor_response_pct``). Baseline 1000 mm3, after the radiotherapy window."""
    c = course(tp(B, T1=bi(40, 30, volume_mm3=1000.0)), tp(week(20), T1=bi(40, 30, volume_mm3=volume)),
               radiotherapy_end=day(-100), tumour="non_enhancing")
    result = assess(c, "rano2", AssessmentOptions(rano2_volumetric=True))
    assert calls(result) == [expected]
    assert "MR >= 35% decrease" in result.timepoints[0].reason


# ------------------------------------------------------------------------------------------- RANO 2.0, mixed

E = {"CR": bi(0), "PR": bi(14), "SD": bi(20), "PD": bi(25, 20)}                       # enhancing, baseline 20 x 20
F = {"CR": bi(0), "PR": bi(30, 20), "MR": bi(30, 30), "SD": bi(40, 30), "PD": bi(50, 30)}  # T2/FLAIR, baseline 40 x 30

MIXED_CASES = [
    # "PD + SD/MR/PR/CR = PD"
    ("PD", "SD", "PD"), ("PD", "MR", "PD"), ("PD", "PR", "PD"), ("PD", "CR", "PD"),
    ("SD", "PD", "PD"), ("PR", "PD", "PD"), ("CR", "PD", "PD"),
    # "MR/PR + SD = MR/PR"
    ("SD", "MR", "MR"), ("SD", "PR", "PR"), ("PR", "SD", "PR"),
    # "CR + SD/MR/PR = SD/MR/PR"
    ("CR", "SD", "SD"), ("CR", "MR", "MR"), ("CR", "PR", "PR"), ("SD", "CR", "SD"), ("PR", "CR", "PR"),
    # "SD + SD = SD"
    ("SD", "SD", "SD"),
    # readings (not stated in the paper): CR + CR = CR; PR + PR = PR; PR + MR = MR (the lesser response)
    ("CR", "CR", "CR"), ("PR", "PR", "PR"), ("PR", "MR", "MR"),
]


@pytest.mark.parametrize("enhancing, non_enhancing, expected", MIXED_CASES,
                         ids=[f"{e}+{n}" for e, n, _ in MIXED_CASES])
def test_rano2_mixed_tumour_combination(enhancing, non_enhancing, expected):
    """RANO 2.0 (Wen 2023), mixed tumours: "In clinical trials applying the 'mixed' tumor criteria, the whole
    evaluation should be performed in parallel for both the CE and the non-CE tumor burden at each timepoint in
    order to assign the response category (e.g., PD, SD, PR, ...), then the overall response category is assigned
    based on both CE and non-CE categories: PD + SD/MR/PR/CR = PD; MR/PR + SD = MR/PR; CR + SD/MR/PR = SD/MR/PR;
    SD + SD = SD (see text for details)." """
    c = course(tp(B, E1=bi(20, component="enhancing"), F1=bi(40, 30, component="non_enhancing"), clinical={"steroid_dose_mg": 0}),
               tp(week(8), E1=E[enhancing], F1=F[non_enhancing], clinical={"steroid_dose_mg": 0}), tumour="mixed")
    result = assess(c, "rano2")
    row = result.timepoints[-1]
    assert [component.response for component in row.components] == [enhancing, non_enhancing]
    assert row.response == expected
    assert f"{enhancing} + {non_enhancing} = {expected}" in row.reason
    assert combine_mixed(enhancing, non_enhancing) == expected


def test_mixed_combination_table_is_complete():
    assert MIXED_COMBINATION[("NE", "SD")] == "NE" and MIXED_COMBINATION[("NE", "PD")] == "PD"
    assert len(MIXED_COMBINATION) == 5 * 6


def test_rano2_mixed_output_has_both_burdens():
    c = course(tp(B, E1=bi(20, component="enhancing"), F1=bi(40, 30, component="non_enhancing")),
               tp(week(8), E1=bi(14), F1=bi(40, 30)), tumour="mixed")
    out = assess(c, "rano2").to_dict()
    follow = out["timepoints"][1]
    assert follow["sum_products_mm2"] == 196.0 and follow["change_from_baseline_pct"] == -51.0
    assert follow["components"]["enhancing"] == {"sum": 196.0, "change_from_baseline_pct": -51.0,
                                                 "change_from_nadir_pct": -51.0, "nadir": 400.0,
                                                 "target_response": "decrease", "response": "PR"}
    assert follow["components"]["non_enhancing"]["sum"] == 1200.0
    assert follow["components"]["non_enhancing"]["response"] == "SD"
    assert "components" not in assess(course(base(), tp(week(8), T1=bi(40, 30))), "rano2").to_dict()["timepoints"][1]


def test_rano2_mixed_preliminary_pd_from_the_t2_flair_burden():
    """Growth of the non-enhancing burden alone within 12 weeks after radiotherapy is preliminary PD (RANO 2.0), and
    is confirmed when it persists against the same reference at the next scan >= 4 weeks later."""
    c = course(tp(B, E1=bi(20, component="enhancing"), F1=bi(40, 30, component="non_enhancing")),
               tp(week(6), E1=bi(20), F1=bi(50, 30)), tp(week(11), E1=bi(20), F1=bi(50, 31)),
               radiotherapy_end=day(-10), tumour="mixed")
    result = assess(c, "rano2")
    assert calls(result) == ["preliminary PD", "confirmed PD"]
    assert "progression persists vs enhancing SPD 400.0 mm2, T2/FLAIR SPD 1200.0 mm2" in result.timepoints[2].reason


def test_rano2_mixed_needs_every_baseline_target_component():
    c = course(tp(B, E1=bi(20, component="enhancing"), F1=bi(40, 30)), tp(week(8), E1=bi(20), F1=bi(40, 30)),
               tumour="mixed")
    with pytest.raises(CourseError, match=r"timepoint 1 .*target\[F1\]\.component: RANO 2.0 with context.tumour mixed"):
        assess(c, "rano2")
    assert calls(assess(c, "rano")) == ["SD"]   # other criteria do not need it


# ------------------------------------------------------------------------------------------- the new course fields


@pytest.mark.parametrize("change, message", [
    ({"clinical": {"enhancement": "worse"}}, "timepoint 2 (2024-03-04): clinical.enhancement: must be one of"),
    ({"target": [{"lesion": "T1", "long_axis_mm": 30, "perpendicular_mm": 30, "component": "t1"}]},
     "timepoint 2 (2024-03-04): target[T1].component: must be one of"),
    ({"target": [{"lesion": "T1", "long_axis_mm": 30, "perpendicular_mm": 30, "component": "enhancing"}]},
     "timepoint 2 (2024-03-04): target[T1].component: component 'enhancing' differs from the baseline's 'non_enhancing'"),
])
def test_new_fields_are_validated(change, message):
    data = {
        "context": {"treatment_start": "2024-01-08", "radiotherapy_end": None, "immunotherapy": False},
        "timepoints": [
            {"date": "2024-01-05", "target": [{"lesion": "T1", "long_axis_mm": 40, "perpendicular_mm": 30,
                                               "component": "non_enhancing"}]},
            {"date": "2024-03-04", "target": [{"lesion": "T1", "long_axis_mm": 30, "perpendicular_mm": 30}]},
        ],
    }
    data["timepoints"][1].update(change)
    with pytest.raises(CourseError) as info:
        course_from_dict(data, source="c.yaml")
    assert message in str(info.value)


def test_context_tumour_is_validated():
    data = {"context": {"treatment_start": "2024-01-08", "radiotherapy_end": None, "immunotherapy": False,
                        "tumour": "low_grade"},
            "timepoints": [{"date": "2024-01-05"}]}
    with pytest.raises(CourseError, match="context.tumour: must be one of"):
        course_from_dict(data)
    data["context"]["tumor"] = data["context"].pop("tumour")
    with pytest.raises(CourseError, match="context.tumor: unknown key"):
        course_from_dict(data)


# ------------------------------------------------------------------------------------------- CLI


def test_cli_accepts_ranolgg(tmp_path):
    data = {
        "patient_id": "L1",
        "context": {"treatment_start": "2024-01-08", "radiotherapy_end": None, "immunotherapy": False},
        "timepoints": [
            {"date": "2024-01-05", "target": [{"lesion": "T1", "long_axis_mm": 40, "perpendicular_mm": 30}]},
            {"date": "2024-03-04", "target": [{"lesion": "T1", "long_axis_mm": 30, "perpendicular_mm": 30}]},
            {"date": "2024-04-29", "target": [{"lesion": "T1", "long_axis_mm": 30, "perpendicular_mm": 29}],
             "clinical": {"enhancement": "none"}},
        ],
    }
    path = tmp_path / "L1.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    from pipelines.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["assess", str(path), "--criteria", "ranolgg", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["criterion"] == "ranolgg"
    assert [row["response"] for row in out["timepoints"]] == [None, "MR", "MR"]
    assert out["best_overall_response"]["response"] == "MR"
    table = runner.invoke(app, ["assess", str(path), "--criteria", "rano2,ranolgg"])
    assert table.exit_code == 0, table.output
    assert "ranolgg" in table.stdout
