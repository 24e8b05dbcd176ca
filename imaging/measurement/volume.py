"""Lesion volumes: voxel count and the volume enclosed by the iso-0.5 surface."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage import measure as skmeasure


def mesh_volume_mm3(mask3d: np.ndarray, spacing_xyz_mm: Sequence[float] | np.ndarray) -> float:
    """Volume enclosed by the marching-cubes surface of ``mask3d`` at level 0.5, mm3.

    The surface passes through the midpoints of the faces between lesion and
    background voxels (the convention of pyradiomics' ``MeshVolume``): it cuts
    the corners of the voxel boxes, so on a smooth lesion it reads slightly
    less than the voxel count (about -0.5 % on the sample CTs, more on small or
    thin lesions; a single voxel encloses 1/6 of its box).

    Parameters
    ----------
    mask3d : bool array (z, y, x), at least one voxel set.
    spacing_xyz_mm : spacing along x, y, z, mm (direction cosines do not change a volume).
    """
    mask = np.asarray(mask3d, dtype=bool)
    if not mask.any():
        return 0.0
    padded = np.pad(mask, 1).astype(np.float32)
    sx, sy, sz = (float(v) for v in spacing_xyz_mm)
    verts, faces, _, _ = skmeasure.marching_cubes(padded, 0.5, spacing=(sz, sy, sx), allow_degenerate=True)
    v0, v1, v2 = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    # Divergence theorem: the signed volumes of the tetrahedra (origin, face) add up to the enclosed volume.
    signed = float(np.einsum("ij,ij->i", v0, np.cross(v1, v2)).sum()) / 6.0
    return abs(signed)
