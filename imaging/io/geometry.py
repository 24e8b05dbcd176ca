"""Geometry of a volume: size, spacing, origin and direction in DICOM LPS mm."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class Geometry:
    """Grid of a 3-D image in patient space (DICOM LPS, mm).

    Attributes
    ----------
    size : (nx, ny, nz) voxels, SimpleITK index order.
    spacing_mm : voxel spacing along the three index axes, mm.
    origin_lps : physical position of the centre of voxel (0, 0, 0), mm.
    direction : 3x3 row-major; column k is the LPS unit vector of index axis k
        (as SimpleITK's ``GetDirection``).
    """

    size: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_lps: tuple[float, float, float]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        """Geometry of a SimpleITK image."""
        return cls(
            size=tuple(int(v) for v in image.GetSize()),  # type: ignore[arg-type]
            spacing_mm=tuple(float(v) for v in image.GetSpacing()),  # type: ignore[arg-type]
            origin_lps=tuple(float(v) for v in image.GetOrigin()),  # type: ignore[arg-type]
            direction=tuple(float(v) for v in image.GetDirection()),
        )

    @property
    def direction_matrix(self) -> np.ndarray:
        """3x3 array whose columns are the index axes' unit vectors in LPS."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def voxel_volume_mm3(self) -> float:
        sx, sy, sz = self.spacing_mm
        return sx * sy * sz

    def index_to_lps(self, index_xyz: np.ndarray) -> np.ndarray:
        """Continuous indices (..., 3) in (x, y, z) order -> LPS points (..., 3), mm."""
        idx = np.asarray(index_xyz, dtype=float)
        return np.asarray(self.origin_lps) + (idx * np.asarray(self.spacing_mm)) @ self.direction_matrix.T

    def lps_to_index(self, points_lps: np.ndarray) -> np.ndarray:
        """LPS points (..., 3), mm -> continuous indices (..., 3) in (x, y, z) order."""
        p = np.asarray(points_lps, dtype=float) - np.asarray(self.origin_lps)
        return (p @ self.direction_matrix) / np.asarray(self.spacing_mm)

    def corners_lps(self) -> np.ndarray:
        """The 8 corner voxel centres, (8, 3) LPS mm."""
        n = np.asarray(self.size) - 1
        corners = np.array([[i, j, k] for i in (0, n[0]) for j in (0, n[1]) for k in (0, n[2])], dtype=float)
        return self.index_to_lps(corners)

    def same_grid(self, other: Geometry, tol_mm: float = 1e-3) -> bool:
        """True when both grids have the same size and their voxel centres coincide within ``tol_mm``."""
        if self.size != other.size:
            return False
        return bool(np.max(np.abs(self.corners_lps() - other.corners_lps())) <= tol_mm)

    def to_dict(self) -> dict:
        return {
            "size": list(self.size),
            "spacing_mm": list(self.spacing_mm),
            "origin_lps": list(self.origin_lps),
            "direction": list(self.direction),
        }


@dataclass(frozen=True)
class LoadedVolume:
    """A loaded volume and what the loader found worth reporting about it.

    ``problems`` are plain sentences (a resampled gantry tilt, dropped
    duplicate slices, sform/qform disagreement ...); the image itself is
    always in DICOM LPS.
    """

    image: sitk.Image
    problems: tuple[str, ...] = ()
    source: str = ""

    @property
    def geometry(self) -> Geometry:
        return Geometry.of(self.image)


def nonzero_box(mask: np.ndarray, pad: int | tuple[int, ...] = 0) -> tuple[slice, ...] | None:
    """Index box of the non-zero voxels of ``mask`` (numpy axis order), grown by ``pad`` voxels per axis
    and clipped to the array; ``None`` when nothing is non-zero.

    Reads the whole array once, with a reduction per axis (the first axis over the whole array, the
    others over the slab the first one found), rather than listing every non-zero voxel.
    """
    arr = np.asarray(mask)
    pads = (pad,) * arr.ndim if isinstance(pad, int) else tuple(int(p) for p in pad)
    if len(pads) != arr.ndim:
        raise ValueError(f"pad: {len(pads)} values for a {arr.ndim}-D array")
    first = np.flatnonzero(arr.any(axis=tuple(range(1, arr.ndim))))
    if first.size == 0:
        return None
    slab = arr[first[0]: first[-1] + 1].any(axis=0)
    present = [first] + [np.flatnonzero(slab.any(axis=tuple(a for a in range(slab.ndim) if a != k)))
                         for k in range(slab.ndim)]
    return tuple(slice(max(0, int(p[0]) - d), min(n, int(p[-1]) + 1 + d))
                 for p, d, n in zip(present, pads, arr.shape))
