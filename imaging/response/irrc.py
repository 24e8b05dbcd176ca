"""Immune-related response criteria, irRC (Wolchok et al., Clin Cancer Res 2009;15:7412-20).

Bidimensional (WHO-style) measurements. The tumour burden is the sum of the
products of perpendicular diameters of the index lesions **plus** those of new
measurable lesions (>= 5 x 5 mm): a new lesion adds to the burden rather than
being progression by itself (Wolchok 2009, Table 1). irCR: all lesions gone;
irPR: burden down >= 50% from baseline; irPD: burden up >= 25% from the nadir;
irSD otherwise (Table 2). irCR, irPR and irPD are confirmed by a consecutive
assessment at least 4 weeks later.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from imaging.response.bor import BorNames, best_overall_response
from imaging.response.common import (
    EPS,
    NE,
    NEW_LESION_NOT_MEASURED,
    Prepared,
    finite_or_none,
    fmt_pct,
    non_target_statuses,
    not_measured_note,
    pct_change,
    present_new_lesions,
    target_burden,
    weeks_between,
)
from imaging.response.models import NewLesion
from imaging.response.options import AssessmentOptions
from imaging.response.rano import product_mm2
from imaging.response.recist import baseline_reason
from imaging.response.result import Assessment, TimepointAssessment

IRCR, IRPR, IRSD, IRPD = "irCR", "irPR", "irSD", "irPD"
#: Wolchok 2009, Table 2: thresholds of the tumour burden, percent.
IRPR_DECREASE_PCT, IRPD_INCREASE_PCT = 50.0, 25.0
#: Wolchok 2009, Table 1: new lesions >= 5 x 5 mm are measurable and join the burden.
NEW_MEASURABLE_MM = 5.0


def new_lesion_product_mm2(lesion: NewLesion) -> float | None:
    """Product of a new lesion's diameters when measurable (>= 5 x 5 mm), else ``None``.

    Wolchok 2009, Table 1: "new, measurable lesions (i.e., >= 5 x 5 mm)" are
    incorporated into the tumour burden; smaller ones do not define
    progression but preclude irCR. ``None`` also when a diameter is missing:
    tell the two apart with :func:`new_lesion_not_measured`.
    """
    if lesion.measurable is False or lesion.long_axis_mm is None or lesion.perpendicular_mm is None:
        return None
    if lesion.long_axis_mm < NEW_MEASURABLE_MM or lesion.perpendicular_mm < NEW_MEASURABLE_MM:
        return None
    return lesion.long_axis_mm * lesion.perpendicular_mm


def new_lesion_not_measured(lesion: NewLesion) -> bool:
    """Whether a present new lesion lacks a diameter that irRC needs to tell whether it joins the burden.

    Wolchok 2009 is bidimensional: a new lesion joins the burden with the product of its two diameters
    when both are >= 5 mm. One listed with a diameter missing (``null``), not called non-measurable by
    the reader and not already known to be < 5 mm in the other diameter, is not evaluated -- never a
    product of 0 (RECIST 1.1 sec. 4.4.2 reading, as for index lesions): the burden at that scan is not
    evaluable; irPD is called only when the measured burden alone meets it, and it is not a nadir.
    """
    if lesion.measurable is False:
        return False
    known = [d for d in (lesion.long_axis_mm, lesion.perpendicular_mm) if d is not None]
    if any(d < NEW_MEASURABLE_MM for d in known):
        return False
    return len(known) < 2


def overall_response_irrc(
    burden_mm2: float, baseline_mm2: float, nadir_mm2: float, *, complete: bool, all_gone: bool
) -> str:
    """Time-point call from the total tumour burden (Wolchok 2009, Table 2).

    Non-index lesions do not decide irPR/irSD/irPD (an unequivocal progression
    of non-index lesions still allows irPR); they only need to be gone for irCR
    (``all_gone``). With index lesions not evaluated: irPD if the measured
    burden already makes it, else NE.
    """
    grew = burden_mm2 > nadir_mm2 and pct_change(burden_mm2, nadir_mm2) >= IRPD_INCREASE_PCT - EPS
    if not complete:
        return IRPD if grew else NE
    if grew:
        return IRPD
    if all_gone:
        return IRCR
    if pct_change(burden_mm2, baseline_mm2) <= -IRPR_DECREASE_PCT + EPS:
        return IRPR
    return IRSD


def assess_irrc(prep: Prepared, options: AssessmentOptions) -> Assessment:
    """Assess a prepared course by irRC (Wolchok 2009), with confirmation of irPD by hindsight.

    A time point with an index lesion or a new lesion not measured (:func:`new_lesion_not_measured`) has
    no evaluable burden: irPD when the measured burden alone meets it, else NE; it never becomes the
    nadir (RECIST 1.1 sec. 4.4.2 reading). Such new lesions set the flag ``new_lesion_not_measured``.
    """
    course = prep.course
    targets = prep.targets
    has_targets = bool(targets)
    rows: list[dict] = []
    for tp in course.timepoints[: prep.baseline_index]:
        burden = target_burden(tp, targets, product_mm2, unit="mm2")
        rows.append(dict(date=tp.date, days_since_baseline=prep.days_since_baseline(tp), response=None,
                         flags=["pre_baseline"], reason="pre-baseline scan (before the baseline): no response",
                         sum_products_mm2=burden.total if burden.complete and has_targets else None))
    baseline = prep.baseline
    base = target_burden(baseline, targets, product_mm2, unit="mm2").total
    rows.append(dict(date=baseline.date, days_since_baseline=0, response=None, flags=["baseline"],
                     reason=baseline_reason(prep, "tumour burden (SPD of index lesions)", base if has_targets else None, "mm2"),
                     sum_products_mm2=base if has_targets else None, nadir=base, nadir_date=baseline.date))
    nadir, nadir_date = base, baseline.date
    episode: list[int] = []
    episode_start: dt.date | None = None
    confirmed = False
    outcomes: list[tuple[list[int], str]] = []
    unconfirmed = "irPD (unconfirmed)"
    bor_label: dict[int, str | None] = {}
    for tp in course.timepoints[prep.baseline_index + 1:]:
        row_index = len(rows)
        index_burden = target_burden(tp, targets, product_mm2, unit="mm2")
        new = present_new_lesions(tp)
        not_measured = [lesion.lesion for lesion in new if new_lesion_not_measured(lesion)]
        measured_new = [(lesion.lesion, new_lesion_product_mm2(lesion)) for lesion in new if lesion.lesion not in not_measured]
        new_mm2 = sum(value for _, value in measured_new if value is not None)
        unmeasurable_new = [lid for lid, value in measured_new if value is None]
        total = index_burden.total + new_mm2
        complete = index_burden.complete and not not_measured
        statuses = non_target_statuses(prep, tp)
        all_gone = total == 0 and not unmeasurable_new and not not_measured and all(status == "absent" for _, status in statuses)
        if has_targets or new_mm2 > 0:
            call = overall_response_irrc(total, base, nadir, complete=complete, all_gone=all_gone)
        elif not_measured:
            call = NE
        elif any(status == "not_evaluated" for _, status in statuses):
            call = NE
        elif statuses:
            # Non-index disease only: irCR when everything is gone, irSD otherwise (no burden to grow).
            call = IRCR if all_gone else IRSD
        else:
            call = NE
        parts = []
        if index_burden.notes:
            parts.append("; ".join(index_burden.notes))
        if index_burden.missing:
            parts.append(f"{', '.join(index_burden.missing)} not evaluated")
        if not_measured:
            parts.append(not_measured_note(not_measured, "burden not evaluable: irPD only if the measured burden alone "
                                                         "makes it, else NE; not a nadir"))
        parts.append(f"tumour burden {total:.1f} mm2 (index {index_burden.total:.1f} + new measurable {new_mm2:.1f})")
        if has_targets and complete:
            parts.append(f"vs baseline {base:.1f} mm2: {fmt_pct(pct_change(total, base))}; vs nadir {nadir:.1f} mm2: "
                         f"{fmt_pct(pct_change(total, nadir))}")
        if unmeasurable_new:
            parts.append(f"new non-measurable lesion(s) {', '.join(unmeasurable_new)} (no irPD by themselves, preclude irCR)")
        if statuses:
            parts.append("non-index: " + ", ".join(f"{lid} {st.replace('_', ' ')}" for lid, st in statuses))
        text = "; ".join(parts)
        confirmation = None
        bor_label[row_index] = call
        if confirmed:
            text += f" -> {call}"
        elif episode and episode_start is not None:
            weeks = weeks_between(episode_start, tp.date)
            if call == IRPD and weeks >= options.confirmation_min_weeks - EPS:
                confirmation = "confirms"
                text += f" -> irPD, confirming the irPD of {episode_start} ({weeks:.1f} weeks later)"
                outcomes.append((episode, "confirmed"))
                episode, episode_start, confirmed = [], None, True
            elif call == IRPD:
                episode.append(row_index)
                bor_label[row_index] = unconfirmed
                text += f" -> irPD (only {weeks:.1f} weeks after the irPD of {episode_start}: awaiting confirmation)"
            elif call == NE:
                text += " -> NE"
            else:
                confirmation = "refutes"
                text += f" -> {call} (the irPD of {episode_start} is not confirmed)"
                outcomes.append((episode, "refuted"))
                episode, episode_start = [], None
        elif call == IRPD:
            episode, episode_start = [row_index], tp.date
            bor_label[row_index] = unconfirmed
            confirmation = "pending"
            text += f" -> irPD (needs confirmation >= {options.confirmation_min_weeks:g} weeks later)"
        else:
            text += f" -> {call}"
        rows.append(dict(
            date=tp.date, days_since_baseline=prep.days_since_baseline(tp), response=call,
            flags=[NEW_LESION_NOT_MEASURED] if not_measured else [], reason=text,
            sum_products_mm2=total if (has_targets or new) else None,
            change_from_baseline_pct=finite_or_none(pct_change(total, base)) if has_targets and complete else None,
            change_from_nadir_pct=finite_or_none(pct_change(total, nadir)) if has_targets and complete else None,
            nadir=nadir if has_targets else None, nadir_date=nadir_date if has_targets else None,
            new_lesions=bool(new), confirmation=confirmation,
        ))
        if complete and has_targets and total < nadir - EPS:
            nadir, nadir_date = total, tp.date
    if episode:
        outcomes.append((episode, "open"))
    flag = {"confirmed": "progression_confirmed", "refuted": "pseudoprogression_confirmed", "open": "possible_pseudoprogression"}
    state = {"confirmed": "confirmed", "refuted": "not_confirmed", "open": "pending"}
    for indices, outcome in outcomes:
        for index in indices:
            rows[index]["flags"].append(flag[outcome])
            rows[index]["confirmation"] = state[outcome]
            if outcome == "refuted":
                bor_label[index] = None  # an irPD not confirmed is not progression (Wolchok 2009)
    results = tuple(TimepointAssessment(**{**row, "flags": tuple(row["flags"])}) for row in rows)
    bor_calls = [(rows[index]["date"], label) for index, label in sorted(bor_label.items())]
    names = BorNames(IRCR, IRPR, IRSD, None, (IRPD,), (unconfirmed,), progression_name=IRPD)
    bor = best_overall_response(bor_calls, baseline.date, options, names, confirm=options.confirm_responses)
    if bor.response == unconfirmed:
        bor = type(bor)(IRPD, bor.reason.replace(unconfirmed, "irPD") + " (unconfirmed)", bor.date)
    return Assessment(course.patient_id, prep.criterion, baseline.date, results, bor)


__all__: Sequence[str] = ("assess_irrc", "new_lesion_not_measured", "new_lesion_product_mm2", "overall_response_irrc")
