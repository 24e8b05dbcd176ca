"""RANO-BM (Lin 2015): unidimensional sums, PR >= 30%, PD >= 20% with one lesion +5 mm; steroids and clinical as RANO."""

from __future__ import annotations

import pytest

from imaging.response import TargetLesion, assess, measurability
from tests.response.factory import calls, course, day, new, tp, week

B = day(-3)


def bm(long_axis_mm, perpendicular_mm=8.0, **extra):
    return {"long_axis_mm": long_axis_mm, "perpendicular_mm": perpendicular_mm, **extra}


CASES = [
    ("pr_30pct", dict(T1=bm(20), T2=bm(20)), [dict(T1=bm(14), T2=bm(14))], ["PR"], "SOD 28.0 mm vs baseline 40.0 mm: -30.0%"),
    ("pd_20pct_one_lesion_plus_5", dict(T1=bm(20), T2=bm(20)), [dict(T1=bm(28), T2=bm(20))], ["PD"], "-> PD (measurable)"),
    ("20pct_without_a_lesion_plus_5_is_sd", dict(T1=bm(20), T2=bm(20), T3=bm(10)),
     [dict(T1=bm(24), T2=bm(24), T3=bm(12))], ["SD"], "measurable disease: stable"),
    ("cr", dict(T1=bm(20)), [dict(T1=bm(0), clinical={"steroid_dose_mg": 0})], ["CR"], "-> CR"),
    ("new_lesion_pd", dict(T1=bm(20)), [dict(T1=bm(20), new_lesions=[new("N1", 4)])], ["PD"], "-> PD (new)"),
    ("steroid_increase_hold", dict(T1=bm(20), clinical={"steroid_dose_mg": 2}), [dict(T1=bm(20), clinical={"steroid_dose_mg": 8})],
     ["NE"], "neither SD nor PD"),
    ("clinical_deterioration", dict(T1=bm(20)), [dict(T1=bm(20), clinical={"clinically_stable": False})], ["PD"], "clinical deterioration"),
]


@pytest.mark.parametrize("case_id, baseline, follow_ups, expected, fragment", CASES, ids=[c[0] for c in CASES])
def test_ranobm_cases(case_id, baseline, follow_ups, expected, fragment):
    timepoints = [tp(B, **baseline)] + [tp(week(8 * (i + 1)), **f) for i, f in enumerate(follow_ups)]
    result = assess(course(*timepoints), "ranobm")
    assert calls(result) == expected
    assert fragment in result.timepoints[-1].reason
    assert result.timepoints[0].sum_mm is not None


@pytest.mark.parametrize("lesion, expected", [
    (TargetLesion(lesion="A", long_axis_mm=10, perpendicular_mm=5), "measurable"),
    (TargetLesion(lesion="A", long_axis_mm=10, perpendicular_mm=4), "non_measurable"),
    (TargetLesion(lesion="A", long_axis_mm=9, perpendicular_mm=9), "non_measurable"),
])
def test_ranobm_measurability(lesion, expected):
    assert measurability(lesion, criterion="ranobm")[0] == expected


def test_ranobm_at_most_five_targets_no_organ_limit():
    baseline = tp(B, **{f"T{i}": bm(10 + i) for i in range(7)}, organs={f"T{i}": "brain" for i in range(7)})
    result = assess(course(baseline, tp(week(8), **{f"T{i}": bm(10 + i) for i in range(7)}, organs={f"T{i}": "brain" for i in range(7)})), "ranobm")
    assert "5 target(s) T6, T5, T4, T3, T2" in result.timepoints[0].reason
