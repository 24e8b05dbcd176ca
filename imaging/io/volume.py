"""One entry point for "a volume, whatever it is stored as" (``tumor-response convert``).

- a folder: the DICOM volume in it (crawled; exactly one volume, or name one);
- a DICOM file: a multi-frame object loads by itself; a single slice brings
  the rest of its series (and volume) from the same folder;
- a NIfTI file (``.nii``, ``.nii.gz``): RAS -> LPS, sform/qform checked;
- anything else SimpleITK reads (NRRD, MetaImage ...): as SimpleITK reads it
  (NRRD's space field is honoured, so the result is LPS).
"""

from __future__ import annotations

import os
from pathlib import Path

import SimpleITK as sitk

from imaging.io.crawl import scan_archive
from imaging.io.dicom import read_header
from imaging.io.errors import DicomFileError, ImagingError, SeriesError
from imaging.io.geometry import LoadedVolume
from imaging.io.grouping import group_series, split_volumes
from imaging.io.nifti import read_nifti
from imaging.io.series import read_series
from imaging.io.stack import TiltPolicy, slices_of

_NIFTI = (".nii", ".nii.gz")


def _pick(volumes: list, label: str, volume: str | None) -> object:
    if volume is not None:
        for v in volumes:
            if volume in (v.volume_id, v.volume_id.partition("#")[2]):
                return v
        raise SeriesError(f"{label}: no volume {volume!r}; found {', '.join(v.volume_id for v in volumes) or 'none'}")
    if len(volumes) != 1:
        listing = "; ".join(f"{v.volume_id} ({v.modality} {v.series_description!r}, {v.n_slices} slices)" for v in volumes)
        raise SeriesError(f"{label}: holds {len(volumes)} volumes, name one: {listing}" if volumes else f"{label}: no image volume")
    return volumes[0]


def load_volume(
    path: str | os.PathLike[str],
    *,
    volume: str | None = None,
    volume_index: int | None = None,
    tilt: TiltPolicy = "resample",
) -> LoadedVolume:
    """Load a volume from a DICOM folder or file, NIfTI, NRRD or any SimpleITK format, in LPS.

    Parameters
    ----------
    path
        Folder or file.
    volume
        DICOM: which volume when there are several (volume id or its ``#`` suffix).
    volume_index
        4-D NIfTI: which volume (0-based).
    tilt
        DICOM gantry-tilt policy (see :mod:`imaging.io.stack`).

    Raises
    ------
    ImagingError
        (a subclass) naming the input and the reason.
    """
    p = Path(path)
    if p.is_dir():
        scan = scan_archive(p)  # no catalogue: every header read now, so read_series need not parse them again
        chosen = _pick(group_series(scan.headers, tilt=tilt), f"{p}", volume)
        return read_series(chosen, tilt=tilt, headers={h.path: h for h in scan.headers})  # type: ignore[arg-type]
    if not p.is_file():
        raise ImagingError(f"{p}: no such file or folder")
    if p.name.endswith(_NIFTI):
        return read_nifti(p, volume_index=volume_index)
    try:
        header = read_header(p)
    except DicomFileError:
        header = None
    if header is None:
        try:
            image = sitk.ReadImage(str(p))
        except RuntimeError as exc:
            lines = [line for line in str(exc).strip().splitlines() if line.strip()]
            raise ImagingError(f"{p}: neither DICOM nor an image format SimpleITK reads ({lines[-1] if lines else ''})") from exc
        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise ImagingError(f"{p}: a {image.GetDimension()}-D image with {image.GetNumberOfComponentsPerPixel()} components; a 3-D scalar volume is required")
        return LoadedVolume(image=image, problems=(), source=str(p))
    reason = header.not_image_reason
    if reason:
        raise SeriesError(f"{p}: {reason}")
    if header.is_multiframe:
        return read_series([p], tilt=tilt, volume=volume)
    # One slice of a series: gather the slices of the same series and volume beside it.
    scan = scan_archive(p.parent)
    siblings = [h for h in scan.headers if h.series_uid == header.series_uid and h.study_uid == header.study_uid]
    mine = next(s for s in slices_of(header))
    for suffix, _, members in split_volumes([s for h in siblings for s in slices_of(h)]):
        if any(m.header.path == mine.header.path for m in members):
            if volume is None:
                volume = suffix or None
            break
    candidates = [v for v in group_series(siblings, tilt=tilt)]
    return read_series(_pick(candidates, f"series {header.series_uid} in {p.parent}", volume), tilt=tilt,  # type: ignore[arg-type]
                       headers={h.path: h for h in siblings})
