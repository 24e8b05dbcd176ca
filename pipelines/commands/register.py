"""`tumor-response register FIXED MOVING --out T.tfm [--json]`.

Registers MOVING (a follow-up) to FIXED (its baseline): rigid, then affine, optionally a
coarse B-spline (``imaging.registration``). FIXED and MOVING are NIfTI/NRRD/MetaImage files or
folders holding one DICOM series. Writes the ITK transform (maps FIXED physical LPS points to
MOVING ones) and, beside it, ``T.tfm.json`` with the quality figures. Exit code 0 when the
registration is "ok", 1 when it failed or is implausible (both files are still written, the
status says why), 2 when an input cannot be read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.table import Table

_NIFTI = (".nii", ".nii.gz")


def load_image(path: Path):  # noqa: ANN201 - SimpleITK is imported lazily
    """A volume in LPS from a NIfTI/NRRD/MetaImage file or a folder with one DICOM series."""
    import SimpleITK as sitk

    from imaging.io import ImagingError, group_series, load_nifti, load_series, scan_archive

    if path.is_dir():
        series = group_series(scan_archive(path).headers)
        if len(series) != 1:
            found = ", ".join(getattr(s, "series_uid", "?") for s in series) or "none"
            raise ImagingError(f"{path}: expected one DICOM series, found {len(series)} ({found}); give the series' own folder")
        return load_series(series[0])
    if not path.is_file():
        raise ImagingError(f"{path}: no such file or folder")
    if path.name.endswith(_NIFTI):
        return load_nifti(path)
    try:
        image = sitk.ReadImage(str(path))  # NRRD honours its space field: LPS
    except RuntimeError as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        raise ImagingError(f"{path}: not an image SimpleITK reads ({lines[-1] if lines else 'unknown reason'})") from exc
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ImagingError(f"{path}: a 3-D scalar volume is required")
    return image


def _fmt(values, digits: int = 3) -> str:  # noqa: ANN001
    return ", ".join(f"{v:.{digits}f}" for v in values)


def result_table(result, fixed: Path, moving: Path, out: Path) -> Table:  # noqa: ANN001
    from rich.table import Table

    table = Table(title=f"register {moving} -> {fixed}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("status", result.status + ("" if result.ok else ": " + "; ".join(result.problems)))
    table.add_row("transform", f"{result.transform.GetName()} -> {out}")
    table.add_row("mutual information", f"{-result.metric_initial:.4f} -> {-result.metric_final:.4f} nats")
    table.add_row("rotation", f"{result.rotation_deg:.2f} deg")
    table.add_row("scales", _fmt(result.scales, 4))
    table.add_row("translation (centre)", f"{_fmt(result.translation_mm, 2)} mm LPS")
    if result.landmark_error_mm is not None:
        table.add_row("landmark error", f"mean {result.landmark_error_mm:.2f} mm, max {result.landmark_error_max_mm:.2f} mm")
    table.add_row("time", f"{result.seconds:.2f} s")
    return table


def register_command(
    fixed: Annotated[Path, typer.Argument(help="fixed image (baseline): NIfTI/NRRD file or a DICOM series folder")],
    moving: Annotated[Path, typer.Argument(help="moving image (follow-up): NIfTI/NRRD file or a DICOM series folder")],
    out: Annotated[Path, typer.Option("--out", help="transform file to write (.tfm or .h5); quality figures go to OUT.json")],
    as_json: Annotated[bool, typer.Option("--json", help="print the quality figures as JSON")] = False,
    stages: Annotated[str, typer.Option("--stages", help="comma-separated subsequence of rigid,affine,bspline")] = "rigid,affine",
    fixed_lesions: Annotated[
        Path | None, typer.Option("--fixed-lesions", help="lesion label map of FIXED: kept out of the metric (with the margin)")
    ] = None,
    moving_lesions: Annotated[
        Path | None, typer.Option("--moving-lesions", help="lesion label map of MOVING: kept out of the metric (with the margin)")
    ] = None,
    lesion_margin_mm: Annotated[float, typer.Option("--lesion-margin-mm", help="margin around the lesions, mm")] = 30.0,
    max_rotation_deg: Annotated[float, typer.Option("--max-rotation-deg", help="plausibility limit, degrees")] = 20.0,
    threads: Annotated[int, typer.Option("--threads", help="optimiser threads; 1 gives bit-reproducible results")] = 1,
) -> None:
    """Register MOVING to FIXED; write the transform (FIXED points -> MOVING points) and its quality figures."""
    from imaging.io import ImagingError
    from imaging.registration import (
        RegistrationConfig,
        RegistrationError,
        lesion_exclusion_mask,
        register,
        save_transform,
    )

    try:
        stage_names: Any = tuple(s.strip() for s in stages.split(",") if s.strip())  # validated by the config
        config = RegistrationConfig(
            stages=stage_names,
            max_rotation_deg=max_rotation_deg,
            threads=threads,
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if out.suffix.lower() not in (".tfm", ".txt", ".h5", ".hdf5"):
        typer.echo(f"error: --out {out}: use a .tfm or .h5 file", err=True)
        raise typer.Exit(2)
    try:
        fixed_image = load_image(fixed)
        moving_image = load_image(moving)
        fixed_mask = None if fixed_lesions is None else lesion_exclusion_mask(load_image(fixed_lesions), lesion_margin_mm)
        moving_mask = None if moving_lesions is None else lesion_exclusion_mask(load_image(moving_lesions), lesion_margin_mm)
        result = register(fixed_image, moving_image, config, fixed_mask=fixed_mask, moving_mask=moving_mask)
        save_transform(result, out)
    except (ImagingError, RegistrationError) as exc:  # RegistrationError is an ImagingError; named for clarity
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    if as_json:
        payload = {"fixed": str(fixed), "moving": str(moving), "transform_file": str(out),
                   "quality_file": str(out) + ".json", **result.to_dict()}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        from rich.console import Console

        console = Console() if sys.stdout.isatty() else Console(width=160)
        console.print(result_table(result, fixed, moving, out))
    if not result.ok:
        typer.echo(f"registration {result.status}: " + "; ".join(result.problems), err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("register")(register_command)
