"""Group DICOM headers into Patient / Study / Series, and series into volumes.

One SeriesInstanceUID does not always hold one volume: scanners put several
echoes, temporal positions (dynamic series), orientations (localizers), image
sizes or diffusion weightings under one UID, and enhanced multi-frame objects
hold several stacks in one file. :func:`split_volumes` separates them by the
attributes that define a volume, and names each one after what distinguishes
it: ``<series_uid>#echo2``, ``<series_uid>#t3``, ``<series_uid>#sagittal``,
``<series_uid>#acq2`` ... (a series that is one volume keeps its bare UID).

Repeated acquisitions of the same positions (duplicate positions) are split by
AcquisitionNumber, else TriggerTime, else ImageType, when that attribute
separates them into duplicate-free stacks; acquisitions are also split when
together they do not form a regular stack but each one does (different
spacings). Acquisition numbers that merely change along one regular stack are
left together.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imaging.io.dicom import DicomHeader, acquisition_plane
from imaging.io.geometry import Geometry
from imaging.io.stack import (
    DUPLICATE_TOLERANCE_MM,
    ORIENTATION_TOLERANCE,
    SliceRef,
    TiltPolicy,
    plan_stack,
    slices_of,
    unit_axes,
)


@dataclass(frozen=True)
class SeriesInfo:
    """One image volume found by the crawl (a series, or one volume of a split series).

    Attributes
    ----------
    files
        The files holding its slices, sorted.
    slice_thickness_mm
        SliceThickness of its first slice (nominal, not the spacing).
    volume_id
        ``series_uid`` when the series is one volume, else
        ``"<series_uid>#<what distinguishes it>"`` (e.g. ``#echo2``).
    frames
        Empty for single-frame files; otherwise one tuple of 0-based frame
        indices per file (empty tuple for a single-frame file).
    n_slices, geometry, problems
        From the header-only plan (:func:`imaging.io.stack.plan_stack`):
        the grid the volume will load onto (``None`` when it cannot be
        assembled) and what is worth knowing, including why not.
    """

    patient_id: str
    study_uid: str
    study_date: dt.date | None
    series_uid: str
    modality: str
    series_description: str
    files: tuple[Path, ...]
    slice_thickness_mm: float | None = None
    volume_id: str = ""
    frames: tuple[tuple[int, ...], ...] = ()
    series_number: int | None = None
    n_slices: int = 0
    geometry: Geometry | None = None
    problems: tuple[str, ...] = ()
    # -- for series selection and segmentation links (imaging.io.selection / segrefs); from the first slice --
    image_type: str = ""  # ImageType, values joined with "\\"
    convolution_kernel: str = ""  # ConvolutionKernel, values joined with "\\"
    contrast_agent: str = ""  # ContrastBolusAgent
    body_part: str = ""  # BodyPartExamined
    plane: str = ""  # "axial" | "coronal" | "sagittal" | "oblique" | "" (imaging.io.dicom.acquisition_plane)
    frame_of_reference_uid: str = ""
    sop_class_uid: str = ""
    sop_uids: tuple[str, ...] = field(default=(), repr=False)  # SOP Instance UIDs of its files, sorted

    def __post_init__(self) -> None:
        if not self.volume_id:
            object.__setattr__(self, "volume_id", self.series_uid)

    def to_dict(self) -> dict[str, Any]:
        """The per-volume record of ``tumor-response index --json``."""
        g = self.geometry
        return {
            "volume_id": self.volume_id,
            "patient_id": self.patient_id,
            "study_uid": self.study_uid,
            "study_date": self.study_date.isoformat() if self.study_date else None,
            "series_uid": self.series_uid,
            "series_number": self.series_number,
            "modality": self.modality,
            "series_description": self.series_description,
            "n_files": len(self.files),
            "n_slices": self.n_slices,
            "size": list(g.size) if g else None,
            "spacing_mm": [round(v, 6) for v in g.spacing_mm] if g else None,
            "origin_lps": [round(v, 6) for v in g.origin_lps] if g else None,
            "direction": [round(v, 8) for v in g.direction] if g else None,
            "problems": list(self.problems),
        }


# ---------------------------------------------------------------------------------------------
# splitting a series into volumes

_PLANES = ("sagittal", "coronal", "axial")


def _plane_name(orientation: tuple[float, ...]) -> str:
    _, _, normal = unit_axes(orientation)
    return _PLANES[int(np.argmax(np.abs(normal)))]


def _num(v: float) -> str:
    return f"{v:g}".replace("-", "m").replace(".", "p") if v != int(v) else str(int(v))


@dataclass(frozen=True)
class _KeyPart:
    """One attribute that separates volumes: how to read it and how to name it."""

    name: str
    reason: str
    value: Callable[[SliceRef], Any]


def _mosaic_key(s: SliceRef) -> str | None:
    """Each mosaic file is one 3-D volume of a 4-D series: ordered by AcquisitionNumber, InstanceNumber, SOP UID."""
    if s.tile is None and s.mosaic_error is None:
        return None
    h = s.header
    return f"{max(h.acquisition_number or 0, 0):010d}|{max(h.instance_number or 0, 0):010d}|{h.sop_uid}"


def _direction_key(s: SliceRef) -> tuple[float, ...] | None:
    d = s.diffusion_direction
    return None if d is None else tuple(round(float(c), 3) for c in d)


_PRIMARY: tuple[_KeyPart, ...] = (
    _KeyPart("file", "several multi-frame objects", lambda s: s.header.sop_uid if s.frame is not None else None),
    _KeyPart("orientation", "more than one orientation", lambda s: s.orientation),  # clustered below
    _KeyPart("size", "inconsistent image size (rows x columns)", lambda s: (s.rows, s.columns)),
    _KeyPart("echo", "several echoes", lambda s: s.echo),
    _KeyPart("temporal", "several temporal positions", lambda s: s.temporal_position),
    _KeyPart("stack", "several stacks", lambda s: s.stack_id),
    _KeyPart("b_value", "several diffusion b-values", lambda s: s.b_value),
    _KeyPart("direction", "several diffusion directions", _direction_key),
    _KeyPart("mosaic", "several Siemens mosaic volumes (one per file)", _mosaic_key),
)

_SECONDARY: tuple[_KeyPart, ...] = (
    _KeyPart("acquisition", "repeated acquisitions", lambda s: s.header.acquisition_number),
    _KeyPart("trigger", "several trigger times", lambda s: s.header.trigger_time_ms),
    _KeyPart("image_type", "several image types", lambda s: s.header.image_type or None),
)


def _cluster_orientations(slices: Sequence[SliceRef]) -> list[int | None]:
    """Orientation cluster index per slice: cosines within tolerance are one orientation."""
    reps: list[np.ndarray] = []
    out: list[int | None] = []
    # The same cosines always land in the same cluster (clusters are only ever added after the ones they were
    # compared with), so each distinct value is compared once.
    known: dict[tuple[float, ...], int] = {}
    for s in slices:
        if s.orientation is None:
            out.append(None)
            continue
        hit = known.get(s.orientation) if isinstance(s.orientation, tuple) else None
        if hit is not None:
            out.append(hit)
            continue
        o = np.asarray(s.orientation, dtype=float)
        for i, r in enumerate(reps):
            if np.max(np.abs(o - r)) <= ORIENTATION_TOLERANCE:
                out.append(i)
                break
        else:
            reps.append(o)
            out.append(len(reps) - 1)
        if isinstance(s.orientation, tuple) and np.all(np.isfinite(o)):  # NaN never matches, not even itself
            known[s.orientation] = out[-1]
    return out


def _has_duplicates(slices: Sequence[SliceRef]) -> bool:
    if len(slices) < 2 or slices[0].orientation is None or any(s.position_lps is None for s in slices):
        return False
    _, _, normal = unit_axes(slices[0].orientation)
    z = np.sort(np.asarray([s.position_lps for s in slices], dtype=float) @ normal)
    return bool(np.any(np.diff(z) < DUPLICATE_TOLERANCE_MM))


def _secondary_split(members: list[SliceRef]) -> tuple[str | None, list[tuple[Any, list[SliceRef]]]]:
    """Split repeated acquisitions of one stack; (attribute name, [(value, slices)]) or (None, [(None, all)])."""
    duplicates = _has_duplicates(members)
    whole_ok = None
    for part in _SECONDARY:
        values: dict[Any, list[SliceRef]] = defaultdict(list)
        for s in members:
            values[part.value(s)].append(s)
        if len(values) < 2 or None in values:
            continue
        groups = list(values.values())
        if duplicates:
            if all(len(g) >= 2 and not _has_duplicates(g) for g in groups):
                return part.name, sorted(values.items(), key=lambda kv: str(kv[0]))
        elif part.name == "acquisition":
            # Acquisition numbers that change the geometry: together irregular, each one regular.
            if whole_ok is None:
                whole_ok = plan_stack(members, "").ok
            if not whole_ok and all(len(g) >= 2 and plan_stack(g, "").ok for g in groups):
                return part.name, sorted(values.items(), key=lambda kv: str(kv[0]))
    return None, [(None, members)]


def split_volumes(slices: Sequence[SliceRef]) -> list[tuple[str, str, list[SliceRef]]]:
    """Separate the slices of one series into volumes.

    Returns
    -------
    list of (suffix, reason, slices)
        ``suffix`` is ``""`` for a series that is one volume, else the name
        of the volume within the series (``"echo2"``, ``"t3-axial"``, ...);
        ``reason`` says why the series was split (``""`` when it was not).
    """
    if not slices:
        return []
    orient_cluster = _cluster_orientations(slices)
    groups: dict[tuple[Any, ...], list[SliceRef]] = defaultdict(list)
    for s, oc in zip(slices, orient_cluster):
        key = tuple(oc if part.name == "orientation" else part.value(s) for part in _PRIMARY)
        groups[key].append(s)

    refined: list[tuple[tuple[Any, ...], list[SliceRef]]] = []
    secondary_names: set[str] = set()
    for key, members in groups.items():
        name, parts = _secondary_split(members)
        if name:
            secondary_names.add(name)
        for value, sub in parts:
            refined.append((key + ((name, value),), sub))

    if len(refined) == 1:
        return [("", "", refined[0][1])]

    # Name each volume by the attributes that vary across the series' volumes.
    n_primary = len(_PRIMARY)
    varying = [i for i in range(n_primary + 1) if len({k[i] for k, _ in refined}) > 1]
    reasons = [(_PRIMARY[i].reason if i < n_primary else _secondary_reason(secondary_names)) for i in varying]
    namers = {i: _namer(i, refined) for i in varying}
    out = []
    seen: dict[str, int] = defaultdict(int)
    for key, members in sorted(refined, key=lambda kv: _sort_key(kv[0])):
        suffix = "-".join(namers[i](key[i]) for i in varying) or "v"
        seen[suffix] += 1
        if seen[suffix] > 1:
            suffix = f"{suffix}.{seen[suffix]}"
        out.append((suffix, "; ".join(reasons), members))
    return out


def _secondary_reason(names: set[str]) -> str:
    by_name = {p.name: p.reason for p in _SECONDARY}
    return ", ".join(by_name[n] for n in sorted(names)) or "repeated acquisitions"


def _sort_key(key: tuple[Any, ...]) -> tuple[str, ...]:
    out = []
    for v in key:
        if isinstance(v, (int, float)):
            out.append(f"{float(v):020.6f}")
        elif isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], (int, float)):
            out.append(f"{v[0]}{float(v[1]):020.6f}")
        else:
            out.append(str(v))
    return tuple(out)


def _namer(i: int, refined: list[tuple[tuple[Any, ...], list[SliceRef]]]) -> Callable[[Any], str]:
    n_primary = len(_PRIMARY)
    if i == n_primary:  # secondary: (attribute name, value)
        prefix = {"acquisition": "acq", "trigger": "trig", "image_type": "type-"}

        def secondary(v: Any) -> str:
            name, value = v
            if name is None:
                return "all"
            if isinstance(value, (int, float)):
                return f"{prefix[name]}{_num(float(value))}"
            return prefix[name] + "".join(c if c.isalnum() else "_" for c in str(value))

        return secondary
    part = _PRIMARY[i].name
    values = sorted({k[i] for k, _ in refined}, key=lambda v: _sort_key((v,)))
    ordinal = {v: n + 1 for n, v in enumerate(values)}
    if part == "orientation":
        example = {k[i]: members[0].orientation for k, members in refined}
        names: dict[Any, str] = {}
        for v in values:
            o = example[v]
            names[v] = _plane_name(o) if o is not None else "no-orientation"
        counts: dict[str, int] = defaultdict(int)
        for n in names.values():
            counts[n] += 1
        taken: dict[str, int] = defaultdict(int)
        for v in values:
            if counts[names[v]] > 1:
                taken[names[v]] += 1
                names[v] = f"{names[v]}{taken[names[v]]}"
        return lambda v: names[v]
    if part == "size":
        return lambda v: f"{v[1]}x{v[0]}"
    if part == "echo":
        return lambda v: "echo-none" if v is None else (f"echo{_num(v[1])}" if v[0] == "n" else f"te{_num(v[1])}")
    if part == "temporal":
        return lambda v: "t-none" if v is None else f"t{v}"
    if part == "stack":
        return lambda v: f"stack{v}"
    if part == "b_value":
        return lambda v: "b-none" if v is None else f"b{_num(v)}"
    if part == "mosaic":  # the volume's place in time: vol1, vol2 ... (dcm2niix's 4-D volume order)
        return lambda v: "vol-none" if v is None else f"vol{ordinal[v]}"
    return lambda v: f"{part[:4]}{ordinal[v]}"


# ---------------------------------------------------------------------------------------------


def describe_volume(
    series_uid: str, suffix: str, members: list[SliceRef], *, tilt: TiltPolicy = "resample", reason: str = ""
) -> SeriesInfo:
    """A :class:`SeriesInfo` for the slices of one volume, with its header-only plan."""
    first = members[0].header
    volume_id = f"{series_uid}#{suffix}" if suffix else series_uid
    plan = plan_stack(members, f"series {volume_id}", tilt=tilt)
    problems = []
    if reason:
        problems.append(f"series split into volumes ({reason})")
    problems.extend(plan.problems)
    if plan.error:
        problems.append(f"cannot be assembled: {plan.error}")
    by_file: dict[Path, list[int]] = defaultdict(list)
    multiframe = False
    for s in members:
        indices = by_file.setdefault(s.header.path, [])
        if s.frame is not None:
            multiframe = True
            indices.append(s.frame)
    files = tuple(sorted(by_file))
    return SeriesInfo(
        patient_id=first.patient_id,
        study_uid=first.study_uid,
        study_date=first.study_date,
        series_uid=series_uid,
        modality=first.modality,
        series_description=first.series_description,
        files=files,
        slice_thickness_mm=members[0].slice_thickness_mm,
        volume_id=volume_id,
        frames=tuple(tuple(sorted(by_file[f])) for f in files) if multiframe else (),
        series_number=first.series_number,
        n_slices=plan.n_slices,
        geometry=plan.geometry if plan.ok else None,
        problems=tuple(problems),
        image_type=first.image_type,
        convolution_kernel=first.convolution_kernel,
        contrast_agent=first.contrast_agent,
        body_part=first.body_part,
        plane=acquisition_plane(members[0].orientation),
        frame_of_reference_uid=first.frame_of_reference_uid,
        sop_class_uid=first.sop_class_uid,
        sop_uids=tuple(sorted({s.header.sop_uid for s in members})),
    )


def group_series(headers: Iterable[DicomHeader], *, tilt: TiltPolicy = "resample") -> list[SeriesInfo]:
    """Group image headers by Patient / Study / Series and split each series into its volumes.

    Headers that cannot be slices of a volume (see
    :attr:`DicomHeader.not_image_reason`) are left out. Volumes are ordered by
    patient, study date, series UID and volume name.
    """
    groups: dict[tuple[str, str, str], list[DicomHeader]] = defaultdict(list)
    for h in headers:
        if h.is_image:
            groups[(h.patient_id, h.study_uid, h.series_uid)].append(h)
    series: list[SeriesInfo] = []
    for (_, _, series_uid), members in groups.items():
        slices = [s for h in sorted(members, key=lambda h: str(h.path)) for s in slices_of(h)]
        for suffix, reason, vol in split_volumes(slices):
            series.append(describe_volume(series_uid, suffix, vol, tilt=tilt, reason=reason))
    series.sort(key=lambda s: (s.patient_id, s.study_date or dt.date.min, s.series_uid, s.volume_id))
    return series
