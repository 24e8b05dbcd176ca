"""Task functions run by the executors (module level, picklable arguments, JSON-able results).

A measure task hashes its inputs, looks the result up in the cache, and only
computes on a miss; hashing happens in the worker, so it is parallel too.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pipelines.cache import ResultCache, code_version, file_digest, files_digest, make_key
from pipelines.config import LesionConfig
from pipelines.discover import TimepointSource
from pipelines.stages import Extras, measure_timepoint, measured_to_dict

MEASURE_STAGE_VERSION = 3  # 2: cached results carry no identity; 3: radiomics in the result
#: What the measure stage runs: a change in these invalidates its cache entries.
MEASURE_CODE = ("imaging.io", "imaging.segmentation", "imaging.measurement", "pipelines.stages", "pipelines.discover")


def measure_key(tp: TimepointSource, lesions: LesionConfig, extras: Extras | None = None) -> str:
    inputs = list(tp.series.files) if tp.series is not None else []
    if tp.image_path is not None and tp.image_path.is_file():
        inputs.append(tp.image_path)
    if tp.mask_path.is_file():
        inputs.append(tp.mask_path)
    radiomics = None
    if extras is not None and extras.radiomics_params is not None:
        radiomics = [file_digest(extras.radiomics_params), list(extras.mr_settings)]
    return make_key("measure", MEASURE_STAGE_VERSION, files_digest(inputs), lesions.model_dump(), radiomics,
                    code_version(*MEASURE_CODE))


def measure_job(tp: TimepointSource, lesions: LesionConfig, cache_root: Path | None,
                extras: Extras | None = None) -> dict[str, Any]:
    """Measure one time point, through the cache when ``cache_root`` is given.

    A cached result whose snapshots are missing is recomputed (the snapshots are files, not cached).

    Returns ``{"result": <measured time point dict>, "cached": bool, "seconds": float, "key": str | None}``;
    raises :class:`pipelines.stages.StageError` for bad input.
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
