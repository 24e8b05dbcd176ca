"""Diameters of a lesion in the acquisition plane and in 3-D, measured on the lesion boundary.

Convention
----------
A mask digitises a lesion by voxel-centre inclusion: a pixel is in when its
centre is. The lesion boundary therefore runs, along every row and column,
somewhere between the last pixel in and the first pixel out.

1. The outline of a slice is its iso-0.5 contour (marching squares on the
   padded, hole-filled slice): the polygon through the midpoints of the edges
   between lesion and background pixels. Its convex hull is the hull of the
   first/last edge midpoints of every row and column, so it costs O(rows +
   columns), not O(pixels).
2. The long axis is the Feret diameter of that hull: the pair of hull vertices
   farthest apart gives the direction ``u``.
3. Each end of a diameter that is an extreme point of the lesion along the
   diameter is then moved to a sub-pixel estimate of the boundary (the *cap
   law*). Near a smooth tip, the area of the lesion beyond a line at depth
   ``d`` below the tip grows as ``d**1.5`` (a parabolic cap: any smooth
   curve, flat or sharp). The pixel count beyond each pixel centre's
   projection is an unbiased estimate of that area (pixel ``j`` from the tip
   stands for ``(j - 1/2)`` pixel areas), so ``area**(2/3)`` is linear in the
   projection and its zero is the tip. The fit uses the pixels within
   :data:`CAP_DEPTH_PIXELS` of the outermost pixel centre; the result is
   clamped between that centre and the pixel's far corner (it can never move
   the end more than the digitisation allows).
4. The perpendicular is the longest chord of the lesion perpendicular to the
   long axis: the longest single segment along which the line stays inside
   the outline polygon, so it never bridges a concave notch or a gap between
   two islands of one slice. Its ends are corrected by the cap law when they
   are extreme points of the lesion along the chord.
5. The 3-D diameter is the Feret diameter of the iso-0.5 surface (the
   vertices of marching cubes on the mask: midpoints of the faces between
   lesion and background voxels), its ends corrected by the 3-D cap law
   (volume grows as ``d**2`` near a smooth tip).

Measured bias over analytic ellipsoids (``tests/measurement``, and the
numbers in ``docs/measurement.md``): the iso-0.5 contour alone over-reads a
long axis by about +0.4 pixel (up to +0.65 px on round lesions, where the
Feret picks the most protruding digitisation noise); the cap law removes the
curvature dependence and leaves a bias within +-0.05 pixel with a mean
absolute error of about 0.15-0.2 pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from skimage import measure as skmeasure

#: Depth of the cap used by the cap law, in pixels (geometric mean of the in-plane spacings).
#: 3 was the best of 1-6 on analytic ellipses: shallower caps hold too few pixels, deeper ones
#: stop being parabolic on small lesions.
CAP_DEPTH_PIXELS = 3.0
_MIN_CAP_LEVELS = 3

Pair2 = tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class SliceDiameters:
    """Diameters of one slice of a lesion, in the slice's own 2-D frame.

    Coordinates are (x, y) in mm from the centre of pixel (0, 0) of the slice,
    along the image's first two index axes.
    """

    long_mm: float
    long_ends_xy_mm: Pair2
    perpendicular_mm: float
    perpendicular_ends_xy_mm: Pair2

    @property
    def product_mm2(self) -> float:
        return self.long_mm * self.perpendicular_mm


# ----------------------------------------------------------------------------------------------
# Elementary geometry
# ----------------------------------------------------------------------------------------------
def _line_extremes(mask: np.ndarray, axis: int) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """Index of every line along ``axis`` that holds a pixel, and its first and last pixel."""
    hit = mask.any(axis=axis)
    where = np.nonzero(hit)
    first = np.argmax(mask, axis=axis)[where]
    last = mask.shape[axis] - 1 - np.argmax(np.flip(mask, axis=axis), axis=axis)[where]
    return where, first, last


def edge_midpoints_2d(mask2d: np.ndarray) -> np.ndarray:
    """Points (x, y), pixel units, whose convex hull is that of the iso-0.5 contour of ``mask2d`` (y, x).

    The first and last lesion pixel of each row contribute the midpoints of
    their outer vertical edges, those of each column the midpoints of their
    outer horizontal edges; every other contour vertex lies between two of these.
    """
    (rows,), x0, x1 = _line_extremes(mask2d, 1)
    (cols,), y0, y1 = _line_extremes(mask2d, 0)
    return np.concatenate(
        [
            np.stack([x0 - 0.5, rows], axis=1),
            np.stack([x1 + 0.5, rows], axis=1),
            np.stack([cols, y0 - 0.5], axis=1),
            np.stack([cols, y1 + 0.5], axis=1),
        ]
    ).astype(float)


def _hull(points: np.ndarray) -> np.ndarray:
    """Convex hull vertices (counter-clockwise in 2-D); the unique points when degenerate."""
    try:
        return points[ConvexHull(points).vertices]
    except (QhullError, ValueError):
        return np.unique(points, axis=0)


#: Point sets up to this size are searched by all pairs in one block; larger ones by a tree of boxes.
_FERET_BLOCK = 1024


def _feret(vertices: np.ndarray) -> tuple[float, int, int]:
    """Largest distance between two of ``vertices`` (n, d) and their indices (exact).

    Up to :data:`_FERET_BLOCK` points, all pairs; beyond, only the pairs of leaves of a k-d
    tree whose boxes can hold a pair as far apart as a known lower bound
    (:func:`_feret_candidates_tree`; the same pairs, hence the same answer, at a fraction of
    the O(n^2) cost on the hull of a lesion).

    Digitised lesions are often symmetric, so several pairs can be equally far apart. Pairs
    within 1e-6 (relative) of the longest are ties, and in 2-D the tie goes to the pair whose
    direction makes the smallest angle (0-180 degrees) with the first index axis: the choice
    then does not depend on the order of the vertices or on rounding in the grid.
    """
    n = len(vertices)
    if n < 2:
        return 0.0, 0, 0
    if n <= _FERET_BLOCK:
        d = vertices[:, None, :] - vertices[None, :, :]
        dist2 = np.einsum("ijk,ijk->ij", d, d)
        i_all, j_all = np.nonzero(dist2 >= float(dist2.max()) * (1.0 - 2e-6))
        keep = i_all < j_all
        i_all, j_all = i_all[keep], j_all[keep]
    else:
        i_all, j_all = _feret_candidates_tree(vertices)
    k = 0
    if len(i_all) > 1 and vertices.shape[1] == 2:
        delta = vertices[j_all] - vertices[i_all]
        angle = np.mod(np.arctan2(delta[:, 1], delta[:, 0]), np.pi)
        k = int(np.argmin(np.round(angle, 9)))
    elif len(i_all) > 1:
        k = int(np.argmax(np.einsum("ij,ij->i", vertices[j_all] - vertices[i_all], vertices[j_all] - vertices[i_all])))
    bi, bj = int(i_all[k]), int(j_all[k])
    return float(np.sqrt(max(float(np.sum((vertices[bi] - vertices[bj]) ** 2)), 0.0))), bi, bj


def _kd_leaves(points: np.ndarray, leaf_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leaves of a k-d tree (median splits along each box's widest axis), built level by level.

    Returns ``(order, starts, sizes)``: leaf ``l`` holds ``order[starts[l]:starts[l] + sizes[l]]``.
    """
    n = len(points)
    order = np.arange(n)
    group = np.zeros(n, dtype=np.int64)
    while True:
        sizes = np.bincount(group)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        if sizes.max() <= leaf_size:
            return order, starts, sizes
        pts = points[order]
        lo, hi = np.minimum.reduceat(pts, starts, axis=0), np.maximum.reduceat(pts, starts, axis=0)
        axis = np.argmax(hi - lo, axis=1)
        perm = np.lexsort((pts[np.arange(n), axis[group]], group))
        order = order[perm]  # ``group`` is sorted, so it is unchanged by ``perm``
        rank = np.arange(n) - starts[group]
        upper = (sizes[group] > leaf_size) & (rank >= sizes[group] // 2)
        group = np.unique(2 * group + upper, return_inverse=True)[1].astype(np.int64)


def _feret_candidates_tree(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i < j) within 2e-6 (relative, squared) of the largest distance, in (i, j) order.

    A lower bound ``L`` (farthest-point iterations) is computed first; a pair of tree leaves whose
    boxes are nowhere as far apart as ``L`` cannot hold such a pair, and is skipped. The box bound
    is computed with the same subtractions as the distances (rounding is monotone), with a 1e-9
    margin, so no qualifying pair is ever missed: the result equals the all-pairs search's.
    Cost: O(n log n) for the tree, O(leaves^2) cheap box bounds, and the point pairs of the
    surviving leaf pairs (a few neighbours of each leaf's antipode on a convex surface).
    """
    v = vertices
    n = len(v)

    def far_from(p: int) -> tuple[int, float]:
        d = v - v[p]
        dist2 = np.einsum("ij,ij->i", d, d)
        q = int(np.argmax(dist2))
        return q, float(dist2[q])

    lower2 = 0.0
    for start in {int(np.argmin(v[:, k])) for k in range(v.shape[1])}:
        p = start
        for _ in range(3):
            q, d2 = far_from(p)
            if d2 <= lower2:
                break
            lower2, p = d2, q
    threshold = lower2 * (1.0 - 2e-6) * (1.0 - 1e-9)

    leaf_size = max(8, -(-n // 512))
    order, starts, sizes = _kd_leaves(v, leaf_size)
    pts = v[order]
    lo, hi = np.minimum.reduceat(pts, starts, axis=0), np.maximum.reduceat(pts, starts, axis=0)
    n_leaves = len(starts)
    la_parts, lb_parts = [], []
    for a0 in range(0, n_leaves, 256):
        a = np.arange(a0, min(a0 + 256, n_leaves))
        span = np.maximum(hi[a, None, :] - lo[None, :, :], hi[None, :, :] - lo[a, None, :])
        ub2 = np.einsum("ijk,ijk->ij", span, span)
        ia, ib = np.nonzero((ub2 >= threshold) & (a[:, None] <= np.arange(n_leaves)[None, :]))
        la_parts.append(a[ia])
        lb_parts.append(ib)
    la, lb = np.concatenate(la_parts), np.concatenate(lb_parts)
    # every point of leaf a against every point of leaf b
    counts = sizes[la] * sizes[lb]
    pair = np.repeat(np.arange(len(la)), counts)
    local = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    ia = starts[la[pair]] + local // sizes[lb[pair]]
    ib = starts[lb[pair]] + local % sizes[lb[pair]]
    keep = (la[pair] != lb[pair]) | (ia < ib)
    i, j = order[ia[keep]], order[ib[keep]]
    d = v[i] - v[j]
    dist2 = np.einsum("ij,ij->i", d, d)
    sel = dist2 >= float(dist2.max()) * (1.0 - 2e-6)
    i, j = np.minimum(i[sel], j[sel]), np.maximum(i[sel], j[sel])
    o = np.lexsort((j, i))
    return i[o], j[o]


def _cube_directions(g: int) -> tuple[np.ndarray, float]:
    """Unit directions through a g x g grid on three faces of a cube (one per +-pair) and the
    cosine of their covering angle: every direction lies within it of one of them (radial
    projection onto the sphere is 1-Lipschitz outside the unit ball)."""
    c = (np.arange(g) + 0.5) / g * 2.0 - 1.0
    a, b = (m.ravel() for m in np.meshgrid(c, c))
    one = np.ones_like(a)
    d = np.concatenate([np.stack([one, a, b], 1), np.stack([a, one, b], 1), np.stack([a, b, one], 1)])
    chord = np.sqrt(2.0) / g
    return d / np.linalg.norm(d, axis=1, keepdims=True), float(np.cos(2.0 * np.arcsin(min(1.0, chord / 2.0))))


_DIRECTION_SETS_3D = tuple(_cube_directions(g) for g in (3, 6, 12))


def _feret_3d(points: np.ndarray) -> tuple[float, int, int]:
    """Exact Feret diameter of a 3-D point set, pruned by projections on fixed directions.

    The farthest pair (p, q) lies along some w; the fixed direction w* nearest to w (within the
    covering angle e) sees the set at least D cos e wide, with p and q within
    ``width(w*) - D cos e`` of its two extremes. A lower bound of D (the extreme pairs of all
    directions) therefore keeps only the points in such caps; three rounds with finer direction
    sets leave a few dozen points of an elongated lesion for the all-pairs search.

    On a round lesion the caps cover the whole surface (a sphere is the worst case) and a round
    keeps more than half the points: the rounds stop, and the points are reduced to the vertices
    of their convex hull (the two ends of a farthest pair are always hull vertices: distance is
    strictly convex), searched by :func:`_feret`'s tree. A digitised convex lesion of N voxels has
    O(N^(1/2)) hull vertices (lattice polytopes), so that search stays far below its O(n^2) bound.
    """
    index = np.arange(len(points))
    for dirs, cos_eps in _DIRECTION_SETS_3D:
        if len(index) <= 64:
            break
        before = len(index)
        sub = points[index]
        proj = sub @ dirs.T
        cols = np.arange(len(dirs))
        imax, imin = proj.argmax(axis=0), proj.argmin(axis=0)
        pmax, pmin = proj[imax, cols], proj[imin, cols]
        lower = float(np.linalg.norm(sub[imax] - sub[imin], axis=1).max())
        slack = (pmax - pmin) - lower * cos_eps + 1e-9 * max(1.0, lower)
        need = slack >= 0
        pr = proj[:, need]
        keep = ((pr <= (pmin + slack)[need]) | (pr >= (pmax - slack)[need])).any(axis=1)
        index = index[keep]
        if len(index) > _FERET_BLOCK and 2 * len(index) > before:
            break  # ineffective: a round lesion
    if len(index) > _FERET_BLOCK:
        try:
            index = index[np.sort(ConvexHull(points[index]).vertices)]  # original order: same ties
        except (QhullError, ValueError):
            pass  # flat: keep them all
    d, i, j = _feret(points[index])
    return d, int(index[i]), int(index[j])


def cap_support(
    t_mm: np.ndarray, cell_measure: float, depth_mm: float, half_extent_mm: float, exponent: float = 2.0 / 3.0
) -> float | None:
    """Sub-voxel position of the boundary beyond the largest of ``t_mm`` (the cap law).

    Parameters
    ----------
    t_mm : projections, mm, of the centres of the lesion's pixels (voxels) on a unit direction.
    cell_measure : area of a pixel (mm2) in 2-D, volume of a voxel (mm3) in 3-D.
    depth_mm : depth of the cap fitted, mm below the outermost centre.
    half_extent_mm : half the extent of one pixel (voxel) along the direction: the clamp.
    exponent : 2/3 in 2-D (cap area ~ depth**1.5), 1/2 in 3-D (cap volume ~ depth**2).

    Returns
    -------
    The boundary position in mm along the direction, within
    ``[max(t), max(t) + half_extent_mm]``, or None when the cap has fewer
    than two distinct levels (the caller keeps its contour position).
    """
    return _cap_fit(t_mm, cell_measure, depth_mm, half_extent_mm, exponent, len(t_mm))[0]


def _cap_fit(
    t_mm: np.ndarray, cell_measure: float, depth_mm: float, half_extent_mm: float, exponent: float, n_total: int
) -> tuple[float | None, float]:
    """:func:`cap_support` given only the projections near the top: ``(result, reach)``.

    ``t_mm`` may be any subset of the ``n_total`` projections that holds every one within some
    window below the largest; the result is :func:`cap_support`'s on all of them whenever the
    fit looked no deeper than ``reach`` (mm below the largest) and ``reach`` is within the window.
    """
    t_top = float(t_mm.max())
    # Lattice points often project to exactly the same value (rational directions); in floating
    # point such ties differ in the last bits, so they are grouped with a tolerance, and the
    # window edge gets the same tolerance, lest a rounding error change the fit.
    eps = 1e-7 * max(depth_mm, 1e-3)
    cap = t_mm[t_mm >= t_top - depth_mm - eps]
    while len(cap) < n_total:
        cap = np.sort(cap)[::-1]
        if int(np.count_nonzero(np.diff(cap) < -eps)) + 1 >= _MIN_CAP_LEVELS:
            break
        # Too shallow to hold three levels (thick slices, tiny lesions): deepen.
        depth_mm *= 2.0
        cap = t_mm[t_mm >= t_top - depth_mm - eps]
    cap = np.sort(cap)[::-1]
    new_level = np.concatenate([[True], np.diff(cap) < -eps])
    first_index = np.nonzero(new_level)[0]
    counts = np.diff(np.append(first_index, len(cap)))
    levels = cap[first_index]
    reach = depth_mm + eps
    if len(levels) < 2:
        return None, reach
    # Ranks j = 1..n stand for (j - 1/2) cells beyond; tied centres share their mean rank.
    area = (first_index + 0.5 * counts) * cell_measure
    y = area**exponent
    x = levels
    xm = x.mean()
    sxx = float(((x - xm) ** 2).sum())
    if sxx <= 0.0:
        return None, reach
    slope = float(((x - xm) * (y - y.mean())).sum()) / sxx
    if not slope < 0.0:
        return None, reach
    tip = xm - float(y.mean()) / slope
    return float(min(max(tip, t_top), t_top + half_extent_mm)), reach


def _half_extent(direction: np.ndarray, spacing: np.ndarray) -> float:
    return 0.5 * float(np.abs(direction) @ spacing)


# ----------------------------------------------------------------------------------------------
# One slice
# ----------------------------------------------------------------------------------------------
class SliceOutline:
    """One slice of a lesion: its hull, and on demand its pixel centres and outline polygon.

    Parameters
    ----------
    mask2d : bool array (y, x) with at least one pixel set.
    spacing_xy_mm : pixel spacing along x (columns) and y (rows), mm.
    hull_points_xy : optional precomputed :func:`edge_midpoints_2d` of ``mask2d`` (pixel units).
    """

    def __init__(self, mask2d: np.ndarray, spacing_xy_mm: Sequence[float] | np.ndarray, hull_points_xy: np.ndarray | None = None):
        self.mask = np.asarray(mask2d, dtype=bool)
        self.spacing = np.asarray(spacing_xy_mm, dtype=float)
        pts = edge_midpoints_2d(self.mask) if hull_points_xy is None else hull_points_xy
        self.hull_mm = _hull(pts * self.spacing)
        self.feret_mm, i, j = _feret(self.hull_mm)
        p, q = self.hull_mm[i], self.hull_mm[j]
        if tuple(np.round(q, 6)) < tuple(np.round(p, 6)):
            p, q = q, p  # end 0 is the one with the lower x (then y): independent of vertex order
        self.feret_ends_mm = (p, q)
        self.u = (q - p) / self.feret_mm if self.feret_mm > 0 else np.array([1.0, 0.0])
        self.v = np.array([-self.u[1], self.u[0]])
        self._centres: np.ndarray | None = None
        self._polygons: list[np.ndarray] | None = None
        self._long: tuple[float, np.ndarray, np.ndarray] | None = None
        self._perp: tuple[float, np.ndarray, np.ndarray] | None = None

    # Upper bounds used to skip slices that cannot win (see lesions.py).
    @property
    def max_gain_mm(self) -> float:
        """Most the cap law can add to a diameter of this slice (half a pixel's shorter side per end)."""
        return float(self.spacing.min())

    @property
    def width_perpendicular_mm(self) -> float:
        s = self.hull_mm @ self.v
        return float(s.max() - s.min())

    @property
    def centres_mm(self) -> np.ndarray:
        if self._centres is None:
            y, x = np.nonzero(self.mask)
            self._centres = np.stack([x, y], axis=1) * self.spacing
        return self._centres

    @property
    def polygons_mm(self) -> list[np.ndarray]:
        """Closed outer contours (iso-0.5, holes filled), vertices (n, 2) in mm, not repeated."""
        if self._polygons is None:
            filled = ndimage.binary_fill_holes(self.mask)
            padded = np.pad(filled, 1).astype(np.float32)
            contours = skmeasure.find_contours(padded, 0.5, fully_connected="high")
            self._polygons = [(c[:-1, ::-1] - 1.0) * self.spacing for c in contours if len(c) > 3]
        return self._polygons

    def long_axis(self) -> tuple[float, np.ndarray, np.ndarray]:
        """(length mm, end0, end1): the Feret diameter of the contour hull, ends by the cap law."""
        if self._long is None:
            p, q = self.feret_ends_mm
            u = self.u
            p2 = p + (self._tip(-u, float(-(p @ u))) - float(-(p @ u))) * (-u)
            q2 = q + (self._tip(u, float(q @ u)) - float(q @ u)) * u
            self._long = (float(np.linalg.norm(q2 - p2)), p2, q2)
        return self._long

    def _tip(self, direction: np.ndarray, contour_support: float) -> float:
        """The cap law's boundary along ``direction`` (the contour's when there is no cap)."""
        tip = cap_support(
            self.centres_mm @ direction,
            float(np.prod(self.spacing)),
            CAP_DEPTH_PIXELS * float(np.sqrt(np.prod(self.spacing))),
            _half_extent(direction, self.spacing),
        )
        return contour_support if tip is None else tip

    def perpendicular(self) -> tuple[float, np.ndarray, np.ndarray]:
        """(length mm, end0, end1): the longest chord inside the outline perpendicular to the long axis.

        The outline is first clipped at the cap law's boundary along +-v (where that lies
        inside the contour: the contour over-reads there), so chords that reach the extremes
        of the lesion along v end on the sub-pixel boundary; chords elsewhere end on the contour.
        """
        if self._perp is None:
            s_all = self.hull_mm @ self.v
            s_lo, s_hi = float(s_all.min()), float(s_all.max())
            clip = (-self._tip(-self.v, -s_lo), self._tip(self.v, s_hi))
            p, q = self.long_axis()[1:]
            t_mid = 0.5 * float((p + q) @ self.u)
            self._perp = _longest_chord(self.polygons_mm, self.u, self.v, clip=clip, t_centre=t_mid)
        return self._perp

    def diameters(self) -> SliceDiameters:
        long_mm, p, q = self.long_axis()
        perp_mm, a, b = self.perpendicular()
        return SliceDiameters(
            long_mm=long_mm,
            long_ends_xy_mm=(tuple(map(float, p)), tuple(map(float, q))),  # type: ignore[arg-type]
            perpendicular_mm=perp_mm,
            perpendicular_ends_xy_mm=(tuple(map(float, a)), tuple(map(float, b))),  # type: ignore[arg-type]
        )


def _longest_chord(
    polygons: list[np.ndarray],
    u: np.ndarray,
    v: np.ndarray,
    clip: tuple[float, float] | None = None,
    t_centre: float | None = None,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Longest segment along ``v`` lying inside the polygons (even-odd), over all positions along ``u``.

    A chord's length is linear in its position between two vertex positions,
    so the maximum is at a vertex position or its limit from one side: lines
    just below and just above every vertex position are intersected. Edges
    are half-open so a line through a vertex counts it once. Each edge is
    paired only with the lines its span covers, so the work is linear in the
    number of vertices, not quadratic.

    ``clip = (lo, hi)`` clips the polygons to ``lo <= x.v <= hi`` first.
    Among chords as long as the longest (1e-6 relative), the one nearest
    ``t_centre`` along ``u`` is returned (stable, and central for display).
    """
    zero = np.zeros(2)
    if not polygons:
        return 0.0, zero, zero
    a = np.concatenate(polygons)
    b = np.concatenate([np.roll(p, -1, axis=0) for p in polygons])
    ta, tb = a @ u, b @ u
    sa, sb = a @ v, b @ v
    levels = np.unique(ta)
    eps = 1e-7 * max(1.0, float(np.abs(levels).max()))
    t = np.sort(np.concatenate([levels - eps, levels + eps]))
    lo, hi = np.minimum(ta, tb), np.maximum(ta, tb)
    i0 = np.searchsorted(t, lo, side="left")
    i1 = np.searchsorted(t, hi, side="left")
    counts = i1 - i0
    total = int(counts.sum())
    if total == 0:
        return 0.0, zero, zero
    edge = np.repeat(np.arange(len(a)), counts)
    offset = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    line = i0[edge] + offset
    span = tb[edge] - ta[edge]  # never 0: such an edge covers no line
    s = sa[edge] + (t[line] - ta[edge]) / span * (sb[edge] - sa[edge])
    order = np.lexsort((s, line))
    line, s = line[order], s[order]
    first = np.searchsorted(line, line, side="left")
    rank = np.arange(total) - first
    start = (rank % 2 == 0) & (np.arange(total) + 1 < total)
    idx = np.nonzero(start)[0]
    idx = idx[line[np.minimum(idx + 1, total - 1)] == line[idx]]
    if len(idx) == 0:
        return 0.0, zero, zero
    s0, s1 = s[idx], s[idx + 1]
    if clip is not None:
        s0, s1 = np.maximum(s0, clip[0]), np.minimum(s1, clip[1])
    lengths = s1 - s0
    best = float(lengths.max())
    if best <= 0.0:
        return 0.0, zero, zero
    # near-ties (1e-6 relative: far below any digitisation effect, far above rounding) go to the
    # most central chord, so a grid perturbed by rounding (a float32 NIfTI affine) picks the same one
    tied = np.nonzero(lengths >= best - 1e-6 * max(1.0, best))[0]
    tt_all = t[line[idx[tied]]]
    centre = t_centre if t_centre is not None else 0.5 * (t[0] + t[-1])
    # symmetric lesions put two chords equally far from the centre: the lower t wins (1e-6 mm)
    k = int(tied[np.lexsort((np.round(tt_all, 6), np.round(np.abs(tt_all - centre), 6)))[0]])
    tt = float(t[line[idx[k]]])
    return float(lengths[k]), tt * u + s0[k] * v, tt * u + s1[k] * v


def slice_diameters(mask2d: np.ndarray, spacing_xy_mm: tuple[float, float]) -> SliceDiameters:
    """Long axis and longest perpendicular of one slice (see the module's convention).

    Parameters
    ----------
    mask2d : bool array (y, x), at least one pixel set.
    spacing_xy_mm : pixel spacing along x (columns) and y (rows), mm.

    Raises
    ------
    ValueError
        When ``mask2d`` holds no pixel.
    """
    if not np.any(mask2d):
        raise ValueError("slice_diameters: the slice holds no lesion pixel")
    return SliceOutline(mask2d, spacing_xy_mm).diameters()


# ----------------------------------------------------------------------------------------------
# 3-D
# ----------------------------------------------------------------------------------------------
def slice_hull_points(
    mask3d: np.ndarray, rows: tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray] | None = None
) -> dict[int, np.ndarray]:
    """:func:`edge_midpoints_2d` of every non-empty slice of ``mask3d`` (z, y, x), at once.

    ``rows`` is ``_line_extremes(mask3d, 2)`` if the caller has it.
    """
    (rz, ry), x0, x1 = _line_extremes(mask3d, 2) if rows is None else rows
    (cz, cx), y0, y1 = _line_extremes(mask3d, 1)
    z = np.concatenate([rz, rz, cz, cz])
    pts = np.concatenate(
        [
            np.stack([x0 - 0.5, ry], axis=1),
            np.stack([x1 + 0.5, ry], axis=1),
            np.stack([cx, y0 - 0.5], axis=1),
            np.stack([cx, y1 + 0.5], axis=1),
        ]
    ).astype(float)
    order = np.argsort(z, kind="stable")
    z, pts = z[order], pts[order]
    keys, starts = np.unique(z, return_index=True)
    return {int(k): chunk for k, chunk in zip(keys, np.split(pts, starts[1:]))}


def max_3d_diameter(
    mask3d: np.ndarray,
    spacing_xyz_mm: Sequence[float] | np.ndarray,
    slice_hulls_mm: dict[int, np.ndarray] | None = None,
    voxels_zyx: tuple[np.ndarray, ...] | None = None,
    rows: tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray] | None = None,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Largest distance across the iso-0.5 surface of ``mask3d``, ends by the 3-D cap law.

    Parameters
    ----------
    mask3d : bool array (z, y, x) with at least one voxel set.
    spacing_xyz_mm : spacing along x, y, z in mm.
    slice_hulls_mm : optional in-plane hull vertices (x, y) in mm per slice index (already computed
        by the caller); the in-plane surface vertices of a slice that are not on its hull cannot be
        on the 3-D hull.
    voxels_zyx : optional ``np.nonzero(mask3d)``, if the caller has it (then the cap law projects
        every voxel, as it did before ``rows``).
    rows : optional ``_line_extremes(mask3d, 2)`` (every row (z, y) holding a voxel, its first and
        last x), if the caller has it.

    Returns
    -------
    (diameter_mm, end0, end1) with the ends as continuous (x, y, z) indices.
    """
    spacing = np.asarray(spacing_xyz_mm, dtype=float)
    if rows is None:
        rows = _line_extremes(mask3d, 2)
    if slice_hulls_mm is None:
        slice_hulls_mm = {k: _hull(p * spacing[:2]) for k, p in slice_hull_points(mask3d, rows).items()}
    parts = [np.column_stack([h, np.full(len(h), k * spacing[2])]) for k, h in slice_hulls_mm.items()]
    # Top and bottom faces: midpoints between a voxel and the background above (below) it, at
    # z = k +- 1/2. Within one such plane only the first and last point of each row can be on the
    # hull, so those are all that is kept.
    top = np.empty_like(mask3d)
    np.greater(mask3d[:-1], mask3d[1:], out=top[:-1])  # in, and out above
    top[-1] = mask3d[-1]
    bottom = np.empty_like(mask3d)
    np.greater(mask3d[1:], mask3d[:-1], out=bottom[1:])
    bottom[0] = mask3d[0]
    for faces, dz in ((top, 0.5), (bottom, -0.5)):
        (fz, fy), x0, x1 = _line_extremes(faces, 2)
        z = (fz + dz) * spacing[2]
        y = fy * spacing[1]
        parts.append(np.stack([x0 * spacing[0], y, z], axis=1))
        parts.append(np.stack([x1 * spacing[0], y, z], axis=1))
    del top, bottom
    pts = np.concatenate(parts)
    d, i, j = _feret_3d(pts)
    p, q = pts[i], pts[j]
    if tuple(np.round(q, 6)) < tuple(np.round(p, 6)):
        p, q = q, p
    if d > 0:
        w = (q - p) / d
        depth = CAP_DEPTH_PIXELS * float(np.sqrt(spacing[0] * spacing[1]))
        half = _half_extent(w, spacing)
        vox = float(np.prod(spacing))
        if voxels_zyx is not None:
            zz, yv, xv = voxels_zyx
            t = (np.stack([xv, yv, zz], axis=1) * spacing) @ w
            hi = cap_support(t, vox, depth, half, exponent=0.5)
            lo = cap_support(-t, vox, depth, half, exponent=0.5)
        else:
            n_total = int(np.count_nonzero(mask3d))
            hi = _cap_3d(mask3d, spacing, w, rows, n_total, vox, depth, half)
            lo = _cap_3d(mask3d, spacing, -w, rows, n_total, vox, depth, half)
        if hi is not None:
            q = q + (hi - q @ w) * w
        if lo is not None:
            p = p + (-lo - p @ w) * w
        d = float(np.linalg.norm(q - p))
    return d, p / spacing, q / spacing


def _cap_3d(
    mask3d: np.ndarray,
    spacing: np.ndarray,
    w: np.ndarray,
    rows: tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray],
    n_total: int,
    cell: float,
    depth: float,
    half: float,
) -> float | None:
    """:func:`cap_support` of all voxel centres projected on ``w``, reading only the rows near the top.

    Along a row the projection is linear in x, so a row's largest projection is at its first or
    last voxel: only the rows reaching within a window of the top (4 cap depths) are read, and the
    fit is exact unless it had to look deeper (then every voxel is projected).
    """

    def proj(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        return (x * spacing[0]) * w[0] + (y * spacing[1]) * w[1] + (z * spacing[2]) * w[2]

    (rz, ry), x0, x1 = rows
    row_top = np.maximum(proj(x0, ry, rz), proj(x1, ry, rz))
    window = 4.0 * depth
    sel = np.nonzero(row_top >= float(row_top.max()) - window)[0]
    r, x = np.nonzero(mask3d[rz[sel], ry[sel]])
    tip, reach = _cap_fit(proj(x, ry[sel][r], rz[sel][r]), cell, depth, half, 0.5, n_total)
    if reach > window:
        zz, yv, xv = np.nonzero(mask3d)
        tip = _cap_fit(proj(xv, yv, zz), cell, depth, half, 0.5, n_total)[0]
    return tip
