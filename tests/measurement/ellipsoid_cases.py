"""Random analytic ellipsoids with their exact in-plane diameters (shared by tests and the benchmark).

Axes a >= b lie in the acquisition plane (rotated by a random angle), c along the slice normal.
The truth is taken on the slices the grid samples: the section at distance dz from the centre
is an ellipse with semi-axes (a, b) * sqrt(1 - dz^2 / c^2), so the largest sampled section
gives the long axis, the short axis and the RANO perpendicular.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from tests.data_factory import ellipsoid_labels, rotation_matrix

DIRECTIONS = {
    "identity": np.eye(3),
    "flipped": np.diag([-1.0, 1.0, -1.0]),
    "oblique": rotation_matrix(15.0, -10.0, 30.0),
}


@dataclass(frozen=True)
class EllipsoidCase:
    labels: sitk.Image
    semi_axes_mm: tuple[float, float, float]
    spacing_mm: tuple[float, float, float]
    long_axis_mm: float  # on the largest sampled section
    perpendicular_mm: float  # same section
    volume_mm3: float

    @property
    def pixel_mm(self) -> float:
        """The in-plane voxel (the larger in-plane spacing): the unit of the accuracy figures."""
        return max(self.spacing_mm[:2])


def random_case(rng: np.random.Generator, direction: np.ndarray, *, anisotropic_in_plane: bool = False) -> EllipsoidCase:
    """Diameters 5-60 mm, in-plane spacing 0.5-1 mm, slices 1-5 mm, random rotation and sub-voxel centre."""
    sx = rng.uniform(0.5, 1.0)
    sy = rng.uniform(0.5, 1.0) if anisotropic_in_plane else sx
    sz = rng.uniform(1.0, 5.0)
    a, b = sorted(rng.uniform(2.5, 30.0, size=2))[::-1]
    c = rng.uniform(2.5, 30.0)
    theta = rng.uniform(0.0, 180.0)
    size = (int(2 * a / sx) + 8, int(2 * a / sy) + 8, int(2 * c / sz) + 4)
    centre = (
        size[0] / 2 + rng.uniform(-0.5, 0.5),
        size[1] / 2 + rng.uniform(-0.5, 0.5),
        size[2] // 2 + rng.uniform(-0.3, 0.3),  # the centre slice is always sampled (f > 0.6)
    )
    labels = ellipsoid_labels(size, (sx, sy, sz), direction, [(1, centre, (a, b, c), theta)], origin_lps=(-40.0, 12.0, 300.0))
    dz = (np.arange(size[2]) - centre[2]) * sz
    f = float(np.max(1.0 - (dz / c) ** 2))
    return EllipsoidCase(labels, (a, b, c), (sx, sy, sz), 2 * a * np.sqrt(f), 2 * b * np.sqrt(f), 4.0 / 3.0 * np.pi * a * b * c)


def mask_array(case: EllipsoidCase) -> np.ndarray:
    return sitk.GetArrayFromImage(case.labels) > 0
