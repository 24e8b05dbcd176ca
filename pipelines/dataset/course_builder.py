"""Turn measured time points and the lesions' tracking into a patient course (../shared/course-format.md)
and lesion rows.

Lesion identity comes from tracking (:mod:`pipelines.dataset.alignment`): each lesion has one id at every
scan, whatever its label value there. Lesions of the baseline scan are the candidates for targets
(the response engine applies measurability and target selection); a lesion first seen after the
baseline is a new lesion. Tracking outcomes enter the course with the contract's fields, so every
criterion applies its own rules to them (RECIST 1.1, Eisenhauer et al. 2009, Appendix I, "Lesions
that split or coalesce on treatment" and "Target lesions that become too small to measure"):

* a lesion that split: one entry per fragment with ``split_from`` (the engine sums them);
* lesions that coalesced: the coalesced lesion is measured once, under the lesion it was matched to,
  and the others are listed with ``coalesced_into`` (they count 0);
* a lesion that disappeared: 0 mm;
* a lesion present but measuring under ``too_small_mm`` (not a node): ``too_small_to_measure``
  (RECIST counts 5 mm).

:func:`build_course` composes the steps: the target candidates at baseline (:func:`_target_candidates`), then
at each scan every baseline lesion by its tracking outcome (:func:`_baseline_lesion`: coalesced, lost, measured
once or split; non-targets by :func:`_as_target_or_non_target`), the lesions first seen at another scan
(:func:`_new_lesion`), the scans not related to the baseline (:func:`_not_evaluated`, :func:`_untracked_rows`)
and, for gliomas, the T2/FLAIR compartments (:func:`_add_glioma_compartments`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imaging.measurement import LesionMeasurement
from imaging.registration.tracking import LabelMatch, LesionState, TrackingResult
from imaging.segmentation import LesionMetadata
from pipelines.dataset.discover import ClinicalContext, Visit
from pipelines.dataset.stages import MeasuredTimepoint

#: RECIST 1.1 sec. 3.1: measurable if >= 10 mm, or >= 2x the slice thickness when slices are thicker than 5 mm.
MIN_MEASURABLE_MM = 10.0


@dataclass(frozen=True)
class FailedTimepoint:
    """A scan that exists but could not be measured: it enters the course as not evaluated."""

    patient_id: str
    study_date: dt.date
    reason: str


def baseline_position(dates: list[dt.date], treatment_start: dt.date | None) -> int:
    """Index of the baseline: the last scan on or before ``treatment_start`` (course-format.md), else the first."""
    if treatment_start is None:
        return 0
    before = [i for i, d in enumerate(dates) if d <= treatment_start]
    return before[-1] if before else 0


def lesion_names(
    tracking: TrackingResult, baseline_date: dt.date, metadata: dict[int, LesionMetadata], default_organ: str
) -> dict[int, LesionMetadata]:
    """Metadata of each tracked lesion id.

    A baseline lesion's id is its baseline label value: the sidecar's entry for that value. A lesion
    first seen at another scan takes the sidecar's entry for its label value there when that value is
    not a baseline lesion's (the reader's labels), else ``L<id>``; names are made unique.
    """
    base = baseline_date.isoformat()
    out: dict[int, LesionMetadata] = {}
    used: set[str] = set()
    base_ids = {i for i, h in tracking.histories.items() if h[0].timepoint == base}
    for lid in sorted(tracking.histories, key=lambda i: (i not in base_ids, i)):
        first = tracking.histories[lid][0]
        label = lid if lid in base_ids else (first.labels[0] if first.labels else lid)
        if lid in base_ids or (label not in base_ids and label in metadata):
            li = metadata.get(label) or LesionMetadata(lesion_id=f"L{lid}", organ=default_organ)
        else:
            li = LesionMetadata(lesion_id=f"L{lid}", organ=default_organ)
        if li.lesion_id in used:
            li = dataclasses.replace(li, lesion_id=f"{li.lesion_id}@{first.timepoint}")
        used.add(li.lesion_id)
        out[lid] = li
    return out


@dataclass(frozen=True)
class _Baseline:
    """The baseline every scan is read against.

    Attributes
    ----------
    index : its position among the date-sorted time points.
    lesion_ids : tracked ids first seen at the baseline (the target candidates), ascending.
    names : every tracked id's metadata (:func:`lesion_names`).
    size_mm : baseline label -> its RECIST diameter there, mm (short axis of a node, else long axis).
    """

    index: int
    lesion_ids: tuple[int, ...]
    names: dict[int, LesionMetadata]
    size_mm: dict[int, float]


@dataclass(frozen=True)
class _Scan:
    """One scan related to the baseline by tracking, as the lesion steps read it.

    Attributes
    ----------
    tp : the scan's measurements.
    name : its name in the tracking (ISO date).
    after_baseline : dated after the baseline (its lesions first seen there are new lesions).
    by_label : label value -> its measurement.
    matches : label value -> the tracked lesion(s) it belongs to.
    tracked_by : how it was related to the baseline (the rows' ``tracked_by``).
    not_found : baseline lesions its carried-over segmentation did not find.
    """

    tp: MeasuredTimepoint
    name: str
    after_baseline: bool
    by_label: dict[int, LesionMeasurement]
    matches: Mapping[int, LabelMatch]
    tracked_by: str
    not_found: set[int]


@dataclass(frozen=True)
class _Readings:
    """What one lesion (or one scan's baseline list) contributes: lesion rows and course entries, in order."""

    rows: tuple[dict[str, Any], ...] = ()
    target: tuple[dict[str, Any], ...] = ()
    non_target: tuple[dict[str, Any], ...] = ()
    new_lesions: tuple[dict[str, Any], ...] = ()


def build_course(
    patient_id: str,
    timepoints: list[MeasuredTimepoint | FailedTimepoint],
    context: ClinicalContext | None,
    metadata: dict[int, LesionMetadata],
    tracking: TrackingResult,
    default_organ: str = "unknown",
    visits: list[Visit] | None = None,
    too_small_mm: float = 0.0,
    tracked_by: dict[dt.date, str] | None = None,
    not_found: dict[dt.date, set[int]] | None = None,
    untracked: dict[dt.date, str] | None = None,
    *,
    flair_increase_pct: float | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
    """Course (as the contract's dict), one lesion row per lesion (or fragment) x time point, and a note
    on the baseline.

    Parameters
    ----------
    tracking : the patient's tracking, time points named by ISO date. A scan absent from it (not
        measured, or not tracked) enters the course as not evaluated.
    too_small_mm : a single (unsplit, non-nodal) lesion measuring less is recorded as too small to
        measure (RECIST counts 5 mm); 0, the default, records every measurement as it is, as RECIST 1.1
        asks of an actual measurement (Appendix I).
    tracked_by : per scan, how it was related to the baseline ("registration", "scanner", "labels").
    not_found : per scan whose mask was carried over from the baseline, the baseline lesions its
        segmentation could not find: not evaluated there (null), not "disappeared".
    untracked : per scan measured but not related to the baseline (its registration failed), why:
        not evaluated, its lesions recorded by label.
    flair_increase_pct : gliomas (``lesions.compartments``): the lesions are enhancing lesions, each scan's
        T2/FLAIR burden gets a row, and a scan without a ``t2_flair`` in the visits CSV gets one from the
        images (:func:`flair_status`); None for other tumours.

    Raises
    ------
    ValueError
        When the baseline scan itself could not be measured.
    """
    timepoints = sorted(timepoints, key=lambda t: t.study_date)
    context, note = _with_treatment_start(context, timepoints)
    b = baseline_position([t.study_date for t in timepoints], context.treatment_start)
    base = _target_candidates(patient_id, timepoints, b, tracking, metadata, default_organ)
    tracked_by, not_found, untracked = tracked_by or {}, not_found or {}, untracked or {}
    clinical_by_date = {v.date: v.clinical.model_dump(exclude_none=True) for v in visits or []}
    course_tps: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for i, tp in enumerate(timepoints):
        entry = _timepoint_entry(tp, clinical_by_date.get(tp.study_date))
        if isinstance(tp, FailedTimepoint) or tp.study_date.isoformat() not in tracking.timepoints:
            readings = [_not_evaluated(base)]
            if isinstance(tp, MeasuredTimepoint):  # measured but not related to the baseline
                entry["slice_thickness_mm"] = tp.slice_thickness_mm
                why = untracked.get(tp.study_date, "not tracked")
                readings.append(_Readings(rows=_untracked_rows(tp, metadata, default_organ, why)))
        else:
            entry["slice_thickness_mm"] = tp.slice_thickness_mm
            scan = _scan(tp, i, base.index, tracking, tracked_by, not_found)
            readings = [_baseline_lesion(lid, scan, base, tracking, too_small_mm) for lid in base.lesion_ids]
            readings += [_new_lesion(lid, scan, base, tracking) for lid in _non_baseline_ids(tracking, base)]
        _collect(readings, entry, rows)
        course_tps.append(entry)
    if flair_increase_pct is not None:
        _add_glioma_compartments(rows, course_tps, timepoints, base.index, flair_increase_pct)
    return _course_dict(patient_id, context, course_tps), rows, note


def _with_treatment_start(context: ClinicalContext | None, timepoints: list[MeasuredTimepoint | FailedTimepoint],
                          ) -> tuple[ClinicalContext, str | None]:
    """The context, and a note, when it gives no treatment start: then the first scan is the baseline
    (course-format.md, "Which scan is the baseline"); the rest of the context (immunotherapy, radiotherapy end,
    tumour type) is kept, since the criteria's flags depend on it."""
    if context is None or context.treatment_start is None:
        note = "no treatment start in the clinical data: the first scan is the baseline"
        first = timepoints[0].study_date
        if context is None:
            return ClinicalContext(treatment_start=first), note
        return context.model_copy(update={"treatment_start": first}), note
    return context, None


def _target_candidates(patient_id: str, timepoints: list[MeasuredTimepoint | FailedTimepoint], b: int,
                       tracking: TrackingResult, metadata: dict[int, LesionMetadata], default_organ: str) -> _Baseline:
    """Target lesion candidates at baseline: every lesion tracked from the baseline scan.

    RECIST 1.1, Eisenhauer et al. 2009, sec. 3.1 (measurability) and 3.3 (at most 5 targets, 2 per organ,
    the rest non-target): the response engine applies both to the candidates; here a lesion enters as a
    non-target only when its metadata says ``target: false``. Each candidate's baseline diameter (short axis
    of a node, long axis otherwise) decides which target carries a coalesced mass (:func:`_carrier`).

    Raises
    ------
    ValueError
        When the baseline scan itself could not be measured.
    """
    baseline = timepoints[b]
    if isinstance(baseline, FailedTimepoint):
        raise ValueError(f"patient {patient_id}: the baseline scan ({baseline.study_date}) could not be measured: {baseline.reason}")
    base_name = baseline.study_date.isoformat()
    names = lesion_names(tracking, baseline.study_date, metadata, default_organ)
    lesion_ids = tuple(sorted(i for i, h in tracking.histories.items() if h[0].timepoint == base_name))
    size_mm = {m.label: (m.short_axis_mm if names[m.label].nodal else m.long_axis_mm)
               for m in baseline.lesions if m.label in names}
    return _Baseline(b, lesion_ids, names, size_mm)


def _is_target(lid: int, base: _Baseline) -> bool:
    """A baseline lesion whose metadata does not make it a non-target (RECIST 1.1 sec. 3.3)."""
    return lid in base.lesion_ids and base.names[lid].target is not False


def _measurable(m: LesionMeasurement, nodal: bool, slice_thickness_mm: float) -> bool:
    """RECIST 1.1, Eisenhauer et al. 2009, sec. 3.1: a node by its short axis (>= 15 mm), any other lesion by
    its long axis (>= 10 mm, or >= 2x the slice thickness when slices are thicker than 5 mm)."""
    if nodal:
        return m.short_axis_mm >= 15.0  # RECIST 1.1 sec. 3.1: nodes by short axis
    threshold = MIN_MEASURABLE_MM if slice_thickness_mm <= 5.0 else 2.0 * slice_thickness_mm
    return m.long_axis_mm >= threshold


def _timepoint_entry(tp: MeasuredTimepoint | FailedTimepoint, clinical: dict[str, Any] | None) -> dict[str, Any]:
    """A scan's course entry (course-format.md ``timepoints``), its lesion lists still empty; the visits
    CSV's clinical data when it has any."""
    entry: dict[str, Any] = {"date": tp.study_date.isoformat(), "target": [], "non_target": [], "new_lesions": []}
    if clinical:
        entry["clinical"] = clinical
    return entry


def _not_evaluated(base: _Baseline) -> _Readings:
    """A scan not related to the baseline (failed, or not tracked): every baseline lesion is not evaluated
    there (course-format.md: a target's ``long_axis_mm: null``, a non-target's ``not_evaluated``)."""
    lesions = [base.names[lid] for lid in base.lesion_ids]
    return _Readings(target=tuple(_unmeasured(li) for li in lesions if li.target is not False),
                     non_target=tuple(_non_target(li, "not_evaluated") for li in lesions if li.target is False))


def _untracked_rows(tp: MeasuredTimepoint, metadata: dict[int, LesionMetadata], default_organ: str,
                    why: str) -> tuple[dict[str, Any], ...]:
    """Rows of a scan measured but not related to the baseline: its lesions by label (``label <value>``),
    tracking ``untracked``, and why in ``tracked_by``."""
    rows = []
    for m in tp.lesions:
        li = metadata.get(m.label) or LesionMetadata(lesion_id=f"L{m.label}", organ=default_organ)
        row = _row(tp, li, m.label, m, "untracked")
        row["lesion_id"] = f"label {m.label}"
        row["tracking"], row["tracked_by"] = "untracked", why
        rows.append(row)
    return tuple(rows)


def _scan(tp: MeasuredTimepoint, i: int, b: int, tracking: TrackingResult, tracked_by: dict[dt.date, str],
          not_found: dict[dt.date, set[int]]) -> _Scan:
    """Scan ``i`` (of the date-sorted time points; ``b`` is the baseline's) as the tracking relates it."""
    name = tp.study_date.isoformat()
    return _Scan(tp=tp, name=name, after_baseline=i > b, by_label={m.label: m for m in tp.lesions},
                 tracked_by=tracked_by.get(tp.study_date, "baseline" if i == b else ""),
                 not_found=not_found.get(tp.study_date, set()), matches=tracking.matches[name])


def _non_baseline_ids(tracking: TrackingResult, base: _Baseline) -> list[int]:
    """Tracked lesions first seen at another scan than the baseline, ascending."""
    return sorted(set(tracking.histories) - set(base.lesion_ids))


def _collect(readings: list[_Readings], entry: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Append the readings, in order, to the scan's course entry and to the lesion rows (in place)."""
    for r in readings:
        rows.extend(r.rows)
        entry["target"].extend(r.target)
        entry["non_target"].extend(r.non_target)
        entry["new_lesions"].extend(r.new_lesions)


def _flags(state: LesionState) -> list[str]:
    """A lesion's tracking status at a scan, and ``reappeared`` when it had disappeared at the scan before."""
    return [state.status] + (["reappeared"] if state.reappeared else [])


def _tracked_row(scan: _Scan, li: LesionMetadata, lesion_name: str, label: int | None, status: str,
                 flags: list[str]) -> dict[str, Any]:
    """A lesion row of a tracked scan: its measurement at ``label`` (none when None or not measured), its
    tracking flags and how the scan was related to the baseline."""
    m = scan.by_label.get(label) if label is not None else None
    row = _row(scan.tp, li, label, m, status)
    row["lesion_id"] = lesion_name
    row["tracking"] = ";".join(flags)
    row["tracked_by"] = scan.tracked_by
    return row


def _target_entry(name: str, li: LesionMetadata, m: LesionMeasurement | None, *, too_small: bool = False,
                  **extra: Any) -> dict[str, Any]:
    """A target's course entry (course-format.md ``target``); no measurement records 0 mm (gone, or
    coalesced into another); ``extra``: ``split_from`` or ``coalesced_into``."""
    entry = {
        "lesion": name, "organ": li.organ, "nodal": li.nodal,
        "long_axis_mm": round(m.long_axis_mm, 3) if m else 0.0,
        "short_axis_mm": round(m.short_axis_mm, 3) if m else 0.0,
        "perpendicular_mm": round(m.perpendicular_mm, 3) if m else 0.0,
        "volume_mm3": round(m.volume_mm3, 3) if m else 0.0,
    }
    if too_small:
        entry["too_small_to_measure"] = True
    entry.update(extra)
    return entry


def _unmeasured(li: LesionMetadata) -> dict[str, Any]:
    """A lesion listed without a measurement (course-format.md: ``null`` = not evaluated at this scan)."""
    return {"lesion": li.lesion_id, "organ": li.organ, "nodal": li.nodal, "long_axis_mm": None, "short_axis_mm": None}


def _non_target(li: LesionMetadata, status: str) -> dict[str, Any]:
    """A non-target's course entry (course-format.md ``non_target``)."""
    return {"lesion": li.lesion_id, "organ": li.organ, "status": status}


def _non_target_status(values: tuple[LesionMeasurement, ...], nodal: bool) -> str:
    """RECIST 1.1, Eisenhauer et al. 2009, sec. 4.3.2: a non-target is present or absent; a non-target node
    is normal (absent) under 10 mm short axis."""
    if not values:
        return "absent"
    return "absent" if nodal and max(m.short_axis_mm for m in values) < 10.0 else "present"


def _as_target_or_non_target(li: LesionMetadata, rows: tuple[dict[str, Any], ...], targets: tuple[dict[str, Any], ...],
                             non_target_status: str) -> _Readings:
    """Non-target lesions: a baseline lesion with ``target: false`` is followed by its status alone
    (RECIST 1.1, Eisenhauer et al. 2009, sec. 4.3.2); every other one by its target entries."""
    if li.target is False:
        return _Readings(rows=rows, non_target=(_non_target(li, non_target_status),))
    return _Readings(rows=rows, target=targets)


def _baseline_lesion(lid: int, scan: _Scan, base: _Baseline, tracking: TrackingResult,
                     too_small_mm: float) -> _Readings:
    """A baseline lesion (target or non-target) at one scan, at the baseline, before it or after it, by
    its tracking outcome: coalesced, lost, measured once or split."""
    li = base.names[lid]
    state = tracking.state(lid, scan.name)
    if state is None:
        return _Readings()
    flags = _flags(state)
    v = _merged_label(state.labels, scan.matches)
    if v is not None:
        return _coalesced_baseline_lesion(lid, li, v, flags, scan, base)
    measured = tuple(scan.by_label[x] for x in state.labels if x in scan.by_label)
    if not measured:
        return _lost_baseline_lesion(lid, li, flags, scan)
    if len(measured) == 1:
        return _measured_baseline_lesion(li, measured[0], flags, scan, too_small_mm)
    return _split_baseline_lesion(li, measured, flags, scan)


def _merged_label(labels: tuple[int, ...], matches: Mapping[int, LabelMatch]) -> int | None:
    """Of a lesion's labels at a scan, the first that several tracked lesions coalesced into, if any."""
    return next((v for v in labels if v in matches and len(matches[v].lesion_ids) > 1), None)


def _carrier(label: int, scan: _Scan, base: _Baseline) -> int:
    """Of the lesions coalesced in ``label``, the one that carries its measurement: the largest baseline
    target (the one target selection keeps), else the first matched."""
    members = scan.matches[label].lesion_ids
    targets = [lid for lid in members if _is_target(lid, base)]
    return max(targets, key=lambda lid: (base.size_mm.get(lid, 0.0), -lid)) if targets else members[0]


def _coalesced_baseline_lesion(lid: int, li: LesionMetadata, label: int, flags: list[str], scan: _Scan,
                               base: _Baseline) -> _Readings:
    """RECIST 1.1, Eisenhauer et al. 2009, Appendix I, "Lesions that split or coalesce on treatment": lesions
    that coalesced are measured once, under the lesion that carries the mass (:func:`_carrier`); each other
    target is listed with ``coalesced_into`` and counts 0. A non-target inside the mass is present."""
    keeper = _carrier(label, scan, base)
    if keeper == lid:
        row = _tracked_row(scan, li, li.lesion_id, label, "present", flags)
        target = _target_entry(li.lesion_id, li, scan.by_label.get(label))
    else:  # the keeper is a baseline target (see _carrier)
        into = base.names[keeper].lesion_id
        row = _tracked_row(scan, li, li.lesion_id, label, "coalesced", [*flags, f"coalesced_into:{into}"])
        target = _target_entry(li.lesion_id, li, None, coalesced_into=into)
    return _as_target_or_non_target(li, (row,), (target,), "present")


def _lost_baseline_lesion(lid: int, li: LesionMetadata, flags: list[str], scan: _Scan) -> _Readings:
    """A baseline lesion with no measurement at a scan. Gone: a target counts 0 mm, a non-target is absent
    (RECIST 1.1, Eisenhauer et al. 2009, sec. 4.3.3 notes, per criteria.md). Missed by a segmentation carried
    over from the baseline: not evidence that it is gone, so not evaluated there (course-format.md: null)."""
    if lid in scan.not_found:
        row = _tracked_row(scan, li, li.lesion_id, None, "not found", [*flags, "not_found_by_carried_segmentation"])
        return _as_target_or_non_target(li, (row,), (_unmeasured(li),), "not_evaluated")
    row = _tracked_row(scan, li, li.lesion_id, None, "absent", flags)
    return _as_target_or_non_target(li, (row,), (_target_entry(li.lesion_id, li, None),), "absent")


def _measured_baseline_lesion(li: LesionMetadata, m: LesionMeasurement, flags: list[str], scan: _Scan,
                              too_small_mm: float) -> _Readings:
    """A baseline lesion measured once at a scan. RECIST 1.1, Eisenhauer et al. 2009, Appendix I, "Target
    lesions that become too small to measure": a single non-nodal lesion measuring more than 0 and less than
    ``too_small_mm`` is recorded ``too_small_to_measure`` (the engine counts 5 mm); nodes keep their actual
    short axis. 0 (the default) records every measurement as it is."""
    small = too_small_mm > 0 and not li.nodal and 0 < m.long_axis_mm < too_small_mm
    row = _tracked_row(scan, li, li.lesion_id, m.label, "present", [*flags, "too_small_to_measure"] if small else flags)
    target = _target_entry(li.lesion_id, li, m, too_small=small)
    return _as_target_or_non_target(li, (row,), (target,), _non_target_status((m,), li.nodal))


def _split_baseline_lesion(li: LesionMetadata, measured: tuple[LesionMeasurement, ...], flags: list[str],
                           scan: _Scan) -> _Readings:
    """RECIST 1.1, Eisenhauer et al. 2009, Appendix I, "Lesions that split or coalesce on treatment": a target
    that split is recorded as its fragments (``<id>.<k>``, ``split_from``), which the engine sums; a
    non-target that split has one status for all its fragments."""
    fragments = [(f"{li.lesion_id}.{k}", m) for k, m in enumerate(measured, start=1)]
    rows = tuple(_tracked_row(scan, li, name, m.label, "present", [*flags, f"fragment_of:{li.lesion_id}"])
                 for name, m in fragments)
    targets = tuple(_target_entry(name, li, m, split_from=li.lesion_id) for name, m in fragments)
    return _as_target_or_non_target(li, rows, targets, _non_target_status(measured, li.nodal))


def _new_lesion(lid: int, scan: _Scan, base: _Baseline, tracking: TrackingResult) -> _Readings:
    """A lesion first seen at another scan than the baseline, at one scan: a new lesion after the baseline
    (RECIST 1.1, Eisenhauer et al. 2009, sec. 4.3.2, "New lesions"), rows only before it ("pre-baseline
    only"). Gone, it has an ``absent`` row and no entry; coalesced into another lesion, see
    :func:`_coalesced_new_lesion`; split, :func:`_new_lesion_parts`."""
    li = base.names[lid]
    state = tracking.state(lid, scan.name)
    if state is None:
        return _Readings()
    flags = _flags(state)
    if state.status == "disappeared" or not state.labels:
        return _Readings(rows=(_tracked_row(scan, li, li.lesion_id, None, "absent", flags),))
    v = _merged_label(state.labels, scan.matches)
    if v is not None and (keeper := _carrier(v, scan, base)) != lid:
        return _coalesced_new_lesion(li, v, base.names[keeper].lesion_id, flags, scan)
    parts = tuple(scan.by_label[x] for x in state.labels if x in scan.by_label)
    if not parts:
        return _Readings()
    return _new_lesion_parts(li, parts, flags, scan)


def _coalesced_new_lesion(li: LesionMetadata, label: int, into: str, flags: list[str], scan: _Scan) -> _Readings:
    """RECIST 1.1, Eisenhauer et al. 2009, Appendix I, "Lesions that split or coalesce on treatment", for a new
    lesion: coalesced into lesion ``into``, it is still there, so after the baseline it stays listed as a new
    lesion, not measured (the mass is measured once, under ``into``)."""
    row = _tracked_row(scan, li, li.lesion_id, label, "coalesced", [*flags, f"coalesced_into:{into}"])
    if not scan.after_baseline:
        return _Readings(rows=(row,))
    return _Readings(rows=(row,), new_lesions=(_unmeasured(li),))


def _new_lesion_parts(li: LesionMetadata, parts: tuple[LesionMeasurement, ...], flags: list[str],
                      scan: _Scan) -> _Readings:
    """A lesion first seen after (or before) the baseline, measured: one row per part (fragments ``<id>.<k>``).
    RECIST 1.1, Eisenhauer et al. 2009, Appendix I, "Lesions that split or coalesce on treatment": a new lesion
    that split stays one new lesion, its fragments summed (:func:`_new_lesion_entry`)."""
    status = "new" if scan.after_baseline else "pre-baseline only"
    whole = len(parts) == 1
    rows = tuple(_tracked_row(scan, li, li.lesion_id if whole else f"{li.lesion_id}.{k}", m.label, status,
                              flags if whole else [*flags, f"fragment_of:{li.lesion_id}"])
                 for k, m in enumerate(parts, start=1))
    if not scan.after_baseline:
        return _Readings(rows=rows)
    return _Readings(rows=rows, new_lesions=(_new_lesion_entry(li, parts, scan.tp.slice_thickness_mm),))


def _new_lesion_entry(li: LesionMetadata, parts: tuple[LesionMeasurement, ...], slice_thickness_mm: float,
                      ) -> dict[str, Any]:
    """A new lesion's course entry (course-format.md ``new_lesions``): its parts' diameters summed, measurable
    by its largest part (RECIST 1.1 sec. 3.1, :func:`_measurable`; iRECIST's new-lesion targets use it)."""
    biggest = max(parts, key=lambda m: m.long_axis_mm)
    return {
        "lesion": li.lesion_id,
        "organ": li.organ,
        "nodal": li.nodal,
        "measurable": _measurable(biggest, li.nodal, slice_thickness_mm),
        "long_axis_mm": round(sum(m.long_axis_mm for m in parts), 3),
        "short_axis_mm": round(sum(m.short_axis_mm for m in parts), 3),
        "perpendicular_mm": round(sum(m.perpendicular_mm for m in parts), 3),
    }


def _add_glioma_compartments(rows: list[dict[str, Any]], course_tps: list[dict[str, Any]],
                             timepoints: list[MeasuredTimepoint | FailedTimepoint], b: int,
                             flair_increase_pct: float) -> None:
    """Gliomas (in place): the lesions are the enhancing compartment; each scan's T2/FLAIR burden gets rows
    (:func:`flair_rows`), a T2/FLAIR status (:func:`flair_status`, RANO, Wen 2010, Table 2), an enhancement
    status (:func:`enhancement_status`) and a ``non_enhancing`` target (:func:`add_flair_target`)."""
    for row in rows:
        row["compartment"] = "enhancing"
    rows.extend(flair_rows(timepoints))
    flair_status(course_tps, timepoints, flair_increase_pct)
    enhancement_status(course_tps, timepoints)
    add_flair_target(course_tps, timepoints, b)


def _course_dict(patient_id: str, context: ClinicalContext, course_tps: list[dict[str, Any]]) -> dict[str, Any]:
    """The course (course-format.md, "Input"): patient, context and the scans' entries."""
    return {
        "patient_id": patient_id,
        "context": {
            "treatment_start": context.treatment_start.isoformat() if context.treatment_start else None,
            "radiotherapy_end": context.radiotherapy_end.isoformat() if context.radiotherapy_end else None,
            "immunotherapy": context.immunotherapy,
            **({"tumour": context.tumour} if getattr(context, "tumour", None) else {}),
        },
        "timepoints": course_tps,
    }


def flair_rows(timepoints: list[MeasuredTimepoint | FailedTimepoint]) -> list[dict[str, Any]]:
    """One lesions.csv row per scan for its T2/FLAIR burden (lesion ``FLAIR``, compartment ``flair_burden``)."""
    rows = []
    for tp in timepoints:
        if not isinstance(tp, MeasuredTimepoint) or (tp.flair is None and tp.flair_problem is None):
            continue
        f = tp.flair or {}
        rows.append({
            "patient_id": tp.patient_id, "date": tp.study_date.isoformat(), "lesion_id": "FLAIR", "label": None,
            "organ": "brain", "nodal": False, "status": "present" if tp.flair else "not_evaluated",
            "volume_mm3": round(f["volume_mm3"], 2) if tp.flair else None,
            "long_axis_mm": round(f["long_axis_mm"], 2) if tp.flair else None,
            "perpendicular_mm": round(f["perpendicular_mm"], 2) if tp.flair else None,
            "bidimensional_product_mm2": round(f["bidimensional_product_mm2"], 2) if tp.flair else None,
            "slice_thickness_mm": round(tp.slice_thickness_mm, 3), "study_uid": tp.study_uid, "series_uid": tp.series_uid,
            "tracking": tp.flair_problem or "", "tracked_by": "", "compartment": "flair_burden",
            "sequence": f.get("sequence", "flair"),
        })
        for name, volume in (f.get("compartments_mm3") or {}).items():
            rows.append({
                "patient_id": tp.patient_id, "date": tp.study_date.isoformat(), "lesion_id": name, "label": None,
                "organ": "brain", "nodal": False, "status": "present" if volume > 0 else "absent",
                "volume_mm3": round(volume, 2), "slice_thickness_mm": round(tp.slice_thickness_mm, 3),
                "study_uid": tp.study_uid, "series_uid": tp.series_uid, "tracking": "", "tracked_by": "",
                "compartment": name, "sequence": "measure",
            })
    return rows


def flair_status(course_tps: list[dict[str, Any]], timepoints: list[MeasuredTimepoint | FailedTimepoint],
                 increase_pct: float) -> None:
    """T2/FLAIR status from the images, where the visits CSV gives none (in place, on the course's entries).

    RANO (Wen 2010, Table 2) asks whether T2/FLAIR non-enhancing lesions are stable or significantly
    increased. Read here: ``increased`` when the FLAIR burden's volume is at least ``increase_pct`` % above
    its smallest earlier value (the +25% RANO uses for products), else ``stable``; the first scan with a
    burden has no earlier value and gets none. The visits CSV's value, when given, wins. The course records
    which source decided (``clinical.t2_flair_source``), which the RANO calls' reasons state.
    """
    smallest: float | None = None
    for entry, tp in zip(course_tps, timepoints, strict=True):
        volume = tp.flair["volume_mm3"] if isinstance(tp, MeasuredTimepoint) and tp.flair else None
        clinical = entry.setdefault("clinical", {})
        if clinical.get("t2_flair") is not None:
            clinical["t2_flair_source"] = "visits CSV"
        elif volume is not None and smallest is not None:
            change = 100.0 * (volume - smallest) / smallest if smallest > 0 else (math.inf if volume > 0 else 0.0)
            clinical["t2_flair"] = "increased" if change >= increase_pct else "stable"
            clinical["t2_flair_source"] = (
                f"images: FLAIR burden {volume / 1000:.1f} ml, {change:+.1f}% from its smallest earlier value "
                f"{smallest / 1000:.1f} ml; increased from {increase_pct:+g}%, lesions.flair_increase_pct")
        if not clinical:
            del entry["clinical"]
        if volume is not None:
            smallest = volume if smallest is None else min(smallest, volume)


#: The course's name of a scan's T2/FLAIR burden, as a target of the criteria that measure T2/FLAIR.
FLAIR_TARGET = "FLAIR"


def add_flair_target(course_tps: list[dict[str, Any]], timepoints: list[MeasuredTimepoint | FailedTimepoint],
                     b: int) -> None:
    """The T2/FLAIR burden as a target of component ``non_enhancing``; the enhancing lesions as ``enhancing``.

    RANO-LGG (van den Bent 2011) and RANO 2.0 for non-enhancing and mixed tumours (Wen 2023) measure the
    T2/FLAIR lesion bidimensionally: the burden's long axis and perpendicular in the slice of its largest
    product. The other criteria read the enhancing component and leave this target out. It enters the course
    only when the baseline's burden was measured; a scan whose burden was not is not evaluated for it.
    """
    baseline = timepoints[b] if b < len(timepoints) else None
    with_flair = isinstance(baseline, MeasuredTimepoint) and baseline.flair is not None
    for entry, tp in zip(course_tps, timepoints, strict=True):
        for target in entry["target"]:
            target.setdefault("component", "enhancing")
        if not with_flair:
            continue
        f = tp.flair if isinstance(tp, MeasuredTimepoint) else None
        entry["target"].append({
            "lesion": FLAIR_TARGET, "organ": "brain", "nodal": False, "component": "non_enhancing",
            "long_axis_mm": round(f["long_axis_mm"], 3) if f else None,
            "perpendicular_mm": round(f["perpendicular_mm"], 3) if f else None,
            "short_axis_mm": None,
            "volume_mm3": round(f["volume_mm3"], 3) if f else None,
        })


def enhancement_status(course_tps: list[dict[str, Any]], timepoints: list[MeasuredTimepoint | FailedTimepoint]) -> None:
    """Contrast enhancement from the images, where the visits CSV gives none (RANO-LGG's "new or increased
    enhancement", RANO 2.0 for non-enhancing tumours).

    Read here, from the enhancing lesions' sum of products: ``none`` when the scan shows no enhancing lesion;
    ``new`` when it shows one and no earlier scan did; ``increased`` when the sum is at least 25% above its
    smallest earlier non-zero value (RANO's +25% for products); else ``stable``. The first scan gets ``none``
    or ``stable``.
    """
    earlier: list[float] = []
    for entry, tp in zip(course_tps, timepoints, strict=True):
        if not isinstance(tp, MeasuredTimepoint):
            continue
        total = sum(m.bidimensional_product_mm2 for m in tp.lesions)
        clinical = entry.setdefault("clinical", {})
        if clinical.get("enhancement") is None:
            positive = [v for v in earlier if v > 0]
            if total <= 0:
                status = "none"
            elif not earlier:
                status = "stable"
            elif not positive:
                status = "new"
            else:
                status = "increased" if total >= 1.25 * min(positive) else "stable"
            clinical["enhancement"] = status
        earlier.append(total)


def _row(tp: MeasuredTimepoint, li: LesionMetadata, label: int | None, m: LesionMeasurement | None, status: str) -> dict[str, Any]:
    def pt(p: tuple[float, float, float]) -> str:
        return " ".join(f"{v:.2f}" for v in p)

    row: dict[str, Any] = {
        "patient_id": tp.patient_id,
        "date": tp.study_date.isoformat(),
        "study_uid": tp.study_uid,
        "series_uid": tp.series_uid,
        "lesion_id": li.lesion_id,
        "label": label,
        "organ": li.organ,
        "nodal": li.nodal,
        "status": status,
        "slice_thickness_mm": round(tp.slice_thickness_mm, 3),
        "compartment": "",
        "sequence": "measure",
    }
    if m is None:
        row.update({"n_voxels": 0, "volume_mm3": 0.0, "long_axis_mm": 0.0, "short_axis_mm": 0.0, "perpendicular_mm": 0.0,
                    "bidimensional_product_mm2": 0.0, "max_3d_diameter_mm": 0.0, "center_lps": "",
                    "long_axis_end0_lps": "", "long_axis_end1_lps": "", "short_axis_end0_lps": "",
                    "short_axis_end1_lps": "", "long_axis_slice": None})
        return row
    row.update(
        {
            "n_voxels": m.n_voxels,
            "volume_mm3": round(m.volume_mm3, 2),
            "long_axis_mm": round(m.long_axis_mm, 2),
            "short_axis_mm": round(m.short_axis_mm, 2),
            "perpendicular_mm": round(m.perpendicular_mm, 2),
            "bidimensional_product_mm2": round(m.bidimensional_product_mm2, 2),
            "max_3d_diameter_mm": round(m.max_3d_diameter_mm, 2),
            "center_lps": pt(m.center_lps),
            "long_axis_end0_lps": pt(m.long_axis_ends_lps[0]),
            "long_axis_end1_lps": pt(m.long_axis_ends_lps[1]),
            "short_axis_end0_lps": pt(m.short_axis_ends_lps[0]),
            "short_axis_end1_lps": pt(m.short_axis_ends_lps[1]),
            "long_axis_slice": m.long_axis_slice,
        }
    )
    return row
