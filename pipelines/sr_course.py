"""A patient course from a folder of DICOM SR Measurement Reports (TID 1500), as viewers write them.

A lab that measures in OHIF or 3D Slicer saves, per study, a TID 1500 report
whose measurement groups carry a Tracking Identifier and lengths: a ``Length``
line, or ``Long axis`` + ``Short axis`` (bidirectional), optionally a
perpendicular and a volume. :func:`course_from_sr_folder` turns the reports of
one patient into the course dict of ``../shared/course-format.md``:

- one time point per study date (``StudyDate`` of the report);
- one lesion per Tracking Identifier (OHIF writes the tool's name there,
  e.g. ``Cornerstone3DTools@^0.1.0:Bidirectional``; the lesion's label is then
  taken from its free-text finding or comment, else its Tracking UID);
- the lesions measured at the baseline scan are the targets (the response engine
  selects among them); a baseline lesion missing from a later report is *not
  evaluated* there (``long_axis_mm: null``); a lesion first measured after the
  baseline is a new lesion;
- when a study has several reports (a viewer saves a new one each time), the
  most recent (ContentDate/Time) replaces the earlier ones.

The treatment context comes from the ``context`` argument, else a
``context.yaml``/``context.json`` file in the folder (``treatment_start``,
``radiotherapy_end``, ``immunotherapy``), else the first scan is the baseline.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import re
from collections import defaultdict
from collections.abc import Mapping
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
FINDING_SITE = {("SCT", "363698007"), ("SRT", "G-C0E3")}
COMMENT = ("DCM", "121106")

#: Measurement concepts -> course field. SNOMED CT codes, their legacy SNOMED-RT (SRT) forms that
#: older dcmjs/OHIF reports use, and the meanings as a last resort (some writers use local codes).
KINDS: dict[str, tuple[set[tuple[str, str]], set[str]]] = {
    "long_axis": ({("SCT", "103339001"), ("SRT", "G-A185")}, {"long axis"}),
    "short_axis": ({("SCT", "103340004"), ("SRT", "G-A186")}, {"short axis"}),
    "length": ({("SCT", "410668003"), ("SRT", "G-D7FE"), ("SCT", "81827009"), ("SRT", "M-02550")},
               {"length", "diameter"}),
    "perpendicular": ({("SCT", "131189007")}, {"perpendicular axis"}),
    "volume": ({("SCT", "118565006"), ("SRT", "G-D705")}, {"volume"}),
}

#: UCUM units -> factor to mm (lengths) or mm3 (volumes).
LENGTH_UNITS = {"mm": 1.0, "cm": 10.0, "m": 1000.0, "um": 1e-3}
VOLUME_UNITS = {"mm3": 1.0, "cm3": 1000.0, "ml": 1000.0, "mL": 1000.0, "l": 1e6, "L": 1e6, "um3": 1e-9}

#: OHIF/cornerstone put the tool's name, not the lesion, in the Tracking Identifier.
_TOOL_ID = re.compile(r"^[\w.-]+@[^:]*:\w+$")

#: Organ meanings (lower case) that mean a lymph node (RECIST 1.1 counts its short axis).
_NODAL = ("lymph node", "node")

#: RECIST 1.1 sec. 3.1: measurable if >= 10 mm; nodes if the short axis >= 15 mm.
MIN_MEASURABLE_MM = 10.0
MIN_MEASURABLE_NODE_MM = 15.0


@dataclass
class LesionReading:
    """One lesion's measurements in one report (mm, mm3)."""

    lesion: str
    organ: str | None = None
    nodal: bool = False
    long_axis_mm: float | None = None
    short_axis_mm: float | None = None
    perpendicular_mm: float | None = None
    volume_mm3: float | None = None


@dataclass
class ReportReading:
    """What one SR Measurement Report says."""

    path: Path
    patient_id: str
    study_uid: str
    study_date: dt.date
    content_datetime: str
    lesions: dict[str, LesionReading] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


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


def _numeric(item: Dataset, kind: str, where: str) -> float:
    seq = item.get("MeasuredValueSequence")
    if not seq:
        raise CourseError(f"{where}: {kind} has no value")
    mv = seq[0]
    value = float(mv.NumericValue)
    unit_seq = mv.get("MeasurementUnitsCodeSequence")
    unit = str(unit_seq[0].CodeValue) if unit_seq else ""
    table = VOLUME_UNITS if kind == "volume" else LENGTH_UNITS
    if unit not in table:
        raise CourseError(f"{where}: {kind} in unit {unit!r}; expected one of {', '.join(table)} (UCUM)")
    if not math.isfinite(value) or value < 0:
        raise CourseError(f"{where}: {kind} = {value} is not a length/volume")
    return value * table[unit]


def _date(value: Any) -> dt.date | None:
    text = str(value or "").strip()
    if len(text) >= 8 and text[:8].isdigit():
        try:
            return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
        except ValueError:
            return None
    return None


def _read_group(group: Dataset, where: str) -> tuple[str, LesionReading] | None:
    """The lesion a measurement group is about and its lengths; ``None`` for a group without any."""
    tracking_id = tracking_uid = label = None
    organ = None
    values: dict[str, float] = {}
    for item in group.get("ContentSequence", []):
        code = _code(item)
        if code is None:
            continue
        vt = item.get("ValueType", "")
        if code[:2] == TRACKING_ID and vt == "TEXT":
            tracking_id = str(item.TextValue).strip()
        elif code[:2] == TRACKING_UID and vt == "UIDREF":
            tracking_uid = str(item.UID)
        elif code[:2] in FINDING_SITE | {FINDING} and vt == "CODE":
            value = _code(item, "ConceptCodeSequence")
            if value is None:
                continue
            if value[1] == "CORNERSTONEFREETEXT":
                label = value[2]
            elif code[:2] in FINDING_SITE:
                organ = value[2].strip().lower()
        elif code[:2] == COMMENT and vt == "TEXT" and label is None:
            label = str(item.TextValue).strip() or None
        elif vt == "NUM":
            kind = _kind(code)
            if kind is None:
                continue
            if kind in values:
                raise CourseError(f"{where}: group {tracking_id or tracking_uid!r} has two {kind} measurements")
            values[kind] = _numeric(item, kind, f"{where}, group {tracking_id or tracking_uid!r}")
    if not values.keys() & {"long_axis", "short_axis", "length", "perpendicular"}:
        return None  # an area, a qualitative finding, a response: nothing a diameter-based course can use
    lesion: str | None
    if tracking_id and not _TOOL_ID.match(tracking_id):
        lesion = tracking_id
    else:
        lesion = label or tracking_uid or tracking_id
    if not lesion:
        raise CourseError(f"{where}: a measurement group without Tracking Identifier, label or Tracking UID")
    long_axis = values.get("long_axis", values.get("length"))
    nodal = organ is not None and any(n in organ for n in _NODAL)
    return lesion, LesionReading(
        lesion=lesion, organ=organ, nodal=nodal, long_axis_mm=long_axis, short_axis_mm=values.get("short_axis"),
        perpendicular_mm=values.get("perpendicular"), volume_mm3=values.get("volume"),
    )


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
            found = _read_group(group, str(p))
            if found is None:
                continue
            lesion, measured = found
            if lesion in reading.lesions:
                reading.lesions[lesion] = _merge(reading.lesions[lesion], measured, f"{p}, lesion {lesion!r}")
            else:
                reading.lesions[lesion] = measured
    return reading


def _merge(a: LesionReading, b: LesionReading, where: str) -> LesionReading:
    """Two groups about one lesion (e.g. a length and, separately, a volume): combine, refuse conflicts."""
    out = LesionReading(lesion=a.lesion, organ=a.organ or b.organ, nodal=a.nodal or b.nodal)
    for name in ("long_axis_mm", "short_axis_mm", "perpendicular_mm", "volume_mm3"):
        va, vb = getattr(a, name), getattr(b, name)
        if va is not None and vb is not None and not math.isclose(va, vb, rel_tol=1e-6):
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


def read_sr_folder(path: str | os.PathLike[str]) -> list[ReportReading]:
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
            continue  # images, context files, anything that is not DICOM: not reports
        reading = read_measurement_report(p, ds)
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


def course_from_sr_folder(
    path: str | os.PathLike[str], context: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The course (``../shared/course-format.md`` dict) that a folder of TID 1500 reports describes.

    Parameters
    ----------
    path
        Folder holding one patient's reports (any depth; other files are ignored).
    context
        ``treatment_start``, ``radiotherapy_end``, ``immunotherapy``; default: a
        ``context.yaml``/``.json`` in the folder, else the first scan as baseline.

    Returns
    -------
    dict
        Ready for :func:`imaging.response.course_from_dict`.

    Raises
    ------
    CourseError
        Naming the folder or report and what is wrong.
    """
    folder = Path(path)
    reports = read_sr_folder(folder)
    by_date: dict[dt.date, dict[str, LesionReading]] = defaultdict(dict)
    for r in reports:
        for lesion, reading in r.lesions.items():
            if lesion in by_date[r.study_date]:
                raise CourseError(f"lesion {lesion!r} is measured in two studies of {r.study_date} ({r.path})",
                                  source=str(folder))
            by_date[r.study_date][lesion] = reading
    dates = sorted({r.study_date for r in reports})
    ctx = dict(context) if context is not None else (_load_context(folder) or {})
    ctx.setdefault("treatment_start", dates[0].isoformat())
    ctx.setdefault("radiotherapy_end", None)
    ctx.setdefault("immunotherapy", False)
    for key in ("treatment_start", "radiotherapy_end"):
        if isinstance(ctx[key], dt.date):  # YAML reads dates as dates; the contract's dict holds ISO strings
            ctx[key] = ctx[key].isoformat()
    start_date = _iso(ctx["treatment_start"], folder)
    before = [i for i, d in enumerate(dates) if d <= start_date]
    b = before[-1] if before else 0
    baseline = by_date[dates[b]]
    targets = sorted(baseline)

    timepoints = []
    for i, when in enumerate(dates):
        measured = by_date[when]
        entry: dict[str, Any] = {"date": when.isoformat(), "target": [], "non_target": [], "new_lesions": []}
        for lesion in targets:
            ref = baseline[lesion]
            m = measured.get(lesion)
            entry["target"].append({
                "lesion": lesion, "organ": ref.organ or "unknown", "nodal": ref.nodal,
                "long_axis_mm": m.long_axis_mm if m else None,
                "short_axis_mm": m.short_axis_mm if m else None,
                "perpendicular_mm": m.perpendicular_mm if m else None,
                "volume_mm3": m.volume_mm3 if m else None,
            })
        if i > b:
            for lesion in sorted(set(measured) - set(targets)):
                m = measured[lesion]
                entry["new_lesions"].append({
                    "lesion": lesion, "organ": m.organ or "unknown", "nodal": m.nodal,
                    "measurable": _measurable(m),
                    "long_axis_mm": m.long_axis_mm, "short_axis_mm": m.short_axis_mm,
                    "perpendicular_mm": m.perpendicular_mm,
                })
        elif set(measured) - set(targets):
            log.info("%s: lesions %s measured before baseline only are not assessed", when,
                     ", ".join(sorted(set(measured) - set(targets))))
        timepoints.append(entry)
    return {"patient_id": reports[0].patient_id or folder.name, "context": ctx, "timepoints": timepoints}


def _measurable(m: LesionReading) -> bool:
    if m.nodal:
        return (m.short_axis_mm or 0.0) >= MIN_MEASURABLE_NODE_MM
    return (m.long_axis_mm or 0.0) >= MIN_MEASURABLE_MM


def _iso(value: Any, folder: Path) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise CourseError(f"context.treatment_start: expected YYYY-MM-DD, got {value!r}", source=str(folder)) from None
