"""The course builder's steps through ``build_course``: each tracking outcome (split, too small, not found by a
carried-over segmentation, untracked or failed scan), the baseline fallback and the glioma compartments, with the
course's key order (the run writes the course as JSON)."""

from __future__ import annotations

import datetime as dt

from imaging.io import Geometry
from imaging.measurement import LesionMeasurement
from imaging.registration.tracking import LabelMatch, LesionState, TrackingResult
from imaging.segmentation import LesionMetadata
from pipelines.dataset.alignment import tracking_by_labels
from pipelines.dataset.course_builder import FailedTimepoint, build_course
from pipelines.dataset.discover import ClinicalContext
from pipelines.dataset.stages import MeasuredTimepoint

P0 = (0.0, 0.0, 0.0)
GEOMETRY = Geometry((10, 10, 10), (1.0, 1.0, 1.0), P0, (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
BASE, FU1, FU2 = (dt.date(2024, m, 2) for m in (2, 4, 6))
CONTEXT = ClinicalContext(treatment_start=BASE)


def _m(label: int, long_axis: float, short_axis: float | None = None) -> LesionMeasurement:
    ends = (P0, P0)
    sa = 0.7 * long_axis if short_axis is None else short_axis
    return LesionMeasurement(label, 100, long_axis ** 3 / 2, P0, long_axis, ends, 0, sa, ends,
                             0.7 * long_axis, 0.7 * long_axis ** 2, 0, long_axis, 3, ends, long_axis, ends, ends, 1.0)


def _tp(date: dt.date, lesions: dict[int, float], **kw) -> MeasuredTimepoint:
    return MeasuredTimepoint("P", date, "1.2", "1.2.3", "CT", 2.0, GEOMETRY, tuple(_m(v, la) for v, la in lesions.items()), **kw)


def _split_tracking() -> TrackingResult:
    """T1 (target) splits into labels 11 and 12 at FU1; NT1 (non-target) into 13 and 14."""
    b, f = BASE.isoformat(), FU1.isoformat()
    matches = {b: {v: LabelMatch(v, (v,), "baseline", P0, 0.0) for v in (1, 2)},
               f: {11: LabelMatch(11, (1,), "split", P0, 0.0), 12: LabelMatch(12, (1,), "split", P0, 0.0),
                   13: LabelMatch(13, (2,), "split", P0, 0.0), 14: LabelMatch(14, (2,), "split", P0, 0.0)}}
    histories = {1: (LesionState(b, "baseline", (1,)), LesionState(f, "split", (11, 12))),
                 2: (LesionState(b, "baseline", (2,)), LesionState(f, "split", (13, 14)))}
    return TrackingResult((b, f), matches, histories)


META = {1: LesionMetadata("T1", "liver"), 2: LesionMetadata("NT1", "bone", target=False)}


def test_a_target_that_splits_is_recorded_as_fragments_and_a_non_target_keeps_one_status():
    tps = [_tp(BASE, {1: 30, 2: 12}), _tp(FU1, {11: 12, 12: 8, 13: 4, 14: 3})]
    course, rows, note = build_course("P", tps, CONTEXT, META, _split_tracking())
    follow = course["timepoints"][1]
    assert [(t["lesion"], t["long_axis_mm"], t["split_from"]) for t in follow["target"]] == [
        ("T1.1", 12.0, "T1"), ("T1.2", 8.0, "T1")]
    assert follow["non_target"] == [{"lesion": "NT1", "organ": "bone", "status": "present"}]
    assert [r["tracking"] for r in rows if r["lesion_id"] == "T1.1"] == ["split;fragment_of:T1"]
    assert note is None


def test_a_target_under_too_small_mm_is_too_small_to_measure_and_a_node_keeps_its_measurement():
    meta = {1: LesionMetadata("T1", "lung"), 2: LesionMetadata("N1", "node", nodal=True)}
    tracking = tracking_by_labels(BASE, {BASE: [1, 2], FU1: [1, 2]})
    tps = [_tp(BASE, {1: 20, 2: 25}), _tp(FU1, {1: 3, 2: 4})]
    for too_small, expected in ((5.0, True), (0.0, False)):
        course, rows, _ = build_course("P", tps, CONTEXT, meta, tracking, too_small_mm=too_small)
        t1, n1 = course["timepoints"][1]["target"]
        assert t1.get("too_small_to_measure", False) is expected and t1["long_axis_mm"] == 3.0
        assert "too_small_to_measure" not in n1
        assert ("too_small_to_measure" in rows[2]["tracking"]) is expected


def test_a_lesion_a_carried_over_segmentation_missed_is_not_evaluated_not_gone():
    tracking = tracking_by_labels(BASE, {BASE: [1, 2], FU1: []})
    tps = [_tp(BASE, {1: 30, 2: 12}), _tp(FU1, {})]
    course, rows, _ = build_course("P", tps, CONTEXT, META, tracking, not_found={FU1: {1}})
    follow = course["timepoints"][1]
    assert follow["target"] == [{"lesion": "T1", "organ": "liver", "nodal": False, "long_axis_mm": None, "short_axis_mm": None}]
    assert follow["non_target"] == [{"lesion": "NT1", "organ": "bone", "status": "absent"}]
    assert [(r["lesion_id"], r["status"]) for r in rows[2:]] == [("T1", "not found"), ("NT1", "absent")]


def test_untracked_and_failed_scans_are_not_evaluated_with_the_course_keys_in_order():
    tracking = tracking_by_labels(BASE, {BASE: [1, 2]})
    tps = [_tp(BASE, {1: 30, 2: 12}), _tp(FU1, {7: 15}), FailedTimepoint("P", FU2, "unreadable")]
    course, rows, _ = build_course("P", tps, CONTEXT, META, tracking, untracked={FU1: "registration failed"})
    _, untracked, failed = course["timepoints"]
    assert list(untracked) == ["date", "target", "non_target", "new_lesions", "slice_thickness_mm"]
    assert list(failed) == ["date", "target", "non_target", "new_lesions"]
    for entry in (untracked, failed):
        assert entry["target"][0]["long_axis_mm"] is None and entry["non_target"][0]["status"] == "not_evaluated"
    assert [(r["lesion_id"], r["tracking"], r["tracked_by"]) for r in rows if r["date"] == FU1.isoformat()] == [
        ("label 7", "untracked", "registration failed")]
    assert list(course) == ["patient_id", "context", "timepoints"]


def test_without_a_treatment_start_the_first_scan_is_the_baseline():
    tracking = tracking_by_labels(BASE, {BASE: [1], FU1: [1]})
    course, _, note = build_course("P", [_tp(FU1, {1: 20}), _tp(BASE, {1: 30})], None, META, tracking)
    assert note == "no treatment start in the clinical data: the first scan is the baseline"
    assert course["context"] == {"treatment_start": BASE.isoformat(), "radiotherapy_end": None, "immunotherapy": False}
    assert [t["date"] for t in course["timepoints"]] == [BASE.isoformat(), FU1.isoformat()]


def test_without_a_treatment_start_the_rest_of_the_context_is_kept():
    """Immunotherapy (iRECIST's pseudoprogression flags) and the radiotherapy end (RANO's 12-week window) still
    reach the criteria when the clinical data give no treatment start."""
    tracking = tracking_by_labels(BASE, {BASE: [1], FU1: [1]})
    context = ClinicalContext(radiotherapy_end=BASE - dt.timedelta(days=30), immunotherapy=True, tumour="enhancing")
    course, _, note = build_course("P", [_tp(FU1, {1: 20}), _tp(BASE, {1: 30})], context, META, tracking)
    assert note == "no treatment start in the clinical data: the first scan is the baseline"
    assert course["context"]["treatment_start"] == BASE.isoformat()
    assert course["context"]["immunotherapy"] is True
    assert course["context"]["radiotherapy_end"] == (BASE - dt.timedelta(days=30)).isoformat()
    assert course["context"]["tumour"] == "enhancing"


def test_gliomas_get_the_flair_burden_as_a_non_enhancing_target():
    flair = {"volume_mm3": 5000.0, "long_axis_mm": 30.0, "perpendicular_mm": 20.0, "bidimensional_product_mm2": 600.0}
    tracking = tracking_by_labels(BASE, {BASE: [1], FU1: [1]})
    tps = [_tp(BASE, {1: 30}, flair=flair), _tp(FU1, {1: 30}, flair={**flair, "volume_mm3": 7000.0})]
    course, rows, _ = build_course("P", tps, CONTEXT, {1: LesionMetadata("T1", "brain")}, tracking, flair_increase_pct=25.0)
    follow = course["timepoints"][1]
    assert [(t["lesion"], t["component"]) for t in follow["target"]] == [("T1", "enhancing"), ("FLAIR", "non_enhancing")]
    assert follow["clinical"]["t2_flair"] == "increased" and follow["clinical"]["enhancement"] == "stable"
    assert [r["compartment"] for r in rows] == ["enhancing", "enhancing", "flair_burden", "flair_burden"]
