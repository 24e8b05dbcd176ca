"""Lesions from label maps.

Two readings of a mask are supported: each label value is one lesion (a label
map whose values are stable lesion ids across time points), or each connected
component of the non-zero voxels is one lesion (a binary mask).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import SimpleITK as sitk

LesionMode = Literal["labels", "components"]


def lesion_label_map(labels: sitk.Image, *, mode: LesionMode = "labels", min_volume_mm3: float = 0.0) -> sitk.Image:
    """Label map with one value per lesion, specks below ``min_volume_mm3`` removed.

    Parameters
    ----------
    labels : integer label map with geometry.
    mode : ``"labels"`` keeps the label values (stable ids); ``"components"``
        numbers the 26-connected components of the non-zero voxels 1..n by
        decreasing size (ties by position), which is stable for one image but
        carries no identity across time points.
    min_volume_mm3 : lesions smaller than this are dropped (set to 0).
    """
    voxel_mm3 = float(np.prod(labels.GetSpacing()))
    if mode == "components":
        cc = sitk.ConnectedComponent(labels != 0, True)
        out = sitk.RelabelComponent(cc, minimumObjectSize=int(np.ceil(min_volume_mm3 / voxel_mm3)), sortByObjectSize=True)
        out = sitk.Cast(out, sitk.sitkUInt16)
        out.CopyInformation(labels)
        return out
    if mode != "labels":
        raise ValueError(f"unknown lesion mode {mode!r}; expected 'labels' or 'components'")
    array = sitk.GetArrayFromImage(labels)
    if min_volume_mm3 > 0:
        values, counts = np.unique(array[array != 0], return_counts=True)
        small = values[counts * voxel_mm3 < min_volume_mm3]
        if small.size:
            array[np.isin(array, small)] = 0
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(labels)
    return out


def label_fragments(labels: sitk.Image, min_voxels: int = 1) -> dict[int, list[int]]:
    """Voxel counts of the 26-connected parts of every label with more than one part, largest first.

    Parts smaller than ``min_voxels`` (specks) are not counted.

    A label map may give one lesion id to separate blobs; measured as one lesion, its long axis can
    span the gap between them, which a reader would not do. The pipeline reports these.
    """
    from scipy import ndimage

    array = sitk.GetArrayViewFromImage(labels)
    out: dict[int, list[int]] = {}
    for value, box in enumerate(ndimage.find_objects(np.asarray(array)), start=1):
        if box is None:
            continue
        parts, n = ndimage.label(np.asarray(array[box]) == value, structure=np.ones((3, 3, 3), dtype=bool))
        sizes = sorted((c for c in np.bincount(parts.ravel())[1:].tolist() if c >= min_voxels), reverse=True)
        if len(sizes) > 1:
            out[value] = sizes
    return out
