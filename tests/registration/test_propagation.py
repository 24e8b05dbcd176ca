"""propagate_mask, invert_transform and lesion_exclusion_mask on analytic data."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from imaging.registration import invert_transform, lesion_exclusion_mask, propagate_mask
from tests.registration.factory import Ball, grid_image, label_map, rigid

BALLS = [Ball(1, (-20.0, 0.0, 0.0), (10.0, 8.0, 9.0)), Ball(2, (22.0, 10.0, -6.0), (6.0, 6.0, 6.0))]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_propagated_labels_match_the_analytic_followup():
    base_grid = grid_image(size=(64, 64, 32), spacing=(1.5, 1.5, 2.0), origin=(-47.0, -47.0, -31.0))
    # The follow-up grid differs: other spacing, origin and an oblique direction.
    a = np.deg2rad(10.0)
    direction = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    fu_grid = grid_image(size=(60, 60, 24), spacing=(1.6, 1.6, 2.5), origin=(-45.0, -50.0, -28.0), direction=direction)
    t = rigid((2.0, -1.0, 6.0), (3.0, -4.0, 2.5), centre=(1.0, 2.0, 0.0))
    baseline = label_map(BALLS, base_grid)
    warped = propagate_mask(baseline, fu_grid, t)
    truth = label_map(BALLS, fu_grid, t)
    assert warped.GetSize() == fu_grid.GetSize() and warped.GetDirection() == fu_grid.GetDirection()
    w, tr = sitk.GetArrayViewFromImage(warped), sitk.GetArrayViewFromImage(truth)
    for label in (1, 2):
        # Nearest-neighbour resampling of a 1.5-2 mm voxelisation: boundary voxels only.
        assert dice(w == label, tr == label) > 0.85, label


def test_no_transform_means_same_frame():
    grid = grid_image(size=(32, 32, 16), spacing=(2.0, 2.0, 2.0), origin=(-31.0, -31.0, -15.0))
    labels = label_map([Ball(3, (0.0, 0.0, 0.0), (8.0, 8.0, 8.0))], grid)
    out = propagate_mask(labels, grid, None)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(out), sitk.GetArrayViewFromImage(labels))


def test_invert_composite_with_bspline():
    grid = grid_image(size=(40, 40, 20), spacing=(2.0, 2.0, 3.0), origin=(-39.0, -39.0, -28.5))
    bs = sitk.BSplineTransformInitializer(grid, [3, 3, 2], 3)
    p = np.zeros(bs.GetNumberOfParameters())
    p[len(p) // 6] = 3.0
    bs.SetParameters(p.tolist())
    t = sitk.CompositeTransform([rigid((0.0, 0.0, 5.0), (2.0, 1.0, -1.0)), bs])  # bspline, then rigid
    inv = invert_transform(t, grid)
    rng = np.random.default_rng(0)
    pts = rng.uniform(-25, 25, size=(100, 3)) * np.array([1.0, 1.0, 0.6])
    back = np.array([inv.TransformPoint(t.TransformPoint(tuple(q))) for q in pts.tolist()])
    # The B-spline part is inverted on a 2 mm field: well under a voxel.
    assert np.abs(back - pts).max() < 0.1


def test_linear_inverse_is_exact():
    t = rigid((3.0, -2.0, 7.0), (5.0, -1.0, 2.0), centre=(10.0, 0.0, -5.0))
    inv = invert_transform(t, grid_image())
    x = (12.0, -7.0, 3.0)
    np.testing.assert_allclose(inv.TransformPoint(t.TransformPoint(x)), x, atol=1e-9)


def test_lesion_exclusion_mask_margin():
    grid = grid_image(size=(64, 64, 20), spacing=(1.0, 1.0, 4.0), origin=(-31.5, -31.5, -38.0))
    labels = label_map([Ball(1, (0.0, 0.0, 0.0), (3.0, 3.0, 3.0))], grid)
    mask = lesion_exclusion_mask(labels, margin_mm=10.0)
    arr = sitk.GetArrayViewFromImage(mask)
    assert mask.GetPixelID() == sitk.sitkUInt8
    # Voxel centres: in-plane along x at 0.5 mm steps from the lesion edge (|x| <= 2.5 inside).
    row = arr[9, 32, :]  # slice z = -2 mm, y = 0.5 mm
    xs = np.arange(64) - 31.5
    excluded = xs[row == 0]
    assert excluded.min() >= -14.0 and excluded.max() <= 14.0
    assert excluded.min() < -11.0 and excluded.max() > 11.0
    assert arr[0].all() and arr[-1].all()  # 36 mm away along z: kept
    empty = label_map([], grid)
    assert sitk.GetArrayFromImage(lesion_exclusion_mask(empty)).all()
