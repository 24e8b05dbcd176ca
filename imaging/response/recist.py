"""RECIST 1.1 (Eisenhauer et al., Eur J Cancer 2009;45:228-47).

Rules are small functions named after the rule; the papers' tables are data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from imaging.response.bor import RECIST_NAMES, best_overall_response
from imaging.response.common import (
    CR,
    EPS,
    NA,
    NE,
    NEW_LESION_NOT_MEASURED,
    NON_CR_NON_PD,
    PD,
    PR,
    SD,
    Burden,
    Prepared,
    finite_or_none,
    fmt_delta,
    fmt_mm,
    fmt_pct,
    non_target_statuses,
    not_measured_note,
    pct_change,
    present_new_lesions,
    target_burden,
    unmeasured_new_lesions,
)
from imaging.response.growth import hyperprogression_check
from imaging.response.models import NewLesion, TargetLesion, Timepoint
from imaging.response.options import AssessmentOptions
from imaging.response.result import Assessment, TimepointAssessment

#: RECIST 1.1 sec. 4.3.1 thresholds.
PR_DECREASE_PCT = 30.0
PD_INCREASE_PCT = 20.0
PD_INCREASE_MM = 5.0
#: RECIST 1.1 sec. 4.3.2: a target present but too small to measure counts 5 mm.
TOO_SMALL_MM = 5.0
#: RECIST 1.1 sec. 4.3.1: a target node has responded when < 10 mm short axis.
NODE_NORMAL_MM = 10.0

ANY = None  # wildcard in the tables below

#: RECIST 1.1 Table 1 (target disease at baseline): (target, non-targets, new lesions, overall).
#: Rows are tried in order; PD rows first. "NA" = no non-target lesions at baseline.
_NON_PD = frozenset({CR, NON_CR_NON_PD, NE, NA})
TABLE_1: tuple[tuple[str | None, frozenset[str] | None, bool | None, str], ...] = (
    (PD, ANY, ANY, PD),
    (ANY, frozenset({PD}), ANY, PD),
    (ANY, ANY, True, PD),
    (CR, frozenset({CR, NA}), False, CR),
    (CR, frozenset({NON_CR_NON_PD}), False, PR),
    (CR, frozenset({NE}), False, PR),
    (PR, _NON_PD, False, PR),
    (SD, _NON_PD, False, SD),
    (NE, _NON_PD, False, NE),
)

#: RECIST 1.1 Table 2 (non-target disease only): (non-targets, new lesions, overall).
#: "NA" non-targets too: no disease at baseline at all -> NE unless new lesions.
TABLE_2: tuple[tuple[str | None, bool | None, str], ...] = (
    (PD, ANY, PD),
    (ANY, True, PD),
    (CR, False, CR),
    (NON_CR_NON_PD, False, NON_CR_NON_PD),
    (NE, False, NE),
    (NA, False, NE),
)


# --------------------------------------------------------------------------- measurements


def target_diameter_mm(entry: TargetLesion, nodal: bool) -> float | None:
    """Contribution of one target entry to the sum of diameters, mm.

    RECIST 1.1, Eisenhauer 2009, sec. 4.2 and 4.3.2: nodes by short axis,
    other lesions by longest diameter; a target too small to measure counts
    5 mm; a target that coalesced into another counts 0; ``None`` = not evaluated.
    A node that shrank below 10 mm keeps its actual short axis.
    """
    if entry.coalesced_into is not None:
        return 0.0
    if entry.too_small_to_measure:
        return TOO_SMALL_MM
    if nodal:
        if entry.short_axis_mm is None and entry.long_axis_mm == 0:
            return 0.0
        return entry.short_axis_mm
    return entry.long_axis_mm


def sum_of_diameters(tp: Timepoint, targets: Sequence[TargetLesion]) -> Burden:
    """Sum of diameters (SOD) of the baseline targets at a scan, mm.

    RECIST 1.1, Eisenhauer 2009, sec. 4.2 (SOD) and 4.3.2 (split fragments
    summed, coalesced lesions 0, too small 5 mm).
    """
    return target_burden(tp, targets, target_diameter_mm)


def targets_resolved_recist(values: dict[str, float | None], targets: Sequence[TargetLesion]) -> bool:
    """Whether every target has gone: non-nodal 0 mm, nodes < 10 mm short axis.

    RECIST 1.1, Eisenhauer 2009, sec. 4.3.1 (CR) and 4.3.2 (lymph nodes).
    """
    for target in targets:
        value = values.get(target.lesion)
        if value is None:
            return False
        if target.nodal:
            if value >= NODE_NORMAL_MM - EPS:
                return False
        elif value > 0:
            return False
    return True


# --------------------------------------------------------------------------- rules


def progression_by_sum(sum_now: float, nadir: float, *, pct: float = PD_INCREASE_PCT, abs_min: float = PD_INCREASE_MM) -> bool:
    """Whether a sum has grown enough from the nadir to be PD.

    RECIST 1.1, Eisenhauer 2009, sec. 4.3.1: >= 20% above the smallest sum on
    study (baseline included) **and** >= 5 mm absolute. Both are needed:
    exactly +20% with +4 mm is not PD.
    """
    increase = sum_now - nadir
    return pct_change(sum_now, nadir) >= pct - EPS and increase >= abs_min - EPS


def target_response_recist(
    sum_mm: float,
    baseline_sum_mm: float,
    nadir_sum_mm: float,
    *,
    all_resolved: bool,
    missing: Sequence[str] = (),
) -> tuple[str, str]:
    """Target response at a time point.

    RECIST 1.1, Eisenhauer 2009, sec. 4.3.1: CR = all targets gone (nodes
    < 10 mm short axis); PR = SOD down >= 30% from baseline; PD = SOD up >= 20%
    from the nadir and >= 5 mm; SD otherwise. Sec. 4.4.2 (missing
    assessments): with targets not evaluated the response is NE, unless the
    measured ones alone already make PD. PD is tested before CR: nodes under
    10 mm still count in the sum (sec. 4.3.2).

    Parameters
    ----------
    sum_mm
        SOD of the targets evaluated at this scan, mm.
    baseline_sum_mm, nadir_sum_mm
        SOD at baseline and the smallest complete SOD before this scan, mm.
    all_resolved
        All non-nodal targets 0 mm and all nodes < 10 mm short axis.
    missing
        Targets not evaluated at this scan.

    Returns
    -------
    (response, reason)
    """
    vs_nadir = f"SOD {fmt_mm(sum_mm)} vs nadir {fmt_mm(nadir_sum_mm)}: {fmt_pct(pct_change(sum_mm, nadir_sum_mm))}, {fmt_delta(sum_mm - nadir_sum_mm)}"
    if missing:
        lacking = ", ".join(missing)
        if progression_by_sum(sum_mm, nadir_sum_mm):
            return PD, f"{lacking} not evaluated, but the measured targets alone: {vs_nadir} -> PD"
        return NE, f"{lacking} not evaluated (SOD of the others {fmt_mm(sum_mm)}, not PD on its own) -> NE"
    if progression_by_sum(sum_mm, nadir_sum_mm):
        return PD, f"{vs_nadir} -> PD"
    if all_resolved:
        return CR, f"all targets gone (nodes < 10 mm short axis), SOD {fmt_mm(sum_mm)} -> CR"
    change = pct_change(sum_mm, baseline_sum_mm)
    vs_baseline = f"SOD {fmt_mm(sum_mm)} vs baseline {fmt_mm(baseline_sum_mm)}: {fmt_pct(change)}"
    if change <= -PR_DECREASE_PCT + EPS:
        return PR, f"{vs_baseline} -> PR"
    detail = f"{vs_baseline}; vs nadir {fmt_mm(nadir_sum_mm)}: {fmt_pct(pct_change(sum_mm, nadir_sum_mm))}, {fmt_delta(sum_mm - nadir_sum_mm)}"
    if pct_change(sum_mm, nadir_sum_mm) >= PD_INCREASE_PCT - EPS:
        detail += " (< +5 mm, not PD)"
    return SD, f"{detail} -> SD"


def non_target_response_recist(statuses: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """Non-target response at a time point.

    RECIST 1.1, Eisenhauer 2009, sec. 4.3.3: CR = all non-targets gone (nodes
    normal, < 10 mm); non-CR/non-PD = one or more persist; PD = unequivocal
    progression of existing non-targets (the reader's judgement, input status
    ``unequivocal_progression``). An ``increase`` short of unequivocal
    progression is non-CR/non-PD. Any not evaluated (and no PD): NE (Table 1,
    "not all evaluated"). No non-targets at baseline: ``"NA"``.

    Returns
    -------
    (response, reason)
    """
    if not statuses:
        return NA, "no non-target lesions"
    described = ", ".join(f"{lesion} {status.replace('_', ' ')}" for lesion, status in statuses)
    kinds = {status for _, status in statuses}
    if "unequivocal_progression" in kinds:
        response = PD
    elif "not_evaluated" in kinds:
        response = NE
    elif kinds == {"absent"}:
        response = CR
    else:
        response = NON_CR_NON_PD
    return response, f"non-targets: {described} -> {response}"


def new_lesion_response_recist(new_lesions: Sequence[NewLesion]) -> tuple[bool, str]:
    """Whether new lesions make PD.

    RECIST 1.1, Eisenhauer 2009, sec. 4.3.5: the appearance of an unequivocal
    new lesion is PD (lesions listed under ``new_lesions`` are taken as unequivocal).
    """
    if not new_lesions:
        return False, "no new lesions"
    listed = ", ".join(f"{lesion.lesion}" + (f" ({lesion.organ})" if lesion.organ else "") for lesion in new_lesions)
    return True, f"new lesions: {listed}"


def overall_response_recist(target: str, non_target: str, new_lesions: bool) -> str:
    """Overall time-point response from the three components.

    RECIST 1.1, Eisenhauer 2009, sec. 4.4.1, Table 1 (targets at baseline) and
    Table 2 (non-target disease only, ``target == "NA"``), looked up as data.
    """
    if target == NA:
        for nt, new, overall in TABLE_2:
            if (nt is ANY or nt == non_target) and (new is ANY or new == new_lesions):
                return overall
        return NE
    for t, nts, new, overall in TABLE_1:
        if (t is ANY or t == target) and (nts is ANY or non_target in nts) and (new is ANY or new == new_lesions):
            return overall
    return NE


def reappearance_after_cr(
    had_cr: bool,
    target_values: dict[str, float | None],
    targets: Sequence[TargetLesion],
    statuses: Sequence[tuple[str, str]],
) -> str | None:
    """After a CR, any reappearing disease is PD; returns the reason, or ``None``.

    RECIST 1.1, Eisenhauer 2009, sec. 4.4.3 (Table 3 note: "if a CR is truly
    met at first time point, then any disease seen at a subsequent time point
    ... makes the disease PD at that point"); RECIST working group FAQ.
    Reappearance: a non-nodal target > 0 mm, a target node >= 10 mm short axis,
    or a non-target no longer absent.
    """
    if not had_cr:
        return None
    back: list[str] = []
    for target in targets:
        value = target_values.get(target.lesion)
        if value is None:
            continue
        if (target.nodal and value >= NODE_NORMAL_MM - EPS) or (not target.nodal and value > 0):
            back.append(f"{target.lesion} {fmt_mm(value)}")
    back.extend(f"{lesion} {status.replace('_', ' ')}" for lesion, status in statuses if status in ("present", "increase", "unequivocal_progression"))
    if not back:
        return None
    return f"disease reappeared after CR ({', '.join(back)}) -> PD"


# --------------------------------------------------------------------------- one time point


@dataclass(frozen=True)
class RecistReading:
    """All RECIST 1.1 figures and component calls at one follow-up scan."""

    burden: Burden
    pct_baseline: float | None
    pct_nadir: float | None
    target_response: str
    target_reason: str
    non_target_response: str
    non_target_reason: str
    statuses: tuple[tuple[str, str], ...]
    new_lesions: tuple[NewLesion, ...]
    new_reason: str
    overall: str
    reason: str


@dataclass
class RecistState:
    """What earlier time points leave for the next one (nadir, CR seen)."""

    baseline_sum_mm: float
    nadir_mm: float
    nadir_date: dt.date
    had_cr: bool = False


def read_timepoint_recist(prep: Prepared, tp: Timepoint, state: RecistState, options: AssessmentOptions) -> RecistReading:
    """Evaluate one follow-up scan by RECIST 1.1 (Eisenhauer 2009, sec. 4.3-4.4.1).

    A new lesion listed without a diameter is still a new lesion (sec. 4.3.5: PD); its size is not used,
    and the new-lesion reason says it was not measured.
    """
    targets = prep.targets
    burden = sum_of_diameters(tp, targets)
    statuses = non_target_statuses(prep, tp)
    nt_response, nt_reason = non_target_response_recist(statuses)
    new = present_new_lesions(tp)
    has_new, new_reason = new_lesion_response_recist(new)
    unmeasured = unmeasured_new_lesions(tp)
    if unmeasured:
        new_reason += "; " + not_measured_note(unmeasured, "still a new lesion: its size is not used by RECIST 1.1")
    if targets:
        t_response, t_reason = target_response_recist(
            burden.total, state.baseline_sum_mm, state.nadir_mm,
            all_resolved=targets_resolved_recist(dict(burden.values), targets), missing=burden.missing,
        )
        pct_baseline = finite_or_none(pct_change(burden.total, state.baseline_sum_mm)) if burden.complete else None
        pct_nadir = finite_or_none(pct_change(burden.total, state.nadir_mm)) if burden.complete else None
    else:
        t_response, t_reason = NA, "no target lesions"
        pct_baseline = pct_nadir = None
    if burden.notes:
        t_reason = f"{'; '.join(burden.notes)}; {t_reason}"
    overall = overall_response_recist(t_response, nt_response, has_new)
    table = "Table 1" if targets else "Table 2"
    reason = f"{t_reason}; {nt_reason}; {new_reason} -> {overall} ({table})"
    if options.reappearance_after_cr_is_pd and overall != PD:
        again = reappearance_after_cr(state.had_cr, dict(burden.values), targets, statuses)
        if again:
            overall = PD
            reason = f"{t_reason}; {nt_reason}; {new_reason}; {again}"
    return RecistReading(
        burden, pct_baseline, pct_nadir, t_response, t_reason, nt_response, nt_reason, statuses,
        new, new_reason, overall, reason,
    )


def advance_state(state: RecistState, tp: Timepoint, reading: RecistReading) -> None:
    """Update nadir (complete sums only) and the CR memory after a time point."""
    if reading.burden.complete and prep_has_targets(reading) and reading.burden.total < state.nadir_mm - EPS:
        state.nadir_mm = reading.burden.total
        state.nadir_date = tp.date
    if reading.overall == CR:
        state.had_cr = True


def prep_has_targets(reading: RecistReading) -> bool:
    return reading.target_response != NA


# --------------------------------------------------------------------------- whole course


def baseline_reason(prep: Prepared, sum_label: str, sum_value: float | None, unit: str = "mm") -> str:
    """Words for the baseline row: targets chosen, non-targets, and how the baseline was chosen."""
    parts: list[str] = []
    if prep.baseline_note:
        parts.append(prep.baseline_note)
    targets = prep.targets
    if targets:
        described = f"baseline: {len(targets)} target(s) {', '.join(t.lesion for t in targets)}"
        if sum_value is not None:
            described += f", {sum_label} {sum_value:.1f} {unit}"
        parts.append(described)
    else:
        parts.append("baseline: no measurable target lesions (non-target disease only)")
    if prep.selection.kept_as_given:
        if targets:
            parts.append("targets kept as given")
    else:
        parts.append("targets selected: " + "; ".join(prep.selection.notes))
    n_nt = len(prep.non_target_ids) + len(prep.demoted)
    if n_nt:
        parts.append(f"{n_nt} non-target(s)")
    return "; ".join(parts)


def pre_baseline_row(prep: Prepared, tp: Timepoint) -> TimepointAssessment:
    """Row of a scan before the baseline: no call, SOD kept for growth rates."""
    burden = sum_of_diameters(tp, prep.targets)
    return TimepointAssessment(
        date=tp.date,
        days_since_baseline=prep.days_since_baseline(tp),
        response=None,
        flags=("pre_baseline",),
        reason="pre-baseline scan (before the baseline): no response; used for growth rates only"
        + (f"; SOD {fmt_mm(burden.total)}" if burden.complete and prep.targets else ""),
        sum_mm=burden.total if burden.complete and prep.targets else None,
    )


def assess_recist(prep: Prepared, options: AssessmentOptions) -> Assessment:
    """Assess a prepared course by RECIST 1.1.

    RECIST 1.1, Eisenhauer 2009: SOD and component responses (sec. 4.3),
    overall response by Table 1/2 (sec. 4.4.1), best overall response with
    confirmation (sec. 4.4.3, 4.6.1); hyperprogression flag at the first
    assessment (Champiat 2017) when on immunotherapy.
    """
    course = prep.course
    rows: list[TimepointAssessment] = []
    for tp in course.timepoints[: prep.baseline_index]:
        rows.append(pre_baseline_row(prep, tp))
    baseline = prep.baseline
    base_burden = sum_of_diameters(baseline, prep.targets)
    if prep.targets and not base_burden.complete:  # pragma: no cover - selection guarantees measurements
        raise AssertionError("baseline targets without measurement")
    base_sum = base_burden.total
    rows.append(TimepointAssessment(
        date=baseline.date, days_since_baseline=0, response=None, flags=("baseline",),
        reason=baseline_reason(prep, "SOD", base_sum if prep.targets else None),
        sum_mm=base_sum if prep.targets else None, nadir=base_sum if prep.targets else None,
        nadir_date=baseline.date if prep.targets else None,
    ))
    state = RecistState(base_sum, base_sum, baseline.date)
    calls: list[tuple[dt.date, str | None]] = []
    first = True
    for tp in course.timepoints[prep.baseline_index + 1:]:
        reading = read_timepoint_recist(prep, tp, state, options)
        flags: list[str] = []
        reason = reading.reason
        tgr = None
        if not reading.burden.complete and prep.targets:
            flags.append("targets_not_all_evaluated")
        if unmeasured_new_lesions(tp):
            flags.append(NEW_LESION_NOT_MEASURED)
        if first:
            hyper = hyperprogression_check(prep, tp, progression=reading.overall == PD, sum_of=sum_of_diameters)
            if hyper is not None:
                tgr = hyper.tgr_on_pct_per_month
                if hyper.flag:
                    flags.append("hyperprogression")
                if hyper.reason:
                    reason = f"{reason}; {hyper.reason}"
        if any(call == PD for _, call in calls):
            flags.append("after_progression")
        rows.append(TimepointAssessment(
            date=tp.date,
            days_since_baseline=prep.days_since_baseline(tp),
            response=reading.overall,
            flags=tuple(flags),
            reason=reason,
            sum_mm=reading.burden.total if prep.targets else None,
            change_from_baseline_pct=reading.pct_baseline,
            change_from_nadir_pct=reading.pct_nadir,
            nadir=state.nadir_mm if prep.targets else None,
            nadir_date=state.nadir_date if prep.targets else None,
            target_response=None if reading.target_response == NA else reading.target_response,
            non_target_response=None if reading.non_target_response == NA else reading.non_target_response,
            new_lesions=bool(reading.new_lesions),
            tgr_pct_per_month=tgr,
        ))
        calls.append((tp.date, reading.overall))
        advance_state(state, tp, reading)
        first = False
    bor = best_overall_response(calls, baseline.date, options, RECIST_NAMES, confirm=options.confirm_responses)
    return Assessment(course.patient_id, prep.criterion, baseline.date, tuple(rows), bor)


__all__ = [
    "TABLE_1", "TABLE_2", "assess_recist", "new_lesion_response_recist", "non_target_response_recist",
    "overall_response_recist", "progression_by_sum", "reappearance_after_cr", "sum_of_diameters",
    "target_diameter_mm", "target_response_recist", "targets_resolved_recist",
]
