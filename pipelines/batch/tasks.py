"""Task functions run by the executors (module level, picklable arguments, JSON-able results).

A measure task hashes its inputs, looks the result up in the cache, and only
computes on a miss; hashing happens in the worker, so it is parallel too.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pipelines.batch.cache import ResultCache, code_version, file_digest, files_digest, make_key
from pipelines.config import LesionConfig, RegistrationSettings, TrackingConfig
from pipelines.dataset.alignment import AlignSpec, TrackInput, align_timepoint, track_patient
from pipelines.dataset.discover import TimepointSource
from pipelines.dataset.stages import Extras, measure_timepoint, measured_to_dict

MEASURE_STAGE_VERSION = 3  # 2: cached results carry no identity; 3: radiomics in the result
#: What the measure stage runs: a change in these invalidates its cache entries.
MEASURE_CODE = ("imaging.io", "imaging.segmentation", "imaging.measurement", "pipelines.dataset.stages", "pipelines.dataset.discover")


def _volume(tp: TimepointSource) -> list:
    """Which volume of its files a time point is (several volumes may share files: multi-frame, split series)."""
    if tp.series is None:
        return []
    return [tp.series.volume_id.partition("#")[2], [list(f) for f in tp.series.frames]]


def measure_key(tp: TimepointSource, lesions: LesionConfig, extras: Extras | None = None) -> str:
    inputs = _source_inputs(tp)
    if tp.has_mask:
        inputs.append(tp.mask_path)
    radiomics = None
    if extras is not None and extras.radiomics_params is not None:
        radiomics = [file_digest(extras.radiomics_params), list(extras.mr_settings)]
    sequences = []
    if lesions.compartments is not None:  # the FLAIR burden reads the other sequences
        for role, source in tp.sequences:
            files = [source] if isinstance(source, Path) else [Path(f) for f in source.files]
            sequences.append([role, files_digest([f for f in files if f.is_file()])])
        sequences.append([list(p) for p in tp.sequence_problems])
    return make_key("measure", MEASURE_STAGE_VERSION, files_digest(inputs), _volume(tp), lesions.model_dump(), radiomics,
                    [list(s) for s in tp.lesion_segments], sequences, code_version(*MEASURE_CODE))


def measure_job(tp: TimepointSource, lesions: LesionConfig, cache_root: Path | None,
                extras: Extras | None = None) -> dict[str, Any]:
    """Measure one time point, through the cache when ``cache_root`` is given.

    A cached result whose snapshots are missing is recomputed (the snapshots are files, not cached).

    Returns ``{"result": <measured time point dict>, "cached": bool, "seconds": float, "key": str | None}``;
    raises :class:`pipelines.dataset.stages.StageError` for bad input.
    """
    started = time.perf_counter()
    key = None
    if cache_root is not None:
        key = measure_key(tp, lesions, extras)
        hit = ResultCache(cache_root).get(key)
        if hit is not None:
            labels = [int(lesion["label"]) for lesion in hit["lesions"]]
            if extras is None or all(p.is_file() for p in extras.snapshot_paths(tp, labels)):
                seconds = time.perf_counter() - started
                return {"result": hit, "cached": True, "seconds": seconds, "cache_seconds": seconds, "key": key}
    cache_seconds = time.perf_counter() - started  # hashing the inputs and the cache lookup
    result = measured_to_dict(measure_timepoint(tp, lesions, extras))
    if cache_root is not None and key is not None:
        t0 = time.perf_counter()
        ResultCache(cache_root).put(key, result)
        cache_seconds += time.perf_counter() - t0
    return {"result": result, "cached": False, "seconds": time.perf_counter() - started,
            "cache_seconds": cache_seconds, "key": key}


ALIGN_STAGE_VERSION = 1
#: What the align stage runs.
ALIGN_CODE = ("imaging.io", "imaging.registration", "imaging.segmentation", "pipelines.dataset.stages", "pipelines.dataset.alignment")
TRACK_STAGE_VERSION = 1
TRACK_CODE = ("imaging.io", "imaging.registration", "imaging.segmentation", "pipelines.dataset.stages", "pipelines.dataset.alignment")


def _source_inputs(tp: TimepointSource) -> list[Path]:
    inputs = list(tp.series.files) if tp.series is not None else []
    if tp.image_path is not None and tp.image_path.is_file():
        inputs.append(tp.image_path)
    return inputs


def align_key(spec: AlignSpec, settings: RegistrationSettings, lesions: LesionConfig) -> str:
    masks = [tp.mask_path for tp in (spec.baseline, spec.scan) if tp.has_mask]
    landmarks = [file_digest(p) if p.is_file() else None for p in spec.landmarks] if spec.landmarks else None
    return make_key("align", ALIGN_STAGE_VERSION, files_digest(_source_inputs(spec.baseline)), _volume(spec.baseline),
                    files_digest(_source_inputs(spec.scan)), _volume(spec.scan), [file_digest(p) for p in masks],
                    [spec.baseline.has_mask, spec.scan.has_mask],
                    [[list(s) for s in tp.lesion_segments] for tp in (spec.baseline, spec.scan)],
                    spec.transform_path is not None, settings.model_dump(), lesions.model_dump(), landmarks,
                    code_version(*ALIGN_CODE))


def align_job(spec: AlignSpec, settings: RegistrationSettings, lesions: LesionConfig,
              cache_root: Path | None) -> dict[str, Any]:
    """Register one scan to its baseline (and carry its lesions over when it has no mask), through the cache.

    A cached result is used only when the files it names (transform, carried-over mask) are still there.
    Returns ``{"result": <align_timepoint's dict>, "cached": bool, "seconds": float, "cache_seconds": float}``.
    """
    started = time.perf_counter()
    key = None
    if cache_root is not None:
        key = align_key(spec, settings, lesions)
        hit = ResultCache(cache_root).get(key)
        if hit is not None and _files_as_cached(spec, hit):
            hit = _at_spec_paths(spec, hit)
            seconds = time.perf_counter() - started
            return {"result": hit, "cached": True, "seconds": seconds, "cache_seconds": seconds}
    cache_seconds = time.perf_counter() - started
    result = align_timepoint(spec, settings, lesions)
    if cache_root is not None and key is not None:
        t0 = time.perf_counter()
        result["transform_digest"] = file_digest(Path(result["transform_file"])) if result.get("transform_file") else None
        result["mask_digest"] = file_digest(Path(result["mask_file"])) if result.get("mask_file") else None
        ResultCache(cache_root).put(key, result)
        cache_seconds += time.perf_counter() - t0
    return {"result": result, "cached": False, "seconds": time.perf_counter() - started, "cache_seconds": cache_seconds}


def _files_as_cached(spec: AlignSpec, hit: dict[str, Any]) -> bool:
    """The files a cached align result made are at this spec's paths with the same content (a cache entry
    holds no paths of its own: the same scans may sit under another output folder or pseudonym)."""
    for digest_key, path in (("transform_digest", spec.transform_path), ("mask_digest", spec.propagated_mask_path)):
        digest = hit.get(digest_key)
        if digest is None:
            continue
        if path is None or not path.is_file() or file_digest(path) != digest:
            return False
    return True


def _at_spec_paths(spec: AlignSpec, hit: dict[str, Any]) -> dict[str, Any]:
    hit = dict(hit)
    hit["transform_file"] = str(spec.transform_path) if hit.get("transform_digest") else None
    hit["mask_file"] = str(spec.propagated_mask_path) if hit.get("mask_digest") else None
    return hit


def track_key(baseline: TrackInput, scans: list[TrackInput], lesions: LesionConfig, tracking: TrackingConfig) -> str:
    parts = []
    for item in [baseline, *sorted(scans, key=lambda s: s.scan.study_date)]:
        parts.append([item.scan.study_date.isoformat(), file_digest(item.scan.mask_path) if item.scan.has_mask else None,
                      item.geometry.to_dict(), [list(s) for s in item.scan.lesion_segments],
                      file_digest(item.transform_file) if item.transform_file and item.transform_file.is_file() else None])
    return make_key("track", TRACK_STAGE_VERSION, parts, lesions.model_dump(), tracking.model_dump(), code_version(*TRACK_CODE))


def track_job(baseline: TrackInput, scans: list[TrackInput], lesions: LesionConfig, tracking: TrackingConfig,
              cache_root: Path | None) -> dict[str, Any]:
    """Track one patient's lesions across its scans, through the cache."""
    started = time.perf_counter()
    key = None
    if cache_root is not None:
        key = track_key(baseline, scans, lesions, tracking)
        hit = ResultCache(cache_root).get(key)
        if hit is not None:
            seconds = time.perf_counter() - started
            return {"result": hit, "cached": True, "seconds": seconds, "cache_seconds": seconds}
    cache_seconds = time.perf_counter() - started
    result = track_patient(baseline, scans, lesions, tracking)["tracking"]
    if cache_root is not None and key is not None:
        t0 = time.perf_counter()
        ResultCache(cache_root).put(key, result)
        cache_seconds += time.perf_counter() - t0
    return {"result": result, "cached": False, "seconds": time.perf_counter() - started, "cache_seconds": cache_seconds}


def export_job(job: Any) -> dict[str, Any]:
    """Write one time point's DICOM SEG + SR (:func:`pipelines.dicom.export.export_timepoint`) on a worker."""
    from pipelines.dicom.export import export_timepoint

    t0 = time.perf_counter()
    done = export_timepoint(job)
    return {"written": [str(p) for p in done.written], "failed": list(done.failed), "cached": False,
            "seconds": time.perf_counter() - t0}


def figures_job(run_dir: Path, dest: Path) -> dict[str, Any]:
    """Draw the report's figures on a worker (:func:`imaging.report.html.render_figures`), beside the export."""
    from imaging.report.html import render_figures

    t0 = time.perf_counter()
    render_figures(run_dir, dest)
    return {"cached": False, "seconds": time.perf_counter() - t0}
