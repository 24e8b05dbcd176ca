"""Per-lesion measurements of a label map, in physical mm."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from imaging.io.geometry import Geometry
from imaging.measurement.diameters import max_3d_diameter, slice_diameters

Point = tuple[float, float, float]


@dataclass(frozen=True)
class LesionMeasurement:
    """Measurements of one lesion (one label value) at one time point.

    All lengths in mm, areas in mm2, volumes in mm3, points in DICOM LPS mm.
    In-plane measurements are made in the acquisition plane: the plane of the
    image's first two index axes, whatever its direction cosines.

    Attributes
    ----------
    label : label value in the label map.
    n_voxels : voxel count.
    volume_mm3 : voxel count x voxel volume.
    center_lps : centroid of the voxel centres.
    long_axis_mm : largest in-plane Feret diameter over all slices (RECIST).
    long_axis_ends_lps : its two end points.
    long_axis_slice : slice index (third index axis) of the long axis.
    short_axis_mm : longest diameter perpendicular to the long axis in the same slice (RECIST nodes).
    short_axis_ends_lps : its two end points.
    perpendicular_mm : RANO: longest perpendicular in the slice of the largest cross-sectional product.
    bidimensional_product_mm2 : RANO: that slice's long axis x perpendicular, the largest over slices.
    product_slice : slice index of that product.
    max_3d_diameter_mm : largest distance between two points of the lesion in 3-D.
    n_slices : number of slices the lesion touches.
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

    def to_dict(self) -> dict:
        return asdict(self)


def _to_lps(geom: Geometry, xy_mm: tuple[float, float], spacing: tuple[float, ...], k: int, x0: int, y0: int) -> Point:
    index = np.array([xy_mm[0] / spacing[0] + x0, xy_mm[1] / spacing[1] + y0, float(k)])
    return tuple(float(v) for v in geom.index_to_lps(index))  # type: ignore[return-value]


def measure_lesions(labels: sitk.Image, label_values: Iterable[int] | None = None) -> list[LesionMeasurement]:
    """Measure every lesion of a label map.

    Parameters
    ----------
    labels : integer label map with its geometry (0 = background).
    label_values : the labels to measure; default every non-zero label present.

    Returns
    -------
    list of :class:`LesionMeasurement`, ordered by label. A requested label
    absent from the map is left out (the caller decides what absence means).
    """
    geom = Geometry.of(labels)
    spacing = geom.spacing_mm
    array = sitk.GetArrayViewFromImage(labels)  # (z, y, x)
    present = np.unique(array)
    present = present[present != 0]
    wanted = sorted(int(v) for v in (present if label_values is None else label_values))
    if not wanted:
        return []
    max_label = int(max(int(present.max()) if present.size else 0, max(wanted)))
    boxes = ndimage.find_objects(array, max_label=max_label)

    results = []
    for value in wanted:
        box = boxes[value - 1] if 0 < value <= len(boxes) else None
        if box is None:
            continue
        mask = np.asarray(array[box] == value)
        z0, y0, x0 = (s.start for s in box)
        results.append(_measure_one(value, mask, (z0, y0, x0), geom))
    return results


def _measure_one(value: int, mask: np.ndarray, offset_zyx: tuple[int, int, int], geom: Geometry) -> LesionMeasurement:
    z0, y0, x0 = offset_zyx
    spacing = geom.spacing_mm
    n_voxels = int(np.count_nonzero(mask))
    zz, yy, xx = np.nonzero(mask)
    center_index = np.array([xx.mean() + x0, yy.mean() + y0, zz.mean() + z0])

    best_long = best_prod = None
    for kz in np.nonzero(mask.any(axis=(1, 2)))[0]:
        d = slice_diameters(mask[kz], (spacing[0], spacing[1]))
        if best_long is None or d.long_mm > best_long[1].long_mm:
            best_long = (int(kz), d)
        if best_prod is None or d.product_mm2 > best_prod[1].product_mm2:
            best_prod = (int(kz), d)
    assert best_long is not None and best_prod is not None
    k_long, long_d = best_long
    k_prod, prod_d = best_prod

    def ends(pair: tuple[tuple[float, float], tuple[float, float]], k: int) -> tuple[Point, Point]:
        return (_to_lps(geom, pair[0], spacing, k + z0, x0, y0), _to_lps(geom, pair[1], spacing, k + z0, x0, y0))

    d3, _, _ = max_3d_diameter(mask, spacing)
    return LesionMeasurement(
        label=value,
        n_voxels=n_voxels,
        volume_mm3=n_voxels * geom.voxel_volume_mm3,
        center_lps=tuple(float(v) for v in geom.index_to_lps(center_index)),  # type: ignore[arg-type]
        long_axis_mm=long_d.long_mm,
        long_axis_ends_lps=ends(long_d.long_ends_xy_mm, k_long),
        long_axis_slice=k_long + z0,
        short_axis_mm=long_d.perpendicular_mm,
        short_axis_ends_lps=ends(long_d.perpendicular_ends_xy_mm, k_long),
        perpendicular_mm=prod_d.perpendicular_mm,
        bidimensional_product_mm2=prod_d.product_mm2,
        product_slice=k_prod + z0,
        max_3d_diameter_mm=d3,
        n_slices=int(np.count_nonzero(mask.any(axis=(1, 2)))),
    )
