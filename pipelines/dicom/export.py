"""Results of a run as DICOM: a SEG and an SR Measurement Report per DICOM patient-time point.

The run's outputs (``lesions.csv``, ``responses.csv``) give the lesion ids,
measurements and calls; the dataset (found again from the run's
``provenance.json``) gives the source series and label maps. Each time point's
pair is written to a staging folder and renamed into place only when both
objects are complete, so a failure leaves the previous pair or nothing.

No image maths here: this module composes :mod:`imaging.io`,
:mod:`imaging.segmentation` and :mod:`imaging.report`.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from pipelines.config import RunConfig
from pipelines.dataset.discover import TimepointSource, discover
from pipelines.outputs.files import safe_name
from pipelines.outputs.privacy import PrivacyError, Pseudonymiser, deidentify_dicom

if TYPE_CHECKING:
    from imaging.report.dicom_sr import TimePointInfo

log = logging.getLogger("tumor_response.export")

#: How provenance.json writes a secret (pydantic's SecretStr).
_MASKED_KEY = "**********"

SEG_NAME = "lesions-seg.dcm"
SR_NAME = "measurements-sr.dcm"


class ExportError(RuntimeError):
    """Nothing can be exported (no run, a NIfTI dataset, an unusable privacy key); nothing was written."""


@dataclass
class ExportSummary:
    """What an export wrote and what it left out (with why)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _software_version() -> str:
    try:
        return version("tumor-response")
    except PackageNotFoundError:
        return "0"


def load_run_config(run_dir: Path, dataset_root: Path | None = None) -> RunConfig:
    """The config a run was made with, from its ``provenance.json`` (``dataset_root`` replaces the dataset root).

    Raises
    ------
    ExportError
        No provenance, or one that does not hold a valid config.
    """
    prov = run_dir / "provenance.json"
    try:
        data = json.loads(prov.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"{prov}: cannot read the run's provenance ({exc}); is {run_dir} a run's output folder?") from exc
    raw = data.get("config")
    if not isinstance(raw, dict):
        raise ExportError(f"{prov}: no `config` in the provenance")
    if dataset_root is not None:
        raw = {**raw, "dataset": {**raw.get("dataset", {}), "root": str(dataset_root)}}
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ExportError(f"{prov}: the recorded config is not valid any more ({exc.errors()[0]['msg']})") from exc


def _pseudonymiser(config: RunConfig, key_env: str | None) -> Pseudonymiser:
    """The run's pseudonymiser: provenance masks an inline key, so it must come from an environment variable."""
    privacy = config.privacy
    if not privacy.pseudonymise:
        return Pseudonymiser(privacy)
    if key_env is None and privacy.key is not None and privacy.key.get_secret_value() != _MASKED_KEY:
        return Pseudonymiser(privacy)  # a live config (export called by `run`), not one read back from provenance
    env = key_env or privacy.key_env
    if not env:
        raise ExportError(
            "the run pseudonymised its outputs with a key given in the config, which provenance.json does not keep; "
            "put the key in an environment variable and name it with --key-env"
        )
    try:
        return Pseudonymiser(privacy.model_copy(update={"key": None, "key_env": env}))
    except PrivacyError as exc:
        raise ExportError(str(exc)) from None


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="") as fh:
            return list(csv.DictReader(fh))
    except OSError as exc:
        raise ExportError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _float(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


@dataclass(frozen=True)
class ExportJob:
    """One time point's SEG + SR to write: everything :func:`export_timepoint` needs (picklable, for a worker)."""

    tp: TimepointSource
    rows: tuple[dict, ...]
    call_rows: tuple[dict, ...]
    course: dict | None
    config: RunConfig
    target: Path
    anon: Pseudonymiser
    out_id: str
    created: dt.datetime
    carried_mask: Path | None  # the run's carried-over label map, for a scan without outlines of its own
    where: str


def plan_export(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    dataset_root: str | os.PathLike[str] | None = None,
    *,
    config: RunConfig | None = None,
    patients: Iterable[str] | None = None,
    key_env: str | None = None,
    created: dt.datetime | None = None,
) -> tuple[list[ExportJob], ExportSummary]:
    """The time points an export writes (one :class:`ExportJob` each) and those it leaves out, with why.

    Same parameters as :func:`export_run`. A run exports on its workers: :func:`export_timepoint` per job.

    Raises
    ------
    ExportError
        As :func:`export_run`, before anything is written.
    """
    run = Path(run_dir)
    out = Path(out_dir)
    if config is None:
        config = load_run_config(run, Path(dataset_root) if dataset_root is not None else None)
    elif dataset_root is not None:
        config = config.model_copy(update={"dataset": config.dataset.model_copy(update={"root": Path(dataset_root)})})
    if config.dataset.kind != "dicom":
        raise ExportError(
            f"run {run}: the dataset is {config.dataset.kind} ({config.dataset.root}); DICOM SEG and SR are made only "
            "for DICOM sources, which they reference (series, frame of reference, study). Nothing was written."
        )
    anon = _pseudonymiser(config, key_env)
    if created is None:
        created = _run_started(run)
    lesion_rows = _read_csv(run / "lesions.csv")
    response_rows = _read_csv(run / "responses.csv")
    if not config.dataset.root.is_dir():
        raise ExportError(f"dataset root {config.dataset.root} is not a folder; pass --dataset-root if it moved")

    rows_by_tp: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for row in lesion_rows:
        if row.get("compartment") in ("", None, "enhancing"):  # not a glioma's burden or compartment volumes
            rows_by_tp[(row["patient_id"], row["date"])].append(row)
    calls_by_tp: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for row in response_rows:
        calls_by_tp[(row["patient_id"], row["date"])].append(row)

    courses = _read_courses(run)
    wanted = set(patients) if patients is not None else None
    found = discover(config.dataset, roi_names=config.privacy.keep_identifiers)
    anon.register(found.patients)
    anon.register_descriptions([*(r[k] for r in found.series_rows for k in ("description", "contrast_agent")),
                                *found.free_text])
    summary = ExportSummary()
    jobs: list[ExportJob] = []
    for patient_id in sorted(found.patients):
        out_id = anon.patient(patient_id)
        if wanted is not None and out_id not in wanted and patient_id not in wanted:
            continue
        for tp in found.patients[patient_id]:
            key = (out_id, tp.study_date.isoformat())
            where = f"patient {out_id}, {key[1]}"
            rows = rows_by_tp.get(key)
            if tp.series is None:
                summary.skipped.append(f"{where}: {tp.problem or 'no DICOM image series'}")
                continue
            if not rows:
                summary.skipped.append(f"{where}: no lesion rows in the run (the time point failed or has no lesion)")
                continue
            if any(r.get("series_uid") and r["series_uid"] != anon.uid(tp.series.series_uid) for r in rows):
                summary.failed.append(f"{where}: the dataset's series differs from the run's; rerun before exporting")
                continue
            carried = None if tp.has_mask else run / "masks" / safe_name(out_id) / f"{key[1]}.nii.gz"
            jobs.append(ExportJob(tp=tp, rows=tuple(rows), call_rows=tuple(calls_by_tp.get(key, [])),
                                  course=courses.get(safe_name(out_id)), config=config,
                                  target=out / safe_name(out_id) / key[1], anon=anon, out_id=out_id, created=created,
                                  carried_mask=carried, where=where))
    return jobs, summary


def export_timepoint(job: ExportJob) -> ExportSummary:
    """Write one time point's SEG and SR (:class:`ExportJob`); a failure is recorded, never raised."""
    from imaging.io import ImagingError, load_label_map, load_series
    from imaging.report.dicom_seg import DicomExportError
    from pipelines.dataset.stages import StageError

    summary = ExportSummary()
    tp = job.tp
    try:
        image = load_series(tp.series)
        if tp.has_mask and tp.segmentation is not None:
            # The archive's SEG/RTSTRUCT: its lesion segments only, labelled as the run labelled them.
            from pipelines.dataset.stages import segment_lesions

            labels = segment_lesions(tp, image, job.config.lesions)[0]
        else:
            labels = load_label_map(tp.mask_path if job.carried_mask is None else job.carried_mask, image)
            if job.config.lesions.compartments is not None and job.carried_mask is None:
                from imaging.segmentation.compartments import compartments_from_config, enhancing_lesions

                labels = enhancing_lesions(labels, compartments_from_config(job.config.lesions.compartments))
        summary.written.extend(_export_timepoint(tp, labels, list(job.rows), list(job.call_rows), job.config,
                                                 job.target, job.anon, job.out_id, job.created, job.course))
    except (ImagingError, DicomExportError, ValueError, OSError, StageError) as exc:
        reason = job.anon.text(f"{type(exc).__name__}: {exc}")
        summary.failed.append(f"{job.where}: {reason}")
        log.error("export %s failed: %s", job.where, reason)
    except Exception as exc:  # a defect must not cost the batch its other outputs: recorded, not raised
        reason = job.anon.text(f"unexpected {type(exc).__name__}: {exc}")
        log.exception("export %s failed", job.where)
        summary.failed.append(f"{job.where}: {reason}")
    return summary


def export_run(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    dataset_root: str | os.PathLike[str] | None = None,
    *,
    config: RunConfig | None = None,
    patients: Iterable[str] | None = None,
    key_env: str | None = None,
    progress: Callable[[str], None] | None = None,
    created: dt.datetime | None = None,
) -> ExportSummary:
    """Write a DICOM SEG and an SR Measurement Report for every DICOM patient-time point of a run.

    Parameters
    ----------
    run_dir
        The run's output folder (``provenance.json``, ``lesions.csv``, ``responses.csv``).
    out_dir
        Where ``<patient>/<date>/lesions-seg.dcm`` and ``measurements-sr.dcm`` go
        (``<patient>`` as the run's outputs name it, i.e. pseudonymised if the run was).
    dataset_root
        The dataset's root when it moved since the run; default: the root in the run's config.
    config
        The run's config, when the caller has it; default: read from ``run_dir/provenance.json``.
    patients
        Export only these patients (ids as in the run's outputs).
    key_env
        Environment variable holding the privacy key of a pseudonymised run.
    progress
        Called with a line per time point done.
    created
        When the objects say they were made (instance creation, content date and time): the run's
        start (UTC); default: ``started`` of the run's ``provenance.json``. Never the clock, so the same
        run exported twice gives the same bytes.

    Returns
    -------
    ExportSummary
        Files written; time points left out (failed in the run, no lesion rows) and
        those whose export failed, each with its reason.

    Raises
    ------
    ExportError
        Before writing anything: no run there, a NIfTI dataset (DICOM SEG and SR
        need DICOM source images), an unusable privacy key.
    """
    jobs, summary = plan_export(run_dir, out_dir, dataset_root, config=config, patients=patients, key_env=key_env,
                                created=created)
    for job in jobs:
        done = export_timepoint(job)
        summary.written.extend(done.written)
        summary.failed.extend(done.failed)
        if progress and done.written:
            progress(f"{job.where}: " + ", ".join(p.name for p in done.written))
    return summary


def _read_courses(run: Path) -> dict[str, dict]:
    """The courses the run assessed (``courses/<patient>.json``), by file stem."""
    out: dict[str, dict] = {}
    for path in sorted((run / "courses").glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ExportError(f"{path}: cannot read the run's course ({exc})") from exc
    return out


def _point(value: str | None) -> tuple[float, float, float] | None:
    """``"x y z"`` (lesions.csv, LPS mm) -> a point; None when empty."""
    if not value:
        return None
    x, y, z = (float(v) for v in value.split())
    return x, y, z


def _ends(row: dict[str, str], name: str):  # -> tuple[Point, Point] | None
    """An axis's two end points from lesions.csv (``<name>_end0_lps``, ``<name>_end1_lps``); None if either is empty."""
    a, b = _point(row.get(f"{name}_end0_lps")), _point(row.get(f"{name}_end1_lps"))
    return (a, b) if a and b else None


def _course_view(course: dict | None, date: str) -> tuple[dict[str, tuple[str, dict]], TimePointInfo | None]:
    """Each lesion's (role, entry) in the course at ``date``, and the time point's place in it."""
    from imaging.report.dicom_sr import TimePointInfo
    from pipelines.dataset.course_builder import baseline_position

    if not course:
        return {}, None
    tps = course.get("timepoints", [])
    dates = [dt.date.fromisoformat(t["date"]) for t in tps]
    index = next((i for i, t in enumerate(tps) if t["date"] == date), None)
    if index is None:
        return {}, None
    ctx = course.get("context", {})
    start = dt.date.fromisoformat(ctx["treatment_start"]) if ctx.get("treatment_start") else None
    b = baseline_position(dates, start)
    entry = tps[index]
    roles: dict[str, tuple[str, dict]] = {}
    for role, key in (("target", "target"), ("non_target", "non_target"), ("new", "new_lesions")):
        for lesion in entry.get(key, []):
            roles.setdefault(str(lesion["lesion"]), (role, lesion))
    info = TimePointInfo(
        date=date, kind="baseline" if index == b else ("pre_baseline" if index < b else "follow_up"),
        order=index + 1, days_from_baseline=(dates[index] - dates[b]).days,
        context={k: ctx.get(k) for k in ("treatment_start", "radiotherapy_end", "immunotherapy", "tumour") if k in ctx},
        clinical=dict(entry.get("clinical") or {}), slice_thickness_mm=entry.get("slice_thickness_mm"),
    )
    return roles, info


def _run_started(run: Path) -> dt.datetime:
    """``started`` of a run's provenance (UTC); ExportError when it cannot be read."""
    prov = run / "provenance.json"
    try:
        return dt.datetime.fromisoformat(json.loads(prov.read_text())["started"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{prov}: no readable `started` time of the run ({exc}); is {run} a run's output folder?") from exc


#: What highdicom dates from the clock; the export dates it from the run.
_CREATED = (("InstanceCreationDate", "InstanceCreationTime"), ("ContentDate", "ContentTime"))


def _finish(path: Path, out_id: str, anon: Pseudonymiser, created: dt.datetime, deidentify: bool) -> None:
    """The written object dated from the run (nothing in it from the clock or a random draw), and de-identified per
    PS3.15's Basic Profile unless identifiers
    are kept (:func:`pipelines.outputs.privacy.deidentify_dicom`: UIDs retained, or replaced by the run's keyed
    pseudonyms when it pseudonymises)."""
    import pydicom

    ds = pydicom.dcmread(path)
    for date_kw, time_kw in _CREATED:
        if date_kw in ds:
            setattr(ds, date_kw, created.strftime("%Y%m%d"))
        if time_kw in ds:
            setattr(ds, time_kw, created.strftime("%H%M%S"))
    for item in ds.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = created.strftime("%Y%m%d%H%M%S")
    # highdicom draws the SEG's Dimension Organization UID at random: one derived from the object's own UID instead.
    organisations = {str(i.DimensionOrganizationUID) for i in ds.get("DimensionOrganizationSequence", [])}
    if organisations:
        digest = hashlib.sha256(f"{ds.SOPInstanceUID}:dimension-organization".encode()).hexdigest()
        stable = "2.25." + str(int(digest[:32], 16))
        for name in ("DimensionOrganizationSequence", "DimensionIndexSequence"):
            for item in ds.get(name, []):
                if str(item.get("DimensionOrganizationUID", "")) in organisations:
                    item.DimensionOrganizationUID = stable
    if deidentify:
        deidentify_dicom(ds, patient_id=out_id, uid=anon.uid if anon.enabled else None, identity_removed=anon.enabled,
                         own_descriptors=("SeriesDescription",))  # write_seg / write_sr name their series themselves
    ds.save_as(path, enforce_file_format=True)


def _export_timepoint(
    tp: TimepointSource, labels, rows: list[dict[str, str]], call_rows: list[dict[str, str]],
    config: RunConfig, target: Path, anon: Pseudonymiser, out_id: str, created: dt.datetime,
    course: dict | None = None,
) -> list[Path]:
    """Write one time point's SEG and SR into ``target`` (staged, then renamed); the paths written."""
    from imaging.report.dicom_seg import DicomExportError, write_seg
    from imaging.report.dicom_sr import CriterionCall, LesionRecord, write_sr
    from imaging.segmentation import lesion_label_map

    assert tp.series is not None
    labels = lesion_label_map(labels, mode=config.lesions.mode, min_volume_mm3=config.lesions.min_volume_mm3)
    # A coalesced lesion shares its label with the lesion it merged into, which names the segment.
    named = [r for r in rows if r.get("label") and r["status"] != "coalesced"]
    lesion_ids = {int(r["label"]): r["lesion_id"] for r in named}
    organs = {int(r["label"]): r.get("organ", "") for r in named}
    roles, tp_info = _course_view(course, tp.study_date.isoformat())
    records = []
    for r in rows:
        if r["status"] not in ("present", "absent", "new"):
            continue
        role, entry = roles.get(r["lesion_id"], ("", {}))

        def value(name: str, r=r, entry=entry) -> float | None:
            # The course's value is the one the criteria assessed (lesions.csv rounds it to 2 decimals).
            if name in entry:
                return None if entry[name] is None else float(entry[name])
            return _float(r.get(name))

        records.append(LesionRecord(
            lesion_id=r["lesion_id"],
            status=r["status"],
            long_axis_mm=value("long_axis_mm"),
            short_axis_mm=value("short_axis_mm"),
            perpendicular_mm=value("perpendicular_mm"),
            volume_mm3=value("volume_mm3"),
            organ=r.get("organ", ""),
            nodal=r.get("nodal", "").lower() == "true",
            long_axis_ends_lps=_ends(r, "long_axis"),
            short_axis_ends_lps=_ends(r, "short_axis"),
            role=role,
            course=entry,
        ))
    # Lesions the course holds without a row here (a non-target judged, not measured): stated too.
    listed = {rec.lesion_id for rec in records}
    for lesion_id, (role, entry) in roles.items():
        if lesion_id not in listed:
            records.append(LesionRecord(
                lesion_id=lesion_id, status="present", long_axis_mm=entry.get("long_axis_mm"),
                short_axis_mm=entry.get("short_axis_mm"), perpendicular_mm=entry.get("perpendicular_mm"),
                volume_mm3=entry.get("volume_mm3"), organ=str(entry.get("organ") or ""),
                nodal=bool(entry.get("nodal")), role=role, course=entry))
    calls = [
        CriterionCall(criterion=c["criterion"], response=c["response"] or None,
                      flags=tuple(f for f in c.get("flags", "").split(";") if f), reason=c.get("reason", ""))
        for c in call_rows
    ]
    software = _software_version()
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        seg = None
        segments: list = []
        try:
            seg, segments = write_seg(tp.series.files, labels, lesion_ids, stage / SEG_NAME, organs=organs,
                                      uid_key=anon.key, software_version=software)
        except DicomExportError as exc:
            if "no lesion voxel" not in str(exc):
                raise
            log.info("%s: %s; SR only", target, exc)
        write_sr(tp.series.files, stage / SR_NAME, records, calls, seg=seg, segments=segments,
                 time_point=tp_info or tp.study_date.isoformat(), uid_key=anon.key, software_version=software)
        for name in (SEG_NAME, SR_NAME):
            if (stage / name).is_file():
                _finish(stage / name, out_id, anon, created, deidentify=not config.privacy.keep_identifiers)
        target.mkdir(parents=True, exist_ok=True)
        written = []
        for name in (SEG_NAME, SR_NAME):
            if (stage / name).is_file():
                os.replace(stage / name, target / name)
                written.append(target / name)
            else:
                (target / name).unlink(missing_ok=True)  # a SEG of an earlier export that no longer applies
        return written
    finally:
        shutil.rmtree(stage, ignore_errors=True)
