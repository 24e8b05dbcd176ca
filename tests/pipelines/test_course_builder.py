"""The course built from tracking, in the cases where RECIST's conventions decide the sum (Appendix I):
coalesced lesions carried once by the target the engine keeps, new lesions that split or coalesce, scans
before the baseline, pre-baseline scans tracked against the baseline alone. The course goes through the
response engine, so a course it would reject fails here."""

from __future__ import annotations

import datetime as dt

import pytest

from imaging.io import Geometry
from imaging.measurement import LesionMeasurement
from imaging.registration.tracking import LabelMatch, LesionState, TrackingResult
from imaging.response import assess, course_from_dict
from imaging.segmentation import LesionMetadata
from pipelines.dataset.alignment import merge_tracking, tracking_by_labels
from pipelines.dataset.course_builder import build_course
from pipelines.dataset.discover import ClinicalContext
from pipelines.dataset.stages import MeasuredTimepoint

P0 = (0.0, 0.0, 0.0)
GEOMETRY = Geometry((10, 10, 10), (1.0, 1.0, 1.0), P0, (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
PRE, BASE, FU1, FU2, FU3 = (dt.date(2024, m, 2) for m in (1, 2, 4, 6, 8))


def _m(label: int, long_axis: float) -> LesionMeasurement:
    ends = (P0, P0)
    return LesionMeasurement(label, 100, long_axis ** 3 / 2, P0, long_axis, ends, 0, 0.7 * long_axis, ends,
                             0.7 * long_axis, 0.7 * long_axis ** 2, 0, long_axis, 3, ends, long_axis, ends, ends, 1.0)


def _tp(date: dt.date, lesions: dict[int, float]) -> MeasuredTimepoint:
    return MeasuredTimepoint("P", date, "1.2", "1.2.3", "CT", 2.0, GEOMETRY, tuple(_m(v, la) for v, la in lesions.items()))


def _tracking(scans: dict[dt.date, dict[int, tuple[tuple[int, ...], str]]],
              histories: dict[int, list[tuple[dt.date, str, tuple[int, ...], int | None]]]) -> TrackingResult:
    """scans: date -> label -> (lesion ids, status); histories: id -> [(date, status, labels, merged_into)]."""
    names = [BASE.isoformat()] + [d.isoformat() for d in sorted(scans) if d != BASE]
    matches = {d.isoformat(): {v: LabelMatch(v, ids, st, P0, 0.0) for v, (ids, st) in labels.items()} for d, labels in scans.items()}
    return TrackingResult(tuple(names), matches,
                          {i: tuple(LesionState(d.isoformat(), st, labels, into) for d, st, labels, into in h) for i, h in histories.items()})


def _course(tps, tracking, metadata, immunotherapy=False):
    context = ClinicalContext(treatment_start=BASE + dt.timedelta(days=3), immunotherapy=immunotherapy)
    course, rows, _ = build_course("P", tps, context, metadata, tracking)
    return course, rows, course_from_dict(course, source="test")


def _targets(course: dict, index: int) -> dict[str, dict]:
    return {t["lesion"]: t for t in course["timepoints"][index]["target"]}


def test_coalesced_lesions_are_carried_by_the_largest_baseline_target():
    """T1 40, T2 30, T3 15 mm, all liver (T3 is the third in its organ: a non-target for the engine). T2 and T3
    coalesce into a 48 mm mass matched to T3: the mass is carried by T2, the target the engine keeps, so the
    sum is 40 + 48 = 88 mm (+26 %: PD), not 40 (a response)."""
    meta = {i: LesionMetadata(f"T{i}", "liver") for i in (1, 2, 3)}
    tracking = _tracking(
        {BASE: {1: ((1,), "baseline"), 2: ((2,), "baseline"), 3: ((3,), "baseline")},
         FU1: {1: ((1,), "matched"), 9: ((3, 2), "merged")}},
        {1: [(BASE, "baseline", (1,), None), (FU1, "matched", (1,), None)],
         2: [(BASE, "baseline", (2,), None), (FU1, "merged", (9,), 3)],
         3: [(BASE, "baseline", (3,), None), (FU1, "merged", (9,), None)]},
    )
    course, rows, parsed = _course([_tp(BASE, {1: 40, 2: 30, 3: 15}), _tp(FU1, {1: 40, 9: 48})], tracking, meta)
    follow = _targets(course, 1)
    assert follow["T2"]["long_axis_mm"] == 48 and "coalesced_into" not in follow["T2"]
    assert follow["T3"]["coalesced_into"] == "T2" and follow["T3"]["long_axis_mm"] == 0
    result = assess(parsed, "recist").timepoints[1]
    assert result.sum_mm == pytest.approx(88.0) and result.response == "PD"
    assert {r["lesion_id"]: r["status"] for r in rows if r["date"] == FU1.isoformat()} == {"T1": "present", "T2": "present", "T3": "coalesced"}


def test_targets_coalescing_with_a_non_target_count_the_mass_once():
    meta = {1: LesionMetadata("T1", "lung"), 2: LesionMetadata("T2", "liver"), 3: LesionMetadata("NT1", "bone", target=False)}
    tracking = _tracking(
        {BASE: {v: ((v,), "baseline") for v in (1, 2, 3)}, FU1: {5: ((3, 1, 2), "merged")}},
        {3: [(BASE, "baseline", (3,), None), (FU1, "merged", (5,), None)],
         1: [(BASE, "baseline", (1,), None), (FU1, "merged", (5,), 3)],
         2: [(BASE, "baseline", (2,), None), (FU1, "merged", (5,), 3)]},
    )
    course, _, parsed = _course([_tp(BASE, {1: 25, 2: 20, 3: 12}), _tp(FU1, {5: 45})], tracking, meta)
    follow = _targets(course, 1)
    assert follow["T1"]["long_axis_mm"] == 45 and follow["T2"]["coalesced_into"] == "T1"
    assert assess(parsed, "recist").timepoints[1].sum_mm == pytest.approx(45.0)  # not 90


def test_a_new_lesion_that_splits_stays_one_new_lesion():
    meta = {1: LesionMetadata("T1", "lung")}
    tracking = _tracking(
        {BASE: {1: ((1,), "baseline")}, FU1: {1: ((1,), "matched"), 2: ((2,), "new")},
         FU2: {1: ((1,), "matched"), 3: ((2,), "split"), 4: ((2,), "split")}},
        {1: [(BASE, "baseline", (1,), None), (FU1, "matched", (1,), None), (FU2, "matched", (1,), None)],
         2: [(FU1, "new", (2,), None), (FU2, "split", (3, 4), None)]},
    )
    course, _, parsed = _course([_tp(BASE, {1: 30}), _tp(FU1, {1: 30, 2: 12}), _tp(FU2, {1: 30, 3: 7, 4: 6})], tracking, meta,
                                immunotherapy=True)
    new = course["timepoints"][2]["new_lesions"]
    assert [(n["lesion"], n["long_axis_mm"]) for n in new] == [("L2", 13.0)]
    calls = [t.response for t in assess(parsed, "irecist").timepoints]
    assert calls[1] == "iUPD" and calls[2] != "iCPD"  # no "additional new lesion" from its fragments


def test_a_new_lesion_that_coalesces_into_a_target_is_still_listed():
    meta = {1: LesionMetadata("T1", "lung")}
    tracking = _tracking(
        {BASE: {1: ((1,), "baseline")}, FU1: {1: ((1,), "matched"), 2: ((2,), "new")}, FU2: {1: ((1, 2), "merged")}},
        {1: [(BASE, "baseline", (1,), None), (FU1, "matched", (1,), None), (FU2, "merged", (1,), None)],
         2: [(FU1, "new", (2,), None), (FU2, "merged", (1,), 1)]},
    )
    course, _, _ = _course([_tp(BASE, {1: 30}), _tp(FU1, {1: 30, 2: 12}), _tp(FU2, {1: 44})], tracking, meta)
    assert course["timepoints"][2]["new_lesions"] == [
        {"lesion": "L2", "organ": "unknown", "nodal": False, "long_axis_mm": None, "short_axis_mm": None}]
    assert _targets(course, 2)["T1"]["long_axis_mm"] == 44


def test_a_scan_before_the_baseline_lists_the_baseline_targets():
    """Pre-baseline sums are what the growth-rate ratio (hyperprogression) is computed from."""
    meta = {1: LesionMetadata("T1", "lung")}
    tracking = tracking_by_labels(BASE, {PRE: [1], BASE: [1], FU1: [1]})
    course, _, parsed = _course([_tp(PRE, {1: 20}), _tp(BASE, {1: 22}), _tp(FU1, {1: 40})], tracking, meta, immunotherapy=True)
    assert _targets(course, 0)["T1"]["long_axis_mm"] == 20
    first = assess(parsed, "irecist").timepoints[2]
    # 20 -> 22 mm in 31 days, then 22 -> 40 mm in 60 days: TGR ratio 4.6 (Champiat 2017)
    assert "hyperprogression" in first.flags and "ratio 4.6" in first.reason


def test_scans_before_the_baseline_are_tracked_against_the_baseline_alone():
    """With labels: a baseline lesion absent before the baseline is not 'reappeared' at the first follow-up,
    and a lesion seen only before the baseline is new when it shows up after it."""
    tracking = tracking_by_labels(BASE, {PRE: [5], BASE: [1], FU1: [1, 5]})
    assert tracking.state(1, FU1.isoformat()).reappeared is False
    assert tracking.state(1, PRE.isoformat()).status == "disappeared"
    assert tracking.matches[FU1.isoformat()][5].status == "new"
    course, _, _ = _course([_tp(PRE, {5: 8}), _tp(BASE, {1: 22}), _tp(FU1, {1: 25, 5: 12})], tracking,
                           {1: LesionMetadata("T1", "lung")})
    assert [n["lesion"] for n in course["timepoints"][2]["new_lesions"]] == ["L5"]


def test_merge_tracking_keeps_the_baseline_first_and_gives_new_lesions_fresh_ids():
    forward = tracking_by_labels(BASE, {BASE: [1], FU1: [1, 2]})
    backward = tracking_by_labels(BASE, {BASE: [1], PRE: [1, 2]})
    merged = merge_tracking(forward, backward)
    assert merged.timepoints[0] == BASE.isoformat()
    assert merged.histories[1][0].timepoint == BASE.isoformat()
    assert merged.state(1, PRE.isoformat()).status == "matched"
    assert merged.matches[PRE.isoformat()][2].lesion_ids == (3,)  # not the follow-up's new lesion 2
    assert merged.matches[FU1.isoformat()][2].lesion_ids == (2,)
