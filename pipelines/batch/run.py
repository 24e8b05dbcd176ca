"""`run`: discover -> register, measure and track (tasks, cached, on an executor) -> assess -> tables -> DICOM
export (tasks) -> summary, provenance and report.

The stages are named functions composed by :func:`_run_locked`: :func:`stage_patients` (the tasks of every scan
and patient, returning :class:`Staged`), :func:`assess_patient` (a course and its calls: :class:`PatientResult`),
:func:`export_dicom` (:class:`ExportOutcome`). Each takes what it needs and returns what it made, failures and
notes included; none writes into the run's summary. One failing time point or patient is recorded with its
reason and the run goes on. Every task's state is in the ledger; results are cached by content, so a rerun, or a
run resumed after being killed, recomputes only what is missing and ends with the same result files.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from imaging.io import default_catalogue
from imaging.registration.tracking import TrackingResult
from imaging.report import timeline_table, write_report
from imaging.response import CourseError, assess, course_from_dict
from imaging.segmentation import load_lesion_metadata
from pipelines.batch.cache import code_version
from pipelines.batch.executor import make_executor
from pipelines.batch.ledger import Ledger
from pipelines.batch.tasks import align_job, export_job, figures_job, measure_job, track_job
from pipelines.config import RunConfig
from pipelines.dataset.alignment import AlignSpec, TrackInput, tracking_by_labels, tracking_from_dict
from pipelines.dataset.course_builder import FailedTimepoint, baseline_position, build_course
from pipelines.dataset.discover import ClinicalContext, TimepointSource, Visit, discover, load_clinical, load_visits
from pipelines.dataset.stages import Extras, MeasuredTimepoint, StageError, measured_from_dict, where_of
from pipelines.outputs.files import RunOutputs
from pipelines.outputs.privacy import PrivacyError, Pseudonymiser

log = logging.getLogger("tumor_response.run")

LESION_COLUMNS = (
    "patient_id", "date", "lesion_id", "label", "organ", "nodal", "status", "n_voxels", "volume_mm3",
    "long_axis_mm", "short_axis_mm", "perpendicular_mm", "bidimensional_product_mm2", "max_3d_diameter_mm",
    "center_lps", "long_axis_end0_lps", "long_axis_end1_lps", "short_axis_end0_lps", "short_axis_end1_lps",
    "long_axis_slice", "slice_thickness_mm",
    "study_uid", "series_uid", "tracking", "tracked_by", "compartment", "sequence",
)
RESPONSE_COLUMNS = (
    "patient_id", "date", "criterion", "response", "flags", "reason", "sum_mm", "sum_products_mm2",
    "sum_volume_mm3", "change_from_baseline_pct", "change_from_nadir_pct", "days_since_baseline",
)
REGISTRATION_COLUMNS = (
    "patient_id", "date", "status", "rotation_deg", "scale_min", "scale_max", "translation_mm", "metric_initial",
    "metric_final", "landmarks", "landmark_error_mm", "landmark_error_max_mm", "seconds", "transform_file", "problems",
    "registered",
)
BEST_COLUMNS = ("patient_id", "criterion", "response", "date", "reason")
FAILURE_COLUMNS = ("patient_id", "date", "stage", "reason")
#: series.csv: every volume considered for each DICOM time point, the one chosen and why, the others and why not.
SERIES_COLUMNS = ("patient_id", "date", "role", "chosen", "series_number", "series_uid", "volume_id", "modality",
                  "description", "image_type", "kernel", "slice_thickness_mm", "contrast", "contrast_agent", "plane",
                  "n_slices",
                  "reason")
RADIOMICS_COLUMNS = ("patient_id", "date", "lesion_id", "feature", "value", "change", "change_pct")
_PROVENANCE_PACKAGES = ("tumor-response", "numpy", "scipy", "SimpleITK", "pydicom", "nibabel", "scikit-image",
                        "pyradiomics-bhklab", "pydantic", "dask", "distributed", "pyarrow")


@dataclass
class RunSummary:
    output_dir: Path
    n_patients: int = 0
    n_timepoints: int = 0
    n_cached: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    lesion_rows: list[dict[str, Any]] = field(default_factory=list)
    response_rows: list[dict[str, Any]] = field(default_factory=list)
    best_rows: list[dict[str, Any]] = field(default_factory=list)
    radiomics_rows: list[dict[str, Any]] = field(default_factory=list)
    registration_rows: list[dict[str, Any]] = field(default_factory=list)
    series_rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    task_seconds: float = 0.0
    cache_seconds: float = 0.0  # hashing inputs + cache reads/writes, summed over tasks
    ledger_seconds: float = 0.0
    dispatch_seconds: float = 0.0  # main process waiting on/handling the executor beyond the tasks' own time


def _fmt(value: Any, ndigits: int = 2) -> Any:
    return round(value, ndigits) if isinstance(value, float) else value


def _config_hash(config: RunConfig) -> str:
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]


def _attach_log_file(outputs: RunOutputs) -> logging.Handler:
    handler = outputs.log_handler()
    logging.getLogger("highdicom").setLevel(logging.WARNING)  # a line per copied module of every source image
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handler


def _metadata_path(config: RunConfig, patient_id: str) -> Path | None:
    if not config.dataset.lesion_metadata:
        return None
    return config.dataset.root / config.dataset.lesion_metadata.format(patient_id=patient_id, study_date="", timepoint="")


def _lesion_metadata(config: RunConfig, patient_id: str, archive: dict[str, dict]) -> dict:
    """label -> LesionMetadata of a patient: from the sidecar, or named after the archive's segments.

    Raises ``ValueError`` for a sidecar that cannot be read.
    """
    if config.dataset.source == "archive":
        return archive.get(patient_id, {})
    return load_lesion_metadata(_metadata_path(config, patient_id))


def _extras(config: RunConfig, patient_id: str, outputs: RunOutputs, archive: dict[str, dict]) -> Extras:
    """Snapshots and radiomics a patient's measure tasks make (lesion names from the sidecar when readable;
    a sidecar that cannot be read fails the patient's assessment, where it is recorded)."""
    try:
        names = tuple(sorted((k, v.lesion_id) for k, v in _lesion_metadata(config, patient_id, archive).items()))
    except ValueError:
        names = ()
    params = None
    if config.radiomics.enabled:
        from imaging.measurement.radiomics import DEFAULT_PARAMS

        params = config.radiomics.params or DEFAULT_PARAMS
    return Extras(
        snapshot_dir=outputs.patient_dir("snapshots", patient_id) if config.outputs.snapshots else None,
        lesion_names=names,
        radiomics_params=params,
        mr_settings=tuple(sorted(config.radiomics.mr_settings.items())),
    )


@dataclass
class Staged:
    """What the per-scan and per-patient stages gave: measurements, registrations, tracking, and what failed (rows
    of failures.csv) or is worth a note."""

    measured: dict[tuple[str, dt.date], MeasuredTimepoint | FailedTimepoint] = field(default_factory=dict)
    aligned: dict[tuple[str, dt.date], dict[str, Any]] = field(default_factory=dict)
    tracking: dict[str, TrackingResult | str] = field(default_factory=dict)  # patient -> result, or why it failed
    tracked_by: dict[str, dict[dt.date, str]] = field(default_factory=dict)
    untracked: dict[str, dict[dt.date, str]] = field(default_factory=dict)  # patient -> scan -> why not tracked
    failures: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def baseline_of(scans: list[TimepointSource], context: ClinicalContext | None) -> TimepointSource:
    """The patient's baseline scan: the last on or before the treatment start (course-format.md), else the first."""
    scans = sorted(scans, key=lambda t: t.study_date)
    start = context.treatment_start if context is not None else None
    return scans[baseline_position([t.study_date for t in scans], start)]


Batch = tuple[str, str, list[tuple[tuple[str, str | None], Any, tuple]]]  # (kind, progress label, jobs)


class TaskRunner:
    """Runs tasks on the executor, recording each in the ledger and on the console, and counting their time.

    ``disclose`` turns a console line into what the outputs may show (identifiers replaced, see
    :mod:`pipelines.outputs.privacy`).
    """

    def __init__(self, executor: Any, ledger: Ledger, console: Console, disclose: Callable[[str], str]) -> None:
        self.executor, self.ledger, self.console, self.disclose = executor, ledger, console, disclose
        self.task_seconds = 0.0
        self.cache_seconds = 0.0  # hashing inputs + cache reads/writes, summed over tasks
        self.n_cached = 0  # measure tasks taken from the cache

    def progress(self) -> Progress:
        """A progress display for one phase (shown on a terminal only)."""
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=self.console, disable=not self.console.is_terminal)

    def run(self, progress: Progress, *batches: Batch) -> Iterator[tuple[tuple[str, tuple[str, str | None]], Any]]:
        """Run the batches together on the executor, in the order given (the longest tasks first keeps both workers
        busy), and yield ``((kind, (patient, date)), outcome)``: the task's result dict, or the reason it failed
        (a str)."""
        tagged = [((kind, tag), fn, args) for kind, _, jobs in batches for tag, fn, args in jobs]
        bars = {kind: progress.add_task(label, total=len(jobs)) for kind, label, jobs in batches if jobs}
        ids = {}
        for (kind, (pid, date)), _, _ in tagged:
            task_id = f"{kind}:{pid}" + (f":{date}" if date else "")
            ids[(kind, (pid, date))] = task_id
            self.ledger.register(task_id, kind, pid, date, None)
            self.ledger.running(task_id)
        if not tagged:
            return
        for tag, outcome in self.executor.run(tagged):
            kind, task_id = tag[0], ids[tag]
            result: Any
            if isinstance(outcome, BaseException):
                reason = str(outcome) if isinstance(outcome, StageError) else f"{type(outcome).__name__}: {outcome}"
                result = reason
                self.ledger.failed(task_id, 0.0, result)
                log.error("%s failed: %s", task_id, result)
            else:
                result = outcome
                self.ledger.done(task_id, outcome["seconds"], cached=outcome["cached"])
                self.task_seconds += outcome["seconds"]
                self.cache_seconds += outcome.get("cache_seconds", 0.0)
                self.n_cached += int(outcome["cached"] and kind == "measure")
                log.info("%s %s in %.2f s", task_id, "cached" if outcome["cached"] else "done", outcome["seconds"])
            progress.advance(bars[kind])
            if not self.console.is_terminal:
                self.console.log(self.disclose(f"{task_id}: " + ("failed" if isinstance(result, str) else
                                                                 "cached" if result["cached"] else "done")))
            yield tag, result


def _landmarks(config: RunConfig, tp: TimepointSource) -> Path | None:
    template = config.registration.landmarks
    if not template:
        return None
    return config.dataset.root / template.format(patient_id=tp.patient_id, study_date=tp.study_date.isoformat(),
                                                 timepoint=tp.timepoint or "")


def _first_jobs(config: RunConfig, patients: dict[str, list[TimepointSource]],
                baselines: dict[str, TimepointSource], outputs: RunOutputs, extras_of: dict[str, Extras],
                cache_root: Path | None) -> tuple[list, list, dict[tuple[str, str], TimepointSource]]:
    """(align jobs, measure jobs, scans deferred until their registration has carried the baseline's mask over)."""
    method = config.tracking.method
    align_jobs, measure_jobs, deferred = [], [], {}
    for pid in sorted(patients):
        base = baselines.get(pid)
        for tp in sorted(patients[pid], key=lambda t: t.study_date):
            tag = (pid, tp.study_date.isoformat())
            needs_mask = not tp.has_mask and tp.problem is None
            # Neither an unusable scan nor one of an unusable baseline is registered (its measure task says why).
            usable = base is not None and tp.problem is None and base.problem is None and tp is not base
            if usable and method != "labels" and (method == "registration" or needs_mask):
                spec = AlignSpec(
                    baseline=base, scan=tp,
                    transform_path=outputs.patient_dir("transforms", pid) / f"{tp.study_date.isoformat()}.tfm" if method == "registration" else None,
                    propagated_mask_path=outputs.patient_dir("masks", pid) / f"{tp.study_date.isoformat()}.nii.gz",
                    landmarks=(lm0, lm1) if (lm0 := _landmarks(config, base)) and (lm1 := _landmarks(config, tp)) else None,
                )
                align_jobs.append((tag, align_job, (spec, config.registration, config.lesions, cache_root)))
                if needs_mask:
                    deferred[tag] = tp
                    continue
            measure_jobs.append((tag, measure_job, (tp, config.lesions, cache_root, extras_of[pid])))
    return align_jobs, measure_jobs, deferred


def _record_measure(staged: Staged, tp: TimepointSource, outcome: Any) -> None:
    key = (tp.patient_id, tp.study_date)
    if isinstance(outcome, str):
        staged.failures.append({"patient_id": tp.patient_id, "date": tp.study_date.isoformat(),
                                "stage": "measure", "reason": outcome})
        staged.measured[key] = FailedTimepoint(tp.patient_id, tp.study_date, outcome)
        return
    staged.measured[key] = measured_from_dict(outcome["result"], tp)
    staged.notes.extend(f"measure:{tp.patient_id}:{tp.study_date.isoformat()}: {p}" for p in staged.measured[key].problems)


def _carried_over_jobs(config: RunConfig, staged: Staged, deferred: dict[tuple[str, str], TimepointSource],
                       extras_of: dict[str, Extras], cache_root: Path | None) -> list:
    """Measure jobs of the scans without a mask, on the baseline's lesions their registration carried over; a scan
    whose carrying-over failed is a failed time point."""
    later = []
    for tag, tp in deferred.items():
        aligned = staged.aligned.get((tp.patient_id, tp.study_date))
        if aligned is None or not aligned.get("mask_file"):
            reason = (aligned or {}).get("mask_error") or f"{where_of(tp)}: {tp.missing_mask()}"
            if not (aligned or {}).get("task_failed"):  # a failed align task is already a failure row
                staged.failures.append({"patient_id": tp.patient_id, "date": tp.study_date.isoformat(),
                                        "stage": "segment", "reason": reason})
            staged.measured[(tp.patient_id, tp.study_date)] = FailedTimepoint(tp.patient_id, tp.study_date, reason)
            continue
        carried = dataclasses.replace(tp, mask_path=Path(aligned["mask_file"]), segmentation=None, lesion_segments=())
        later.append((tag, measure_job, (carried, config.lesions, cache_root, extras_of[tp.patient_id])))
    return later


def _track_jobs(config: RunConfig, staged: Staged, patients: dict[str, list[TimepointSource]],
                baselines: dict[str, TimepointSource], sources: dict[tuple[str, str], TimepointSource],
                cache_root: Path | None) -> list:
    """One tracking job per patient whose baseline was measured (by labels, tracking is done here, at once)."""
    method = config.tracking.method
    track_jobs = []
    for pid in sorted(patients):
        base = baselines.get(pid)
        if base is None:
            continue
        scans = [sources[(pid, tp.study_date.isoformat())] for tp in patients[pid]]
        ok = [t for t in scans if isinstance(staged.measured.get((pid, t.study_date)), MeasuredTimepoint)]
        how: dict[dt.date, str] = {}
        staged.tracked_by[pid] = how
        untracked: dict[dt.date, str] = {}
        staged.untracked[pid] = untracked
        if not any(t.study_date == base.study_date for t in ok):
            continue  # the baseline failed: the patient's assessment says so
        if method == "labels":
            staged.tracking[pid] = tracking_by_labels(
                base.study_date, {t.study_date: [m.label for m in staged.measured[(pid, t.study_date)].lesions] for t in ok})
            how.update({t.study_date: "labels" for t in ok if t.study_date != base.study_date})
            continue
        inputs = []
        base_item = None
        for t in ok:
            item_transform = None
            aligned = staged.aligned.get((pid, t.study_date)) or {}
            if aligned.get("transform_file"):
                item_transform = Path(aligned["transform_file"])
            elif method == "registration" and t.study_date != base.study_date and config.registration.on_failure == "not_evaluated":
                untracked[t.study_date] = "registration to the baseline not usable: not evaluated"
                continue
            item = TrackInput(t, staged.measured[(pid, t.study_date)].geometry, item_transform)
            if t.study_date == base.study_date:
                base_item = item
            else:
                inputs.append(item)
                how[t.study_date] = "registration" if item_transform else "scanner"
        track_jobs.append(((pid, None), track_job, (base_item, inputs, config.lesions, config.tracking, cache_root)))
    return track_jobs


def stage_patients(
    config: RunConfig, patients: dict[str, list[TimepointSource]], clinical: dict[str, ClinicalContext],
    archive: dict[str, dict], outputs: RunOutputs, runner: TaskRunner,
) -> Staged:
    """Register every scan to its baseline, measure every scan, track every patient's lesions.

    Registrations and measurements of scans with a mask run together; a scan without a mask is
    measured on the baseline's lesions carried over by its registration, once that is done; tracking
    runs per patient at the end. One failing task is recorded (``Staged.failures``) and the others go on.
    """
    staged = Staged()
    cache_root = config.output_dir / "cache" if config.cache else None
    extras_of = {pid: _extras(config, pid, outputs, archive) for pid in sorted(patients)}
    baselines = {pid: baseline_of(tps, clinical.get(pid)) for pid, tps in patients.items() if tps}
    align_jobs, measure_jobs, deferred = _first_jobs(config, patients, baselines, outputs, extras_of, cache_root)
    sources = {(pid, tp.study_date.isoformat()): tp for pid, tps in patients.items() for tp in tps}

    with runner.progress() as progress:
        # Registrations first: the longest tasks start first, measurements fill the gaps.
        for tag, outcome in runner.run(progress, ("align", "register", align_jobs), ("measure", "measure", measure_jobs)):
            if tag[0] == "align":
                _record_align(config, staged, sources[tag[1]], outcome)  # type: ignore[index]
            else:
                _record_measure(staged, sources[tag[1]], outcome)  # type: ignore[index]
        later = _carried_over_jobs(config, staged, deferred, extras_of, cache_root)
        for tag, _, args in later:
            sources[tag] = args[0]  # the scan with its carried-over mask
        for (_, tag), outcome in runner.run(progress, ("measure", "measure (carried-over masks)", later)):
            _record_measure(staged, sources[tag], outcome)  # type: ignore[index]

        track_jobs = _track_jobs(config, staged, patients, baselines, sources, cache_root)
        for (_, (pid, _)), outcome in runner.run(progress, ("track", "track", track_jobs)):
            if isinstance(outcome, str):
                staged.tracking[pid] = outcome
                staged.failures.append({"patient_id": pid, "date": "", "stage": "track", "reason": outcome})
            else:
                staged.tracking[pid] = tracking_from_dict(outcome["result"])
    return staged


def _record_align(config: RunConfig, staged: Staged, tp: TimepointSource, outcome: Any) -> None:
    """Keep an align task's outcome; a registration that is not usable is a failure row (the scan is then not
    evaluated, or tracked in scanner coordinates: ``registration.on_failure``)."""
    pid, date = tp.patient_id, tp.study_date.isoformat()
    if isinstance(outcome, str):
        staged.failures.append({"patient_id": pid, "date": date, "stage": "register", "reason": outcome})
        staged.aligned[(tp.patient_id, tp.study_date)] = {"registration": {"status": "failed", "problems": [outcome]},
                                                          "transform_file": None, "mask_file": None, "task_failed": True,
                                                          "mask_error": outcome, "mask_problems": [], "landmarks": 0,
                                                          "mask_found": {}}
        return
    result = outcome["result"]
    staged.aligned[(tp.patient_id, tp.study_date)] = result
    reg = result.get("registration")
    if reg is not None and reg["status"] != "ok":
        staged.failures.append({
            "patient_id": pid, "date": date, "stage": "register",
            "reason": f"registration to the baseline {reg['status']}: {'; '.join(reg['problems'])}; not used: "
                      + ("this scan is not evaluated (registration.on_failure)" if config.registration.on_failure == "not_evaluated"
                         else "its lesions are matched in scanner coordinates"),
        })
    for problem in result.get("mask_problems", []):
        staged.notes.append(f"segment:{pid}:{date}: {problem}")
    if result.get("mask_file"):
        staged.notes.append(f"segment:{pid}:{date}: no mask given; the baseline's lesions were carried over by "
                            f"registration and segmented ({os.path.relpath(result['mask_file'], config.output_dir)}); "
                            "only lesions known at baseline are looked for this way, not new ones")


@dataclass
class PatientResult:
    """One patient's assessment: the course (None when it could not be built), its table rows, and why it failed
    (``failure``: a failures.csv row's reason; ``skipped``: the ledger's reason when an earlier stage's failure
    row says it already)."""

    patient_id: str
    course: dict[str, Any] | None = None
    lesion_rows: list[dict[str, Any]] = field(default_factory=list)
    response_rows: list[dict[str, Any]] = field(default_factory=list)
    best_rows: list[dict[str, Any]] = field(default_factory=list)
    radiomics_rows: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None
    failure: str | None = None
    skipped: str | None = None


def assess_patient(
    config: RunConfig, patient_id: str, sources: list[TimepointSource], staged: Staged,
    context: ClinicalContext | None, visits: list[Visit], archive: dict[str, dict],
) -> PatientResult:
    """Build the patient's course from the stages' results and assess it by every criterion of the config."""
    result = PatientResult(patient_id)
    try:
        metadata = _lesion_metadata(config, patient_id, archive)
        tps = [staged.measured[(patient_id, tp.study_date)] for tp in sources]
        tracking = staged.tracking.get(patient_id)
        if isinstance(tracking, str):  # already a failure row (stage track)
            result.skipped = "not assessed: tracking failed"
            return result
        if tracking is None:  # the baseline could not be measured: build_course says so
            tracking = tracking_by_labels(baseline_of(sources, context).study_date, {})
        not_found = {date: {int(k) for k, found in a.get("mask_found", {}).items() if not found}
                     for (pid, date), a in staged.aligned.items() if pid == patient_id}
        course_dict, rows, note = build_course(patient_id, tps, context, metadata, tracking,
                                               config.lesions.default_organ, visits, config.tracking.too_small_mm,
                                               staged.tracked_by.get(patient_id), not_found,
                                               staged.untracked.get(patient_id),
                                               flair_increase_pct=config.lesions.flair_increase_pct
                                               if config.lesions.compartments is not None else None)
        result.note = note
        result.course = course_dict
        course = course_from_dict(course_dict, source=f"patient {patient_id} (built from measurements)")
        for criterion in config.criteria:
            assessment = assess(course, criterion)
            result.response_rows.extend(_response_row(patient_id, criterion, t) for t in assessment.timepoints)
            bor = assessment.best_overall_response
            result.best_rows.append({
                "patient_id": patient_id, "criterion": criterion, "response": bor.response,
                "date": bor.date.isoformat() if isinstance(bor.date, dt.date) else bor.date, "reason": bor.reason,
            })
    except (ValueError, CourseError) as exc:
        result.failure = str(exc)
        result.response_rows, result.best_rows = [], []
        return result
    result.lesion_rows = rows
    names = {(r["date"], r["label"]): r["lesion_id"] for r in rows
             if r["label"] is not None and r["status"] not in ("coalesced", "untracked")}
    result.radiomics_rows = _radiomics_rows(patient_id, tps, names)
    return result


def _response_row(patient_id: str, criterion: str, t: Any) -> dict[str, Any]:
    return {
        "patient_id": patient_id, "date": t.date.isoformat(), "criterion": criterion,
        "response": t.response, "flags": ";".join(t.flags), "reason": t.reason,
        "sum_mm": _fmt(t.sum_mm), "sum_products_mm2": _fmt(t.sum_products_mm2),
        "sum_volume_mm3": _fmt(t.sum_volume_mm3),
        "change_from_baseline_pct": _fmt(t.change_from_baseline_pct, 1),
        "change_from_nadir_pct": _fmt(t.change_from_nadir_pct, 1),
        "days_since_baseline": t.days_since_baseline,
    }


def _assess_all(config: RunConfig, found: Any, staged: Staged, clinical: dict[str, ClinicalContext],
                visits: dict[str, list[Visit]], ledger: Ledger) -> Iterator[PatientResult]:
    """Every patient's assessment, in patient order, each a ledger task of its own."""
    for patient_id in sorted(found.patients):
        task_id = f"assess:{patient_id}"
        ledger.register(task_id, "assess", patient_id, None, None)
        ledger.running(task_id)
        t0 = time.perf_counter()
        result = assess_patient(config, patient_id, found.patients[patient_id], staged, clinical.get(patient_id),
                                visits.get(patient_id, []), found.lesion_metadata)
        reason = result.failure or result.skipped
        if reason is not None:
            ledger.failed(task_id, time.perf_counter() - t0, reason)
            if result.failure is not None:
                log.error("%s failed: %s", task_id, reason)
        else:
            ledger.done(task_id, time.perf_counter() - t0)
        yield result


@dataclass
class ExportOutcome:
    """What the DICOM export gave: failures.csv rows and notes."""

    failures: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def export_dicom(config: RunConfig, started: dt.datetime, runner: TaskRunner, figures: Path | None = None) -> ExportOutcome:
    """DICOM SEG + SR per DICOM patient-time point (outputs.dicom), one task per time point on the run's workers,
    from the result files already written; with ``figures``, the report's figures are drawn there by a task beside
    them. Failures are recorded, the run goes on."""
    from pipelines.dicom.export import ExportError, plan_export

    outcome = ExportOutcome()
    if config.dataset.kind != "dicom":
        outcome.notes.append(f"outputs.dicom: the dataset is {config.dataset.kind}; DICOM SEG/SR are made only for DICOM sources")
        return outcome
    try:
        plan, exported = plan_export(config.output_dir, config.output_dir / "dicom", config=config, created=started)
    except ExportError as exc:
        outcome.failures.append({"patient_id": "", "date": "", "stage": "export", "reason": str(exc)})
        return outcome
    jobs = [((job.tp.patient_id, job.tp.study_date.isoformat()), export_job, (job,)) for job in plan]
    batches: list[Batch] = [("export", "export", jobs)]
    if figures is not None:
        shutil.rmtree(figures, ignore_errors=True)
        batches.insert(0, ("figures", "report figures", [(("report", None), figures_job, (config.output_dir, figures))]))
    with runner.progress() as progress:
        for tag, result in runner.run(progress, *batches):
            if tag[0] == "figures":
                if isinstance(result, str):  # the page draws them itself
                    log.warning("report figures ahead of the page failed: %s", result)
                continue
            if isinstance(result, str):
                exported.failed.append(result)
                continue
            exported.written.extend(Path(p) for p in result["written"])
            exported.failed.extend(result["failed"])
    outcome.failures.extend({"patient_id": "", "date": "", "stage": "export", "reason": m} for m in exported.failed)
    outcome.notes.extend(f"export: {m}" for m in exported.skipped)
    outcome.notes.append(f"DICOM SEG/SR: {len(exported.written)} object(s) under {config.output_dir / 'dicom'}")
    return outcome


class RunError(RuntimeError):
    """The run cannot start (unwritable or full output folder, unusable privacy settings)."""


#: Free space the output folder must have before a run starts (results, cache and report of a batch).
MIN_FREE_MB = 200


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """One run at a time per output folder; the kernel drops the lock when a run dies, even by SIGKILL.

    Holding it, temporary files left by a killed run (``.<name>.*.tmp``) are removed: nobody else can
    be writing them.
    """
    fh = (out / ".lock").open("a")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise RunError(f"output folder {out} is in use by another run") from None
    try:
        for stale in out.rglob(".*.tmp"):
            stale.unlink(missing_ok=True)
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def preflight(out: Path) -> None:
    """Check, before any work, that the output folder can be created, written and has room."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as exc:
        raise RunError(f"output folder {out} is not writable: {exc.strerror or exc}") from None
    free_mb = shutil.disk_usage(out).free / 2**20
    if free_mb < MIN_FREE_MB:
        raise RunError(f"output folder {out}: only {free_mb:.0f} MB free, {MIN_FREE_MB} MB needed")


def run_pipeline(config: RunConfig, console: Console | None = None) -> RunSummary:
    """Run ``config`` end to end and write its outputs under ``config.output_dir``.

    Raises
    ------
    RunError
        Before any work, when the output folder is unusable or the privacy settings are.
    """
    console = console or Console(stderr=True)
    started_wall = dt.datetime.now(dt.timezone.utc)
    started = time.perf_counter()
    out = config.output_dir
    preflight(out)
    try:
        anon = Pseudonymiser(config.privacy)
    except PrivacyError as exc:
        raise RunError(str(exc)) from None
    with output_lock(out):
        return _run_locked(config, console, RunOutputs(out, anon), started_wall, started)


def _run_locked(
    config: RunConfig, console: Console, outputs: RunOutputs, started_wall: dt.datetime, started: float
) -> RunSummary:
    """The run, composed of its stages: discover -> register, measure and track (tasks) -> assess each patient ->
    result tables -> DICOM export (tasks) -> summary, provenance and report.

    Each stage takes what it needs and returns what it made; the summary is put together here, and every file is
    written through ``outputs``, which replaces identifiers as it writes (:mod:`pipelines.outputs.privacy`): the
    stages work on the archive's own ids. The summary returned is as the outputs show it.
    """
    out = config.output_dir
    handler = _attach_log_file(outputs)
    ledger = Ledger(out / "ledger.sqlite", disclose=outputs.text)
    run_id = ledger.start_run(_config_hash(config))
    summary = RunSummary(output_dir=out)
    try:
        # The header catalogue speeds up reruns; it holds what the headers say (names, descriptions), so it lives
        # beside the archive it describes (where `index` keeps it too), never among the outputs.
        found = discover(config.dataset, catalogue=default_catalogue(config.dataset.root),
                         roi_names=config.privacy.keep_identifiers)
        clinical = load_clinical(config.dataset.clinical)
        visits = load_visits(config.dataset.visits)
        summary.notes.extend(_discovery_notes(found))
        summary.series_rows = found.series_rows
        summary.n_patients = len(found.patients)
        summary.n_timepoints = sum(len(tps) for tps in found.patients.values())
        outputs.anon.register(found.patients)
        outputs.anon.register_descriptions([*(r[k] for r in found.series_rows for k in ("description", "contrast_agent")),
                                            *found.free_text])
        figures = None  # the report's figures, drawn ahead on a worker when there is an export to overlap
        with make_executor(config.executor) as executor:  # one pool for the stages and the DICOM export
            runner = TaskRunner(executor, ledger, console, outputs.text)
            staged = stage_patients(config, found.patients, clinical, found.lesion_metadata, outputs, runner)
            summary.failures.extend(staged.failures)
            summary.notes.extend(staged.notes)
            for result in _assess_all(config, found, staged, clinical, visits, ledger):
                _add_patient(summary, result, outputs)
            summary.registration_rows = _registration_rows(config, staged, outputs)
            summary.failures.sort(key=lambda f: (f["patient_id"], f["date"], f["stage"]))
            _write_tables(config, summary, outputs)
            if config.outputs.dicom:
                # The report's figures read only what is already written (the scans' failures included): they
                # are drawn on a worker beside the export tasks, and the page takes them at the end.
                outputs.csv("failures.csv", summary.failures, FAILURE_COLUMNS)
                figures = out / ".report-figures"
                exported = export_dicom(config, started_wall, runner, figures)
                summary.failures.extend(exported.failures)
                summary.notes.extend(exported.notes)
        summary.task_seconds, summary.cache_seconds, summary.n_cached = (
            runner.task_seconds, runner.cache_seconds, runner.n_cached)
        if config.dataset.kind == "dicom":
            outputs.csv("series.csv", summary.series_rows, SERIES_COLUMNS)
        outputs.csv("failures.csv", summary.failures, FAILURE_COLUMNS)
        summary.notes.sort()  # tasks add theirs as they finish, in an order that changes from run to run
        outputs.json(
            "summary.json",
            {"name": config.name, "patients": summary.n_patients, "timepoints": summary.n_timepoints,
             "failed": len(summary.failures), "criteria": list(config.criteria), "notes": summary.notes},
        )
        summary.seconds = time.perf_counter() - started
        summary.ledger_seconds = ledger.seconds
        outputs.json("provenance.json", _provenance(config, started_wall, summary))
        try:
            write_report(out, title=f"tumor-response: {config.name}", figures=figures)
        finally:
            if figures is not None:
                shutil.rmtree(figures, ignore_errors=True)
        ledger.finish_run(run_id, len(summary.failures))
    finally:
        ledger.close()
        logging.getLogger().removeHandler(handler)
        handler.close()
    return outputs.disclosed(summary)


def _discovery_notes(found: Any) -> list[str]:
    notes = list(found.problems)
    if found.skipped_files:
        notes.append(f"{len(found.skipped_files)} file(s) under the dataset root are not image DICOM and were skipped")
    return notes


def _add_patient(summary: RunSummary, result: PatientResult, outputs: RunOutputs) -> None:
    """A patient's assessment into the summary; its course file written (also when assessing it failed after)."""
    if result.note:
        summary.notes.append(f"patient {result.patient_id}: {result.note}")
    if result.course is not None:
        outputs.json(outputs.patient_file("courses", result.patient_id, ".json"), result.course)
    if result.failure is not None:
        summary.failures.append({"patient_id": result.patient_id, "date": "", "stage": "assess",
                                 "reason": result.failure})
        return
    if result.skipped is not None:
        return
    summary.lesion_rows.extend(result.lesion_rows)
    summary.radiomics_rows.extend(result.radiomics_rows)
    summary.response_rows.extend(result.response_rows)
    summary.best_rows.extend(result.best_rows)


def _write_tables(config: RunConfig, summary: RunSummary, outputs: RunOutputs) -> None:
    """The result tables: lesions (CSV and Parquet), responses, best overall responses, registrations, radiomics."""
    outputs.csv("lesions.csv", summary.lesion_rows, LESION_COLUMNS)
    outputs.parquet("lesions.parquet", summary.lesion_rows, LESION_COLUMNS)
    outputs.csv("responses.csv", summary.response_rows, RESPONSE_COLUMNS)
    outputs.csv("best_overall_response.csv", summary.best_rows, BEST_COLUMNS)
    if config.tracking.method == "registration" or summary.registration_rows:
        outputs.csv("registrations.csv", summary.registration_rows, REGISTRATION_COLUMNS)
    if config.radiomics.enabled:
        outputs.csv("radiomics.csv", summary.radiomics_rows, RADIOMICS_COLUMNS)


def _registration_rows(config: RunConfig, staged: Staged, outputs: RunOutputs | None = None) -> list[dict[str, Any]]:
    """One row per registered scan: status, the transform's rotation/scales/shift, metric, landmark error; and
    (gliomas) one per FLAIR registered to its exam's measured series, whose transform is written beside the others."""
    rows = []
    for (pid, date), aligned in sorted(staged.aligned.items()):
        reg = aligned.get("registration")
        if reg is None:
            continue
        transform = aligned.get("transform_file")
        rows.append(_registration_row(pid, date, reg, transform, config, aligned.get("landmarks", 0),
                                      "scan to baseline"))
    for (pid, date), m in sorted(staged.measured.items()):
        reg = (getattr(m, "flair", None) or {}).get("registration")
        if not reg:
            continue
        transform = None
        if outputs is not None and reg.get("affine"):
            import SimpleITK as sitk

            from imaging.registration.transforms import save_transform

            affine = sitk.AffineTransform(3)
            affine.SetMatrix(reg["affine"]["matrix"])
            affine.SetTranslation(reg["affine"]["offset"])
            transform = save_transform(affine, outputs.patient_dir("transforms", pid) / f"{date.isoformat()}_flair.tfm")
        rows.append(_registration_row(pid, date, reg, transform, config, 0, "FLAIR to measured series (same exam)"))
    return rows


def _registration_row(pid: str, date: dt.date, reg: dict, transform: Any, config: RunConfig, landmarks: int,
                      registered: str) -> dict[str, Any]:
    scales = reg.get("scales") or [None, None]
    shift = reg.get("translation_mm")
    return {
        "patient_id": pid, "date": date.isoformat(), "status": reg["status"],
        "rotation_deg": _fmt(reg.get("rotation_deg"), 3),
        "scale_min": _fmt(scales[0], 4), "scale_max": _fmt(scales[-1], 4),
        "translation_mm": _fmt(float(sum(v * v for v in shift) ** 0.5), 3) if shift else None,
        "metric_initial": _fmt(reg.get("metric_initial"), 4), "metric_final": _fmt(reg.get("metric_final"), 4),
        "landmarks": landmarks,
        "landmark_error_mm": _fmt(reg.get("landmark_error_mm"), 3),
        "landmark_error_max_mm": _fmt(reg.get("landmark_error_max_mm"), 3),
        "seconds": _fmt(reg.get("seconds"), 2),
        "transform_file": os.path.relpath(transform, config.output_dir) if transform else "",
        "problems": "; ".join(reg.get("problems", [])),
        "registered": registered,
    }


def _radiomics_rows(patient_id: str, tps: list, names: dict[tuple[str, int], str]) -> list[dict[str, Any]]:
    """Long format: one row per lesion x time point x feature, with the change since the lesion's previous scan.

    ``names``: (date, label) -> tracked lesion id, so a lesion's changes follow it whatever its label values."""
    from imaging.measurement.radiomics import feature_deltas

    rows: list[dict[str, Any]] = []
    previous: dict[str, dict[str, float]] = {}
    for tp in sorted((t for t in tps if isinstance(t, MeasuredTimepoint)), key=lambda t: t.study_date):
        for label, features in sorted(tp.radiomics.items()):
            name = names.get((tp.study_date.isoformat(), label), f"L{label}")
            deltas = feature_deltas(previous[name], features) if name in previous else {}
            for feature, value in sorted(features.items()):
                d = deltas.get(feature, {})
                rows.append({"patient_id": patient_id, "date": tp.study_date.isoformat(), "lesion_id": name,
                             "feature": feature, "value": value, "change": d.get("absolute"),
                             "change_pct": None if d.get("relative") is None else round(100 * d["relative"], 4)})
            previous[name] = features
    return rows


def _provenance(config: RunConfig, started: dt.datetime, summary: RunSummary) -> dict[str, Any]:
    versions = {}
    for name in _PROVENANCE_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "config": json.loads(config.model_dump_json()),  # SecretStr: the privacy key is dumped as '**********'
        "config_hash": _config_hash(config),
        "code_version": code_version(),
        "packages": versions,
        "python": sys.version.split()[0],
        "host": platform.node(),
        "platform": platform.platform(),
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(summary.seconds, 3),
        "task_seconds": round(summary.task_seconds, 3),
        "tasks_from_cache": summary.n_cached,
        # Orchestration overhead: what the ledger and the cache cost (hashing included), in seconds.
        "overhead_seconds": {"ledger": round(summary.ledger_seconds, 4), "cache": round(summary.cache_seconds, 4)},
    }


def print_summary(summary: RunSummary, config: RunConfig, console: Console) -> None:
    """The per-patient, per-time-point table of each criterion, then what failed and where the files are."""
    for criterion in config.criteria:
        console.print(timeline_table(summary.response_rows, criterion))
        for b in summary.best_rows:
            if b["criterion"] == criterion:
                console.print(f"  best overall response {b['patient_id']} ({criterion}): [bold]{b['response']}[/bold]"
                              f" - {b['reason']}")
    for note in summary.notes:
        console.print(f"[yellow]note[/yellow] {note}")
    if summary.failures:
        console.print(f"[red]{len(summary.failures)} failure(s)[/red]:")
        for f in summary.failures:
            console.print(f"  {f['patient_id']} {f['date']} [{f['stage']}] {f['reason']}")
    console.print(
        f"{summary.n_patients} patient(s), {summary.n_timepoints} time point(s) ({summary.n_cached} from cache), "
        f"{len(summary.failures)} failed, {summary.seconds:.1f} s. Results in {summary.output_dir}/"
    )
