"""A lesion listed without its measurement is not evaluated, never 0 mm.

RECIST 1.1 (Eisenhauer 2009, sec. 4.4.2 "missing assessments", the digest's sec. 4.3.3 reading): a sum with a
lesion not measured is not evaluable; it does not become the nadir, and progression is called from it only
when the measured lesions alone already meet it. The same reading for the iRECIST new-lesion-target sum
(Seymour 2017), the irRC tumour burden with new lesions (Wolchok 2009) and mRANO's new measurable lesions
(Ellingson 2017). The course file accepts ``long_axis_mm: null`` on a new lesion; every criterion says so in
the reason of that time point and flags it ``new_lesion_not_measured``.
"""

from __future__ import annotations

import pytest

from imaging.response import CRITERIA, assess
from tests.response.factory import calls, course, day, new, tp, week

B = day(-3)
UNMEASURED = "new_lesion_not_measured"


def bi(long_axis_mm, perpendicular_mm=None):
    return {"long_axis_mm": long_axis_mm, "perpendicular_mm": long_axis_mm if perpendicular_mm is None else perpendicular_mm}


# ---- iRECIST: the new-lesion-target (NLT) sum ------------------------------------------------------


def test_irecist_unmeasured_nlt_does_not_become_a_zero_nadir():
    """The reported defect: N1 causes iUPD, is listed unmeasured at the iPR, then measured again unchanged.

    Before the fix the unmeasured N1 counted 0 mm, 0 became the NLT nadir, and 10 mm at the next scan
    was called a fresh iUPD ("NLT sum meets PD vs its nadir 0.0 mm").
    """
    result = assess(course(
        tp(B, T1=50),
        tp(week(6), T1=50, new_lesions=[new("N1", 10)]),
        tp(week(12), T1=34, new_lesions=[new("N1", None)]),
        tp(week(18), T1=34, new_lesions=[new("N1", 10)]),
        immunotherapy=True,
    ), "irecist")
    assert calls(result) == ["iUPD", "iPR", "iPR"]
    unmeasured = result.timepoints[2]
    assert UNMEASURED in unmeasured.flags
    assert "N1 not measured" in unmeasured.reason and "NLT sum not evaluable" in unmeasured.reason
    assert unmeasured.new_lesion_target_sum_mm is None
    last = result.timepoints[3]
    assert "NLT sum meets PD" not in last.reason
    assert last.new_lesion_target_sum_mm == pytest.approx(10.0, abs=1e-9)


def test_irecist_nlt_pd_from_the_measured_ones_alone_stands():
    """As RECIST sec. 4.4.2 for targets: with an NLT unmeasured, PD stands when the measured NLTs alone meet it."""
    result = assess(course(
        tp(B, T1=50),
        tp(week(6), T1=40, new_lesions=[new("N1", 10), new("N2", 10)]),
        tp(week(12), T1=30, new_lesions=[new("N1", 10), new("N2", 10)]),
        tp(week(18), T1=30, new_lesions=[new("N1", 30), new("N2", None)]),
    ), "irecist")
    assert calls(result) == ["iUPD", "iPR", "iUPD"]
    reason = result.timepoints[-1].reason
    assert "N2 not measured" in reason and "measured NLTs alone" in reason and "meets PD vs its nadir 20.0 mm" in reason


def test_irecist_unmeasured_nlt_without_pd_of_the_measured_ones_is_not_progression():
    result = assess(course(
        tp(B, T1=50),
        tp(week(6), T1=40, new_lesions=[new("N1", 10), new("N2", 10)]),
        tp(week(12), T1=30, new_lesions=[new("N1", 10), new("N2", 10)]),
        tp(week(18), T1=30, new_lesions=[new("N1", 14), new("N2", None)]),
    ), "irecist")
    assert calls(result) == ["iUPD", "iPR", "iPR"]
    assert "NLT sum not evaluable (N2 not measured" in result.timepoints[-1].reason


# ---- irRC: new lesions in the tumour burden ----------------------------------------------------------


def test_irrc_unmeasured_new_lesion_is_not_a_zero_product():
    """Before the fix N1 (10 x 10 mm in the burden) counted 0 when unmeasured: a false irPR (-51%), whose burden
    then became the nadir and made the next, unchanged scan a false irPD."""
    result = assess(course(
        tp(B, T1=bi(20), nt={"NT1": "present"}),
        tp(week(6), T1=bi(14), nt={"NT1": "present"}, new_lesions=[new("N1", 10) | {"perpendicular_mm": 10}]),
        tp(week(12), T1=bi(14), nt={"NT1": "present"}, new_lesions=[new("N1", None)]),
        tp(week(18), T1=bi(14), nt={"NT1": "present"}, new_lesions=[new("N1", 10) | {"perpendicular_mm": 10}]),
        immunotherapy=True,
    ), "irrc")
    assert calls(result) == ["irSD", "NE", "irSD"]
    row = result.timepoints[2]
    assert UNMEASURED in row.flags and "N1 not measured" in row.reason
    assert result.timepoints[3].nadir == pytest.approx(296.0, abs=1e-9)


def test_irrc_new_lesion_without_perpendicular_is_not_evaluated():
    """irRC is bidimensional: a new lesion >= 5 mm long without its perpendicular has no product yet."""
    result = assess(course(
        tp(B, T1=bi(20)),
        tp(week(6), T1=bi(14), new_lesions=[new("N1", 10) | {"perpendicular_mm": 10}]),
        tp(week(12), T1=bi(14), new_lesions=[new("N1", 10)]),
    ), "irrc")
    assert calls(result) == ["irSD", "NE"]
    assert "N1 not measured" in result.timepoints[-1].reason


def test_irrc_unmeasured_new_lesion_with_irpd_from_the_measured_burden():
    result = assess(course(
        tp(B, T1=bi(20)),
        tp(week(6), T1=bi(30), new_lesions=[new("N1", None)]),
    ), "irrc")
    assert calls(result) == ["irPD"]


# ---- mRANO: a new lesion whose measurability is unknown -----------------------------------------------


def test_mrano_unmeasured_new_lesion_neither_confirms_nor_refutes():
    """Before the fix the unmeasured N1 counted as non-measurable (0 mm): the preliminary PD was refuted as
    pseudoprogression although N1 was still there."""
    result = assess(course(
        tp(B, T1=bi(20), nt={"NT1": "present"}),
        tp(week(8), T1=bi(20), nt={"NT1": "present"}, new_lesions=[new("N1", 12)]),
        tp(week(14), T1=bi(20), nt={"NT1": "present"}, new_lesions=[new("N1", None)]),
        tp(week(20), T1=bi(20), nt={"NT1": "present"}, new_lesions=[new("N1", 12)]),
    ), "mrano")
    assert calls(result) == ["preliminary PD", "NE", "confirmed PD"]
    row = result.timepoints[2]
    assert UNMEASURED in row.flags and "N1 not measured" in row.reason


def test_mrano_unmeasured_new_lesion_at_first_sight_is_not_evaluated():
    result = assess(course(tp(B, T1=bi(20)), tp(week(8), T1=bi(20), new_lesions=[new("N1", None)])), "mrano")
    assert calls(result) == ["NE"]


def test_mrano_reader_says_non_measurable_then_no_size_needed():
    result = assess(course(tp(B, T1=bi(20)), tp(week(8), T1=bi(20), new_lesions=[new("N1", None, measurable=False)])), "mrano")
    assert calls(result) == ["SD"]


# ---- every criterion: the note, and a new lesion without size is still a new lesion ----------------------


@pytest.mark.parametrize("criterion", CRITERIA)
def test_every_criterion_says_when_a_new_lesion_was_not_measured(criterion):
    c = course(tp(B, T1=bi(20)), tp(week(8), T1=bi(20), new_lesions=[new("N1", None)]), immunotherapy=False)
    row = assess(c, criterion).timepoints[-1]
    assert UNMEASURED in row.flags
    assert "N1 not measured" in row.reason


@pytest.mark.parametrize("criterion, expected", [
    ("recist", "PD"), ("rano", "PD"), ("rano2", "PD"), ("irano", "PD"), ("ranobm", "PD"), ("irecist", "iUPD"),
])
def test_an_unmeasured_new_lesion_is_still_a_new_lesion(criterion, expected):
    c = course(tp(B, T1=bi(20)), tp(week(8), T1=bi(20), new_lesions=[new("N1", None)]))
    assert calls(assess(c, criterion)) == [expected]


# ---- hyperprogression (growth.py): an unmeasured target is not a zero sum -----------------------------


def test_hyperprogression_with_a_target_not_measured_is_not_evaluable():
    result = assess(course(tp(day(-60), T1=20, T2=20), tp(B, T1=30, T2=20), tp(week(6), T1=60, T2=None), immunotherapy=True),
                    "recist")
    row = result.timepoints[-1]
    assert row.response == "PD" and "hyperprogression" not in row.flags
    assert "not evaluable: targets not all measured" in row.reason
    assert row.tgr_pct_per_month is None
