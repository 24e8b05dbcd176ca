"""Lesion label maps as DICOM Segmentation objects (highdicom, BINARY).

One segment per lesion, its label and Tracking ID the lesion's stable id, its
Tracking UID the one the measurement report (:mod:`imaging.report.dicom_sr`)
uses for the same lesion at every time point. The SEG is on the grid of the
time point's source series, in its study and frame of reference, so a viewer
overlays it on the images it was measured on.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.sr.codedict import codes

#: Manufacturer and model written into every object we create.
MANUFACTURER = "tumor-response"
#: Series numbers of the derived series (high, so they sort after the acquired series in a viewer).
SEG_SERIES_NUMBER = 9901

_UMASK = os.umask(0)
os.umask(_UMASK)

#: Anatomic region codes (SNOMED CT) for the organ names a lesion sidecar commonly uses; others are left out.
ORGAN_CODES: dict[str, tuple[str, str]] = {
    "lung": ("39607008", "Lung"),
    "liver": ("10200004", "Liver"),
    "brain": ("12738006", "Brain"),
    "lymph node": ("59441001", "Lymph node"),
    "lymph_node": ("59441001", "Lymph node"),
    "node": ("59441001", "Lymph node"),
    "kidney": ("64033007", "Kidney"),
    "adrenal": ("23451007", "Adrenal gland"),
    "bone": ("272673000", "Bone"),
    "pancreas": ("15776009", "Pancreas"),
    "spleen": ("78961009", "Spleen"),
    "peritoneum": ("15425007", "Peritoneum"),
    "pleura": ("3120008", "Pleura"),
    "breast": ("76752008", "Breast"),
    "skin": ("39937001", "Skin"),
}


class DicomExportError(ValueError):
    """A DICOM object cannot be made from what was given; the message names the input and the reason."""


@dataclass(frozen=True)
class SegmentInfo:
    """What the SEG holds for one lesion: the segment number the SR refers to."""

    lesion_id: str
    label: int
    segment_number: int
    tracking_uid: str
    n_voxels: int


def uid_from(*parts: str, key: bytes | None = None) -> str:
    """A DICOM UID in the 2.25 (UUID-derived) arc, deterministic in ``parts``.

    With ``key``, an HMAC-SHA256 instead of a plain SHA-256, so that nobody
    without the key can test a guessed identifier (e.g. a hospital record
    number) against the UID.
    """
    message = "\x1f".join(parts).encode()
    digest = hmac.new(key, message, hashlib.sha256).digest() if key else hashlib.sha256(message).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def tracking_uid(patient_id: str, lesion_id: str, key: bytes | None = None) -> str:
    """The Tracking Unique Identifier of a lesion: the same at every time point of the patient."""
    return uid_from("tumor-response:lesion", patient_id, lesion_id, key=key)


_TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
                 "AccessionNumber", "ReferringPhysicianName")


def read_source_headers(source_files: Sequence[str | os.PathLike[str]]) -> list[pydicom.Dataset]:
    """Headers (no pixel data) of a source series, for the references of a derived object.

    Raises
    ------
    DicomExportError
        A file that is not readable DICOM, or files from several series.
    """
    if not source_files:
        raise DicomExportError("no source files given")
    out: list[pydicom.Dataset] = []
    for f in source_files:
        try:
            out.append(pydicom.dcmread(f, stop_before_pixels=True))
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise DicomExportError(f"{f}: not readable as DICOM ({exc})") from exc
    for ds in out:
        # Type 2 attributes of the Patient and General Study modules that derived objects copy: a
        # non-conformant source that omits one gets it empty (present, no value), as the standard allows.
        for keyword in _TYPE2_COPIED:
            if keyword not in ds:
                setattr(ds, keyword, "")
    series = {str(ds.get("SeriesInstanceUID", "")) for ds in out}
    if len(series) != 1:
        raise DicomExportError(f"source files belong to {len(series)} series ({', '.join(sorted(series))}); one expected")
    return out


def _volume(labels: sitk.Image, frame_of_reference_uid: str):  # -> hd.Volume
    """The label image as a highdicom Volume indexed (slice, row, column), as DICOM frames are."""
    import highdicom as hd

    array = sitk.GetArrayFromImage(labels)  # (z, y, x) = (slice, row, column)
    spacing = labels.GetSpacing()
    d = np.reshape(labels.GetDirection(), (3, 3))
    return hd.Volume.from_components(
        array=array,
        spacing=(spacing[2], spacing[1], spacing[0]),
        direction=np.stack([d[:, 2], d[:, 1], d[:, 0]], axis=1),  # type: ignore[arg-type]  # accepts (3, 3)
        position=labels.GetOrigin(),
        coordinate_system="PATIENT",
        frame_of_reference_uid=frame_of_reference_uid,
    )


def write_seg(
    source_files: Sequence[str | os.PathLike[str]],
    labels: sitk.Image,
    lesion_ids: Mapping[int, str],
    out_path: str | os.PathLike[str],
    *,
    organs: Mapping[int, str] | None = None,
    uid_key: bytes | None = None,
    algorithm_type: str = "MANUAL",
    software_version: str = "0",
) -> tuple[pydicom.Dataset, list[SegmentInfo]]:
    """Write a BINARY DICOM SEG of the lesions of one time point.

    Parameters
    ----------
    source_files
        The files of the source image series the labels were drawn on.
    labels
        Integer label map on the grid of that series (LPS, as :func:`imaging.io.load_series`
        gives it); value = lesion label, 0 = background.
    lesion_ids
        Label value -> stable lesion id (the segment label and Tracking ID). Labels
        present in ``labels`` but missing here are named ``L<label>``.
    out_path
        Where the SEG goes; written to a temporary file beside it, then renamed.
    organs
        Label value -> organ name, written as the segment's anatomic region when known.
    uid_key
        Key of the keyed hash behind the Tracking UIDs (see :func:`tracking_uid`).
    algorithm_type
        ``MANUAL`` (default: the labels were given to the pipeline), ``SEMIAUTOMATIC`` or
        ``AUTOMATIC`` (then an algorithm identification naming this package is added).

    Returns
    -------
    (dataset, segments)
        The SEG as written, and per lesion its segment number and Tracking UID, in
        segment order (ascending label value).

    Raises
    ------
    DicomExportError
        No lesion in ``labels``, labels off the source grid, unreadable sources.
    """
    import highdicom as hd

    out_path = Path(out_path)
    sources = read_source_headers(source_files)
    first = sources[0]
    if int(first.get("NumberOfFrames", 1) or 1) > 1:
        raise DicomExportError(f"{source_files[0]}: multi-frame source images are not supported for SEG export yet")
    array = sitk.GetArrayFromImage(labels)
    values, counts = np.unique(array[array != 0], return_counts=True)
    if values.size == 0:
        raise DicomExportError(f"series {first.SeriesInstanceUID}: no lesion voxel in the label map; no SEG to write")
    patient_id = str(first.get("PatientID", ""))
    segments: list[SegmentInfo] = []
    descriptions = []
    segment_of_label = np.zeros(int(values.max()) + 1, dtype=np.uint8 if values.size < 256 else np.uint16)
    algorithm = None
    if algorithm_type != "MANUAL":
        algorithm = hd.AlgorithmIdentificationSequence(
            name=MANUFACTURER, family=codes.cid7162.ArtificialIntelligence, version=software_version
        )
    for number, (value, count) in enumerate(zip(values.tolist(), counts.tolist()), start=1):
        lesion_id = lesion_ids.get(int(value), f"L{int(value)}")
        uid = tracking_uid(patient_id, lesion_id, uid_key)
        segment_of_label[int(value)] = number
        organ = (organs or {}).get(int(value), "")
        region = ORGAN_CODES.get(organ.strip().lower())
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=lesion_id[:64],
                segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
                segmented_property_type=codes.SCT.Lesion,
                algorithm_type=algorithm_type,
                algorithm_identification=algorithm,
                tracking_uid=uid,
                tracking_id=lesion_id[:64],
                anatomic_regions=[hd.sr.CodedConcept(region[0], "SCT", region[1])] if region else None,
            )
        )
        segments.append(SegmentInfo(lesion_id, int(value), number, uid, int(count)))
    seg_numbers = segment_of_label[array]
    seg_image = sitk.GetImageFromArray(seg_numbers)
    seg_image.CopyInformation(labels)
    volume = _volume(seg_image, str(first.FrameOfReferenceUID))

    # Everything the object holds decides its UID: the same export twice is the same instance (a PACS
    # receiving it again does not keep a duplicate), any change makes a new one.
    content = json.dumps({
        "software": software_version, "algorithm": algorithm_type, "series": str(first.SeriesInstanceUID),
        "segments": [[s.lesion_id, s.label, s.n_voxels, (organs or {}).get(s.label, "")] for s in segments],
        "voxels": hashlib.sha256(seg_numbers.tobytes()).hexdigest(),
    })
    series_uid = uid_from("tumor-response:seg-series", str(first.SeriesInstanceUID), key=uid_key)
    sop_uid = uid_from("tumor-response:seg", content, key=uid_key)
    with warnings.catch_warnings():
        # highdicom warns about optional attributes it cannot copy (e.g. empty Type 2 ones): not our errors.
        warnings.simplefilter("ignore", UserWarning)
        try:
            seg = hd.seg.Segmentation(
                source_images=sources,
                pixel_array=volume,
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=descriptions,
                series_instance_uid=series_uid,
                series_number=SEG_SERIES_NUMBER,
                sop_instance_uid=sop_uid,
                instance_number=1,
                manufacturer=MANUFACTURER,
                manufacturer_model_name=MANUFACTURER,
                software_versions=software_version,
                device_serial_number="0",
                content_label="LESIONS",
                content_description="Tracked lesions (label = stable lesion id)",
                series_description="Lesions (tumor-response)",
            )
        except ValueError as exc:
            raise DicomExportError(
                f"series {first.SeriesInstanceUID}: highdicom cannot make a SEG of these source images and this label map ({exc})"
            ) from exc
    write_dataset_atomic(seg, out_path)
    return seg, segments


def write_dataset_atomic(ds: pydicom.Dataset, path: Path) -> None:
    """Write a DICOM file (with its file meta) to a temporary name in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        ds.save_as(tmp, enforce_file_format=True)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a DICOM result is meant to be shared like any output
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
