"""Label maps aligned to their image."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from imaging.io.errors import MaskError, NiftiError
from imaging.io.geometry import Geometry
from imaging.io.nifti import load_nifti

log = logging.getLogger(__name__)

_INTEGER_PIXELS = {
    sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16, sitk.sitkUInt32, sitk.sitkInt32,
    sitk.sitkUInt64, sitk.sitkInt64,
}


def load_label_map(path: str | os.PathLike[str], reference: sitk.Image, *, tol_mm: float = 1e-3) -> sitk.Image:
    """Load a label map (NIfTI or NRRD) onto the grid of ``reference``.

    A label map on the reference grid is returned as is (as UInt16). One on
    another grid is resampled with nearest neighbour, and the fact is logged.

    Raises
    ------
    MaskError
        Non-integer labels, negative labels, or no overlap with the image.
    """
    p = Path(path)
    try:
        if p.name.endswith((".nii", ".nii.gz")):
            labels = load_nifti(p)
        else:
            labels = sitk.ReadImage(str(p))
    except NiftiError as exc:
        raise MaskError(str(exc)) from exc
    except RuntimeError as exc:
        raise MaskError(f"{p}: unreadable label map ({exc})") from exc

    if labels.GetDimension() != 3:
        raise MaskError(f"{p}: label map is {labels.GetDimension()}-D, image is 3-D")
    if labels.GetPixelID() not in _INTEGER_PIXELS:
        values = sitk.GetArrayViewFromImage(labels)
        if not np.all(np.mod(values, 1) == 0):
            raise MaskError(f"{p}: label map holds non-integer values; labels must be whole numbers")
    if float(sitk.GetArrayViewFromImage(labels).min()) < 0:
        raise MaskError(f"{p}: label map holds negative values")
    labels = sitk.Cast(labels, sitk.sitkUInt16)

    ref_geom, lab_geom = Geometry.of(reference), Geometry.of(labels)
    if ref_geom.same_grid(lab_geom, tol_mm=tol_mm):
        labels.CopyInformation(reference)
        return labels

    n_before = int(np.count_nonzero(sitk.GetArrayViewFromImage(labels)))
    resampled = sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16)
    n_after = int(np.count_nonzero(sitk.GetArrayViewFromImage(resampled)))
    if n_before and not n_after:
        raise MaskError(f"{p}: the label map does not overlap its image (no labelled voxel falls inside the image grid)")
    log.warning("%s: label map is on another grid than its image; resampled with nearest neighbour", p)
    return resampled
