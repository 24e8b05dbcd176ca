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
