"""`run`: discover -> load -> measure -> course -> assess -> outputs, one patient at a time.

One failing time point or patient is recorded with its reason and the run goes on.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from imaging.report import timeline_table
from imaging.response import CourseError, assess, course_from_dict
from pipelines.config import RunConfig
from pipelines.course_builder import FailedTimepoint, build_course
from pipelines.discover import discover, load_clinical, load_lesion_metadata
from pipelines.outputs import safe_name, write_csv_atomic, write_json_atomic
from pipelines.stages import MeasuredTimepoint, StageError, measure_timepoint

log = logging.getLogger(__name__)

LESION_COLUMNS = (
    "patient_id", "date", "lesion_id", "label", "organ", "nodal", "status", "n_voxels", "volume_mm3",
    "long_axis_mm", "short_axis_mm", "perpendicular_mm", "bidimensional_product_mm2", "max_3d_diameter_mm",
    "center_lps", "long_axis_end0_lps", "long_axis_end1_lps", "long_axis_slice", "slice_thickness_mm",
    "study_uid", "series_uid",
)
RESPONSE_COLUMNS = (
    "patient_id", "date", "criterion", "response", "flags", "reason", "sum_mm", "sum_products_mm2",
    "sum_volume_mm3", "change_from_baseline_pct", "change_from_nadir_pct", "days_since_baseline",
)
BEST_COLUMNS = ("patient_id", "criterion", "response", "date", "reason")
FAILURE_COLUMNS = ("patient_id", "date", "stage", "reason")


@dataclass
class RunSummary:
    output_dir: Path
    n_patients: int = 0
    n_timepoints: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    lesion_rows: list[dict[str, Any]] = field(default_factory=list)
    response_rows: list[dict[str, Any]] = field(default_factory=list)
    best_rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _fmt(value: Any, ndigits: int = 2) -> Any:
    return round(value, ndigits) if isinstance(value, float) else value


def run_pipeline(config: RunConfig, console: Console | None = None) -> RunSummary:
    """Run ``config`` end to end and write its outputs under ``config.output_dir``."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    out = config.output_dir
    summary = RunSummary(output_dir=out)
    found = discover(config.dataset)
    summary.notes.extend(found.problems)
    if found.skipped_files:
        summary.notes.append(f"{len(found.skipped_files)} file(s) under the dataset root are not image DICOM and were skipped")
    clinical = load_clinical(config.dataset.clinical)

    for patient_id, sources in found.patients.items():
        summary.n_patients += 1
        console.log(f"patient {patient_id}: {len(sources)} scan(s)")
        measured: list[MeasuredTimepoint | FailedTimepoint] = []
        for tp in sources:
            summary.n_timepoints += 1
            try:
                measured.append(measure_timepoint(tp, config.lesions))
            except StageError as exc:
                reason = str(exc)
                summary.failures.append({"patient_id": patient_id, "date": tp.study_date.isoformat(), "stage": "measure", "reason": reason})
                console.log(f"[red]failed[/red] {reason}")
                measured.append(FailedTimepoint(patient_id, tp.study_date, reason))
        try:
            meta_path = (
                config.dataset.root / config.dataset.lesion_metadata.format(patient_id=patient_id, study_date="")
                if config.dataset.lesion_metadata else None
            )
            metadata = load_lesion_metadata(meta_path)
            course_dict, rows, note = build_course(
                patient_id, measured, clinical.get(patient_id), metadata, config.lesions.default_organ
            )
            summary.lesion_rows.extend(rows)
            if note:
                summary.notes.append(f"patient {patient_id}: {note}")
            write_json_atomic(out / "courses" / f"{safe_name(patient_id)}.json", course_dict)
            course = course_from_dict(course_dict, source=f"patient {patient_id} (built from measurements)")
            for criterion in config.criteria:
                assessment = assess(course, criterion)
                for t in assessment.timepoints:
                    summary.response_rows.append(
                        {
                            "patient_id": patient_id,
                            "date": t.date.isoformat(),
                            "criterion": criterion,
                            "response": t.response,
                            "flags": ";".join(t.flags),
                            "reason": t.reason,
                            "sum_mm": _fmt(t.sum_mm),
                            "sum_products_mm2": _fmt(getattr(t, "sum_products_mm2", None)),
                            "sum_volume_mm3": _fmt(getattr(t, "sum_volume_mm3", None)),
                            "change_from_baseline_pct": _fmt(t.change_from_baseline_pct, 1),
                            "change_from_nadir_pct": _fmt(t.change_from_nadir_pct, 1),
                            "days_since_baseline": t.days_since_baseline,
                        }
                    )
                bor = assessment.best_overall_response
                summary.best_rows.append(
                    {
                        "patient_id": patient_id,
                        "criterion": criterion,
                        "response": bor.response,
                        "date": bor.date.isoformat() if isinstance(bor.date, dt.date) else bor.date,
                        "reason": bor.reason,
                    }
                )
        except (ValueError, CourseError) as exc:
            summary.failures.append({"patient_id": patient_id, "date": "", "stage": "assess", "reason": str(exc)})
            console.log(f"[red]failed[/red] patient {patient_id}: {exc}")

    write_csv_atomic(out / "lesions.csv", summary.lesion_rows, LESION_COLUMNS)
    write_csv_atomic(out / "responses.csv", summary.response_rows, RESPONSE_COLUMNS)
    write_csv_atomic(out / "best_overall_response.csv", summary.best_rows, BEST_COLUMNS)
    write_csv_atomic(out / "failures.csv", summary.failures, FAILURE_COLUMNS)
    summary.seconds = time.perf_counter() - started
    write_json_atomic(
        out / "summary.json",
        {
            "name": config.name,
            "patients": summary.n_patients,
            "timepoints": summary.n_timepoints,
            "failed": len(summary.failures),
            "notes": summary.notes,
            "criteria": list(config.criteria),
            "seconds": round(summary.seconds, 2),
        },
    )
    return summary


def print_summary(summary: RunSummary, config: RunConfig, console: Console) -> None:
    """The per-patient, per-time-point table of each criterion, then what failed and where the files are."""
    for criterion in config.criteria:
        console.print(timeline_table(summary.response_rows, criterion))
    for note in summary.notes:
        console.print(f"[yellow]note[/yellow] {note}")
    if summary.failures:
        console.print(f"[red]{len(summary.failures)} failure(s)[/red]:")
        for f in summary.failures:
            console.print(f"  {f['patient_id']} {f['date']} [{f['stage']}] {f['reason']}")
    console.print(
        f"{summary.n_patients} patient(s), {summary.n_timepoints} time point(s), {len(summary.failures)} failed, "
        f"{summary.seconds:.1f} s. Results in {summary.output_dir}/ (lesions.csv, responses.csv, "
        "best_overall_response.csv, failures.csv, summary.json, courses/)"
    )
