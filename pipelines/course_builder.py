"""Turn measured time points into a patient course (../shared/course-format.md) and lesion rows.

Lesion identity comes from the label value (a label map's values are stable
lesion ids); lesions present at the baseline scan are the candidates for
targets (the response engine applies measurability and target selection),
a label first seen after baseline is a new lesion.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from imaging.measurement import LesionMeasurement
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


def build_course(
    patient_id: str,
    timepoints: list[MeasuredTimepoint | FailedTimepoint],
    context: ClinicalContext | None,
    metadata: dict[int, LesionMetadata],
    default_organ: str = "unknown",
    visits: list[Visit] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
    """Course (as the contract's dict), one lesion row per lesion x time point, and a note on the baseline.

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
    baseline_labels = sorted(m.label for m in baseline.lesions)

    def info(label: int) -> LesionMetadata:
        return metadata.get(label) or LesionMetadata(lesion_id=f"L{label}", organ=default_organ)

    def non_target_status(m: LesionMeasurement | None, nodal: bool) -> str:
        # RECIST 1.1 sec. 4.3.2: a non-target node is normal (absent) under 10 mm short axis.
        if m is None:
            return "absent"
        return "absent" if nodal and m.short_axis_mm < 10.0 else "present"

    clinical_by_date = {v.date: v.clinical.model_dump(exclude_none=True) for v in visits or []}
    course_tps: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for i, tp in enumerate(timepoints):
        entry: dict[str, Any] = {"date": tp.study_date.isoformat(), "target": [], "non_target": [], "new_lesions": []}
        if clinical_by_date.get(tp.study_date):
            entry["clinical"] = clinical_by_date[tp.study_date]
        if isinstance(tp, FailedTimepoint):
            for label in baseline_labels:
                li = info(label)
                if li.target is False:
                    entry["non_target"].append({"lesion": li.lesion_id, "organ": li.organ, "status": "not_evaluated"})
                    continue
                entry["target"].append({"lesion": li.lesion_id, "organ": li.organ, "nodal": li.nodal, "long_axis_mm": None,
                                        "short_axis_mm": None})
            course_tps.append(entry)
            continue
        entry["slice_thickness_mm"] = tp.slice_thickness_mm
        by_label = {m.label: m for m in tp.lesions}
        for label in baseline_labels:
            li = info(label)
            m = by_label.get(label)
            rows.append(_row(tp, li, label, m, "present" if m else "absent"))
            if li.target is False:
                entry["non_target"].append({"lesion": li.lesion_id, "organ": li.organ,
                                            "status": non_target_status(m, li.nodal)})
                continue
            entry["target"].append(
                {
                    "lesion": li.lesion_id,
                    "organ": li.organ,
                    "nodal": li.nodal,
                    "long_axis_mm": round(m.long_axis_mm, 3) if m else 0.0,
                    "short_axis_mm": round(m.short_axis_mm, 3) if m else 0.0,
                    "perpendicular_mm": round(m.perpendicular_mm, 3) if m else 0.0,
                    "volume_mm3": round(m.volume_mm3, 3) if m else 0.0,
                }
            )
        for m in tp.lesions:
            if m.label in baseline_labels:
                continue
            li = info(m.label)
            if i > b:
                entry["new_lesions"].append(
                    {
                        "lesion": li.lesion_id,
                        "organ": li.organ,
                        "nodal": li.nodal,
                        "measurable": _measurable(m, li.nodal, tp.slice_thickness_mm),
                        "long_axis_mm": round(m.long_axis_mm, 3),
                        "short_axis_mm": round(m.short_axis_mm, 3),
                        "perpendicular_mm": round(m.perpendicular_mm, 3),
                    }
                )
                rows.append(_row(tp, li, m.label, m, "new"))
            else:
                # Seen before baseline but not at it: recorded, not assessed.
                rows.append(_row(tp, li, m.label, m, "pre-baseline only"))
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


def _row(tp: MeasuredTimepoint, li: LesionMetadata, label: int, m: LesionMeasurement | None, status: str) -> dict[str, Any]:
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
                    "long_axis_end0_lps": "", "long_axis_end1_lps": "", "long_axis_slice": ""})
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
