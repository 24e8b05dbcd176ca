"""`tumor-response index ARCHIVE_DIR [--json] [--catalogue PATH]`.

Crawls an archive (headers only), groups Patient / Study / Series, splits
series that hold several volumes, and prints one row per volume (or, with
``--json``, the records of ``docs/io.md``). The crawl is kept in an SQLite
catalogue, by default ``ARCHIVE_DIR/.tumor-response-index.sqlite``; a rerun
re-reads only files whose size or mtime changed. Exit code 2 when the archive
or the catalogue cannot be used; unreadable files are listed, never fatal.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table


def _fmt(values: list[float] | None, digits: int = 3) -> str:
    return "" if not values else " x ".join(f"{v:.{digits}f}".rstrip("0").rstrip(".") for v in values)


def index_command(
    archive: Annotated[Path, typer.Argument(help="archive folder to crawl (any depth)")],
    as_json: Annotated[bool, typer.Option("--json", help="print the index as JSON (volumes and skipped files)")] = False,
    catalogue: Annotated[
        Path | None,
        typer.Option("--catalogue", help="SQLite catalogue to reuse and update [default: ARCHIVE_DIR/.tumor-response-index.sqlite]"),
    ] = None,
    no_catalogue: Annotated[bool, typer.Option("--no-catalogue", help="keep nothing between runs")] = False,
    workers: Annotated[int | None, typer.Option("--workers", help="processes parsing headers [default: CPUs]")] = None,
    tilt: Annotated[str, typer.Option("--tilt", help="gantry tilt policy: resample or refuse")] = "resample",
) -> None:
    """Index a DICOM archive: one entry per volume, with its geometry and problems; skipped files with the reason."""
    from imaging.io import CatalogueError, ImagingError, default_catalogue, group_series, scan_archive

    err = Console(stderr=True)
    if tilt not in ("resample", "refuse"):
        typer.echo(f"error: --tilt must be 'resample' or 'refuse', not {tilt!r}", err=True)
        raise typer.Exit(2)
    cat_path: Path | None = None if no_catalogue else (catalogue or default_catalogue(archive))

    def progress(message: str) -> None:
        if not as_json:
            err.print(f"[dim]{message}[/dim]")

    try:
        try:
            scan = scan_archive(archive, catalogue=cat_path, workers=workers, progress=progress)
        except CatalogueError as exc:
            if catalogue is not None:
                raise
            # The default catalogue is a convenience: a read-only archive still gets indexed.
            err.print(f"warning: {exc}; indexing without a catalogue (use --catalogue PATH to keep one)")
            cat_path = None
            scan = scan_archive(archive, workers=workers, progress=progress)
    except ImagingError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    volumes = group_series(scan.headers, tilt=tilt)  # type: ignore[arg-type]
    records = [v.to_dict() for v in volumes]
    if scan.catalogue is not None:
        from imaging.io.catalogue import Catalogue

        try:
            with Catalogue(scan.catalogue, archive) as cat:
                cat.write_volumes(records)
        except CatalogueError as exc:
            err.print(f"warning: {exc}")

    if as_json:
        out = {
            "archive": str(archive),
            "catalogue": str(scan.catalogue) if scan.catalogue else None,
            "files": {"seen": scan.n_files, "read": scan.n_read, "from_catalogue": scan.n_cached},
            "volumes": records,
            "skipped": {
                "count": len(scan.skipped),
                "files": [{"path": str(p), "reason": reason} for p, reason in scan.skipped],
            },
        }
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return

    console = Console() if sys.stdout.isatty() else Console(width=200)
    table = Table(title=f"{archive}: {len(records)} volume(s)", show_lines=False)
    for name, justify in (("patient", "left"), ("date", "left"), ("mod", "left"), ("description", "left"),
                          ("volume", "left"), ("slices", "right"), ("size", "right"), ("spacing mm", "right"),
                          ("problems", "left")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for r in records:
        table.add_row(
            r["patient_id"], r["study_date"] or "", r["modality"], r["series_description"], r["volume_id"],
            str(r["n_slices"]), "x".join(str(v) for v in r["size"]) if r["size"] else "-",
            _fmt(r["spacing_mm"]), "\n".join(r["problems"]),
        )
    console.print(table)
    summary = f"{scan.n_files} files: {scan.n_read} read, {scan.n_cached} unchanged in the catalogue"
    if scan.catalogue:
        summary += f" ({scan.catalogue})"
    console.print(summary)
    if scan.skipped:
        reasons = Counter(reason.split(" (")[0] for _, reason in scan.skipped)
        console.print(f"{len(scan.skipped)} file(s) skipped (--json lists each with its reason):")
        for reason, n in reasons.most_common(10):
            console.print(f"  {n:6d}  {reason}")


def register(app: typer.Typer) -> None:
    """Register the loaders' commands: ``index`` and ``convert`` (one entry in ``pipelines/cli.py``)."""
    from pipelines.commands import convert

    app.command("index")(index_command)
    convert.register(app)
