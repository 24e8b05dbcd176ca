"""Per-time-point stage: load the scan and its label map, measure every lesion.

No image maths here: this module only calls :mod:`imaging`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields

from imaging.io import Geometry, load_label_map, read_nifti, read_series
from imaging.io.errors import ImagingError
from imaging.measurement import LesionMeasurement, measure_lesions
from imaging.segmentation import lesion_label_map
from pipelines.config import LesionConfig
from pipelines.discover import TimepointSource


class StageError(Exception):
    """A stage failed for one time point; the message names the input and the reason."""


@dataclass(frozen=True)
class MeasuredTimepoint:
    """What one time point yields: its geometry and one measurement per lesion label."""

    patient_id: str
    study_date: dt.date
    study_uid: str
    series_uid: str
    modality: str
    slice_thickness_mm: float
    geometry: Geometry
    lesions: tuple[LesionMeasurement, ...]
    problems: tuple[str, ...] = ()  # what the loader corrected or noticed (resampled tilt, dropped duplicates, ...)


def measure_timepoint(tp: TimepointSource, lesions: LesionConfig) -> MeasuredTimepoint:
    """Load ``tp``'s series and mask and measure its lesions.

    Raises
    ------
    StageError
        Naming the time point and what failed (series assembly, mask, ...).
    """
    where = f"patient {tp.patient_id}, {tp.study_date.isoformat()}"
    if tp.problem or (tp.series is None and tp.image_path is None):
        raise StageError(f"{where}: {tp.problem or 'no image series'}")
    try:
        if tp.image_path is not None:
            if not tp.image_path.is_file():
                raise StageError(f"{where}: no image at {tp.image_path}")
            loaded = read_nifti(tp.image_path)
        else:
            assert tp.series is not None
            loaded = read_series(tp.series)
        image = loaded.image
    except ImagingError as exc:
        raise StageError(f"{where}: loading the scan failed: {exc}") from exc
    if not tp.mask_path.is_file():
        raise StageError(f"{where}: no label map at {tp.mask_path}")
    try:
        labels = load_label_map(tp.mask_path, image)
    except ImagingError as exc:
        raise StageError(f"{where}: loading the label map failed: {exc}") from exc
    labels = lesion_label_map(labels, mode=lesions.mode, min_volume_mm3=lesions.min_volume_mm3)
    geometry = Geometry.of(image)
    thickness = (tp.series.slice_thickness_mm if tp.series else None) or geometry.spacing_mm[2]
    return MeasuredTimepoint(
        patient_id=tp.patient_id,
        study_date=tp.study_date,
        study_uid=tp.study_uid,
        series_uid=tp.series.series_uid if tp.series else str(tp.image_path.name if tp.image_path else ""),
        modality=tp.series.modality if tp.series else "",
        slice_thickness_mm=float(thickness),
        geometry=geometry,
        lesions=tuple(measure_lesions(labels)),
        problems=tuple(loaded.problems),
    )


def _tuplify(value: object) -> object:
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value


def measured_to_dict(m: MeasuredTimepoint) -> dict:
    """JSON-able form of what a time point's scan yields, for the cache and worker processes.

    Identity (patient, date, UIDs) is left out: a cache entry is keyed by content, and
    the identity is attached again from the time point's source (:func:`measured_from_dict`).
    """
    return {
        "slice_thickness_mm": m.slice_thickness_mm,
        "problems": list(m.problems),
        "geometry": m.geometry.to_dict(),
        "lesions": [lesion.to_dict() for lesion in m.lesions],
    }


def measured_from_dict(d: dict, tp: TimepointSource) -> MeasuredTimepoint:
    """A measured time point from its cached form and its source."""
    g = d["geometry"]
    names = {f.name for f in fields(LesionMeasurement)}
    lesions = tuple(
        LesionMeasurement(**{k: _tuplify(v) for k, v in lesion.items() if k in names}) for lesion in d["lesions"]
    )
    return MeasuredTimepoint(
        patient_id=tp.patient_id,
        study_date=tp.study_date,
        study_uid=tp.study_uid,
        series_uid=tp.series.series_uid if tp.series else str(tp.image_path.name if tp.image_path else ""),
        modality=tp.series.modality if tp.series else "",
        slice_thickness_mm=float(d["slice_thickness_mm"]),
        geometry=Geometry(
            size=tuple(g["size"]), spacing_mm=tuple(g["spacing_mm"]), origin_lps=tuple(g["origin_lps"]),
            direction=tuple(g["direction"]),
        ),
        lesions=lesions,
        problems=tuple(d.get("problems", ())),
    )
