"""Per-time-point stage: load the scan and its label map, measure every lesion.

No image maths here: this module only calls :mod:`imaging`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields
from pathlib import Path

from imaging.io import Geometry, LoadedVolume, load_label_map, read_nifti, read_series
from imaging.io.errors import ImagingError
from imaging.measurement import LesionMeasurement, measure_lesions
from imaging.measurement.radiomics import RadiomicsError, radiomics_features
from imaging.measurement.snapshot import snapshot_png
from imaging.segmentation import label_fragments, lesion_label_map
from pipelines.config import LesionConfig
from pipelines.dataset.discover import TimepointSource
from pipelines.outputs.files import safe_name

#: What the FLAIR's registration to the measured series records (as a follow-up's registration does).
FLAIR_QUALITY_KEYS = ("status", "rotation_deg", "translation_mm", "scales", "metric_initial", "metric_final",
                      "problems", "seconds")


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
    radiomics: dict[int, dict[str, float]] = field(default_factory=dict)  # label -> pyradiomics features
    #: Gliomas (``lesions.compartments``): the T2/FLAIR burden (:class:`imaging.measurement.burden.FlairBurden`
    #: fields, plus ``sequence``: the grid it was measured on, and ``registration``: the FLAIR's rigid fit), or why
    #: it could not be measured (``flair_problem``: that assessment fails, not the time point).
    flair: dict | None = None
    flair_problem: str | None = None


@dataclass(frozen=True)
class Extras:
    """What a measure task makes besides the measurements, while the scan is in memory.

    ``snapshot_dir``: write ``<date>_<lesion id>.png`` per lesion there; ``lesion_names``: label ->
    lesion id for those names; ``radiomics_params``: compute pyradiomics features per lesion with this
    params file (``mr_settings`` override it for MR).
    """

    snapshot_dir: Path | None = None
    lesion_names: tuple[tuple[int, str], ...] = ()
    radiomics_params: Path | None = None
    mr_settings: tuple[tuple[str, float | int | bool], ...] = ()

    def name_of(self, label: int) -> str:
        return dict(self.lesion_names).get(label, f"L{label}")

    def snapshot_paths(self, tp: TimepointSource, labels: list[int]) -> list[Path]:
        if self.snapshot_dir is None:
            return []
        return [self.snapshot_dir / f"{tp.study_date.isoformat()}_{safe_name(self.name_of(v))}.png" for v in labels]


def _identity(tp: TimepointSource) -> dict:
    """The identity fields of a measured time point, from its source (never from a cache entry)."""
    return {
        "patient_id": tp.patient_id,
        "study_date": tp.study_date,
        "study_uid": tp.study_uid,
        "series_uid": tp.series.series_uid if tp.series else str(tp.image_path.name if tp.image_path else ""),
        "modality": tp.series.modality if tp.series else "",
    }


def where_of(tp: TimepointSource) -> str:
    return f"patient {tp.patient_id}, {tp.study_date.isoformat()}"


def load_scan(tp: TimepointSource) -> LoadedVolume:
    """``tp``'s image (DICOM series or NIfTI/NRRD volume) with what the loader corrected.

    Raises
    ------
    StageError
        Naming the time point: no usable series, or the loader's reason.
    """
    where = where_of(tp)
    if tp.problem or (tp.series is None and tp.image_path is None):
        raise StageError(f"{where}: {tp.problem or 'no image series'}")
    try:
        if tp.image_path is not None:
            if not tp.image_path.is_file():
                raise StageError(f"{where}: no image at {tp.image_path}")
            return read_nifti(tp.image_path)
        assert tp.series is not None
        return read_series(tp.series)
    except ImagingError as exc:
        raise StageError(f"{where}: loading the scan failed: {exc}") from exc


def load_lesions(tp: TimepointSource, image, lesions: LesionConfig):  # noqa: ANN001, ANN201 - sitk.Image
    """``tp``'s label map on ``image``'s grid, as lesions (``lesions.mode``, specks dropped).

    Raises
    ------
    StageError
        Naming the time point and the label map: missing or unreadable.
    """
    where = where_of(tp)
    if not tp.has_mask:
        raise StageError(f"{where}: {tp.missing_mask()}")
    if tp.segmentation is not None:
        return segment_lesions(tp, image, lesions)[0]
    try:
        labels = load_label_map(tp.mask_path, image)
    except ImagingError as exc:
        raise StageError(f"{where}: loading the label map failed: {exc}") from exc
    if lesions.compartments is not None:
        # Tumour compartments: the lesions are the enhancing lesions with the necrosis they enclose, never a cavity.
        from imaging.segmentation.compartments import compartments_from_config, enhancing_lesions

        labels = enhancing_lesions(labels, compartments_from_config(lesions.compartments))
    return lesion_label_map(labels, mode=lesions.mode, min_volume_mm3=lesions.min_volume_mm3)


def measure_flair(tp: TimepointSource, image, lesions: LesionConfig,  # noqa: ANN001 - sitk.Image
                  raw=None) -> tuple[dict | None, str | None]:  # noqa: ANN001
    """The T2/FLAIR burden of a glioma time point: everything abnormal on FLAIR, measured on the FLAIR grid.

    The FLAIR (``dataset.sequences.flair`` / ``dataset.series.flair``) is rigidly registered to the measured image
    within the exam (mutual information) unless it shares its grid; without a FLAIR sequence the burden is measured
    on the label map's own grid (its FLAIR-hyperintensity label, drawn on a co-registered FLAIR). Returns
    ``(burden, problem)``: an implausible registration or an unreadable FLAIR is the ``problem`` of this
    assessment, never a failure of the time point.
    """
    from imaging.io import Geometry
    from imaging.measurement.burden import measure_flair_burden
    from imaging.registration import RegistrationConfig, register
    from imaging.segmentation.compartments import compartments_from_config, flair_burden

    comp = compartments_from_config(lesions.compartments)
    if raw is None:
        raw = load_label_map(tp.mask_path, image)
    problem = dict(tp.sequence_problems).get("flair")
    if problem:
        return None, f"FLAIR: {problem}"
    source = tp.sequence("flair")
    volumes = compartment_volumes(raw, comp)
    if source is None:
        burden = measure_flair_burden(flair_burden(raw, comp))
        return {**burden.to_dict(), "sequence": "label map grid", "registration": None,
                "compartments_mm3": volumes}, None
    try:
        flair = read_nifti(source).image if isinstance(source, Path) else read_series(source).image
    except (ImagingError, OSError) as exc:
        return None, f"FLAIR {source if isinstance(source, Path) else source.series_uid}: not readable ({exc})"
    registration = None
    transform = None
    if not Geometry.of(flair).same_grid(Geometry.of(image)):
        # Within one exam the head moves rigidly; mutual information copes with the two contrasts.
        result = register(flair, image, RegistrationConfig(stages=("rigid",)))
        registration = {k: v for k, v in result.to_dict().items() if k in FLAIR_QUALITY_KEYS}
        if not result.ok:
            return None, (f"FLAIR to measured series registration {result.status}: {'; '.join(result.problems)}; the "
                          "T2/FLAIR burden is not measured at this scan")
        transform = result.transform  # FLAIR points -> measured-image points
        origin = transform.TransformPoint((0.0, 0.0, 0.0))
        columns = [[a - b for a, b in zip(transform.TransformPoint(e), origin, strict=True)]
                   for e in ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))]
        registration["affine"] = {"matrix": [columns[j][i] for i in range(3) for j in range(3)],
                                  "offset": list(origin)}  # p_measured = matrix @ p_flair + offset (LPS mm)
    burden = measure_flair_burden(flair_burden(raw, comp, flair, transform))
    return {**burden.to_dict(), "sequence": "flair", "registration": registration, "compartments_mm3": volumes}, None


def compartment_volumes(raw, comp) -> dict[str, float]:  # noqa: ANN001 - sitk.Image, Compartments
    """Volume (mm3) of each non-enhancing compartment of the label map, on its own grid (voxels x voxel volume)."""
    import numpy as np
    import SimpleITK as sitk

    array = sitk.GetArrayViewFromImage(raw)
    voxel_mm3 = geometry_voxel_mm3(raw)
    return {name: float(np.isin(array, getattr(comp, name)).sum()) * voxel_mm3
            for name in ("necrosis", "non_enhancing", "cavity") if getattr(comp, name)}


def segment_lesions(tp: TimepointSource, image, lesions: LesionConfig):  # noqa: ANN001, ANN201 - sitk.Image
    """An archive segmentation's lesion segments, each measured on its own mask.

    Returns ``(label_map, per_lesion, problems)``: a label map of the lesions for the stages that need one
    (tracking, carrying lesions over; where lesion segments overlap, the voxels stay with the first), each
    lesion's own label image ``(label value, image holding only that lesion)``, and what was noticed
    (lesions that overlap each other, segments below ``lesions.min_volume_mm3``).

    Raises
    ------
    StageError
        Naming the time point and the segmentation: unreadable, or a segment outside the image.
    """
    import numpy as np
    import SimpleITK as sitk

    from imaging.io.segments import read_segment_masks

    where = where_of(tp)
    try:
        masks, problems = read_segment_masks(tp.mask_path, image, [number for number, _, _ in tp.lesion_segments])
    except ImagingError as exc:
        raise StageError(f"{where}: reading the segmentation failed: {exc}") from exc
    voxel_mm3 = geometry_voxel_mm3(image)
    labels = np.zeros(sitk.GetArrayViewFromImage(image).shape, dtype=np.uint16)
    per_lesion = []
    owners: list[tuple[str, np.ndarray]] = []
    for (_, label, name), m in zip(tp.lesion_segments, masks, strict=True):
        if m.n_voxels * voxel_mm3 < lesions.min_volume_mm3:
            problems.append(f"segment {name!r}: {m.n_voxels * voxel_mm3:.1f} mm3 is below lesions.min_volume_mm3 "
                            f"({lesions.min_volume_mm3} mm3); not measured")
            continue
        on = sitk.GetArrayViewFromImage(m.mask) > 0
        for other, other_on in owners:
            shared = int(np.count_nonzero(on & other_on))
            if shared:
                problems.append(f"lesion segments {other!r} and {name!r} overlap in {shared} voxels "
                                f"({shared * voxel_mm3:.1f} mm3); each is measured on its own mask")
        owners.append((name, on))
        labels[on & (labels == 0)] = label
        single = sitk.GetImageFromArray(on.astype(np.uint16) * np.uint16(label))
        single.CopyInformation(image)
        per_lesion.append((label, single))
    label_map = sitk.GetImageFromArray(labels)
    label_map.CopyInformation(image)
    return label_map, per_lesion, problems


def measure_timepoint(tp: TimepointSource, lesions: LesionConfig, extras: Extras | None = None) -> MeasuredTimepoint:
    """Load ``tp``'s series and mask and measure its lesions (and make the ``extras`` asked for).

    A snapshot or radiomics failure of one lesion is recorded in ``problems``; it does not fail the
    time point, whose measurements stand.

    Raises
    ------
    StageError
        Naming the time point and what failed (series assembly, mask, ...).
    """
    loaded = load_scan(tp)
    image = loaded.image
    problems = list(loaded.problems)
    if tp.segmentation is not None and tp.has_mask:
        # Archive segments may overlap: each lesion is measured (and pictured) on its own mask.
        _, per_lesion, segment_problems = segment_lesions(tp, image, lesions)
        problems.extend(segment_problems)
        label_images = {label: single for label, single in per_lesion}
        measurements = tuple(m for _, single in per_lesion for m in measure_lesions(single))
    else:
        labels = load_lesions(tp, image, lesions)
        label_images = None
        measurements = tuple(measure_lesions(labels))
    geometry = Geometry.of(image)
    thickness = (tp.series.slice_thickness_mm if tp.series else None) or geometry.spacing_mm[2]
    if lesions.mode == "labels":
        for single in (label_images.values() if label_images is not None else [labels]):
            min_voxels = max(1, int(lesions.min_volume_mm3 / geometry_voxel_mm3(single)))
            for value, parts in label_fragments(single, min_voxels).items():
                name = extras.name_of(value) if extras else f"L{value}"
                problems.append(
                    f"label {value} ({name}) has {len(parts)} separate parts ({', '.join(map(str, parts))} voxels), "
                    "measured as one lesion: its diameters may span the gap (lesions.mode: components splits them)"
                )
    modality = tp.series.modality if tp.series else ""
    features: dict[int, dict[str, float]] = {}

    def lesion_labels(m: LesionMeasurement):  # noqa: ANN202 - sitk.Image: the labels that picture this lesion
        return label_images[m.label] if label_images is not None else labels

    if extras is not None:
        for m, path in zip(measurements, extras.snapshot_paths(tp, [m.label for m in measurements]), strict=False):
            try:
                write_snapshot(image, lesion_labels(m), m, path, modality)
            except (ValueError, RuntimeError, OSError) as exc:
                problems.append(f"snapshot of {extras.name_of(m.label)}: {exc}")
        if extras.radiomics_params is not None:
            settings = dict(extras.mr_settings) if modality == "MR" else {}
            for m in measurements:
                try:
                    features[m.label] = radiomics_features(image, lesion_labels(m), m.label, extras.radiomics_params,
                                                           **settings)
                except RadiomicsError as exc:
                    problems.append(f"radiomics of {extras.name_of(m.label)}: {exc}")
    flair = flair_problem = None
    if lesions.compartments is not None and tp.segmentation is None:
        from imaging.segmentation.compartments import compartments_from_config, rano_measurability

        raw = load_label_map(tp.mask_path, image)  # the compartments, for the cavity rule and the FLAIR burden
        comp = compartments_from_config(lesions.compartments)
        for m in measurements:
            _, why = rano_measurability(m, lesion_labels(m), compartment_labels=raw, comp=comp,
                                        slice_thickness_mm=float(thickness))
            problems.append(f"{extras.name_of(m.label) if extras else f'L{m.label}'} (RANO measurability): {why}")
        flair, flair_problem = measure_flair(tp, image, lesions, raw)
    return MeasuredTimepoint(
        **_identity(tp),
        slice_thickness_mm=float(thickness),
        geometry=geometry,
        lesions=measurements,
        problems=tuple(problems),
        radiomics=features,
        flair=flair,
        flair_problem=flair_problem,
    )


def geometry_voxel_mm3(image) -> float:
    sx, sy, sz = image.GetSpacing()
    return float(sx * sy * sz)


def write_snapshot(image, labels, measurement: LesionMeasurement, path: Path, modality: str) -> None:
    """The lesion's PNG: CT in a window suited to where it lies (lung or soft tissue), MR by percentiles."""
    window = None
    if modality == "CT":
        window = (-600.0, 1500.0) if _mean_around(image, measurement) < -300 else (40.0, 400.0)
    snapshot_png(image, labels, measurement, path, window=window)


def _mean_around(image, m: LesionMeasurement) -> float:
    """Mean intensity of a 21x21 patch of the long-axis slice around the lesion centre (its surroundings)."""
    import numpy as np
    import SimpleITK as sitk

    x, y, _ = image.TransformPhysicalPointToIndex(m.center_lps)
    arr = sitk.GetArrayViewFromImage(image)[m.long_axis_slice]
    return float(np.mean(arr[max(0, y - 10): y + 11, max(0, x - 10): x + 11]))


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
        "radiomics": {str(k): v for k, v in m.radiomics.items()},
        "geometry": m.geometry.to_dict(),
        "lesions": [lesion.to_dict() for lesion in m.lesions],
        "flair": m.flair,
        "flair_problem": m.flair_problem,
    }


def measured_from_dict(d: dict, tp: TimepointSource) -> MeasuredTimepoint:
    """A measured time point from its cached form and its source."""
    g = d["geometry"]
    names = {f.name for f in fields(LesionMeasurement)}
    lesions = tuple(
        LesionMeasurement(**{k: _tuplify(v) for k, v in lesion.items() if k in names}) for lesion in d["lesions"]
    )
    return MeasuredTimepoint(
        **_identity(tp),
        slice_thickness_mm=float(d["slice_thickness_mm"]),
        geometry=Geometry(
            size=tuple(g["size"]), spacing_mm=tuple(g["spacing_mm"]), origin_lps=tuple(g["origin_lps"]),
            direction=tuple(g["direction"]),
        ),
        lesions=lesions,
        problems=tuple(d.get("problems", ())),
        radiomics={int(k): v for k, v in d.get("radiomics", {}).items()},
        flair=d.get("flair"),
        flair_problem=d.get("flair_problem"),
    )
