"""Crawl an archive folder: every DICOM header at any depth, never pixel data.

Non-DICOM files, DICOMDIRs and DICOM objects that are not image slices
(structured reports, presentation states, RTSTRUCT, SEG, 2-D radiographs ...)
are listed in :attr:`ScanResult.skipped` with the reason; one unreadable file
never stops the crawl. With a catalogue (:mod:`imaging.io.catalogue`) a rerun
re-reads only files whose size or mtime changed. Large crawls parse headers in
a process pool (header parsing is pure Python, so threads would not help).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from imaging.io.catalogue import CATALOGUE_NAME, Catalogue, FileRecord
from imaging.io.dicom import DicomHeader, ScanResult, header_from_dict, header_to_dict, read_header
from imaging.io.errors import ArchiveError, DicomFileError

#: Below this many files to parse, a process pool costs more than it saves: the lean header
#: parser reads ~10,000 headers a second in one process, and starting workers that import
#: the imaging stack takes about a second.
PARALLEL_THRESHOLD = 20_000
_CHUNK = 256
log = logging.getLogger(__name__)


def default_catalogue(root: str | os.PathLike[str]) -> Path:
    """Where the catalogue of ``root`` goes unless told otherwise: ``<root>/.tumor-response-index.sqlite``."""
    return Path(root) / CATALOGUE_NAME


def _walk(
    root: Path, skipped: list[tuple[Path, str]], ignore: set[str], seen: set[tuple[int, int]] | None = None
) -> Iterator[tuple[Path, int, int]]:
    """(path, size, mtime_ns) of every regular file under ``root``, sorted, depth first.

    Symbolic links to folders are followed once (a link back up the tree is not a loop).
    """
    seen = set() if seen is None else seen
    try:
        st_root = root.stat()
        if (st_root.st_dev, st_root.st_ino) in seen:
            return
        seen.add((st_root.st_dev, st_root.st_ino))
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        skipped.append((root, f"cannot list folder ({exc.strerror or exc})"))
        return
    for entry in entries:
        path = Path(entry.path)
        try:
            if entry.is_dir():
                yield from _walk(path, skipped, ignore, seen)
                continue
            if not entry.is_file():
                continue
            if entry.name.startswith(CATALOGUE_NAME) or os.path.abspath(entry.path) in ignore:
                continue  # our own catalogue (and its journal)
            st = entry.stat()
        except OSError as exc:
            skipped.append((path, f"cannot stat file ({exc.strerror or exc})"))
            continue
        yield path, st.st_size, st.st_mtime_ns


def _read_one(path: Path) -> tuple[str, DicomHeader | str]:
    if path.name.upper() == "DICOMDIR":
        return "skip", "DICOMDIR (a directory record, not an image)"
    try:
        return "dicom", read_header(path)
    except DicomFileError as exc:
        # The message starts with the path; the catalogue stores the reason alone.
        text = str(exc)
        prefix = f"{path}: "
        return "skip", text[len(prefix):] if text.startswith(prefix) else text


def _read_chunk(paths: list[Path]) -> list[tuple[str, DicomHeader | str]]:
    return [_read_one(p) for p in paths]


def _read_many(paths: list[Path], workers: int) -> list[tuple[str, DicomHeader | str]]:
    if workers <= 1 or len(paths) < PARALLEL_THRESHOLD:
        return [_read_one(p) for p in paths]
    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    # forkserver: workers never inherit the parent's threads (fork after threads can deadlock).
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn")
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            out: list[tuple[str, DicomHeader | str]] = []
            for part in pool.map(_read_chunk, chunks):
                out.extend(part)
        return out
    except (BrokenProcessPool, OSError) as exc:
        # Workers could not start (e.g. a __main__ that cannot be re-imported): read here instead.
        log.warning("header workers unavailable (%s); reading %d headers in this process", exc, len(paths))
        return [_read_one(p) for p in paths]


def scan_archive(
    root: str | os.PathLike[str],
    *,
    catalogue: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> ScanResult:
    """Walk ``root`` at any depth and read every DICOM header.

    Parameters
    ----------
    root
        The archive folder.
    catalogue
        Path of an SQLite catalogue to reuse and update (created if absent);
        ``None`` (default) keeps nothing between runs.
    workers
        Processes parsing headers (default: the number of CPUs, at most 8);
        crawls of fewer than :data:`PARALLEL_THRESHOLD` files to parse run in
        this process.
    progress
        Called with one-line progress messages (for a CLI).

    Returns
    -------
    ScanResult
        ``headers`` of image files, ``skipped`` (path, reason) for the rest,
        and the counts of files seen, parsed and taken from the catalogue.
        Non-image DICOM objects are skipped with their SOP class named.

    Raises
    ------
    ArchiveError
        ``root`` is not a folder.
    CatalogueError
        The catalogue cannot be opened or written.
    """
    root = Path(root)
    if not root.is_dir():
        raise ArchiveError(f"{root}: not a folder")
    result = ScanResult()
    ignore: set[str] = set()
    if catalogue is not None:
        base = os.path.abspath(catalogue)
        ignore = {base + suffix for suffix in ("", "-journal", "-wal", "-shm")}
    entries = list(_walk(root, result.skipped, ignore))
    result.n_files = len(entries)
    n_workers = workers if workers is not None else min(os.cpu_count() or 1, 8)

    cat = Catalogue(Path(catalogue), root) if catalogue is not None else None
    try:
        known = cat.records() if cat else {}
        outcome: dict[Path, tuple[str, DicomHeader | str]] = {}
        to_read: list[tuple[Path, str, int, int]] = []
        for path, size, mtime in entries:
            rel = path.relative_to(root).as_posix()
            rec = known.get(rel)
            if rec is not None and rec.size == size and rec.mtime_ns == mtime:
                if rec.kind == "dicom":
                    d = json.loads(rec.payload)
                    d["path"] = str(root / rel)
                    outcome[path] = ("dicom", header_from_dict(d))
                else:
                    outcome[path] = ("skip", rec.payload)
                result.n_cached += 1
            else:
                to_read.append((path, rel, size, mtime))
        if progress and to_read:
            progress(f"reading {len(to_read)} of {len(entries)} headers ({result.n_cached} unchanged in the catalogue)")
        fresh = _read_many([p for p, _, _, _ in to_read], n_workers)
        result.n_read = len(fresh)
        changed: list[tuple[str, FileRecord]] = []
        for (path, rel, size, mtime), (kind, value) in zip(to_read, fresh):
            outcome[path] = (kind, value)
            if cat is not None:
                if kind == "dicom":
                    d = header_to_dict(value)  # type: ignore[arg-type]
                    d["path"] = rel
                    payload = json.dumps(d, separators=(",", ":"))
                else:
                    payload = str(value)
                changed.append((rel, FileRecord(size, mtime, kind, payload)))
        if cat is not None:
            present = {p.relative_to(root).as_posix() for p, _, _ in entries}
            cat.update(changed, [p for p in known if p not in present])
            result.catalogue = cat.path
    finally:
        if cat is not None:
            cat.close()

    for path, _, _ in entries:
        kind, value = outcome[path]
        if kind == "skip":
            result.skipped.append((path, str(value)))
            continue
        header = value
        assert isinstance(header, DicomHeader)
        reason = header.not_image_reason
        if reason is None:
            result.headers.append(header)
        else:
            result.skipped.append((path, reason))
            result.non_image.append(header)
    return result
