"""Segments of a DICOM SEG or ROIs of an RTSTRUCT, each as its own mask on its image's grid.

A reader's segmentation holds more than lesions (organs, avoidance structures, oedema around a
tumour), and its segments may overlap (a GTV inside an oedema contour, a node inside its nodal
station). Painting them into one label map lets one hide another, so here every segment is read
as its own binary mask, and :func:`lesion_segment` says which segments are lesions and why.

Which segments are lesions (in this order):

1. a name matching one of ``exclude`` (case-insensitive glob) is not a lesion;
2. with ``include`` given, a name matching one of its patterns is a lesion and any other is not;
3. otherwise its type decides: an RTSTRUCT ROI whose RTROIInterpretedType is a structure of
   anatomy or planning (ORGAN, AVOIDANCE, EXTERNAL, a planning margin CTV/PTV ...) is not a
   lesion; a SEG segment whose segmented property category is not a morphologically abnormal
   structure (an anatomical structure, a tissue, a body substance, a device ...) is not a lesion;
   anything else (GTV, an unspecified ROI, a neoplasm, a lesion, a mass) is.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from imaging.io.dicom import RTSTRUCT_STORAGE, SEG_STORAGE
from imaging.io.errors import MaskError

#: RTROIInterpretedType values (PS3.3 C.8.8.8) that name anatomy, devices or planning constructs, not disease.
#: CTV and PTV are margins around a tumour drawn for treatment planning; a GTV is the tumour itself.
NOT_LESION_ROI_TYPES = frozenset({
    "ORGAN", "AVOIDANCE", "EXTERNAL", "CTV", "PTV", "TREATED_VOLUME", "IRRAD_VOLUME", "BOLUS", "FIXATION",
    "SUPPORT", "CONTROL", "CAVITY", "ISOCENTER", "MARKER", "REGISTRATION", "CONTRAST_AGENT", "DOSE_REGION",
    "DOSE_MEASUREMENT", "BRACHY_CHANNEL", "BRACHY_ACCESSORY", "BRACHY_SRC_APP", "BRACHY_CHNL_SHLD",
})
#: SEG segmented property categories (CID 7150) whose segments can be lesions.
LESION_CATEGORIES = frozenset({"morphologically abnormal structure", "morphologically altered structure"})


@dataclass(frozen=True)
class SegmentMask:
    """One segment (SEG) or ROI (RTSTRUCT) as a binary mask on the reference image's grid.

    ``number``: SegmentNumber / ROINumber; ``mask``: UInt8 0/1 image on the reference grid.
    """

    number: int
    mask: sitk.Image
    n_voxels: int


def lesion_segment(name: str, kind: str, category: str, *, include: Sequence[str] = (),
                   exclude: Sequence[str] = ()) -> tuple[bool, str]:
    """Whether a segment or ROI is a lesion, and why (see the module docstring for the rule).

    Parameters
    ----------
    name
        SegmentLabel or ROIName.
    kind
        RTROIInterpretedType (RTSTRUCT) or the segmented property type's meaning (SEG); "" if absent.
    category
        SEG: the segmented property category's meaning; RTSTRUCT: "".
    include, exclude
        Case-insensitive glob patterns of names (``dataset.segmentations.include`` / ``exclude``).
    """
    low = name.lower()
    for pattern in exclude:
        if fnmatch.fnmatchcase(low, pattern.lower()):
            return False, f"{name!r} matches exclude pattern {pattern!r}"
    if include:
        for pattern in include:
            if fnmatch.fnmatchcase(low, pattern.lower()):
                return True, f"{name!r} matches include pattern {pattern!r}"
        return False, f"{name!r} matches no include pattern ({', '.join(map(repr, include))})"
    if kind.upper() in NOT_LESION_ROI_TYPES:
        return False, f"{name!r} is an RT ROI of type {kind.upper()}, not a lesion (include it by name if it is one)"
    if category and category.lower() not in LESION_CATEGORIES:
        return False, f"{name!r} is a segment of category {category!r}, not a lesion (include it by name if it is one)"
    return True, f"{name!r}: " + (f"type {kind}" if kind else "no type that excludes it")


def _paste_subgrid(mask: sitk.Image, reference: sitk.Image, tol_mm: float) -> sitk.Image | None:
    """``mask`` on ``reference``'s grid when its voxels are voxels of that grid (a SEG stores only the frames of
    the slices it covers, in its own slice order), so nearest neighbour copies them exactly; None when not."""
    from imaging.io.geometry import Geometry

    g, m = Geometry.of(reference), Geometry.of(mask)
    to_ref = np.linalg.inv(np.asarray(g.direction).reshape(3, 3) @ np.diag(g.spacing_mm))
    step = to_ref @ np.asarray(m.direction).reshape(3, 3) @ np.diag(m.spacing_mm)  # mask index -> reference index
    if not np.allclose(step, np.round(step), atol=1e-4) or round(abs(np.linalg.det(np.round(step)))) != 1:
        return None
    start = to_ref @ (np.asarray(m.origin_lps) - np.asarray(g.origin_lps))
    if np.max(np.abs((start - np.round(start)) * np.asarray(g.spacing_mm))) > tol_mm:
        return None
    return sitk.Resample(mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def read_segment_masks(
    path: str | os.PathLike[str], reference: sitk.Image, numbers: Collection[int], *, tol_mm: float = 1e-3
) -> tuple[list[SegmentMask], list[str]]:
    """The segments ``numbers`` of a SEG (or ROIs of an RTSTRUCT), each as its own mask on ``reference``'s grid.

    A SEG on another grid than the image is resampled with nearest neighbour (said in the problems).

    Returns
    -------
    (masks, problems)
        One :class:`SegmentMask` per number, in the order given; what was noticed.

    Raises
    ------
    MaskError
        Neither a SEG nor an RTSTRUCT, an unknown number, or a mask outside the image.
    """
    from imaging.io.masks import _align, _dicom_sop_class

    p = Path(path)
    sop_class = _dicom_sop_class(p)
    problems: list[str] = []
    out: list[SegmentMask] = []
    if sop_class == RTSTRUCT_STORAGE:
        from imaging.io.rtstruct import read_rtstruct_rois

        arrays, problems = read_rtstruct_rois(p, reference, roi_numbers=numbers)
        missing = sorted(set(numbers) - set(arrays))
        if missing:
            raise MaskError(f"{p}: no contours for ROI number(s) {missing}")
        for number in numbers:
            image = sitk.GetImageFromArray(arrays[number].astype(np.uint8))
            image.CopyInformation(reference)
            out.append(SegmentMask(number, image, int(np.count_nonzero(arrays[number]))))
        return out, problems
    if sop_class == SEG_STORAGE:
        from imaging.io.seg import read_seg_segments, seg_frames_on_grid

        placed = seg_frames_on_grid(p, reference, list(numbers), tol_mm=tol_mm)
        if placed is not None:  # frames on the image's own slices: exact, nothing resampled
            for number in numbers:
                image = sitk.GetImageFromArray(placed[number].astype(np.uint8))
                image.CopyInformation(reference)
                out.append(SegmentMask(number, image, int(np.count_nonzero(placed[number]))))
            return out, problems
        for number, image in read_seg_segments(p, list(numbers)).items():
            aligned = _paste_subgrid(image, reference, tol_mm)
            if aligned is not None:
                lost = int(np.count_nonzero(sitk.GetArrayViewFromImage(image))) - int(
                    np.count_nonzero(sitk.GetArrayViewFromImage(aligned)))
                if lost:
                    raise MaskError(f"{p}: {lost} voxel(s) of segment {number} lie outside its image's grid")
            if aligned is None:  # frames not on the image's voxels: nearest neighbour, said in the problems
                aligned = sitk.Cast(_align(sitk.Cast(image, sitk.sitkUInt16), reference, p, tol_mm, problems), sitk.sitkUInt8)
            out.append(SegmentMask(number, aligned, int(np.count_nonzero(sitk.GetArrayViewFromImage(aligned)))))
        return out, problems
    raise MaskError(f"{p}: neither a DICOM SEG nor an RTSTRUCT (SOP class {sop_class or 'not DICOM'})")
