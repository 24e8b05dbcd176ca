"""Find each patient's time points in a DICOM archive and the files that go with them."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from imaging.io import SeriesInfo, group_series, scan_archive
from pipelines.config import DatasetConfig


@dataclass(frozen=True)
class TimepointSource:
    """One scan of one patient: its image series and where its mask should be."""

    patient_id: str
    study_date: dt.date
    study_uid: str
    series: SeriesInfo | None
    mask_path: Path
    problem: str | None = None  # set when the time point cannot be used (e.g. several candidate series)


@dataclass
class Discovery:
    patients: dict[str, list[TimepointSource]] = field(default_factory=dict)
    skipped_files: list[tuple[Path, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class LesionInfo(BaseModel):
    """Sidecar metadata of one label value."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    lesion_id: str
    organ: str = "unknown"
    nodal: bool = False


class ClinicalContext(BaseModel):
    """Per-patient treatment context from the clinical CSV (course-format.md ``context``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    treatment_start: dt.date | None = None
    radiotherapy_end: dt.date | None = None
    immunotherapy: bool = False


def discover(dataset: DatasetConfig) -> Discovery:
    """Crawl ``dataset.root``; one time point per (patient, study) holding one image series of the wanted modality."""
    scan = scan_archive(dataset.root)
    found = Discovery(skipped_files=list(scan.skipped))
    by_study: dict[tuple[str, str], list[SeriesInfo]] = defaultdict(list)
    for s in group_series(scan.headers):
        if s.modality in dataset.modality:
            by_study[(s.patient_id, s.study_uid)].append(s)
    for (patient_id, study_uid), candidates in sorted(
        by_study.items(), key=lambda kv: (kv[0][0], kv[1][0].study_date or dt.date.min)
    ):
        first = candidates[0]
        if first.study_date is None:
            found.problems.append(f"patient {patient_id}, study {study_uid}: no StudyDate; study left out")
            continue
        mask_path = dataset.root / dataset.mask.format(patient_id=patient_id, study_date=first.study_date.isoformat())
        problem = None
        series: SeriesInfo | None = first
        if len(candidates) > 1:
            names = ", ".join(f"{c.series_uid} ({c.series_description or c.modality})" for c in candidates)
            problem = f"study {study_uid} has {len(candidates)} candidate image series ({names}); cannot tell which one the mask belongs to"
            series = None
        found.patients.setdefault(patient_id, []).append(
            TimepointSource(patient_id, first.study_date, study_uid, series, mask_path, problem)
        )
    for tps in found.patients.values():
        tps.sort(key=lambda t: t.study_date)
    return found


def load_lesion_metadata(path: Path | None) -> dict[int, LesionInfo]:
    """Read a sidecar ``{"<label>": {"lesion_id": ..., "organ": ..., "nodal": ...}}``; empty when absent."""
    if path is None or not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable lesion metadata ({exc})") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: lesion metadata must map label values to objects")
    out: dict[int, LesionInfo] = {}
    for key, value in raw.items():
        try:
            label = int(key)
        except ValueError:
            raise ValueError(f"{path}: key {key!r} is not a label value (an integer)") from None
        try:
            out[label] = LesionInfo.model_validate(value)
        except ValidationError as exc:
            err = exc.errors()[0]
            field_name = ".".join(str(x) for x in err["loc"])
            raise ValueError(f"{path}: label {key}: {field_name}: {err['msg']}") from None
    return out


def load_clinical(path: Path | None) -> dict[str, ClinicalContext]:
    """Read the clinical CSV: one row per patient (patient_id, treatment_start, radiotherapy_end, immunotherapy)."""
    if path is None:
        return {}
    out: dict[str, ClinicalContext] = {}
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            for line_no, row in enumerate(reader, start=2):
                pid = (row.pop("patient_id", None) or "").strip()
                if not pid:
                    raise ValueError(f"{path}:{line_no}: patient_id is empty")
                cleaned = {k: (v.strip() if v and v.strip() else None) for k, v in row.items()}
                if cleaned.get("immunotherapy") is None:
                    cleaned.pop("immunotherapy", None)
                try:
                    out[pid] = ClinicalContext.model_validate(cleaned)
                except ValidationError as exc:
                    err = exc.errors()[0]
                    field_name = ".".join(str(x) for x in err["loc"])
                    raise ValueError(f"{path}:{line_no}: {field_name}: {err['msg']}") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read clinical CSV ({exc.strerror or exc})") from exc
    return out
