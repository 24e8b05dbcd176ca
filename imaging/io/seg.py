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
from typing import Any

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


def _group(frame: Any, shared: Any, name: str) -> Any:
    """A functional group macro of one frame: its own, else the shared one (None when neither has it)."""
    for source in (frame, shared):
        if source is not None and name in source and len(source.data_element(name).value):
            return source.data_element(name).value[0]
    return None


def seg_frames_on_grid(
    path: str | os.PathLike[str], reference: sitk.Image, numbers: Sequence[int], *, tol_mm: float = 1e-3
) -> dict[int, np.ndarray] | None:
    """Each segment's frames placed on ``reference``'s slices by their own plane position (boolean (z, y, x)).

    A SEG stores frames only where a segment is, so its frames alone do not tell the slice spacing
    (a segment that skips a slice looks like a volume of twice the spacing). Placed frame by frame on
    the image the reader drew on, no slice is invented and none is lost. Returns None when the
    frames are not on the image's voxels (another orientation, pixel spacing or in-plane offset):
    the caller then resamples the SEG's own volume.

    Raises
    ------
    MaskError
        Unreadable SEG, an unknown segment number, a frame without a position, or segment pixels
        that fall outside the image (the SEG does not fit the image it references).
    """
    from imaging.io.geometry import Geometry

    p = Path(path)
    seg = _segread(p)
    available = list(seg.segment_numbers)
    missing = sorted(set(numbers) - set(available))
    if missing:
        raise MaskError(f"{p}: no segment number(s) {missing}; the file has {available}")
    g = Geometry.of(reference)
    direction = np.asarray(g.direction, dtype=float).reshape(3, 3)
    nx, ny, nz = g.size
    sx, sy, _ = g.spacing_mm
    shared = seg.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in seg else None
    frames = np.asarray(seg.pixel_array)
    if frames.ndim == 2:
        frames = frames[None]
    threshold = 0.5 * float(seg.get("MaximumFractionalValue", 1) or 1) if seg.SegmentationType == "FRACTIONAL" else 0.5
    out = {int(n): np.zeros((nz, ny, nx), dtype=bool) for n in numbers}
    for i, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        ident = _group(frame, shared, "SegmentIdentificationSequence")
        number = int(ident.ReferencedSegmentNumber) if ident is not None else None
        if number not in out:
            continue
        plane = _group(frame, shared, "PlaneOrientationSequence")
        measures = _group(frame, shared, "PixelMeasuresSequence")
        position = _group(frame, shared, "PlanePositionSequence")
        if plane is None or measures is None or position is None:
            raise MaskError(f"{p}: frame {i + 1} has no plane orientation, pixel spacing or position")
        cosines = np.asarray([float(v) for v in plane.ImageOrientationPatient], dtype=float)
        row_mm, col_mm = (float(v) for v in measures.PixelSpacing)  # between rows (y), between columns (x)
        if (not np.allclose(cosines[:3], direction[:, 0], atol=1e-4) or not np.allclose(cosines[3:], direction[:, 1], atol=1e-4)
                or abs(col_mm - sx) > 1e-4 * sx or abs(row_mm - sy) > 1e-4 * sy):
            return None
        index = g.lps_to_index(np.asarray([[float(v) for v in position.ImagePositionPatient]], dtype=float))[0]
        corner = np.round(index).astype(int)
        if np.max(np.abs((index - corner) * np.asarray(g.spacing_mm))) > tol_mm:
            return None
        on = frames[i] >= threshold
        if not on.any():
            continue
        x0, y0, z = (int(v) for v in corner)
        rows, cols = np.nonzero(on)
        xs, ys = cols + x0, rows + y0
        inside = (0 <= z < nz) & (xs >= 0) & (xs < nx) & (ys >= 0) & (ys < ny)
        if not np.all(inside):
            raise MaskError(f"{p}: segment {number} has {int(np.count_nonzero(~inside))} pixel(s) outside the image "
                            f"it is placed on (frame {i + 1}); the SEG does not fit this series")
        out[number][z, ys, xs] = True
    return out
