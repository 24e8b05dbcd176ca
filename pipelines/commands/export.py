"""`tumor-response export RUN_DIR OUT_DIR [--dataset-root PATH] [--patient ID ...]`.

Writes a DICOM SEG and an SR Measurement Report per DICOM patient-time point of
an existing run (see docs/pacs.md). Exit code 2 when nothing can be exported
(no run, a NIfTI dataset), 1 when some time points failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def export_command(
    run_dir: Annotated[Path, typer.Argument(help="output folder of a run (holds provenance.json, lesions.csv)")],
    out_dir: Annotated[Path, typer.Argument(help="where <patient>/<date>/lesions-seg.dcm and measurements-sr.dcm go")],
    dataset_root: Annotated[
        Path | None, typer.Option("--dataset-root", help="the dataset's root, when it moved since the run")
    ] = None,
    patient: Annotated[
        list[str] | None, typer.Option("--patient", help="export only this patient (repeatable)")
    ] = None,
    key_env: Annotated[
        str | None, typer.Option("--key-env", help="environment variable with the privacy key of a pseudonymised run")
    ] = None,
) -> None:
    """Write DICOM SEG + SR (TID 1500) for every DICOM patient-time point of a run."""
    from pipelines.dicom.export import ExportError, export_run

    try:
        summary = export_run(run_dir, out_dir, dataset_root, patients=patient or None, key_env=key_env,
                             progress=lambda line: typer.echo(line, err=True))
    except ExportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for line in summary.skipped:
        typer.echo(f"skipped {line}", err=True)
    for line in summary.failed:
        typer.echo(f"failed {line}", err=True)
    typer.echo(f"{len(summary.written)} DICOM object(s) written under {out_dir}/, {len(summary.skipped)} time point(s) "
               f"skipped, {len(summary.failed)} failed")
    if summary.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to the console script."""
    app.command("export")(export_command)
