"""Turn measured time points and the lesions' tracking into a patient course (../shared/course-format.md)
and lesion rows.

Lesion identity comes from tracking (:mod:`pipelines.alignment`): each lesion has one id at every
scan, whatever its label value there. Lesions of the baseline scan are the candidates for targets
(the response engine applies measurability and target selection); a lesion first seen after the
baseline is a new lesion. Tracking outcomes enter the course with the contract's fields, so every
criterion applies its own rules to them (RECIST 1.1, Eisenhauer et al. 2009, Appendix I, "Lesions
that split or coalesce on treatment" and "Target lesions that become too small to measure"):

* a lesion that split: one entry per fragment with ``split_from`` (the engine sums them);
* lesions that coalesced: the coalesced lesion is measured once, under the lesion it was matched to,
  and the others are listed with ``coalesced_into`` (they count 0);
* a lesion that disappeared: 0 mm;
* a lesion present but measuring under ``too_small_mm`` (not a node): ``too_small_to_measure``
  (RECIST counts 5 mm).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from imaging.measurement import LesionMeasurement
from imaging.registration.tracking import TrackingResult
from imaging.segmentation import LesionMetadata
from pipelines.discover import ClinicalContext, Visit
from pipelines.stages import MeasuredTimepoint

#: RECIST 1.1 sec. 3.1: measurable if >= 10 mm, or >= 2x the slice thickness when slices are thicker than 5 mm.
MIN_MEASURABLE_MM = 10.0


@dataclass(frozen=True)
class FailedTimepoint:
    """A scan that exists but could not be measured: it enters the course as not evaluated."""

    patient_id: str
    study_date: dt.date
    reason: str


def baseline_position(dates: list[dt.date], treatment_start: dt.date | None) -> int:
    """Index of the baseline: the last scan on or before ``treatment_start`` (course-format.md), else the first."""
    if treatment_start is None:
        return 0
    before = [i for i, d in enumerate(dates) if d <= treatment_start]
    return before[-1] if before else 0


def _measurable(m: LesionMeasurement, nodal: bool, slice_thickness_mm: float) -> bool:
    if nodal:
        return m.short_axis_mm >= 15.0  # RECIST 1.1 sec. 3.1: nodes by short axis
    threshold = MIN_MEASURABLE_MM if slice_thickness_mm <= 5.0 else 2.0 * slice_thickness_mm
    return m.long_axis_mm >= threshold


def lesion_names(
    tracking: TrackingResult, baseline_date: dt.date, metadata: dict[int, LesionMetadata], default_organ: str
) -> dict[int, LesionMetadata]:
    """Metadata of each tracked lesion id.

    A baseline lesion's id is its baseline label value: the sidecar's entry for that value. A lesion
    first seen at another scan takes the sidecar's entry for its label value there when that value is
    not a baseline lesion's (the reader's labels), else ``L<id>``; names are made unique.
    """
    base = baseline_date.isoformat()
    out: dict[int, LesionMetadata] = {}
    used: set[str] = set()
    base_ids = {i for i, h in tracking.histories.items() if h[0].timepoint == base}
    for lid in sorted(tracking.histories, key=lambda i: (i not in base_ids, i)):
        first = tracking.histories[lid][0]
        label = lid if lid in base_ids else (first.labels[0] if first.labels else lid)
        if lid in base_ids or (label not in base_ids and label in metadata):
            li = metadata.get(label) or LesionMetadata(lesion_id=f"L{lid}", organ=default_organ)
        else:
            li = LesionMetadata(lesion_id=f"L{lid}", organ=default_organ)
        if li.lesion_id in used:
            li = li.model_copy(update={"lesion_id": f"{li.lesion_id}@{first.timepoint}"})
        used.add(li.lesion_id)
        out[lid] = li
    return out


def build_course(
    patient_id: str,
    timepoints: list[MeasuredTimepoint | FailedTimepoint],
    context: ClinicalContext | None,
    metadata: dict[int, LesionMetadata],
    tracking: TrackingResult,
    default_organ: str = "unknown",
    visits: list[Visit] | None = None,
    too_small_mm: float = 5.0,
    tracked_by: dict[dt.date, str] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
    """Course (as the contract's dict), one lesion row per lesion (or fragment) x time point, and a note
    on the baseline.

    ``tracking``: the patient's tracking, time points named by ISO date (scans that could not be
    measured are absent from it). ``tracked_by``: per scan, how it was related to the baseline
    ("registration", "scanner", "labels"), for the rows.

    Raises
    ------
    ValueError
        When the baseline scan itself could not be measured.
    """
    timepoints = sorted(timepoints, key=lambda t: t.study_date)
    dates = [t.study_date for t in timepoints]
    note = None
    if context is None or context.treatment_start is None:
        context = ClinicalContext(treatment_start=dates[0])
        note = "no treatment start in the clinical data: the first scan is the baseline"
    b = baseline_position(dates, context.treatment_start)
    baseline = timepoints[b]
    if isinstance(baseline, FailedTimepoint):
        raise ValueError(f"patient {patient_id}: the baseline scan ({baseline.study_date}) could not be measured: {baseline.reason}")
    base_name = baseline.study_date.isoformat()
    names = lesion_names(tracking, baseline.study_date, metadata, default_organ)
    baseline_ids = sorted(i for i, h in tracking.histories.items() if h[0].timepoint == base_name)
    tracked_by = tracked_by or {}

    def non_target_status(values: list[LesionMeasurement], nodal: bool) -> str:
        # RECIST 1.1 sec. 4.3.2: a non-target node is normal (absent) under 10 mm short axis.
        if not values:
            return "absent"
        return "absent" if nodal and max(m.short_axis_mm for m in values) < 10.0 else "present"

    def too_small(m: LesionMeasurement, nodal: bool) -> bool:
        return not nodal and 0 < m.long_axis_mm < too_small_mm

    def target_entry(name: str, li: LesionMetadata, m: LesionMeasurement | None, **extra: Any) -> dict[str, Any]:
        entry = {
            "lesion": name, "organ": li.organ, "nodal": li.nodal,
            "long_axis_mm": round(m.long_axis_mm, 3) if m else 0.0,
            "short_axis_mm": round(m.short_axis_mm, 3) if m else 0.0,
            "perpendicular_mm": round(m.perpendicular_mm, 3) if m else 0.0,
            "volume_mm3": round(m.volume_mm3, 3) if m else 0.0,
        }
        if m is not None and too_small(m, li.nodal):
            entry["too_small_to_measure"] = True
        entry.update(extra)
        return entry

    clinical_by_date = {v.date: v.clinical.model_dump(exclude_none=True) for v in visits or []}
    course_tps: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for i, tp in enumerate(timepoints):
        entry: dict[str, Any] = {"date": tp.study_date.isoformat(), "target": [], "non_target": [], "new_lesions": []}
        if clinical_by_date.get(tp.study_date):
            entry["clinical"] = clinical_by_date[tp.study_date]
        name = tp.study_date.isoformat()
        if isinstance(tp, FailedTimepoint) or name not in tracking.timepoints:
            for lid in baseline_ids:
                li = names[lid]
                if li.target is False:
                    entry["non_target"].append({"lesion": li.lesion_id, "organ": li.organ, "status": "not_evaluated"})
                    continue
                entry["target"].append({"lesion": li.lesion_id, "organ": li.organ, "nodal": li.nodal, "long_axis_mm": None,
                                        "short_axis_mm": None})
            course_tps.append(entry)
            continue
        entry["slice_thickness_mm"] = tp.slice_thickness_mm
        by_label = {m.label: m for m in tp.lesions}
        how = tracked_by.get(tp.study_date, "baseline" if i == b else "")

        def add_row(li: LesionMetadata, lesion_name: str, label: int | None, status: str, flags: list[str],
                    tp: MeasuredTimepoint = tp, how: str = how, by_label: dict = by_label) -> None:
            m = by_label.get(label) if label is not None else None
            row = _row(tp, li, label, m, status)
            row["lesion_id"] = lesion_name
            if m is not None and too_small(m, li.nodal) and status not in ("new", "pre-baseline only"):
                flags = [*flags, "too_small_to_measure"]
            row["tracking"] = ";".join(flags)
            row["tracked_by"] = how
            rows.append(row)

        # Baseline lesions (targets and non-targets).
        for lid in baseline_ids:
            li = names[lid]
            state = tracking.state(lid, name)
            if state is None:  # a scan before the baseline: the lesion is only recorded
                continue
            flags = [state.status] + (["reappeared"] if state.reappeared else [])
            measured = [by_label[v] for v in state.labels if v in by_label]
            if state.merged_into is not None:
                into = names[state.merged_into].lesion_id
                add_row(li, li.lesion_id, state.labels[0] if state.labels else None, "coalesced", [*flags, f"coalesced_into:{into}"])
                if i < b:
                    continue
                if li.target is False:
                    entry["non_target"].append({"lesion": li.lesion_id, "organ": li.organ, "status": "present"})
                elif state.merged_into in baseline_ids and names[state.merged_into].target is not False:
                    entry["target"].append(target_entry(li.lesion_id, li, None, coalesced_into=into))
                else:  # coalesced with a non-target or a new lesion: measured as one with it
                    entry["target"].append(target_entry(li.lesion_id, li, measured[0] if measured else None))
                continue
            if not measured:
                add_row(li, li.lesion_id, None, "absent", flags)
            elif len(measured) == 1:
                add_row(li, li.lesion_id, measured[0].label, "present", flags)
            else:
                for k, m in enumerate(measured, start=1):
                    add_row(li, f"{li.lesion_id}.{k}", m.label, "present", [*flags, f"fragment_of:{li.lesion_id}"])
            if i < b:
                continue
            if li.target is False:
                entry["non_target"].append({"lesion": li.lesion_id, "organ": li.organ,
                                            "status": non_target_status(measured, li.nodal)})
            elif len(measured) <= 1:
                entry["target"].append(target_entry(li.lesion_id, li, measured[0] if measured else None))
            else:
                for k, m in enumerate(measured, start=1):
                    entry["target"].append(target_entry(f"{li.lesion_id}.{k}", li, m, split_from=li.lesion_id))

        # Lesions first seen at another scan than the baseline.
        for lid in sorted(set(tracking.histories) - set(baseline_ids)):
            li = names[lid]
            state = tracking.state(lid, name)
            if state is None or state.status == "disappeared":
                if state is not None:
                    add_row(li, li.lesion_id, None, "absent", [state.status])
                continue
            flags = [state.status] + (["reappeared"] if state.reappeared else [])
            if state.merged_into is not None:
                add_row(li, li.lesion_id, state.labels[0] if state.labels else None, "coalesced",
                        [*flags, f"coalesced_into:{names[state.merged_into].lesion_id}"])
                continue
            status = "new" if i > b else "pre-baseline only"
            parts = [by_label[v] for v in state.labels if v in by_label]
            for k, m in enumerate(parts, start=1):
                lesion_name = li.lesion_id if len(parts) == 1 else f"{li.lesion_id}.{k}"
                add_row(li, lesion_name, m.label, status, flags if len(parts) == 1 else [*flags, f"fragment_of:{li.lesion_id}"])
                if i > b:
                    entry["new_lesions"].append(
                        {
                            "lesion": lesion_name,
                            "organ": li.organ,
                            "nodal": li.nodal,
                            "measurable": _measurable(m, li.nodal, tp.slice_thickness_mm),
                            "long_axis_mm": round(m.long_axis_mm, 3),
                            "short_axis_mm": round(m.short_axis_mm, 3),
                            "perpendicular_mm": round(m.perpendicular_mm, 3),
                        }
                    )
        course_tps.append(entry)

    course = {
        "patient_id": patient_id,
        "context": {
            "treatment_start": context.treatment_start.isoformat() if context.treatment_start else None,
            "radiotherapy_end": context.radiotherapy_end.isoformat() if context.radiotherapy_end else None,
            "immunotherapy": context.immunotherapy,
        },
        "timepoints": course_tps,
    }
    return course, rows, note


def _row(tp: MeasuredTimepoint, li: LesionMetadata, label: int | None, m: LesionMeasurement | None, status: str) -> dict[str, Any]:
    def pt(p: tuple[float, float, float]) -> str:
        return " ".join(f"{v:.2f}" for v in p)

    row: dict[str, Any] = {
        "patient_id": tp.patient_id,
        "date": tp.study_date.isoformat(),
        "study_uid": tp.study_uid,
        "series_uid": tp.series_uid,
        "lesion_id": li.lesion_id,
        "label": label,
        "organ": li.organ,
        "nodal": li.nodal,
        "status": status,
        "slice_thickness_mm": round(tp.slice_thickness_mm, 3),
    }
    if m is None:
        row.update({"n_voxels": 0, "volume_mm3": 0.0, "long_axis_mm": 0.0, "short_axis_mm": 0.0, "perpendicular_mm": 0.0,
                    "bidimensional_product_mm2": 0.0, "max_3d_diameter_mm": 0.0, "center_lps": "",
                    "long_axis_end0_lps": "", "long_axis_end1_lps": "", "long_axis_slice": None})
        return row
    row.update(
        {
            "n_voxels": m.n_voxels,
            "volume_mm3": round(m.volume_mm3, 2),
            "long_axis_mm": round(m.long_axis_mm, 2),
            "short_axis_mm": round(m.short_axis_mm, 2),
            "perpendicular_mm": round(m.perpendicular_mm, 2),
            "bidimensional_product_mm2": round(m.bidimensional_product_mm2, 2),
            "max_3d_diameter_mm": round(m.max_3d_diameter_mm, 2),
            "center_lps": pt(m.center_lps),
            "long_axis_end0_lps": pt(m.long_axis_ends_lps[0]),
            "long_axis_end1_lps": pt(m.long_axis_ends_lps[1]),
            "long_axis_slice": m.long_axis_slice,
        }
    )
    return row
