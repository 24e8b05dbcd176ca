"""Find each patient's time points in a DICOM archive and the files that go with them."""

from __future__ import annotations

import csv
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from imaging.io import CatalogueError, SeriesInfo, group_series, scan_archive
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
    image_path: Path | None = None  # a NIfTI/NRRD volume instead of a DICOM series
    timepoint: str | None = None  # the time point's folder name in a NIfTI dataset


@dataclass
class Discovery:
    patients: dict[str, list[TimepointSource]] = field(default_factory=dict)
    skipped_files: list[tuple[Path, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class ClinicalContext(BaseModel):
    """Per-patient treatment context from the clinical CSV (course-format.md ``context``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    treatment_start: dt.date | None = None
    radiotherapy_end: dt.date | None = None
    immunotherapy: bool = False


class VisitClinical(BaseModel):
    """Clinical data of one scan (course-format.md ``clinical``), from the visits CSV."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    steroid_dose_mg: float | None = Field(default=None, ge=0)
    clinically_stable: bool | None = None
    t2_flair: Literal["stable", "increased"] | None = None
    outside_radiation_field: bool | None = None
    histologic_confirmation: bool | None = None


@dataclass(frozen=True)
class Visit:
    patient_id: str
    date: dt.date
    timepoint: str | None
    clinical: VisitClinical


def load_visits(path: Path | None) -> dict[str, list[Visit]]:
    """Read the visits CSV: one row per scan, ``patient_id``, ``date``, optional ``timepoint`` and clinical columns."""
    if path is None:
        return {}
    out: dict[str, list[Visit]] = {}
    try:
        with path.open(newline="") as fh:
            for line_no, row in enumerate(csv.DictReader(fh), start=2):
                row = {k: (v.strip() if v and v.strip() else None) for k, v in row.items() if k}
                pid, date, tp = row.pop("patient_id", None), row.pop("date", None), row.pop("timepoint", None)
                if not pid:
                    raise ValueError(f"{path}:{line_no}: patient_id is empty")
                try:
                    when = dt.date.fromisoformat(date or "")
                except ValueError:
                    raise ValueError(f"{path}:{line_no}: date: expected YYYY-MM-DD, got {date!r}") from None
                try:
                    clinical = VisitClinical.model_validate({k: v for k, v in row.items() if v is not None})
                except ValidationError as exc:
                    err = exc.errors()[0]
                    field_name = ".".join(str(x) for x in err["loc"])
                    raise ValueError(f"{path}:{line_no}: {field_name}: {err['msg']}") from None
                out.setdefault(pid, []).append(Visit(pid, when, tp, clinical))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read visits CSV ({exc.strerror or exc})") from exc
    return out


def discover(dataset: DatasetConfig, catalogue: Path | None = None) -> Discovery:
    """Find every patient's time points: a DICOM crawl, or a NIfTI folder layout (by ``dataset.kind``).

    ``catalogue``: an SQLite header catalogue for the DICOM crawl (a rerun re-reads only changed files).
    """
    if dataset.kind == "nifti":
        return _discover_nifti(dataset)
    return _discover_dicom(dataset, catalogue)


def _discover_nifti(dataset: DatasetConfig) -> Discovery:
    """One time point per folder matching ``dataset.timepoints``; dates from the visits CSV."""
    found = Discovery()
    visits = load_visits(dataset.visits)
    dates = {(v.patient_id, v.timepoint): v.date for vs in visits.values() for v in vs if v.timepoint}
    parts = Path(dataset.timepoints).parts
    pattern = "/".join("*" if "{" in p else p for p in parts)
    i_pid, i_tp = parts.index("{patient_id}"), parts.index("{timepoint}")
    for folder in sorted(p for p in dataset.root.glob(pattern) if p.is_dir()):
        rel = folder.relative_to(dataset.root).parts
        patient_id, timepoint = rel[i_pid], rel[i_tp]
        date = dates.get((patient_id, timepoint))
        if date is None:
            found.problems.append(f"{folder}: no date for patient {patient_id}, time point {timepoint} in {dataset.visits}; left out")
            continue
        fields = {"patient_id": patient_id, "timepoint": timepoint, "study_date": date.isoformat()}
        assert dataset.image is not None
        found.patients.setdefault(patient_id, []).append(
            TimepointSource(
                patient_id=patient_id, study_date=date, study_uid=f"{patient_id}/{timepoint}", series=None,
                mask_path=folder / dataset.mask.format(**fields), image_path=folder / dataset.image.format(**fields),
                timepoint=timepoint,
            )
        )
    for tps in found.patients.values():
        tps.sort(key=lambda t: t.study_date)
        for a, b in zip(tps, tps[1:], strict=False):
            if a.study_date == b.study_date:
                found.problems.append(f"patient {a.patient_id}: time points {a.timepoint} and {b.timepoint} share the date {a.study_date}")
    return found


def _discover_dicom(dataset: DatasetConfig, catalogue: Path | None) -> Discovery:
    """Crawl ``dataset.root``; one time point per (patient, study) holding one image series of the wanted modality."""
    notes = []
    try:
        scan = scan_archive(dataset.root, catalogue=catalogue)
    except CatalogueError as exc:  # the catalogue is a convenience: a read-only archive is still crawled
        notes.append(f"{exc}; crawled without a header catalogue (a rerun reads every header again)")
        scan = scan_archive(dataset.root, catalogue=None)
    found = Discovery(skipped_files=list(scan.skipped), problems=notes)
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
        mask_path = dataset.root / dataset.mask.format(
            patient_id=patient_id, study_date=first.study_date.isoformat(), timepoint=first.study_date.isoformat()
        )
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
