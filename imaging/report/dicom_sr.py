"""Lesion measurements and time-point responses as a DICOM SR Measurement Report (TID 1500).

One report per patient and time point, in the study of the source series. Every group carries
the time point's context (TID 1502: the study date and its role in the course as *Baseline*,
*Pretreatment* for a pre-baseline scan or *Posttreatment*). Per lesion, sharing one Tracking Unique Identifier (the same UID at every time
point, see :func:`imaging.report.dicom_seg.tracking_uid`):

- a **bidirectional** group (TID 1501) when the lesion's axes were measured: *Long Axis* and
  *Short Axis* (SCT 103339001, 103340004) in mm, each inferred from a two-point POLYLINE in the
  image coordinates of the source slice it was measured on, as OHIF v3 and the cornerstone
  adapters write and read a bidirectional measurement (Tracking Identifier
  ``Cornerstone3DTools@^0.1.0:Bidirectional``, the lesion's name as the group's *Comment*), so a
  viewer draws the two lines and lists them under the lesion's name (QIICR/dcmqi#7 proposes the
  same encoding);
- a **volumetric** group (TID 1411) with the lesion id as Tracking Identifier, the SEG segment it
  was measured on, the volume (mm3) and the RANO perpendicular (mm); the axes too when they have
  no image coordinates. A lesion that has disappeared gets a TID 1501 group with zero
  measurements and no region.

What the course needs to be reassessed from the reports alone is written beside the values, in
the private coding scheme :data:`SCHEME` (documented in ``docs/pacs.md``): each lesion's role
(target, non-target, new) with its status, and one *time-point context* group holding the
treatment start, the end of radiotherapy, immunotherapy, the slice thickness and the visit's
clinical fields. Each assessed criterion's call is one more group (TID 1501) whose method is the
criterion, with the response and every flag as qualitative evaluations and the reason as text.
Responses, flags and criteria other than RECIST 1.1 have no standard code: they use :data:`SCHEME`.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pydicom
from pydicom.sr.codedict import codes

from imaging.report.dicom_seg import (
    MANUFACTURER,
    ORGAN_CODES,
    DicomExportError,
    SegmentInfo,
    read_source_headers,
    tracking_uid,
    uid_from,
    write_dataset_atomic,
)

SR_SERIES_NUMBER = 9902

#: Private coding scheme of the responses, flags and criteria (a "99" prefix marks a private scheme).
SCHEME = "99TUMORRESP"

#: Criterion names (as on the command line) -> coded method. RECIST 1.1 has a DICOM code (CID 6147).
CRITERION_CODES: dict[str, tuple[str, str, str]] = {
    "recist": ("126081", "DCM", "RECIST 1.1"),
    "irecist": ("iRECIST", SCHEME, "iRECIST"),
    "rano": ("RANO", SCHEME, "RANO 2010"),
    "rano2": ("RANO2", SCHEME, "RANO 2.0"),
    "mrano": ("mRANO", SCHEME, "modified RANO"),
    "irano": ("iRANO", SCHEME, "iRANO"),
    "ranobm": ("RANO-BM", SCHEME, "RANO-BM"),
    "irrc": ("irRC", SCHEME, "immune-related response criteria"),
    "ranolgg": ("RANO-LGG", SCHEME, "RANO for low-grade gliomas"),
}

#: Concept names of the response group's items.
RESPONSE_CONCEPT = ("TPRESPONSE", SCHEME, "Time-point response")
FLAG_CONCEPT = ("RESPFLAG", SCHEME, "Response flag")
REASON_CONCEPT = ("RESPREASON", SCHEME, "Reason for response")
#: TID 1500 has no concept for a RECIST perpendicular; SNOMED's "Perpendicular axis" is the closest.
PERPENDICULAR = ("131189007", "SCT", "Perpendicular axis")
#: The axes with the meanings OHIF's adapters look for ("Long Axis", "Short Axis": they match the meaning).
LONG_AXIS = ("103339001", "SCT", "Long Axis")
SHORT_AXIS = ("103340004", "SCT", "Short Axis")
#: OHIF v3 maps a group to its Bidirectional tool by this Tracking Identifier.
OHIF_BIDIRECTIONAL = "Cornerstone3DTools@^0.1.0:Bidirectional"

#: The course a report states, beside its values (private; read back by ``pipelines.dicom.sr_course``).
LESION_ROLE = ("LESIONROLE", SCHEME, "Lesion role in the course")
NON_TARGET_STATUS = ("NTSTATUS", SCHEME, "Non-target lesion status")
NEW_LESION_STATUS = ("NEWSTATUS", SCHEME, "New lesion status")
MEASURABLE = ("MEASURABLE", SCHEME, "Measurable lesion")
TOO_SMALL = ("TOOSMALL", SCHEME, "Too small to measure")
SPLIT_FROM = ("SPLITFROM", SCHEME, "Fragment of lesion")
COALESCED_INTO = ("COALESCED", SCHEME, "Coalesced into lesion")
CONTEXT_ID = "time-point context"
TREATMENT_START = ("TREATSTART", SCHEME, "Treatment start")
RADIOTHERAPY_END = ("RTEND", SCHEME, "Radiotherapy end")
IMMUNOTHERAPY = ("IMMUNOTHERAPY", SCHEME, "Immunotherapy")
SLICE_THICKNESS = ("112225", "DCM", "Slice Thickness")
#: Clinical fields of a visit (course-format.md) -> concept; booleans are coded SCT Yes/No.
CLINICAL = {
    "steroid_dose_mg": ("STEROIDMG", SCHEME, "Dexamethasone-equivalent dose"),
    "clinically_stable": ("CLINSTABLE", SCHEME, "Clinically stable"),
    "t2_flair": ("T2FLAIR", SCHEME, "T2/FLAIR"),
    "outside_radiation_field": ("OUTSIDERT", SCHEME, "Outside radiation field"),
    "histologic_confirmation": ("HISTOLOGY", SCHEME, "Histologic confirmation"),
    "enhancement": ("ENHANCEMENT", SCHEME, "Contrast enhancement"),
}
#: Free-text fields of a visit and of the course context, written as TEXT.
CLINICAL_TEXT = {"t2_flair_source": ("T2FLAIRSRC", SCHEME, "Source of the T2/FLAIR status")}
TUMOUR = ("TUMOUR", SCHEME, "Glioma type for RANO 2.0")
COMPONENT = ("COMPONENT", SCHEME, "Tumour component of the target")
YES = ("373066001", "SCT", "Yes")
NO = ("373067005", "SCT", "No")
#: TID 1502 Time Point Type (CID 6146) of a scan's role in the course.
TIME_POINT_TYPES = {
    "baseline": ("C1442488", "UMLS", "Baseline"),
    "pre_baseline": ("C3539075", "UMLS", "Pretreatment"),
    "follow_up": ("126074", "DCM", "Posttreatment"),
}

Point = tuple[float, float, float]


@dataclass(frozen=True)
class LesionRecord:
    """What the report states about one lesion at this time point (mm, mm3, LPS).

    ``long_axis_ends_lps`` / ``short_axis_ends_lps``: the axes' end points, which the report draws
    on the source slice they lie in. ``role`` (``target``, ``non_target``, ``new``) and ``course``
    (the lesion's entry in the course that was assessed) let the report be reassessed as it was.
    """

    lesion_id: str
    status: str = "present"  # present | absent | new (as in lesions.csv)
    long_axis_mm: float | None = None
    short_axis_mm: float | None = None
    perpendicular_mm: float | None = None
    volume_mm3: float | None = None
    organ: str = ""
    nodal: bool = False
    long_axis_ends_lps: tuple[Point, Point] | None = None
    short_axis_ends_lps: tuple[Point, Point] | None = None
    role: str = ""
    course: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CriterionCall:
    """One criterion's call at this time point (a row of responses.csv)."""

    criterion: str
    response: str | None
    flags: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class TimePointInfo:
    """The time point's place in the course (TID 1502) and what the course says of it.

    ``kind``: ``baseline``, ``pre_baseline`` or ``follow_up``; ``order``: 1 for the first scan;
    ``days_from_baseline``: negative before it (these two make the report's identity, not TID 1502 items). ``context``: the course's ``treatment_start``,
    ``radiotherapy_end`` (ISO dates or None) and ``immunotherapy``; ``clinical``: the visit's
    fields (course-format.md); ``slice_thickness_mm`` as the course used it.
    """

    date: str
    kind: str | None = None
    order: int | None = None
    days_from_baseline: int | None = None
    context: dict = field(default_factory=dict)
    clinical: dict = field(default_factory=dict)
    slice_thickness_mm: float | None = None


@dataclass(frozen=True)
class ReportContent:
    """Everything one report holds besides the references; its digest makes the SOP Instance UID."""

    lesions: tuple[LesionRecord, ...]
    calls: tuple[CriterionCall, ...] = ()
    time_point: TimePointInfo | None = None
    extra: dict = field(default_factory=dict)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=str).encode()).hexdigest()


def _code(triple: tuple[str, str, str]):  # -> hd.sr.CodedConcept
    import highdicom as hd

    return hd.sr.CodedConcept(*triple)


def response_code(call: CriterionCall):  # -> hd.sr.CodedConcept
    """The coded response; a time point without a call is the baseline or a pre-baseline scan."""
    if call.response is not None:
        value = call.response
    else:
        value = "pre-baseline" if "pre_baseline" in call.flags else "baseline"
    return _code((value, SCHEME, value))


def _criterion_code(name: str):  # -> hd.sr.CodedConcept
    triple = CRITERION_CODES.get(name.lower())
    if triple is None:
        raise DicomExportError(f"unknown criterion {name!r}; known: {', '.join(CRITERION_CODES)}")
    return _code(triple)


def _finding_sites(lesion: LesionRecord) -> list:
    import highdicom as hd

    region = ORGAN_CODES.get("lymph node" if lesion.nodal else lesion.organ.strip().lower())
    return [hd.sr.FindingSite(anatomic_location=hd.sr.CodedConcept(region[0], "SCT", region[1]))] if region else []


def _measurements(lesion: LesionRecord, zero: bool, axes: bool = True) -> list:
    """The lesion's NUM items (``axes=False``: without long and short axis, drawn in their own group)."""
    import highdicom as hd

    cubic_mm = hd.sr.CodedConcept("mm3", "UCUM", "cubic millimeter")
    out = []
    items = (
        (_code(LONG_AXIS), lesion.long_axis_mm if axes else None, codes.UCUM.Millimeter),
        (_code(SHORT_AXIS), lesion.short_axis_mm if axes else None, codes.UCUM.Millimeter),
        (_code(PERPENDICULAR), lesion.perpendicular_mm, codes.UCUM.Millimeter),
        (codes.SCT.Volume, lesion.volume_mm3, cubic_mm),
    )
    for name, value, unit in items:
        if zero:
            value = 0.0
        if value is None:
            continue
        out.append(hd.sr.Measurement(name=name, value=float(value), unit=unit))
    return out


def _yes_no(value: bool):  # -> hd.sr.CodedConcept
    return _code(YES if value else NO)


def _text(concept: tuple[str, str, str], value: str):  # -> hd.sr.TextContentItem
    import highdicom as hd

    return hd.sr.TextContentItem(name=_code(concept), value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def _course_items(lesion: LesionRecord) -> tuple[list, list]:
    """(coded qualitative evaluations, text items) stating the lesion's role and status in the course."""
    import highdicom as hd

    if not lesion.role:
        return [], []
    entry = lesion.course
    coded = [hd.sr.QualitativeEvaluation(name=_code(LESION_ROLE), value=_code((lesion.role, SCHEME, lesion.role)))]
    texts = []
    if lesion.role == "non_target":
        status = str(entry.get("status") or "present")
        coded.append(hd.sr.QualitativeEvaluation(name=_code(NON_TARGET_STATUS), value=_code((status, SCHEME, status))))
    elif lesion.role == "new":
        coded.append(hd.sr.QualitativeEvaluation(name=_code(MEASURABLE), value=_yes_no(bool(entry.get("measurable")))))
        if entry.get("status"):
            status = str(entry["status"])
            coded.append(hd.sr.QualitativeEvaluation(name=_code(NEW_LESION_STATUS), value=_code((status, SCHEME, status))))
    elif lesion.role == "target":
        if entry.get("component"):
            component = str(entry["component"])
            coded.append(hd.sr.QualitativeEvaluation(name=_code(COMPONENT), value=_code((component, SCHEME, component))))
        if entry.get("too_small_to_measure"):
            coded.append(hd.sr.QualitativeEvaluation(name=_code(TOO_SMALL), value=_yes_no(True)))
        for key, concept in (("split_from", SPLIT_FROM), ("coalesced_into", COALESCED_INTO)):
            if entry.get(key):
                texts.append(_text(concept, str(entry[key])))
    return coded, texts


def _spacing_between_slices(sources: Sequence[pydicom.Dataset]) -> float:
    import numpy as np

    positions = sorted(float(np.dot(_normal(ds), np.asarray(ds.ImagePositionPatient, float))) for ds in sources
                       if "ImagePositionPatient" in ds)
    gaps = [b - a for a, b in zip(positions, positions[1:]) if b - a > 1e-3]
    return min(gaps) if gaps else float(sources[0].get("SliceThickness") or 1.0)


def _normal(ds: pydicom.Dataset):  # -> np.ndarray
    import numpy as np

    iop = np.asarray(ds.ImageOrientationPatient, float)
    return np.cross(iop[:3], iop[3:])


def locate_on_slice(points_lps: Sequence[Point], sources: Sequence[pydicom.Dataset]) -> tuple[pydicom.Dataset, list[float]]:
    """The source slice that holds ``points_lps`` and their image coordinates on it (SCOORD: column, row).

    Image coordinates follow DICOM (PS3.3 C.18.6.1.1): (0, 0) is the top left corner of the top left
    pixel, so a pixel's centre is at +0.5. The slice is found by position (the points' distance to
    each slice's plane), never by file order or InstanceNumber.

    Raises
    ------
    DicomExportError
        Single-frame image slices with a plane geometry are needed; the points must lie in one
        slice (within half the slice spacing).
    """
    import numpy as np

    planar = [ds for ds in sources if "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds
              and "PixelSpacing" in ds and int(ds.get("NumberOfFrames", 1) or 1) == 1]
    if not planar:
        raise DicomExportError("the source series has no single-frame slices with a position (ImagePositionPatient)")
    pts = np.asarray(points_lps, float)
    best = None
    for ds in planar:
        d = float(np.max(np.abs((pts - np.asarray(ds.ImagePositionPatient, float)) @ _normal(ds))))
        if best is None or d < best[0]:
            best = (d, ds)
    assert best is not None
    tolerance = 0.5 * _spacing_between_slices(planar) + 0.05
    if best[0] > tolerance:
        raise DicomExportError(f"measurement end points lie {best[0]:.2f} mm from the nearest source slice "
                               f"(more than half the slice spacing): they cannot be drawn on an image")
    ds = best[1]
    iop = np.asarray(ds.ImageOrientationPatient, float)
    row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)  # between rows, between columns
    offsets = pts - np.asarray(ds.ImagePositionPatient, float)
    coords: list[float] = []
    for off in offsets:
        coords += [float(off @ iop[:3]) / column_spacing + 0.5, float(off @ iop[3:]) / row_spacing + 0.5]
    return ds, coords


def _axis_scoord(image: pydicom.Dataset, graphic_data: list[float]):  # -> hd.sr.ScoordContentItem
    """A two-point POLYLINE on ``image`` (INFERRED FROM its axis), with the image it was SELECTED FROM (TID 320)."""
    import highdicom as hd
    import numpy as np

    scoord = hd.sr.ScoordContentItem(
        name=codes.DCM.ImageRegion,
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=np.asarray(graphic_data, dtype=float).reshape(-1, 2),
        pixel_origin_interpretation=hd.sr.PixelOriginInterpretationValues.VOLUME,
        relationship_type=hd.sr.RelationshipTypeValues.INFERRED_FROM,
    )
    scoord.ContentSequence = [hd.sr.SourceImageForRegion(referenced_sop_class_uid=str(image.SOPClassUID),
                                                         referenced_sop_instance_uid=str(image.SOPInstanceUID))]
    return scoord


def _bidirectional_group(lesion: LesionRecord, tracking_uid_: str, sources: Sequence[pydicom.Dataset], tp_context,
                         coded: list, texts: list):
    """The lesion's long and short axis drawn on their slice, as OHIF v3 writes a Bidirectional measurement."""
    import highdicom as hd

    assert lesion.long_axis_ends_lps is not None and lesion.short_axis_ends_lps is not None
    image, long_xy = locate_on_slice(lesion.long_axis_ends_lps, sources)
    short_image, short_xy = locate_on_slice(lesion.short_axis_ends_lps, sources)
    if short_image.SOPInstanceUID != image.SOPInstanceUID:
        raise DicomExportError(f"lesion {lesion.lesion_id}: long and short axis lie on different slices")
    long_num = hd.sr.Measurement(name=_code(LONG_AXIS), value=float(lesion.long_axis_mm or 0.0),
                                 unit=codes.UCUM.Millimeter)
    short_num = hd.sr.Measurement(name=_code(SHORT_AXIS), value=float(lesion.short_axis_mm or 0.0),
                                  unit=codes.UCUM.Millimeter)
    long_num[0].ContentSequence = [_axis_scoord(image, long_xy)]
    short_num[0].ContentSequence = [_axis_scoord(image, short_xy)]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=tracking_uid_, identifier=OHIF_BIDIRECTIONAL),
        time_point_context=tp_context,
        finding_type=codes.SCT.Lesion,
        finding_sites=_finding_sites(lesion) or None,
        measurements=[long_num, short_num],
        qualitative_evaluations=coded or None,
    )
    # OHIF reads a measurement's label from the group's Comment (DCM 121106), as its own writer puts it.
    group[0].ContentSequence.extend([*texts, _text(("121106", "DCM", "Comment"), lesion.lesion_id)])
    return group


def _time_point_context(tp: TimePointInfo | None):  # -> hd.sr.TimePointContext | None
    """TID 1502 for ``tp``: the time point (the study date), its type and the subject's identifier of it.

    Its NUM items (Time Point Order, Longitudinal Temporal Offset from Event) are left out: OHIF takes a group's
    first NUM for the measurement that holds the drawing.
    """
    import highdicom as hd

    if tp is None:
        return None
    return hd.sr.TimePointContext(
        time_point=tp.date,
        time_point_type=_code(TIME_POINT_TYPES[tp.kind]) if tp.kind else None,
        subject_time_point_identifier=tp.date,
    )


def _context_group(tp: TimePointInfo, patient_id: str, tp_context, uid_key: bytes | None):
    """The course's treatment context and the visit's clinical fields, as one TID 1501 group."""
    import highdicom as hd

    coded = []
    texts = []
    measurements = []
    ctx = tp.context
    for key, concept in (("treatment_start", TREATMENT_START), ("radiotherapy_end", RADIOTHERAPY_END)):
        if ctx.get(key):
            texts.append(_text(concept, str(ctx[key])))
    if "immunotherapy" in ctx:
        coded.append(hd.sr.QualitativeEvaluation(name=_code(IMMUNOTHERAPY), value=_yes_no(bool(ctx["immunotherapy"]))))
    if tp.slice_thickness_mm is not None:
        measurements.append(hd.sr.Measurement(name=_code(SLICE_THICKNESS), value=float(tp.slice_thickness_mm),
                                              unit=codes.UCUM.Millimeter))
    if ctx.get("tumour"):
        coded.append(hd.sr.QualitativeEvaluation(name=_code(TUMOUR), value=_code((str(ctx["tumour"]), SCHEME,
                                                                                  str(ctx["tumour"])))))
    for key, concept in CLINICAL_TEXT.items():
        if tp.clinical.get(key):
            texts.append(_text(concept, str(tp.clinical[key])))
    for key, concept in CLINICAL.items():
        value = tp.clinical.get(key)
        if value is None:
            continue
        if key == "steroid_dose_mg":
            measurements.append(hd.sr.Measurement(name=_code(concept), value=float(value),
                                                  unit=hd.sr.CodedConcept("mg/d", "UCUM", "milligram per day")))
        elif isinstance(value, bool):
            coded.append(hd.sr.QualitativeEvaluation(name=_code(concept), value=_yes_no(value)))
        else:
            coded.append(hd.sr.QualitativeEvaluation(name=_code(concept), value=_code((str(value), SCHEME, str(value)))))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=uid_from("tumor-response:time-point-context", patient_id, tp.date, key=uid_key), identifier=CONTEXT_ID),
        time_point_context=tp_context,
        measurements=measurements or None,
        qualitative_evaluations=coded or None,
    )
    group[0].ContentSequence.extend(texts)
    return group


def _response_group(call: CriterionCall, patient_id: str, time_point, uid_key: bytes | None):
    import highdicom as hd

    evaluations = [hd.sr.QualitativeEvaluation(name=_code(RESPONSE_CONCEPT), value=response_code(call))]
    for flag in call.flags:
        evaluations.append(hd.sr.QualitativeEvaluation(name=_code(FLAG_CONCEPT), value=_code((flag, SCHEME, flag))))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=uid_from("tumor-response:assessment", patient_id, call.criterion, key=uid_key),
            identifier=f"{call.criterion} time-point response",
        ),
        time_point_context=time_point,
        method=_criterion_code(call.criterion),
        qualitative_evaluations=evaluations,
    )
    for item in group[0].ContentSequence:
        # TID 1501 modifies the group by its method (HAS CONCEPT MOD, as TID 1419 row 1); highdicom writes CONTAINS.
        if item.ConceptNameCodeSequence[0].CodeValue == "370129005":
            item.RelationshipType = "HAS CONCEPT MOD"
    if call.reason:
        # TID 1501 row 10 allows TEXT qualitative evaluations; highdicom only builds coded ones.
        group[0].ContentSequence.append(
            hd.sr.TextContentItem(name=_code(REASON_CONCEPT), value=call.reason,
                                  relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
        )
    return group


def write_sr(
    source_files: Sequence[str | os.PathLike[str]],
    out_path: str | os.PathLike[str],
    lesions: Sequence[LesionRecord],
    calls: Sequence[CriterionCall] = (),
    *,
    seg: pydicom.Dataset | None = None,
    segments: Sequence[SegmentInfo] = (),
    time_point: str | TimePointInfo | None = None,
    uid_key: bytes | None = None,
    software_version: str = "0",
) -> pydicom.Dataset:
    """Write a TID 1500 Measurement Report (Comprehensive 3D SR) for one patient and time point.

    Parameters
    ----------
    source_files
        The files of the image series the lesions were measured on (the report joins their study;
        the axes are drawn on its slices).
    out_path
        Where the SR goes (temporary file beside it, then renamed).
    lesions
        One record per lesion; lengths in mm, volume in mm3. ``status == "absent"``
        writes zeros and no region reference.
    calls
        Each assessed criterion's call at this time point.
    seg, segments
        The SEG written for this time point and its segments (:func:`write_seg`): a
        lesion whose id has a segment refers to it.
    time_point
        The time point (TID 1502 context and the course's context), or just its name (e.g. the study date).
    uid_key
        Key of the keyed hash behind the Tracking UIDs (as for the SEG).

    Raises
    ------
    DicomExportError
        Unreadable sources, an unknown criterion, a lesion without id, axes that lie on no slice.
    """
    import highdicom as hd

    sources = read_source_headers(source_files)
    first = sources[0]
    patient_id = str(first.get("PatientID", ""))
    by_lesion = {s.lesion_id: s for s in segments}
    tp = TimePointInfo(date=time_point) if isinstance(time_point, str) else time_point
    tp_context = _time_point_context(tp)

    groups: list = []  # TID 1501 and TID 1411 groups
    if tp is not None and (tp.context or tp.clinical or tp.slice_thickness_mm is not None):
        groups.append(_context_group(tp, patient_id, tp_context, uid_key))
    for lesion in lesions:
        if not lesion.lesion_id:
            raise DicomExportError(f"series {first.SeriesInstanceUID}: a lesion without id")
        uid = tracking_uid(patient_id, lesion.lesion_id, uid_key)
        tracking = hd.sr.TrackingIdentifier(uid=uid, identifier=lesion.lesion_id[:64])
        absent = lesion.status == "absent"
        coded, texts = _course_items(lesion)
        drawn = (not absent and lesion.long_axis_ends_lps is not None and lesion.short_axis_ends_lps is not None
                 and lesion.long_axis_mm is not None and lesion.short_axis_mm is not None)
        if drawn:
            groups.append(_bidirectional_group(lesion, uid, sources, tp_context, coded, texts))
            coded, texts = [], []  # stated once per lesion
        segment = by_lesion.get(lesion.lesion_id)
        measurements = _measurements(lesion, zero=absent, axes=not drawn)
        if absent or segment is None or seg is None:
            if drawn and not measurements:
                continue
            group = hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                time_point_context=tp_context,
                finding_type=codes.SCT.Lesion,
                finding_sites=_finding_sites(lesion) or None,
                measurements=measurements or None,
                qualitative_evaluations=coded or None,
            )
        else:
            group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                referenced_segment=hd.sr.ReferencedSegment(
                    sop_class_uid=seg.SOPClassUID,
                    sop_instance_uid=seg.SOPInstanceUID,
                    segment_number=segment.segment_number,
                    source_series=hd.sr.SourceSeriesForSegmentation(str(first.SeriesInstanceUID)),
                ),
                time_point_context=tp_context,
                finding_type=codes.SCT.Lesion,
                finding_sites=_finding_sites(lesion) or None,
                measurements=measurements or None,
                qualitative_evaluations=coded or None,
            )
        group[0].ContentSequence.extend(texts)
        groups.append(group)
    for call in calls:
        groups.append(_response_group(call, patient_id, tp_context, uid_key))

    modality = str(first.get("Modality", ""))
    procedure = {"CT": codes.LN.CTUnspecifiedBodyRegion, "MR": codes.LN.MRIUnspecifiedBodyRegion,
                 "PT": codes.LN.PETUnspecifiedBodyRegion}.get(modality, codes.SCT.ImagingProcedure)
    observer = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=uid_from("tumor-response:device"), name=MANUFACTURER, manufacturer_name=MANUFACTURER,
                model_name=MANUFACTURER,
            ),
        )
    )
    report = hd.sr.MeasurementReport(
        observation_context=observer,
        procedure_reported=procedure,
        imaging_measurements=groups,
    )
    content = ReportContent(lesions=tuple(lesions), calls=tuple(calls), time_point=tp,
                            extra={"series": str(first.SeriesInstanceUID),
                                   "seg": str(seg.SOPInstanceUID) if seg is not None else None,
                                   # a new software version may write other content: it gets another UID
                                   "software": software_version})
    evidence = list(sources) + ([seg] if seg is not None else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sr = hd.sr.Comprehensive3DSR(
            evidence=evidence,
            content=report,
            series_instance_uid=uid_from("tumor-response:sr-series", str(first.SeriesInstanceUID), key=uid_key),
            series_number=SR_SERIES_NUMBER,
            sop_instance_uid=uid_from("tumor-response:sr", content.digest(), key=uid_key),
            instance_number=1,
            manufacturer=MANUFACTURER,
            is_complete=True,
            series_description="Lesion measurements and response (tumor-response)",
        )
    sr.SoftwareVersions = software_version
    scheme = pydicom.Dataset()  # declares the private coding scheme (SOP Common, Coding Scheme Identification)
    scheme.CodingSchemeDesignator = SCHEME
    scheme.CodingSchemeName = "tumor-response responses, flags and criteria"
    scheme.CodingSchemeResponsibleOrganization = "tumor-response project (docs/pacs.md)"
    sr.CodingSchemeIdentificationSequence = [scheme]
    write_dataset_atomic(sr, Path(out_path))
    return sr
