"""DICOM headers: what the crawl keeps of each file, read without pixel data.

:func:`read_header` is the one place that parses a DICOM file's header. It
records, besides the identifiers and the slice geometry, where the pixel data
start in the file (so that :mod:`imaging.io.pixels` can read an uncompressed
slice straight into the output volume without parsing the file again) and, for
enhanced multi-frame objects, the per-frame functional groups (position,
orientation, spacing, rescale, echo, temporal position, stack) of every frame.

Series grouping, assembly and the crawl live in :mod:`imaging.io.grouping`,
:mod:`imaging.io.series` and :mod:`imaging.io.crawl`; their public names are
re-exported here for code written against the first version of this module.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import struct
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imaging.io.errors import DicomFileError

# pydicom is imported where a file needs it (not in the lean parser's path): importing it loads its pixel
# decoders, a sizeable share of a one-shot `convert`.
if TYPE_CHECKING:
    import pydicom

    from imaging.io.segrefs import SegmentationRef

#: Image storage SOP classes whose instances can be slices (or frames) of a volume.
IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.4": "MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.3": "Enhanced MR Color Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.4": "Legacy Converted Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.128": "PET Image Storage",
    "1.2.840.10008.5.1.4.1.1.130": "Enhanced PET Image Storage",
    "1.2.840.10008.5.1.4.1.1.128.1": "Legacy Converted Enhanced PET Image Storage",
    "1.2.840.10008.5.1.4.1.1.20": "Nuclear Medicine Image Storage",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.1": "Multi-frame Single Bit Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.481.1": "RT Image Storage",
}

#: SOP classes that are not images but are worth naming when skipped.
OTHER_SOP_CLASSES = {
    "1.2.840.10008.1.3.10": "Media Storage Directory Storage (DICOMDIR)",
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation Storage (DICOM SEG: a mask, load with load_label_map)",
    "1.2.840.10008.5.1.4.1.1.481.3": "RT Structure Set Storage (RTSTRUCT: a mask, load with load_label_map)",
    "1.2.840.10008.5.1.4.1.1.481.2": "RT Dose Storage",
    "1.2.840.10008.5.1.4.1.1.481.5": "RT Plan Storage",
    "1.2.840.10008.5.1.4.1.1.11.1": "Grayscale Softcopy Presentation State Storage",
    "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR Storage",
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR Storage",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR Storage",
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR Storage",
    "1.2.840.10008.5.1.4.1.1.88.67": "X-Ray Radiation Dose SR Storage",
    "1.2.840.10008.5.1.4.1.1.104.1": "Encapsulated PDF Storage",
    "1.2.840.10008.5.1.4.1.1.66": "Raw Data Storage",
    "1.2.840.10008.5.1.4.1.1.66.1": "Spatial Registration Storage",
    "1.2.840.10008.5.1.4.1.1.1": "Computed Radiography Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound Image Storage",
    "1.2.840.10008.5.1.4.1.1.3.1": "Ultrasound Multi-frame Image Storage",
}

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
DICOMDIR_STORAGE = "1.2.840.10008.1.3.10"
#: The segmentation objects the crawl reads into :attr:`ScanResult.segmentations`.
SEGMENTATION_SOP_CLASSES = {SEG_STORAGE: "SEG", RTSTRUCT_STORAGE: "RTSTRUCT"}

#: A slice normal within this angle (degrees) of a patient axis names the plane (axial: S-I,
#: coronal: A-P, sagittal: L-R); further from every axis, the plane is "oblique". 15 degrees
#: keeps the usual small angulations (a gantry tilt, an axial brain MR angled a little along
#: the AC-PC line) in their plane, and calls strongly angled acquisitions oblique.
OBLIQUE_THRESHOLD_DEG = 15.0

#: Transfer syntaxes whose pixel data the fast reader takes straight from the file.
NATIVE_LITTLE_ENDIAN = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
_EXPLICIT_VR_32BIT_LENGTH = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UN", b"UC", b"UR", b"UT"}


@dataclass(frozen=True)
class FrameInfo:
    """Geometry and value mapping of one frame of an enhanced multi-frame object.

    Taken from the per-frame functional groups, falling back to the shared
    ones (PS3.3 C.7.6.16). ``index`` is 0-based.
    """

    index: int
    position_lps: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    pixel_spacing_mm: tuple[float, float] | None
    slice_thickness_mm: float | None = None
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    temporal_position: int | None = None
    stack_id: str | None = None
    echo_time_ms: float | None = None
    b_value: float | None = None
    diffusion_direction: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class DicomHeader:
    """What the crawl keeps of one file's header (no pixel data is read).

    Geometry is in DICOM LPS mm. ``pixel_data_offset``/``pixel_data_length``
    locate the native (uncompressed) pixel bytes in the file; they are ``None``
    for encapsulated (compressed) or absent pixel data. ``frames`` is empty
    for single-frame files and holds one :class:`FrameInfo` per frame for an
    enhanced multi-frame object.
    """

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
    # -- added with the archive crawl (all defaulted, so old call sites keep working) --
    series_number: int | None = None
    instance_number: int | None = None
    frame_of_reference_uid: str = ""
    transfer_syntax_uid: str = ""
    number_of_frames: int = 1
    samples_per_pixel: int = 1
    photometric: str = ""
    bits_allocated: int | None = None
    bits_stored: int | None = None
    pixel_representation: int = 0
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    has_pixel_data: bool = False
    pixel_data_offset: int | None = None
    pixel_data_length: int | None = None
    echo_number: int | None = None
    echo_time_ms: float | None = None
    temporal_position: int | None = None
    acquisition_number: int | None = None
    trigger_time_ms: float | None = None
    image_type: str = ""
    b_value: float | None = None
    diffusion_direction: tuple[float, float, float] | None = None
    spacing_between_slices_mm: float | None = None
    frames: tuple[FrameInfo, ...] = ()
    # -- added for series selection and segmentation links (defaulted) --
    #: ConvolutionKernel (CT; in enhanced objects from CTReconstructionSequence); values joined with "\\".
    convolution_kernel: str = ""
    #: ContrastBolusAgent (in enhanced objects: ContrastBolusAgentSequence's CodeMeaning); "" when absent.
    contrast_agent: str = ""
    #: BodyPartExamined.
    body_part: str = ""
    #: ContentDate + ContentTime (RTSTRUCT: StructureSetDate + StructureSetTime first), as
    #: "YYYYMMDDHHMMSS[.ffffff]"; "" without a valid date (see :func:`dicom_datetime`).
    content_datetime: str = ""

    @property
    def acquisition_plane(self) -> str:
        """"axial", "coronal", "sagittal", "oblique" or "" (no orientation), see :func:`acquisition_plane`."""
        orientation = self.orientation
        if orientation is None and self.frames:
            orientation = self.frames[0].orientation
        return acquisition_plane(orientation)

    @property
    def is_segmentation(self) -> bool:
        """True for a DICOM SEG or RTSTRUCT (read into :attr:`ScanResult.segmentations` by the crawl)."""
        return self.sop_class_uid in SEGMENTATION_SOP_CLASSES

    @property
    def sop_class_name(self) -> str:
        return IMAGE_SOP_CLASSES.get(self.sop_class_uid) or OTHER_SOP_CLASSES.get(self.sop_class_uid) or self.sop_class_uid

    @property
    def is_multiframe(self) -> bool:
        return bool(self.frames)

    @property
    def is_image(self) -> bool:
        """True when the file can contribute slices to a 3-D volume."""
        return self.not_image_reason is None

    @property
    def not_image_reason(self) -> str | None:
        """Why this file cannot be a slice of a volume, or ``None`` when it can."""
        if self.sop_class_uid not in IMAGE_SOP_CLASSES:
            return f"not an image volume slice ({self.sop_class_name})"
        if not self.has_pixel_data or self.rows is None or self.columns is None:
            return f"no pixel data ({self.sop_class_name})"
        if self.frames:
            if any(f.position_lps is None or f.orientation is None for f in self.frames):
                return "multi-frame image whose frames lack PlanePositionSequence/PlaneOrientationSequence"
            return None
        if self.number_of_frames > 1:
            return (
                f"multi-frame image ({self.number_of_frames} frames) without per-frame functional groups: "
                "no per-frame position, not a volume"
            )
        if self.orientation is None or self.position_lps is None:
            return f"no patient geometry (ImagePositionPatient/ImageOrientationPatient absent): a 2-D image ({self.sop_class_name})"
        return None


@dataclass
class ScanResult:
    """Headers of the DICOM files under a folder, and the files skipped with their reason.

    ``non_image`` keeps the headers of DICOM objects that are not image slices
    (SEG, RTSTRUCT, SR ...; also listed in ``skipped``). ``segmentations`` holds
    what the crawl read of each DICOM SEG and RTSTRUCT (its references, segments
    and date, :class:`imaging.io.segrefs.SegmentationRef`); those files are also
    in ``skipped`` and ``non_image`` (every file is in ``headers`` or ``skipped``),
    with the reason "segmentation ...". :attr:`skipped_other` leaves them out.
    ``n_read`` counts the files parsed in this scan and ``n_cached`` those taken
    unchanged from the catalogue (files whose size and mtime did not change).
    """

    headers: list[DicomHeader] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    non_image: list[DicomHeader] = field(default_factory=list)
    n_files: int = 0
    n_read: int = 0
    n_cached: int = 0
    catalogue: Path | None = None
    segmentations: list[SegmentationRef] = field(default_factory=list)

    @property
    def skipped_other(self) -> list[tuple[Path, str]]:
        """``skipped`` without the segmentations read into ``segmentations``: the files really left out."""
        read = {s.path for s in self.segmentations}
        return [(p, r) for p, r in self.skipped if p not in read]


# ---------------------------------------------------------------------------------------------
# value helpers


def _parse_date(value: object) -> dt.date | None:
    text = str(value or "").strip()
    if len(text) < 8 or not text[:8].isdigit():
        return None
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _float(value: object) -> float | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            value = value[0]  # type: ignore[index]
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, IndexError):
        return None


def _int(value: object) -> int | None:
    f = _float(value)
    return int(f) if f is not None and f == int(f) else None


def _joined(value: object) -> str:
    """A (possibly multi-valued) text attribute as one string, values stripped and joined with a backslash."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        parts = [str(v) for v in value]  # type: ignore[union-attr]
    else:
        parts = str(value).split("\\")
    parts = [p.strip() for p in parts]
    while parts and not parts[-1]:
        parts.pop()
    return "\\".join(parts)


def dicom_datetime(date: object, time: object) -> str:
    """A DA and a TM value as one sortable text, ``"YYYYMMDDHHMMSS[.ffffff]"``.

    A missing time counts as midnight; partial times (``HH``, ``HHMM``) are
    padded with zeros and the ACR-NEMA colons removed. ``""`` when the date is
    absent or not a valid ``YYYYMMDD`` date.

    Examples
    --------
    >>> dicom_datetime("20240102", "093015.25")
    '20240102093015.25'
    >>> dicom_datetime("20240102", "")
    '20240102000000'
    """
    if _parse_date(date) is None:
        return ""
    day = str(date).strip()[:8]
    text = str(time or "").strip().replace(":", "")
    whole, _, fraction = text.partition(".")
    whole = whole[:6] if whole.isdigit() and len(whole) in (2, 4, 6) else ""
    fraction = fraction[:6] if whole and fraction.isdigit() else ""
    return day + whole.ljust(6, "0") + (f".{fraction}" if fraction else "")


def content_datetime_of(ds: Any, sop_class_uid: str) -> str:
    """ContentDate/Time, or for an RTSTRUCT StructureSetDate/Time first (each falls back to the other)."""
    pairs = [("ContentDate", "ContentTime"), ("StructureSetDate", "StructureSetTime")]
    if sop_class_uid == RTSTRUCT_STORAGE:
        pairs.reverse()
    for date_kw, time_kw in pairs:
        value = dicom_datetime(ds.get(date_kw), ds.get(time_kw))
        if value:
            return value
    return ""


def acquisition_plane(orientation: tuple[float, ...] | None) -> str:
    """The plane of a slice from its ImageOrientationPatient (row and column cosines, LPS).

    Returns ``"axial"``, ``"coronal"`` or ``"sagittal"`` when the slice normal
    (row x column) lies within :data:`OBLIQUE_THRESHOLD_DEG` of the S-I, A-P or
    L-R axis, ``"oblique"`` when it is further from every axis, and ``""``
    without a usable orientation.

    Examples
    --------
    >>> acquisition_plane((1, 0, 0, 0, 1, 0))
    'axial'
    >>> acquisition_plane((1, 0, 0, 0, 0, -1))
    'coronal'
    """
    if orientation is None or len(orientation) != 6:
        return ""
    r, c = orientation[:3], orientation[3:]
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    norm = math.sqrt(sum(v * v for v in n))
    if not norm > 1e-6:
        return ""
    axis = max(range(3), key=lambda i: abs(n[i]))
    if abs(n[axis]) / norm < math.cos(math.radians(OBLIQUE_THRESHOLD_DEG)):
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def _item(ds: Any, keyword: str) -> Any:
    """First item of a sequence attribute, or None."""
    seq = getattr(ds, keyword, None) if ds is not None else None
    try:
        return seq[0] if seq else None
    except (TypeError, IndexError):
        return None


def _group_value(per_frame: Any, shared: Any, sequence: str, keyword: str) -> Any:
    """A functional-group attribute: the per-frame item wins over the shared one."""
    for source in (per_frame, shared):
        item = _item(source, sequence)
        if item is not None and keyword in item:
            value = item.get(keyword)
            if value is not None and value != "":
                return value
    return None


def _frame_infos(ds: pydicom.Dataset, n_frames: int) -> tuple[FrameInfo, ...]:
    per_frame_seq = ds.get("PerFrameFunctionalGroupsSequence")
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    if per_frame_seq is None and shared is None:
        return ()
    if per_frame_seq is not None and len(per_frame_seq) != n_frames:
        raise DicomFileError(
            f"PerFrameFunctionalGroupsSequence has {len(per_frame_seq)} items for {n_frames} frames"
        )
    frames = []
    top_slope, top_intercept = _float(ds.get("RescaleSlope")), _float(ds.get("RescaleIntercept"))
    for i in range(n_frames):
        pf = per_frame_seq[i] if per_frame_seq is not None else None
        slope = _float(_group_value(pf, shared, "PixelValueTransformationSequence", "RescaleSlope"))
        intercept = _float(_group_value(pf, shared, "PixelValueTransformationSequence", "RescaleIntercept"))
        diffusion = _item(pf, "MRDiffusionSequence") or _item(shared, "MRDiffusionSequence")
        direction = None
        if diffusion is not None:
            grad = _item(diffusion, "DiffusionGradientDirectionSequence")
            if grad is not None:
                direction = _floats(grad.get("DiffusionGradientOrientation"), 3)
        stack = _group_value(pf, shared, "FrameContentSequence", "StackID")
        frames.append(
            FrameInfo(
                index=i,
                position_lps=_floats(_group_value(pf, shared, "PlanePositionSequence", "ImagePositionPatient"), 3),  # type: ignore[arg-type]
                orientation=_floats(_group_value(pf, shared, "PlaneOrientationSequence", "ImageOrientationPatient"), 6),
                pixel_spacing_mm=_floats(_group_value(pf, shared, "PixelMeasuresSequence", "PixelSpacing"), 2),  # type: ignore[arg-type]
                slice_thickness_mm=_float(_group_value(pf, shared, "PixelMeasuresSequence", "SliceThickness")),
                rescale_slope=slope if slope is not None else (top_slope if top_slope is not None else 1.0),
                rescale_intercept=intercept if intercept is not None else (top_intercept or 0.0),
                temporal_position=_int(_group_value(pf, shared, "FrameContentSequence", "TemporalPositionIndex")),
                stack_id=str(stack) if stack is not None else None,
                echo_time_ms=_float(_group_value(pf, shared, "MREchoSequence", "EffectiveEchoTime")),
                b_value=_float(diffusion.get("DiffusionBValue")) if diffusion is not None else None,
                diffusion_direction=direction,  # type: ignore[arg-type]
            )
        )
    return tuple(frames)


def _pixel_data_location(fp: Any, implicit_vr: bool) -> tuple[bool, int | None, int | None]:
    """At the (7FE0,0010) element pydicom stopped before: (present, value offset, value length).

    Offset and length are ``None`` for encapsulated (undefined-length) data.
    """
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        return False, None, None
    group, element = struct.unpack("<HH", head[:4])
    if (group, element) != (0x7FE0, 0x0010):
        # Float/double pixel data, or stopped elsewhere: present, but not for the fast path.
        return (group == 0x7FE0), None, None
    if implicit_vr:
        (length,) = struct.unpack("<I", head[4:8])
        value_at = start + 8
    elif head[4:6] in _EXPLICIT_VR_32BIT_LENGTH:
        if len(head) < 12:
            return True, None, None
        (length,) = struct.unpack("<I", head[8:12])
        value_at = start + 12
    else:
        (length,) = struct.unpack("<H", head[6:8])
        value_at = start + 8
    if length == 0xFFFFFFFF:
        return True, None, None
    return True, value_at, int(length)


def _looks_like_dicom(fp: Any) -> bool | None:
    """True: Part 10 file (DICM marker); None: no marker but starts like a raw dataset; False: not DICOM."""
    head = fp.read(132)
    fp.seek(0)
    if len(head) == 132 and head[128:132] == b"DICM":
        return True
    # Headerless (pre-Part-10) files start with a little-endian group 0x0008 (or 0x0002) element.
    if len(head) >= 8 and head[:2] in (b"\x08\x00", b"\x02\x00"):
        return None
    return False


# ---------------------------------------------------------------------------------------------
# A lean header parser for the common encodings.
#
# pydicom parses and validates every element; an archive crawl needs ~35 of them. For Part 10
# files in (implicit or explicit) little-endian encoding this reads the header once, keeps the
# raw bytes of the wanted tags and skips everything else (sequences included), which is several
# times faster. Anything unusual (no preamble, big endian, deflate, functional groups, a
# character set other than ASCII/Latin-1/UTF-8 in a text we keep, a parse surprise) returns
# None and pydicom reads the file instead, so the two paths can only differ in speed.

_S, _M, _US, _FD = "str", "multi", "us", "fd"
_FAST_TAGS: dict[int, tuple[str, str]] = {
    0x00020002: ("MediaStorageSOPClassUID", _S),
    0x00020010: ("TransferSyntaxUID", _S),
    0x00080005: ("SpecificCharacterSet", _M),
    0x00080008: ("ImageType", _M),
    0x00080016: ("SOPClassUID", _S),
    0x00080018: ("SOPInstanceUID", _S),
    0x00080020: ("StudyDate", _S),
    0x00080023: ("ContentDate", _S),
    0x00080033: ("ContentTime", _S),
    0x00080060: ("Modality", _S),
    0x0008103E: ("SeriesDescription", _S),
    0x00100020: ("PatientID", _S),
    0x00180010: ("ContrastBolusAgent", _S),
    0x00180015: ("BodyPartExamined", _S),
    0x00180050: ("SliceThickness", _S),
    0x00180081: ("EchoTime", _S),
    0x00180086: ("EchoNumbers", _M),
    0x00180088: ("SpacingBetweenSlices", _S),
    0x00181060: ("TriggerTime", _S),
    0x00181210: ("ConvolutionKernel", _M),
    0x00189087: ("DiffusionBValue", _FD),
    0x00189089: ("DiffusionGradientOrientation", _FD),
    0x0020000D: ("StudyInstanceUID", _S),
    0x0020000E: ("SeriesInstanceUID", _S),
    0x00200011: ("SeriesNumber", _S),
    0x00200012: ("AcquisitionNumber", _S),
    0x00200013: ("InstanceNumber", _S),
    0x00200032: ("ImagePositionPatient", _M),
    0x00200037: ("ImageOrientationPatient", _M),
    0x00200052: ("FrameOfReferenceUID", _S),
    0x00200100: ("TemporalPositionIdentifier", _S),
    0x00280002: ("SamplesPerPixel", _US),
    0x00280004: ("PhotometricInterpretation", _S),
    0x00280008: ("NumberOfFrames", _S),
    0x00280010: ("Rows", _US),
    0x00280011: ("Columns", _US),
    0x00280030: ("PixelSpacing", _M),
    0x00280100: ("BitsAllocated", _US),
    0x00280101: ("BitsStored", _US),
    0x00280103: ("PixelRepresentation", _US),
    0x00281052: ("RescaleIntercept", _S),
    0x00281053: ("RescaleSlope", _S),
    0x30060008: ("StructureSetDate", _S),
    0x30060009: ("StructureSetTime", _S),
}
#: Texts whose character set matters (bytes above 127 are decoded by SpecificCharacterSet).
_TEXT_KEYWORDS = {"PatientID", "SeriesDescription", "ContrastBolusAgent", "ConvolutionKernel", "BodyPartExamined"}
_FALLBACK_TAGS = {0x52009229, 0x52009230}  # functional groups: pydicom parses those
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UN", b"UC", b"UR", b"UT", b"SV", b"UV"}
_FAST_SYNTAXES = {
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",
}
_UNPACK_U16 = struct.Struct("<H").unpack_from
_UNPACK_U32 = struct.Struct("<I").unpack_from


class _FastValues(dict):
    """Decoded values by keyword, readable like a pydicom Dataset (``get``, ``in``, attributes)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


_VRS = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB", b"OD", b"OF", b"OL",
    b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI", b"UL", b"UN", b"UR", b"US",
    b"UT", b"UV",
}
_UNPACK_EXPLICIT = struct.Struct("<HH2sH").unpack_from
_UNPACK_IMPLICIT = struct.Struct("<HHI").unpack_from
_CHUNK = 65536


def _decode_fast(raw: bytes, kind: str) -> Any:
    if kind == _US:
        return _UNPACK_U16(raw, 0)[0] if len(raw) >= 2 else None
    if kind == _FD:
        n = len(raw) // 8
        values = struct.unpack(f"<{n}d", raw[: 8 * n])
        return values[0] if n == 1 else list(values)
    text = raw.rstrip(b"\x00 ").decode("latin-1").strip()
    if kind == _M:
        return [v.strip() for v in text.split("\\")] if text else None
    return text


def _fast_parse(fp: Any, size: int) -> tuple[_FastValues, str, bool, int | None, int | None] | None:
    """(values, transfer syntax, has pixel data, pixel offset, pixel length), or None for pydicom.

    One pass over the element stream; nested sequences are walked (their
    elements skipped) with a depth counter rather than recursion. ``data``
    holds the file from byte ``base`` on.
    """
    data = fp.read(_CHUNK)
    if len(data) < 132 or data[128:132] != b"DICM":
        return None
    base, pos, n = 0, 132, len(data)
    raw: dict[int, bytes] = {}
    wanted = _FAST_TAGS
    implicit = False  # the meta group is always explicit VR little endian
    tsyntax: str | None = None
    depth = 0  # > 0 inside sequences (undefined-length items and sequences)
    has_pixels, offset, length = False, None, None
    try:
        while True:
            if pos + 12 > n:  # refill: keep from pos on
                if base + pos >= size:
                    break
                fp.seek(base + pos)
                data, base, pos = fp.read(_CHUNK), base + pos, 0
                n = len(data)
                if n < 8:
                    break
                if n < 12:
                    data += b"\0" * (12 - n)  # a last short element; lengths are checked below
            group, element, vr, vlen = _UNPACK_EXPLICIT(data, pos)
            if group == 0xFFFE:  # item and delimiters: tag + 4-byte length, whatever the VR mode
                vlen = _UNPACK_U32(data, pos + 4)[0]
                pos += 8
                if element == 0xE000:  # item
                    if vlen == 0xFFFFFFFF:
                        depth += 1
                    else:
                        pos += vlen
                elif element in (0xE00D, 0xE0DD):  # item / sequence delimiter
                    depth -= 1
                    if depth < 0:
                        return None
                else:
                    return None
                continue
            if tsyntax is None and group != 0x0002:
                tsyntax = _decode_fast(raw.get(0x00020010, b""), _S)
                if tsyntax not in _FAST_SYNTAXES:
                    return None
                implicit = tsyntax == "1.2.840.10008.1.2"
            if implicit:
                vlen = _UNPACK_U32(data, pos + 4)[0]
                vstart = pos + 8
                long_vr = vlen == 0xFFFFFFFF
            else:
                if vr not in _VRS:
                    return None
                if vr in _LONG_VRS:
                    vlen = _UNPACK_U32(data, pos + 8)[0]
                    vstart = pos + 12
                else:
                    vstart = pos + 8
                long_vr = vr in (b"SQ",) and vlen == 0xFFFFFFFF
                if vlen == 0xFFFFFFFF and vr != b"SQ":
                    if vr == b"UN" or depth or (group, element) != (0x7FE0, 0x0010):
                        return None  # undefined-length UN (an implicit sequence) or odd data: pydicom
            tag = (group << 16) | element
            if depth == 0:
                if tag == 0x7FE00010:
                    has_pixels = True
                    if vlen != 0xFFFFFFFF and tsyntax in NATIVE_LITTLE_ENDIAN:
                        if base + vstart + vlen > size:
                            return None  # truncated: let pydicom say so
                        offset, length = base + vstart, vlen
                    break
                if tag in _FALLBACK_TAGS or group == 0x7FE0:
                    return None
            if long_vr:  # undefined-length sequence: walk its items
                depth += 1
                pos = vstart
                continue
            if base + vstart + vlen > size:
                return None
            if depth == 0 and tag in wanted:
                if vstart + vlen > n:
                    fp.seek(base + vstart)
                    raw[tag] = fp.read(vlen)
                else:
                    raw[tag] = data[vstart : vstart + vlen]
            pos = vstart + vlen
    except (struct.error, UnicodeDecodeError, ValueError):
        return None
    if tsyntax is None or depth != 0 and not has_pixels:
        return None
    values = _FastValues()
    for tag, value_bytes in raw.items():
        keyword, kind = _FAST_TAGS[tag]
        if keyword in _TEXT_KEYWORDS and any(b > 127 for b in value_bytes):
            charset = _decode_fast(raw.get(0x00080005, b""), _M) or []
            if not set(charset) <= {"ISO_IR 100", "ISO_IR 192", ""}:
                return None
            encoding = "utf-8" if "ISO_IR 192" in charset else "latin-1"
            values[keyword] = value_bytes.rstrip(b"\x00 ").decode(encoding, errors="replace").strip()
            continue
        value = _decode_fast(value_bytes, kind)
        if value is not None and value != "":
            values[keyword] = value
    return values, tsyntax, has_pixels, offset, length


def read_header(path: str | os.PathLike[str]) -> DicomHeader:
    """Read one file's header, without pixel data.

    Files without the Part 10 preamble are accepted when they start like a raw
    little-endian dataset (old ACR-NEMA style exports).

    Raises
    ------
    DicomFileError
        The file is not DICOM, is truncated, or lacks the identifying UIDs;
        the message names the file and the reason.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fp, warnings.catch_warnings():
            # pydicom warns about every non-conformant value; the crawl reports what matters.
            warnings.simplefilter("ignore")
            kind = _looks_like_dicom(fp)
            if kind is False:
                raise DicomFileError(f"{p}: not a DICOM file (no 'DICM' marker at byte 128)")
            if kind is True:
                fast = _fast_parse(fp, os.fstat(fp.fileno()).st_size)
                if fast is not None:
                    values, tsyntax, has_pixels, offset, length = fast
                    return _header_from_dataset(p, values, tsyntax, has_pixels, offset, length)  # type: ignore[arg-type]
                fp.seek(0)
            import pydicom

            ds = pydicom.dcmread(fp, stop_before_pixels=True, force=kind is None)
            tsyntax = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "") if hasattr(ds, "file_meta") else ""
            if tsyntax in NATIVE_LITTLE_ENDIAN:
                has_pixels, offset, length = _pixel_data_location(fp, tsyntax == "1.2.840.10008.1.2")
            else:
                # Compressed, deflated, big-endian or headerless: the decoder reads the file again.
                has_pixels = bool(fp.read(4))
                offset = length = None
            header = _header_from_dataset(p, ds, tsyntax, has_pixels, offset, length)
    except DicomFileError:
        raise
    except OSError as exc:
        raise DicomFileError(f"{p}: cannot read file ({exc.strerror or exc})") from exc
    except Exception as exc:  # pydicom raises many types on corrupt headers; the boundary names them
        if type(exc).__name__ == "InvalidDicomError":
            raise DicomFileError(f"{p}: not a DICOM file ({exc})") from exc
        raise DicomFileError(f"{p}: unreadable DICOM header ({type(exc).__name__}: {exc})") from exc
    return header


def _enhanced_kernel(ds: Any) -> str:
    """ConvolutionKernel of an enhanced CT object: CTReconstructionSequence, first frame's or shared."""
    if "PerFrameFunctionalGroupsSequence" not in ds and "SharedFunctionalGroupsSequence" not in ds:
        return ""
    per_frame = _item(ds, "PerFrameFunctionalGroupsSequence")
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    return _joined(_group_value(per_frame, shared, "CTReconstructionSequence", "ConvolutionKernel"))


def _enhanced_contrast(ds: Any) -> str:
    """The agent of an enhanced object's ContrastBolusAgentSequence (CodeMeaning, else CodeValue).

    Only for enhanced objects (which always go through pydicom), so that the
    lean parser and pydicom agree on classic images.
    """
    if "PerFrameFunctionalGroupsSequence" not in ds:
        return ""
    item = _item(ds, "ContrastBolusAgentSequence") if "ContrastBolusAgentSequence" in ds else None
    if item is None:
        return ""
    return str(item.get("CodeMeaning", "") or item.get("CodeValue", "") or "").strip()


def _header_from_dataset(
    p: Path, ds: pydicom.Dataset, tsyntax: str, has_pixels: bool, offset: int | None, length: int | None
) -> DicomHeader:
    meta = getattr(ds, "file_meta", None)
    media_class = str((meta.get("MediaStorageSOPClassUID", "") if meta is not None else "") or ds.get("MediaStorageSOPClassUID", "") or "")
    if media_class == DICOMDIR_STORAGE or str(ds.get("SOPClassUID", "") or "") == DICOMDIR_STORAGE:
        raise DicomFileError(f"{p}: DICOMDIR (a directory record, not an image)")
    uids = {}
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        value = ds.get(keyword)
        if not value:
            raise DicomFileError(f"{p}: no {keyword}: cannot be placed in a patient/study/series")
        uids[keyword] = str(value)
    study_uid, series_uid, sop_uid, sop_class = uids.values()
    try:
        n_frames = _int(ds.get("NumberOfFrames")) or 1
        frames = _frame_infos(ds, n_frames) if ("PerFrameFunctionalGroupsSequence" in ds) else ()
        image_type = ds.get("ImageType")
        image_type_text = "\\".join(str(v).strip() for v in image_type) if isinstance(image_type, (list, tuple)) or type(image_type).__name__ == "MultiValue" else str(image_type or "")
        thickness = ds.get("SliceThickness")
        slope = _float(ds.get("RescaleSlope"))
        intercept = _float(ds.get("RescaleIntercept"))
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
            rows=_int(ds.get("Rows")),
            columns=_int(ds.get("Columns")),
            orientation=_floats(ds.get("ImageOrientationPatient"), 6),
            position_lps=_floats(ds.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
            pixel_spacing_mm=_floats(ds.get("PixelSpacing"), 2),  # type: ignore[arg-type]
            slice_thickness_mm=_float(thickness),
            series_number=_int(ds.get("SeriesNumber")),
            instance_number=_int(ds.get("InstanceNumber")),
            frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or ""),
            transfer_syntax_uid=tsyntax,
            number_of_frames=n_frames,
            samples_per_pixel=_int(ds.get("SamplesPerPixel")) or 1,
            photometric=str(ds.get("PhotometricInterpretation", "") or ""),
            bits_allocated=_int(ds.get("BitsAllocated")),
            bits_stored=_int(ds.get("BitsStored")),
            pixel_representation=_int(ds.get("PixelRepresentation")) or 0,
            rescale_slope=slope if slope is not None else 1.0,
            rescale_intercept=intercept if intercept is not None else 0.0,
            has_pixel_data=has_pixels,
            pixel_data_offset=offset,
            pixel_data_length=length,
            echo_number=_int(ds.get("EchoNumbers")),
            echo_time_ms=_float(ds.get("EchoTime")),
            temporal_position=_int(ds.get("TemporalPositionIdentifier")),
            acquisition_number=_int(ds.get("AcquisitionNumber")),
            trigger_time_ms=_float(ds.get("TriggerTime")),
            image_type=image_type_text,
            b_value=_float(ds.get("DiffusionBValue")),
            diffusion_direction=_floats(ds.get("DiffusionGradientOrientation"), 3),  # type: ignore[arg-type]
            spacing_between_slices_mm=_float(ds.get("SpacingBetweenSlices")),
            frames=frames,
            convolution_kernel=_joined(ds.get("ConvolutionKernel")) or _enhanced_kernel(ds),
            contrast_agent=_joined(ds.get("ContrastBolusAgent")) or _enhanced_contrast(ds),
            body_part=_joined(ds.get("BodyPartExamined")),
            content_datetime=content_datetime_of(ds, sop_class),
        )
    except DicomFileError as exc:
        raise DicomFileError(f"{p}: {exc}") from exc
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        raise DicomFileError(f"{p}: malformed header value ({type(exc).__name__}: {exc})") from exc


# ---------------------------------------------------------------------------------------------
# (de)serialisation for the catalogue

_HEADER_FIELDS = {f.name for f in fields(DicomHeader)}
_TUPLE_FIELDS = {"orientation", "position_lps", "pixel_spacing_mm", "diffusion_direction"}


def header_to_dict(header: DicomHeader) -> dict[str, Any]:
    """A JSON-able dict of ``header`` (inverse: :func:`header_from_dict`).

    Field by field: ``dataclasses.asdict`` deep-copies every value recursively, which made it the largest
    cost of crawling a large archive (its fields are scalars, tuples of scalars and FrameInfo records).
    """
    d = {name: getattr(header, name) for name in _HEADER_FIELD_NAMES}
    d["frames"] = [{name: getattr(f, name) for name in _FRAME_FIELD_NAMES} for f in header.frames]
    d["path"] = str(header.path)
    d["study_date"] = header.study_date.isoformat() if header.study_date else None
    return d


_HEADER_FIELD_NAMES = tuple(f.name for f in fields(DicomHeader))
_FRAME_FIELD_NAMES = tuple(f.name for f in fields(FrameInfo))


def header_from_dict(d: dict[str, Any]) -> DicomHeader:
    kw = {k: v for k, v in d.items() if k in _HEADER_FIELDS}
    kw["path"] = Path(kw["path"])
    kw["study_date"] = dt.date.fromisoformat(kw["study_date"]) if kw.get("study_date") else None
    for name in _TUPLE_FIELDS:
        if kw.get(name) is not None:
            kw[name] = tuple(kw[name])
    frames: list[FrameInfo] = []
    for f in kw.get("frames") or ():
        fkw: dict[str, Any] = {k: (tuple(v) if k in _TUPLE_FIELDS and v is not None else v) for k, v in f.items()}
        frames.append(FrameInfo(**fkw))
    kw["frames"] = tuple(frames)
    return DicomHeader(**kw)


def __getattr__(name: str) -> Any:
    # Backward compatibility: these lived here before the crawl, grouping and assembly were split out.
    if name in ("scan_archive",):
        from imaging.io import crawl

        return getattr(crawl, name)
    if name in ("group_series", "SeriesInfo"):
        from imaging.io import grouping

        return getattr(grouping, name)
    if name in ("load_series", "read_series"):
        from imaging.io import series

        return getattr(series, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
