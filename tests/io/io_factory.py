"""DICOM objects of known truth for the loader tests: single slices, enhanced multi-frame, SEG, RTSTRUCT.

Everything is written with pydicom (highdicom for SEG and the legacy
converter), so the truth is what the test put in, not what a reader says.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def _ds(f: float) -> str:
    """A DS value with as many decimals as 16 characters allow."""
    text = f"{f:.10f}".rstrip("0").rstrip(".")
    return text[:16]


def _file_meta(sop_class: str, sop_uid: str, syntax: str = ExplicitVRLittleEndian) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = syntax
    return meta


def image_slice(
    stored: np.ndarray,
    *,
    position: Sequence[float],
    row_cos: Sequence[float],
    col_cos: Sequence[float],
    pixel_spacing_rc: tuple[float, float],
    series_uid: str,
    study_uid: str,
    for_uid: str = "1.2.3.4",
    patient_id: str = "TEST001",
    study_date: dt.date = dt.date(2024, 1, 2),
    modality: str = "CT",
    slope: float = 1.0,
    intercept: float = -1024.0,
    instance: int = 1,
    extra: dict | None = None,
) -> Dataset:
    """One single-frame CT/MR slice (stored values as given, 8 or 16 bit by dtype)."""
    sop_class = CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE
    sop_uid = generate_uid()
    ds = Dataset()
    ds.file_meta = _file_meta(sop_class, sop_uid)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, for_uid
    ds.PatientID, ds.PatientName = patient_id, "TEST^PATIENT"
    ds.PatientBirthDate, ds.PatientSex = "", ""
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = (
        study_date.strftime("%Y%m%d"), "120000", "1", "", "")
    ds.Modality, ds.Manufacturer, ds.SeriesNumber, ds.InstanceNumber = modality, "test", 1, instance
    ds.SeriesDescription = "synthetic"
    ds.ImageOrientationPatient = [_ds(v) for v in (*row_cos, *col_cos)]
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.PixelSpacing = [_ds(pixel_spacing_rc[0]), _ds(pixel_spacing_rc[1])]
    ds.SliceThickness = "1"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    bits = stored.dtype.itemsize * 8
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if stored.dtype.kind == "i" else 0
    if modality == "CT" or slope != 1.0 or intercept != 0.0:
        ds.RescaleIntercept, ds.RescaleSlope = _ds(intercept), _ds(slope)
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    return ds


def write_datasets(folder: Path, datasets: Sequence[Dataset], *, seed: int = 0, nested: bool = False) -> list[Path]:
    """Save under random names (some with .dcm, some without; optionally in nested folders)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for k, ds in enumerate(datasets):
        name = f"{rng.getrandbits(48):012x}" + (".dcm" if k % 3 == 0 else "")
        sub = folder / f"d{rng.randrange(3)}" / f"e{rng.randrange(2)}" if nested else folder
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / name
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def volume_slices(
    hu_zyx: np.ndarray,
    spacing_xyz: tuple[float, float, float],
    origin_lps: Sequence[float],
    direction: np.ndarray,
    *,
    series_uid: str | None = None,
    study_uid: str | None = None,
    intercept: float = -1024.0,
    slope: float = 1.0,
    positions: Sequence[Sequence[float]] | None = None,
    extra: dict | None = None,
    modality: str = "CT",
    dtype: type = np.uint16,
) -> list[Dataset]:
    """The slices of a volume of known grid: stored = (value - intercept) / slope."""
    direction = np.asarray(direction, dtype=float).reshape(3, 3)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    out = []
    for k in range(hu_zyx.shape[0]):
        pos = positions[k] if positions is not None else np.asarray(origin_lps) + k * spacing_xyz[2] * direction[:, 2]
        stored = np.round((hu_zyx[k].astype(float) - intercept) / slope).astype(dtype)
        out.append(
            image_slice(
                stored, position=pos, row_cos=direction[:, 0], col_cos=direction[:, 1],
                pixel_spacing_rc=(spacing_xyz[1], spacing_xyz[0]), series_uid=series_uid, study_uid=study_uid,
                slope=slope, intercept=intercept, instance=hu_zyx.shape[0] - k, extra=extra, modality=modality,
            )
        )
    return out


def enhanced_ct(
    hu_zyx: np.ndarray,
    spacing_xyz: tuple[float, float, float],
    origin_lps: Sequence[float],
    direction: np.ndarray,
    *,
    frame_order: Sequence[int] | None = None,
    temporal: Sequence[int] | None = None,
    intercepts: Sequence[float] | None = None,
    series_uid: str | None = None,
) -> Dataset:
    """An Enhanced CT object holding ``hu_zyx`` as frames, in ``frame_order`` (default: shuffled).

    Geometry and rescale go in the functional groups: PixelMeasures, PlaneOrientation
    (shared), PlanePosition and PixelValueTransformation (per frame), FrameContent.
    ``temporal`` gives a TemporalPositionIndex per slice of ``hu_zyx``.
    """
    direction = np.asarray(direction, dtype=float).reshape(3, 3)
    nz, ny, nx = hu_zyx.shape
    order = list(frame_order) if frame_order is not None else random.Random(7).sample(range(nz), nz)
    intercepts = list(intercepts) if intercepts is not None else [-1024.0] * nz
    sop_uid = generate_uid()
    ds = Dataset()
    ds.file_meta = _file_meta(ENHANCED_CT_STORAGE, sop_uid)
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_CT_STORAGE, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), series_uid or generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.StudyDate, ds.Modality = "MF001", "MULTI^FRAME", "20240105", "CT"
    ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = "enhanced", 5, 1
    ds.NumberOfFrames = nz
    ds.Rows, ds.Columns = ny, nx
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0

    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [_ds(spacing_xyz[1]), _ds(spacing_xyz[0])]
    measures.SliceThickness = _ds(spacing_xyz[2])
    shared.PixelMeasuresSequence = DicomSequence([measures])
    orient = Dataset()
    orient.ImageOrientationPatient = [_ds(v) for v in (*direction[:, 0], *direction[:, 1])]
    shared.PlaneOrientationSequence = DicomSequence([orient])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])

    frames, per_frame = [], []
    for k in order:
        item = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [_ds(v) for v in np.asarray(origin_lps) + k * spacing_xyz[2] * direction[:, 2]]
        item.PlanePositionSequence = DicomSequence([pos])
        content = Dataset()
        content.StackID = "1"
        content.InStackPositionNumber = k + 1
        if temporal is not None:
            content.TemporalPositionIndex = int(temporal[k])
        item.FrameContentSequence = DicomSequence([content])
        rescale = Dataset()
        rescale.RescaleIntercept, rescale.RescaleSlope, rescale.RescaleType = _ds(intercepts[k]), "1", "HU"
        item.PixelValueTransformationSequence = DicomSequence([rescale])
        per_frame.append(item)
        frames.append(np.round(hu_zyx[k].astype(float) - intercepts[k]).astype(np.uint16))
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    ds.PixelData = np.stack(frames).tobytes()
    return ds


def rtstruct(
    reference: Sequence[Dataset],
    rois: Sequence[tuple[int, str, Sequence[np.ndarray]]],
) -> Dataset:
    """An RT Structure Set; each ROI is (number, name, contours as (m, 3) LPS point arrays)."""
    sop_uid = generate_uid()
    first = reference[0]
    ds = Dataset()
    ds.file_meta = _file_meta(RTSTRUCT_STORAGE, sop_uid)
    ds.SOPClassUID, ds.SOPInstanceUID = RTSTRUCT_STORAGE, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = first.StudyInstanceUID, generate_uid()
    ds.PatientID, ds.Modality, ds.StructureSetLabel = first.PatientID, "RTSTRUCT", "test"
    ds.StudyDate = first.StudyDate
    frame = Dataset()
    frame.FrameOfReferenceUID = first.FrameOfReferenceUID
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame])
    roi_items, contour_items = [], []
    for number, name, contours in rois:
        roi = Dataset()
        roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = number, name, first.FrameOfReferenceUID
        roi_items.append(roi)
        rc = Dataset()
        rc.ReferencedROINumber = number
        rc.ROIDisplayColor = [255, 0, 0]
        seq = []
        for pts in contours:
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(pts)
            c.ContourData = [_ds(v) for v in np.asarray(pts, dtype=float).ravel()]
            seq.append(c)
        rc.ContourSequence = DicomSequence(seq)
        contour_items.append(rc)
    ds.StructureSetROISequence = DicomSequence(roi_items)
    ds.ROIContourSequence = DicomSequence(contour_items)
    return ds


def text_sr(patient_id: str = "TEST001") -> Dataset:
    """A Basic Text SR: a DICOM object that is not an image."""
    sop_uid = generate_uid()
    ds = Dataset()
    ds.file_meta = _file_meta(BASIC_TEXT_SR, sop_uid)
    ds.SOPClassUID, ds.SOPInstanceUID = BASIC_TEXT_SR, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.Modality = patient_id, "SR"
    return ds


def save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def read_sorted(paths: Sequence[Path]) -> list[Dataset]:
    """Datasets of a single-frame series (for highdicom), in file order."""
    return [pydicom.dcmread(p) for p in paths]
