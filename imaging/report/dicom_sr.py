"""Lesion measurements and time-point responses as a DICOM SR Measurement Report (TID 1500).

One report per patient and time point, in the study of the source series.
Per lesion a measurement group with its Tracking Identifier (the stable lesion
id) and Tracking Unique Identifier (the same UID at every time point, see
:func:`imaging.report.dicom_seg.tracking_uid`), the long axis, short axis,
perpendicular (mm) and volume (mm3), and the SEG segment it was measured on. A lesion that has
disappeared gets a group with zero measurements and no region.

Each assessed criterion's call at this time point is one more group (TID 1501)
whose method is the criterion, with the response and every flag as
qualitative evaluations and the reason as text. Responses, flags and criteria
other than RECIST 1.1 have no standard code: they use the private coding
scheme :data:`SCHEME` (documented in ``docs/pacs.md``).
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
}

#: Concept names of the response group's items.
RESPONSE_CONCEPT = ("TPRESPONSE", SCHEME, "Time-point response")
FLAG_CONCEPT = ("RESPFLAG", SCHEME, "Response flag")
REASON_CONCEPT = ("RESPREASON", SCHEME, "Reason for response")
#: TID 1500 has no concept for a RECIST perpendicular; SNOMED's "Perpendicular axis" is the closest.
PERPENDICULAR = ("131189007", "SCT", "Perpendicular axis")


@dataclass(frozen=True)
class LesionRecord:
    """What the report states about one lesion at this time point (mm, mm3)."""

    lesion_id: str
    status: str = "present"  # present | absent | new (as in lesions.csv)
    long_axis_mm: float | None = None
    short_axis_mm: float | None = None
    perpendicular_mm: float | None = None
    volume_mm3: float | None = None
    organ: str = ""
    nodal: bool = False


@dataclass(frozen=True)
class CriterionCall:
    """One criterion's call at this time point (a row of responses.csv)."""

    criterion: str
    response: str | None
    flags: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class ReportContent:
    """Everything one report holds besides the references; its digest makes the SOP Instance UID."""

    lesions: tuple[LesionRecord, ...]
    calls: tuple[CriterionCall, ...] = ()
    time_point: str | None = None
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


def _measurements(lesion: LesionRecord, zero: bool) -> list:
    import highdicom as hd

    cubic_mm = hd.sr.CodedConcept("mm3", "UCUM", "cubic millimeter")
    out = []
    items = (
        (codes.SCT.LongAxis, lesion.long_axis_mm, codes.UCUM.Millimeter),
        (codes.SCT.ShortAxis, lesion.short_axis_mm, codes.UCUM.Millimeter),
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
    time_point: str | None = None,
    uid_key: bytes | None = None,
    software_version: str = "0",
) -> pydicom.Dataset:
    """Write a TID 1500 Measurement Report (Comprehensive 3D SR) for one patient and time point.

    Parameters
    ----------
    source_files
        The files of the image series the lesions were measured on (the report joins their study).
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
        The time point's name in the report's Time Point Context (e.g. the study date).
    uid_key
        Key of the keyed hash behind the Tracking UIDs (as for the SEG).

    Raises
    ------
    DicomExportError
        Unreadable sources, an unknown criterion, a lesion without id.
    """
    import highdicom as hd

    sources = read_source_headers(source_files)
    first = sources[0]
    patient_id = str(first.get("PatientID", ""))
    by_lesion = {s.lesion_id: s for s in segments}
    tp_context = hd.sr.TimePointContext(time_point=time_point) if time_point else None

    groups: list = []  # TID 1411 and TID 1501 groups
    for lesion in lesions:
        if not lesion.lesion_id:
            raise DicomExportError(f"series {first.SeriesInstanceUID}: a lesion without id")
        tracking = hd.sr.TrackingIdentifier(uid=tracking_uid(patient_id, lesion.lesion_id, uid_key),
                                            identifier=lesion.lesion_id[:64])
        absent = lesion.status == "absent"
        segment = by_lesion.get(lesion.lesion_id)
        if absent or segment is None or seg is None:
            groups.append(
                hd.sr.MeasurementsAndQualitativeEvaluations(
                    tracking_identifier=tracking,
                    time_point_context=tp_context,
                    finding_type=codes.SCT.Lesion,
                    finding_sites=_finding_sites(lesion) or None,
                    measurements=_measurements(lesion, zero=absent),
                )
            )
            continue
        groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
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
                measurements=_measurements(lesion, zero=False),
            )
        )
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
    content = ReportContent(lesions=tuple(lesions), calls=tuple(calls), time_point=time_point,
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
