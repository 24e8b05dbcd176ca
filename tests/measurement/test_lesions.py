"""Measurements of analytic ellipsoids on anisotropic, flipped and oblique grids.

Convention (imaging/measurement/diameters.py): diameters are read on the union
of the pixel squares, which over-reads a smooth object digitised by
voxel-centre inclusion by 0.5-1 pixel on average. Tolerances below follow from
that: each diameter within [-1, +1.5] in-plane pixels of the analytic value,
the mean bias over many cases in [+0.4, +1.1] pixel.
"""

from __future__ import annotations

import numpy as np
import pytest

from imaging.measurement import measure_lesions
from tests.data_factory import ellipsoid_labels, rotation_matrix

DIRECTIONS = {
    "identity": np.eye(3),
    "flipped": np.diag([-1.0, 1.0, -1.0]),
    "oblique": rotation_matrix(15.0, -10.0, 30.0),
}


def _case(rng: np.random.Generator, direction: np.ndarray):
    s_in = rng.uniform(0.5, 1.0)
    s_z = rng.uniform(1.0, 5.0)
    a, b = sorted(rng.uniform(5.0, 30.0, size=2))[::-1]
    c = rng.uniform(5.0, 30.0)
    theta = rng.uniform(0.0, 180.0)
    size = (int(2 * a / s_in) + 8, int(2 * a / s_in) + 8, int(2 * c / s_z) + 4)
    # centre on a slice so the largest cross-section is sampled; in-plane centre sub-voxel random
    centre = (size[0] / 2 + rng.uniform(-0.5, 0.5), size[1] / 2 + rng.uniform(-0.5, 0.5), size[2] // 2)
    labels = ellipsoid_labels(size, (s_in, s_in, s_z), direction, [(1, centre, (a, b, c), theta)], origin_lps=(-40.0, 12.0, 300.0))
    return labels, (a, b, c), s_in


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_diameters_of_ellipsoids(name):
    rng = np.random.default_rng(42)
    long_err, perp_err = [], []
    for _ in range(25):
        labels, (a, b, c), s_in = _case(rng, DIRECTIONS[name])
        (m,) = measure_lesions(labels)
        long_err.append((m.long_axis_mm - 2 * a) / s_in)
        perp_err.append((m.short_axis_mm - 2 * b) / s_in)
        # RANO: the largest product over slices is at least the long-axis slice's, and for an
        # ellipsoid centred on a slice it is that central slice's (same pixel tolerance)
        assert m.bidimensional_product_mm2 >= m.long_axis_mm * m.short_axis_mm - 1e-9
        assert -1.0 <= (m.perpendicular_mm - 2 * b) / s_in <= 1.5
        # end points are in LPS and as far apart as the diameter says (1e-6 mm: arithmetic only)
        p, q = (np.asarray(e) for e in m.long_axis_ends_lps)
        assert np.linalg.norm(q - p) == pytest.approx(m.long_axis_mm, abs=1e-6)
        p, q = (np.asarray(e) for e in m.short_axis_ends_lps)
        assert np.linalg.norm(q - p) == pytest.approx(m.short_axis_mm, abs=1e-6)
        # long and short axes are perpendicular (1e-6 in the cosine)
        u = np.subtract(*m.long_axis_ends_lps)
        v = np.subtract(*m.short_axis_ends_lps)
        assert abs(u @ v) / (np.linalg.norm(u) * np.linalg.norm(v)) < 1e-6
        # the 3-D diameter is at least the in-plane one
        assert m.max_3d_diameter_mm >= m.long_axis_mm - 1e-9
    long_err, perp_err = np.array(long_err), np.array(perp_err)
    assert long_err.min() >= -1.0 and long_err.max() <= 1.5, long_err
    assert perp_err.min() >= -1.0 and perp_err.max() <= 1.5, perp_err
    assert 0.4 <= long_err.mean() <= 1.1, long_err.mean()


def test_long_axis_end_points_lie_in_the_long_axis_slice_of_an_oblique_grid():
    direction = rotation_matrix(20.0, 10.0, -35.0)
    labels = ellipsoid_labels((60, 60, 12), (0.7, 0.7, 3.0), direction, [(1, (30, 30, 6), (15.0, 8.0, 12.0), 40.0)])
    (m,) = measure_lesions(labels)
    for end in m.long_axis_ends_lps:
        idx = np.asarray(labels.TransformPhysicalPointToContinuousIndex(end))
        assert idx[2] == pytest.approx(m.long_axis_slice, abs=1e-6)


def test_volume_is_voxel_count_times_voxel_volume_and_close_to_analytic():
    spacing = (0.6, 0.8, 2.0)
    a, b, c = 20.0, 14.0, 16.0
    labels = ellipsoid_labels((90, 60, 22), spacing, np.eye(3), [(3, (45, 30, 11), (a, b, c), 25.0)])
    (m,) = measure_lesions(labels)
    assert m.label == 3
    assert m.volume_mm3 == pytest.approx(m.n_voxels * 0.6 * 0.8 * 2.0, rel=1e-12)
    # > 1000 voxels over >= 8 slices: digitisation error well under 3 %
    assert m.volume_mm3 == pytest.approx(4.0 / 3.0 * np.pi * a * b * c, rel=0.03)
    centre = labels.TransformContinuousIndexToPhysicalPoint((45.0, 30.0, 11.0))
    np.testing.assert_allclose(m.center_lps, centre, atol=0.05)  # symmetric digitisation: centroid within 0.05 mm


def test_several_lesions_in_one_map_are_measured_separately():
    spacing = (0.7, 0.7, 2.5)
    lesions = [(1, (25, 25, 8), (12.0, 6.0, 8.0), 0.0), (2, (75, 30, 8), (5.0, 5.0, 5.0), 0.0), (7, (40, 70, 8), (9.0, 4.0, 6.0), 90.0)]
    labels = ellipsoid_labels((100, 100, 16), spacing, np.eye(3), lesions)
    ms = {m.label: m for m in measure_lesions(labels)}
    assert sorted(ms) == [1, 2, 7]
    for label, _, (a, b, _c), _ in lesions:
        assert 2 * a - 0.7 <= ms[label].long_axis_mm <= 2 * a + 1.5 * 0.7
        assert 2 * b - 0.7 <= ms[label].short_axis_mm <= 2 * b + 1.5 * 0.7
    assert measure_lesions(labels, label_values=[2, 9])[0].label == 2  # absent label 9 left out


def test_single_voxel_lesion_is_defined():
    labels = ellipsoid_labels((10, 10, 5), (0.5, 0.8, 3.0), np.eye(3), [(1, (5, 5, 2), (0.1, 0.1, 0.1), 0.0)])
    (m,) = measure_lesions(labels)
    assert m.n_voxels == 1
    assert m.long_axis_mm == pytest.approx(np.hypot(0.5, 0.8))  # the pixel's diagonal
    assert m.short_axis_mm > 0 and np.isfinite(m.bidimensional_product_mm2)
    assert m.max_3d_diameter_mm == pytest.approx(np.sqrt(0.5**2 + 0.8**2 + 3.0**2))


def test_empty_map_gives_no_lesions():
    labels = ellipsoid_labels((10, 10, 5), (1.0, 1.0, 1.0), np.eye(3), [])
    assert measure_lesions(labels) == []
