"""Lesion tracking across time points: one stable id per lesion, whatever each scan's labels.

Every follow-up lesion is mapped into baseline space with the follow-up's registration and
matched to the lesions known so far (baseline lesions and lesions that appeared at earlier
follow-ups) by overlap and centroid distance, with an optimal one-to-one assignment
(``scipy.optimize.linear_sum_assignment``). What the assignment leaves over is then read:

* a follow-up lesion that overlaps a lesion already matched is a fragment of it (split);
* a known lesion that overlaps a follow-up lesion already matched has coalesced into it
  (merged);
* a follow-up lesion that matches nothing is new, and gets the next free id, which it keeps at
  later time points;
* a known lesion that matches nothing has disappeared (and keeps its id should it come back).

Each known lesion is matched against its latest appearance (its last mask and centroid in
baseline space), so a lesion that grows or shrinks steadily is followed step by step.

:func:`recist_values` turns per-label measurements into per-lesion values with the RECIST 1.1
conventions for these cases (Eisenhauer et al., Eur J Cancer 2009;45:228-247, Appendix I).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from imaging.io.geometry import nonzero_box
from imaging.registration.assignment import assign, distance_cost
from imaging.registration.errors import TrackingError
from imaging.registration.propagation import invert_transform

# Status of a follow-up lesion (one label of one scan) and of a tracked lesion (one id).
BASELINE, MATCHED, NEW, SPLIT, MERGED, DISAPPEARED = "baseline", "matched", "new", "split", "merged", "disappeared"


@dataclass(frozen=True)
class LabelMatch:
    """One lesion (label value) of one time point and the tracked lesion(s) it belongs to.

    Attributes
    ----------
    label : its value in that time point's label map.
    lesion_ids : the stable id(s): one, or several when lesions have merged into it (the first
        is the one it was matched to; the others coalesced into it).
    status : "baseline", "matched", "new", "split" (one of several fragments of one lesion) or
        "merged" (several lesions now one).
    centroid_lps : its centroid mapped into baseline space, mm.
    volume_mm3 : its volume on its own grid, mm3.
    distance_mm : centroid distance to the lesion it was matched to (None for new lesions).
    overlap : overlap coefficient |A n B| / min(|A|, |B|) with that lesion, in baseline space.
    """

    label: int
    lesion_ids: tuple[int, ...]
    status: str
    centroid_lps: tuple[float, float, float]
    volume_mm3: float
    distance_mm: float | None = None
    overlap: float | None = None


@dataclass(frozen=True)
class LesionState:
    """One tracked lesion at one time point.

    Attributes
    ----------
    timepoint : the time point's name.
    status : "baseline", "matched", "new", "split", "merged" or "disappeared".
    labels : its label value(s) in that time point's map: several fragments when split, the
        coalesced lesion when merged, none when disappeared.
    merged_into : for a lesion that coalesced into another: that lesion's id (its own value is
        then recorded as 0); None otherwise.
    reappeared : True when it was "disappeared" at the time point before.
    """

    timepoint: str
    status: str
    labels: tuple[int, ...]
    merged_into: int | None = None
    reappeared: bool = False


@dataclass(frozen=True)
class TrackingResult:
    """Stable lesion ids across time points.

    Attributes
    ----------
    timepoints : the baseline's name, then the follow-ups' names, in the order given.
    matches : per time point, label value -> :class:`LabelMatch`.
    histories : per stable id, its :class:`LesionState` at each time point from the one it was
        first seen at (baseline lesions: all time points; new lesions: from their appearance).
    """

    timepoints: tuple[str, ...]
    matches: Mapping[str, Mapping[int, LabelMatch]]
    histories: Mapping[int, tuple[LesionState, ...]]

    @property
    def lesion_ids(self) -> tuple[int, ...]:
        return tuple(sorted(self.histories))

    @property
    def new_lesion_ids(self) -> tuple[int, ...]:
        """Ids of lesions first seen after the baseline."""
        return tuple(i for i in self.lesion_ids if self.histories[i][0].status == NEW)

    def label_ids(self, timepoint: str) -> dict[int, tuple[int, ...]]:
        """Label value -> stable id(s) at ``timepoint``."""
        return {label: m.lesion_ids for label, m in self._at(timepoint).items()}

    def label_status(self, timepoint: str) -> dict[int, str]:
        """Label value -> status at ``timepoint``."""
        return {label: m.status for label, m in self._at(timepoint).items()}

    def state(self, lesion_id: int, timepoint: str) -> LesionState | None:
        """The state of lesion ``lesion_id`` at ``timepoint`` (None before it appeared)."""
        for s in self.histories.get(lesion_id, ()):
            if s.timepoint == timepoint:
                return s
        return None

    def _at(self, timepoint: str) -> Mapping[int, LabelMatch]:
        if timepoint not in self.matches:
            raise KeyError(f"unknown time point {timepoint!r}; known: {', '.join(self.timepoints)}")
        return self.matches[timepoint]

    def to_dict(self) -> dict:
        return {
            "timepoints": list(self.timepoints),
            "labels": {
                tp: {str(label): {"lesion_ids": list(m.lesion_ids), "status": m.status,
                                  "distance_mm": m.distance_mm, "overlap": m.overlap}
                     for label, m in sorted(self.matches[tp].items())}
                for tp in self.timepoints
            },
            "lesions": {
                str(i): [{"timepoint": s.timepoint, "status": s.status, "labels": list(s.labels),
                          "merged_into": s.merged_into, "reappeared": s.reappeared} for s in h]
                for i, h in sorted(self.histories.items())
            },
        }


@dataclass
class _Reference:
    """A tracked lesion as last seen, in baseline space."""

    lesion_id: int
    voxels: np.ndarray  # sorted flat indices on the baseline grid
    centroid: np.ndarray  # LPS mm
    present: bool = True


@dataclass
class _Observed:
    label: int
    voxels: np.ndarray
    centroid: np.ndarray
    volume_mm3: float
    ids: list[int] = field(default_factory=list)
    status: str = MATCHED
    distance: float | None = None
    overlap: float | None = None


@dataclass(frozen=True)
class _Boxed:
    """The part of a label map that holds labels: a copy of its non-zero box, and where the box lies.

    Label maps are mostly background (a 512 x 512 x 61 CT with a 3 cm lesion is 99.9 % zeros), so
    everything per label is done on the box; flat indices are given on the whole grid.
    """

    arr: np.ndarray  # the box, numpy (z, y, x) order; empty when there is no label
    start_zyx: tuple[int, int, int]
    shape_zyx: tuple[int, int, int]  # of the whole grid

    @classmethod
    def of(cls, image: sitk.Image, name: str) -> _Boxed:
        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise TrackingError(f"{name}: a 3-D scalar label map is required")
        view = sitk.GetArrayViewFromImage(image)
        box = nonzero_box(view)
        if box is None:
            return cls(np.zeros((0, 0, 0), dtype=np.int64), (0, 0, 0), view.shape)
        arr = np.array(view[box])  # a copy: nothing may keep a view of the image's buffer
        if not np.issubdtype(arr.dtype, np.integer):
            if not np.all(np.mod(arr, 1) == 0):
                raise TrackingError(f"{name}: label map has non-integer values")
            arr = arr.astype(np.int64)
        return cls(arr, tuple(b.start for b in box), view.shape)  # type: ignore[arg-type]

    def values(self) -> list[int]:
        return [int(v) for v in np.unique(self.arr) if v != 0]

    def flat_indices(self, value: int) -> np.ndarray:
        """Sorted flat indices (on the whole grid) of the voxels of ``value``."""
        local = np.nonzero(self.arr == value)
        return np.ravel_multi_index(tuple(i + s for i, s in zip(local, self.start_zyx)), self.shape_zyx)

    def centroids(self, image: sitk.Image, labels: list[int]) -> dict[int, np.ndarray]:
        """Centroid (LPS mm, on the image's own grid) of each label."""
        out = {}
        for v in labels:
            idx_zyx = np.argwhere(self.arr == v).mean(axis=0) + np.asarray(self.start_zyx)
            out[v] = np.asarray(image.TransformContinuousIndexToPhysicalPoint(idx_zyx[::-1].tolist()), dtype=float)
        return out


# Nearest-neighbour ties (a baseline voxel centre mapped exactly half-way between two follow-up voxels,
# as when two grids are offset by half a voxel) would be decided by floating-point noise, which differs
# with the route taken to a voxel's position (whole grid, or a box of it). Moving every mapped point by
# this fraction of a follow-up voxel along each index axis decides them all the same way, towards the
# higher index, on any grid; no other voxel changes.
_TIE_BREAK_VOXELS = 1e-6


def _tie_broken(forward: sitk.Transform, labels: sitk.Image) -> sitk.Transform:
    direction = np.asarray(labels.GetDirection(), dtype=float).reshape(3, 3)
    nudge = direction @ (_TIE_BREAK_VOXELS * np.asarray(labels.GetSpacing(), dtype=float))
    return sitk.CompositeTransform([sitk.TranslationTransform(3, nudge.tolist()), forward])


def _in_baseline_space(labels: sitk.Image, boxed: _Boxed, baseline: sitk.Image, forward: sitk.Transform,
                       to_baseline: sitk.Transform) -> _Boxed:
    """The follow-up's labels resampled (nearest neighbour) onto the baseline grid, as a box of it.

    A baseline voxel takes a label when ``forward`` maps its centre within half a voxel of a labelled
    follow-up voxel (exact ties go to the higher follow-up index: ``_tie_broken``). For a linear
    ``forward`` those centres lie in the parallelepiped spanned by the inverse images of the corners
    of the follow-up's label box (widened by half a voxel), so only the baseline voxels in its
    bounding box (plus one) are resampled: the same values as resampling the whole grid. A
    non-linear transform resamples the whole grid.
    """
    integer = labels.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64)
    pixel = labels.GetPixelID() if integer else sitk.sitkInt32
    shape = tuple(int(v) for v in reversed(baseline.GetSize()))
    if boxed.arr.size == 0:
        return _Boxed(np.zeros((0, 0, 0), dtype=np.int64), (0, 0, 0), shape)  # type: ignore[arg-type]
    lo_xyz = np.asarray(boxed.start_zyx[::-1], dtype=float) - 0.5
    hi_xyz = lo_xyz + np.asarray(boxed.arr.shape[::-1], dtype=float)
    start_xyz, size_xyz = np.zeros(3, dtype=int), np.asarray(baseline.GetSize(), dtype=int)
    if forward.IsLinear():
        corners = [labels.TransformContinuousIndexToPhysicalPoint([float(c) for c in np.where(bits, hi_xyz, lo_xyz)])
                   for bits in np.ndindex(2, 2, 2)]
        idx = np.array([baseline.TransformPhysicalPointToContinuousIndex(to_baseline.TransformPoint(c)) for c in corners])
        start_xyz = np.clip(np.floor(idx.min(axis=0)).astype(int) - 1, 0, size_xyz)
        stop_xyz = np.clip(np.ceil(idx.max(axis=0)).astype(int) + 2, 0, size_xyz)
        if np.any(stop_xyz <= start_xyz):  # lands outside the baseline grid
            return _Boxed(np.zeros((0, 0, 0), dtype=np.int64), (0, 0, 0), shape)  # type: ignore[arg-type]
        size_xyz = stop_xyz - start_xyz
    grid = sitk.Image([int(v) for v in size_xyz], sitk.sitkUInt8)
    grid.SetSpacing(baseline.GetSpacing())
    grid.SetDirection(baseline.GetDirection())
    grid.SetOrigin(baseline.TransformIndexToPhysicalPoint([int(v) for v in start_xyz]))
    # A copy, not a view: a view of the temporary resampled image would outlive it.
    arr = sitk.GetArrayFromImage(
        sitk.Resample(labels if integer else sitk.Cast(labels, pixel), grid, _tie_broken(forward, labels),
                      sitk.sitkNearestNeighbor, 0, pixel))
    return _Boxed(arr, tuple(int(v) for v in start_xyz[::-1]), shape)  # type: ignore[arg-type]


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) == 0 or len(b) == 0:
        return 0.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / min(len(a), len(b))


def track_lesions(
    baseline_labels: sitk.Image,
    followups: Sequence[tuple[str, sitk.Image, sitk.Transform | None]],
    *,
    max_distance_mm: float = 20.0,
    min_overlap: float = 0.1,
    baseline_name: str = "baseline",
) -> TrackingResult:
    """Give every lesion one id across the baseline and its follow-ups.

    Parameters
    ----------
    baseline_labels : baseline label map; its label values are the ids of the baseline lesions.
    followups : (time point name, label map, transform), in time order. ``transform`` is the
        follow-up's registration to the baseline (FIXED = baseline, MOVING = follow-up: it maps
        baseline points to follow-up points; follow-up points are brought back with its
        inverse), or ``None`` when the follow-up shares the baseline's frame of reference.
        Label values of a follow-up need not mean anything: they are matched, not trusted.
    max_distance_mm : two lesions whose centroids (in baseline space) are at most this far
        apart may be matched even without overlap.
    min_overlap : two lesions that overlap by at least this overlap coefficient
        (|A n B| / min(|A|, |B|), in baseline space) may be matched whatever their distance;
        fragments and coalesced lesions are recognised by it.

    Returns
    -------
    TrackingResult
        Per time point, label -> stable id(s) and status; per id, its history. New lesions get
        ids above the largest baseline label, in order of appearance (then of label value).

    Raises
    ------
    TrackingError
        Label maps that are not 3-D integer maps, or repeated time point names.
    """
    if max_distance_mm <= 0:
        raise ValueError("max_distance_mm must be > 0")
    if not 0 < min_overlap <= 1:
        raise ValueError("min_overlap must be in (0, 1]")
    names = [baseline_name] + [name for name, _, _ in followups]
    if len(set(names)) != len(names):
        raise TrackingError(f"time point names must be unique, got {names}")

    base = _Boxed.of(baseline_labels, f"baseline labels ({baseline_name})")
    base_ids = base.values()
    base_centroids = base.centroids(baseline_labels, base_ids)
    voxel_mm3 = float(np.prod(baseline_labels.GetSpacing()))
    refs: dict[int, _Reference] = {
        i: _Reference(i, base.flat_indices(i), base_centroids[i]) for i in base_ids
    }
    matches: dict[str, dict[int, LabelMatch]] = {
        baseline_name: {
            i: LabelMatch(i, (i,), BASELINE, tuple(float(v) for v in base_centroids[i]),  # type: ignore[arg-type]
                          len(refs[i].voxels) * voxel_mm3)
            for i in base_ids
        }
    }
    histories: dict[int, list[LesionState]] = {i: [LesionState(baseline_name, BASELINE, (i,))] for i in base_ids}
    next_id = (max(base_ids) if base_ids else 0) + 1

    for name, labels, transform in followups:
        boxed = _Boxed.of(labels, f"labels of {name}")
        values = boxed.values()
        own_centroids = boxed.centroids(labels, values)
        if transform is None:
            to_baseline: sitk.Transform = sitk.Transform()
            forward: sitk.Transform = sitk.Transform()
        else:
            forward = transform
            to_baseline = invert_transform(transform, baseline_labels)
        in_base = _in_baseline_space(labels, boxed, baseline_labels, forward, to_baseline)
        fu_vox_mm3 = float(np.prod(labels.GetSpacing()))
        observed = [
            _Observed(
                v, in_base.flat_indices(v),
                np.asarray(to_baseline.TransformPoint(tuple(float(c) for c in own_centroids[v])), dtype=float),
                int(np.count_nonzero(boxed.arr == v)) * fu_vox_mm3,
            )
            for v in values
        ]
        _match_one(list(refs.values()), observed, max_distance_mm, min_overlap)

        # Read the assignment: new ids, then per-reference fragments and merges.
        for ob in observed:
            if not ob.ids:
                ob.ids, ob.status = [next_id], NEW
                next_id += 1
        fragments: dict[int, list[_Observed]] = {}
        for ob in observed:
            if ob.status != NEW:
                fragments.setdefault(ob.ids[0], []).append(ob)
        for ob in observed:
            if len(ob.ids) > 1:
                ob.status = MERGED
            elif ob.status != NEW and len(fragments[ob.ids[0]]) > 1:
                ob.status = SPLIT
        matches[name] = {
            ob.label: LabelMatch(ob.label, tuple(ob.ids), ob.status, tuple(float(v) for v in ob.centroid),  # type: ignore[arg-type]
                                 ob.volume_mm3, ob.distance, ob.overlap)
            for ob in observed
        }
        absorbed = {i: ob for ob in observed for i in ob.ids[1:]}
        for ref in list(refs.values()):
            was_present = ref.present
            if ref.lesion_id in fragments:
                obs = fragments[ref.lesion_id]
                status = MERGED if any(len(o.ids) > 1 for o in obs) else (SPLIT if len(obs) > 1 else MATCHED)
                histories[ref.lesion_id].append(
                    LesionState(name, status, tuple(o.label for o in obs), reappeared=not was_present)
                )
                ref.voxels = np.unique(np.concatenate([o.voxels for o in obs]))
                weights = np.array([max(len(o.voxels), 1) for o in obs], dtype=float)
                ref.centroid = np.average([o.centroid for o in obs], axis=0, weights=weights)
                ref.present = True
            elif ref.lesion_id in absorbed:
                ob = absorbed[ref.lesion_id]
                histories[ref.lesion_id].append(
                    LesionState(name, MERGED, (ob.label,), merged_into=ob.ids[0], reappeared=not was_present)
                )
                ref.present = True  # coalesced, not gone: its last own mask stays the reference
            else:
                histories[ref.lesion_id].append(LesionState(name, DISAPPEARED, ()))
                ref.present = False
        for ob in observed:
            if ob.status == NEW:
                lid = ob.ids[0]
                refs[lid] = _Reference(lid, ob.voxels, ob.centroid)
                histories[lid] = [LesionState(name, NEW, (ob.label,))]

    return TrackingResult(
        timepoints=tuple(names),
        matches={k: dict(v) for k, v in matches.items()},
        histories={k: tuple(v) for k, v in histories.items()},
    )


def _match_one(refs: list[_Reference], observed: list[_Observed], max_distance_mm: float, min_overlap: float) -> None:
    """Assign ``observed`` lesions to ``refs`` in place (sets ids, distance, overlap)."""
    if not refs or not observed:
        return
    n_r, n_o = len(refs), len(observed)
    overlap = np.zeros((n_r, n_o))
    dist = np.zeros((n_r, n_o))
    for i, r in enumerate(refs):
        for j, o in enumerate(observed):
            overlap[i, j] = _overlap(r.voxels, o.voxels)
            dist[i, j] = float(np.linalg.norm(r.centroid - o.centroid))
    admissible = (overlap >= min_overlap) | (dist <= max_distance_mm)
    # Both terms in [0, ~1] for admissible pairs: close and overlapping is cheapest.
    ref_taken: dict[int, int] = {}
    for i, j in assign(distance_cost(dist, max_distance_mm, overlap), admissible):
        ob = observed[j]
        ob.ids = [refs[i].lesion_id]
        ob.distance, ob.overlap = float(dist[i, j]), float(overlap[i, j])
        ref_taken[i] = j
    # Leftover follow-up lesions overlapping a matched lesion: its fragments.
    for j, ob in enumerate(observed):
        if ob.ids:
            continue
        cand = [i for i in ref_taken if overlap[i, j] >= min_overlap]
        if cand:
            i = max(cand, key=lambda k: (overlap[k, j], -dist[k, j]))
            ob.ids = [refs[i].lesion_id]
            ob.distance, ob.overlap = float(dist[i, j]), float(overlap[i, j])
    # Leftover known lesions overlapping a matched follow-up lesion: coalesced into it.
    for i, ref in enumerate(refs):
        if i in ref_taken:
            continue
        cand = [j for j in range(n_o) if observed[j].ids and overlap[i, j] >= min_overlap]
        if cand:
            j = max(cand, key=lambda k: (overlap[i, k], -dist[i, k]))
            observed[j].ids.append(ref.lesion_id)


# ---------------------------------------------------------------------------------------------
# RECIST 1.1 conventions for tracked lesions
# ---------------------------------------------------------------------------------------------
TOO_SMALL_DEFAULT_MM = 5.0


@dataclass(frozen=True)
class TrackedValue:
    """The value of one tracked lesion at one time point, after the RECIST conventions.

    Attributes
    ----------
    value_mm : what enters the sum of diameters, mm.
    status : the lesion's tracking status at that time point.
    flags : why the value is what it is ("split_fragments_summed", "coalesced_measured_as_one",
        "coalesced_into:<id>", "disappeared", "too_small_to_measure").
    labels : the label values it was measured on.
    """

    lesion_id: int
    timepoint: str
    value_mm: float
    status: str
    flags: tuple[str, ...] = ()
    labels: tuple[int, ...] = ()


def _measured(value: float | None, measurable_min_mm: float | None) -> tuple[float, tuple[str, ...]]:
    """One measurement, with the too-small-to-measure default (RECIST 1.1 Appendix I)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return TOO_SMALL_DEFAULT_MM, ("too_small_to_measure",)
    if value < 0:
        raise TrackingError(f"negative measurement {value} mm")
    if measurable_min_mm is not None and 0 < value < measurable_min_mm:
        return TOO_SMALL_DEFAULT_MM, ("too_small_to_measure",)
    return float(value), ()


def recist_values(
    tracking: TrackingResult,
    measurements: Mapping[str, Mapping[int, float | None]],
    *,
    measurable_min_mm: float | None = None,
) -> dict[str, dict[int, TrackedValue]]:
    """Per time point and stable id, the diameter that enters the RECIST sum.

    The conventions of RECIST 1.1 (Eisenhauer et al. 2009, Appendix I, "Lesions that split or
    coalesce on treatment" and "Target lesions that become too small to measure"):

    * a lesion that fragments: the longest diameters of the fragments are summed;
    * lesions that coalesce: the coalesced lesion is measured once, under the id it was matched
      to; every other lesion in it is recorded as 0 mm (flag ``coalesced_into:<id>``);
    * a lesion that disappeared: 0 mm;
    * a lesion present but too small to measure: 5 mm, flagged ``too_small_to_measure``. A
      measurement of ``None`` (or NaN) means exactly that; with ``measurable_min_mm``, positive
      measurements below it are treated the same way. (A measured value, however small, is
      otherwise recorded as measured, as RECIST asks.)

    Parameters
    ----------
    tracking : from :func:`track_lesions`.
    measurements : per time point name, label value -> long axis (or short axis for nodes) in
        mm, of that time point's label map. Every label that tracking saw must have one; time
        points missing from ``measurements`` are skipped.
    measurable_min_mm : optional; see above.

    Returns
    -------
    Per time point, stable id -> :class:`TrackedValue` (lesions not yet seen are absent).

    Raises
    ------
    TrackingError
        A label of a tracked time point without a measurement, or a negative measurement.
    """
    out: dict[str, dict[int, TrackedValue]] = {}
    for tp in tracking.timepoints:
        if tp not in measurements:
            continue
        values = measurements[tp]
        missing = sorted(set(tracking.matches[tp]) - set(values))
        if missing:
            raise TrackingError(f"{tp}: no measurement for label(s) {missing}")
        per_id: dict[int, TrackedValue] = {}
        for lid, history in tracking.histories.items():
            state = next((s for s in history if s.timepoint == tp), None)
            if state is None:
                continue
            flags: list[str] = []
            if state.status == DISAPPEARED:
                value, flags = 0.0, ["disappeared"]
            elif state.merged_into is not None:
                value, flags = 0.0, [f"coalesced_into:{state.merged_into}"]
            else:
                value = 0.0
                for label in state.labels:
                    v, f = _measured(values[label], measurable_min_mm)
                    value += v
                    flags.extend(f)
                if state.status == SPLIT:
                    flags.insert(0, "split_fragments_summed")
                elif state.status == MERGED:
                    flags.insert(0, "coalesced_measured_as_one")
            per_id[lid] = TrackedValue(lid, tp, value, state.status, tuple(dict.fromkeys(flags)), state.labels)
        out[tp] = per_id
    return out
