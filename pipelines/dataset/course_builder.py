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
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from imaging.measurement import LesionMeasurement
from imaging.registration.tracking import TrackingResult
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


def _measurable(m: LesionMeasurement, nodal: bool, slice_thickness_mm: float) -> bool:
    if nodal:
        return m.short_axis_mm >= 15.0  # RECIST 1.1 sec. 3.1: nodes by short axis
    threshold = MIN_MEASURABLE_MM if slice_thickness_mm <= 5.0 else 2.0 * slice_thickness_mm
    return m.long_axis_mm >= threshold


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
    dates = [t.study_date for t in timepoints]
    note = None
    if context is None or context.treatment_start is None:
        context = ClinicalContext(treatment_start=dates[0])
        note = "no treatment start in the clinical data: the first scan is the baseline"
    b = baseline_position(dates, context.treatment_start)
    baseline = timepoints[b]
    if isinstance(baseline, FailedTimepoint):
        raise ValueError(f"patient {patient_id}: the baseline scan ({baseline.study_date}) could not be measured: {baseline.reason}")
    base_name = baseline.study_date.isoformat()
    names = lesion_names(tracking, baseline.study_date, metadata, default_organ)
    baseline_ids = sorted(i for i, h in tracking.histories.items() if h[0].timepoint == base_name)
    base_size = {m.label: (m.short_axis_mm if names[m.label].nodal else m.long_axis_mm)
                 for m in baseline.lesions if m.label in names}
    tracked_by, not_found, untracked = tracked_by or {}, not_found or {}, untracked or {}

    def is_target(lid: int) -> bool:
        return lid in baseline_ids and names[lid].target is not False

    def non_target_status(values: list[LesionMeasurement], nodal: bool) -> str:
        # RECIST 1.1 sec. 4.3.2: a non-target node is normal (absent) under 10 mm short axis.
        if not values:
            return "absent"
        return "absent" if nodal and max(m.short_axis_mm for m in values) < 10.0 else "present"

    def target_entry(name: str, li: LesionMetadata, m: LesionMeasurement | None, *, too_small: bool = False,
                     **extra: Any) -> dict[str, Any]:
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

    def not_evaluated(entry: dict[str, Any]) -> None:
        for lid in baseline_ids:
            li = names[lid]
            if li.target is False:
                entry["non_target"].append({"lesion": li.lesion_id, "organ": li.organ, "status": "not_evaluated"})
            else:
                entry["target"].append({"lesion": li.lesion_id, "organ": li.organ, "nodal": li.nodal,
                                        "long_axis_mm": None, "short_axis_mm": None})

    clinical_by_date = {v.date: v.clinical.model_dump(exclude_none=True) for v in visits or []}
    course_tps: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for i, tp in enumerate(timepoints):
        entry: dict[str, Any] = {"date": tp.study_date.isoformat(), "target": [], "non_target": [], "new_lesions": []}
        if clinical_by_date.get(tp.study_date):
            entry["clinical"] = clinical_by_date[tp.study_date]
        name = tp.study_date.isoformat()
        if isinstance(tp, FailedTimepoint) or name not in tracking.timepoints:
            not_evaluated(entry)
            if isinstance(tp, MeasuredTimepoint):  # measured but not related to the baseline
                entry["slice_thickness_mm"] = tp.slice_thickness_mm
                why = untracked.get(tp.study_date, "not tracked")
                for m in tp.lesions:
                    li = metadata.get(m.label) or LesionMetadata(lesion_id=f"L{m.label}", organ=default_organ)
                    row = _row(tp, li, m.label, m, "untracked")
                    row["lesion_id"] = f"label {m.label}"
                    row["tracking"], row["tracked_by"] = "untracked", why
                    rows.append(row)
            course_tps.append(entry)
            continue
        entry["slice_thickness_mm"] = tp.slice_thickness_mm
        by_label = {m.label: m for m in tp.lesions}
        how = tracked_by.get(tp.study_date, "baseline" if i == b else "")
        missed = not_found.get(tp.study_date, set())
        matches = tracking.matches[name]

        def carrier(label: int, matches: Any = matches) -> int:
            """Of the lesions coalesced in ``label``, the one that carries its measurement: the largest baseline
            target (the one target selection keeps), else the first matched."""
            members = matches[label].lesion_ids
            targets = [lid for lid in members if is_target(lid)]
            return max(targets, key=lambda lid: (base_size.get(lid, 0.0), -lid)) if targets else members[0]

        def merged_label(labels: tuple[int, ...], matches: Any = matches) -> int | None:
            return next((v for v in labels if v in matches and len(matches[v].lesion_ids) > 1), None)

        def add_row(li: LesionMetadata, lesion_name: str, label: int | None, status: str, flags: list[str],
                    tp: MeasuredTimepoint = tp, how: str = how, by_label: dict = by_label) -> None:
            m = by_label.get(label) if label is not None else None
            row = _row(tp, li, label, m, status)
            row["lesion_id"] = lesion_name
            row["tracking"] = ";".join(flags)
            row["tracked_by"] = how
            rows.append(row)

        # Baseline lesions (targets and non-targets), at the baseline, before it and after it.
        for lid in baseline_ids:
            li = names[lid]
            state = tracking.state(lid, name)
            if state is None:
                continue
            flags = [state.status] + (["reappeared"] if state.reappeared else [])
            v = merged_label(state.labels)
            if v is not None:  # coalesced with other lesions into label v
                keeper = carrier(v)
                if keeper == lid:
                    add_row(li, li.lesion_id, v, "present", flags)
                    m = by_label.get(v)
                    if li.target is False:
                        entry["non_target"].append({"lesion": li.lesion_id, "organ": li.organ, "status": "present"})
                    else:
                        entry["target"].append(target_entry(li.lesion_id, li, m))
                else:
                    into = names[keeper].lesion_id
                    add_row(li, li.lesion_id, v, "coalesced", [*flags, f"coalesced_into:{into}"])
                    if li.target is False:
                        entry["non_target"].append({"lesion": li.lesion_id, "organ": li.organ, "status": "present"})
                    else:  # the keeper is a baseline target (see carrier)
                        entry["target"].append(target_entry(li.lesion_id, li, None, coalesced_into=into))
                continue
            measured = [by_label[x] for x in state.labels if x in by_label]
            if not measured:
                if lid in missed:  # a carried-over segmentation that did not find it: not evidence it is gone
                    add_row(li, li.lesion_id, None, "not found", [*flags, "not_found_by_carried_segmentation"])
                    if li.target is False:
                        entry["non_target"].append({"lesion": li.lesion_id, "organ": li.organ, "status": "not_evaluated"})
                    else:
                        entry["target"].append({"lesion": li.lesion_id, "organ": li.organ, "nodal": li.nodal,
                                                "long_axis_mm": None, "short_axis_mm": None})
                    continue
                add_row(li, li.lesion_id, None, "absent", flags)
                if li.target is False:
                    entry["non_target"].append({"lesion": li.lesion_id, "organ": li.organ, "status": "absent"})
                else:
                    entry["target"].append(target_entry(li.lesion_id, li, None))
                continue
            if len(measured) == 1:
                m = measured[0]
                small = too_small_mm > 0 and not li.nodal and 0 < m.long_axis_mm < too_small_mm
                add_row(li, li.lesion_id, m.label, "present", [*flags, "too_small_to_measure"] if small else flags)
                if li.target is False:
                    entry["non_target"].append({"lesion": li.lesion_id, "organ": li.organ,
                                                "status": non_target_status(measured, li.nodal)})
                else:
                    entry["target"].append(target_entry(li.lesion_id, li, m, too_small=small))
                continue
            for k, m in enumerate(measured, start=1):  # split: fragments, summed by the engine
                add_row(li, f"{li.lesion_id}.{k}", m.label, "present", [*flags, f"fragment_of:{li.lesion_id}"])
            if li.target is False:
                entry["non_target"].append({"lesion": li.lesion_id, "organ": li.organ,
                                            "status": non_target_status(measured, li.nodal)})
            else:
                for k, m in enumerate(measured, start=1):
                    entry["target"].append(target_entry(f"{li.lesion_id}.{k}", li, m, split_from=li.lesion_id))

        # Lesions first seen at another scan than the baseline.
        for lid in sorted(set(tracking.histories) - set(baseline_ids)):
            li = names[lid]
            state = tracking.state(lid, name)
            if state is None:
                continue
            flags = [state.status] + (["reappeared"] if state.reappeared else [])
            status = "new" if i > b else "pre-baseline only"
            if state.status == "disappeared" or not state.labels:
                add_row(li, li.lesion_id, None, "absent", flags)
                continue
            v = merged_label(state.labels)
            if v is not None and carrier(v) != lid:
                into = names[carrier(v)].lesion_id
                add_row(li, li.lesion_id, v, "coalesced", [*flags, f"coalesced_into:{into}"])
                if i > b:  # still there, inside another lesion: listed, not measured
                    entry["new_lesions"].append({"lesion": li.lesion_id, "organ": li.organ, "nodal": li.nodal,
                                                 "long_axis_mm": None, "short_axis_mm": None})
                continue
            parts = [by_label[x] for x in state.labels if x in by_label]
            if not parts:
                continue
            for k, m in enumerate(parts, start=1):
                lesion_name = li.lesion_id if len(parts) == 1 else f"{li.lesion_id}.{k}"
                add_row(li, lesion_name, m.label, status, flags if len(parts) == 1 else [*flags, f"fragment_of:{li.lesion_id}"])
            if i > b:  # a new lesion that split stays one new lesion, its fragments summed
                long_axis = sum(m.long_axis_mm for m in parts)
                biggest = max(parts, key=lambda m: m.long_axis_mm)
                entry["new_lesions"].append(
                    {
                        "lesion": li.lesion_id,
                        "organ": li.organ,
                        "nodal": li.nodal,
                        "measurable": _measurable(biggest, li.nodal, tp.slice_thickness_mm),
                        "long_axis_mm": round(long_axis, 3),
                        "short_axis_mm": round(sum(m.short_axis_mm for m in parts), 3),
                        "perpendicular_mm": round(sum(m.perpendicular_mm for m in parts), 3),
                    }
                )
        course_tps.append(entry)

    if flair_increase_pct is not None:
        for row in rows:
            row["compartment"] = "enhancing"
        rows.extend(flair_rows(timepoints))
        flair_status(course_tps, timepoints, flair_increase_pct)
        enhancement_status(course_tps, timepoints)
        add_flair_target(course_tps, timepoints, b)
    course = {
        "patient_id": patient_id,
        "context": {
            "treatment_start": context.treatment_start.isoformat() if context.treatment_start else None,
            "radiotherapy_end": context.radiotherapy_end.isoformat() if context.radiotherapy_end else None,
            "immunotherapy": context.immunotherapy,
            **({"tumour": context.tumour} if getattr(context, "tumour", None) else {}),
        },
        "timepoints": course_tps,
    }
    return course, rows, note


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
