"""track_lesions / recist_values on analytic label maps with known correspondence.

The scenario (baseline coordinates, mm; each follow-up in its own frame, moved by a known rigid
transform, with label values that mean nothing):

* A (id 1): one ellipsoid that splits into two fragments at t1 and stays split at t2;
* B (id 2) and C (id 3): two balls 16 mm apart that grow and coalesce into one blob at t1
  (measured under B's id, C recorded 0);
* D (id 4): unchanged at t1, gone at t2, back at t3;
* E: new at t1 (gets id 5) and still there at t2 and t3, when it has moved 6 mm;
* F: new at t3 (id 6).
"""

from __future__ import annotations

import pytest
import SimpleITK as sitk

from imaging.registration import TrackingError, recist_values, track_lesions
from tests.registration.factory import Ball, grid_image, label_map, rigid

BASE = [
    Ball(1, (-30.0, -20.0, 0.0), (12.0, 8.0, 9.0)),
    Ball(2, (20.0, -30.0, 0.0), (5.0, 5.0, 6.0)),
    Ball(3, (36.0, -30.0, 0.0), (5.0, 5.0, 6.0)),
    Ball(4, (-30.0, 30.0, -15.0), (6.0, 6.0, 6.0)),
]
FRAGMENTS = [Ball(0, (-38.0, -20.0, 0.0), (4.0, 4.0, 5.0)), Ball(0, (-22.0, -20.0, 0.0), (4.0, 4.0, 5.0))]
# B's side is the larger: the blob's centroid is nearer B, so B is the one it is matched to.
COALESCED = [Ball(0, (20.0, -30.0, 0.0), (10.0, 8.0, 7.0)), Ball(0, (36.0, -30.0, 0.0), (8.0, 7.0, 7.0))]
D = Ball(0, (-30.0, 30.0, -15.0), (6.0, 6.0, 6.0))
E = Ball(0, (35.0, 35.0, 15.0), (5.0, 5.0, 5.0))
E_MOVED = Ball(0, (39.0, 39.0, 12.0), (6.0, 6.0, 6.0))
F = Ball(0, (0.0, 40.0, -24.0), (4.0, 4.0, 4.0))


def relabel(balls, labels):
    return [Ball(label, b.centre, b.radii) for b, label in zip(balls, labels)]


@pytest.fixture(scope="module")
def scenario():
    grid = grid_image(size=(64, 64, 32), spacing=(2.0, 2.0, 2.0), origin=(-63.0, -63.0, -31.0))
    t1 = rigid((1.0, -2.0, 5.0), (4.0, -3.0, 2.0))
    t2 = rigid((-2.0, 1.0, -4.0), (-3.0, 5.0, -1.0))
    t3 = rigid((0.0, 0.0, 3.0), (2.0, 2.0, 2.0))
    baseline = label_map(BASE, grid)
    # Each later ball overwrites: the two coalescing balls share one label.
    f1 = label_map(relabel(FRAGMENTS, (7, 3)) + relabel(COALESCED, (9, 9)) + relabel([D, E], (2, 5)), grid, t1)
    f2 = label_map(relabel(FRAGMENTS, (1, 2)) + relabel(COALESCED, (3, 3)) + relabel([E], (4,)), grid, t2)
    f3 = label_map(relabel(FRAGMENTS, (11, 12)) + relabel(COALESCED, (13, 13)) + relabel([D, E_MOVED, F], (14, 15, 16)), grid, t3)
    followups = [("t1", f1, t1), ("t2", f2, t2), ("t3", f3, t3)]
    return baseline, followups


def test_split_merge_new_disappeared_reappeared(scenario):
    baseline, followups = scenario
    res = track_lesions(baseline, followups)
    assert res.timepoints == ("baseline", "t1", "t2", "t3")
    assert res.label_ids("baseline") == {1: (1,), 2: (2,), 3: (3,), 4: (4,)}
    assert res.label_ids("t1") == {7: (1,), 3: (1,), 9: (2, 3), 2: (4,), 5: (5,)}
    assert res.label_status("t1") == {7: "split", 3: "split", 9: "merged", 2: "matched", 5: "new"}
    assert res.label_ids("t2") == {1: (1,), 2: (1,), 3: (2, 3), 4: (5,)}
    assert res.label_status("t2") == {1: "split", 2: "split", 3: "merged", 4: "matched"}
    assert res.label_ids("t3") == {11: (1,), 12: (1,), 13: (2, 3), 14: (4,), 15: (5,), 16: (6,)}
    assert res.label_status("t3")[16] == "new" and res.label_status("t3")[15] == "matched"

    assert [s.status for s in res.histories[1]] == ["baseline", "split", "split", "split"]
    assert [s.status for s in res.histories[3]] == ["baseline", "merged", "merged", "merged"]
    assert res.state(3, "t1").merged_into == 2 and res.state(2, "t1").merged_into is None
    assert [s.status for s in res.histories[4]] == ["baseline", "matched", "disappeared", "matched"]
    assert res.state(4, "t3").reappeared and not res.state(4, "t1").reappeared
    assert [s.timepoint for s in res.histories[5]] == ["t1", "t2", "t3"]
    assert res.state(5, "baseline") is None
    assert res.new_lesion_ids == (5, 6)
    assert set(res.state(1, "t1").labels) == {3, 7}


def test_same_frame_needs_no_transform(scenario):
    baseline, _ = scenario
    grid = baseline
    same = label_map(relabel(BASE, (4, 3, 2, 1)), grid)  # same lesions, labels reversed
    res = track_lesions(baseline, [("fu", same, None)])
    assert res.label_ids("fu") == {4: (1,), 3: (2,), 2: (3,), 1: (4,)}
    assert set(res.label_status("fu").values()) == {"matched"}


def test_far_lesion_is_new_not_matched(scenario):
    """A lesion that appears 40 mm from a vanished one: no overlap, beyond max_distance_mm."""
    baseline, _ = scenario
    only_a = label_map([BASE[0]], baseline)
    far = label_map([Ball(1, (10.0, -20.0, 0.0), (5.0, 5.0, 5.0))], baseline)
    res = track_lesions(only_a, [("fu", far, None)], max_distance_mm=20.0)
    assert res.label_status("fu") == {1: "new"}
    assert res.state(1, "fu").status == "disappeared"
    res = track_lesions(only_a, [("fu", far, None)], max_distance_mm=45.0)
    assert res.label_status("fu") == {1: "matched"}


def test_recist_conventions(scenario):
    baseline, followups = scenario
    res = track_lesions(baseline, followups)
    measurements = {
        "baseline": {1: 24.0, 2: 10.0, 3: 10.0, 4: 12.0},
        "t1": {7: 8.0, 3: 7.5, 9: 34.0, 2: None, 5: 10.0},  # D present but too small to measure
        "t2": {1: 6.0, 2: 5.5, 3: 30.0, 4: 3.0},
    }
    values = recist_values(res, measurements, measurable_min_mm=4.0)
    assert set(values) == {"baseline", "t1", "t2"}  # t3 not measured: skipped
    t1 = values["t1"]
    assert t1[1].value_mm == pytest.approx(15.5) and t1[1].flags == ("split_fragments_summed",)
    assert t1[2].value_mm == 34.0 and t1[2].flags == ("coalesced_measured_as_one",)
    assert t1[3].value_mm == 0.0 and t1[3].flags == ("coalesced_into:2",)
    assert t1[4].value_mm == 5.0 and t1[4].flags == ("too_small_to_measure",)
    assert t1[5].value_mm == 10.0 and t1[5].status == "new"
    t2 = values["t2"]
    assert t2[4].value_mm == 0.0 and t2[4].flags == ("disappeared",)
    assert t2[5].value_mm == 5.0 and t2[5].flags == ("too_small_to_measure",)  # 3 mm < measurable_min_mm
    assert 6 not in t2  # not seen yet
    # Without the threshold, a measured 3 mm is recorded as measured (RECIST 1.1 Appendix I).
    assert recist_values(res, measurements)["t2"][5].value_mm == 3.0


def test_recist_values_need_every_label(scenario):
    baseline, followups = scenario
    res = track_lesions(baseline, followups)
    with pytest.raises(TrackingError, match="no measurement for label"):
        recist_values(res, {"t1": {7: 8.0}})


def test_bad_inputs(scenario):
    baseline, followups = scenario
    with pytest.raises(TrackingError, match="unique"):
        track_lesions(baseline, [followups[0], followups[0]])
    with pytest.raises(ValueError):
        track_lesions(baseline, followups, max_distance_mm=0)
    with pytest.raises(TrackingError, match="3-D"):
        track_lesions(sitk.Image([4, 4], sitk.sitkUInt8), [])
    with pytest.raises(KeyError, match="unknown time point"):
        track_lesions(baseline, []).label_ids("nope")


def test_to_dict_is_json_ready(scenario):
    import json

    baseline, followups = scenario
    d = track_lesions(baseline, followups).to_dict()
    assert json.loads(json.dumps(d))["labels"]["t1"]["9"]["lesion_ids"] == [2, 3]
