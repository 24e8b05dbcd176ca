"""Find each patient's time points in a DICOM archive and the files that go with them."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from imaging.io import CatalogueError, SeriesInfo, group_series, scan_archive
from pipelines.config import DatasetConfig

if TYPE_CHECKING:
    from imaging.io.segrefs import SegmentationRef


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
    segmentation: SegmentationRef | None = None  # segmentations.source: archive: the SEG/RTSTRUCT used
    #: Archive segmentations: (segment or ROI number in the file, label value, lesion name) of each lesion segment.
    lesion_segments: tuple[tuple[int, int, str], ...] = ()
    #: Other sequences of the exam (role -> a NIfTI path or a DICOM volume), read beside the measured one.
    sequences: tuple[tuple[str, Path | SeriesInfo], ...] = ()
    #: Roles whose sequence could not be chosen, and why (that role's assessment fails, not the time point).
    sequence_problems: tuple[tuple[str, str], ...] = ()

    def sequence(self, role: str) -> Path | SeriesInfo | None:
        return dict(self.sequences).get(role)

    def missing_mask(self) -> str:
        """Why this time point has no lesion outlines of its own (for messages)."""
        if self.segmentation is None and self.mask_path == Path():
            uid = self.series.series_uid if self.series is not None else "?"
            return f"no segmentation found in the archive for series {uid}"
        return f"no label map at {self.mask_path}"

    @property
    def has_mask(self) -> bool:
        """Whether the time point has outlines of its own (a label map file, or an archive segmentation)."""
        return self.mask_path != Path() and self.mask_path.is_file()


@dataclass
class Discovery:
    patients: dict[str, list[TimepointSource]] = field(default_factory=dict)
    skipped_files: list[tuple[Path, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: One row per volume considered for each time point: chosen or not, and why (``series.csv``).
    series_rows: list[dict] = field(default_factory=list)
    #: Archive segmentations: per patient, label value -> lesion (named after its segment).
    lesion_metadata: dict[str, dict] = field(default_factory=dict)
    #: Header free text the outputs withhold unless identifiers are kept (RTSTRUCT ROI names).
    free_text: set[str] = field(default_factory=set)


class ClinicalContext(BaseModel):
    """Per-patient treatment context from the clinical CSV (course-format.md ``context``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    treatment_start: dt.date | None = None
    radiotherapy_end: dt.date | None = None
    immunotherapy: bool = False
    #: Gliomas: ``enhancing``, ``non_enhancing`` or ``mixed`` (RANO 2.0's rules by tumour type; optional column).
    tumour: Literal["enhancing", "non_enhancing", "mixed"] | None = None


class VisitClinical(BaseModel):
    """Clinical data of one scan (course-format.md ``clinical``), from the visits CSV."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    steroid_dose_mg: float | None = Field(default=None, ge=0)
    clinically_stable: bool | None = None
    t2_flair: Literal["stable", "increased"] | None = None
    outside_radiation_field: bool | None = None
    histologic_confirmation: bool | None = None
    enhancement: Literal["none", "stable", "new", "increased"] | None = None


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


def discover(dataset: DatasetConfig, catalogue: Path | None = None, *, roi_names: bool = False) -> Discovery:
    """Find every patient's time points: a DICOM crawl, or a NIfTI folder layout (by ``dataset.kind``).

    ``catalogue``: an SQLite header catalogue for the DICOM crawl (a rerun re-reads only changed files).
    ``roi_names``: archive RTSTRUCT lesions are named by their ROI names (``privacy.keep_identifiers``);
    otherwise ``R1``, ``R2`` ... in the order of their names, since ROI Name is free text that PS3.15's
    Basic Profile empties (the names are still the lesions' identity across time points, and are listed
    in :attr:`Discovery.free_text` for the outputs to withhold).
    """
    if dataset.kind == "nifti":
        return _discover_nifti(dataset)
    return _discover_dicom(dataset, catalogue, roi_names)


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
                sequences=tuple((role, folder / template.format(**fields)) for role, template in dataset.sequences.items()),
            )
        )
    for tps in found.patients.values():
        tps.sort(key=lambda t: t.study_date)
        for a, b in zip(tps, tps[1:], strict=False):
            if a.study_date == b.study_date:
                found.problems.append(f"patient {a.patient_id}: time points {a.timepoint} and {b.timepoint} share the date {a.study_date}")
    return found


def _rule(dataset: DatasetConfig, role: str = "measure"):  # noqa: ANN202 - imaging.io.selection.SeriesRule
    from imaging.io.selection import SeriesRule

    r = dataset.series_rule(role)
    return SeriesRule(
        modality=tuple(r.modality or dataset.modality), prefer=tuple(r.prefer), reject=tuple(r.reject),
        image_type=tuple(r.image_type), contrast=r.contrast, kernel=tuple(r.kernel),
        slice_thickness_mm=r.slice_thickness_mm, plane=r.plane, min_slices=r.min_slices,
    )


def _discover_dicom(dataset: DatasetConfig, catalogue: Path | None, roi_names: bool = False) -> Discovery:
    """Crawl ``dataset.root``; one time point per (patient, study), on the series chosen for it.

    The series is the one the study's segmentation references (``segmentations.source: archive``),
    else the one the selection rules and the default policy pick (:func:`imaging.io.select_series`);
    a study they cannot decide is a time point that fails with the candidates listed, never a guess.
    Every volume considered gets a row in :attr:`Discovery.series_rows`, chosen or not, and why.
    """
    from imaging.io.segrefs import link_segmentations
    from imaging.io.selection import describe_volume, select_series

    notes = []
    try:
        scan = scan_archive(dataset.root, catalogue=catalogue)
    except CatalogueError as exc:  # the catalogue is a convenience: a read-only archive is still crawled
        notes.append(f"{exc}; crawled without a header catalogue (a rerun reads every header again)")
        scan = scan_archive(dataset.root, catalogue=None)
    found = Discovery(skipped_files=list(scan.skipped_other), problems=notes)
    volumes = group_series(scan.headers)
    archive = dataset.source == "archive"
    links = link_segmentations(volumes, scan.segmentations, headers=scan.headers)
    for ref, why in links.unlinked:
        found.problems.append(f"segmentation {ref.path}: not linked to an image series ({why}); not used")
    rule = _rule(dataset)
    by_study: dict[tuple[str, str], list[SeriesInfo]] = defaultdict(list)
    for v in volumes:
        by_study[(v.patient_id, v.study_uid)].append(v)
    for (patient_id, study_uid), study_volumes in sorted(
        by_study.items(), key=lambda kv: (kv[0][0], kv[1][0].study_date or dt.date.min, kv[0][1])
    ):
        if not any(v.modality in rule.modality for v in study_volumes):
            continue  # a study of other objects only (another modality, a report)
        first = study_volumes[0]
        if first.study_date is None:
            found.problems.append(f"patient {patient_id}, study {study_uid}: no StudyDate; study left out")
            continue
        date = first.study_date
        referenced = [v.series_uid for v in study_volumes if links.by_series.get(v.series_uid)] if archive else []
        choice = select_series(study_volumes, rule, referenced=referenced, rule_path="dataset.series.measure")
        for v in study_volumes:
            chosen = choice.chosen is not None and v.volume_id == choice.chosen.volume_id
            why = choice.why if chosen else next((r for c, r in choice.rejected if c.volume_id == v.volume_id),
                                                 choice.error or "not chosen")
            found.series_rows.append({"patient_id": patient_id, "date": date.isoformat(), "study_uid": study_uid,
                                      "volume_id": v.volume_id, "series_uid": v.series_uid, "role": "measure",
                                      "chosen": chosen, **describe_volume(v), "reason": why})
        series = choice.chosen
        problem = choice.error if series is None else None
        sequences, sequence_problems = _choose_sequences(dataset, study_volumes, series, patient_id, date, study_uid,
                                                         found.series_rows)
        segmentation = None
        if archive:
            mask_path = Path()
            refs = links.by_series.get(series.series_uid, []) if series is not None else []
            if refs:
                ordered = sorted(refs, key=lambda r: (r.content_datetime, r.sop_uid), reverse=dataset.segmentations.choose == "newest")
                tied = [r for r in ordered if r.content_datetime == ordered[0].content_datetime]
                if len(tied) > 1:
                    problem = problem or (
                        f"{len(tied)} segmentations of series {series.series_uid if series else '?'} have the same content "
                        f"date and time ({ordered[0].content_datetime or 'none'}): {', '.join(str(r.path) for r in tied)}; "
                        "which read to use cannot be told (segmentations.choose orders by that date): remove the others "
                        "from the archive")
                segmentation = ordered[0]
                mask_path = segmentation.path
                for other in ordered[1:]:
                    found.problems.append(
                        f"patient {patient_id}, {date.isoformat()}: segmentation {other.path} ({other.content_datetime or 'no date'}) "
                        f"of the same series not used: {segmentation.path} ({segmentation.content_datetime or 'no date'}) is the "
                        f"{dataset.segmentations.choose} (segmentations.choose)")
        else:
            assert dataset.mask is not None
            mask_path = dataset.root / dataset.mask.format(patient_id=patient_id, study_date=date.isoformat(),
                                                           timepoint=date.isoformat())
        found.patients.setdefault(patient_id, []).append(
            TimepointSource(patient_id, date, study_uid, series, mask_path, problem, segmentation=segmentation,
                            sequences=sequences, sequence_problems=sequence_problems)
        )
    for tps in found.patients.values():
        tps.sort(key=lambda t: t.study_date)
    if archive:
        _name_lesions(found, dataset, roi_names)
    return found


def _choose_sequences(dataset: DatasetConfig, study_volumes: list[SeriesInfo], measured: SeriesInfo | None,
                      patient_id: str, date: dt.date, study_uid: str, rows: list[dict]):  # noqa: ANN202
    """The study's other sequences by the rule of each role (``dataset.series.<role>``), among its volumes other than
    the measured one; a role that cannot be decided is a problem of that role, never a guess."""
    from imaging.io.selection import describe_volume, select_series

    sequences: list[tuple[str, SeriesInfo]] = []
    problems: list[tuple[str, str]] = []
    for role in ("flair", "t2", "t1"):
        if role not in dataset.series:
            continue
        others = [v for v in study_volumes if measured is None or v.volume_id != measured.volume_id]
        choice = select_series(others, _rule(dataset, role), rule_path=f"dataset.series.{role}")
        for v in others:
            chosen = choice.chosen is not None and v.volume_id == choice.chosen.volume_id
            why = choice.why if chosen else next((r for c, r in choice.rejected if c.volume_id == v.volume_id),
                                                 choice.error or "not chosen")
            rows.append({"patient_id": patient_id, "date": date.isoformat(), "study_uid": study_uid,
                         "volume_id": v.volume_id, "series_uid": v.series_uid, "role": role, "chosen": chosen,
                         **describe_volume(v), "reason": why})
        if choice.chosen is not None:
            sequences.append((role, choice.chosen))
        else:
            problems.append((role, choice.error or f"no {role} series in the study"))
    return tuple(sequences), tuple(problems)


def _name_lesions(found: Discovery, dataset: DatasetConfig, roi_names: bool) -> None:
    """Archive segmentations: which segments are lesions, and one label value per lesion name per patient.

    The segment label / ROI name is the lesion's identity across time points; its organ comes from the
    SEG's anatomic region where present. Segments that are not lesions are listed in the notes.
    """
    from imaging.io.segments import lesion_segment
    from imaging.segmentation.metadata import LesionMetadata

    include, exclude = dataset.segmentations.include, dataset.segmentations.exclude
    for patient_id, tps in found.patients.items():
        picks: dict[int, list[tuple[int, str]]] = {}
        organs: dict[str, str] = {}
        for i, tp in enumerate(tps):
            if tp.segmentation is None:
                continue
            chosen = []
            if tp.segmentation.kind == "RTSTRUCT":
                found.free_text.update(item.name for item in tp.segmentation.items)
            for item in tp.segmentation.items:
                ok, why = lesion_segment(item.name, item.kind, item.category, include=include, exclude=exclude)
                if ok:
                    chosen.append((item.number, item.name))
                    if item.organ:
                        organs.setdefault(item.name, item.organ.lower())
                else:
                    found.problems.append(f"patient {patient_id}, {tp.study_date.isoformat()}: {tp.segmentation.kind} "
                                          f"{tp.segmentation.path.name}: {why}")
            picks[i] = chosen
            if not chosen:
                found.problems.append(f"patient {patient_id}, {tp.study_date.isoformat()}: {tp.segmentation.path} holds no "
                                      "lesion segment (see dataset.segmentations.include/exclude)")
        names = sorted({name for chosen in picks.values() for _, name in chosen}, key=str.lower)
        label_of = {name: k for k, name in enumerate(names, start=1)}
        shown = {name: name if roi_names or name not in found.free_text else f"R{k}" for name, k in label_of.items()}
        duplicates = {name for chosen in picks.values() for name in {n for _, n in chosen}
                      if sum(1 for _, n in chosen if n == name) > 1}
        for i, chosen in picks.items():
            tp = tps[i]
            if duplicates & {n for _, n in chosen}:
                twice = sorted(duplicates & {n for _, n in chosen})
                tps[i] = dataclasses.replace(tp, problem=(
                    f"{tp.segmentation.path if tp.segmentation else ''}: segment name(s) {twice} given to more than one "
                    "segment; a lesion's name is its identity, so each must be unique (rename them, or exclude one)"))
                continue
            tps[i] = dataclasses.replace(tp, lesion_segments=tuple((number, label_of[name], shown[name])
                                                                   for number, name in chosen))
        found.lesion_metadata[patient_id] = {
            label: LesionMetadata(lesion_id=shown[name], organ=organs.get(name, "unknown")) for name, label in label_of.items()
        }


def load_clinical(path: Path | None) -> dict[str, ClinicalContext]:
    """Read the clinical CSV: one row per patient (patient_id, treatment_start, radiotherapy_end, immunotherapy,
    and optionally tumour: enhancing / non_enhancing / mixed, for gliomas)."""
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
