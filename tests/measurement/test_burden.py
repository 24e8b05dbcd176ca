"""The FLAIR burden measured as one region: analytic shapes on anisotropic, oblique grids, and the glioma
phantom's FLAIR abnormality on its own FLAIR grid (other spacing, origin, direction, a rigid motion).

Tolerances: diameters within max(one in-plane voxel, 2 %) of the analytic largest sampled section
(tests/measurement/test_lesions.py); volumes within 3 %. On the FLAIR grid the mask went through two
digitisations (the 0.9 x 0.9 x 3 mm T1c label map, then nearest neighbour onto 1 x 1 x 4 mm): diameters
within 1 mm (one FLAIR pixel), the product within 4 % (two diameters of 48 mm, 1 mm each), the volume
within 2 %, the slice count within one slice.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from imaging.measurement.burden import FlairBurden, measure_flair_burden
from imaging.measurement.lesions import measure_lesions
from imaging.segmentation.compartments import flair_burden
from tests.data_factory import ellipsoid_labels, make_image
from tests.measurement.ellipsoid_cases import DIRECTIONS
from tests.segmentation.glioma_phantom import COMP, OEDEMA_R, T1C_DIRECTIONS, glioma

SPACING = (0.9, 0.9, 3.0)


def _tol(mm: float) -> float:
    return max(SPACING[0], 0.02 * mm)


def test_empty_mask_gives_zeros():
    empty = make_image(np.zeros((5, 6, 7), np.uint8), SPACING, (0, 0, 0), np.eye(3))
    assert measure_flair_burden(empty) == FlairBurden(0.0, 0.0, 0.0, 0.0, 0, None)
    with pytest.raises(ValueError, match="3-D scalar mask"):
        measure_flair_burden(sitk.Image(4, 4, sitk.sitkUInt8))


@pytest.mark.parametrize("direction", ["flipped", "oblique"])
def test_ellipsoid_burden_is_measured_as_measure_lesions_does(direction):
    a, b, c = 16.0, 11.0, 12.0
    size = (44, 44, 13)
    centre = (21.7, 22.2, 6.3)
    labels = ellipsoid_labels(size, SPACING, DIRECTIONS[direction], [(5, centre, (a, b, c), 25.0)], origin_lps=(30.0, -8.0, 60.0))
    burden = measure_flair_burden(labels)
    (m,) = measure_lesions(labels, mesh_volume=False)
    assert (burden.volume_mm3, burden.bidimensional_product_mm2, burden.long_axis_mm, burden.perpendicular_mm,
            burden.n_slices, burden.product_slice) == (m.volume_mm3, m.bidimensional_product_mm2, m.product_long_axis_mm,
                                                       m.perpendicular_mm, m.n_slices, m.product_slice)
    f = 1.0 - (0.3 * SPACING[2] / c) ** 2  # the slice nearest the centre, 0.9 mm away
    assert abs(burden.long_axis_mm - 2 * a * np.sqrt(f)) <= _tol(2 * a)  # 31.90 mm
    assert abs(burden.perpendicular_mm - 2 * b * np.sqrt(f)) <= _tol(2 * b)  # 21.93 mm
    assert burden.volume_mm3 == pytest.approx(4 / 3 * np.pi * a * b * c, rel=0.03)  # 8846.7 mm3
    assert burden.n_slices == 8  # |dz| < 12 mm with the centre 0.9 mm off a slice
    # any non-zero value is abnormal
    binary = sitk.Cast(labels != 0, sitk.sitkUInt8)
    assert measure_flair_burden(binary) == burden


def test_islands_of_one_slice_form_one_region():
    """Two balls of radius 6 mm, centres 20 mm apart in-plane: the long axis is the caliper across both
    (20 + 12 mm), the perpendicular the chord within one island (12 mm), the volume both balls."""
    size = (50, 24, 9)
    x0 = 12.2
    dx = 20.0 / SPACING[0]
    balls = [(1, (x0, 11.6, 4.0), (6.0, 6.0, 6.0), 0.0), (1, (x0 + dx, 11.6, 4.0), (6.0, 6.0, 6.0), 0.0)]
    burden = measure_flair_burden(ellipsoid_labels(size, SPACING, DIRECTIONS["oblique"], balls))
    assert abs(burden.long_axis_mm - 32.0) <= _tol(32.0)
    assert abs(burden.perpendicular_mm - 12.0) <= _tol(12.0)
    assert burden.bidimensional_product_mm2 == pytest.approx(burden.long_axis_mm * burden.perpendicular_mm)
    # three 3 mm slabs sample a 12 mm ball coarsely: the truth is the sampled sections' (Cavalieri) volume,
    # 2 x 3 mm x pi (36 + 27 + 27) = 1696.5 mm3 (the ball's own is 1809.6)
    assert burden.volume_mm3 == pytest.approx(2 * SPACING[2] * np.pi * (36 + 27 + 27), rel=0.03)
    assert burden.n_slices == 3


@pytest.mark.parametrize("direction", sorted(T1C_DIRECTIONS))
def test_glioma_flair_burden_on_the_flair_grid(direction):
    """The oedema sphere (r 24 mm, containing the tumour) less the cavity's lens, seen on the FLAIR grid:
    the FLAIR slice normal runs through the lens, so the largest section is the untouched circle of the
    slice nearest the centre (1.8 mm away) and the slices run from -24 mm to +22.67 mm (where the
    cavity's section covers the sphere's)."""
    g = glioma(direction)
    burden = measure_flair_burden(flair_burden(g.labels, COMP, g.flair, g.flair_to_t1c))
    diameter = 2 * np.sqrt(OEDEMA_R**2 - g.flair_dz_mm**2)  # 47.86 mm
    assert burden.volume_mm3 == pytest.approx(g.burden_volume_mm3, rel=0.02)  # 57265 mm3
    assert abs(burden.long_axis_mm - diameter) <= 1.0
    assert abs(burden.perpendicular_mm - diameter) <= 1.0
    assert burden.bidimensional_product_mm2 == pytest.approx(diameter**2, rel=0.04)
    assert burden.product_slice in (8, 9)  # 1.8 and 2.2 mm from the centre: sections 0.06 mm apart
    k = np.arange(18)
    dz = (k - 8.45) * 4.0
    expected_slices = int(((dz > -OEDEMA_R) & (dz < 22.67)).sum())  # 12
    assert abs(burden.n_slices - expected_slices) <= 1


@pytest.mark.parametrize("direction", sorted(T1C_DIRECTIONS))
def test_glioma_flair_burden_on_the_label_grid(direction):
    g = glioma(direction)
    burden = measure_flair_burden(flair_burden(g.labels, COMP))
    diameter = 2 * np.sqrt(OEDEMA_R**2 - g.t1c_dz_mm**2)  # 47.98 mm (the lens misses the T1c equator)
    assert burden.volume_mm3 == pytest.approx(g.burden_volume_mm3, rel=0.02)
    assert abs(burden.long_axis_mm - diameter) <= _tol(diameter)
    assert abs(burden.perpendicular_mm - diameter) <= _tol(diameter)
