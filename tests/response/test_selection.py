"""Measurability and target selection at baseline (RECIST 1.1, Eisenhauer 2009, sec. 3.1 and 3.3)."""

from __future__ import annotations

import pytest

from imaging.response import TargetLesion, assess, measurability, select_targets
from tests.response.factory import course, day, lesion, node, tp, week


def _lesion(name, size, organ="lung", nodal=False, **extra):
    if nodal:
        return TargetLesion(lesion=name, organ=organ, nodal=True, short_axis_mm=size, **extra)
    return TargetLesion(lesion=name, organ=organ, long_axis_mm=size, **extra)


@pytest.mark.parametrize("lesion, slice_mm, expected", [
    (_lesion("A", 10.0), None, "measurable"),
    (_lesion("A", 9.9), None, "non_measurable"),
    (_lesion("A", 15.0), 8.0, "non_measurable"),   # 2 x 8 mm slices = 16 mm minimum
    (_lesion("A", 16.0), 8.0, "measurable"),
    (_lesion("A", 10.0), 5.0, "measurable"),       # 5 mm slices: 10 mm rule
    (_lesion("N", 15.0, nodal=True), None, "measurable"),
    (_lesion("N", 14.9, nodal=True), None, "non_measurable"),
    (_lesion("N", 10.0, nodal=True), None, "non_measurable"),
    (_lesion("N", 9.9, nodal=True), None, "normal"),
    (_lesion("A", None, too_small_to_measure=True), None, "non_measurable"),
    (_lesion("A", None), None, "non_measurable"),
])
def test_measurability_recist(lesion, slice_mm, expected):
    assert measurability(lesion, slice_thickness_mm=slice_mm)[0] == expected


@pytest.mark.parametrize("lesion, expected", [
    (TargetLesion(lesion="A", long_axis_mm=12, perpendicular_mm=10), "measurable"),
    (TargetLesion(lesion="A", long_axis_mm=12, perpendicular_mm=9), "non_measurable"),
    (TargetLesion(lesion="A", long_axis_mm=12), "non_measurable"),
])
def test_measurability_rano_bidimensional(lesion, expected):
    assert measurability(lesion, criterion="rano")[0] == expected


def test_kept_as_given_when_rules_hold():
    given = [_lesion("A", 12), _lesion("B", 30), _lesion("C", 20, organ="liver")]
    selection = select_targets(given)
    assert selection.kept_as_given and [t.lesion for t in selection.targets] == ["A", "B", "C"]


def test_five_targets_two_per_organ_largest_first():
    given = [_lesion("L1", 20), _lesion("L2", 40), _lesion("L3", 30),  # lung: keep L2, L3
             _lesion("H1", 50, organ="liver"), _lesion("H2", 11, organ="liver"),
             _lesion("K1", 25, organ="kidney"), _lesion("B1", 15, organ="bone")]
    selection = select_targets(given)
    assert [t.lesion for t in selection.targets] == ["H1", "L2", "L3", "K1", "B1"]
    assert {lesion.lesion for lesion, _ in selection.non_targets} == {"L1", "H2"}
    assert not selection.kept_as_given


def test_all_nodes_one_organ():
    given = [_lesion("N1", 20, nodal=True, organ="neck"), _lesion("N2", 18, nodal=True, organ="axilla"),
             _lesion("N3", 16, nodal=True, organ="groin")]
    selection = select_targets(given)
    assert [t.lesion for t in selection.targets] == ["N1", "N2"]
    assert [lesion.lesion for lesion, _ in selection.non_targets] == ["N3"]


def test_pathological_node_non_target_and_normal_node_ignored():
    selection = select_targets([_lesion("A", 20), _lesion("N1", 12, nodal=True), _lesion("N2", 8, nodal=True)])
    assert [t.lesion for t in selection.targets] == ["A"]
    assert [lesion.lesion for lesion, _ in selection.non_targets] == ["N1"]
    assert [lesion.lesion for lesion in selection.normal] == ["N2"]


def test_no_organ_no_per_organ_limit():
    selection = select_targets([TargetLesion(lesion=f"X{i}", long_axis_mm=20 + i) for i in range(4)])
    assert len(selection.targets) == 4
    assert any("organ not given" in note for note in selection.notes)


def test_demoted_targets_followed_as_non_targets():
    organs = {"L1": "lung", "L2": "lung", "L3": "lung"}
    result = assess(course(
        tp(day(-3), L1=30, L2=20, L3=15, organs=organs),
        tp(week(6), L1=30, L2=20, L3=0, organs=organs),
        tp(week(12), L1=0, L2=0, L3=0, organs=organs),
    ), "recist")
    base = result.timepoints[0]
    assert "targets selected" in base.reason and "L3" in base.reason
    assert "L3 absent" in result.timepoints[1].reason
    assert result.timepoints[2].response == "CR"


def test_demoted_node_absent_under_10mm():
    result = assess(course(tp(day(-3), T1=30, N1=node(12)), tp(week(6), T1=0, N1=node(9))), "recist")
    assert result.timepoints[-1].response == "CR"
    assert "N1 absent" in result.timepoints[-1].reason


def test_slice_thickness_used_at_baseline():
    base = {**tp(day(-3), T1=15, T2=30), "slice_thickness_mm": 8.0}
    result = assess(course(base, tp(week(6), T1=15, T2=30)), "recist")
    assert "T1: 15.0 mm < 16.0 mm" in result.timepoints[0].reason


def test_fragment_of_demoted_lesion_keeps_it_present():
    organs = {"L1": "lung", "L2": "lung", "L3": "lung", "L3a": "lung"}
    result = assess(course(
        tp(day(-3), L1=30, L2=20, L3=15, organs=organs),
        tp(week(6), L1=30, L2=20, L3a=lesion(5, split_from="L3"), organs=organs),
    ), "recist")
    assert "L3 present" in result.timepoints[-1].reason
