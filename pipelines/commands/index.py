"""`tumor-response index ARCHIVE_DIR [--json] [--catalogue PATH]`.

Crawls an archive (headers only), groups Patient / Study / Series, splits
series that hold several volumes, and prints one row per volume (or, with
``--json``, the records of ``docs/io.md``): its geometry and problems, and what
series selection looks at (image type, kernel, slice thickness, contrast,
plane, slices). DICOM SEG and RTSTRUCT objects are listed with the series each
one is linked to (and how) and their segments or ROIs. The crawl is kept in an SQLite
catalogue, by default ``ARCHIVE_DIR/.tumor-response-index.sqlite``; a rerun
re-reads only files whose size or mtime changed. Exit code 2 when the archive
or the catalogue cannot be used; unreadable files are listed, never fatal.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer


def _fmt(values: list[float] | None, digits: int = 3) -> str:
    return "" if not values else " x ".join(f"{v:.{digits}f}".rstrip("0").rstrip(".") for v in values)


#: The fields of imaging.io.selection.describe_volume added to each volume record (the others are there already).
_SELECTION_FIELDS = ("image_type", "slice_thickness_mm", "kernel", "kernel_class", "contrast_agent", "contrast", "plane",
                     "body_part")


def _segmentation_records(scan: Any, volumes: list[Any], links: Any) -> list[dict[str, Any]]:
    """One JSON record per DICOM SEG / RTSTRUCT: identity, the series it is linked to and how, its segments."""
    by_uid: dict[str, list[Any]] = {}
    for v in volumes:
        by_uid.setdefault(v.series_uid, []).append(v)
    reasons = {str(seg.path): reason for seg, reason in links.unlinked}
    out = []
    for seg in scan.segmentations:
        reason = reasons.get(str(seg.path))
        series = [] if reason is not None else list(links.series_of.get(seg.sop_uid, ()))
        out.append({
            "path": str(seg.path), "kind": seg.kind, "patient_id": seg.patient_id, "study_uid": seg.study_uid,
            "series_uid": seg.series_uid, "sop_uid": seg.sop_uid, "description": seg.description,
            "content_datetime": seg.content_datetime, "frame_of_reference_uid": seg.frame_of_reference_uid,
            "referenced_series_uids": list(seg.referenced_series_uids),
            "n_referenced_instances": len(seg.referenced_sop_uids),
            "linked_series": [
                {"series_uid": uid, "series_number": by_uid[uid][0].series_number,
                 "series_description": by_uid[uid][0].series_description,
                 "volume_ids": [v.volume_id for v in by_uid[uid]]}
                for uid in series
            ],
            "linked_by": links.how.get(seg.sop_uid) if reason is None else None,
            "unlinked_reason": reason,
            "items": [
                {"number": i.number, "name": i.name, "kind": i.kind, "category": i.category, "organ": i.organ,
                 "property_code": list(i.property_code)}
                for i in seg.items
            ],
        })
    return out


def _compute_index(scan: Any, tilt: str) -> dict[str, Any]:
    """The index of a crawled archive: volume and segmentation records, the files skipped, and the counts."""
    from imaging.io import group_series
    from imaging.io.segrefs import link_segmentations
    from imaging.io.selection import describe_volume

    volumes = group_series(scan.headers, tilt=tilt)
    links = link_segmentations(volumes, scan.segmentations, scan.headers)
    records = []
    for v in volumes:
        record = v.to_dict()
        described = describe_volume(v)
        record.update({k: described[k] for k in _SELECTION_FIELDS})
        record["segmentations"] = [s.sop_uid for s in links.by_series.get(v.series_uid, [])]
        records.append(record)
    seg_records = _segmentation_records(scan, volumes, links)
    studies = {(v.patient_id, v.study_uid) for v in volumes}
    studies_with_seg = {(v.patient_id, v.study_uid) for v in volumes if links.by_series.get(v.series_uid)}
    return {
        "counts": {
            "patients": len({v.patient_id for v in volumes}), "studies": len(studies),
            "series": len({v.series_uid for v in volumes}), "volumes": len(volumes), "segmentations": len(seg_records),
            "unlinked_segmentations": sum(1 for r in seg_records if r["unlinked_reason"] is not None),
            "studies_without_segmentation": len(studies - studies_with_seg),
        },
        "volumes": records,
        "segmentations": seg_records,
        "skipped": [{"path": str(p), "reason": reason} for p, reason in scan.skipped_other],
    }


def _code_fingerprint() -> str:
    """A digest of the code an index is computed by (the loaders and this command): a stored index made by other
    code is not shown again."""
    import hashlib

    import imaging.io

    h = hashlib.sha256()
    for source in sorted(Path(imaging.io.__file__).parent.glob("*.py")) + [Path(__file__)]:
        h.update(source.name.encode())
        h.update(source.read_bytes())
    return h.hexdigest()


def _index_of(
    archive: Path, listing: Any, cat_path: Path | None, *, explicit: bool, tilt: str, workers: int | None,
    progress: Any, warn: Any,
) -> tuple[dict[str, Any], Path | None, dict[str, int]]:
    """(index, catalogue used, file counts) of ``archive``.

    With a catalogue, an archive whose listing (every file's path, size and mtime) is the one the stored index was
    computed from, with the same options and code, is not crawled again: its stored index is the answer (every file
    "unchanged in the catalogue"). Otherwise the headers that changed are read, the index is computed and stored.
    """
    from imaging.io import CatalogueError, scan_archive
    from imaging.io.catalogue import Catalogue

    n = len(listing.entries)
    key = json.dumps({"listing": listing.digest, "archive": str(archive), "tilt": tilt, "code": _code_fingerprint()})
    if cat_path is not None:
        try:
            with Catalogue(cat_path, archive) as cat:
                stored = cat.stored_index(key)
            if stored is not None:
                return json.loads(stored), cat_path, {"seen": n, "read": 0, "from_catalogue": n}
            scan = scan_archive(archive, catalogue=cat_path, workers=workers, progress=progress, listing=listing)
        except CatalogueError as exc:
            if explicit:
                raise
            # The default catalogue is a convenience: a read-only archive still gets indexed.
            warn(f"warning: {exc}; indexing without a catalogue (use --catalogue PATH to keep one)")
            cat_path = None
    if cat_path is None:
        scan = scan_archive(archive, workers=workers, progress=progress, listing=listing)
    index = _compute_index(scan, tilt)
    if cat_path is not None:
        try:
            with Catalogue(cat_path, archive) as cat:
                cat.write_volumes(index["volumes"])
                cat.store_index(key, json.dumps(index, separators=(",", ":")))
        except CatalogueError as exc:
            warn(f"warning: {exc}")
    return index, cat_path, {"seen": scan.n_files, "read": scan.n_read, "from_catalogue": scan.n_cached}


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
    from rich.console import Console
    from rich.table import Table

    from imaging.io import ImagingError, default_catalogue
    from imaging.io.crawl import list_archive

    err = Console(stderr=True)
    if tilt not in ("resample", "refuse"):
        typer.echo(f"error: --tilt must be 'resample' or 'refuse', not {tilt!r}", err=True)
        raise typer.Exit(2)
    cat_path: Path | None = None if no_catalogue else (catalogue or default_catalogue(archive))

    def progress(message: str) -> None:
        if not as_json:
            err.print(f"[dim]{message}[/dim]")

    try:
        listing = list_archive(archive, catalogue=cat_path)
        index, cat_path, files = _index_of(archive, listing, cat_path, explicit=catalogue is not None, tilt=tilt,
                                           workers=workers, progress=progress, warn=err.print)
    except ImagingError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    records, seg_records, counts = index["volumes"], index["segmentations"], index["counts"]
    skipped = [(item["path"], item["reason"]) for item in index["skipped"]]
    n_series = counts["series"]
    if as_json:
        out = {
            "archive": str(archive),
            "catalogue": str(cat_path) if cat_path else None,
            "files": files,
            "counts": counts,
            "volumes": records,
            "segmentations": seg_records,
            "skipped": {"count": len(skipped), "files": index["skipped"]},
        }
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return

    console = Console() if sys.stdout.isatty() else Console(width=240)
    split = f" in {len(records)} volumes" if len(records) != n_series else ""
    table = Table(title=f"{archive}: {n_series} series{split}", show_lines=False)
    for name, justify in (("patient", "left"), ("date", "left"), ("mod", "left"), ("#", "right"), ("description", "left"),
                          ("volume", "left"), ("image type", "left"), ("kernel", "left"), ("thick mm", "right"),
                          ("contrast", "left"), ("plane", "left"), ("slices", "right"), ("size", "right"),
                          ("spacing mm", "right"), ("seg", "right"), ("problems", "left")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for r in records:
        contrast = r["contrast_agent"] or {"yes": "yes", "no": "no", "": ""}[r["contrast"]]
        table.add_row(
            r["patient_id"], r["study_date"] or "", r["modality"], "" if r["series_number"] is None else str(r["series_number"]),
            r["series_description"], r["volume_id"], r["image_type"], r["kernel"],
            _fmt([r["slice_thickness_mm"]] if r["slice_thickness_mm"] is not None else None, 2), contrast, r["plane"],
            str(r["n_slices"]), "x".join(str(v) for v in r["size"]) if r["size"] else "-",
            _fmt(r["spacing_mm"]), str(len(r["segmentations"])) if r["segmentations"] else "", "\n".join(r["problems"]),
        )
    console.print(table)
    if seg_records:
        segs = Table(title=f"{len(seg_records)} segmentation(s) (DICOM SEG / RTSTRUCT)", show_lines=False)
        for name in ("patient", "kind", "description", "content date", "drawn on", "segments / ROIs", "file"):
            segs.add_column(name, overflow="fold")
        for r in seg_records:
            if r["unlinked_reason"] is not None:
                target = f"unlinked: {r['unlinked_reason']}"
            else:
                target = "\n".join(
                    f"series {s['series_number'] if s['series_number'] is not None else s['series_uid']} "
                    f"'{s['series_description']}'" for s in r["linked_series"]
                ) + f" (by {r['linked_by']})"
            items = "\n".join(f"{i['number']} {i['name']}" + (f" ({i['kind']})" if i["kind"] else "") for i in r["items"])
            when = r["content_datetime"]
            when = f"{when[:4]}-{when[4:6]}-{when[6:8]} {when[8:10]}:{when[10:12]}" if when else ""
            segs.add_row(r["patient_id"], r["kind"], r["description"], when, target, items or "(none)", r["path"])
        console.print(segs)
    summary = f"{files['seen']} files: {files['read']} read, {files['from_catalogue']} unchanged in the catalogue"
    if cat_path:
        summary += f" ({cat_path})"
    console.print(summary)
    console.print(
        f"{counts['studies']} study(ies), {n_series} series" + (f" ({len(records)} volumes)" if split else "")
        + f", {len(seg_records)} segmentation(s)"
    )
    if not seg_records:
        console.print("no segmentation found (DICOM SEG or RTSTRUCT)")
    else:
        n_unlinked = sum(1 for r in seg_records if r["unlinked_reason"] is not None)
        if n_unlinked:
            console.print(f"{n_unlinked} segmentation(s) linked to no series (see the table for why)")
        if counts["studies_without_segmentation"]:
            console.print(f"no segmentation found for {counts['studies_without_segmentation']} of {counts['studies']} "
                          "study(ies)")
    if skipped:
        reasons = Counter(reason.split(" (")[0] for _, reason in skipped)
        console.print(f"{len(skipped)} file(s) skipped (--json lists each with its reason):")
        for reason, n in reasons.most_common(10):
            console.print(f"  {n:6d}  {reason}")


def register(app: typer.Typer) -> None:
    """Register the loaders' commands: ``index`` and ``convert`` (one entry in ``pipelines/cli.py``)."""
    from pipelines.commands import convert

    app.command("index")(index_command)
    convert.register(app)
