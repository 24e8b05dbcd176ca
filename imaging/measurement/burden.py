"""Size of a whole abnormal region (the FLAIR burden of a glioma), in physical mm.

The region is measured as one lesion with :func:`imaging.measurement.lesions.measure_mask`, so its
diameters follow the conventions of :mod:`imaging.measurement.diameters` (iso-0.5 outline, cap law,
acquisition plane of the mask's grid). Several islands in one slice form one region: the long axis
is the caliper diameter across them, the perpendicular the longest chord inside one island.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk

from imaging.io.geometry import Geometry, nonzero_box
from imaging.measurement.lesions import measure_mask


@dataclass(frozen=True)
class FlairBurden:
    """Size of the abnormal region of a mask (lengths mm, areas mm2, volumes mm3).

    Attributes
    ----------
    volume_mm3 : voxel count x voxel volume.
    bidimensional_product_mm2 : the largest cross-sectional product over slices (long axis x
        perpendicular of that slice, RANO's product).
    long_axis_mm : the long axis of that slice.
    perpendicular_mm : the longest chord inside the region perpendicular to it, in that slice.
    n_slices : slices (third index axis of the mask) the region touches.
    product_slice : slice index of the product; ``None`` for an empty mask.
    """

    volume_mm3: float
    bidimensional_product_mm2: float
    long_axis_mm: float
    perpendicular_mm: float
    n_slices: int
    product_slice: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def measure_flair_burden(mask: sitk.Image) -> FlairBurden:
    """Measure the non-zero voxels of ``mask`` as one region, on the mask's own grid.

    Parameters
    ----------
    mask : a 3-D scalar image (non-zero = abnormal), e.g. :func:`imaging.segmentation.compartments.flair_burden`
        on the FLAIR grid.

    Returns
    -------
    :class:`FlairBurden`; zeros (and ``product_slice=None``) for an empty mask.
    """
    if mask.GetDimension() != 3 or mask.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"measure_flair_burden: a 3-D scalar mask is required, got {mask.GetDimension()}-D with "
                         f"{mask.GetNumberOfComponentsPerPixel()} component(s)")
    array = np.asarray(sitk.GetArrayViewFromImage(mask)) != 0
    box = nonzero_box(array)
    if box is None:
        return FlairBurden(0.0, 0.0, 0.0, 0.0, 0, None)
    offset = tuple(int(s.start) for s in box)
    m = measure_mask(array[box], Geometry.of(mask), offset, label=1, mesh_volume=False)  # type: ignore[arg-type]
    return FlairBurden(
        volume_mm3=m.volume_mm3,
        bidimensional_product_mm2=m.bidimensional_product_mm2,
        long_axis_mm=m.product_long_axis_mm,
        perpendicular_mm=m.perpendicular_mm,
        n_slices=m.n_slices,
        product_slice=m.product_slice,
    )
