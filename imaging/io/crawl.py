"""Crawl an archive folder: every DICOM header at any depth, never pixel data.

Non-DICOM files, DICOMDIRs and DICOM objects that are not image slices
(structured reports, presentation states, 2-D radiographs ...) are listed in
:attr:`ScanResult.skipped` with the reason; one unreadable file never stops the
crawl. DICOM SEG and RTSTRUCT objects are read into
:attr:`ScanResult.segmentations` (their references and segments, see
:mod:`imaging.io.segrefs`); they stay in ``skipped`` and ``non_image`` too, with
a reason that says so (:attr:`ScanResult.skipped_other` leaves them out). With a catalogue (:mod:`imaging.io.catalogue`) a rerun
re-reads only files whose size or mtime changed. Large crawls parse headers in
a process pool (header parsing is pure Python, so threads would not help).
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from imaging.io.catalogue import CATALOGUE_NAME, Catalogue, FileRecord
from imaging.io.dicom import (
    SEGMENTATION_SOP_CLASSES,
    DicomHeader,
    ScanResult,
    header_from_dict,
    header_to_dict,
    read_header,
)
from imaging.io.errors import ArchiveError, DicomFileError
from imaging.io.segrefs import (
    SegmentationRef,
    SegmentationRefError,
    read_segmentation_ref,
    segmentation_ref_from_dict,
)

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
    folder: str,
    prefix: str,
    skipped: list[tuple[Path, str]],
    ignore: set[str],
    seen: set[tuple[int, int]],
) -> Iterator[tuple[str, str, int, int]]:
    """(path, path relative to the root in POSIX form, size, mtime_ns) of every regular file under ``folder``.

    Sorted by name, depth first. Symbolic links to folders are followed once (a link back up the tree is not a
    loop). Paths stay strings here: on an archive of 100,000 files, making and relativising ``Path`` objects
    cost more than listing the files.
    """
    try:
        st_folder = os.stat(folder)
        if (st_folder.st_dev, st_folder.st_ino) in seen:
            return
        seen.add((st_folder.st_dev, st_folder.st_ino))
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        skipped.append((Path(folder), f"cannot list folder ({exc.strerror or exc})"))
        return
    for entry in entries:
        try:
            if entry.is_dir():
                yield from _walk(entry.path, f"{prefix}{entry.name}/", skipped, ignore, seen)
                continue
            if not entry.is_file():
                continue
            if entry.name.startswith(CATALOGUE_NAME) or (ignore and os.path.abspath(entry.path) in ignore):
                continue  # our own catalogue (and its journal)
            st = entry.stat()
        except OSError as exc:
            skipped.append((Path(entry.path), f"cannot stat file ({exc.strerror or exc})"))
            continue
        yield entry.path, prefix + entry.name, st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class Listing:
    """The files under an archive root, as the crawl sees them before reading any header.

    ``entries`` holds (path, relative path, size, mtime_ns) per regular file; ``skipped`` the folders and files that
    could not be listed or stat'ed. :attr:`digest` changes whenever a file is added, removed, resized or touched
    (the catalogue's own test of change), so a result computed from an earlier listing with the same digest
    still holds.
    """

    root: Path
    entries: tuple[tuple[str, str, int, int], ...]
    skipped: tuple[tuple[Path, str], ...]

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for _, rel, size, mtime in self.entries:
            h.update(f"{rel}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
        for path, reason in self.skipped:
            h.update(f"skip\0{path}\0{reason}\n".encode("utf-8", "surrogateescape"))
        return h.hexdigest()


def list_archive(root: str | os.PathLike[str], *, catalogue: str | os.PathLike[str] | None = None) -> Listing:
    """List every regular file under ``root`` (any depth) with its size and mtime; no file is opened.

    The catalogue file (``catalogue``, and any file named like the default catalogue) is left out.

    Raises
    ------
    ArchiveError
        ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise ArchiveError(f"{root}: not a folder")
    ignore: set[str] = set()
    if catalogue is not None:
        base = os.path.abspath(catalogue)
        ignore = {base + suffix for suffix in ("", "-journal", "-wal", "-shm")}
    skipped: list[tuple[Path, str]] = []
    entries = tuple(_walk(str(root), "", skipped, ignore, set()))
    return Listing(root, entries, tuple(skipped))


#: What the crawl makes of one file: ("dicom", header, segmentation) or ("skip", reason, None). For a SEG or
#: RTSTRUCT, ``segmentation`` is its SegmentationRef or the reason it cannot be read; else None.
_Outcome = tuple[str, "DicomHeader | str", "SegmentationRef | str | None"]


def _without_path(path: Path, exc: Exception) -> str:
    # Messages start with the path; the catalogue stores the reason alone.
    text = str(exc)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def _read_one(path: Path) -> _Outcome:
    if path.name.upper() == "DICOMDIR":
        return "skip", "DICOMDIR (a directory record, not an image)", None
    try:
        header = read_header(path)
    except DicomFileError as exc:
        return "skip", _without_path(path, exc), None
    segmentation: SegmentationRef | str | None = None
    if header.is_segmentation:
        try:
            segmentation = read_segmentation_ref(path)
        except SegmentationRefError as exc:
            segmentation = _without_path(path, exc)
    return "dicom", header, segmentation


#: A file to read: its path, and its path relative to the root when its catalogue row is wanted (else None).
_Job = tuple[Path, "str | None"]


def _read_job(job: _Job) -> tuple[_Outcome, str | None]:
    """The outcome of one file and, when a relative path is given, its catalogue payload (made where it was read:
    in a worker, that is work the main process does not do serially)."""
    path, rel = job
    one = _read_one(path)
    return one, (None if rel is None else _payload(one, rel))


def _read_chunk(jobs: list[_Job]) -> list[tuple[_Outcome, str | None]]:
    return [_read_job(j) for j in jobs]


def _read_many(jobs: list[_Job], workers: int) -> list[tuple[_Outcome, str | None]]:
    if workers <= 1 or len(jobs) < PARALLEL_THRESHOLD:
        return _read_chunk(jobs)
    chunks = [jobs[i : i + _CHUNK] for i in range(0, len(jobs), _CHUNK)]
    # forkserver: workers never inherit the parent's threads (fork after threads can deadlock).
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn")
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            out: list[tuple[_Outcome, str | None]] = []
            for part in pool.map(_read_chunk, chunks):
                out.extend(part)
        return out
    except (BrokenProcessPool, OSError) as exc:
        # Workers could not start (e.g. a __main__ that cannot be re-imported): read here instead.
        log.warning("header workers unavailable (%s); reading %d headers in this process", exc, len(jobs))
        return _read_chunk(jobs)


def scan_archive(
    root: str | os.PathLike[str],
    *,
    catalogue: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
    listing: Listing | None = None,
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
    listing
        The archive's :func:`list_archive`, when the caller has it already (it is made otherwise).

    Returns
    -------
    ScanResult
        ``headers`` of image files, ``skipped`` (path, reason) for the rest,
        and the counts of files seen, parsed and taken from the catalogue.
        Non-image DICOM objects are skipped with their SOP class named. DICOM
        SEG and RTSTRUCT objects are also read into ``segmentations`` (sorted by
        path; one whose references cannot be read is skipped with the reason).

    Raises
    ------
    ArchiveError
        ``root`` is not a folder.
    CatalogueError
        The catalogue cannot be opened or written.
    """
    if listing is None:
        listing = list_archive(root, catalogue=catalogue)
    elif Path(listing.root) != Path(root):
        raise ValueError(f"the listing given is of {listing.root}, not of {root}")
    root = Path(root)
    result = ScanResult()
    result.skipped.extend(listing.skipped)
    entries = listing.entries
    result.n_files = len(entries)
    n_workers = workers if workers is not None else min(os.cpu_count() or 1, 8)

    cat = Catalogue(Path(catalogue), root) if catalogue is not None else None
    outcome: list[_Outcome | None] = [None] * len(entries)
    try:
        known = cat.records() if cat else {}
        to_read: list[int] = []
        for i, (path, rel, size, mtime) in enumerate(entries):
            rec = known.get(rel)
            cached = _from_record(rec, path) if rec is not None and rec.size == size and rec.mtime_ns == mtime else None
            if cached is not None:
                outcome[i] = cached
                result.n_cached += 1
            else:
                to_read.append(i)
        if progress and to_read:
            progress(f"reading {len(to_read)} of {len(entries)} headers ({result.n_cached} unchanged in the catalogue)")
        fresh = _read_many([(Path(entries[i][0]), entries[i][1] if cat is not None else None) for i in to_read], n_workers)
        result.n_read = len(fresh)
        changed: list[tuple[str, FileRecord]] = []
        for i, (one, payload) in zip(to_read, fresh):
            outcome[i] = one
            if cat is not None:
                assert payload is not None
                _, rel, size, mtime = entries[i]
                changed.append((rel, FileRecord(size, mtime, one[0], payload)))
        if cat is not None:
            present = {rel for _, rel, _, _ in entries}
            cat.update(changed, [p for p in known if p not in present])
            result.catalogue = cat.path
    finally:
        if cat is not None:
            cat.close()

    for (path_text, _, _, _), one in zip(entries, outcome):
        assert one is not None
        kind, value, segmentation = one
        if kind == "skip":
            result.skipped.append((Path(path_text), str(value)))
            continue
        header = value
        assert isinstance(header, DicomHeader)
        reason = header.not_image_reason
        if reason is None:
            result.headers.append(header)
            continue
        if isinstance(segmentation, SegmentationRef):
            result.segmentations.append(segmentation)
            reason = f"segmentation (DICOM {segmentation.kind}), listed among the segmentations, not an image slice"
        elif isinstance(segmentation, str):
            kind_name = SEGMENTATION_SOP_CLASSES[header.sop_class_uid]
            reason = f"DICOM {kind_name} whose references cannot be read ({segmentation})"
        result.skipped.append((Path(path_text), reason))
        result.non_image.append(header)
    return result


def _payload(one: _Outcome, rel: str) -> str:
    """The catalogue's text for one file: the reason it was skipped, or its header (and segmentation) as JSON."""
    kind, value, segmentation = one
    if kind != "dicom":
        return str(value)
    d = header_to_dict(value)  # type: ignore[arg-type]
    d["path"] = rel
    if isinstance(segmentation, SegmentationRef):
        seg = segmentation.to_dict()
        seg["path"] = rel
        d["segmentation"] = seg
    elif isinstance(segmentation, str):
        d["segmentation_error"] = segmentation
    return json.dumps(d, separators=(",", ":"))


def _from_record(rec: FileRecord, path: str) -> _Outcome | None:
    """A file's outcome from its catalogue row; None when the row lacks something (the file is read again)."""
    if rec.kind != "dicom":
        return "skip", rec.payload, None
    d = json.loads(rec.payload)
    seg_dict, seg_error = d.pop("segmentation", None), d.pop("segmentation_error", None)
    d["path"] = path
    header = header_from_dict(d)
    segmentation: SegmentationRef | str | None = None
    if header.is_segmentation:
        if seg_dict is not None:
            seg_dict["path"] = path
            segmentation = segmentation_ref_from_dict(seg_dict)
        elif seg_error is not None:
            segmentation = str(seg_error)
        else:
            return None
    return "dicom", header, segmentation
