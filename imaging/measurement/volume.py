"""Lesion volumes: voxel count and the volume enclosed by the iso-0.5 surface."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from skimage import measure as skmeasure


@lru_cache(maxsize=1)
def _cell_tables() -> tuple[np.ndarray, np.ndarray]:
    """Per 2x2x2 configuration (bit b = corner (z, y, x) = (b>>2 & 1, b>>1 & 1, b & 1)) of a binary
    mask: ``A`` = sum over its marching-cubes triangles of det(v0, v1, v2) / 6 and ``B`` = sum of
    (v1 x v2 + v2 x v0 + v0 x v1) / 6, vertices relative to the cell's first corner.

    With the cell at corner ``c``, det(c + w0, c + w1, c + w2) = det(w0, w1, w2) + c . (w1 x w2 +
    w2 x w0 + w0 x w1), so the divergence-theorem volume of the whole surface is
    sum over cells of A[code] + c . B[code]. The triangles of a cell depend only on its eight
    values (Lewiner's case and ambiguity tests read nothing else), so the tables come from
    skimage's marching cubes run on each configuration alone.
    """
    a = np.zeros(256)
    b = np.zeros((256, 3))
    for code in range(1, 255):
        cube = np.array([(code >> bit) & 1 for bit in range(8)], dtype=np.float32).reshape(2, 2, 2)
        verts, faces, _, _ = skmeasure.marching_cubes(cube, 0.5, allow_degenerate=True)
        v = verts.astype(float)
        v0, v1, v2 = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
        a[code] = float(np.einsum("ij,ij->i", v0, np.cross(v1, v2)).sum()) / 6.0
        b[code] = (np.cross(v1, v2) + np.cross(v2, v0) + np.cross(v0, v1)).sum(axis=0) / 6.0
    return a, b


def mesh_volume_mm3(mask3d: np.ndarray, spacing_xyz_mm: Sequence[float] | np.ndarray) -> float:
    """Volume enclosed by the marching-cubes surface of ``mask3d`` at level 0.5, mm3.

    The surface passes through the midpoints of the faces between lesion and
    background voxels (the convention of pyradiomics' ``MeshVolume``): it cuts
    the corners of the voxel boxes, so on a smooth lesion it reads slightly
    less than the voxel count (about -0.5 % on the sample CTs, more on small or
    thin lesions; a single voxel encloses 1/6 of its box).

    Computed cell by cell from :func:`_cell_tables` (the same surface as skimage's
    marching cubes, without building it: one vectorised pass to code the cells, then work on
    the boundary cells only; it agrees with :func:`mesh_volume_marching_cubes` to float32
    rounding, about 1e-8 relative).

    Parameters
    ----------
    mask3d : bool array (z, y, x), at least one voxel set.
    spacing_xyz_mm : spacing along x, y, z, mm (direction cosines do not change a volume).
    """
    mask = np.asarray(mask3d, dtype=bool)
    if not mask.any():
        return 0.0
    a, b = _cell_tables()
    padded = np.pad(mask, 1).view(np.uint8)
    nz, ny, nx = (s - 1 for s in padded.shape)
    code = np.zeros((nz, ny, nx), dtype=np.uint8)
    for bit in range(8):
        dz, dy, dx = (bit >> 2) & 1, (bit >> 1) & 1, bit & 1
        code |= padded[dz:dz + nz, dy:dy + ny, dx:dx + nx] << np.uint8(bit)
    cells = np.nonzero((code != 0) & (code != 255))
    c = code[cells]
    corner = np.stack(cells, axis=1).astype(float)
    signed = float(a[c].sum()) + float(np.einsum("ij,ij->i", corner, b[c]).sum())
    sx, sy, sz = (float(v) for v in spacing_xyz_mm)
    return abs(signed) * sx * sy * sz


def mesh_volume_marching_cubes(mask3d: np.ndarray, spacing_xyz_mm: Sequence[float] | np.ndarray) -> float:
    """:func:`mesh_volume_mm3` by building the surface with skimage's marching cubes (the reference)."""
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
