"""Measurements of analytic ellipsoids on anisotropic, flipped and oblique grids, and of awkward masks.

Convention (imaging/measurement/diameters.py): diameters on the iso-0.5 contour with the
ends refined by the cap law. Measured over many ellipsoids it is unbiased to a few hundredths
of a pixel with a mean absolute long-axis error of about 0.15 pixel (docs/measurement.md);
the tolerances below are the issue's (each diameter within max(one in-plane voxel, 2 %)) and
the project's aim (long-axis MAE <= 0.25 voxel, |bias| <= 0.1 voxel), on fixed seeds.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from imaging.io.geometry import Geometry
from imaging.measurement import measure_lesions, measure_mask
from tests.data_factory import ellipsoid_labels, make_image, rotation_matrix
from tests.measurement.ellipsoid_cases import DIRECTIONS, random_case

N_CASES = 40  # per grid direction: 120 ellipsoids, about 3 s


def _tolerance(case) -> float:
    return max(case.pixel_mm, 0.02 * case.long_axis_mm)


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_diameters_of_ellipsoids(name):
    rng = np.random.default_rng({"flipped": 1, "identity": 2, "oblique": 3}[name])
    long_err = []
    for _ in range(N_CASES):
        case = random_case(rng, DIRECTIONS[name])
        (m,) = measure_lesions(case.labels)
        tol = _tolerance(case)
        # each diameter within max(one in-plane voxel, 2 %) of the analytic one
        assert abs(m.long_axis_mm - case.long_axis_mm) <= tol, (case, m)
        assert abs(m.short_axis_mm - case.perpendicular_mm) <= max(case.pixel_mm, 0.02 * case.perpendicular_mm), (case, m)
        assert abs(m.perpendicular_mm - case.perpendicular_mm) <= max(case.pixel_mm, 0.02 * case.perpendicular_mm), (case, m)
        long_err.append((m.long_axis_mm - case.long_axis_mm) / case.pixel_mm)
        # end points are in LPS and as far apart as the diameters say (1e-6 mm: arithmetic only)
        for length, ends in (
            (m.long_axis_mm, m.long_axis_ends_lps),
            (m.short_axis_mm, m.short_axis_ends_lps),
            (m.perpendicular_mm, m.perpendicular_ends_lps),
            (m.product_long_axis_mm, m.product_long_axis_ends_lps),
            (m.max_3d_diameter_mm, m.max_3d_diameter_ends_lps),
        ):
            p, q = (np.asarray(e) for e in ends)
            assert np.linalg.norm(q - p) == pytest.approx(length, abs=1e-6)
        # long and short axes are perpendicular (1e-6 in the cosine), as are the product's
        for a, b in ((m.long_axis_ends_lps, m.short_axis_ends_lps), (m.product_long_axis_ends_lps, m.perpendicular_ends_lps)):
            u, v = np.subtract(*a), np.subtract(*b)
            assert abs(u @ v) / (np.linalg.norm(u) * np.linalg.norm(v)) < 1e-6
        assert m.bidimensional_product_mm2 == pytest.approx(m.product_long_axis_mm * m.perpendicular_mm, rel=1e-12)
        assert m.bidimensional_product_mm2 >= m.long_axis_mm * m.short_axis_mm - 1e-9  # the largest product
        assert m.max_3d_diameter_mm >= m.long_axis_mm
    long_err = np.array(long_err)
    assert np.abs(long_err).mean() <= 0.25, np.abs(long_err).mean()  # the aim; the issue requires <= 0.7
    assert abs(long_err.mean()) <= 0.1, long_err.mean()


def test_diameters_on_anisotropic_pixels():
    """Pixels 0.5-1 mm on each in-plane axis independently: same tolerances, in the larger spacing."""
    rng = np.random.default_rng(4)
    errors = []
    for k in range(30):
        case = random_case(rng, DIRECTIONS[("identity", "oblique")[k % 2]], anisotropic_in_plane=True)
        (m,) = measure_lesions(case.labels)
        assert abs(m.long_axis_mm - case.long_axis_mm) <= _tolerance(case), (case, m)
        assert abs(m.short_axis_mm - case.perpendicular_mm) <= max(case.pixel_mm, 0.02 * case.perpendicular_mm)
        errors.append((m.long_axis_mm - case.long_axis_mm) / case.pixel_mm)
    assert np.abs(errors).mean() <= 0.25


def test_volumes_of_ellipsoids():
    """Voxel count and mesh volume within 3 % for lesions over 1000 voxels spanning >= 8 slices."""
    rng = np.random.default_rng(5)
    checked = 0
    while checked < 20:
        case = random_case(rng, DIRECTIONS["oblique"])
        (m,) = measure_lesions(case.labels)
        if m.n_voxels <= 1000 or m.n_slices < 8:
            continue
        checked += 1
        assert m.volume_mm3 == pytest.approx(m.n_voxels * np.prod(case.spacing_mm), rel=1e-12)
        assert m.volume_mm3 == pytest.approx(case.volume_mm3, rel=0.03)
        assert m.volume_mesh_mm3 == pytest.approx(case.volume_mm3, rel=0.03)


def test_long_axis_end_points_lie_in_the_long_axis_slice_of_an_oblique_grid():
    direction = rotation_matrix(20.0, 10.0, -35.0)
    labels = ellipsoid_labels((60, 60, 12), (0.7, 0.7, 3.0), direction, [(1, (30, 30, 6), (15.0, 8.0, 12.0), 40.0)])
    (m,) = measure_lesions(labels)
    for ends, k in ((m.long_axis_ends_lps, m.long_axis_slice), (m.short_axis_ends_lps, m.long_axis_slice),
                    (m.perpendicular_ends_lps, m.product_slice)):
        for end in ends:
            idx = np.asarray(labels.TransformPhysicalPointToContinuousIndex(end))
            assert idx[2] == pytest.approx(k, abs=1e-6)
    # the long axis runs along the ellipse's major axis (40 degrees in-plane, 1 degree)
    i0, i1 = (np.asarray(labels.TransformPhysicalPointToContinuousIndex(e)) for e in m.long_axis_ends_lps)
    angle = np.degrees(np.arctan2(i1[1] - i0[1], i1[0] - i0[0])) % 180.0
    assert angle == pytest.approx(40.0, abs=1.0)


def test_centre_of_a_symmetric_lesion():
    spacing = (0.6, 0.8, 2.0)
    labels = ellipsoid_labels((90, 60, 22), spacing, np.eye(3), [(3, (45, 30, 11), (20.0, 14.0, 16.0), 25.0)])
    (m,) = measure_lesions(labels)
    assert m.label == 3
    centre = labels.TransformContinuousIndexToPhysicalPoint((45.0, 30.0, 11.0))
    np.testing.assert_allclose(m.center_lps, centre, atol=0.05)  # symmetric digitisation: centroid within 0.05 mm


def test_several_lesions_in_one_map_are_measured_separately():
    spacing = (0.7, 0.7, 2.5)
    lesions = [(1, (25, 25, 8), (12.0, 6.0, 8.0), 0.0), (2, (75, 30, 8), (5.0, 5.0, 5.0), 0.0), (7, (40, 70, 8), (9.0, 4.0, 6.0), 90.0)]
    labels = ellipsoid_labels((100, 100, 16), spacing, np.eye(3), lesions)
    ms = {m.label: m for m in measure_lesions(labels)}
    assert sorted(ms) == [1, 2, 7]
    for label, _, (a, b, _c), _ in lesions:
        assert ms[label].long_axis_mm == pytest.approx(2 * a, abs=0.7)  # one in-plane voxel
        assert ms[label].short_axis_mm == pytest.approx(2 * b, abs=0.7)
        alone = sitk.Cast(labels == label, sitk.sitkUInt16) * label
        alone.CopyInformation(labels)
        assert measure_lesions(alone)[0] == ms[label]  # neighbours change nothing
    assert [m.label for m in measure_lesions(labels, label_values=[2, 9])] == [2]  # absent label 9 left out


def test_short_axis_does_not_bridge_a_concave_notch():
    """A U: the longest perpendicular chord of the hull would span both arms (and the notch)."""
    u = np.zeros((3, 40, 40), dtype=np.uint16)
    u[1, 5:35, 5:12] = 1  # left arm, 30 x 7 px
    u[1, 5:35, 28:35] = 1  # right arm
    u[1, 28:35, 5:35] = 1  # bottom bar, 7 px high
    labels = make_image(u, (1.0, 1.0, 3.0), (0.0, 0.0, 0.0), np.eye(3))
    (m,) = measure_lesions(labels)
    # corner to corner: between the corner pixels' centres and their outer corners (the clamp)
    assert np.hypot(29, 29) <= m.long_axis_mm <= np.hypot(30, 30)
    # every chord perpendicular to the diagonal that stays inside the U is shorter than the
    # 30 px bar/arm and far shorter than the hull's 30*sqrt(2)/2+ chord across the notch
    (p, q) = (np.asarray(labels.TransformPhysicalPointToContinuousIndex(e)) for e in m.short_axis_ends_lps)
    for f in np.linspace(0.02, 0.98, 25):  # points along the chord are inside the U (within half a pixel)
        x, y, _ = p + f * (q - p)
        near = u[1, int(np.clip(round(y), 0, 39)), int(np.clip(round(x), 0, 39))]
        assert near or min(abs(x - 11.5), abs(x - 27.5), abs(y - 27.5)) <= 0.75


def test_single_voxel_lesion_is_defined():
    labels = ellipsoid_labels((10, 10, 5), (0.5, 0.8, 3.0), np.eye(3), [(1, (5, 5, 2), (0.1, 0.1, 0.1), 0.0)])
    (m,) = measure_lesions(labels)
    assert m.n_voxels == 1 and m.n_slices == 1
    # the iso-0.5 contour of one pixel is the diamond through its edge midpoints: 0.8 x 0.5 mm
    assert m.long_axis_mm == pytest.approx(0.8)
    assert m.short_axis_mm == pytest.approx(0.5)
    assert m.volume_mesh_mm3 == pytest.approx(0.5 * 0.8 * 3.0 / 6.0)  # an octahedron: 1/6 of the box
    _all_finite(m)


def test_one_slice_lesion_touching_the_image_border():
    arr = np.zeros((1, 20, 30), dtype=np.uint8)
    arr[0, 0:6, 0:10] = 5  # a 10 x 6 px rectangle in the corner of a single-slice image
    labels = make_image(arr, (0.5, 0.5, 2.0), (10.0, -3.0, 7.0), np.diag([1.0, -1.0, -1.0]))
    (m,) = measure_lesions(labels)
    assert m.label == 5 and m.n_slices == 1 and m.long_axis_slice == 0
    # the iso-0.5 contour cuts the rectangle's corners: diagonal of the (10 x 6 px) box minus
    # half a pixel at each end, at most one pixel from the box's diagonal
    assert m.long_axis_mm == pytest.approx(np.hypot(5.0, 3.0), abs=0.5)
    assert m.volume_mm3 == pytest.approx(60 * 0.5 * 0.5 * 2.0)
    _all_finite(m)


def test_lesion_filling_the_whole_image_and_thin_lines():
    full = make_image(np.ones((4, 8, 8), dtype=np.uint8), (1.0, 1.0, 1.0), (0, 0, 0), np.eye(3))
    (m,) = measure_lesions(full)
    assert m.n_voxels == 256
    assert np.hypot(7, 7) <= m.long_axis_mm <= np.hypot(8, 8)  # between corner centres and box corners
    _all_finite(m)
    line = np.zeros((1, 5, 40), dtype=np.uint8)
    line[0, 2, 3:37] = 1  # one pixel wide, 34 long
    (m,) = measure_lesions(make_image(line, (1.0, 1.0, 1.0), (0, 0, 0), np.eye(3)))
    assert m.long_axis_mm == pytest.approx(34.0, abs=1.0)
    assert m.short_axis_mm == pytest.approx(1.0, abs=0.5)
    _all_finite(m)


def test_empty_map_and_empty_mask():
    labels = ellipsoid_labels((10, 10, 5), (1.0, 1.0, 1.0), np.eye(3), [])
    assert measure_lesions(labels) == []
    assert measure_lesions(labels, label_values=[1, 2]) == []
    geom = Geometry.of(labels)
    with pytest.raises(ValueError, match="empty"):
        measure_mask(np.zeros((2, 3, 3), dtype=bool), geom)


def test_non_integer_label_map_is_a_clear_error():
    img = make_image(np.full((2, 4, 4), 0.5, dtype=np.float32), (1.0, 1.0, 1.0), (0, 0, 0), np.eye(3))
    with pytest.raises(ValueError, match="integer label map"):
        measure_lesions(img)


def _all_finite(m) -> None:
    for key, value in m.to_dict().items():
        flat = np.asarray(value, dtype=float).ravel()
        assert np.all(np.isfinite(flat)), key


def test_a_label_in_separate_parts_is_reported():
    from imaging.segmentation import label_fragments

    labels = ellipsoid_labels((60, 40, 10), (1.0, 1.0, 2.0), np.eye(3),
                              [(1, (15, 20, 5), (6.0, 6.0, 4.0), 0.0), (1, (45, 20, 5), (4.0, 4.0, 4.0), 0.0),
                               (2, (30, 35, 5), (3.0, 3.0, 3.0), 0.0)])
    parts = label_fragments(labels)
    assert list(parts) == [1] and len(parts[1]) == 2 and parts[1][0] > parts[1][1]  # label 2 is whole
