"""Diameters of a lesion in the acquisition plane and in 3-D.

Convention
----------
A lesion is the union of its voxels' boxes (the mask as drawn). In each slice
the in-plane outline is the convex hull of the corners of its pixel squares, in
mm (index x spacing; the in-plane direction cosines are orthonormal, so
distances need no direction matrix). The long axis is the Feret diameter of
that hull; the short axis is the longest chord of the hull perpendicular to
the long axis. Because the pixel squares of a smooth object digitised by
centre inclusion reach past its boundary by up to half a pixel on each side,
this convention over-reads such an object by about 0.5 to 1 pixel on average.
A chord is measured across the hull: for a concave lesion it can bridge a
notch the mask does not fill.

Only hull vertices matter, and every hull vertex is a corner of the first or
last pixel of a row, so each row contributes four points: the work is linear
in the number of rows, not in the number of voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError


@dataclass(frozen=True)
class SliceDiameters:
    """Diameters of one slice of a lesion, in the slice's own 2-D frame.

    Coordinates are (x, y) in mm from the centre of pixel (0, 0) of the slice,
    along the image's first two index axes.
    """

    long_mm: float
    long_ends_xy_mm: tuple[tuple[float, float], tuple[float, float]]
    perpendicular_mm: float
    perpendicular_ends_xy_mm: tuple[tuple[float, float], tuple[float, float]]

    @property
    def product_mm2(self) -> float:
        return self.long_mm * self.perpendicular_mm


def _row_corner_points(mask2d: np.ndarray) -> np.ndarray:
    """Corners (x, y) in pixel units of the first and last pixel of each row of a 2-D mask (y, x)."""
    rows = np.nonzero(mask2d.any(axis=1))[0]
    sub = mask2d[rows]
    first = sub.argmax(axis=1)
    last = sub.shape[1] - 1 - sub[:, ::-1].argmax(axis=1)
    y = rows.astype(float)
    pts = np.concatenate(
        [
            np.stack([first - 0.5, y - 0.5], axis=1),
            np.stack([first - 0.5, y + 0.5], axis=1),
            np.stack([last + 0.5, y - 0.5], axis=1),
            np.stack([last + 0.5, y + 0.5], axis=1),
        ]
    )
    return pts


def _hull_2d(points: np.ndarray) -> np.ndarray:
    """Convex hull vertices in counter-clockwise order, (h, 2)."""
    try:
        hull = ConvexHull(points)
    except QhullError:
        # Degenerate sets cannot arise from pixel squares (each has area), but stay defined.
        return np.unique(points, axis=0)
    return points[hull.vertices]


def _feret(vertices: np.ndarray) -> tuple[float, int, int]:
    d = vertices[:, None, :] - vertices[None, :, :]
    dist2 = np.einsum("ijk,ijk->ij", d, d)
    i, j = np.unravel_index(int(np.argmax(dist2)), dist2.shape)
    return float(np.sqrt(dist2[i, j])), int(i), int(j)


def _longest_perpendicular_chord(vertices: np.ndarray, axis_unit: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Longest chord of a convex polygon perpendicular to ``axis_unit``.

    The chord length along the axis is concave and piecewise linear in the
    position, so its maximum sits at the projection of a vertex.
    """
    normal = np.array([-axis_unit[1], axis_unit[0]])
    a = vertices
    b = np.roll(vertices, -1, axis=0)
    ta, tb = a @ axis_unit, b @ axis_unit
    best = (0.0, a[0], a[0])
    for t in np.unique(ta):
        lo, hi = np.minimum(ta, tb), np.maximum(ta, tb)
        hit = (lo <= t) & (t <= hi)
        span = tb - ta
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(span != 0, (t - ta) / span, 0.0)
        pts = a + frac[:, None] * (b - a)
        # Edges parallel to the chord contribute both their ends.
        par = hit & (span == 0)
        cand = np.concatenate([pts[hit & ~par], a[par], b[par]])
        if len(cand) < 2:
            continue
        s = cand @ normal
        lo_i, hi_i = int(np.argmin(s)), int(np.argmax(s))
        length = float(s[hi_i] - s[lo_i])
        if length > best[0]:
            best = (length, cand[lo_i], cand[hi_i])
    return best


def slice_diameters(mask2d: np.ndarray, spacing_xy_mm: tuple[float, float]) -> SliceDiameters:
    """Long axis and longest perpendicular of one slice.

    Parameters
    ----------
    mask2d : bool array (y, x), at least one pixel set.
    spacing_xy_mm : pixel spacing along x (columns) and y (rows), mm.
    """
    scale = np.asarray(spacing_xy_mm, dtype=float)
    vertices = _hull_2d(_row_corner_points(mask2d) * scale)
    long_mm, i, j = _feret(vertices)
    p, q = vertices[i], vertices[j]
    unit = (q - p) / long_mm
    perp_mm, c0, c1 = _longest_perpendicular_chord(vertices, unit)
    return SliceDiameters(
        long_mm=long_mm,
        long_ends_xy_mm=(tuple(p), tuple(q)),  # type: ignore[arg-type]
        perpendicular_mm=perp_mm,
        perpendicular_ends_xy_mm=(tuple(c0), tuple(c1)),  # type: ignore[arg-type]
    )


def max_3d_diameter(mask3d: np.ndarray, spacing_xyz_mm: tuple[float, float, float]) -> tuple[float, np.ndarray, np.ndarray]:
    """Largest distance between two points of the union of voxel boxes.

    Parameters
    ----------
    mask3d : bool array (z, y, x).
    spacing_xyz_mm : spacing along x, y, z in mm.

    Returns
    -------
    (diameter_mm, end0, end1) with the ends as continuous (x, y, z) indices.
    """
    z, y = np.nonzero(mask3d.any(axis=2))
    sub = mask3d[z, y]
    first = sub.argmax(axis=1).astype(float)
    last = (sub.shape[1] - 1 - sub[:, ::-1].argmax(axis=1)).astype(float)
    pts = []
    for x in (first - 0.5, last + 0.5):
        for dy in (-0.5, 0.5):
            for dz in (-0.5, 0.5):
                pts.append(np.stack([x, y + dy, z + dz], axis=1))
    idx = np.concatenate(pts)
    scale = np.asarray(spacing_xyz_mm, dtype=float)
    mm = idx * scale
    try:
        vert = ConvexHull(mm).vertices
    except QhullError:
        vert = np.arange(len(mm))
    d, i, j = _feret(mm[vert])
    return d, idx[vert[i]], idx[vert[j]]
