"""DICOM SEG (highdicom) as a label image in LPS.

The segmentation's frames are assembled by highdicom into a regularly spaced
volume (frames absent for empty slices are allowed); segment numbers become
label values. Where binary segments overlap, the higher segment number wins
and the overlap is reported; fractional segments are thresholded at 0.5.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from imaging.io.errors import MaskError
from imaging.io.geometry import LoadedVolume


def _segread(p: Path):  # noqa: ANN202 - highdicom.seg.Segmentation
    import highdicom as hd

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return hd.seg.segread(p)
    except Exception as exc:  # highdicom/pydicom raise many types on non-SEG or broken files
        raise MaskError(f"{p}: unreadable DICOM SEG ({type(exc).__name__}: {exc})") from exc


def read_seg(path: str | os.PathLike[str]) -> LoadedVolume:
    """Read a DICOM SEG into a UInt16 label image on its own grid (label = segment number).

    Raises
    ------
    MaskError
        Not a SEG, or frames that do not form a regularly spaced volume.
    """
    p = Path(path)
    seg = _segread(p)
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
    image = _on_seg_grid(labels, np.asarray(volume.affine, dtype=float), p)
    problems = []
    if overlap:
        problems.append(f"{p}: segments overlap in {overlap} voxels; the higher segment number holds them")
    return LoadedVolume(image=image, problems=tuple(problems), source=str(p))


def _on_seg_grid(array: np.ndarray, affine: np.ndarray, p: Path) -> sitk.Image:
    """A (slice, row, column) array as an image on the SEG volume's grid (``affine``: index -> LPS)."""
    steps = affine[:3, :3]
    spacing = np.linalg.norm(steps, axis=0)
    if np.any(spacing <= 0):
        raise MaskError(f"{p}: degenerate SEG geometry (zero spacing)")
    image = sitk.GetImageFromArray(array)  # numpy (slice, row, column) = SimpleITK (z, y, x)
    image.SetSpacing((float(spacing[2]), float(spacing[1]), float(spacing[0])))
    direction = np.stack([steps[:, 2] / spacing[2], steps[:, 1] / spacing[1], steps[:, 0] / spacing[0]], axis=1)
    image.SetDirection(tuple(float(v) for v in direction.flatten()))
    image.SetOrigin(tuple(float(v) for v in affine[:3, 3]))
    return image


def read_seg_segments(path: str | os.PathLike[str], numbers: Sequence[int] | None = None) -> dict[int, sitk.Image]:
    """Each segment of a DICOM SEG as its own UInt8 0/1 image on the SEG's grid (segments may overlap).

    Raises
    ------
    MaskError
        As :func:`read_seg`, or a segment number the file does not have.
    """
    p = Path(path)
    seg = _segread(p)
    available = list(seg.segment_numbers)
    wanted = list(numbers) if numbers is not None else available
    missing = sorted(set(wanted) - set(available))
    if missing:
        raise MaskError(f"{p}: no segment number(s) {missing}; the file has {available}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            volume = seg.get_volume(segment_numbers=wanted, combine_segments=False, allow_missing_positions=True)
    except Exception as exc:  # highdicom raises ValueError/RuntimeError when frames are not a regular volume
        raise MaskError(f"{p}: the SEG frames do not form a regularly spaced volume ({type(exc).__name__}: {exc})") from exc
    array = np.asarray(volume.array)
    if array.ndim == 3:
        array = array[..., None]
    affine = np.asarray(volume.affine, dtype=float)
    out = {}
    for i, number in enumerate(wanted):
        on = array[..., i] >= 0.5 if array.dtype.kind == "f" else array[..., i] > 0
        out[number] = _on_seg_grid(on.astype(np.uint8), affine, p)
    return out
