"""Registration accuracy on the sample data's known transforms (issue 5).

TRE = |T_est(x) - T_true(x)| for baseline points x: the lesion centroids (which the radial
lesion scaling leaves fixed) and 20 body points (baseline above an intensity threshold, fixed
seed per patient). T_true is truth.json's matrix_4x4 (baseline LPS -> follow-up LPS).

The 1 mm bound is the issue's. Measured here (docs/registration.md): rigid TRE95 0.04-0.25 mm,
affine with the lesions masked out (30 mm) 0.05-0.57 mm; the brain MR (6.5 mm slices, the
tumour magnified 1.3x within 61 mm of its centre) is the hardest case for the affine, which
without masks reaches 1.05 mm there.
"""

from __future__ import annotations

import numpy as np
import pytest

from imaging.registration import register, target_registration_error

pytestmark = pytest.mark.sample_data

TRE95_MAX_MM = 1.0  # issue 5
# Every timepoint that is not the baseline (the generator's PATIENTS table), P003's
# pre-baseline scan included.
FOLLOWUPS = [
    ("P001", "2024-02-13"), ("P001", "2024-03-26"), ("P001", "2024-05-07"), ("P001", "2024-06-18"),
    ("P002", "2024-05-06"), ("P002", "2024-06-17"), ("P002", "2024-07-29"), ("P002", "2024-09-09"),
    ("P003", "2023-11-06"), ("P003", "2024-02-19"), ("P003", "2024-04-01"), ("P003", "2024-05-13"),
    ("P003", "2024-06-24"),
]


def test_followup_list_matches_truth(sample_truth):
    listed = {(pid, tp["date"]) for pid, t in sample_truth.items() for tp in t["timepoints"] if not tp["is_baseline"]}
    assert listed == set(FOLLOWUPS)


@pytest.mark.parametrize("pid, date", FOLLOWUPS)
def test_rigid_tre95_at_most_1mm(sample_registrations, pid, date):
    res = sample_registrations.result(pid, date, "rigid")
    assert res.status == "ok", res.problems
    pair = sample_registrations.pair(pid, date)
    tre = target_registration_error(res.transform, pair.truth, pair.points)
    assert np.percentile(tre, 95) <= TRE95_MAX_MM, np.round(tre, 3)
    assert res.scales == pytest.approx((1.0, 1.0, 1.0), abs=1e-9)  # a rigid fit does not scale


@pytest.mark.parametrize("pid, date", FOLLOWUPS)
def test_affine_tre95_at_most_1mm_with_lesions_masked_out(sample_registrations, pid, date):
    res = sample_registrations.result(pid, date, "affine")
    assert res.status == "ok", res.problems
    pair = sample_registrations.pair(pid, date)
    (stage, rigid_fit), (stage2, affine_fit) = res.stage_transforms
    assert (stage, stage2) == ("rigid", "affine")
    assert affine_fit.GetName() == "AffineTransform"
    for t in (rigid_fit, res.transform):
        tre = target_registration_error(t, pair.truth, pair.points)
        assert np.percentile(tre, 95) <= TRE95_MAX_MM, np.round(tre, 3)
    assert res.metric_final < res.metric_initial


def test_same_result_twice(sample_registrations):
    p = sample_registrations.patient("P002")
    image, _ = sample_registrations.followup("P002", "2024-07-29")
    first = register(p.image, image)
    second = register(p.image, image)
    # Bit for bit: fixed seed, fixed level order, same thread count.
    assert first.transform.GetParameters() == second.transform.GetParameters()
    assert first.transform.GetFixedParameters() == second.transform.GetFixedParameters()
    assert first.metric_final == second.metric_final


def test_landmark_error_reported(sample_registrations, sample_truth):
    """The lesion centre is a landmark: baseline centre <-> follow-up centre (truth.json)."""
    t = sample_truth["P002"]
    base = next(tp for tp in t["timepoints"] if tp["is_baseline"])
    fu = next(tp for tp in t["timepoints"] if tp["date"] == "2024-06-17")
    p = sample_registrations.patient("P002")
    image, _ = sample_registrations.followup("P002", "2024-06-17")
    res = register(p.image, image, landmarks=([base["lesions"][0]["center_lps"]], [fu["lesions"][0]["center_lps"]]))
    assert res.landmark_error_mm is not None and res.landmark_error_max_mm is not None
    # truth.json rounds centres to 1e-4 mm; the fit is within the 1 mm TRE bound.
    assert res.landmark_error_mm <= TRE95_MAX_MM
    assert res.to_dict()["landmark_error_mm"] == pytest.approx(res.landmark_error_mm)
