"""Per-lesion measurements of a label map, in physical mm (conventions in ``diameters.py``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from imaging.io.geometry import Geometry
from imaging.measurement.diameters import SliceOutline, _line_extremes, max_3d_diameter, slice_hull_points
from imaging.measurement.volume import mesh_volume_mm3

Point = tuple[float, float, float]


@dataclass(frozen=True)
class LesionMeasurement:
    """Measurements of one lesion (one label value) at one time point.

    All lengths in mm, areas in mm2, volumes in mm3, points in DICOM LPS mm.
    In-plane measurements are made in the acquisition plane: the plane of the
    image's first two index axes, whatever its direction cosines. Diameters
    are measured on the lesion boundary (the iso-0.5 contour, ends refined to
    sub-pixel by the cap law; see :mod:`imaging.measurement.diameters`).

    Attributes
    ----------
    label : label value in the label map.
    n_voxels : voxel count.
    volume_mm3 : voxel count x voxel volume.
    center_lps : centroid of the voxel centres.
    long_axis_mm : largest in-plane Feret diameter over all slices (RECIST).
    long_axis_ends_lps : its two end points.
    long_axis_slice : slice index (third index axis) of the long axis.
    short_axis_mm : longest chord inside the lesion perpendicular to the long axis, in the same
        slice (RECIST nodes).
    short_axis_ends_lps : its two end points.
    perpendicular_mm : RANO: longest perpendicular in the slice of the largest cross-sectional product.
    bidimensional_product_mm2 : RANO: that slice's long axis x perpendicular, the largest over slices.
    product_slice : slice index of that product.
    max_3d_diameter_mm : largest distance across the lesion's surface in 3-D (never less than
        ``long_axis_mm``).
    n_slices : number of slices the lesion touches.
    perpendicular_ends_lps : end points of ``perpendicular_mm``.
    product_long_axis_mm : the long axis of the product slice (product = this x perpendicular_mm).
    product_long_axis_ends_lps : its end points.
    max_3d_diameter_ends_lps : end points of ``max_3d_diameter_mm``.
    volume_mesh_mm3 : volume enclosed by the marching-cubes surface at level 0.5.
    """

    label: int
    n_voxels: int
    volume_mm3: float
    center_lps: Point
    long_axis_mm: float
    long_axis_ends_lps: tuple[Point, Point]
    long_axis_slice: int
    short_axis_mm: float
    short_axis_ends_lps: tuple[Point, Point]
    perpendicular_mm: float
    bidimensional_product_mm2: float
    product_slice: int
    max_3d_diameter_mm: float
    n_slices: int
    perpendicular_ends_lps: tuple[Point, Point]
    product_long_axis_mm: float
    product_long_axis_ends_lps: tuple[Point, Point]
    max_3d_diameter_ends_lps: tuple[Point, Point]
    volume_mesh_mm3: float

    def to_dict(self) -> dict:
        return asdict(self)


def measure_lesions(
    labels: sitk.Image, label_values: Iterable[int] | None = None, *, mesh_volume: bool = True
) -> list[LesionMeasurement]:
    """Measure every lesion of a label map.

    Parameters
    ----------
    labels : integer label map with its geometry (0 = background).
    label_values : the labels to measure; default every non-zero label present.
    mesh_volume : compute ``volume_mesh_mm3`` (the marching-cubes surface's volume, about a fifth of
        the cost on large lesions); when False it repeats ``volume_mm3``.

    Returns
    -------
    list of :class:`LesionMeasurement`, ordered by label. A requested label
    absent from the map is left out (the caller decides what absence means).
    """
    geom = Geometry.of(labels)
    array = np.asarray(sitk.GetArrayViewFromImage(labels))  # (z, y, x)
    if array.ndim != 3:
        raise ValueError(f"measure_lesions: a 3-D label map is required, got {array.ndim}-D")
    if array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"measure_lesions: an integer label map is required, got pixel type {array.dtype}")
    top = int(array.max())
    if top <= 0:
        return []
    # One pass over the map finds every label's bounding box (np.unique would sort the whole map).
    boxes = ndimage.find_objects(array, max_label=top)
    present = [v + 1 for v, box in enumerate(boxes) if box is not None]
    wanted = sorted({int(v) for v in (present if label_values is None else label_values)})
    wanted = [v for v in wanted if 0 < v <= top and boxes[v - 1] is not None]

    results = []
    for value in wanted:
        box = boxes[value - 1]
        assert box is not None
        mask = np.asarray(array[box] == value)
        z0, y0, x0 = (s.start for s in box)
        results.append(measure_mask(mask, geom, (z0, y0, x0), label=value, mesh_volume=mesh_volume))
    return results


def measure_mask(
    mask: np.ndarray,
    geom: Geometry,
    offset_zyx: tuple[int, int, int] = (0, 0, 0),
    *,
    label: int = 1,
    mesh_volume: bool = True,
) -> LesionMeasurement:
    """Measure one lesion given as a boolean array (z, y, x) cut from the grid ``geom``.

    Parameters
    ----------
    mask : bool array (z, y, x), the lesion's voxels (a crop of the image grid).
    geom : geometry of the whole image.
    offset_zyx : index of ``mask[0, 0, 0]`` in the whole image.
    label : label value reported.
    mesh_volume : compute ``volume_mesh_mm3`` by marching cubes (else it repeats ``volume_mm3``).

    Raises
    ------
    ValueError
        When ``mask`` holds no voxel.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3 or not mask.any():
        raise ValueError(f"label {label}: the lesion mask is empty (or not 3-D); nothing to measure")
    z0, y0, x0 = offset_zyx
    spacing = np.asarray(geom.spacing_mm, dtype=float)
    sxy = spacing[:2]

    # Cost (docs/measurement.md, "Cost"): a few vectorised passes over the bounding box (row
    # extremes, face masks, voxel counts, the mesh), then work on the boundary only: per-slice hulls
    # of row/column extremes, the cap law on the rows near each end, chords on the slices that can
    # win, the 3-D Feret on the hull of the surface extremes.
    rows = _line_extremes(mask, 2)
    outlines = {k: SliceOutline(mask[k], sxy, pts) for k, pts in slice_hull_points(mask, rows).items()}

    # Long axis: visit slices by decreasing hull Feret; the cap law can add at most
    # ``max_gain_mm`` to a slice's Feret, so once that cannot beat the best, stop (exact).
    best_long: tuple[float, int] | None = None
    for k in sorted(outlines, key=lambda k: (-outlines[k].feret_mm, k)):
        o = outlines[k]
        if best_long is not None and o.feret_mm + o.max_gain_mm < best_long[0]:
            break
        length = o.long_axis()[0]
        if best_long is None or length > best_long[0] + 1e-9 or (abs(length - best_long[0]) <= 1e-9 and k < best_long[1]):
            best_long = (length, k)
    assert best_long is not None
    k_long = best_long[1]

    # RANO product: the same pruning with an upper bound on long axis x chord per slice.
    def bound(k: int) -> float:
        o = outlines[k]
        return (o.feret_mm + o.max_gain_mm) * (o.width_perpendicular_mm + o.max_gain_mm)

    best_prod: tuple[float, int] | None = None
    for k in sorted(outlines, key=lambda k: (-bound(k), k)):
        if best_prod is not None and bound(k) < best_prod[0]:
            break
        o = outlines[k]
        product = o.long_axis()[0] * o.perpendicular()[0]
        if best_prod is None or product > best_prod[0] + 1e-9 or (abs(product - best_prod[0]) <= 1e-9 and k < best_prod[1]):
            best_prod = (product, k)
    assert best_prod is not None
    k_prod = best_prod[1]

    def to_lps(xy_mm: np.ndarray, k: int) -> Point:
        index = np.array([xy_mm[0] / spacing[0] + x0, xy_mm[1] / spacing[1] + y0, float(k + z0)])
        return tuple(float(v) for v in geom.index_to_lps(index))  # type: ignore[return-value]

    long_mm, p, q = outlines[k_long].long_axis()
    short_mm, a, b = outlines[k_long].perpendicular()
    prod_long_mm, pp, pq = outlines[k_prod].long_axis()
    perp_mm, c, d = outlines[k_prod].perpendicular()

    d3, e0, e1 = max_3d_diameter(mask, spacing, {k: o.hull_mm for k, o in outlines.items()}, rows=rows)
    offset_xyz = np.array([x0, y0, z0], dtype=float)
    if d3 < long_mm:
        # The in-plane ends are refined on denser data than the 3-D ones; a 3-D diameter
        # shorter than an in-plane one would be a contradiction, so the in-plane one stands.
        d3 = long_mm
        ends3 = (to_lps(p, k_long), to_lps(q, k_long))
    else:
        a3, b3 = (geom.index_to_lps(e + offset_xyz) for e in (e0, e1))
        ends3 = ((float(a3[0]), float(a3[1]), float(a3[2])), (float(b3[0]), float(b3[1]), float(b3[2])))

    # Centroid from per-row and per-column counts (exact integer sums, as the mean of the indices).
    per_row = np.count_nonzero(mask, axis=2)  # (z, y)
    per_column = np.count_nonzero(mask, axis=(0, 1))  # (x,)
    n_voxels = int(per_row.sum())
    sum_z = int(per_row.sum(axis=1) @ np.arange(mask.shape[0]))
    sum_y = int(per_row.sum(axis=0) @ np.arange(mask.shape[1]))
    sum_x = int(per_column @ np.arange(mask.shape[2]))
    center_index = np.array([sum_x / n_voxels + x0, sum_y / n_voxels + y0, sum_z / n_voxels + z0])
    voxel_mm3 = geom.voxel_volume_mm3
    return LesionMeasurement(
        label=int(label),
        n_voxels=n_voxels,
        volume_mm3=n_voxels * voxel_mm3,
        center_lps=tuple(float(v) for v in geom.index_to_lps(center_index)),  # type: ignore[arg-type]
        long_axis_mm=long_mm,
        long_axis_ends_lps=(to_lps(p, k_long), to_lps(q, k_long)),
        long_axis_slice=k_long + z0,
        short_axis_mm=short_mm,
        short_axis_ends_lps=(to_lps(a, k_long), to_lps(b, k_long)),
        perpendicular_mm=perp_mm,
        bidimensional_product_mm2=prod_long_mm * perp_mm,
        product_slice=k_prod + z0,
        max_3d_diameter_mm=float(d3),
        n_slices=len(outlines),
        perpendicular_ends_lps=(to_lps(c, k_prod), to_lps(d, k_prod)),
        product_long_axis_mm=prod_long_mm,
        product_long_axis_ends_lps=(to_lps(pp, k_prod), to_lps(pq, k_prod)),
        max_3d_diameter_ends_lps=ends3,  # type: ignore[arg-type]
        volume_mesh_mm3=mesh_volume_mm3(mask, spacing) if mesh_volume else n_voxels * voxel_mm3,
    )
