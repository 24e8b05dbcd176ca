"""Lesion correspondence on the sample data: 100 % right, new and vanished lesions included.

Transforms are the registrations of each follow-up to its baseline (no truth used); the
expected ids come from truth.json's lesion ids (L1 -> 1 = the baseline label, L2 -> 2 = the
first id after the baseline's labels).
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from imaging.registration import propagate_mask, recist_values, track_lesions

pytestmark = pytest.mark.sample_data

EXPECTED_ID = {"L1": 1, "L2": 2}


def _followups(sample_registrations, pid, *, relabel=None, erase=None, pre_baseline=False):
    p = sample_registrations.patient(pid)
    out = []
    for tp in p.truth["timepoints"]:
        if tp["is_baseline"] or tp["pre_baseline"] != pre_baseline:
            continue
        _, labels = sample_registrations.followup(pid, tp["date"])
        arr = sitk.GetArrayFromImage(labels)
        if erase and tp["date"] in erase:
            arr[arr == erase[tp["date"]]] = 0
        if relabel:
            lut = np.arange(max(int(arr.max()), *relabel) + 1, dtype=arr.dtype)
            for old, new in relabel.items():
                lut[old] = new
            arr = lut[arr]
        img = sitk.GetImageFromArray(arr)
        img.CopyInformation(labels)
        out.append((tp["date"], img, sample_registrations.result(pid, tp["date"], "rigid").transform))
    return p, out


def _expected(truth, date):
    tp = next(t for t in truth["timepoints"] if t["date"] == date)
    return {les["label"]: (EXPECTED_ID[les["lesion_id"]],) for les in tp["lesions"]}


@pytest.mark.parametrize("pid", ["P001", "P002", "P003"])
def test_correspondence_matches_truth(sample_registrations, pid):
    p, followups = _followups(sample_registrations, pid)
    res = track_lesions(p.labels, followups)
    for date, _, _ in followups:
        assert res.label_ids(date) == _expected(p.truth, date), date
    if pid == "P003":
        assert res.label_status("2024-05-13") == {1: "matched", 2: "new"}
        assert res.label_status("2024-06-24") == {1: "matched", 2: "matched"}
        assert res.new_lesion_ids == (2,)
        assert [s.timepoint for s in res.histories[2]] == ["2024-05-13", "2024-06-24"]
    else:
        assert all(set(res.label_status(d).values()) == {"matched"} for d, _, _ in followups)


def test_correspondence_does_not_trust_label_values(sample_registrations):
    """Follow-up labels 1 and 2 renamed 5 and 3: the ids stay those of the truth."""
    p, followups = _followups(sample_registrations, "P003", relabel={1: 5, 2: 3})
    res = track_lesions(p.labels, followups)
    assert res.label_ids("2024-05-13") == {5: (1,), 3: (2,)}
    assert res.label_ids("2024-06-24") == {5: (1,), 3: (2,)}


def test_vanished_lesion(sample_registrations):
    """P001's lesion erased at the last follow-up (a complete response): disappeared, 0 mm."""
    p, followups = _followups(sample_registrations, "P001", erase={"2024-06-18": 1})
    res = track_lesions(p.labels, followups)
    assert res.state(1, "2024-06-18").status == "disappeared"
    assert res.label_ids("2024-06-18") == {}
    values = recist_values(res, {"2024-05-07": {1: 20.0}, "2024-06-18": {}})
    assert values["2024-06-18"][1].value_mm == 0.0
    assert values["2024-06-18"][1].flags == ("disappeared",)


def test_pre_baseline_scan(sample_registrations):
    p, followups = _followups(sample_registrations, "P003", pre_baseline=True)
    res = track_lesions(p.labels, followups)
    assert res.label_ids("2023-11-06") == {1: (1,)}


def test_propagated_mask_lands_on_the_followup_lesion(sample_registrations, sample_truth):
    """The baseline lesion warped into each follow-up with the estimated transform agrees with
    the same warp by the true transform, and sits where truth puts L1's centre (the radial
    scaling keeps the centroid fixed)."""
    p = sample_registrations.patient("P001")
    slice_mm = p.labels.GetSpacing()[2]
    for tp in sample_truth["P001"]["timepoints"][1:]:
        image, _ = sample_registrations.followup("P001", tp["date"])
        res = sample_registrations.result("P001", tp["date"], "rigid")
        warped = propagate_mask(p.labels, image, res.transform)
        assert warped.GetSize() == image.GetSize() and warped.GetPixelID() == p.labels.GetPixelID()
        truly = propagate_mask(p.labels, image, sample_registrations.pair("P001", tp["date"]).truth)
        a = sitk.GetArrayViewFromImage(warped) == 1
        b = sitk.GetArrayViewFromImage(truly) == 1
        # TRE ~0.05 mm against 0.63 x 0.63 x 5 mm voxels: only boundary voxels can differ.
        assert 2 * np.count_nonzero(a & b) / (a.sum() + b.sum()) > 0.97
        idx = np.argwhere(a).mean(axis=0)[::-1]
        centre = np.asarray(warped.TransformContinuousIndexToPhysicalPoint(idx.tolist()))
        # Nearest-neighbour slices move the centroid of an 11-slice lesion by up to half a slice.
        assert np.linalg.norm(centre - np.asarray(tp["lesions"][0]["center_lps"])) < 0.5 * slice_mm + 0.5
