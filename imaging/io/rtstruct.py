"""DICOM RTSTRUCT: planar contours rasterised onto an image grid.

Each closed planar contour is mapped into the image's index space, assigned
to the image slice its plane lies on, and filled in that slice's plane in
physical (mm) coordinates: a pixel is inside when its centre is, with the
even-odd rule over all contours of one ROI in one slice (so an inner contour
cuts a hole, as RT planning systems draw them). Boundaries are half-open (a
centre exactly on a left/top edge is inside, on a right/bottom edge outside),
so two ROIs that share an edge never both claim a pixel.

The label value of an ROI is its ROINumber. Where ROIs overlap, the higher
ROINumber wins and the overlap is reported.
"""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from imaging.io.dicom import RTSTRUCT_STORAGE
from imaging.io.errors import MaskError
from imaging.io.geometry import Geometry, LoadedVolume

#: A contour whose points spread over more than this fraction of a slice spacing is not in one image slice.
PLANARITY_TOLERANCE_SLICES = 0.1
#: Contours further than this (fraction of a slice spacing) from the nearest image slice are reported.
OFF_SLICE_REPORT_SLICES = 0.05


def fill_polygons(polygons: Sequence[np.ndarray], shape_yx: tuple[int, int], spacing_xy: tuple[float, float]) -> np.ndarray:
    """Pixel-centre inclusion of polygons, even-odd rule, in physical in-plane coordinates.

    Parameters
    ----------
    polygons
        Each (m, 2): vertices (u, v) in mm, where pixel (i, j) has its centre
        at (i * spacing_x, j * spacing_y); closed implicitly.
    shape_yx
        (rows, columns) of the slice.
    spacing_xy
        Pixel spacing along x (columns) and y (rows), mm.

    Returns
    -------
    numpy.ndarray of bool, shape ``shape_yx``.
    """
    ny, nx = shape_yx
    sx, sy = spacing_xy
    toggles = np.zeros((ny, nx + 1), dtype=np.int32)
    for poly in polygons:
        p = np.asarray(poly, dtype=float)
        if len(p) < 3:
            continue
        u0, v0 = p[:, 0], p[:, 1]
        u1, v1 = np.roll(u0, -1), np.roll(v0, -1)
        vmin, vmax = np.minimum(v0, v1), np.maximum(v0, v1)
        # Rows j whose centre v = j * sy satisfies vmin <= v < vmax (horizontal edges cross none).
        j_start = np.clip(np.ceil(vmin / sy), 0, ny).astype(np.int64)
        j_end = np.clip(np.ceil(vmax / sy), 0, ny).astype(np.int64)
        counts = np.maximum(j_end - j_start, 0)
        if not counts.sum():
            continue
        edge = np.repeat(np.arange(len(p)), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        rows = j_start[edge] + offsets
        v = rows * sy
        t = (v - v0[edge]) / (v1[edge] - v0[edge])
        u = u0[edge] + t * (u1[edge] - u0[edge])
        # A crossing at u toggles every pixel whose centre lies at or right of it.
        cols = np.clip(np.ceil(u / sx - 1e-9), 0, nx).astype(np.int64)
        np.add.at(toggles, (rows, cols), 1)
    return (np.cumsum(toggles, axis=1)[:, :nx] & 1).astype(bool)


def read_rtstruct(
    path: str | os.PathLike[str], reference: sitk.Image, *, roi_names: Sequence[str] | None = None
) -> LoadedVolume:
    """Rasterise an RTSTRUCT's closed planar contours onto the grid of ``reference``.

    Parameters
    ----------
    path
        The RT Structure Set file.
    reference
        The image the contours were drawn on (any orientation).
    roi_names
        Only these ROIs (case-insensitive names); default: every ROI with contours.

    Returns
    -------
    LoadedVolume
        UInt16 label image on the reference grid (label = ROINumber) and the problems found.

    Raises
    ------
    MaskError
        Not an RTSTRUCT, unknown ROI names, contours not in the image's slice
        planes, or no contour overlapping the image.
    """
    p = Path(path)
    ds = _read(p)
    names = roi_names_of(ds)
    wanted: set[int] | None = None
    if roi_names is not None:
        lookup = {n.lower(): k for k, n in names.items()}
        unknown = [n for n in roi_names if n.lower() not in lookup]
        if unknown:
            raise MaskError(f"{p}: no ROI named {', '.join(map(repr, unknown))}; the file has {sorted(names.values())}")
        wanted = {lookup[n.lower()] for n in roi_names}
    masks, problems = rasterise_rois(ds, reference, p, wanted)
    g = Geometry.of(reference)
    nx, ny, nz = g.size
    labels = np.zeros((nz, ny, nx), dtype=np.uint16)
    overlap = 0
    for number in sorted(masks):
        inside = masks[number]
        overlap += int(np.count_nonzero(inside & (labels > 0)))
        labels[inside] = number
    if overlap:
        problems.append(f"{p}: ROIs overlap in {overlap} voxels; the higher ROINumber holds them")
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(reference)
    return LoadedVolume(image=image, problems=tuple(problems), source=str(p))


def _read(p: Path) -> pydicom.Dataset:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(p)
    except Exception as exc:  # pydicom raises many types on broken files
        raise MaskError(f"{p}: unreadable RTSTRUCT ({type(exc).__name__}: {exc})") from exc
    if str(ds.get("SOPClassUID", "")) != RTSTRUCT_STORAGE:
        raise MaskError(f"{p}: not an RT Structure Set (SOP class {ds.get('SOPClassUID', 'missing')})")
    return ds


def roi_names_of(ds: pydicom.Dataset) -> dict[int, str]:
    """ROINumber -> ROIName of a structure set (``"ROI <n>"`` when unnamed)."""
    return {int(r.ROINumber): str(r.get("ROIName", "") or f"ROI {r.ROINumber}") for r in ds.get("StructureSetROISequence", [])}


def read_rtstruct_rois(
    path: str | os.PathLike[str], reference: sitk.Image, *, roi_numbers: Collection[int] | None = None
) -> tuple[dict[int, np.ndarray], list[str]]:
    """Each ROI of an RTSTRUCT rasterised on its own onto ``reference``'s grid (ROIs may overlap).

    Returns
    -------
    (masks, problems)
        ROINumber -> boolean array (z, y, x) on the reference grid; what was noticed.

    Raises
    ------
    MaskError
        As :func:`read_rtstruct`.
    """
    p = Path(path)
    return rasterise_rois(_read(p), reference, p, set(roi_numbers) if roi_numbers is not None else None)


def rasterise_rois(
    ds: pydicom.Dataset, reference: sitk.Image, p: Path, wanted: set[int] | None
) -> tuple[dict[int, np.ndarray], list[str]]:
    """The closed planar contours of each (wanted) ROI filled on the reference grid, one mask per ROI."""
    names = roi_names_of(ds)
    g = Geometry.of(reference)
    nx, ny, nz = g.size
    sx, sy, _ = g.spacing_mm
    masks: dict[int, np.ndarray] = {}
    problems: list[str] = []
    n_contours = n_outside = n_skipped = 0
    max_off = 0.0
    for roi in sorted(ds.get("ROIContourSequence", []), key=lambda r: int(r.ReferencedROINumber)):
        number = int(roi.ReferencedROINumber)
        if wanted is not None and number not in wanted:
            continue
        if not 0 < number < 65536:
            raise MaskError(f"{p}: ROINumber {number} cannot be a label value (1-65535)")
        per_slice: dict[int, list[np.ndarray]] = defaultdict(list)
        for contour in roi.get("ContourSequence", []):
            kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR"))
            data = contour.get("ContourData")
            if kind != "CLOSED_PLANAR" or data is None:
                n_skipped += 1
                continue
            pts = np.asarray([float(v) for v in data], dtype=float).reshape(-1, 3)
            n_contours += 1
            idx = g.lps_to_index(pts)
            z = idx[:, 2]
            if float(z.max() - z.min()) > PLANARITY_TOLERANCE_SLICES:
                raise MaskError(
                    f"{p}: a contour of ROI {number} ({names.get(number, '?')}) spans {float(z.max() - z.min()):.2f} "
                    "slices: it is not in a slice plane of the image (drawn on another orientation?)"
                )
            zc = float(z.mean())
            k = int(round(zc))
            if not 0 <= k < nz:
                n_outside += 1
                continue
            max_off = max(max_off, abs(zc - k))
            per_slice[k].append(np.stack([idx[:, 0] * sx, idx[:, 1] * sy], axis=1))
        mask = np.zeros((nz, ny, nx), dtype=bool)
        for k, polys in per_slice.items():
            mask[k] = fill_polygons(polys, (ny, nx), (sx, sy))
        masks[number] = mask
        if per_slice:
            first, last = min(per_slice), max(per_slice)
            skipped = [k for k in range(first, last + 1) if k not in per_slice]
            if skipped:
                problems.append(
                    f"{p}: ROI {number} ({names.get(number, '?')}) has contours on slices {first}-{last} of the image but "
                    f"none on {len(skipped)} slice(s) between them ({', '.join(map(str, skipped[:10]))}"
                    f"{' ...' if len(skipped) > 10 else ''}): drawn on every other slice, or on a coarser grid than this "
                    "image (a resampled series); those slices are left empty, so its volume is too small")
    if n_contours == 0:
        chosen = sorted(names.get(n, str(n)) for n in wanted) if wanted is not None else []
        raise MaskError(f"{p}: no closed planar contour" + (f" in ROI(s) {chosen}" if wanted is not None else ""))
    if not any(m.any() for m in masks.values()):
        raise MaskError(
            f"{p}: the contours do not overlap the image ({n_outside} of {n_contours} contours lie outside its slices, "
            "the rest enclose no voxel centre)"
        )
    if n_outside:
        problems.append(f"{p}: {n_outside} of {n_contours} contours lie outside the image's slices and were ignored")
    if n_skipped:
        problems.append(f"{p}: {n_skipped} contour(s) that are not CLOSED_PLANAR (points, open lines) ignored")
    if max_off > OFF_SLICE_REPORT_SLICES:
        problems.append(f"{p}: contours lie up to {max_off:.2f} slice spacings off the image slices; each went to the nearest slice")
    return masks, problems
