"""Machinery shared by the criteria: baseline choice, lesion bookkeeping, burdens, formatting.

Nothing here decides a response; the rules live in the criterion modules.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from imaging.response.errors import CourseError
from imaging.response.models import Course, NewLesion, TargetLesion, Timepoint
from imaging.response.selection import TargetSelection, select_targets

#: Tolerance of threshold comparisons: inputs have 0.1 mm resolution, so a
#: figure within 1e-9 of a threshold is on it (avoids 30/25 = 1.2000000000000002).
EPS = 1e-9
DAYS_PER_WEEK = 7.0
#: Mean month length in days, for growth rates per month (Ferte 2014).
DAYS_PER_MONTH = 365.25 / 12

# Response names (the papers').
CR, PR, SD, PD, NE = "CR", "PR", "SD", "PD", "NE"
NON_CR_NON_PD = "non-CR/non-PD"
#: Component not applicable (no lesions of that kind at baseline); internal only.
NA = "NA"


@dataclass(frozen=True)
class Prepared:
    """A course made ready for a criterion: baseline chosen and targets selected.

    Attributes
    ----------
    course, criterion
        As given.
    baseline_index
        0-based index of the baseline time point.
    baseline_note
        Sentence about how the baseline was chosen when the rule could not apply.
    selection
        Target selection at baseline.
    non_target_ids
        Non-targets listed as such at baseline.
    demoted
        Lesions given as targets that were made non-targets, by id.
    normal_ids
        Normal lymph nodes (< 10 mm) given as targets at baseline: not followed.
    """

    course: Course
    criterion: str
    baseline_index: int
    baseline_note: str | None
    selection: TargetSelection
    non_target_ids: tuple[str, ...]
    demoted: Mapping[str, TargetLesion]
    normal_ids: frozenset[str]

    @property
    def baseline(self) -> Timepoint:
        return self.course.timepoints[self.baseline_index]

    @property
    def targets(self) -> tuple[TargetLesion, ...]:
        return self.selection.targets

    def days_since_baseline(self, tp: Timepoint) -> int:
        return (tp.date - self.baseline.date).days


def find_baseline(course: Course) -> tuple[int, str | None]:
    """Index of the baseline scan, and a note when the rule could not apply.

    course-format.md: the baseline is the last scan dated on or before
    ``context.treatment_start``; with none, the first scan, and the reason says so.
    """
    start = course.context.treatment_start
    candidates = [i for i, tp in enumerate(course.timepoints) if tp.date <= start]
    if candidates:
        return candidates[-1], None
    first = course.timepoints[0].date
    return 0, f"no scan on or before treatment start {start}: first scan ({first}) used as baseline"


#: Glioma criteria and the tumour component (``TargetLesion.component``) their targets measure, when the
#: component is not given: RANO-LGG (van den Bent 2011) measures the non-enhancing lesion on T2/FLAIR; RANO 2010,
#: mRANO and iRANO the enhancing disease; RANO 2.0 (Wen 2023) by ``context.tumour`` (:func:`measured_components`).
#: The other criteria ignore the component.
GLIOMA_COMPONENT: dict[str, str] = {"rano": "enhancing", "mrano": "enhancing", "irano": "enhancing",
                                    "ranolgg": "non_enhancing"}


def measured_components(course: Course, criterion: str) -> tuple[str, ...] | None:
    """The tumour components whose targets a criterion assesses (``None``: every target, component ignored).

    RANO 2.0 (Wen 2023): enhancing tumours by their enhancing disease (``context.tumour`` null or
    ``"enhancing"``), non-enhancing tumours by T2/FLAIR (``"non_enhancing"``), and tumours with both parts by
    both, assessed in parallel (``"mixed"``).
    """
    if criterion == "rano2":
        tumour = course.context.tumour
        if tumour == "mixed":
            return ("enhancing", "non_enhancing")
        return ("non_enhancing",) if tumour == "non_enhancing" else ("enhancing",)
    if criterion in GLIOMA_COMPONENT:
        return (GLIOMA_COMPONENT[criterion],)
    return None


def component_of(lesion: TargetLesion, criterion_default: str) -> str:
    """A target's tumour component: as given, else the criterion's own."""
    return lesion.component or criterion_default


def _select_by_component(course: Course, baseline: Timepoint, index: int, criterion: str,
                         volumetric: bool) -> TargetSelection:
    """Target selection restricted to the components a glioma criterion measures (:func:`measured_components`).

    Targets of another component are not this criterion's disease (a T2/FLAIR measurement under an
    enhancing-disease criterion, or the reverse): they are left out -- neither targets nor non-targets -- and
    the baseline reason says so. RANO 2.0 with ``context.tumour: mixed`` selects the targets of each component
    apart (up to the limit for each; reading: Wen 2023 assesses the two burdens in parallel) and needs every
    baseline target's component.
    """
    components = measured_components(course, criterion)
    if components is None:
        return select_targets(baseline.target, slice_thickness_mm=baseline.slice_thickness_mm, criterion=criterion,
                              volumetric=volumetric)
    if len(components) > 1:
        missing = [t.lesion for t in baseline.target if t.component is None]
        if missing:
            raise CourseError(
                "RANO 2.0 with context.tumour mixed assesses the enhancing and the non-enhancing burden in parallel: "
                "give every baseline target's component (enhancing or non_enhancing)",
                timepoint_index=index + 1, timepoint_date=baseline.date, field=f"target[{missing[0]}].component",
            )
    default = components[0]
    left_out = [t.lesion for t in baseline.target if component_of(t, default) not in components]
    parts = [
        select_targets([t for t in baseline.target if component_of(t, default) == component],
                       slice_thickness_mm=baseline.slice_thickness_mm, criterion=criterion, volumetric=volumetric)
        for component in components
    ]
    notes: list[str] = []
    if left_out:
        other = "non-enhancing (T2/FLAIR)" if default == "enhancing" else "enhancing"
        notes.append(f"{', '.join(left_out)}: {other} component, not assessed by this criterion")
    for part, component in zip(parts, components):
        prefix = f"{component.replace('_', '-')}: " if len(components) > 1 else ""
        notes.extend(prefix + note for note in part.notes)
    return TargetSelection(
        targets=tuple(t for part in parts for t in part.targets),
        non_targets=tuple(n for part in parts for n in part.non_targets),
        normal=tuple(n for part in parts for n in part.normal),
        kept_as_given=all(part.kept_as_given for part in parts) and not left_out,
        notes=tuple(notes),
    )


def prepare(course: Course, criterion: str, *, volumetric: bool = False) -> Prepared:
    """Choose the baseline, select targets, and check lesion ids of the follow-up scans.

    Raises
    ------
    CourseError
        A follow-up lesion id that is neither a baseline lesion nor a fragment
        of one (new lesions belong under ``new_lesions``); new lesions at baseline;
        RANO 2.0 for a mixed tumour with a baseline target whose component is not given.
    """
    index, note = find_baseline(course)
    baseline = course.timepoints[index]
    if baseline.new_lesions:
        raise CourseError(
            "new lesions at the baseline scan: list them as target or non-target lesions",
            timepoint_index=index + 1, timepoint_date=baseline.date, field=f"new_lesions[{baseline.new_lesions[0].lesion}]",
        )
    selection = _select_by_component(course, baseline, index, criterion, volumetric)
    demoted = {lesion.lesion: lesion for lesion, _ in selection.non_targets}
    normal_ids = frozenset(lesion.lesion for lesion in selection.normal)
    non_target_ids = tuple(lesion.lesion for lesion in baseline.non_target)
    prepared = Prepared(course, criterion, index, note, selection, non_target_ids, demoted, normal_ids)
    _check_follow_up_ids(prepared)
    return prepared


def _check_follow_up_ids(prep: Prepared) -> None:
    known_targets = {lesion.lesion for lesion in prep.course.timepoints[prep.baseline_index].target}
    known_non_targets = set(prep.non_target_ids) | set(prep.demoted)
    for offset, tp in enumerate(prep.course.timepoints[prep.baseline_index + 1:]):
        number = prep.baseline_index + offset + 2
        ids = {lesion.lesion for lesion in tp.target}
        for lesion in tp.target:
            if lesion.lesion in known_targets or lesion.lesion in known_non_targets:
                continue
            root = _fragment_root(lesion, tp, known_targets | known_non_targets)
            if root is None:
                raise CourseError(
                    "not a lesion of the baseline scan (nor a fragment of one via split_from); "
                    "list lesions that appeared after baseline under new_lesions",
                    timepoint_index=number, timepoint_date=tp.date, field=f"target[{lesion.lesion}]",
                )
        for lesion in tp.target:
            if lesion.coalesced_into is not None and lesion.coalesced_into not in ids | known_targets:
                raise CourseError(
                    f"coalesced_into {lesion.coalesced_into!r} is not a target lesion",
                    timepoint_index=number, timepoint_date=tp.date, field=f"target[{lesion.lesion}].coalesced_into",
                )
        for lesion in tp.non_target:
            if lesion.lesion not in known_non_targets and lesion.lesion not in known_targets:
                raise CourseError(
                    "not a lesion of the baseline scan; list lesions that appeared after baseline under new_lesions",
                    timepoint_index=number, timepoint_date=tp.date, field=f"non_target[{lesion.lesion}]",
                )


def _fragment_root(lesion: TargetLesion, tp: Timepoint, roots: set[str]) -> str | None:
    by_id = {item.lesion: item for item in tp.target}
    seen: set[str] = set()
    current = lesion
    while current.split_from is not None and current.lesion not in seen:
        seen.add(current.lesion)
        if current.split_from in roots:
            return current.split_from
        parent = by_id.get(current.split_from)
        if parent is None:
            return None
        current = parent
    return None


# --------------------------------------------------------------------------- burden


@dataclass(frozen=True)
class Burden:
    """A criterion's target burden at one scan.

    Attributes
    ----------
    total
        Sum over the targets that could be measured (the criterion's unit).
    complete
        ``True`` when every target was evaluated.
    missing
        Targets not evaluated at this scan.
    values
        Per baseline target: its contribution (fragments summed), ``None`` if not evaluated.
    notes
        Split, coalesced and too-small remarks, in words.
    """

    total: float
    complete: bool
    missing: tuple[str, ...]
    values: Mapping[str, float | None]
    notes: tuple[str, ...] = field(default=())


Measure = Callable[[TargetLesion, bool], "float | None"]


def target_burden(tp: Timepoint, targets: Sequence[TargetLesion], measure: Measure, *, unit: str = "mm") -> Burden:
    """Sum a measure over the baseline targets at one scan.

    RECIST 1.1, Eisenhauer 2009, sec. 4.3.2 (special notes): fragments of a
    split target are summed; a target that coalesced into another counts 0
    (the merged lesion carries the measurement). A target absent from the scan's
    list, or with a null measurement, was not evaluated.

    Parameters
    ----------
    tp
        The scan.
    targets
        Baseline targets (their ``nodal`` flag decides what is measured).
    measure
        ``measure(entry, nodal)`` -> contribution of one entry, or ``None`` when not evaluated.
    """
    by_id = {entry.lesion: entry for entry in tp.target}
    children: dict[str, list[TargetLesion]] = {}
    for entry in tp.target:
        if entry.split_from is not None:
            children.setdefault(entry.split_from, []).append(entry)
    values: dict[str, float | None] = {}
    missing: list[str] = []
    notes: list[str] = []
    for target in targets:
        entries: list[TargetLesion] = []
        if target.lesion in by_id:
            entries.append(by_id[target.lesion])
        stack = list(children.get(target.lesion, ()))
        fragments: list[str] = []
        while stack:
            fragment = stack.pop(0)
            entries.append(fragment)
            fragments.append(fragment.lesion)
            stack.extend(children.get(fragment.lesion, ()))
        if not entries:
            values[target.lesion] = None
            missing.append(target.lesion)
            continue
        contributions = [measure(entry, target.nodal) for entry in entries]
        if any(value is None for value in contributions):
            values[target.lesion] = None
            missing.append(target.lesion)
            continue
        value = float(sum(contributions))  # type: ignore[arg-type]
        values[target.lesion] = value
        if fragments:
            notes.append(f"{target.lesion} split into {', '.join(fragments)}: fragments summed")
        own = by_id.get(target.lesion)
        if own is not None and own.coalesced_into is not None:
            notes.append(f"{target.lesion} coalesced into {own.coalesced_into}: counts 0")
        if own is not None and own.too_small_to_measure and own.coalesced_into is None:
            notes.append(f"{target.lesion} too small to measure: counts {value:g} {unit}")
    total = float(sum(v for v in values.values() if v is not None))
    return Burden(total, not missing, tuple(missing), values, tuple(notes))


def present_new_lesions(tp: Timepoint) -> tuple[NewLesion, ...]:
    """New lesions present at a scan (one listed with ``long_axis_mm: 0`` has resolved)."""
    return tuple(lesion for lesion in tp.new_lesions if lesion.long_axis_mm != 0)


#: Flag of a time point where a new lesion is listed without the measurement the criterion would use.
NEW_LESION_NOT_MEASURED = "new_lesion_not_measured"


def new_lesion_measured(lesion: NewLesion) -> bool:
    """Whether a new lesion has a diameter at this scan (nodes: short or long axis; others: long axis)."""
    if lesion.nodal and lesion.short_axis_mm is not None:
        return True
    return lesion.long_axis_mm is not None


def unmeasured_new_lesions(tp: Timepoint) -> tuple[str, ...]:
    """Ids of the new lesions present at a scan but listed without a diameter.

    The course file accepts ``long_axis_mm: null`` on a new lesion (course-format.md: null = not
    evaluated at this scan). Such a lesion is present but **not measured**: it is never counted as 0 mm
    (RECIST 1.1, Eisenhauer 2009, sec. 4.4.2, missing assessments: a sum with a lesion not evaluated is
    not evaluable; the digest's sec. 4.3.3 reading lets PD from the measured lesions alone stand).
    Lesions the reader called non-measurable (``measurable: false``) have no diameter by nature and are
    not listed here.
    """
    return tuple(lesion.lesion for lesion in present_new_lesions(tp)
                 if lesion.measurable is not False and not new_lesion_measured(lesion))


def not_measured_note(ids: Sequence[str], consequence: str) -> str:
    """Words for new lesions listed without their measurement, and what the criterion makes of it."""
    detail = f"; {consequence}" if consequence else ""
    return f"{', '.join(ids)} not measured (new lesion listed without a diameter: not evaluated, never 0 mm{detail})"


def derived_status(entry: TargetLesion, nodal: bool) -> str:
    """Non-target status of a lesion followed from its measurements (demoted targets).

    RECIST 1.1 sec. 4.3.3: a non-target is absent when gone (nodes: < 10 mm
    short axis, i.e. normal); otherwise present. Growth of such a lesion is not
    judged here (unequivocal progression is the reader's call).
    """
    if entry.coalesced_into is not None:
        return "present"
    if nodal:
        if entry.too_small_to_measure:
            return "absent"
        size = entry.short_axis_mm
        if size is None and entry.long_axis_mm == 0:
            return "absent"
        if size is None:
            return "not_evaluated"
        return "absent" if size < 10.0 else "present"
    if entry.too_small_to_measure:
        return "present"
    if entry.long_axis_mm is None:
        return "not_evaluated"
    return "absent" if entry.long_axis_mm == 0 else "present"


def non_target_statuses(prep: Prepared, tp: Timepoint) -> tuple[tuple[str, str], ...]:
    """Status of every baseline non-target at a scan, as ``(lesion, status)``.

    Listed non-targets take their stated status; demoted targets are followed
    from their measurements (:func:`derived_status`); fragments of a demoted
    target make it present; a non-target not listed was not evaluated.
    """
    listed = {entry.lesion: entry.status for entry in tp.non_target}
    measured = {entry.lesion: entry for entry in tp.target}
    fragments_of = {entry.split_from for entry in tp.target if entry.split_from is not None}
    out: list[tuple[str, str]] = []
    for lesion_id in prep.non_target_ids:
        if lesion_id in listed:
            out.append((lesion_id, listed[lesion_id]))
        elif lesion_id in measured:
            out.append((lesion_id, derived_status(measured[lesion_id], False)))
        else:
            out.append((lesion_id, "not_evaluated"))
    for lesion_id, lesion in prep.demoted.items():
        if lesion_id in listed:
            out.append((lesion_id, listed[lesion_id]))
        elif lesion_id in measured:
            status = derived_status(measured[lesion_id], lesion.nodal)
            if lesion_id in fragments_of and status == "absent":
                status = "present"
            out.append((lesion_id, status))
        elif lesion_id in fragments_of:
            out.append((lesion_id, "present"))
        else:
            out.append((lesion_id, "not_evaluated"))
    return tuple(out)


# --------------------------------------------------------------------------- numbers


def pct_change(value: float, reference: float) -> float:
    """Percent change of ``value`` from ``reference`` (``inf`` from a zero reference to a positive value)."""
    if reference == 0:
        return 0.0 if value == 0 else math.inf
    return 100.0 * (value - reference) / reference


def finite_or_none(value: float | None) -> float | None:
    """``value`` if finite, else ``None`` (a change from a zero nadir has no percentage)."""
    if value is None or math.isinf(value) or math.isnan(value):
        return None
    return value


def weeks_between(earlier: dt.date, later: dt.date) -> float:
    return (later - earlier).days / DAYS_PER_WEEK


def fmt_mm(value: float, unit: str = "mm") -> str:
    return f"{value:.1f} {unit}"


def fmt_pct(value: float) -> str:
    if math.isinf(value):
        return "+inf%"
    return f"{value:+.1f}%"


def fmt_delta(value: float, unit: str = "mm") -> str:
    return f"{value:+.1f} {unit}"


#: Flag and confirmation state set, with hindsight, on every unconfirmed time point of a progression episode
#: (course-format.md, "Flags"), by how the episode ended.
EPISODE_FLAG = {"confirmed": "progression_confirmed", "refuted": "pseudoprogression_confirmed",
                "open": "possible_pseudoprogression"}
EPISODE_STATE = {"confirmed": "confirmed", "refuted": "not_confirmed", "open": "pending"}


def apply_episode_outcomes(rows: list[dict], episodes: list[tuple[list[int], str]]) -> None:
    """Flag the rows of each progression episode by its outcome (``confirmed``, ``refuted`` or ``open``).

    course-format.md, "Flags": every unconfirmed time point of an episode later confirmed carries
    ``progression_confirmed``; one later refuted, ``pseudoprogression_confirmed``; one still open at the
    end of the course, ``possible_pseudoprogression``. The resolving time point is not in ``episodes``.
    """
    for indices, outcome in episodes:
        for index in indices:
            rows[index]["flags"].append(EPISODE_FLAG[outcome])
            rows[index]["confirmation"] = EPISODE_STATE[outcome]
