"""`tumor-response convert SERIES_OR_FILE OUT.nii.gz`.

Loads a volume (a DICOM folder, one file of a series, an enhanced
multi-frame file, a NIfTI or NRRD file) and writes it as NIfTI (or any format
SimpleITK writes, by the output's extension). Prints the geometry and the
problems found; exit code 1 when the input cannot be loaded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer


def convert_command(
    source: Annotated[Path, typer.Argument(help="DICOM folder or file, enhanced multi-frame file, NIfTI or NRRD")],
    output: Annotated[Path, typer.Argument(help="output volume: .nii.gz, .nii (or .nrrd, .mha)")],
    volume: Annotated[
        str | None, typer.Option("--volume", help="DICOM: which volume when there are several (id or its '#' suffix)")
    ] = None,
    volume_index: Annotated[int | None, typer.Option("--volume-index", help="4-D NIfTI: which volume (0-based)")] = None,
    tilt: Annotated[str, typer.Option("--tilt", help="gantry tilt policy: resample or refuse")] = "resample",
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Convert a scan to NIfTI (LPS inside, RAS in the file, as NIfTI requires)."""
    import SimpleITK as sitk

    from imaging.io import ImagingError, load_volume, save_nifti

    if tilt not in ("resample", "refuse"):
        typer.echo(f"error: --tilt must be 'resample' or 'refuse', not {tilt!r}", err=True)
        raise typer.Exit(2)
    try:
        loaded = load_volume(source, volume=volume, volume_index=volume_index, tilt=tilt)  # type: ignore[arg-type]
    except ImagingError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        if output.name.endswith((".nii", ".nii.gz")):
            save_nifti(loaded.image, output)
        else:
            output.parent.mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(loaded.image, str(output), useCompression=True)
    except (OSError, RuntimeError) as exc:
        typer.echo(f"error: {output}: cannot write ({str(exc).strip().splitlines()[-1] if str(exc).strip() else exc})", err=True)
        raise typer.Exit(1) from None
    g = loaded.geometry
    record = {"source": str(source), "output": str(output), **g.to_dict(), "problems": list(loaded.problems)}
    if as_json:
        json.dump(record, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    typer.echo(f"wrote {output}: size {list(g.size)}, spacing {[round(v, 4) for v in g.spacing_mm]} mm, "
               f"origin (LPS) {[round(v, 3) for v in g.origin_lps]} mm")
    for problem in loaded.problems:
        typer.echo(f"  note: {problem}")


def register(app: typer.Typer) -> None:
    app.command("convert")(convert_command)
