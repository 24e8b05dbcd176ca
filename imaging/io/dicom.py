"""DICOM: header scan of an archive, grouping into series, and series assembly.

Slices are ordered by ImagePositionPatient projected on the slice normal
(row cosine x column cosine), never by file name or InstanceNumber. The
assembled volume is a SimpleITK image in DICOM LPS with the direction cosines,
origin and spacing taken from the headers.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from imaging.io.errors import DicomFileError, GeometryError, SeriesError

#: Positions closer than this along the normal are the same slice (mm).
DUPLICATE_TOLERANCE_MM = 1e-3
#: Allowed deviation of a slice gap from the median gap: relative, and absolute floor (mm).
SPACING_RELATIVE_TOLERANCE = 0.01
SPACING_ABSOLUTE_TOLERANCE_MM = 1e-2
#: In-plane drift between consecutive slices above this is a sheared (gantry-tilted) stack (mm).
SHEAR_TOLERANCE_MM = 1e-2
#: Orientation cosines differing by more than this are different orientations.
ORIENTATION_TOLERANCE = 1e-4

# Image storage SOP classes we assemble into volumes (classic single-frame).
_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.4": "MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.128": "PET Image Storage",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
}


@dataclass(frozen=True)
class DicomHeader:
    """What the crawl keeps of one file's header (no pixel data is read)."""

    path: Path
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    modality: str
    study_date: dt.date | None
    series_description: str
    rows: int | None
    columns: int | None
    orientation: tuple[float, ...] | None
    position_lps: tuple[float, float, float] | None
    pixel_spacing_mm: tuple[float, float] | None
    slice_thickness_mm: float | None

    @property
    def is_image(self) -> bool:
        return (
            self.sop_class_uid in _IMAGE_SOP_CLASSES
            and self.orientation is not None
            and self.position_lps is not None
            and self.rows is not None
        )


@dataclass(frozen=True)
class SeriesInfo:
    """One image series found by the crawl."""

    patient_id: str
    study_uid: str
    study_date: dt.date | None
    series_uid: str
    modality: str
    series_description: str
    files: tuple[Path, ...]
    slice_thickness_mm: float | None = None


@dataclass
class ScanResult:
    """Headers of the DICOM files under a folder, and the files skipped with their reason."""

    headers: list[DicomHeader] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def _parse_date(value: object) -> dt.date | None:
    text = str(value or "").strip()
    if len(text) < 8:
        return None
    try:
        return dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return None


def _floats(value: object, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def read_header(path: str | os.PathLike[str]) -> DicomHeader:
    """Read one file's header, without pixel data.

    Raises
    ------
    DicomFileError
        The file is not DICOM, is truncated, or lacks the identifying UIDs.
    """
    p = Path(path)
    try:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
    except InvalidDicomError as exc:
        raise DicomFileError(f"{p}: not a DICOM file ({exc})") from exc
    except (OSError, EOFError, ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        raise DicomFileError(f"{p}: unreadable DICOM header ({type(exc).__name__}: {exc})") from exc
    try:
        study_uid = str(ds.StudyInstanceUID)
        series_uid = str(ds.SeriesInstanceUID)
        sop_uid = str(ds.SOPInstanceUID)
        sop_class = str(ds.SOPClassUID)
    except AttributeError as exc:
        raise DicomFileError(f"{p}: missing identifying attribute ({exc})") from exc
    try:
        spacing = _floats(ds.get("PixelSpacing"), 2)
        thickness = ds.get("SliceThickness")
        return DicomHeader(
            path=p,
            patient_id=str(ds.get("PatientID", "") or ""),
            study_uid=study_uid,
            series_uid=series_uid,
            sop_uid=sop_uid,
            sop_class_uid=sop_class,
            modality=str(ds.get("Modality", "") or ""),
            study_date=_parse_date(ds.get("StudyDate")),
            series_description=str(ds.get("SeriesDescription", "") or ""),
            rows=int(ds.Rows) if "Rows" in ds else None,
            columns=int(ds.Columns) if "Columns" in ds else None,
            orientation=_floats(ds.get("ImageOrientationPatient"), 6),
            position_lps=_floats(ds.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
            pixel_spacing_mm=spacing,  # type: ignore[arg-type]
            slice_thickness_mm=float(thickness) if thickness not in (None, "") else None,
        )
    except (TypeError, ValueError) as exc:
        raise DicomFileError(f"{p}: malformed header value ({exc})") from exc


def scan_archive(root: str | os.PathLike[str]) -> ScanResult:
    """Walk ``root`` at any depth and read every DICOM header.

    Non-DICOM files and DICOMDIRs are skipped with their reason; nothing here
    reads pixel data, and one bad file never stops the walk.
    """
    result = ScanResult()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.upper() == "DICOMDIR":
                result.skipped.append((path, "DICOMDIR (a directory record, not an image)"))
                continue
            try:
                header = read_header(path)
            except DicomFileError as exc:
                result.skipped.append((path, str(exc)))
                continue
            if not header.is_image:
                result.skipped.append((path, f"not a single-frame image ({header.sop_class_uid})"))
                continue
            result.headers.append(header)
    return result


def group_series(headers: Iterable[DicomHeader]) -> list[SeriesInfo]:
    """Group image headers by Patient / Study / Series, ordered by patient, date, series."""
    groups: dict[tuple[str, str, str], list[DicomHeader]] = defaultdict(list)
    for h in headers:
        groups[(h.patient_id, h.study_uid, h.series_uid)].append(h)
    series = []
    for (patient_id, study_uid, series_uid), members in groups.items():
        first = members[0]
        series.append(
            SeriesInfo(
                patient_id=patient_id,
                study_uid=study_uid,
                study_date=first.study_date,
                series_uid=series_uid,
                modality=first.modality,
                series_description=first.series_description,
                files=tuple(sorted(h.path for h in members)),
                slice_thickness_mm=first.slice_thickness_mm,
            )
        )
    series.sort(key=lambda s: (s.patient_id, s.study_date or dt.date.min, s.series_uid))
    return series


def _slice_geometry(headers: Sequence[DicomHeader], label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Check the slices' geometry; return (order, row/col/normal cosines, origin, slice spacing)."""
    first = headers[0]
    for h in headers:
        if h.orientation is None or h.position_lps is None or h.pixel_spacing_mm is None:
            raise GeometryError(f"{label}: {h.path.name} lacks ImageOrientationPatient, ImagePositionPatient or PixelSpacing")
        if h.rows != first.rows or h.columns != first.columns:
            raise GeometryError(
                f"{label}: inconsistent image size: {first.path.name} is {first.rows}x{first.columns}, "
                f"{h.path.name} is {h.rows}x{h.columns}"
            )
        if np.max(np.abs(np.subtract(h.orientation, first.orientation))) > ORIENTATION_TOLERANCE:
            raise GeometryError(
                f"{label}: more than one orientation ({first.path.name}: {first.orientation}, "
                f"{h.path.name}: {h.orientation})"
            )
        if np.max(np.abs(np.subtract(h.pixel_spacing_mm, first.pixel_spacing_mm))) > 1e-4:
            raise GeometryError(f"{label}: PixelSpacing differs between {first.path.name} and {h.path.name}")

    iop = np.asarray(first.orientation, dtype=float)
    row_cos = iop[:3] / np.linalg.norm(iop[:3])  # direction of increasing column index (x)
    col_cos = iop[3:] / np.linalg.norm(iop[3:])  # direction of increasing row index (y)
    if abs(float(row_cos @ col_cos)) > 1e-3:
        raise GeometryError(f"{label}: ImageOrientationPatient row and column cosines are not orthogonal")
    normal = np.cross(row_cos, col_cos)
    positions = np.array([h.position_lps for h in headers], dtype=float)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along = along[order]
    positions = positions[order]

    if len(headers) == 1:
        spacing = float(first.slice_thickness_mm or 1.0)
        return order, np.stack([row_cos, col_cos, normal], axis=1), positions[0], spacing

    gaps = np.diff(along)
    dup = np.nonzero(gaps < DUPLICATE_TOLERANCE_MM)[0]
    if dup.size:
        a, b = headers[order[dup[0]]], headers[order[dup[0] + 1]]
        raise GeometryError(
            f"{label}: {dup.size} duplicate slice position(s), e.g. {a.path.name} and {b.path.name} "
            f"both at {along[dup[0]]:.3f} mm along the normal"
        )
    spacing = float(np.median(gaps))
    tol = max(SPACING_RELATIVE_TOLERANCE * spacing, SPACING_ABSOLUTE_TOLERANCE_MM)
    bad = np.nonzero(np.abs(gaps - spacing) > tol)[0]
    if bad.size:
        missing = [i for i in bad if gaps[i] > 1.5 * spacing]
        if missing:
            i = missing[0]
            raise GeometryError(
                f"{label}: missing slice(s): gap of {gaps[i]:.3f} mm between positions {along[i]:.3f} and "
                f"{along[i + 1]:.3f} mm (median spacing {spacing:.3f} mm; {len(missing)} gap(s) in all)"
            )
        raise GeometryError(
            f"{label}: non-uniform slice spacing: {sorted({round(float(g), 3) for g in gaps})} mm "
            f"(median {spacing:.3f} mm, tolerance {tol:.3f} mm)"
        )
    steps = np.diff(positions, axis=0)
    in_plane = steps - np.outer(steps @ normal, normal)
    drift = float(np.max(np.linalg.norm(in_plane, axis=1)))
    if drift > SHEAR_TOLERANCE_MM:
        raise GeometryError(
            f"{label}: sheared stack (gantry tilt): slice origins drift {drift:.3f} mm in-plane per slice; "
            "refused rather than stacked as if orthogonal"
        )
    return order, np.stack([row_cos, col_cos, normal], axis=1), positions[0], spacing


def _rescale(ds: pydicom.Dataset) -> tuple[float, float]:
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return slope, intercept


def load_series(series: SeriesInfo | Sequence[str | os.PathLike[str]]) -> sitk.Image:
    """Assemble one single-frame DICOM series into a 3-D SimpleITK image in LPS.

    Parameters
    ----------
    series
        A :class:`SeriesInfo` from :func:`group_series`, or the series' file paths.

    Returns
    -------
    SimpleITK.Image
        Voxel values after RescaleSlope/RescaleIntercept (int16/int32 when they
        stay integral, float32 otherwise); spacing (column, row, slice) in mm;
        origin at the first slice along the normal; direction columns = row
        cosine, column cosine, normal.

    Raises
    ------
    SeriesError, GeometryError, DicomFileError
        Naming the series (or file) and the reason.
    """
    files = list(series.files) if isinstance(series, SeriesInfo) else [Path(f) for f in series]
    if not files:
        raise SeriesError("empty series: no files given")
    label = (
        f"series {series.series_uid}" if isinstance(series, SeriesInfo) else f"series in {Path(files[0]).parent}"
    )
    headers = [read_header(f) for f in files]
    uids = {h.series_uid for h in headers}
    if len(uids) > 1:
        raise SeriesError(f"{label}: files from {len(uids)} different series given as one")
    order, direction, origin, slice_spacing = _slice_geometry(headers, label)

    first = headers[0]
    assert first.rows is not None and first.columns is not None and first.pixel_spacing_mm is not None
    slices: list[np.ndarray] = []
    slopes_intercepts: list[tuple[float, float]] = []
    for i in order:
        path = headers[i].path
        try:
            ds = pydicom.dcmread(path)
            pixels = ds.pixel_array
        except Exception as exc:  # pydicom raises many types for broken pixel data
            raise DicomFileError(f"{path}: pixel data unreadable ({type(exc).__name__}: {exc})") from exc
        if pixels.shape != (first.rows, first.columns):
            raise SeriesError(f"{label}: {path.name} has pixel array {pixels.shape}, header says {first.rows}x{first.columns}")
        slices.append(pixels)
        slopes_intercepts.append(_rescale(ds))

    raw = np.stack(slices, axis=0)
    si = np.asarray(slopes_intercepts)
    integral = np.all(si[:, 0] == 1.0) and np.all(np.mod(si[:, 1], 1.0) == 0.0)
    if integral:
        values = raw.astype(np.int32) + si[:, 1].astype(np.int32)[:, None, None]
        if values.min() >= np.iinfo(np.int16).min and values.max() <= np.iinfo(np.int16).max:
            values = values.astype(np.int16)
    else:
        values = (raw.astype(np.float32) * si[:, 0, None, None] + si[:, 1, None, None]).astype(np.float32)

    image = sitk.GetImageFromArray(values)
    row_spacing, col_spacing = first.pixel_spacing_mm  # DICOM order: between rows, between columns
    image.SetSpacing((float(col_spacing), float(row_spacing), float(slice_spacing)))
    image.SetOrigin(tuple(float(v) for v in origin))
    image.SetDirection(tuple(float(v) for v in direction.flatten()))
    return image
