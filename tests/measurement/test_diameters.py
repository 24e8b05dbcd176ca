"""The pieces of the convention: the cap law, chords, hulls, the 3-D Feret search, mesh volume; invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial import ConvexHull
from skimage import measure as skmeasure

from imaging.measurement import cap_support, edge_midpoints_2d, measure_lesions, mesh_volume_mm3, slice_diameters
from imaging.measurement.diameters import _feret, _feret_3d, _longest_chord
from tests.data_factory import make_image
from tests.hypothesis_profiles import examples


def _disc(radius_px: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = int(2 * radius_px) + 6
    c = np.array([n / 2, n / 2]) + rng.uniform(-0.5, 0.5, size=2)
    y, x = np.mgrid[0:n, 0:n]
    return (x - c[0]) ** 2 + (y - c[1]) ** 2 <= radius_px**2, c


def test_cap_law_finds_a_smooth_boundary_to_a_fraction_of_a_pixel():
    """Discs of radius 3-40 px at random sub-pixel offsets, support in random directions: the cap
    law's boundary is unbiased (|mean| < 0.05 px) with a mean absolute error < 0.15 px, where the
    iso-0.5 contour alone reads more than 0.2 px outside on average."""
    rng = np.random.default_rng(0)
    errors, contour = [], []
    for _ in range(300):
        r = rng.uniform(3.0, 40.0)
        mask, c = _disc(r, rng)
        phi = rng.uniform(0, 2 * np.pi)
        u = np.array([np.cos(phi), np.sin(phi)])
        y, x = np.nonzero(mask)
        t = np.stack([x, y], axis=1) @ u
        half = 0.5 * (abs(u[0]) + abs(u[1]))
        tip = cap_support(t, 1.0, 3.0, half)
        assert tip is not None and t.max() <= tip <= t.max() + half  # the clamp
        errors.append(tip - (c @ u + r))
        contour.append((edge_midpoints_2d(mask) @ u).max() - (c @ u + r))
    errors = np.array(errors)
    assert abs(errors.mean()) < 0.05 and np.abs(errors).mean() < 0.15, (errors.mean(), np.abs(errors).mean())
    assert np.mean(contour) > 0.2  # what the cap law corrects


def test_cap_law_without_a_cap_gives_none():
    assert cap_support(np.array([2.0, 2.0, 2.0]), 1.0, 3.0, 0.5) is None  # one level only
    assert cap_support(np.array([5.0]), 1.0, 3.0, 0.5) is None


def test_edge_midpoints_span_the_hull_of_the_iso_contour():
    rng = np.random.default_rng(1)
    for _ in range(20):
        mask = rng.random((12, 15)) < 0.35
        mask[6, 7] = True
        pts = edge_midpoints_2d(mask)
        contour = np.concatenate(skmeasure.find_contours(np.pad(mask, 1).astype(float), 0.5))[:, ::-1] - 1.0
        # same hull: same area and every contour vertex inside the midpoints' hull (1e-9 px)
        hull = ConvexHull(pts)
        assert ConvexHull(contour).volume == pytest.approx(hull.volume, rel=1e-9)
        eq = hull.equations
        assert np.all(contour @ eq[:, :2].T + eq[:, 2] <= 1e-9)


def test_longest_chord_of_polygons():
    square = [np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0]])]
    length, p, q = _longest_chord(square, np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    assert length == pytest.approx(4.0) and p[1] == pytest.approx(0.0) and q[1] == pytest.approx(4.0)
    # a U (open at the top): along y, no chord crosses the notch between the arms
    u_shape = [np.array([[0, 0], [10, 0], [10, 10], [7, 10], [7, 3], [3, 3], [3, 10], [0, 10]], dtype=float)]
    length, p, q = _longest_chord(u_shape, np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    assert length == pytest.approx(10.0)  # an arm, not the notch
    assert p[0] <= 3.0 or p[0] >= 7.0
    length, _, _ = _longest_chord(u_shape, np.array([0.0, 1.0]), np.array([-1.0, 0.0]))
    assert length == pytest.approx(10.0)  # the base
    # two islands: the longer of the two
    islands = [np.array([[0, 0], [2, 0], [2, 3], [0, 3]], float), np.array([[5, 0], [7, 0], [7, 6], [5, 6]], float)]
    assert _longest_chord(islands, np.array([1.0, 0.0]), np.array([0.0, 1.0]))[0] == pytest.approx(6.0)


@settings(max_examples=examples(40), deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(3, 3000))
def test_pruned_3d_feret_equals_brute_force(seed, n):
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 3)) * rng.uniform(0.2, 30.0, size=3)
    if seed % 3 == 0:
        pts = pts / np.linalg.norm(pts, axis=1, keepdims=True) * 20.0  # a sphere: the worst case for pruning
    d, i, j = _feret_3d(pts)
    assert d == pytest.approx(_feret(pts)[0], rel=1e-12)
    assert np.linalg.norm(pts[i] - pts[j]) == pytest.approx(d, rel=1e-12)


def test_mesh_volume_of_a_sphere_and_a_voxel():
    z, y, x = np.mgrid[0:40, 0:40, 0:40]
    r = 15.0
    sphere = (x - 19.7) ** 2 + (y - 20.2) ** 2 + ((z - 19.9) * 1.0) ** 2 <= r**2
    spacing = (0.8, 0.8, 0.8)
    truth = 4 / 3 * np.pi * (r * 0.8) ** 3
    assert mesh_volume_mm3(sphere, spacing) == pytest.approx(truth, rel=0.01)
    one = np.zeros((1, 1, 1), dtype=bool)
    one[0, 0, 0] = True
    assert mesh_volume_mm3(one, (0.5, 0.8, 3.0)) == pytest.approx(0.5 * 0.8 * 3.0 / 6.0)
    assert mesh_volume_mm3(np.zeros((2, 2, 2), bool), (1, 1, 1)) == 0.0


def test_slice_diameters_of_an_empty_slice_is_a_clear_error():
    with pytest.raises(ValueError, match="no lesion pixel"):
        slice_diameters(np.zeros((4, 4), dtype=bool), (1.0, 1.0))


@st.composite
def blobs(draw):
    """Unions of 1-4 random ellipses/boxes on a few slices: lobulated, concave, several islands."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    nz = int(rng.integers(1, 5))
    arr = np.zeros((nz, 30, 34), dtype=np.uint8)
    y, x = np.mgrid[0:30, 0:34]
    for k in range(nz):
        for _ in range(int(rng.integers(1, 5))):
            cx, cy = rng.uniform(4, 30), rng.uniform(4, 26)
            a, b = rng.uniform(0.4, 9), rng.uniform(0.4, 9)
            if rng.random() < 0.5:
                arr[k][((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1] = 1
            else:
                arr[k][(abs(x - cx) <= a) & (abs(y - cy) <= b)] = 1
    if not arr.any():
        arr[0, 15, 17] = 1
    return arr


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blobs(), st.integers(0, 5), st.integers(0, 7))
def test_invariants_on_random_blobs(arr, dz, dxy):
    spacing = (0.7, 0.7, 2.0)
    (m,) = measure_lesions(make_image(arr, spacing, (5.0, -3.0, 1.0), np.eye(3)))
    values = np.concatenate([np.asarray(v, dtype=float).ravel() for v in m.to_dict().values()])
    assert np.all(np.isfinite(values))
    assert m.short_axis_mm <= m.long_axis_mm + 1.0 * spacing[0]  # a chord <= the Feret (+ the two ends' refinement)
    assert m.max_3d_diameter_mm >= m.long_axis_mm
    # the long axis lies between the pixel centres' Feret and the pixel squares' (the clamp), slice by slice
    k = m.long_axis_slice
    yy, xx = np.nonzero(arr[k])
    centres = np.stack([xx, yy], axis=1) * 0.7
    corners = np.concatenate([centres + np.array(d) * 0.35 for d in ((-1, -1), (-1, 1), (1, -1), (1, 1))])
    assert m.long_axis_mm <= _feret(corners)[0] + 1e-9
    assert m.long_axis_mm >= _feret(centres)[0] - 0.7 * np.sqrt(2)  # a different direction can lose <= 1 diagonal
    # translation by whole voxels: same lengths, end points shifted by exactly that
    shifted = np.zeros((arr.shape[0] + dz, arr.shape[1] + dxy, arr.shape[2] + dxy), dtype=arr.dtype)
    shifted[dz:, dxy:, dxy:] = arr
    (s,) = measure_lesions(make_image(shifted, spacing, (5.0, -3.0, 1.0), np.eye(3)))
    offset = np.array([dxy * 0.7, dxy * 0.7, dz * 2.0])
    for name in ("long_axis_mm", "short_axis_mm", "perpendicular_mm", "max_3d_diameter_mm", "volume_mesh_mm3"):
        assert getattr(s, name) == pytest.approx(getattr(m, name), rel=1e-9, abs=1e-9), name
    np.testing.assert_allclose(np.asarray(s.long_axis_ends_lps) - offset, m.long_axis_ends_lps, atol=1e-9)
    # mirror in x (isotropic pixels): the same lesion seen from the other side; equally long hull
    # diameters may be broken differently, so the refined lengths agree to half a pixel
    (f,) = measure_lesions(make_image(np.ascontiguousarray(arr[:, :, ::-1]), spacing, (5.0, -3.0, 1.0), np.eye(3)))
    assert f.long_axis_mm == pytest.approx(m.long_axis_mm, abs=0.35)
    assert f.n_voxels == m.n_voxels
