"""Output files, written atomically (temp file in the same folder, then rename), and the run's output folder."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.outputs.privacy import Pseudonymiser


def safe_name(value: str) -> str:
    """A header or config value made safe as one path component (no separators, no '..')."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", value).strip("._") or "unnamed"
    return cleaned[:128]


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv_atomic(path: Path, rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    write_text_atomic(path, buf.getvalue())


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def write_parquet_atomic(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Parquet with the same columns as the CSV (pyarrow infers the types)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([{k: row.get(k) for k in columns} for row in rows],
                                 schema=None) if rows else pa.table({k: pa.array([], pa.string()) for k in columns})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunOutputs:
    """A run's output folder: where every file of the run is written, each identity disclosed once, here.

    Stages and summaries hold the archive's own patient ids and UIDs. What reaches a file, a path, the
    log or the console goes through the run's :class:`~pipelines.outputs.privacy.Pseudonymiser`: table rows and
    JSON with :meth:`~pipelines.outputs.privacy.Pseudonymiser.row` / ``data``, paths with :meth:`patient_dir`,
    the log with a filter on its handler. A writer added later uses these methods, and
    ``tests/pipelines/test_privacy.py`` reads every file of a run for identifiers.
    """

    def __init__(self, root: Path, anon: Pseudonymiser) -> None:
        self.root = root
        self.anon = anon

    def patient_id(self, patient_id: str) -> str:
        """The id the outputs show for a patient."""
        return self.anon.patient(patient_id)

    def patient_dir(self, kind: str, patient_id: str) -> Path:
        """``<root>/<kind>/<patient as shown>``: a per-patient folder of outputs (snapshots, transforms, masks)."""
        return self.root / kind / safe_name(self.anon.patient(patient_id))

    def patient_file(self, kind: str, patient_id: str, suffix: str) -> Path:
        """``<root>/<kind>/<patient as shown><suffix>``: a per-patient output file (``courses/P001.json``)."""
        return self.root / kind / (safe_name(self.anon.patient(patient_id)) + suffix)

    def csv(self, name: str, rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
        write_csv_atomic(self.root / name, [self.anon.row(r) for r in rows], columns)

    def parquet(self, name: str, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
        write_parquet_atomic(self.root / name, [self.anon.row(r) for r in rows], columns)

    def json(self, name: str | Path, data: Any) -> Path:
        path = self.root / name
        write_json_atomic(path, self.anon.data(data))
        return path

    def text(self, value: str) -> str:
        """Free text (a message for the console) as the outputs show it."""
        return self.anon.text(value)

    def log_handler(self, name: str = "run.log") -> logging.Handler:
        """A file handler for the run's log whose every line is disclosed like the other outputs."""
        from pipelines.outputs.privacy import DisclosureFilter

        self.root.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.root / name, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(DisclosureFilter(self.anon))
        return handler

    def disclosed(self, summary: Any) -> Any:
        """A copy of a run summary (a dataclass of row lists and notes) as the outputs show it."""
        changes = {}
        for f in dataclasses.fields(summary):
            value = getattr(summary, f.name)
            if isinstance(value, list):
                changes[f.name] = [self.anon.row(v) if isinstance(v, dict) else self.anon.text(v) if isinstance(v, str)
                                   else v for v in value]
        return dataclasses.replace(summary, **changes)
