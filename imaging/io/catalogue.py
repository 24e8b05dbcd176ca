"""The SQLite catalogue of an archive crawl.

One row per file under the archive root (path relative to the root, size,
mtime in ns, and either the parsed header as JSON or the reason it was
skipped; for a DICOM SEG or RTSTRUCT the JSON also holds its references and
segments under ``"segmentation"``), one row per volume of the last index, and that index as a whole (keyed by
what it was computed from, so an unchanged archive is shown again without reading a header). A rerun of the crawl
re-reads only the files whose size or mtime changed, and forgets files that
are gone. The file is an ordinary SQLite database: ``sqlite3 CATALOGUE
'select volume_id, n_slices from volumes'`` works.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from imaging.io.errors import CatalogueError

#: Default file name, created in the archive root unless another path is given.
CATALOGUE_NAME = ".tumor-response-index.sqlite"
#: Bump when the stored header format changes: older catalogues are then rebuilt.
#: 2: headers gained convolution_kernel, contrast_agent, body_part and content_datetime;
#: the rows of DICOM SEG / RTSTRUCT files hold their references and segments ("segmentation").
SCHEMA_VERSION = "2"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('dicom', 'skip')),
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS indexes (key TEXT PRIMARY KEY, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS volumes (
    volume_id TEXT PRIMARY KEY,
    patient_id TEXT, study_uid TEXT, study_date TEXT, series_uid TEXT, modality TEXT,
    series_description TEXT, n_slices INTEGER, record TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class FileRecord:
    """What the catalogue holds about one file: ``kind`` 'dicom' (payload: header JSON) or 'skip' (payload: reason)."""

    size: int
    mtime_ns: int
    kind: str
    payload: str


class Catalogue:
    """An open catalogue of the archive under ``root``; use as a context manager."""

    def __init__(self, path: Path, root: Path) -> None:
        self.path = Path(path)
        self.root = Path(root)
        try:
            self._db = sqlite3.connect(self.path, timeout=30)
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            raise CatalogueError(f"{self.path}: not a usable SQLite catalogue ({exc})") from exc
        if tables and not {"meta", "files"} <= tables:
            self._db.close()
            raise CatalogueError(f"{self.path}: an SQLite database that is not a tumor-response catalogue; refusing to touch it")
        try:
            self._db.executescript(_SCHEMA)
            meta = dict(self._db.execute("SELECT key, value FROM meta"))
            if meta.get("schema_version") != SCHEMA_VERSION or meta.get("root") != str(self.root.resolve()):
                # Another format or another archive: start afresh rather than trust stale rows.
                with self._db:
                    self._db.execute("DELETE FROM files")
                    self._db.execute("DELETE FROM volumes")
                    self._db.execute("DELETE FROM indexes")
                    self._db.executemany(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                        [("schema_version", SCHEMA_VERSION), ("root", str(self.root.resolve()))],
                    )
        except sqlite3.Error as exc:
            self._db.close()
            raise CatalogueError(f"{self.path}: cannot initialise the catalogue ({exc})") from exc

    def __enter__(self) -> Catalogue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def records(self) -> dict[str, FileRecord]:
        """Every file row, by path relative to the root."""
        return {
            path: FileRecord(size, mtime, kind, payload)
            for path, size, mtime, kind, payload in self._db.execute("SELECT path, size, mtime_ns, kind, payload FROM files")
        }

    def update(self, changed: Iterable[tuple[str, FileRecord]], removed: Iterable[str]) -> None:
        """Upsert ``changed`` rows and delete ``removed`` paths, in one transaction."""
        try:
            with self._db:
                self._db.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in removed])
                self._db.executemany(
                    "INSERT OR REPLACE INTO files (path, size, mtime_ns, kind, payload) VALUES (?, ?, ?, ?, ?)",
                    [(p, r.size, r.mtime_ns, r.kind, r.payload) for p, r in changed],
                )
        except sqlite3.Error as exc:
            raise CatalogueError(f"{self.path}: cannot write the catalogue ({exc})") from exc

    def write_volumes(self, volumes: Iterable[dict]) -> None:
        """Replace the volume table with ``volumes`` (records as ``SeriesInfo.to_dict`` makes them)."""
        try:
            with self._db:
                self._db.execute("DELETE FROM volumes")
                self._db.executemany(
                    "INSERT OR REPLACE INTO volumes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            v["volume_id"], v["patient_id"], v["study_uid"], v["study_date"], v["series_uid"],
                            v["modality"], v["series_description"], v["n_slices"], json.dumps(v),
                        )
                        for v in volumes
                    ],
                )
        except sqlite3.Error as exc:
            raise CatalogueError(f"{self.path}: cannot write the catalogue ({exc})") from exc

    def stored_index(self, key: str) -> str | None:
        """The index stored under ``key`` by :meth:`store_index`, or None."""
        row = self._db.execute("SELECT payload FROM indexes WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def store_index(self, key: str, payload: str) -> None:
        """Keep ``payload`` (a whole index, as text) under ``key``, in place of any index stored before.

        ``key`` names everything the index was computed from (the listing's digest, the options, the code): a
        later crawl that finds the same key may show the payload instead of recomputing it.
        """
        try:
            with self._db:
                self._db.execute("DELETE FROM indexes")
                self._db.execute("INSERT INTO indexes (key, payload) VALUES (?, ?)", (key, payload))
        except sqlite3.Error as exc:
            raise CatalogueError(f"{self.path}: cannot write the catalogue ({exc})") from exc

    def volumes(self) -> list[dict]:
        return [json.loads(r[0]) for r in self._db.execute("SELECT record FROM volumes ORDER BY volume_id")]
