"""`tumor-response assess COURSE --criteria recist[,irecist...] [--json]`.

Reads a patient course (YAML or JSON, ../shared/course-format.md), assesses it by
each criterion and prints a table per criterion, or the contract's JSON.
Course errors go to stderr, naming the time point and field, with exit code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

# The option's help lists CRITERIA, so `assess --help` imports imaging.response (pure Python + pydantic) too;
# it imports no imaging library (tests/pipelines/test_import_boundaries.py).
from imaging.response import CRITERIA, Assessment, CourseError, assess, check_criterion, course_from_dict, load_course

if TYPE_CHECKING:
    from rich.table import Table


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:+.1f}%"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def assessment_table(assessment: Assessment) -> Table:
    """One row per time point: date, days, call, flags, sums, % changes and reason."""
    from rich.table import Table

    table = Table(title=f"{assessment.patient_id or 'course'}: {assessment.criterion}", show_lines=True)
    columns = (("date", "left"), ("days", "right"), ("response", "left"), ("flags", "left"), ("sum", "right"),
               ("vs baseline", "right"), ("vs nadir", "right"), ("reason", "left"))
    for name, justify in columns:
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for row in assessment.timepoints:
        if row.sum_volume_mm3 is not None:
            burden = f"{_num(row.sum_volume_mm3)} mm3"
        elif row.sum_products_mm2 is not None:
            burden = f"{_num(row.sum_products_mm2)} mm2"
        elif row.sum_mm is not None:
            burden = f"{_num(row.sum_mm)} mm"
        else:
            burden = ""
        if row.response is not None:
            call = row.response
        else:
            call = "pre-baseline" if "pre_baseline" in row.flags else "baseline"
        table.add_row(
            row.date.isoformat(), str(row.days_since_baseline), call, ", ".join(row.flags), burden,
            _pct(row.change_from_baseline_pct), _pct(row.change_from_nadir_pct), row.reason,
        )
    bor = assessment.best_overall_response
    table.caption = f"Best overall response: {bor.response} ({bor.reason})"
    return table


#: Criteria that read volumes (with --volumetric).
VOLUMETRIC = ("rano2", "mrano")


def assess_command(
    course: Annotated[Path, typer.Argument(
        help="patient course file (YAML or JSON, see docs/response.md), or a folder of DICOM SR Measurement Reports")],
    criteria: Annotated[
        str, typer.Option("--criteria", "-c", help=f"comma-separated criteria: {', '.join(CRITERIA)}")
    ] = "recist",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON (an object, or a list for several criteria)")] = False,
    volumetric: Annotated[bool, typer.Option(
        "--volumetric", help="RANO 2.0 / mRANO by volumes (PR >= 65% decrease, PD >= 40% increase)")] = False,
    exclude_finding: Annotated[list[str] | None, typer.Option(
        "--exclude-finding", help="SR folder: a finding (type, label or site) that is not assessed; repeatable")] = None,
) -> None:
    """Assess a patient course by one or more response criteria."""
    from imaging.response import AssessmentOptions

    notes: list[str] = []
    timepoint_notes: dict[str, str] = {}
    try:
        names = [check_criterion(name) for name in criteria.split(",") if name.strip()]
        if not names:
            raise CourseError(f"no criterion given; valid: {', '.join(CRITERIA)}", field="--criteria")
        if volumetric and not set(names) & set(VOLUMETRIC):
            raise CourseError(f"--volumetric applies to {' and '.join(VOLUMETRIC)}; none of them was asked",
                              field="--criteria")
        if course.is_dir():
            # A folder of DICOM SR Measurement Reports (TID 1500) as viewers write them.
            from pipelines.dicom.sr_course import read_sr_course

            read = read_sr_course(course, exclude_findings=exclude_finding or ())
            notes, timepoint_notes = read.notes, read.timepoint_notes
            if read.volume_only:
                by_diameter = [n for n in names if not (volumetric and n in VOLUMETRIC)]
                if by_diameter:
                    raise CourseError(
                        f"the reports hold volumes only (no length in any of them); {', '.join(by_diameter)} "
                        f"assess diameters. Use a criterion that reads volumes: --criteria "
                        f"{' or '.join(VOLUMETRIC)} --volumetric", source=str(course))
            loaded = course_from_dict(read.course, source=str(course))
        elif exclude_finding:
            raise CourseError("--exclude-finding applies to a folder of SR reports", field="--exclude-finding")
        else:
            loaded = load_course(course)
        options = AssessmentOptions(rano2_volumetric=volumetric, mrano_volumetric=volumetric)
        assessments = [_with_notes(assess(loaded, name, options), timepoint_notes) for name in names]
    except CourseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    if as_json:
        payload = [a.to_dict() for a in assessments]
        typer.echo(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
        return
    from rich.console import Console

    console = Console()
    for assessment in assessments:
        console.print(assessment_table(assessment))


def _with_notes(assessment: Assessment, timepoint_notes: dict[str, str]) -> Assessment:
    """The assessment with the reading's reason added where a time point could not be evaluated."""
    if not timepoint_notes:
        return assessment
    import dataclasses

    rows = tuple(dataclasses.replace(row, reason=f"{row.reason}; {timepoint_notes[row.date.isoformat()]}")
                 if row.date.isoformat() in timepoint_notes else row for row in assessment.timepoints)
    return dataclasses.replace(assessment, timepoints=rows)


def register(app: typer.Typer) -> None:
    """Add the ``assess`` command to the console script."""
    app.command("assess")(assess_command)
