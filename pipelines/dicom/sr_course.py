"""A patient course from a folder of DICOM SR Measurement Reports (TID 1500), as viewers write them.

A lab that measures in OHIF or 3D Slicer saves, per study, a TID 1500 report whose measurement
groups carry lengths (a ``Length`` line, or ``Long Axis`` + ``Short Axis``: bidirectional),
perhaps a perpendicular, an area or a volume. :func:`read_sr_course` turns the reports of one
patient into the course dict of ``../shared/course-format.md``:

- one time point per study date (``StudyDate``); when a study has several reports (a viewer
  saves a new one each time), the most recent (ContentDate/Time) replaces the earlier ones;
- **measurements are read by what they are**: the unit decides the quantity (a value in mm2 is
  an area and in ml a volume, whatever its concept says: OHIF v2 codes an ellipse's area with
  the concept of a length), the concept decides which length it is; the same quantity twice in
  one group (dcmqi writes a volume in mm3 and in cm3) is one measurement, converted and
  compared, refused only if the two disagree; lengths in pixels or without a unit are refused;
- **findings that are not lesions** (Finding type or category *Anatomical structure*, or a
  finding the caller excludes) are not target candidates; they are listed in the notes;
- **lesions are linked across time points** by Tracking Unique Identifier or by label where
  the reports give them (OHIF gives every annotation a UID of its own, so its UIDs never agree
  across studies); otherwise by position: each measurement's coordinates (SCOORD3D, or SCOORD on
  a referenced image found in the folder) are mapped into the baseline scan's frame (the shared
  frame of reference, or a rigid registration of the referenced series when the scans have
  frames of their own) and matched to the lesions known so far with the optimal assignment the
  pipeline's tracking uses (:func:`imaging.registration.assignment.assign_by_distance`). A
  measurement that cannot be linked makes its time point *not evaluated*, with the reason;
  it is never a new lesion because it could not be placed;
- the lesions of the baseline scan are the targets (the response engine selects among them);
  a baseline lesion missing from a later report is *not evaluated* there (``long_axis_mm:
  null``); a lesion first measured after the baseline is a new lesion. A name no earlier report
  uses, in a report that does not name every known lesion, is a new lesion only when it lies
  ``max_distance_mm`` or more from each known lesion the report leaves unnamed; beside one, or
  with no position to tell, it may be that lesion renamed, and the time point is *not evaluated*
  with the reason (never a progression that did not happen);
- **volume-only reports** (no length anywhere) give a course with volumes only:
  :attr:`SRCourse.volume_only`, for the volumetric criteria (RANO 2.0 / mRANO volumetric).

Reports written by tumor-response (``imaging.report.dicom_sr``) also state each lesion's role
and the time point's context (TID 1502, the treatment start, the visit's clinical fields):
the course is then rebuilt exactly as it was assessed.

The treatment context comes from the ``context`` argument, else a ``context.yaml``/``.json``
file in the folder (``treatment_start``, ``radiotherapy_end``, ``immunotherapy``), else the
reports' own (ours carry it), else the first scan is the baseline.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import yaml
from pydicom.dataset import Dataset

from imaging.response import CourseError

log = logging.getLogger("tumor_response.sr_course")

#: TID 1500 document title and its containers.
MEASUREMENT_REPORT = ("DCM", "126000")
IMAGING_MEASUREMENTS = ("DCM", "126010")
MEASUREMENT_GROUP = ("DCM", "125007")
TRACKING_ID = ("DCM", "112039")
TRACKING_UID = ("DCM", "112040")
FINDING = ("DCM", "121071")
FINDING_CATEGORY = {("SCT", "276214006"), ("SRT", "R-42018")}
FINDING_SITE = {("SCT", "363698007"), ("SRT", "G-C0E3")}
COMMENT = ("DCM", "121106")
TIME_POINT_TYPE = ("DCM", "126072")
#: Findings that are not lesions: SNOMED "Anatomical structure" (and its SNOMED-RT form).
ANATOMICAL_STRUCTURE = {("SCT", "91723000"), ("SRT", "T-D000A")}

#: Measurement concepts -> what they measure. SNOMED CT codes, their legacy SNOMED-RT (SRT) forms that
#: older dcmjs/OHIF reports use, and the meanings as a last resort (some writers use local codes).
KINDS: dict[str, tuple[set[tuple[str, str]], set[str]]] = {
    "long_axis": ({("SCT", "103339001"), ("SRT", "G-A185")}, {"long axis"}),
    "short_axis": ({("SCT", "103340004"), ("SRT", "G-A186")}, {"short axis"}),
    "length": ({("SCT", "410668003"), ("SRT", "G-D7FE"), ("SCT", "81827009"), ("SRT", "M-02550")},
               {"length", "diameter"}),
    "perpendicular": ({("SCT", "131189007")}, {"perpendicular axis"}),
    "volume": ({("SCT", "118565006"), ("SRT", "G-D705")}, {"volume"}),
    "area": ({("SCT", "42798000"), ("SRT", "G-A166")}, {"area"}),
}
_LENGTH_KINDS = ("long_axis", "short_axis", "length", "perpendicular")

#: UCUM units -> (quantity, factor to mm / mm2 / mm3). The unit decides the quantity.
UNITS: dict[str, tuple[str, float]] = {
    "mm": ("length", 1.0), "cm": ("length", 10.0), "m": ("length", 1000.0), "um": ("length", 1e-3),
    "mm2": ("area", 1.0), "cm2": ("area", 100.0), "m2": ("area", 1e6),
    "mm3": ("volume", 1.0), "cm3": ("volume", 1000.0), "ml": ("volume", 1000.0), "mL": ("volume", 1000.0),
    "l": ("volume", 1e6), "L": ("volume", 1e6), "um3": ("volume", 1e-9),
}
#: Units a length must never be read in: what they mean.
_UNUSABLE_UNITS = {"{pixels}": "pixels", "{pixel}": "pixels", "pixels": "pixels", "pixel": "pixels", "px": "pixels",
                   "1": "no unit (a dimensionless number)", "{ratio}": "a ratio", "": "no unit"}
#: The same quantity in two units agrees within this relative difference (viewers round what they write).
SAME_QUANTITY_REL_TOL = 0.01

#: OHIF/cornerstone put the tool's name, not the lesion, in the Tracking Identifier.
_TOOL_ID = re.compile(r"^[\w.-]+@[^:]*:[\w:]+$")

#: Organ meanings (lower case) that mean a lymph node (RECIST 1.1 counts its short axis).
_NODAL = ("lymph node", "node")

#: RECIST 1.1 sec. 3.1: measurable if >= 10 mm; nodes if the short axis >= 15 mm.
MIN_MEASURABLE_MM = 10.0
MIN_MEASURABLE_NODE_MM = 15.0
#: Lesions farther apart than this (mm, in the baseline's frame) are not the same lesion
#: (the pipeline's tracking default, ``tracking.max_distance_mm``).
MAX_LINK_DISTANCE_MM = 20.0

#: Our own reports' private concepts (imaging.report.dicom_sr; duplicated so that `assess` stays light).
_SCHEME = "99TUMORRESP"
_ROLE, _NT_STATUS, _NEW_STATUS, _MEASURABLE, _TOO_SMALL = "LESIONROLE", "NTSTATUS", "NEWSTATUS", "MEASURABLE", "TOOSMALL"
_SPLIT, _COALESCED = "SPLITFROM", "COALESCED"
_CONTEXT_ID = "time-point context"
_CLINICAL = {"STEROIDMG": "steroid_dose_mg", "CLINSTABLE": "clinically_stable", "T2FLAIR": "t2_flair",
             "OUTSIDERT": "outside_radiation_field", "HISTOLOGY": "histologic_confirmation", "ENHANCEMENT": "enhancement"}
_YES, _NO = ("SCT", "373066001"), ("SCT", "373067005")
_TIME_POINT_KINDS = {("UMLS", "C1442488"): "baseline", ("UMLS", "C3539075"): "pre_baseline",
                     ("DCM", "126074"): "follow_up"}


@dataclass
class Finding:
    """One finding (lesion or not) in one report: its names, measurements (mm, mm2, mm3) and where it was drawn."""

    key: str
    label: str | None = None
    tracking_uid: str | None = None
    organ: str | None = None
    nodal: bool = False
    finding_type: str | None = None
    not_lesion: str | None = None  # why it is not a lesion (Finding type/category), else None
    long_axis_mm: float | None = None
    short_axis_mm: float | None = None
    perpendicular_mm: float | None = None
    volume_mm3: float | None = None
    area_mm2: float | None = None
    points_lps: list[tuple[float, float, float]] = field(default_factory=list)
    frame_of_reference: str | None = None
    image_points: list[tuple[str, float, float]] = field(default_factory=list)  # (SOP Instance UID, column, row)
    role: str | None = None
    course: dict[str, Any] = field(default_factory=dict)
    time_point_kind: str | None = None  # TID 1502 Time Point Type of the group: baseline | pre_baseline | follow_up

    @property
    def has_length(self) -> bool:
        return any(v is not None for v in (self.long_axis_mm, self.short_axis_mm, self.perpendicular_mm))


@dataclass
class ReportReading:
    """What one SR Measurement Report says."""

    path: Path
    patient_id: str
    study_uid: str
    study_date: dt.date
    content_datetime: str
    lesions: dict[str, Finding] = field(default_factory=dict)
    others: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kind: str | None = None  # TID 1502 time point type: baseline | pre_baseline | follow_up
    context: dict[str, Any] = field(default_factory=dict)
    clinical: dict[str, Any] = field(default_factory=dict)
    slice_thickness_mm: float | None = None
    own: bool = False  # written by tumor-response (lesion roles stated)


@dataclass
class SRCourse:
    """A course read from SR reports, with what the reading left out or decided and why.

    ``timepoint_notes``: per ISO date, why that time point cannot be evaluated (unlinked
    measurements); ``assess`` adds it to the call's reason.
    """

    course: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    volume_only: bool = False
    timepoint_notes: dict[str, str] = field(default_factory=dict)


def _code(item: Dataset, attr: str = "ConceptNameCodeSequence") -> tuple[str, str, str] | None:
    seq = item.get(attr)
    if not seq:
        return None
    c = seq[0]
    value = c.get("CodeValue") or c.get("LongCodeValue") or c.get("URNCodeValue") or ""
    return str(c.get("CodingSchemeDesignator", "")), str(value), str(c.get("CodeMeaning", ""))


def _is(item: Dataset, key: tuple[str, str]) -> bool:
    code = _code(item)
    return code is not None and code[:2] == key


def _kind(code: tuple[str, str, str]) -> str | None:
    for kind, (codes_, _meanings) in KINDS.items():
        if code[:2] in codes_:
            return kind
    for kind, (_, meanings) in KINDS.items():
        if code[2].strip().lower() in meanings:
            return kind
    return None


def _numeric(item: Dataset, concept: tuple[str, str, str], where: str) -> tuple[str, float, str] | None:
    """(quantity, value in mm / mm2 / mm3, unit as written) of a NUM item; None if it holds no value.

    The unit decides the quantity; a concept of a length in an area or volume unit is that area
    or volume. Lengths in pixels or without a unit are refused.
    """
    seq = item.get("MeasuredValueSequence")
    if not seq:
        return None  # TID 300 allows a NUM without a value (with a qualifier saying why)
    mv = seq[0]
    unit_seq = mv.get("MeasurementUnitsCodeSequence")
    unit = str(unit_seq[0].get("CodeValue", "")) if unit_seq else ""
    unit_meaning = str(unit_seq[0].get("CodeMeaning", "")) if unit_seq else ""
    try:
        value = float(mv.NumericValue)
    except (TypeError, ValueError, AttributeError):
        raise CourseError(f"{where}: {concept[2]!r} has no numeric value") from None
    if unit in _UNUSABLE_UNITS or unit not in UNITS:
        meaning = _UNUSABLE_UNITS.get(unit)
        if meaning is not None:
            raise CourseError(f"{where}: {concept[2]!r} = {value} in unit {unit!r}, which means {meaning}"
                              f"{f' ({unit_meaning})' if unit_meaning else ''}: a length must be in mm or cm "
                              "(calibrated pixel spacing); re-measure on calibrated images")
        raise CourseError(f"{where}: {concept[2]!r} in unit {unit!r} ({unit_meaning or 'unknown'}); expected a UCUM "
                          f"length, area or volume unit ({', '.join(UNITS)})")
    quantity, factor = UNITS[unit]
    if not math.isfinite(value) or value < 0:
        raise CourseError(f"{where}: {concept[2]!r} = {value} {unit} is not a {quantity}")
    return quantity, value * factor, unit


def _date(value: Any) -> dt.date | None:
    text = str(value or "").strip()
    if len(text) >= 8 and text[:8].isdigit():
        try:
            return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
        except ValueError:
            return None
    return None


def _scoords(item: Dataset) -> Iterable[Dataset]:
    """SCOORD / SCOORD3D items under a NUM (INFERRED FROM) or in the group itself."""
    for child in item.get("ContentSequence", []):
        if child.get("ValueType") in ("SCOORD", "SCOORD3D"):
            yield child


def _add_coordinates(finding: Finding, scoord: Dataset) -> None:
    data = [float(v) for v in scoord.get("GraphicData", [])]
    if scoord.ValueType == "SCOORD3D":
        finding.frame_of_reference = str(scoord.get("ReferencedFrameOfReferenceUID", "")) or None
        finding.points_lps += [(data[i], data[i + 1], data[i + 2]) for i in range(0, len(data) - 2, 3)]
        return
    for child in scoord.get("ContentSequence", []):
        if child.get("ValueType") == "IMAGE" and child.get("ReferencedSOPSequence"):
            sop = str(child.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
            finding.image_points += [(sop, data[i], data[i + 1]) for i in range(0, len(data) - 1, 2)]
            return


class _Quantities:
    """The values of one finding, by kind; the same kind twice is one value if the two agree."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.values: dict[str, tuple[float, str]] = {}

    def add(self, kind: str, value: float, written: str) -> None:
        if kind in self.values:
            old, old_written = self.values[kind]
            if not math.isclose(old, value, rel_tol=SAME_QUANTITY_REL_TOL, abs_tol=1e-9):
                raise CourseError(f"{self.where}: two different {kind.replace('_', ' ')} values, {old_written} and "
                                  f"{written} (they differ by more than {SAME_QUANTITY_REL_TOL:.0%})")
            return
        self.values[kind] = (value, written)


def _read_group(group: Dataset, where: str, notes: list[str]) -> Finding | dict | None:
    """One measurement group: a finding, our own time-point context (a dict), or None (no measurement, a response)."""
    tracking_id = tracking_uid = label = None
    organ = finding_type = category = None
    role: str | None = None
    course: dict[str, Any] = {}
    context: dict[str, Any] = {}
    coded_ctx: dict[str, Any] = {}
    kind_of_tp: str | None = None
    q = _Quantities(where)
    found = Finding(key="")
    for item in group.get("ContentSequence", []):
        code = _code(item)
        vt = item.get("ValueType", "")
        if code is None:
            continue
        if code[:2] == TRACKING_ID and vt == "TEXT":
            tracking_id = str(item.TextValue).strip()
        elif code[:2] == TRACKING_UID and vt == "UIDREF":
            tracking_uid = str(item.UID)
        elif code[:2] == TIME_POINT_TYPE and vt == "CODE":
            value = _code(item, "ConceptCodeSequence")
            kind_of_tp = _TIME_POINT_KINDS.get(value[:2]) if value else None
        elif vt == "CODE" and code[:2] in FINDING_SITE | {FINDING} | FINDING_CATEGORY:
            value = _code(item, "ConceptCodeSequence")
            if value is None:
                continue
            if value[1] == "CORNERSTONEFREETEXT":
                label = label or value[2]
            elif code[:2] in FINDING_SITE:
                organ = value[2].strip().lower()
            elif code[:2] == FINDING:
                finding_type = value
            else:
                category = value
        elif code[:2] == COMMENT and vt == "TEXT":
            label = str(item.TextValue).strip() or label
        elif code[0] == _SCHEME and vt == "CODE":
            value = _code(item, "ConceptCodeSequence")
            if value is None:
                continue
            yes = value[:2] == _YES
            if code[1] == _ROLE:
                role = value[1]
            elif code[1] == _NT_STATUS:
                course["status"] = value[1]
            elif code[1] == _NEW_STATUS:
                course["status"] = value[1]
            elif code[1] == _MEASURABLE:
                course["measurable"] = yes
            elif code[1] == _TOO_SMALL:
                course["too_small_to_measure"] = yes
            elif code[1] == "IMMUNOTHERAPY":
                context["immunotherapy"] = yes
            elif code[1] == "TUMOUR":
                context["tumour"] = value[1]
            elif code[1] == "COMPONENT":
                course["component"] = value[1]
            elif code[1] in _CLINICAL:
                coded_ctx[_CLINICAL[code[1]]] = yes if value[:2] in (_YES, _NO) else value[1]
        elif code[0] == _SCHEME and vt == "TEXT":
            text = str(item.TextValue)
            if code[1] == _SPLIT:
                course["split_from"] = text
            elif code[1] == _COALESCED:
                course["coalesced_into"] = text
            elif code[1] == "TREATSTART":
                context["treatment_start"] = text
            elif code[1] == "RTEND":
                context["radiotherapy_end"] = text
            elif code[1] == "T2FLAIRSRC":
                coded_ctx["t2_flair_source"] = text
        elif vt == "NUM":
            if code[0] == _SCHEME and code[1] == "STEROIDMG":
                mv = item.get("MeasuredValueSequence")
                if mv:
                    coded_ctx["steroid_dose_mg"] = float(mv[0].NumericValue)
                continue
            if code[:2] == ("DCM", "112225"):  # slice thickness, in our time-point context group
                mv = item.get("MeasuredValueSequence")
                if mv:
                    context["slice_thickness_mm"] = float(mv[0].NumericValue)
                continue
            kind = _kind(code)
            if kind is None:
                continue
            read = _numeric(item, code, f"{where}, group {tracking_id or tracking_uid!r}")
            if read is None:
                continue
            quantity, value, unit = read
            if quantity == "length":
                if kind in ("volume", "area"):
                    raise CourseError(f"{where}, group {tracking_id or tracking_uid!r}: {code[2]!r} in {unit}, a "
                                      f"length unit: a {kind} cannot be in {unit}")
                q.add(kind, value, f"{value:g} mm" if unit == "mm" else f"{value / UNITS[unit][1]:g} {unit}")
            else:
                if kind in _LENGTH_KINDS:
                    notes.append(f"{where}: {code[2]!r} of {tracking_id or tracking_uid or 'a group'} is in {unit}, "
                                 f"an {quantity}: read as the {quantity}, not as a length")
                q.add(quantity, value, f"{value / UNITS[unit][1]:g} {unit}")
            for scoord in _scoords(item):
                _add_coordinates(found, scoord)
        elif vt in ("SCOORD", "SCOORD3D"):
            _add_coordinates(found, item)
    if tracking_id == _CONTEXT_ID and (context or coded_ctx):
        return {"context": context, "clinical": coded_ctx, "kind": kind_of_tp}
    values = {k: v for k, (v, _) in q.values.items()}
    if not values and role is None:
        return None  # a qualitative finding, a response: nothing a course can use (our non-targets have a role)
    name: str | None
    if tracking_id and not _TOOL_ID.match(tracking_id):
        name = tracking_id
    else:
        name = label
    key = tracking_uid or name or tracking_id
    if not key:
        raise CourseError(f"{where}: a measurement group without Tracking Identifier, label or Tracking UID")
    found.key = key
    found.label = name
    found.tracking_uid = tracking_uid
    found.organ = organ
    found.nodal = organ is not None and any(n in organ for n in _NODAL)
    found.finding_type = finding_type[2] if finding_type else None
    for what, value in (("Finding category", category), ("Finding", finding_type)):
        if value is not None and (value[:2] in ANATOMICAL_STRUCTURE or value[2].strip().lower() == "anatomical structure"):
            found.not_lesion = f"{what} is {value[2]!r}"
    found.long_axis_mm = values.get("long_axis", values.get("length"))
    found.short_axis_mm = values.get("short_axis")
    found.perpendicular_mm = values.get("perpendicular")
    found.volume_mm3 = values.get("volume")
    found.area_mm2 = values.get("area")
    found.role = role
    found.course = course
    found.time_point_kind = kind_of_tp
    return found


def read_measurement_report(path: str | os.PathLike[str], ds: Dataset | None = None) -> ReportReading | None:
    """Read one TID 1500 report; ``None`` when the file is not an SR Measurement Report.

    Raises
    ------
    CourseError
        A report without a usable StudyDate, or with measurements that cannot be read.
    """
    p = Path(path)
    if ds is None:
        try:
            ds = pydicom.dcmread(p)
        except (OSError, pydicom.errors.InvalidDicomError):
            return None
    if ds.get("Modality") != "SR" or not _is(ds, MEASUREMENT_REPORT):
        return None
    when = _date(ds.get("StudyDate"))
    if when is None:
        raise CourseError(f"{p}: the report has no valid StudyDate ({ds.get('StudyDate')!r})")
    reading = ReportReading(
        path=p, patient_id=str(ds.get("PatientID", "")), study_uid=str(ds.get("StudyInstanceUID", "")),
        study_date=when, content_datetime=f"{ds.get('ContentDate', '')}{ds.get('ContentTime', '')}",
    )
    for container in ds.get("ContentSequence", []):
        if not _is(container, IMAGING_MEASUREMENTS):
            continue
        for group in container.get("ContentSequence", []):
            if not _is(group, MEASUREMENT_GROUP):
                continue
            found = _read_group(group, str(p), reading.notes)
            if found is None:
                continue
            if isinstance(found, dict):
                reading.context.update({k: v for k, v in found["context"].items() if k != "slice_thickness_mm"})
                reading.slice_thickness_mm = found["context"].get("slice_thickness_mm")
                reading.clinical.update(found["clinical"])
                reading.kind = reading.kind or found["kind"]
                continue
            reading.kind = reading.kind or found.time_point_kind
            if found.not_lesion:
                reading.others.append(found)
                continue
            if found.key in reading.lesions:
                reading.lesions[found.key] = _merge(reading.lesions[found.key], found, f"{p}, lesion {found.key!r}")
            else:
                reading.lesions[found.key] = found
    reading.own = bool(reading.lesions) and all(f.role for f in reading.lesions.values())
    return reading


def _merge(a: Finding, b: Finding, where: str) -> Finding:
    """Two groups about one lesion (a bidirectional line and a volume): combine, refuse conflicts."""
    out = Finding(key=a.key, label=a.label or b.label, tracking_uid=a.tracking_uid or b.tracking_uid,
                  organ=a.organ or b.organ, nodal=a.nodal or b.nodal, finding_type=a.finding_type or b.finding_type,
                  points_lps=a.points_lps + b.points_lps, frame_of_reference=a.frame_of_reference or b.frame_of_reference,
                  image_points=a.image_points + b.image_points, role=a.role or b.role, course={**b.course, **a.course})
    for name in ("long_axis_mm", "short_axis_mm", "perpendicular_mm", "volume_mm3", "area_mm2"):
        va, vb = getattr(a, name), getattr(b, name)
        if va is not None and vb is not None and not math.isclose(va, vb, rel_tol=SAME_QUANTITY_REL_TOL):
            raise CourseError(f"{where}: two different {name} ({va} and {vb}) in one report")
        setattr(out, name, va if va is not None else vb)
    return out


def _load_context(folder: Path) -> dict[str, Any] | None:
    for name in ("context.yaml", "context.yml", "context.json"):
        p = folder / name
        if p.is_file():
            try:
                data = json.loads(p.read_text()) if p.suffix == ".json" else yaml.safe_load(p.read_text())
            except (OSError, json.JSONDecodeError, yaml.YAMLError) as exc:
                raise CourseError(f"unreadable context ({exc})", source=str(p)) from None
            if not isinstance(data, dict):
                raise CourseError("a context file must be a mapping (treatment_start, radiotherapy_end, immunotherapy)",
                                  source=str(p))
            return data
    return None


@dataclass
class _Images:
    """Image headers found beside the reports: SCOORD -> LPS, and the series to register."""

    planes: dict[str, tuple[Any, Any, Any, str, str]] = field(default_factory=dict)  # sop -> (ipp, iop, spacing, FoR, series)
    files: dict[str, list[Path]] = field(default_factory=lambda: defaultdict(list))  # series -> files

    def add(self, path: Path, ds: Dataset) -> None:
        if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds or "PixelSpacing" not in ds:
            return
        series = str(ds.get("SeriesInstanceUID", ""))
        self.planes[str(ds.SOPInstanceUID)] = (
            [float(v) for v in ds.ImagePositionPatient], [float(v) for v in ds.ImageOrientationPatient],
            [float(v) for v in ds.PixelSpacing], str(ds.get("FrameOfReferenceUID", "")), series)
        self.files[series].append(path)

    def to_lps(self, finding: Finding) -> bool:
        """Fill ``finding.points_lps`` from its image points; False when a referenced image is not at hand."""
        import numpy as np

        if finding.points_lps or not finding.image_points:
            return bool(finding.points_lps)
        for sop, col, row in finding.image_points:
            plane = self.planes.get(sop)
            if plane is None:
                return False
            ipp, iop, spacing, frame, _ = plane
            # DICOM image coordinates: (0, 0) is the top left corner of the top left pixel (PS3.3 C.18.6.1.1).
            p = (np.asarray(ipp) + np.asarray(iop[:3]) * (col - 0.5) * spacing[1]
                 + np.asarray(iop[3:]) * (row - 0.5) * spacing[0])
            finding.points_lps.append(tuple(float(v) for v in p))
            finding.frame_of_reference = frame or None
        return True

    def series_of(self, finding: Finding) -> str | None:
        for sop, _, _ in finding.image_points:
            if sop in self.planes:
                return self.planes[sop][4]
        return None


def read_sr_folder(path: str | os.PathLike[str], images: _Images | None = None) -> list[ReportReading]:
    """Every SR Measurement Report under ``path`` (any depth), one per study (the latest revision).

    Raises
    ------
    CourseError
        No report, reports of several patients, an unreadable report.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise CourseError("not a folder", source=str(folder))
    readings: list[ReportReading] = []
    for p in sorted(x for x in folder.rglob("*") if x.is_file() and not x.name.startswith(".")):
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        except (OSError, pydicom.errors.InvalidDicomError):
            continue  # context files, anything that is not DICOM: not reports
        if ds.get("Modality") != "SR":
            if images is not None:
                images.add(p, ds)
            continue
        reading = read_measurement_report(p, ds)  # an SR has no pixel data: the header read holds its content
        if reading is not None:
            readings.append(reading)
    if not readings:
        raise CourseError("no DICOM SR Measurement Report (TID 1500) found", source=str(folder))
    patients = sorted({r.patient_id for r in readings})
    if len(patients) > 1:
        raise CourseError(f"reports of {len(patients)} patients ({', '.join(patients)}); one course is one patient",
                          source=str(folder))
    latest: dict[str, ReportReading] = {}
    for r in readings:
        key = r.study_uid or str(r.path)
        if key not in latest or r.content_datetime > latest[key].content_datetime:
            if key in latest:
                log.info("%s supersedes %s (same study, newer content)", r.path, latest[key].path)
            latest[key] = r
    return sorted(latest.values(), key=lambda r: (r.study_date, r.content_datetime))


def course_from_sr_folder(path: str | os.PathLike[str], context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The course dict (``../shared/course-format.md``) of a folder of TID 1500 reports (see :func:`read_sr_course`)."""
    return read_sr_course(path, context).course


def read_sr_course(
    path: str | os.PathLike[str],
    context: Mapping[str, Any] | None = None,
    *,
    exclude_findings: Sequence[str] = (),
    max_distance_mm: float = MAX_LINK_DISTANCE_MM,
) -> SRCourse:
    """The course that a folder of TID 1500 reports describes, with the notes of its reading.

    Parameters
    ----------
    path
        Folder holding one patient's reports (any depth); images beside them (the series the
        reports reference) let measurements be placed and linked by position.
    context
        ``treatment_start``, ``radiotherapy_end``, ``immunotherapy``; default: a
        ``context.yaml``/``.json`` in the folder, else the reports' own, else the first scan as baseline.
    exclude_findings
        Findings that are not assessed (matched, case-insensitively, against a finding's type,
        label or site), besides anatomical structures.
    max_distance_mm
        Measurements farther apart than this in the baseline's frame are different lesions.

    Raises
    ------
    CourseError
        Naming the folder or report and what is wrong.
    """
    folder = Path(path)
    images = _Images()
    reports = read_sr_folder(folder, images)
    notes: list[str] = []
    for r in reports:
        notes += r.notes
        for other in r.others:
            notes.append(f"{r.study_date}: {other.label or other.finding_type or other.key} is not a lesion "
                         f"({other.not_lesion}): not assessed")
    excluded = {e.strip().lower() for e in exclude_findings if e.strip()}
    if excluded:
        for r in reports:
            for key, f in list(r.lesions.items()):
                names = {x.strip().lower() for x in (f.finding_type, f.label, f.organ) if x}
                if names & excluded:
                    del r.lesions[key]
                    notes.append(f"{r.study_date}: {f.label or f.finding_type or key} excluded ({', '.join(names & excluded)})")
    dates = [r.study_date for r in reports]
    if len(set(dates)) != len(dates):
        twice = sorted(d for d, n in Counter(dates).items() if n > 1)
        raise CourseError(f"several studies on {', '.join(map(str, twice))}: one report per scan date is one time point",
                          source=str(folder))

    ctx = dict(context) if context is not None else (_load_context(folder) or {})
    own_ctx = next((r.context for r in reports if r.context), {})
    for key in ("treatment_start", "radiotherapy_end", "immunotherapy", "tumour"):
        if key not in ctx and key in own_ctx:
            ctx[key] = own_ctx[key]
    ctx.setdefault("treatment_start", dates[0].isoformat())
    ctx.setdefault("radiotherapy_end", None)
    ctx.setdefault("immunotherapy", False)
    for key in ("treatment_start", "radiotherapy_end"):
        if isinstance(ctx[key], dt.date):  # YAML reads dates as dates; the contract's dict holds ISO strings
            ctx[key] = ctx[key].isoformat()
    start_date = _iso(ctx["treatment_start"], folder)
    before = [i for i, d in enumerate(dates) if d <= start_date]
    b = before[-1] if before else 0

    patient = reports[0].patient_id or folder.name
    if all(r.own for r in reports if r.lesions):
        timepoints = [_own_timepoint(r) for r in reports]
        return SRCourse({"patient_id": patient, "context": ctx, "timepoints": timepoints}, notes)

    volume_only = any(f.volume_mm3 is not None for r in reports for f in r.lesions.values()) and not any(
        f.has_length for r in reports for f in r.lesions.values())
    linked, tp_notes = _link(reports, b, images, max_distance_mm, notes)
    timepoints = []
    targets = list(linked[b])
    for i, r in enumerate(reports):
        measured = linked[i]
        entry: dict[str, Any] = {"date": r.study_date.isoformat(), "target": [], "non_target": [], "new_lesions": []}
        unlinkable = r.study_date.isoformat() in tp_notes
        for lesion in targets:
            ref = linked[b][lesion]
            m = None if unlinkable else measured.get(lesion)
            entry["target"].append({
                "lesion": lesion, "organ": ref.organ or "unknown", "nodal": ref.nodal,
                "long_axis_mm": m.long_axis_mm if m else None,
                "short_axis_mm": m.short_axis_mm if m else None,
                "perpendicular_mm": m.perpendicular_mm if m else None,
                "volume_mm3": m.volume_mm3 if m else None,
            })
        if i > b and not unlinkable:
            for lesion in [x for x in measured if x not in targets]:
                m = measured[lesion]
                entry["new_lesions"].append({
                    "lesion": lesion, "organ": m.organ or "unknown", "nodal": m.nodal,
                    "measurable": _measurable(m),
                    "long_axis_mm": m.long_axis_mm, "short_axis_mm": m.short_axis_mm,
                    "perpendicular_mm": m.perpendicular_mm,
                })
        elif i < b and set(measured) - set(targets):
            log.info("%s: lesions %s measured before baseline only are not assessed", r.study_date,
                     ", ".join(sorted(set(measured) - set(targets))))
        timepoints.append(entry)
    return SRCourse({"patient_id": patient, "context": ctx, "timepoints": timepoints}, notes, volume_only, tp_notes)


def _own_timepoint(r: ReportReading) -> dict[str, Any]:
    """A time point of a report tumor-response wrote: the course entry it states, lesion by lesion."""
    entry: dict[str, Any] = {"date": r.study_date.isoformat(), "target": [], "non_target": [], "new_lesions": []}
    for f in r.lesions.values():
        name = f.label or f.key
        base = {"lesion": name, "organ": f.organ or "unknown"}
        if f.role == "target":
            entry["target"].append({
                **base, "nodal": f.nodal, "long_axis_mm": f.long_axis_mm, "short_axis_mm": f.short_axis_mm,
                "perpendicular_mm": f.perpendicular_mm, "volume_mm3": f.volume_mm3,
                **{k: f.course[k] for k in ("too_small_to_measure", "split_from", "coalesced_into", "component")
                   if k in f.course}})
        elif f.role == "non_target":
            entry["non_target"].append({**base, "status": f.course.get("status", "present")})
        elif f.role == "new":
            entry["new_lesions"].append({
                **base, "nodal": f.nodal, "measurable": bool(f.course.get("measurable")),
                "long_axis_mm": f.long_axis_mm, "short_axis_mm": f.short_axis_mm,
                "perpendicular_mm": f.perpendicular_mm,
                **({"status": f.course["status"]} if f.course.get("status") else {})})
    if r.clinical:
        entry["clinical"] = dict(r.clinical)
    if r.slice_thickness_mm is not None:
        entry["slice_thickness_mm"] = r.slice_thickness_mm
    return entry


def _link(reports: list[ReportReading], b: int, images: _Images, max_distance_mm: float,
          notes: list[str]) -> tuple[list[dict[str, Finding]], dict[str, str]]:
    """Each report's findings under the course's lesion names, linked across time points.

    By label or Tracking UID where they agree; otherwise by position in the baseline's frame
    (optimal assignment). Returns, per report, name -> finding, and the time points that cannot
    be evaluated because a measurement could not be linked (ISO date -> reason).
    """
    linked: list[dict[str, Finding]] = [{} for _ in reports]
    tp_notes: dict[str, str] = {}
    known: dict[str, Finding] = {}  # name -> latest appearance
    known_uids: dict[str, str] = {}
    positions: dict[str, tuple[float, float, float]] = {}  # name -> latest centre, baseline frame
    counter = {"L": 0, "N": 0}

    def fresh(prefix: str, f: Finding) -> str:
        if f.label and f.label not in known:
            return f.label
        counter[prefix] += 1
        while f"{prefix}{counter[prefix]}" in known:
            counter[prefix] += 1
        return f"{prefix}{counter[prefix]}"

    mapper = _FrameMapper(reports[b], images)
    order = [b] + [i for i in range(len(reports)) if i != b]
    for i in order:
        r = reports[i]
        when = r.study_date.isoformat()
        found = list(r.lesions.values())
        if i == b:
            for f in found:
                name = fresh("L", f)
                linked[i][name] = f
                known[name] = f
                if f.tracking_uid:
                    known_uids[f.tracking_uid] = name
            for name, f in linked[i].items():
                centre = mapper.centre(f, r)
                if isinstance(centre, tuple):
                    positions[name] = centre
            continue
        rest = []
        named: list[Finding] = []  # under a name no earlier report uses
        for f in found:
            name = None
            if f.label and f.label in known and f.label not in linked[i]:
                name = f.label
            elif f.tracking_uid and f.tracking_uid in known_uids and known_uids[f.tracking_uid] not in linked[i]:
                name = known_uids[f.tracking_uid]
            if name is None and f.label and f.label not in linked[i] and all(g.label != f.label for g in named):
                named.append(f)
                continue
            if name is None:
                rest.append(f)
            else:
                linked[i][name] = f
        open_names = [n for n in known if n not in linked[i]]
        doubts = []
        for f in named:
            doubt = _renamed(f, r, open_names, positions, mapper, max_distance_mm)
            if doubt is None:
                linked[i][f.label] = f  # type: ignore[index]  # a name the reader gave that no earlier scan has
                continue
            doubts.append(doubt)
            linked[i][f"?{f.key}"] = f
        if doubts:
            tp_notes[when] = "not evaluated: " + "; ".join(doubts)
            notes.append(f"{when}: {tp_notes[when]}")
        if rest:
            centres = [mapper.centre(f, r) for f in rest]
            unplaced = [(f, c) for f, c in zip(rest, centres) if not isinstance(c, tuple)]
            known_unplaced = [n for n in open_names if n not in positions]
            if unplaced or (known_unplaced and i > b):
                why = unplaced[0][1] if unplaced else (f"lesion {known_unplaced[0]} has no position to compare with")
                what = ", ".join(f.label or f"an unlabelled {f.finding_type or 'measurement'}" for f, _ in unplaced) \
                    or ", ".join(f.label or "an unlabelled measurement" for f in rest)
                unlinked = (f"not evaluated: {what} could not be linked to the lesions of the other scans "
                            f"(no matching label or Tracking UID, and no position: {why}); label the "
                            "measurements with the lesion names, or put the referenced images beside the reports")
                notes.append(f"{when}: {unlinked}")
                tp_notes[when] = f"{tp_notes[when]}; {unlinked.removeprefix('not evaluated: ')}" if when in tp_notes \
                    else unlinked
                for f in rest:
                    linked[i][f"?{f.key}"] = f
                continue
            from imaging.registration.assignment import assign_by_distance

            candidates = [n for n in open_names if n in positions]
            pairs = assign_by_distance([positions[n] for n in candidates], [c for c in centres], max_distance_mm)
            taken = set()
            for ref_index, obs_index, distance in pairs:
                name = candidates[ref_index]
                linked[i][name] = rest[obs_index]
                taken.add(obs_index)
                notes.append(f"{when}: {rest[obs_index].label or 'an unlabelled measurement'} linked to {name} by "
                             f"position ({distance:.1f} mm apart in the baseline's frame)")
            for j, f in enumerate(rest):
                if j in taken:
                    continue
                name = fresh("N", f)
                linked[i][name] = f
                notes.append(f"{when}: {f.label or 'an unlabelled measurement'} is {max_distance_mm:g} mm or more from "
                             f"every known lesion: a new lesion, {name}")
        for name, f in linked[i].items():
            if name.startswith("?"):
                continue
            known[name] = f
            if f.tracking_uid:
                known_uids[f.tracking_uid] = name
            centre = mapper.centre(f, r)
            if isinstance(centre, tuple):
                positions[name] = centre
    return linked, tp_notes


def _renamed(f: Finding, r: ReportReading, open_names: list[str], positions: dict[str, tuple[float, float, float]],
             mapper: _FrameMapper, max_distance_mm: float) -> str | None:
    """Why a finding under a name no earlier report uses may be a known lesion renamed (None: it is a new lesion).

    A new name is a new lesion when every known lesion is measured under its own name in this report, or when the
    finding lies ``max_distance_mm`` or more from each known lesion this report does not measure. Next to one, or
    with no position to tell, it may be that lesion renamed: read as new, it would be a progression that did not
    happen, read as the old one a new lesion could be missed; so the time point is not evaluated, with the way out.
    """
    if not open_names:
        return None
    label = f.label
    centre = mapper.centre(f, r)
    missing = ", ".join(open_names[:3]) + (" ..." if len(open_names) > 3 else "")
    if not isinstance(centre, tuple) or any(n not in positions for n in open_names):
        why = centre if not isinstance(centre, tuple) else "a lesion it could be has no position to compare with"
        return (f"{label!r}, a name no earlier report uses, may be {missing} renamed (this report does not measure "
                f"{'it' if len(open_names) == 1 else 'them'} under the earlier name) and there is no position to tell "
                f"({why}); name the measurement as before if it is that lesion, or measure {missing} too if it is new")
    distance, nearest = min((math.dist(centre, positions[n]), n) for n in open_names)
    if distance >= max_distance_mm:
        return None
    return (f"{label!r}, a name no earlier report uses, lies {distance:.1f} mm from {nearest}, which this report does "
            f"not measure under that name: the same lesion renamed, or a new one beside it? Name the measurement "
            f"{nearest!r} if it is that lesion; if it is new, measure {nearest} in this report too")


class _FrameMapper:
    """Maps a finding's points into the baseline scan's frame of reference."""

    def __init__(self, baseline: ReportReading, images: _Images) -> None:
        self.images = images
        self.baseline = baseline
        self.frames: dict[str, Any] = {}  # report path -> transform (follow-up point -> baseline point) or reason
        for finding in baseline.lesions.values():  # the baseline's frame of reference, from its placed findings
            images.to_lps(finding)

    def _frame(self, r: ReportReading) -> str | None:
        for f in r.lesions.values():
            if f.frame_of_reference:
                return f.frame_of_reference
        return None

    def _series(self, r: ReportReading) -> str | None:
        for f in r.lesions.values():
            s = self.images.series_of(f)
            if s:
                return s
        return None

    def centre(self, f: Finding, r: ReportReading) -> tuple[float, float, float] | str:
        """The finding's centre in the baseline's frame, or why it cannot be placed."""
        if not self.images.to_lps(f):
            if f.image_points:
                return "the image it was drawn on is not beside the reports"
            return "the measurement has no image coordinates"
        n = len(f.points_lps)
        centre = tuple(sum(p[k] for p in f.points_lps) / n for k in range(3))
        if r is self.baseline:
            return centre  # type: ignore[return-value]
        base_frame, frame = self._frame(self.baseline), f.frame_of_reference
        if base_frame and frame and base_frame == frame:
            return centre  # type: ignore[return-value]
        mapping = self._transform(r)
        if isinstance(mapping, str):
            return mapping
        return tuple(float(v) for v in mapping.TransformPoint(centre))

    def _transform(self, r: ReportReading):  # -> sitk.Transform | str
        key = str(r.path)
        if key not in self.frames:
            self.frames[key] = self._register(r)
        return self.frames[key]

    def _register(self, r: ReportReading):  # -> sitk.Transform | str
        fixed_uid, moving_uid = self._series(self.baseline), self._series(r)
        if not fixed_uid or not moving_uid:
            return ("the scans have different frames of reference and their images are not beside the reports, "
                    "so they cannot be registered")
        from imaging.io import ImagingError, load_series
        from imaging.registration import RegistrationError, register
        from imaging.registration.propagation import invert_transform

        try:
            fixed = load_series([str(p) for p in self.images.files[fixed_uid]])
            moving = load_series([str(p) for p in self.images.files[moving_uid]])
            result = register(fixed, moving)
        except (ImagingError, RegistrationError, RuntimeError) as exc:
            return f"registering the scan of {r.study_date} to the baseline failed ({exc})"
        if not result.ok:
            return f"registering the scan of {r.study_date} to the baseline was {result.status}: {'; '.join(result.problems)}"
        log.info("%s registered to the baseline for linking by position", r.study_date)
        return invert_transform(result.transform, fixed)


def _measurable(m: Finding) -> bool:
    if m.nodal:
        return (m.short_axis_mm or 0.0) >= MIN_MEASURABLE_NODE_MM
    return (m.long_axis_mm or 0.0) >= MIN_MEASURABLE_MM


def _iso(value: Any, folder: Path) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise CourseError(f"context.treatment_start: expected YYYY-MM-DD, got {value!r}", source=str(folder)) from None
