"""An analytic glioma on a T1c grid and a FLAIR grid, with known truth (shared by the compartment and burden tests).

T1c label map, 0.9 x 0.9 x 3 mm, flipped or oblique direction, shapes in physical mm:

- oedema (label 2): a sphere of radius 24 mm around the tumour centre;
- enhancing tumour (label 4): an ellipsoid, semi-axes 14 x 10 mm in the acquisition plane
  (rotated 30 degrees) and 9 mm along the slice normal, around a necrotic core (label 1, the same
  ellipsoid scaled by 0.5); a 1.5 mm enhancing nodule floats in the core's centre (its own component);
- necrosis not enclosed (label 1): a 3 mm ball just beyond the ellipsoid's long-axis tip, touching it;
- resection cavity (label 6): a ball of radius 9 mm whose centre is 27 mm from the tumour centre
  along the FLAIR slice normal: it cuts a lens 6 mm deep out of the oedema sphere, away from the
  equatorial sections.

FLAIR grid: 1 x 1 x 4 mm, its own direction and origin; the patient moved by a known rigid
transform ``flair_to_t1c`` (FLAIR physical point -> T1c physical point, ITK's convention).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import SimpleITK as sitk

from imaging.segmentation.compartments import Compartments
from tests.data_factory import make_image, rotation_matrix

COMP = Compartments(enhancing=(4,), necrosis=(1,), non_enhancing=(2,), cavity=(6,))
T1C_SPACING = (0.9, 0.9, 3.0)
FLAIR_SPACING = (1.0, 1.0, 4.0)
T1C_DIRECTIONS = {"flipped": np.diag([-1.0, 1.0, -1.0]), "oblique": rotation_matrix(15.0, -10.0, 30.0)}

ENH_AXES = (14.0, 10.0, 9.0)
ENH_THETA_DEG = 30.0
CORE_SCALE = 0.5
NODULE_R = 1.5
BLOB_R, BLOB_OFFSET = 3.0, 16.5  # necrosis ball centred 2.5 mm beyond the 14 mm tip
OEDEMA_R = 24.0
CAVITY_R, CAVITY_DIST = 9.0, 27.0


def sphere_volume(r: float) -> float:
    return 4.0 / 3.0 * np.pi * r**3


def lens_volume(big: float, small: float, d: float) -> float:
    """Volume of the intersection of two balls of radii ``big``, ``small`` with centres ``d`` apart."""
    return float(np.pi * (big + small - d) ** 2 * (d**2 + 2 * d * small - 3 * small**2 + 2 * d * big + 6 * small * big
                                                   - 3 * big**2) / (12 * d))


@dataclass(frozen=True)
class Glioma:
    labels: sitk.Image  # T1c grid
    flair: sitk.Image  # FLAIR grid (zeros; only its geometry matters)
    flair_to_t1c: sitk.Euler3DTransform
    centre_lps: np.ndarray  # tumour centre, T1c physical space
    normal_lps: np.ndarray  # FLAIR slice normal seen in T1c physical space (towards the cavity)
    outer: np.ndarray  # digitised enhancing ellipsoid (rim + core + nodule), T1c (z, y, x)
    core: np.ndarray
    nodule: np.ndarray
    blob: np.ndarray  # necrosis not enclosed (what of the ball is not enhancing)
    cavity: np.ndarray
    t1c_f: float  # largest sampled section of the ellipsoid: (1 - dz^2 / c^2)
    t1c_dz_mm: float  # distance from the centre to the nearest T1c slice
    flair_dz_mm: float  # ... to the nearest FLAIR slice

    @property
    def enhancing_volume_mm3(self) -> float:
        return sphere_volume(1.0) * np.prod(ENH_AXES)

    @property
    def burden_volume_mm3(self) -> float:
        return sphere_volume(OEDEMA_R) - lens_volume(OEDEMA_R, CAVITY_R, CAVITY_DIST)


def _physical(size_xyz, spacing, origin, direction) -> np.ndarray:
    """LPS of every voxel centre, (z, y, x, 3)."""
    nx, ny, nz = size_xyz
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    idx = np.stack([i, j, k], axis=-1) * np.asarray(spacing)
    return np.asarray(origin) + idx @ np.asarray(direction).T


@lru_cache(maxsize=4)
def glioma(direction_name: str = "oblique") -> Glioma:
    d_t = T1C_DIRECTIONS[direction_name]
    size_t = (88, 88, 26)
    centre_index = np.array([43.3, 42.6, 13.2])  # sub-voxel: the nearest slice is 0.6 mm away
    centre = np.array([12.0, -30.0, 45.0])
    origin_t = centre - d_t @ (centre_index * T1C_SPACING)

    # FLAIR: other spacing, direction and origin; the patient moved by a rigid transform.
    d_f = rotation_matrix(4.0, -3.0, -20.0)
    tf = sitk.Euler3DTransform()
    tf.SetCenter(tuple(centre))
    tf.SetRotation(0.10, -0.15, 0.20)  # rad
    tf.SetTranslation((6.0, -4.0, 9.0))
    centre_f = np.array(tf.GetInverse().TransformPoint(tuple(centre)))
    size_f = (66, 66, 18)
    centre_index_f = np.array([32.6, 33.3, 8.45])  # the nearest FLAIR slice is 1.8 mm away
    origin_f = centre_f - d_f @ (centre_index_f * FLAIR_SPACING)
    rot = np.asarray(tf.GetMatrix()).reshape(3, 3)
    normal = rot @ d_f[:, 2]

    p = _physical(size_t, T1C_SPACING, origin_t, d_t) - centre
    q = p @ d_t  # coordinates along the T1c index axes, mm
    t = np.deg2rad(ENH_THETA_DEG)
    u_ax = d_t @ np.array([np.cos(t), np.sin(t), 0.0])  # in-plane long axis, LPS
    cu = q[..., 0] * np.cos(t) + q[..., 1] * np.sin(t)
    cv = -q[..., 0] * np.sin(t) + q[..., 1] * np.cos(t)
    a, b, c = ENH_AXES
    rho = (cu / a) ** 2 + (cv / b) ** 2 + (q[..., 2] / c) ** 2
    r = np.linalg.norm(p, axis=-1)

    outer = rho <= 1.0
    core = rho <= CORE_SCALE**2
    nodule = r <= NODULE_R
    blob_ball = np.linalg.norm(p - BLOB_OFFSET * u_ax, axis=-1) <= BLOB_R
    cavity = np.linalg.norm(p - CAVITY_DIST * normal, axis=-1) <= CAVITY_R

    # The truth below needs the cavity's lens away from the tumour and from the equatorial T1c section.
    assert BLOB_OFFSET * abs(u_ax @ normal) + BLOB_R < CAVITY_DIST - CAVITY_R
    assert OEDEMA_R * np.sqrt(1 - (normal @ d_t[:, 2]) ** 2) + 1.0 < CAVITY_DIST - CAVITY_R

    array = np.zeros(q.shape[:3], dtype=np.uint8)
    array[r <= OEDEMA_R] = 2
    array[blob_ball] = 1
    array[outer] = 4
    array[core] = 1
    array[nodule] = 4
    array[cavity] = 6
    labels = make_image(array, T1C_SPACING, tuple(origin_t), d_t)
    flair = make_image(np.zeros(size_f[::-1], dtype=np.int16), FLAIR_SPACING, tuple(origin_f), d_f)

    dz_t = abs(centre_index[2] - round(centre_index[2])) * T1C_SPACING[2]
    dz_f = abs(centre_index_f[2] - round(centre_index_f[2])) * FLAIR_SPACING[2]
    return Glioma(labels, flair, tf, centre, normal, outer, core & ~nodule, nodule, blob_ball & ~outer, cavity,
                  1.0 - (dz_t / c) ** 2, dz_t, dz_f)
