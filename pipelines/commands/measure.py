"""`tumor-response measure IMAGE MASK [--json] [--snapshots DIR]`.

Measures every lesion of a label map on its scan and prints one record per lesion with all
the fields of :class:`imaging.measurement.LesionMeasurement` (a table, or JSON). IMAGE is a
DICOM folder (crawled; with several volumes, ``--series`` picks one), a NIfTI file or any
file SimpleITK reads (NRRD, MHA ...). MASK is a label map (NIfTI, NRRD ...) on that scan;
a map on another grid is resampled with nearest neighbour. Input errors go to stderr with
exit code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer


def _fmt(value: Any) -> str:
    """A field's value for the table: numbers to 0.01, points as (L, P, S), pairs of points on two lines."""
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        return "\n".join(_fmt(p) for p in value)
    if isinstance(value, tuple):
        return "(" + ", ".join(f"{v:.2f}" for v in value) + ")"
    return str(value)


def _unit(name: str) -> str:
    for suffix, unit in (("_mm3", "mm3"), ("_mm2", "mm2"), ("_mm", "mm"), ("_lps", "LPS mm")):
        if name.endswith(suffix):
            return unit
    return ""


def _load_image(path: Path, series: str | None):
    """The scan as a SimpleITK image in LPS (imports deferred: the CLI starts fast)."""
    import SimpleITK as sitk

    from imaging.io import ImagingError, group_series, load_nifti, load_series, scan_archive

    if path.is_dir():
        scan = scan_archive(path)
        volumes = group_series(scan.headers)
        if not volumes:
            reasons = "; ".join(f"{p.name}: {why}" for p, why in scan.skipped[:3])
            raise ImagingError(f"{path}: no DICOM image series found" + (f" ({reasons})" if reasons else ""))
        if series is not None:
            chosen = [v for i, v in enumerate(volumes) if series in (v.series_uid, v.volume_id, str(i))]
            if not chosen:
                raise ImagingError(f"{path}: no volume {series!r}; found: " + ", ".join(v.volume_id for v in volumes))
            return load_series(chosen[0])
        if len(volumes) > 1:
            listing = "; ".join(f"[{i}] {v.volume_id} {v.modality} {v.series_description!r} ({v.n_slices} slices)"
                                for i, v in enumerate(volumes))
            raise ImagingError(f"{path}: {len(volumes)} volumes, choose one with --series: {listing}")
        return load_series(volumes[0])
    if not path.is_file():
        raise ImagingError(f"{path}: no such file or folder")
    if path.name.endswith((".nii", ".nii.gz")):
        return load_nifti(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
        raise ImagingError(f"{path}: unreadable image ({last})") from exc
    if image.GetDimension() != 3:
        raise ImagingError(f"{path}: a {image.GetDimension()}-D image; a 3-D volume is required")
    return image


def measure_command(
    image: Annotated[Path, typer.Argument(help="the scan: a DICOM folder, a NIfTI file, or NRRD/MHA")],
    mask: Annotated[Path, typer.Argument(help="label map on that scan (NIfTI, NRRD ...); 0 = background")],
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list, one object per lesion")] = False,
    snapshots: Annotated[
        Path | None, typer.Option("--snapshots", help="write one PNG per lesion into this folder")
    ] = None,
    series: Annotated[
        str | None, typer.Option("--series", help="DICOM folder with several volumes: series UID, volume id or index")
    ] = None,
    mode: Annotated[
        str, typer.Option("--mode", help="labels: one lesion per label value; components: per connected component")
    ] = "labels",
    min_volume_mm3: Annotated[float, typer.Option("--min-volume", help="drop lesions smaller than this, mm3")] = 0.0,
    window: Annotated[
        str | None, typer.Option("--window", help="snapshot display window CENTRE,WIDTH (e.g. -600,1500 lung)")
    ] = None,
) -> None:
    """Measure every lesion of a label map: diameters, products, volumes, centre and end points (LPS mm)."""
    from imaging.io import ImagingError, load_label_map
    from imaging.measurement import measure_lesions
    from imaging.segmentation import lesion_label_map

    try:
        if mode not in ("labels", "components"):
            raise ValueError(f"--mode: expected 'labels' or 'components', got {mode!r}")
        win = None
        if window is not None:
            try:
                centre, width = (float(v) for v in window.split(","))
            except ValueError:
                raise ValueError(f"--window: expected CENTRE,WIDTH, got {window!r}") from None
            win = (centre, width)
        scan = _load_image(image, series)
        labels = load_label_map(mask, scan)
        labels = lesion_label_map(labels, mode=mode, min_volume_mm3=min_volume_mm3)  # type: ignore[arg-type]
        measurements = measure_lesions(labels)
    except (ImagingError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    records = [m.to_dict() for m in measurements]
    if snapshots is not None:
        from imaging.measurement.snapshot import snapshot_png

        for m, record in zip(measurements, records):
            record["snapshot"] = str(snapshot_png(scan, labels, m, snapshots / f"lesion_{m.label}.png", window=win))

    if as_json:
        typer.echo(json.dumps(records, indent=2))
        return
    # Plain (non-TTY) output keeps whole rows, as `run` does.
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=120)
    if not records:
        console.print(f"no lesion in {mask}")
        return
    for record in records:
        table = Table(title=f"lesion {record['label']} ({mask.name} on {image.name})", show_header=True)
        table.add_column("field")
        table.add_column("value", justify="right")
        table.add_column("unit")
        for name, value in record.items():
            table.add_row(name, _fmt(value), _unit(name))
        console.print(table)
    if snapshots is not None:
        console.print(f"snapshots in {snapshots}")


def register(app: typer.Typer) -> None:
    """Add the ``measure`` command to the console script."""
    app.command("measure")(measure_command)
