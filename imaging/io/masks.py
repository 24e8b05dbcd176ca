"""Label maps aligned to their image: NIfTI/NRRD label maps, DICOM SEG and RTSTRUCT.

Whatever the source, the result is a UInt16 label image on the grid of the
reference image. A label map on another grid is resampled with nearest
neighbour (logged, and listed in the problems); one whose grid does not
overlap the image, or whose labels all fall outside it, is an error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from imaging.io.dicom import RTSTRUCT_STORAGE, SEG_STORAGE
from imaging.io.errors import MaskError, NiftiError
from imaging.io.geometry import Geometry, LoadedVolume
from imaging.io.nifti import read_nifti

log = logging.getLogger(__name__)

_INTEGER_PIXELS = {
    sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16, sitk.sitkUInt32, sitk.sitkInt32,
    sitk.sitkUInt64, sitk.sitkInt64,
}


def _dicom_sop_class(p: Path) -> str | None:
    """The SOP class of a DICOM file, or None when ``p`` is not DICOM."""
    try:
        with open(p, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return None
    if len(head) < 132 or head[128:132] != b"DICM":
        return None
    import pydicom

    try:
        ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # noqa: BLE001 - any parse failure means "not a usable DICOM mask"; the caller reports it
        return ""
    return str(ds.get("SOPClassUID", ""))


def _grids_overlap(a: Geometry, b: Geometry) -> bool:
    """True when the bounding box of grid ``a`` (voxel extents) meets grid ``b``'s index box."""
    n = np.asarray(a.size, dtype=float)
    corners = np.array([[i, j, k] for i in (-0.5, n[0] - 0.5) for j in (-0.5, n[1] - 0.5) for k in (-0.5, n[2] - 0.5)])
    in_b = b.lps_to_index(a.index_to_lps(corners))
    lo, hi = in_b.min(axis=0), in_b.max(axis=0)
    return bool(np.all(hi >= -0.5) and np.all(lo <= np.asarray(b.size) - 0.5))


def _align(labels: sitk.Image, reference: sitk.Image, p: Path, tol_mm: float, problems: list[str]) -> sitk.Image:
    ref_geom, lab_geom = Geometry.of(reference), Geometry.of(labels)
    if ref_geom.same_grid(lab_geom, tol_mm=tol_mm):
        labels.CopyInformation(reference)
        return labels
    if not _grids_overlap(lab_geom, ref_geom):
        raise MaskError(
            f"{p}: the label map does not overlap its image (label grid origin {np.round(lab_geom.origin_lps, 2).tolist()}, "
            f"size {list(lab_geom.size)}; image origin {np.round(ref_geom.origin_lps, 2).tolist()}, size {list(ref_geom.size)})"
        )
    values = sitk.GetArrayViewFromImage(labels)
    n_before = int(np.count_nonzero(values))
    resampled = sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16)
    n_after = int(np.count_nonzero(sitk.GetArrayViewFromImage(resampled)))
    if n_before and not n_after:
        raise MaskError(f"{p}: the label map does not overlap its image (no labelled voxel falls inside the image grid)")
    vol_before = n_before * lab_geom.voxel_volume_mm3
    vol_after = n_after * ref_geom.voxel_volume_mm3
    message = f"{p}: label map is on another grid than its image; resampled with nearest neighbour"
    if vol_before and abs(vol_after - vol_before) > 0.1 * vol_before:
        message += f" (labelled volume {vol_before:.0f} mm3 became {vol_after:.0f} mm3)"
    log.warning("%s", message)
    problems.append(message)
    return resampled


def read_label_map(
    path: str | os.PathLike[str],
    reference: sitk.Image,
    *,
    tol_mm: float = 1e-3,
    roi_names: Sequence[str] | None = None,
) -> LoadedVolume:
    """Load a label map onto the grid of ``reference`` and report what was done.

    Parameters
    ----------
    path
        NIfTI (.nii, .nii.gz), NRRD/MetaImage (any format SimpleITK reads), or
        a DICOM SEG or RTSTRUCT file (recognised by content, not name).
    reference
        The image the labels belong to.
    tol_mm
        Voxel centres within this distance count as the same grid.
    roi_names
        RTSTRUCT only: the ROIs to rasterise (default all).

    Returns
    -------
    LoadedVolume
        UInt16 labels on the reference grid; problems (resampling, overlaps ...).

    Raises
    ------
    MaskError
        Unreadable, non-integer or negative labels, or no overlap with the image.
    """
    p = Path(path)
    if not p.is_file():
        raise MaskError(f"{p}: no such file")
    problems: list[str] = []
    sop_class = _dicom_sop_class(p) if not p.name.endswith((".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")) else None
    if sop_class is not None:
        if sop_class == RTSTRUCT_STORAGE:
            from imaging.io.rtstruct import read_rtstruct

            loaded = read_rtstruct(p, reference, roi_names=roi_names)
            for message in loaded.problems:
                log.warning("%s", message)
            return loaded
        if roi_names is not None:
            raise MaskError(f"{p}: roi_names applies to RTSTRUCT files only")
        if sop_class == SEG_STORAGE:
            from imaging.io.seg import read_seg

            seg = read_seg(p)
            problems.extend(seg.problems)
            labels = seg.image
        else:
            raise MaskError(f"{p}: a DICOM file that is neither a SEG nor an RTSTRUCT (SOP class {sop_class or 'unreadable'})")
    else:
        try:
            if p.name.endswith((".nii", ".nii.gz")):
                nifti = read_nifti(p)
                problems.extend(nifti.problems)
                labels = nifti.image
            else:
                labels = sitk.ReadImage(str(p))
        except NiftiError as exc:
            raise MaskError(str(exc)) from exc
        except RuntimeError as exc:
            lines = [line for line in str(exc).strip().splitlines() if line.strip()]
            raise MaskError(f"{p}: unreadable label map ({lines[-1] if lines else 'unknown reason'})") from exc

    if labels.GetDimension() != 3:
        raise MaskError(f"{p}: label map is {labels.GetDimension()}-D, image is 3-D")
    if labels.GetNumberOfComponentsPerPixel() != 1:
        raise MaskError(f"{p}: label map has {labels.GetNumberOfComponentsPerPixel()} components per voxel")
    values = sitk.GetArrayViewFromImage(labels)
    if labels.GetPixelID() not in _INTEGER_PIXELS and not np.all(np.mod(values, 1) == 0):
        raise MaskError(f"{p}: label map holds non-integer values; labels must be whole numbers")
    if values.size and float(values.min()) < 0:
        raise MaskError(f"{p}: label map holds negative values")
    if values.size and float(values.max()) > 65535:
        raise MaskError(f"{p}: label values above 65535")
    labels = sitk.Cast(labels, sitk.sitkUInt16)
    aligned = _align(labels, reference, p, tol_mm, problems)
    return LoadedVolume(image=aligned, problems=tuple(problems), source=str(p))


def load_label_map(
    path: str | os.PathLike[str],
    reference: sitk.Image,
    *,
    tol_mm: float = 1e-3,
    roi_names: Sequence[str] | None = None,
) -> sitk.Image:
    """Load a label map (NIfTI, NRRD, DICOM SEG or RTSTRUCT) onto the grid of ``reference``.

    A label map on the reference grid is returned as is (as UInt16). One on
    another grid is resampled with nearest neighbour, and the fact is logged.
    See :func:`read_label_map` for the parameters.

    Raises
    ------
    MaskError
        Non-integer labels, negative labels, or no overlap with the image.
    """
    return read_label_map(path, reference, tol_mm=tol_mm, roi_names=roi_names).image
