"""Run configuration: YAML validated with pydantic.

Every error names the field by its dotted path and, where the YAML has it,
the line, e.g. ``configs/sample.yaml:7: dataset.root: Field required``. Paths
in a config are relative to the config file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

#: Criterion names as on the command line (../shared/course-format.md).
CriterionName = Literal["recist", "irecist", "rano", "rano2", "mrano", "irano", "ranobm", "irrc", "ranolgg"]


class ConfigError(ValueError):
    """A run configuration is invalid; the message names the file, line and field."""


def _path_template(value: str | None) -> str | None:
    """A per-patient / per-scan path template: only {patient_id}, {study_date} and {timepoint} may appear."""
    if value is not None:
        try:
            value.format(patient_id="x", study_date="x", timepoint="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"template may use only {{patient_id}}, {{study_date}} and {{timepoint}} ({exc})") from exc
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SeriesRuleConfig(_Strict):
    """How to pick the series of one role (``measure``: the series whose lesions are measured) in a study.

    A localizer, a DERIVED/SECONDARY series (MIP, reformat, screen capture), a dose report, a single slice
    or fewer than ``min_slices`` slices is never picked. Then these rules filter; among what remains, CT
    prefers a soft-tissue kernel at the thinnest slice thickness of at most 5 mm; for MR (and any tie the
    rules leave) the time point is refused with the candidates listed, never guessed. See docs/io.md.
    """

    modality: list[str] = Field(default_factory=list, description="e.g. [CT]; default: dataset.modality")
    prefer: list[str] = Field(default_factory=list, description="SeriesDescription globs to prefer (case-insensitive)")
    reject: list[str] = Field(default_factory=list, description="SeriesDescription globs to reject")
    image_type: list[str] = Field(default_factory=list, description="ImageType values required, e.g. [ORIGINAL, PRIMARY]")
    contrast: Literal["required", "forbidden"] | None = None
    kernel: list[str] = Field(default_factory=list, description="ConvolutionKernel globs, e.g. ['*B30*', 'STANDARD']")
    slice_thickness_mm: tuple[float, float] | None = Field(default=None, description="inclusive range [min, max]")
    plane: Literal["axial", "coronal", "sagittal", "oblique"] | None = None
    min_slices: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _range(self) -> SeriesRuleConfig:
        if self.slice_thickness_mm is not None and not 0 <= self.slice_thickness_mm[0] <= self.slice_thickness_mm[1]:
            raise ValueError("slice_thickness_mm must be [min, max] with 0 <= min <= max")
        return self


class SegmentationsConfig(_Strict):
    """Where each time point's lesions are outlined.

    ``source: files`` (the default when ``dataset.mask`` is set): a label map per time point at
    ``dataset.mask``. ``source: archive``: the DICOM SEG and RTSTRUCT objects inside the archive, linked
    to the series they were drawn on; that series is then the time point's series. ``include`` /
    ``exclude``: segment labels or ROI names (case-insensitive globs) that are / are not lesions; RT ROI
    types and SEG property categories decide the rest (organs, avoidance structures and planning margins
    are not lesions unless included). ``choose``: which of several segmentations of one series is used
    (by content date and time; the others are listed in the notes).
    """

    source: Literal["files", "archive"] | None = None
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    choose: Literal["newest", "oldest"] = "newest"


class DatasetConfig(_Strict):
    """Where the scans, masks and clinical data are.

    ``kind: dicom``: the root is crawled (headers only) and each (patient, study)
    holding one image series of ``modality`` is a time point; templates may use
    ``{patient_id}`` and ``{study_date}`` (ISO, YYYY-MM-DD).

    ``kind: nifti``: one folder per time point, ``timepoints`` gives their layout
    below the root (default ``{patient_id}/{timepoint}``, e.g.
    ``Patient-001/week-000``); ``image`` and ``mask`` are file names (templates)
    inside it; the date of each time point comes from ``visits``.

    Templates are relative to ``root`` (``image``/``mask`` of a NIfTI dataset:
    relative to the time point's folder).
    """

    kind: Literal["dicom", "nifti"] = "dicom"
    root: Path
    mask: str | None = Field(default=None, description="template of the label-map path of one time point (segmentations.source: files)")
    segmentations: SegmentationsConfig = Field(default_factory=SegmentationsConfig)
    series: dict[Literal["measure", "flair", "t2", "t1"], SeriesRuleConfig] = Field(
        default_factory=dict,
        description="series selection rules per role: measure (the measured series, e.g. the post-contrast T1), and the "
                    "sequences read beside it (flair, t2, t1: chosen among the study's other volumes)")
    sequences: dict[Literal["flair", "t2", "t1"], str] = Field(
        default_factory=dict,
        description="nifti: other sequences of each time point, file name templates in its folder (as `image`), e.g. "
                    "{flair: flair.nii.gz}; rigidly registered to the measured image unless they share its grid")
    image: str | None = Field(default=None, description="nifti: template of the image file in a time point's folder")
    timepoints: str = Field(default="{patient_id}/{timepoint}", description="nifti: layout of the time point folders")
    lesion_metadata: str | None = Field(
        default=None, description="template of a per-patient sidecar (JSON or YAML): label -> {lesion_id, organ, nodal, target}; target: false follows the lesion as a non-target"
    )
    clinical: Path | None = Field(
        default=None, description="CSV, one row per patient: patient_id, treatment_start, radiotherapy_end, immunotherapy"
    )
    visits: Path | None = Field(
        default=None,
        description="CSV, one row per scan: patient_id, date, [timepoint], and optional clinical columns "
        "steroid_dose_mg, clinically_stable, t2_flair, outside_radiation_field, histologic_confirmation",
    )
    modality: list[str] = Field(default_factory=lambda: ["CT", "MR"], description="dicom: image series to use")

    @field_validator("mask", "lesion_metadata", "image")
    @classmethod
    def _template_fields(cls, value: str | None) -> str | None:
        return _path_template(value)

    @field_validator("sequences")
    @classmethod
    def _sequence_templates(cls, value: dict[str, str]) -> dict[str, str]:
        return {role: _path_template(template) or "" for role, template in value.items()}

    @field_validator("timepoints")
    @classmethod
    def _layout(cls, value: str) -> str:
        parts = Path(value).parts
        if "{patient_id}" not in parts or "{timepoint}" not in parts:
            raise ValueError("layout must have a {patient_id} folder and a {timepoint} folder, e.g. {patient_id}/{timepoint}")
        return value

    @model_validator(mode="after")
    def _kind_needs(self) -> DatasetConfig:
        if self.kind == "nifti" and (self.image is None or self.visits is None):
            raise ValueError("a nifti dataset needs `image` (file name in each time point folder) and `visits` (the dates)")
        if self.kind == "dicom" and self.sequences:
            raise ValueError("`sequences` names files of a nifti dataset; in a DICOM archive give each sequence a series "
                             "rule instead (dataset.series.flair, ...)")
        if self.source == "files" and self.mask is None:
            raise ValueError("`mask` (the label map template) is needed unless segmentations.source is archive")
        if self.source == "archive" and self.kind != "dicom":
            raise ValueError("segmentations.source: archive needs a DICOM dataset (kind: dicom)")
        if self.source == "archive" and self.mask is not None:
            raise ValueError("segmentations.source: archive reads the SEG/RTSTRUCT inside the archive; `mask` (a label map "
                             "template) is for source: files. Leave one of them out")
        if self.source == "files" and (self.segmentations.include or self.segmentations.exclude):
            raise ValueError("segmentations.include/exclude name segments of the archive's SEG/RTSTRUCT (source: archive); "
                             "a label map's values are lesions by themselves")
        if self.source == "archive" and self.lesion_metadata:
            raise ValueError("lesion_metadata sidecars name label values; with segmentations.source: archive each lesion is "
                             "named by its segment label or ROI name, so leave lesion_metadata out")
        return self

    @property
    def source(self) -> Literal["files", "archive"]:
        """Where the segmentations come from: as configured, else ``files`` (a ``mask`` template) ."""
        return self.segmentations.source or "files"

    def series_rule(self, role: str = "measure") -> SeriesRuleConfig:
        """The selection rule of ``role`` (defaults when the config gives none)."""
        return self.series.get(role) or SeriesRuleConfig()


class LesionConfig(_Strict):
    """``compartments``: the label map holds tumour compartments, not lesions (gliomas): a preset
    (``brats2021``: 1 necrosis, 2 oedema, 4 enhancing; ``brats2023``: 1 necrosis, 2 non-enhancing FLAIR
    hyperintensity, 3 enhancing) or ``{enhancing: [..], necrosis: [..], non_enhancing: [..], cavity: [..]}``.
    The lesions measured are then the enhancing lesions with the necrosis they enclose (never a cavity), and
    the T2/FLAIR burden is measured beside them (:mod:`imaging.segmentation.compartments`).
    ``flair_increase_pct``: a FLAIR burden volume this much above its smallest earlier value is a T2/FLAIR
    ``increased`` (our reading of RANO's "significant increase"); a visits CSV value wins."""

    mode: Literal["labels", "components"] = "labels"
    min_volume_mm3: float = Field(default=10.0, ge=0)
    default_organ: str = "unknown"
    compartments: str | dict[str, list[int]] | None = None
    flair_increase_pct: float = Field(default=25.0, gt=0)

    @field_validator("compartments")
    @classmethod
    def _compartments(cls, value: str | dict[str, list[int]] | None) -> str | dict[str, list[int]] | None:
        if value is None:
            return None
        from imaging.segmentation.compartments import compartments_from_config

        compartments_from_config(value)  # raises ValueError naming the field
        return value


class ExecutorConfig(_Strict):
    """Where tasks run: ``local`` worker processes (``workers`` = cores by default; 1 runs in-process)
    or a ``dask`` cluster (``address`` of a scheduler, or a LocalCluster of ``workers`` when absent)."""

    kind: Literal["local", "dask"] = "local"
    workers: int | None = Field(default=None, ge=1)
    address: str | None = None


class PrivacyConfig(_Strict):
    """Identifiers in outputs (see pipelines/outputs/privacy.py). ``key`` or ``key_env`` (the name of an
    environment variable holding the key; keeps the secret out of the config file).

    ``keep_identifiers``: DICOM objects the run writes (SEG, SR) copy the source's patient
    name, birth date, accession number, referring physician and institution only when true;
    by default those are emptied and PatientName/PatientID are the output patient id.
    """

    keep_identifiers: bool = False
    pseudonymise: bool = False
    key: SecretStr | None = None
    key_env: str | None = None


class RadiomicsConfig(_Strict):
    """pyradiomics features per lesion per time point (``radiomics.csv``, with the change from the previous
    time point). ``params``: a pyradiomics params YAML (relative to the run config); MR series are
    z-score normalised (``mr_settings``) so their features compare across scans."""

    enabled: bool = False
    params: Path | None = Field(default=None, description="default: the package's configs/radiomics.yaml")
    mr_settings: dict[str, float | int | bool] = Field(
        default_factory=lambda: {"normalize": True, "normalizeScale": 100, "binWidth": 5}
    )


class OutputsConfig(_Strict):
    """Optional outputs: ``dicom`` writes a DICOM SEG and an SR Measurement Report (TID 1500) per DICOM
    patient-time point under ``<output_dir>/dicom/`` (see docs/pacs.md)."""

    dicom: bool = False
    snapshots: bool = Field(default=True, description="a PNG per lesion per time point: long-axis slice, outline, diameters")


class RegistrationSettings(_Strict):
    """How each follow-up (and pre-baseline scan) is registered to its patient's baseline
    (:func:`imaging.registration.register`; docs/registration.md).

    ``stages``: rigid, then affine, optionally a coarse B-spline. ``exclude_lesions_mm``: the metric
    ignores everything within this distance of a lesion of either scan (the changing tumour must not
    drive the fit); 0 uses the whole image. A registration that fails or is implausible (rotation over
    ``max_rotation_deg``, a scale outside ``scale_range``, a shift over ``max_translation_mm``) is
    reported in failures.csv and not used: the scan is then not evaluated (``on_failure``). ``landmarks``: template of a per-scan CSV
    (``name,x_mm,y_mm,z_mm``, LPS) of anatomical points; points of the same name in the baseline's and a
    follow-up's file give the registration's landmark error (in the transform's quality sidecar).
    """

    stages: list[Literal["rigid", "affine", "bspline"]] = Field(default_factory=lambda: ["rigid", "affine"], min_length=1)
    exclude_lesions_mm: float = Field(default=30.0, ge=0)
    max_rotation_deg: float = Field(default=20.0, gt=0)
    scale_range: tuple[float, float] = (0.8, 1.25)
    max_translation_mm: float | None = Field(default=None, gt=0)
    landmarks: str | None = Field(default=None, description="template of a per-scan landmarks CSV, relative to dataset.root")
    on_failure: Literal["not_evaluated", "scanner"] = Field(
        default="not_evaluated",
        description="a scan whose registration failed: not evaluated (its lesions recorded, not assessed), or tracked "
                    "in scanner coordinates (only for scans known to share the baseline's frame)",
    )

    @field_validator("landmarks")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        return _path_template(value)

    @model_validator(mode="after")
    def _limits(self) -> RegistrationSettings:
        lo, hi = self.scale_range
        if not 0 < lo <= 1 <= hi:
            raise ValueError(f"scale_range must satisfy 0 < low <= 1 <= high, got {list(self.scale_range)}")
        order = ["rigid", "affine", "bspline"]
        if [order.index(x) for x in self.stages] != sorted({order.index(x) for x in self.stages}):
            raise ValueError(f"stages must be in the order rigid, affine, bspline without repeats, got {self.stages}")
        return self


class TrackingConfig(_Strict):
    """How a lesion keeps one id across time points (:func:`imaging.registration.track_lesions`).

    ``method``: ``registration`` (default) registers every scan to the baseline and matches lesions in
    baseline space by overlap and centroid distance (label values of follow-ups are not trusted);
    ``scanner`` matches the same way in scanner coordinates, without registration (scans already in one
    frame); ``labels`` trusts the label values (curated label maps whose values are lesion ids).
    ``max_distance_mm``/``min_overlap``: when two lesions may be matched. ``too_small_mm``: a lesion
    present but measuring less than this (long axis; nodes and split lesions excepted) is recorded as
    too small to measure, counting 5 mm (RECIST 1.1 Appendix I); 0 (the default) records every
    measurement as it is, as RECIST asks of an actual measurement.
    """

    method: Literal["registration", "scanner", "labels"] = "registration"
    max_distance_mm: float = Field(default=20.0, gt=0)
    min_overlap: float = Field(default=0.1, gt=0, le=1)
    too_small_mm: float = Field(default=0.0, ge=0)


class RunConfig(_Strict):
    """One run: a dataset, how lesions are read, which criteria to assess, where outputs go."""

    name: str = "run"
    dataset: DatasetConfig
    output_dir: Path = Path("out")
    lesions: LesionConfig = LesionConfig()
    criteria: list[CriterionName] = Field(default_factory=lambda: ["recist"], min_length=1)
    executor: ExecutorConfig = ExecutorConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    outputs: OutputsConfig = OutputsConfig()
    radiomics: RadiomicsConfig = RadiomicsConfig()
    registration: RegistrationSettings = RegistrationSettings()
    tracking: TrackingConfig = TrackingConfig()
    cache: bool = Field(default=True, description="reuse stage results whose inputs, settings and code are unchanged")

    @model_validator(mode="after")
    def _segments_are_lesions(self) -> RunConfig:
        if self.dataset.source == "archive" and self.lesions.mode == "components":
            raise ValueError("lesions.mode: components renumbers a label map's blobs; with segmentations.source: archive "
                             "each lesion is a named segment (use lesions.mode: labels)")
        return self

    def resolved(self, base_dir: Path) -> RunConfig:
        """The same config with every relative path made absolute against ``base_dir``."""

        def absolute(p: Path | None) -> Path | None:
            if p is None:
                return None
            return p if p.is_absolute() else (base_dir / p).resolve()

        dataset = self.dataset.model_copy(
            update={"root": absolute(self.dataset.root), "clinical": absolute(self.dataset.clinical),
                    "visits": absolute(self.dataset.visits)}
        )
        radiomics = self.radiomics.model_copy(update={"params": absolute(self.radiomics.params)})
        return self.model_copy(update={"dataset": dataset, "output_dir": absolute(self.output_dir), "radiomics": radiomics})


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc``, or of its nearest existing parent."""
    line = None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        nxt = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == key:
                    line = k.start_mark.line + 1
                    nxt = v
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            nxt = node.value[key]
        node = nxt
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _set_dotted(data: dict[str, Any], dotted: str, raw_value: str) -> None:
    keys = dotted.split(".")
    if not all(keys):
        raise ConfigError(f"--set {dotted}={raw_value}: empty key in dotted path")
    target = data
    for key in keys[:-1]:
        nxt = target.setdefault(key, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {dotted}={raw_value}: {key} is not a section")
        target = nxt
    if raw_value == "":
        target[keys[-1]] = None
        return
    try:
        target[keys[-1]] = yaml.safe_load(raw_value)
    except yaml.YAMLError:
        # Not YAML (a path template such as {patient_id}/mask.nii.gz): the value is the text as given.
        target[keys[-1]] = raw_value


def load_config(path: str | os.PathLike[str], overrides: list[str] | None = None) -> RunConfig:
    """Read, override (``key.sub=value``), validate and resolve a run config.

    Raises
    ------
    ConfigError
        Unreadable YAML, unknown keys, wrong types, missing fields; the message
        names the file, the line and the dotted field.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config ({exc.strerror or exc})") from exc
    try:
        root_node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc})") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a config must be a mapping of keys to values, got {type(data).__name__}")
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected key=value")
        key, value = item.split("=", 1)
        _set_dotted(data, key.strip(), value.strip())
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            field = ".".join(str(x) for x in loc) or "(top level)"
            line = _line_of(root_node, loc)
            where = f"{p}:{line}" if line else str(p)
            lines.append(f"{where}: {field}: {err['msg']}")
        raise ConfigError("invalid config\n  " + "\n  ".join(lines)) from None
    config = config.resolved(p.resolve().parent)
    problems = []
    for loc, path, want_dir in (
        (("dataset", "root"), config.dataset.root, True),
        (("dataset", "clinical"), config.dataset.clinical, False),
        (("dataset", "visits"), config.dataset.visits, False),
        (("radiomics", "params"), config.radiomics.params, False),
    ):
        if path is None:
            continue
        ok = path.is_dir() if want_dir else path.is_file()
        if not ok:
            line = _line_of(root_node, loc)
            where = f"{p}:{line}" if line else str(p)
            kind = "folder" if want_dir else "file"
            problems.append(f"{where}: {'.'.join(loc)}: no such {kind}: {path}")
    if problems:
        raise ConfigError("invalid config\n  " + "\n  ".join(problems))
    return config
