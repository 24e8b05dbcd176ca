"""Hyperprogression flag: TGR (Ferte 2014) ratio >= 2 with PD at the first evaluation (Champiat 2017).

Growth rates are compared with tolerance 1e-6 %/month (closed-form values).
"""

from __future__ import annotations

import math

import pytest

from imaging.response import assess
from imaging.response.growth import hyperprogression_champiat, tumour_growth_rate
from tests.response.factory import course, day, tp, week


def test_tgr_closed_form():
    # doubling of the diameter sum in one month: volume x 8 -> TGR = 700 %/month
    assert tumour_growth_rate(10.0, 20.0, round(365.25 / 12)) == pytest.approx(100 * (math.exp(3 * math.log(2) * (365.25 / 12) / round(365.25 / 12)) - 1), abs=1e-6)
    assert tumour_growth_rate(10.0, 10.0, 30) == pytest.approx(0.0, abs=1e-12)
    assert tumour_growth_rate(10.0, 0.0, 30) == -100.0


@pytest.mark.parametrize("progression, before, on, expected", [
    (True, 10.0, 20.0, True), (True, 10.0, 19.9, False), (False, 10.0, 50.0, False), (True, -5.0, 50.0, False),
])
def test_champiat_rule(progression, before, on, expected):
    assert hyperprogression_champiat(progression, before, on) is expected


@pytest.mark.parametrize("criterion, call", [("recist", "PD"), ("irecist", "iUPD")])
def test_flag_with_pre_baseline_scan(criterion, call):
    c = course(tp(day(-60), T1=40), tp(day(-3), T1=42), tp(week(6), T1=80), immunotherapy=True)
    row = assess(c, criterion).timepoints[-1]
    assert row.response == call
    assert "hyperprogression" in row.flags
    assert "Champiat 2017" in row.reason and "ratio" in row.reason and "-> hyperprogression" in row.reason
    assert row.tgr_pct_per_month is not None and row.tgr_pct_per_month > 0


def test_not_flagged_when_ratio_below_2():
    c = course(tp(day(-45), T1=30), tp(day(-3), T1=42), tp(week(6), T1=52), immunotherapy=True)
    row = assess(c, "recist").timepoints[-1]
    assert row.response == "PD" and "hyperprogression" not in row.flags
    assert "-> not hyperprogression" in row.reason


def test_not_evaluable_without_pre_baseline_scan():
    c = course(tp(day(-3), T1=42), tp(week(6), T1=80), immunotherapy=True)
    row = assess(c, "recist").timepoints[-1]
    assert "hyperprogression" not in row.flags
    assert "not evaluable: no pre-baseline scan" in row.reason


def test_not_evaluable_when_shrinking_before_treatment():
    c = course(tp(day(-60), T1=50), tp(day(-3), T1=42), tp(week(6), T1=80), immunotherapy=True)
    row = assess(c, "recist").timepoints[-1]
    assert "ratio undefined" in row.reason and "hyperprogression" not in row.flags


def test_only_at_first_assessment_and_only_on_immunotherapy():
    c = course(tp(day(-60), T1=40), tp(day(-3), T1=42), tp(week(6), T1=42), tp(week(12), T1=90), immunotherapy=True)
    assert all("hyperprogression" not in row.flags for row in assess(c, "recist").timepoints)
    c = course(tp(day(-60), T1=40), tp(day(-3), T1=42), tp(week(6), T1=80), immunotherapy=False)
    row = assess(c, "recist").timepoints[-1]
    assert "hyperprogression" not in row.flags and "Champiat" not in row.reason
