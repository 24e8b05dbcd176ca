"""Stages that relate a patient's scans to each other (no image maths here: this module calls :mod:`imaging`).

* :func:`align_timepoint` (one task per follow-up or pre-baseline scan): register the scan to the
  patient's baseline, save the transform with its quality figures (a rejected one under another
  name, never used), and, when the scan has no label map, carry the baseline's lesions over: the
  baseline mask warped onto the scan starts its segmentation.
* :func:`track_patient` (one task per patient): give every lesion one id across all scans by
  overlap and centroid distance in baseline space.

Transforms follow ITK's convention (docs/registration.md): they map baseline (FIXED) LPS points to
the scan's (MOVING) LPS points.
"""

from __future__ import annotations

import csv
import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from imaging.io import Geometry, save_nifti
from imaging.io.errors import ImagingError
from imaging.registration import (
    RegistrationConfig,
    RegistrationError,
    TrackingError,
    lesion_exclusion_mask,
    load_transform,
    propagate_mask,
    register,
    save_transform,
    track_lesions,
)
from imaging.registration.tracking import BASELINE, MATCHED, NEW, LabelMatch, LesionState, TrackingResult
from imaging.segmentation import SegmentationError, segment_from_prior
from pipelines.config import LesionConfig, RegistrationSettings, TrackingConfig
from pipelines.dataset.discover import TimepointSource
from pipelines.dataset.stages import StageError, load_lesions, load_scan, where_of

#: What the figures of a registration returned to the run (the full set is in the transform's sidecar).
QUALITY_KEYS = ("status", "problems", "metric_initial", "metric_final", "rotation_deg", "scales", "translation_mm",
                "landmark_error_mm", "landmark_error_max_mm", "seconds")


@dataclass(frozen=True)
class AlignSpec:
    """One scan to relate to its patient's baseline.

    ``transform_path``: where the accepted transform goes (``.tfm``); a failed or implausible one is
    written beside it as ``<stem>.rejected.tfm`` for inspection. ``None``: no registration (the scan
    is taken to share the baseline's frame: tracking method ``scanner``). ``propagated_mask_path``:
    where the carried-over label map goes when the scan has none. ``landmarks``: the baseline's and
    the scan's landmark CSVs, when the config names them.
    """

    baseline: TimepointSource
    scan: TimepointSource
    transform_path: Path | None
    propagated_mask_path: Path
    landmarks: tuple[Path, Path] | None = None


def rejected_path(transform_path: Path) -> Path:
    return transform_path.with_name(transform_path.stem + ".rejected" + transform_path.suffix)


def read_landmarks(path: Path) -> dict[str, tuple[float, float, float]]:
    """``name,x_mm,y_mm,z_mm`` (LPS) rows of a landmarks CSV.

    Raises
    ------
    StageError
        Naming the file and line: unreadable, a missing column, a non-number, a repeated name.
    """
    out: dict[str, tuple[float, float, float]] = {}
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"name", "x_mm", "y_mm", "z_mm"} - set(reader.fieldnames or ())
            if missing:
                raise StageError(f"{path}: landmarks CSV lacks column(s) {', '.join(sorted(missing))} "
                                 "(expected name,x_mm,y_mm,z_mm in LPS mm)")
            for line, row in enumerate(reader, start=2):
                name = (row["name"] or "").strip()
                if not name:
                    raise StageError(f"{path}:{line}: name is empty")
                if name in out:
                    raise StageError(f"{path}:{line}: landmark {name!r} is listed twice")
                try:
                    point = tuple(float(row[k]) for k in ("x_mm", "y_mm", "z_mm"))
                except (TypeError, ValueError):
                    raise StageError(f"{path}:{line}: landmark {name!r}: x_mm, y_mm and z_mm must be numbers") from None
                if not all(np.isfinite(point)):
                    raise StageError(f"{path}:{line}: landmark {name!r}: coordinates must be finite")
                out[name] = point  # type: ignore[assignment]
    except OSError as exc:
        raise StageError(f"{path}: cannot read landmarks ({exc.strerror or exc})") from exc
    return out


def _landmark_pairs(spec: AlignSpec) -> tuple[tuple[tuple[float, ...], ...], tuple[tuple[float, ...], ...]] | None:
    if spec.landmarks is None:
        return None
    fixed_path, moving_path = spec.landmarks
    if not fixed_path.is_file() or not moving_path.is_file():
        return None
    fixed, moving = read_landmarks(fixed_path), read_landmarks(moving_path)
    names = sorted(set(fixed) & set(moving))
    if not names:
        return None
    return tuple(fixed[n] for n in names), tuple(moving[n] for n in names)


def registration_config(settings: RegistrationSettings) -> RegistrationConfig:
    return RegistrationConfig(
        stages=tuple(settings.stages), max_rotation_deg=settings.max_rotation_deg,
        scale_range=tuple(settings.scale_range), max_translation_mm=settings.max_translation_mm,  # type: ignore[arg-type]
    )


def _modality(scan: TimepointSource, image: sitk.Image) -> str:
    """The scan's modality: from DICOM, else CT when the image holds air at about -1000 HU."""
    if scan.series is not None and scan.series.modality in ("CT", "MR"):
        return scan.series.modality
    arr = sitk.GetArrayViewFromImage(image)
    return "CT" if float(np.percentile(arr[::4, ::4, ::4], 1)) < -500 else "MR"


def align_timepoint(spec: AlignSpec, settings: RegistrationSettings, lesions: LesionConfig) -> dict[str, Any]:
    """Register ``spec.scan`` to ``spec.baseline`` and carry the baseline's lesions over if the scan has no mask.

    Returns
    -------
    ``{"registration": {...} | None, "landmarks": int, "transform_file": str | None, "mask_file": str | None,
    "mask_problems": [...], "mask_error": str | None}``: the registration's quality figures (status "ok",
    "failed" or "implausible"), the accepted transform's file, the carried-over label map's file and what
    its segmentation could not find, or why no label map could be made.

    Raises
    ------
    StageError
        The baseline or the scan cannot be loaded (naming it), or a landmarks file is malformed.
    """
    fixed = load_scan(spec.baseline).image
    moving = load_scan(spec.scan).image
    base_labels = load_lesions(spec.baseline, fixed, lesions) if spec.baseline.has_mask else None
    scan_labels = load_lesions(spec.scan, moving, lesions) if spec.scan.has_mask else None
    out: dict[str, Any] = {"registration": None, "landmarks": 0, "transform_file": None, "mask_file": None,
                           "mask_problems": [], "mask_error": None, "mask_found": {}}
    transform: sitk.Transform | None = None
    usable = True
    if spec.transform_path is not None:
        pairs = _landmark_pairs(spec)
        out["landmarks"] = len(pairs[0]) if pairs else 0
        margin = settings.exclude_lesions_mm
        fixed_mask = lesion_exclusion_mask(base_labels, margin) if margin > 0 and base_labels is not None else None
        moving_mask = lesion_exclusion_mask(scan_labels, margin) if margin > 0 and scan_labels is not None else None
        accepted, rejected = spec.transform_path, rejected_path(spec.transform_path)
        try:
            result = register(fixed, moving, registration_config(settings), fixed_mask=fixed_mask,
                              moving_mask=moving_mask, landmarks=pairs)
        except RegistrationError as exc:
            out["registration"] = {"status": "failed", "problems": [str(exc)]}
            accepted.unlink(missing_ok=True)
            usable = False
        else:
            quality = result.to_dict()
            out["registration"] = {k: quality[k] for k in QUALITY_KEYS}
            if result.ok:
                save_transform(result, accepted)
                rejected.unlink(missing_ok=True)
                transform = result.transform
                out["transform_file"] = str(accepted)
            else:
                save_transform(result, rejected)  # for inspection; never used
                accepted.unlink(missing_ok=True)
                usable = False
    if scan_labels is None:
        if base_labels is None:
            out["mask_error"] = f"{where_of(spec.scan)}: {spec.scan.missing_mask()}, and the baseline has none to carry over"
        elif not usable:
            out["mask_error"] = (f"{where_of(spec.scan)}: {spec.scan.missing_mask()}, and the registration to the "
                                 "baseline was not usable, so the baseline's lesions cannot be carried over")
        else:
            prior = propagate_mask(base_labels, moving, transform)
            try:
                seg = segment_from_prior(moving, prior, modality=_modality(spec.scan, moving))  # type: ignore[arg-type]
            except SegmentationError as exc:
                out["mask_error"] = f"{where_of(spec.scan)}: segmenting from the baseline's lesions failed: {exc}"
            else:
                save_nifti(seg.labels, spec.propagated_mask_path)
                out["mask_file"] = str(spec.propagated_mask_path)
                out["mask_problems"] = list(seg.problems)
                out["mask_found"] = {str(k): bool(v) for k, v in seg.found.items()}
    return out


# ---------------------------------------------------------------------------------------------- tracking


@dataclass(frozen=True)
class TrackInput:
    """One scan of a patient for tracking: its source (with the label map it was measured on), its grid,
    and its accepted transform file (``None``: tracked in scanner coordinates)."""

    scan: TimepointSource
    geometry: Geometry
    transform_file: Path | None


def _grid(geometry: Geometry) -> sitk.Image:
    image = sitk.Image([int(v) for v in geometry.size], sitk.sitkUInt8)
    image.SetSpacing(tuple(float(v) for v in geometry.spacing_mm))
    image.SetOrigin(tuple(float(v) for v in geometry.origin_lps))
    image.SetDirection(tuple(float(v) for v in geometry.direction))
    return image


def track_patient(baseline: TrackInput, scans: list[TrackInput], lesions: LesionConfig,
                  tracking: TrackingConfig) -> dict[str, Any]:
    """One id per lesion across ``baseline`` and ``scans`` (any order; tracked in date order).

    Time points are named by their ISO date. Returns ``TrackingResult.to_dict()`` and the seconds taken.

    Raises
    ------
    StageError
        A label map or transform that cannot be read (naming it), or tracking's own error.
    """
    t0 = time.perf_counter()
    base_labels = load_lesions(baseline.scan, _grid(baseline.geometry), lesions)
    base_name = baseline.scan.study_date.isoformat()

    def prepared(item: TrackInput) -> tuple[str, sitk.Image, sitk.Transform | None]:
        labels = load_lesions(item.scan, _grid(item.geometry), lesions)
        transform = None
        if item.transform_file is not None:
            try:
                transform = load_transform(item.transform_file)
            except RegistrationError as exc:
                raise StageError(f"{where_of(item.scan)}: {exc}") from exc
        return item.scan.study_date.isoformat(), labels, transform

    def track(followups: list[tuple[str, sitk.Image, sitk.Transform | None]]) -> TrackingResult:
        try:
            return track_lesions(base_labels, followups, max_distance_mm=tracking.max_distance_mm,
                                 min_overlap=tracking.min_overlap, baseline_name=base_name)
        except (TrackingError, ImagingError) as exc:
            raise StageError(f"patient {baseline.scan.patient_id}: tracking failed: {exc}") from exc

    # Follow-ups in date order, each matched against the lesions as last seen; a scan before the baseline
    # is matched against the baseline alone (it must not become the reference of the follow-ups).
    after = [prepared(s) for s in sorted(scans, key=lambda s: s.scan.study_date) if s.scan.study_date > baseline.scan.study_date]
    before = [prepared(s) for s in sorted(scans, key=lambda s: s.scan.study_date) if s.scan.study_date < baseline.scan.study_date]
    result = track(after)
    for item in before:
        result = merge_tracking(result, track([item]))
    return {"tracking": result.to_dict(), "seconds": time.perf_counter() - t0}


def merge_tracking(main: TrackingResult, other: TrackingResult) -> TrackingResult:
    """``main`` plus the time points of ``other`` (the same baseline tracked to other scans): baseline ids are
    shared, lesions ``other`` found new get ids after ``main``'s. Histories keep the baseline first, then the
    other time points in date order (ISO names)."""
    base_name = main.timepoints[0]
    base_ids = {i for i, h in main.histories.items() if h[0].timepoint == base_name}
    next_id = max([*main.histories, 0]) + 1
    remap: dict[int, int] = {}
    for lid in sorted(other.histories):
        if lid in base_ids:
            remap[lid] = lid
        else:
            remap[lid], next_id = next_id, next_id + 1

    def moved(state: LesionState) -> LesionState:
        into = remap.get(state.merged_into) if state.merged_into is not None else None
        return LesionState(state.timepoint, state.status, state.labels, into, state.reappeared)

    matches = {k: dict(v) for k, v in main.matches.items()}
    for tp in other.timepoints[1:]:
        matches[tp] = {label: LabelMatch(m.label, tuple(remap[i] for i in m.lesion_ids), m.status, m.centroid_lps,
                                         m.volume_mm3, m.distance_mm, m.overlap)
                       for label, m in other.matches[tp].items()}
    histories = {k: list(v) for k, v in main.histories.items()}
    for lid, states in other.histories.items():
        extra = [moved(s) for s in states if s.timepoint != base_name]
        histories.setdefault(remap[lid], []).extend(extra)
    timepoints = (base_name, *sorted(set(main.timepoints[1:]) | set(other.timepoints[1:])))
    return TrackingResult(
        timepoints=timepoints, matches=matches,
        histories={k: (v[0], *sorted(v[1:], key=lambda s: s.timepoint)) if v[0].timepoint == base_name
                   else tuple(sorted(v, key=lambda s: s.timepoint)) for k, v in histories.items()},
    )


def tracking_from_dict(d: dict[str, Any]) -> TrackingResult:
    """The :class:`TrackingResult` of :meth:`TrackingResult.to_dict` (centroids and volumes are not kept)."""
    matches = {
        tp: {int(label): LabelMatch(int(label), tuple(m["lesion_ids"]), m["status"], (0.0, 0.0, 0.0), 0.0,
                                    m.get("distance_mm"), m.get("overlap"))
             for label, m in labels.items()}
        for tp, labels in d["labels"].items()
    }
    histories = {
        int(i): tuple(LesionState(s["timepoint"], s["status"], tuple(s["labels"]), s.get("merged_into"),
                                  bool(s.get("reappeared"))) for s in states)
        for i, states in d["lesions"].items()
    }
    return TrackingResult(timepoints=tuple(d["timepoints"]), matches=matches, histories=histories)


def tracking_by_labels(baseline_date: dt.date, labels_at: dict[dt.date, list[int]]) -> TrackingResult:
    """Tracking that trusts label values (method ``labels``): a label value is a lesion id at every scan.

    Baseline labels are "baseline"; a label seen again is "matched", one not seen before is "new" (at its
    first scan, then "matched"), a known lesion missing from a scan has "disappeared".
    """
    name = baseline_date.isoformat()
    dates = sorted(labels_at)
    base = sorted(labels_at.get(baseline_date, []))
    matches: dict[str, dict[int, LabelMatch]] = {name: {v: LabelMatch(v, (v,), BASELINE, (0.0, 0.0, 0.0), 0.0) for v in base}}
    histories: dict[int, list[LesionState]] = {v: [LesionState(name, BASELINE, (v,))] for v in base}
    order = [name]
    for d in dates:
        if d == baseline_date:
            continue
        tp = d.isoformat()
        order.append(tp)
        present = set(labels_at[d])
        if d < baseline_date:  # before the baseline: against the baseline's labels alone
            matches[tp] = {v: LabelMatch(v, (v,), MATCHED if v in base else NEW, (0.0, 0.0, 0.0), 0.0) for v in sorted(present)}
            for v in base:
                histories[v].append(LesionState(tp, MATCHED, (v,)) if v in present else LesionState(tp, "disappeared", ()))
            for v in sorted(present - set(base)):
                histories.setdefault(v, []).append(LesionState(tp, NEW, (v,)))
            continue
        matches[tp] = {}
        for v in sorted(present):
            status = MATCHED if v in histories and any(s.timepoint >= name for s in histories[v]) else NEW
            matches[tp][v] = LabelMatch(v, (v,), status, (0.0, 0.0, 0.0), 0.0)
        for v in list(histories):
            seen = [s for s in histories[v] if s.timepoint >= name]
            if not seen:  # seen only before the baseline: new if it is here
                continue
            if v in present:
                was_gone = seen[-1].status == "disappeared"
                histories[v].append(LesionState(tp, MATCHED, (v,), reappeared=was_gone))
            else:
                histories[v].append(LesionState(tp, "disappeared", ()))
        for v in sorted(present):
            if matches[tp][v].status == NEW:
                histories.setdefault(v, []).append(LesionState(tp, NEW, (v,)))
    return TrackingResult(timepoints=tuple(order), matches=matches,
                          histories={k: (v[0], *sorted(v[1:], key=lambda s: s.timepoint)) for k, v in histories.items()})
