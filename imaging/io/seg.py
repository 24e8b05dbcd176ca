"""DICOM SEG (highdicom) as a label image in LPS.

The segmentation's frames are assembled by highdicom into a regularly spaced
volume (frames absent for empty slices are allowed); segment numbers become
label values. Where binary segments overlap, the higher segment number wins
and the overlap is reported; fractional segments are thresholded at 0.5.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from imaging.io.errors import MaskError
from imaging.io.geometry import LoadedVolume


def read_seg(path: str | os.PathLike[str]) -> LoadedVolume:
    """Read a DICOM SEG into a UInt16 label image on its own grid (label = segment number).

    Raises
    ------
    MaskError
        Not a SEG, or frames that do not form a regularly spaced volume.
    """
    import highdicom as hd

    p = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seg = hd.seg.segread(p)
    except Exception as exc:  # highdicom/pydicom raise many types on non-SEG or broken files
        raise MaskError(f"{p}: unreadable DICOM SEG ({type(exc).__name__}: {exc})") from exc
    numbers = list(seg.segment_numbers)
    if not numbers:
        raise MaskError(f"{p}: DICOM SEG without segments")
    if max(numbers) > 65535:
        raise MaskError(f"{p}: segment number {max(numbers)} cannot be a label value (1-65535)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            volume = seg.get_volume(combine_segments=False, allow_missing_positions=True)
    except Exception as exc:  # highdicom raises ValueError/RuntimeError when frames are not a regular volume
        raise MaskError(f"{p}: the SEG frames do not form a regularly spaced volume ({type(exc).__name__}: {exc})") from exc

    array = np.asarray(volume.array)  # (slices, rows, columns, segments)
    if array.ndim == 3:
        array = array[..., None]
    labels = np.zeros(array.shape[:3], dtype=np.uint16)
    overlap = 0
    for i, number in enumerate(numbers):
        on = array[..., i] >= 0.5 if array.dtype.kind == "f" else array[..., i] > 0
        overlap += int(np.count_nonzero(on & (labels > 0)))
        labels[on] = number
    affine = np.asarray(volume.affine, dtype=float)  # (slice, row, column) index -> LPS
    steps = affine[:3, :3]
    spacing = np.linalg.norm(steps, axis=0)
    if np.any(spacing <= 0):
        raise MaskError(f"{p}: degenerate SEG geometry (zero spacing)")
    image = sitk.GetImageFromArray(labels)  # numpy (slice, row, column) = SimpleITK (z, y, x)
    image.SetSpacing((float(spacing[2]), float(spacing[1]), float(spacing[0])))
    direction = np.stack([steps[:, 2] / spacing[2], steps[:, 1] / spacing[1], steps[:, 0] / spacing[0]], axis=1)
    image.SetDirection(tuple(float(v) for v in direction.flatten()))
    image.SetOrigin(tuple(float(v) for v in affine[:3, 3]))
    problems = []
    if overlap:
        problems.append(f"{p}: segments overlap in {overlap} voxels; the higher segment number holds them")
    return LoadedVolume(image=image, problems=tuple(problems), source=str(p))
