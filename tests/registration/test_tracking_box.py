"""Tracking works on the box of each label map that holds labels; it must see exactly what the whole grid shows.

The reference is the whole-grid computation tracking used before: every follow-up label map resampled
(nearest neighbour) onto the whole baseline grid, and flat indices read from the whole array.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from imaging.registration import TrackingError
from imaging.registration import tracking as tracking_module
from imaging.registration.propagation import invert_transform
from imaging.registration.tracking import _Boxed, _in_baseline_space
from tests.registration.factory import Ball, grid_image, label_map


def _oblique(deg_z: float, deg_x: float) -> np.ndarray:
    a, b = np.radians(deg_z), np.radians(deg_x)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def _whole_grid(labels, baseline, forward):
    arr = sitk.GetArrayFromImage(sitk.Resample(labels, baseline, forward, sitk.sitkNearestNeighbor, 0, labels.GetPixelID())).ravel()
    return {int(v): np.flatnonzero(arr == v) for v in np.unique(arr) if v != 0}


def _affine(seed: int) -> sitk.AffineTransform:
    """Baseline point -> follow-up point: rotation up to 15 deg, scales 0.85-1.2, shear, shift up to 12 mm."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    angle = np.radians(rng.uniform(-15, 15))
    axis = q[:, 0]
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    m = rot @ np.diag(rng.uniform(0.85, 1.2, size=3)) @ (np.eye(3) + 0.05 * np.triu(rng.normal(size=(3, 3)), 1))
    t = sitk.AffineTransform(3)
    t.SetMatrix(m.ravel().tolist())
    t.SetTranslation(rng.uniform(-12, 12, size=3).tolist())
    t.SetCenter((3.0, -5.0, 10.0))
    return t


@pytest.mark.parametrize("seed", range(6))
def test_boxed_resampling_equals_the_whole_grid(seed):
    # baseline: anisotropic, oblique; follow-up: another spacing, another obliquity, flipped x axis
    baseline = grid_image(size=(70, 60, 24), spacing=(1.7, 1.7, 4.0), origin=(-60.0, -50.0, -45.0), direction=_oblique(20, 8))
    direction = _oblique(-10, 0) @ np.diag([-1.0, 1.0, 1.0])
    followup_grid = grid_image(size=(90, 80, 40), spacing=(1.1, 1.3, 2.5), origin=(40.0, -50.0, -50.0), direction=direction)
    forward = _affine(seed)
    balls = [Ball(1, (5.0, 0.0, 5.0), (9.0, 7.0, 8.0)), Ball(2, (-25.0, 15.0, -10.0), (5.0, 5.0, 6.0)),
             Ball(7, (30.0, -30.0, 20.0), (4.0, 6.0, 5.0))]
    labels = label_map(balls, followup_grid, forward)
    boxed = _Boxed.of(labels, "follow-up")
    assert boxed.arr.size < 0.2 * np.prod(labels.GetSize())  # the box is a small part of the grid
    got = _in_baseline_space(labels, boxed, baseline, forward, forward.GetInverse())
    want = _whole_grid(labels, baseline, forward)
    assert sorted(want) == got.values() and len(want) >= 2
    for value, indices in want.items():
        np.testing.assert_array_equal(got.flat_indices(value), indices)


def test_labels_that_land_off_the_baseline_grid_or_partly_on_it():
    baseline = grid_image(size=(40, 40, 20), spacing=(2.0, 2.0, 3.0), origin=(-40.0, -40.0, -30.0))
    followup_grid = grid_image(size=(80, 80, 30), spacing=(2.0, 2.0, 3.0), origin=(-80.0, -80.0, -45.0))
    labels = label_map([Ball(1, (-70.0, 0.0, 0.0), (6.0, 6.0, 6.0)),  # outside the baseline grid
                        Ball(2, (38.0, 0.0, 0.0), (8.0, 8.0, 8.0))], followup_grid)  # across its edge
    shift = sitk.TranslationTransform(3, (0.4, -0.3, 0.2))
    boxed = _Boxed.of(labels, "follow-up")
    got = _in_baseline_space(labels, boxed, baseline, shift, shift.GetInverse())
    want = _whole_grid(labels, baseline, shift)
    assert sorted(want) == got.values() == [2]
    np.testing.assert_array_equal(got.flat_indices(2), want[2])
    empty = label_map([Ball(1, (-70.0, 0.0, 0.0), (6.0, 6.0, 6.0))], followup_grid)
    assert _in_baseline_space(empty, _Boxed.of(empty, "x"), baseline, shift, shift.GetInverse()).values() == []


def test_a_non_linear_transform_resamples_the_whole_grid():
    """A 60 mm rod bent 19 mm in its middle by a B-spline: the corners of its box say nothing of where its
    middle lands, so the whole grid is resampled (a box from the corners would lose a third of the rod)."""
    baseline = grid_image(size=(60, 60, 20), spacing=(2.0, 2.0, 3.0), origin=(-60.0, -60.0, -30.0))
    arr = np.zeros((20, 60, 60), dtype=np.uint16)
    arr[9:11, 29:31, 15:45] = 3  # along x
    labels = sitk.GetImageFromArray(arr)
    labels.CopyInformation(baseline)
    bspline = sitk.BSplineTransformInitializer(baseline, [12, 12, 4], 3)
    coef = bspline.GetCoefficientImages()[0]
    n = int(np.prod(coef.GetSize()))
    params = np.zeros(3 * n)
    for k in range(n):
        i, j, m = k % coef.GetSize()[0], (k // coef.GetSize()[0]) % coef.GetSize()[1], k // (coef.GetSize()[0] * coef.GetSize()[1])
        centre = np.asarray(coef.TransformIndexToPhysicalPoint((i, j, m)))
        params[n + k] = 40.0 * np.exp(-np.sum(centre**2) / (2 * 8.0**2))  # y displacement, a bump mid-rod
    bspline.SetParameters(params.tolist())
    composite = sitk.CompositeTransform([sitk.AffineTransform(3), bspline])
    assert abs(composite.TransformPoint((0.0, 0.0, 0.0))[1]) > 15.0 and abs(composite.TransformPoint((-30.0, 0.0, 0.0))[1]) < 1.0
    got = _in_baseline_space(labels, _Boxed.of(labels, "x"), baseline, composite, invert_transform(composite, baseline))
    want = _whole_grid(labels, baseline, composite)
    np.testing.assert_array_equal(got.flat_indices(3), want[3])


@pytest.mark.parametrize("oblique", [False, True])
def test_grids_offset_by_exactly_half_a_voxel(oblique):
    """Scanner-frame tracking (no transform) of a follow-up whose grid is offset by exactly half a voxel
    along every axis: every baseline voxel centre falls half-way between follow-up voxels. Ties go to the
    higher follow-up index, the same on the box as on the whole grid."""
    spacing = np.array([0.7, 0.7, 2.5])
    direction = _oblique(33, -17) @ np.diag([-1.0, 1.0, 1.0]) if oblique else np.eye(3)
    origin = np.array([-41.3, -38.7, -23.7])
    baseline = grid_image(size=(120, 110, 24), spacing=spacing, origin=origin, direction=direction)
    followup = grid_image(size=(120, 110, 24), spacing=spacing, origin=origin + direction @ (0.5 * spacing), direction=direction)
    centre = np.asarray(followup.TransformContinuousIndexToPhysicalPoint((60.0, 55.0, 12.0)))
    labels = label_map([Ball(1, tuple(centre), (9.0, 7.0, 8.0)), Ball(2, tuple(centre + direction @ [25.0, 0, 0]), (4.0, 5.0, 6.0))], followup)
    identity = sitk.Transform()
    got = _in_baseline_space(labels, _Boxed.of(labels, "follow-up"), baseline, identity, identity)
    want = _whole_grid(labels, baseline, tracking_module._tie_broken(identity, labels))
    assert got.values() == [1, 2]
    for value in (1, 2):
        np.testing.assert_array_equal(got.flat_indices(value), want[value])


def test_a_linear_transform_resamples_only_a_box(monkeypatch):
    """The speed-up itself: with a linear transform, the grid resampled is a small box of the baseline."""
    sizes = []
    real = sitk.Resample
    monkeypatch.setattr(sitk, "Resample", lambda image, reference, *a, **k: sizes.append(reference.GetSize()) or real(image, reference, *a, **k))
    baseline = grid_image(size=(70, 60, 24), spacing=(1.7, 1.7, 4.0), origin=(-60.0, -50.0, -45.0))
    labels = label_map([Ball(1, (5.0, 0.0, 5.0), (9.0, 7.0, 8.0))], baseline)
    _in_baseline_space(labels, _Boxed.of(labels, "x"), baseline, _affine(0), _affine(0).GetInverse())
    assert len(sizes) == 1 and np.prod(sizes[0]) < 0.1 * np.prod(baseline.GetSize())


def test_empty_and_non_integer_label_maps():
    grid = grid_image(size=(10, 10, 5), origin=(-10.0, -10.0, -6.0))
    assert _Boxed.of(grid, "empty").values() == []
    bad = sitk.Cast(label_map([Ball(1, (0.0, 0.0, 0.0), (6.0, 6.0, 6.0))], grid), sitk.sitkFloat32) * 0.5
    with pytest.raises(TrackingError, match="bad: label map has non-integer values"):
        _Boxed.of(bad, "bad")


@pytest.mark.parametrize("shift", [(0.49, -0.49, 0.3), (-0.51, 0.51, -0.2), (1.0, 0.0, -1.5)])
def test_a_box_shaped_lesion_fills_its_box_to_the_last_voxel(shift):
    """A cuboid label shifted by about half a voxel: its resampled footprint reaches the very faces of the
    box that is resampled, so a box one voxel too small would lose a face."""
    baseline = grid_image(size=(40, 40, 20), spacing=(2.0, 2.0, 3.0), origin=(-40.0, -40.0, -30.0))
    arr = np.zeros((20, 40, 40), dtype=np.uint16)
    arr[6:11, 12:20, 25:31] = 4
    labels = sitk.GetImageFromArray(arr)
    labels.CopyInformation(baseline)
    forward = sitk.TranslationTransform(3, [s * sp for s, sp in zip(shift, baseline.GetSpacing())])
    got = _in_baseline_space(labels, _Boxed.of(labels, "x"), baseline, forward, forward.GetInverse())
    want = _whole_grid(labels, baseline, forward)
    np.testing.assert_array_equal(got.flat_indices(4), want[4])
