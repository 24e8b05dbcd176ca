"""The RANO family: RANO 2010, RANO 2.0, mRANO, iRANO, and RANO-BM.

Sources: RANO, Wen et al., J Clin Oncol 2010;28:1963-72 (Table 2, "Summary of
the RANO response criteria"). RANO 2.0, Wen et al., J Clin Oncol
2023;41:5187-99. mRANO, Ellingson et al., Neurotherapeutics 2017;14:307-20.
iRANO, Okada et al., Lancet Oncol 2015;16:e534-42. RANO-BM, Lin et al.,
Lancet Oncol 2015;16:e270-8.

The criteria differ in data, not in code: :data:`VARIANTS` holds, per
criterion, the measure, thresholds, which clinical inputs count, and how an
early progression is handled (held in the radiotherapy window, or preliminary
and confirmed at the next scan).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from imaging.response.bor import BorNames, best_overall_response
from imaging.response.common import (
    CR,
    EPS,
    NE,
    NEW_LESION_NOT_MEASURED,
    PD,
    PR,
    SD,
    Burden,
    Prepared,
    apply_episode_outcomes,
    finite_or_none,
    fmt_pct,
    non_target_statuses,
    not_measured_note,
    pct_change,
    present_new_lesions,
    target_burden,
    unmeasured_new_lesions,
    weeks_between,
)
from imaging.response.models import NewLesion, TargetLesion, Timepoint
from imaging.response.options import AssessmentOptions
from imaging.response.recist import baseline_reason
from imaging.response.result import Assessment, TimepointAssessment

PRELIMINARY_PD = "preliminary PD"
CONFIRMED_PD = "confirmed PD"

#: Dexamethasone-equivalent dose (mg/day) taken as physiological replacement:
#: 0.75 mg dexamethasone ~ 20 mg hydrocortisone. RANO (Wen 2010) allows
#: "physiological replacement doses" at CR; the figure is this engine's reading.
PHYSIOLOGICAL_STEROID_MG = 0.75
#: A target present but too small to measure: 5 mm (RECIST 1.1 sec. 4.3.2
#: convention, also RANO-BM); as a product 5 x 5 mm2, as a volume the 5 mm sphere.
TOO_SMALL_MM = 5.0
TOO_SMALL_MM2 = 25.0
TOO_SMALL_MM3 = math.pi / 6.0 * 5.0 ** 3


# --------------------------------------------------------------------------- measures


def product_mm2(entry: TargetLesion, nodal: bool) -> float | None:
    """Product of the longest diameter and its perpendicular, mm2 (RANO, Wen 2010).

    0 when gone (``long_axis_mm == 0``), 0 when coalesced into another target,
    25 mm2 when too small to measure; ``None`` when not evaluated.
    """
    del nodal
    if entry.coalesced_into is not None or entry.long_axis_mm == 0:
        return 0.0
    if entry.too_small_to_measure:
        return TOO_SMALL_MM2
    if entry.long_axis_mm is None or entry.perpendicular_mm is None:
        return None
    return entry.long_axis_mm * entry.perpendicular_mm


def volume_mm3(entry: TargetLesion, nodal: bool) -> float | None:
    """Volume of a target, mm3 (RANO 2.0 / mRANO volumetric option); gone or coalesced: 0."""
    del nodal
    if entry.coalesced_into is not None or entry.long_axis_mm == 0 or entry.volume_mm3 == 0:
        return 0.0
    if entry.too_small_to_measure:
        return TOO_SMALL_MM3
    return entry.volume_mm3


def diameter_mm(entry: TargetLesion, nodal: bool) -> float | None:
    """Longest diameter, mm (RANO-BM, Lin 2015: unidimensional); too small: 5 mm."""
    del nodal
    if entry.coalesced_into is not None:
        return 0.0
    if entry.too_small_to_measure:
        return TOO_SMALL_MM
    return entry.long_axis_mm


# --------------------------------------------------------------------------- variants as data


@dataclass(frozen=True)
class RanoVariant:
    """What distinguishes one criterion of the family.

    Attributes
    ----------
    name, source
        Criterion name and citation.
    measure
        ``"product"`` (mm2), ``"volume"`` (mm3) or ``"diameter"`` (mm).
    pr_decrease_pct, pd_increase_pct
        PR: decrease from baseline; PD: increase from the nadir (percent).
    pd_lesion_increase_mm
        RANO-BM: at least one target must also grow by this much (mm).
    use_t2_flair
        A significant T2/FLAIR increase is PD (RANO 2010, iRANO).
    steroids
        ``"full"``: CR needs no steroids beyond physiological doses, PR and SD
        need a dose no higher than at baseline, and stable imaging on a higher
        dose is neither SD nor PD (RANO 2010); ``"cr_pr"``: only CR and PR
        need no steroid increase (RANO 2.0); ``"ignored"`` (mRANO).
    use_clinical
        Clinical deterioration is PD.
    rt_window
        Progression within the weeks after radiotherapy: ``"hold"`` (not PD:
        SD and ``possible_pseudoprogression``; RANO 2010, iRANO),
        ``"confirm"`` (preliminary PD; RANO 2.0) or ``"none"``.
    confirm_always
        Every imaging progression is preliminary until confirmed (mRANO).
    confirm_on_immunotherapy
        Confirmation also after the window when on immunotherapy (RANO 2.0).
    irano
        Progression within ``irano_window_weeks`` of starting immunotherapy
        needs confirmation about 3 months later, new lesions included (iRANO).
    new_lesions_measurable_only
        Only new measurable lesions are PD (mRANO).
    """

    name: str
    source: str
    measure: str
    pr_decrease_pct: float
    pd_increase_pct: float
    pd_lesion_increase_mm: float | None
    use_t2_flair: bool
    steroids: str
    use_clinical: bool
    rt_window: str
    confirm_always: bool = False
    confirm_on_immunotherapy: bool = False
    irano: bool = False
    new_lesions_measurable_only: bool = False


VARIANTS: dict[str, RanoVariant] = {
    "rano": RanoVariant("rano", "RANO, Wen 2010", "product", 50.0, 25.0, None, True, "full", True, "hold"),
    "irano": RanoVariant("irano", "iRANO, Okada 2015", "product", 50.0, 25.0, None, True, "full", True, "hold", irano=True),
    "rano2": RanoVariant("rano2", "RANO 2.0, Wen 2023", "product", 50.0, 25.0, None, False, "cr_pr", True, "confirm",
                         confirm_on_immunotherapy=True),
    "mrano": RanoVariant("mrano", "mRANO, Ellingson 2017", "product", 50.0, 25.0, None, False, "ignored", False, "none",
                         confirm_always=True, new_lesions_measurable_only=True),
    "ranobm": RanoVariant("ranobm", "RANO-BM, Lin 2015", "diameter", 30.0, 20.0, 5.0, False, "full", True, "none"),
}

#: Volumetric thresholds, the sphere-equivalents of 50% / 25% in two dimensions:
#: RANO 2.0 (Wen 2023) and mRANO (Ellingson 2017): PR >= 65% decrease, PD >= 40% increase.
VOLUMETRIC_PR_PCT, VOLUMETRIC_PD_PCT = 65.0, 40.0

#: RANO 2010, Table 2: conditions of each call, as data. Each key names an input
#: category computed per time point; a call needs every condition ("all").
#: PD needs any one of ``PD_TRIGGERS``.
RESPONSE_REQUIREMENTS: dict[str, dict[str, frozenset]] = {
    CR: {
        "measurable": frozenset({"gone", "NA"}),
        "non_measurable": frozenset({"absent", "NA"}),
        "t2_flair": frozenset({"stable"}),
        "new": frozenset({False}),
        "steroids": frozenset({"none", "unknown"}),
        "clinical": frozenset({"stable"}),
    },
    PR: {
        "measurable": frozenset({"decrease", "gone"}),
        "non_measurable": frozenset({"absent", "stable", "NA"}),
        "t2_flair": frozenset({"stable"}),
        "new": frozenset({False}),
        "steroids": frozenset({"none", "stable_or_lower", "unknown"}),
        "clinical": frozenset({"stable"}),
    },
    SD: {
        "measurable": frozenset({"stable", "decrease", "gone", "NA"}),
        "non_measurable": frozenset({"absent", "stable", "increase", "NA"}),
        "t2_flair": frozenset({"stable"}),
        "new": frozenset({False}),
        "steroids": frozenset({"none", "stable_or_lower", "unknown"}),
        "clinical": frozenset({"stable"}),
    },
}
#: RANO 2010, Table 2, PD column ("any"): the input category that triggers it.
PD_TRIGGERS: dict[str, object] = {
    "measurable": "increase",
    "non_measurable": "unequivocal_progression",
    "t2_flair": "increased",
    "new": True,
    "clinical": "deteriorated",
}


# --------------------------------------------------------------------------- rules


def steroid_category(dose_mg: float | None, baseline_mg: float | None) -> str:
    """Steroid use relative to baseline (RANO, Wen 2010, Table 2, "corticosteroids").

    ``"none"`` (at most physiological replacement), ``"stable_or_lower"``
    (no more than at baseline), ``"increased"``, or ``"unknown"`` when the dose
    is not recorded.
    """
    if dose_mg is None:
        return "unknown"
    if dose_mg <= PHYSIOLOGICAL_STEROID_MG + EPS:
        return "none"
    if baseline_mg is None:
        return "unknown"
    return "stable_or_lower" if dose_mg <= baseline_mg + EPS else "increased"


def measurable_category(
    total: float, reference: float, baseline_total: float, *, complete: bool, has_targets: bool,
    pr_pct: float, pd_pct: float, lesion_growth_ok: bool = True,
) -> str:
    """Change of the measurable enhancing disease, as a category.

    RANO (Wen 2010): ``"increase"`` >= 25% from the smallest sum (nadir),
    ``"gone"`` all gone, ``"decrease"`` >= 50% from baseline, ``"stable"``
    otherwise; thresholds per criterion. With targets not evaluated:
    ``"increase"`` if the measured ones already make it, else ``"NE"``.
    RANO-BM (Lin 2015) also needs one lesion +5 mm (``lesion_growth_ok``).
    """
    if not has_targets:
        return "NA"
    grew = pct_change(total, reference) >= pd_pct - EPS and total > reference and lesion_growth_ok
    if not complete:
        return "increase" if grew else "NE"
    if grew:
        return "increase"
    if total == 0:
        return "gone"
    if pct_change(total, baseline_total) <= -pr_pct + EPS:
        return "decrease"
    return "stable"


def non_measurable_category(statuses: Sequence[tuple[str, str]]) -> str:
    """Non-measurable (non-target) enhancing disease as a category (RANO, Wen 2010, Table 2)."""
    if not statuses:
        return "NA"
    kinds = {status for _, status in statuses}
    if "unequivocal_progression" in kinds:
        return "unequivocal_progression"
    if "not_evaluated" in kinds:
        return "NE"
    if kinds == {"absent"}:
        return "absent"
    if "increase" in kinds:
        return "increase"
    return "stable"


def overall_response_rano(inputs: dict[str, object], variant: RanoVariant) -> tuple[str, list[str]]:
    """Time-point call from the input categories (RANO, Wen 2010, Table 2, as data).

    PD if any trigger of :data:`PD_TRIGGERS` holds; otherwise the first of
    CR, PR, SD whose every requirement holds; inputs a criterion does not use
    are neutral. ``"NE"`` when the measurable or non-measurable disease was not
    evaluated, or whether a new lesion counts could not be told (mRANO: a new
    lesion without its diameters; ``new == "NE"``) -- RECIST 1.1 sec. 4.4.2
    reading: what was measured decides PD, nothing less than PD is called --
    or (RANO 2010, "full" steroids) when imaging is stable but the steroid
    dose has risen: neither SD nor PD.

    Returns
    -------
    (call, PD triggers met)
    """
    used = dict(inputs)
    if not variant.use_t2_flair:
        used["t2_flair"] = "stable"
    if not variant.use_clinical:
        used["clinical"] = "stable"
    triggers = [key for key, value in PD_TRIGGERS.items() if used.get(key) == value]
    if triggers:
        return PD, triggers
    if used["measurable"] == "NE" or used["non_measurable"] == "NE" or used["new"] == "NE":
        return NE, []
    for call in (CR, PR, SD):
        needs = dict(RESPONSE_REQUIREMENTS[call])
        if variant.steroids == "ignored" or (variant.steroids == "cr_pr" and call == SD):
            needs.pop("steroids")
        elif variant.steroids == "cr_pr" and call in (CR, PR):
            needs["steroids"] = frozenset({"none", "stable_or_lower", "unknown"})
        if all(used[key] in allowed for key, allowed in needs.items()):
            return call, []
    return NE, []


#: Inputs that progression inside the radiotherapy window sets aside, and the neutral value they take.
WINDOW_NEUTRAL: dict[str, object] = {
    "measurable": "stable", "non_measurable": "stable", "t2_flair": "stable", "new": False,
}


def held_call(inputs: dict[str, object], variant: RanoVariant) -> str:
    """The call when imaging progression falls inside the radiotherapy window.

    RANO, Wen 2010: such a scan is not PD. Reading taken here: the imaging
    progression is set aside (:data:`WINDOW_NEUTRAL`) and the table decides
    among the remaining calls, capped at SD (a scan with new enhancement is
    not a response); NE stays NE.
    """
    neutral = {key: (WINDOW_NEUTRAL[key] if key in WINDOW_NEUTRAL and inputs[key] == PD_TRIGGERS[key] else value)
               for key, value in inputs.items()}
    call, _ = overall_response_rano(neutral, variant)
    return SD if call in (CR, PR) else call


def in_radiotherapy_window(date: dt.date, radiotherapy_end: dt.date | None, weeks: float) -> bool:
    """Whether a scan lies within ``weeks`` after the end of radiotherapy (RANO, Wen 2010: 12 weeks)."""
    if radiotherapy_end is None:
        return False
    return (date - radiotherapy_end).days <= weeks * 7 + EPS


def pseudoprogression_window_exempt(tp: Timepoint) -> bool:
    """Whether progression inside the window is still PD.

    RANO, Wen 2010: within 12 weeks of chemoradiotherapy PD is called only if
    most of the new enhancement is outside the radiation field (beyond the
    80% isodose line) or if histology confirms tumour.
    """
    return bool(tp.clinical.outside_radiation_field) or bool(tp.clinical.histologic_confirmation)


def needs_confirmation(variant: RanoVariant, tp: Timepoint, prep: Prepared, options: AssessmentOptions, *, in_window: bool) -> str | None:
    """Why an imaging progression at ``tp`` is only preliminary (``None``: it is PD at once).

    mRANO (Ellingson 2017): always. RANO 2.0 (Wen 2023): within 12 weeks
    after radiotherapy (unless outside the field or histology), and on
    immunotherapy. iRANO (Okada 2015): within 6 months of starting
    immunotherapy in a patient without significant clinical decline.
    """
    if variant.confirm_always:
        return "mRANO: progression is preliminary until the next scan"
    if variant.rt_window == "confirm" and in_window and not pseudoprogression_window_exempt(tp):
        return f"within {options.rano_pseudoprogression_window_weeks:g} weeks after radiotherapy"
    if variant.confirm_on_immunotherapy and prep.course.context.immunotherapy:
        return "on immunotherapy"
    if variant.irano and prep.course.context.immunotherapy and tp.clinical.clinically_stable:
        weeks = weeks_between(prep.course.context.treatment_start, tp.date)
        if weeks <= options.irano_window_weeks + EPS:
            return f"iRANO: {weeks:.1f} weeks after starting immunotherapy (< {options.irano_window_weeks:g})"
    return None


# --------------------------------------------------------------------------- whole course


def _unit(measure: str) -> str:
    return {"product": "mm2", "volume": "mm3", "diameter": "mm"}[measure]


def _label(measure: str) -> str:
    return {"product": "SPD", "volume": "volume", "diameter": "SOD"}[measure]


def _fmt(value: float, unit: str) -> str:
    return f"{value:.1f} {unit}"


@dataclass
class _Episode:
    rows: list[int]
    start_date: dt.date
    reference: float
    reference_values: dict[str, float | None]
    kind: str  # "hold" (RANO window) or "preliminary"
    #: Imaging triggers seen in the episode, and the new lesions present at its scans (for fresh_progression).
    triggers: set[str] = field(default_factory=set)
    new_ids: set[str] = field(default_factory=set)


def assess_rano_family(prep: Prepared, options: AssessmentOptions, variant: RanoVariant) -> Assessment:
    """Assess a prepared course by one criterion of the RANO family (see :data:`VARIANTS`).

    A scan after a preliminary PD that still shows progression keeps it open or confirms it
    (:func:`preliminary_pd_persists`, Okada 2015); clinical decline is PD at once (Okada 2015: the hold is
    for patients without significant clinical decline). A new lesion listed without a diameter is still a
    new lesion; for mRANO, whose new lesions count only when measurable (Ellingson 2017), its measurability
    is not evaluated (:func:`_new_measurable`): flag ``new_lesion_not_measured`` in every variant.
    """
    course = prep.course
    measure_name = variant.measure
    pr_pct, pd_pct = variant.pr_decrease_pct, variant.pd_increase_pct
    if (variant.name == "rano2" and options.rano2_volumetric) or (variant.name == "mrano" and options.mrano_volumetric):
        measure_name = "volume"
        pr_pct, pd_pct = VOLUMETRIC_PR_PCT, VOLUMETRIC_PD_PCT
    measure: Callable[[TargetLesion, bool], float | None] = {
        "product": product_mm2, "volume": volume_mm3, "diameter": diameter_mm}[measure_name]
    unit, label = _unit(measure_name), _label(measure_name)
    targets = prep.targets
    has_targets = bool(targets)
    rt_end = course.context.radiotherapy_end
    window_weeks = options.rano_pseudoprogression_window_weeks

    def burden_of(tp: Timepoint) -> Burden:
        return target_burden(tp, targets, measure, unit=unit)

    def sums(value: float | None) -> dict[str, float | None]:
        key = {"product": "sum_products_mm2", "volume": "sum_volume_mm3", "diameter": "sum_mm"}[measure_name]
        return {key: value}

    rows: list[dict] = []
    for tp in course.timepoints[: prep.baseline_index]:
        burden = burden_of(tp)
        rows.append(dict(
            date=tp.date, days_since_baseline=prep.days_since_baseline(tp), response=None, flags=["pre_baseline"],
            reason="pre-baseline scan (before the baseline): no response; used for growth rates only",
            **sums(burden.total if burden.complete and has_targets else None),
        ))
    baseline = prep.baseline
    base_burden = burden_of(baseline)
    if has_targets and not base_burden.complete:
        raise_missing_baseline(prep, base_burden, measure_name)
    base_total = base_burden.total
    base_steroids = baseline.clinical.steroid_dose_mg
    reason = baseline_reason(prep, label, base_total if has_targets else None, unit)
    if variant.name in ("rano2", "mrano") and rt_end is not None and baseline.date < rt_end:
        reason += (f"; note: the baseline precedes the end of radiotherapy ({rt_end}); {variant.source} expects the "
                   "post-radiotherapy scan as baseline in newly diagnosed disease")
    if measure_name == "volume":
        reason += f"; volumetric thresholds: PR >= {pr_pct:g}% decrease, PD >= {pd_pct:g}% increase"
    rows.append(dict(
        date=baseline.date, days_since_baseline=0, response=None, flags=["baseline"], reason=reason,
        **sums(base_total if has_targets else None),
        nadir=base_total if has_targets else None, nadir_date=baseline.date if has_targets else None,
    ))
    history: list[tuple[dt.date, float, dict[str, float | None]]] = [(baseline.date, base_total, dict(base_burden.values))]
    episode: _Episode | None = None
    episodes: list[tuple[list[int], str]] = []
    steroid_hold: list[int] = []
    progressed = False
    for tp in course.timepoints[prep.baseline_index + 1:]:
        row_index = len(rows)
        flags: list[str] = []
        burden = burden_of(tp)
        in_window = in_radiotherapy_window(tp.date, rt_end, window_weeks)
        # Reference for progression: the smallest complete sum so far; after the RT window,
        # only scans from the end of radiotherapy on (RANO, Wen 2010: "first post-radiotherapy scan or a smaller later one").
        usable = history
        if variant.rt_window == "hold" and rt_end is not None and baseline.date < rt_end and not in_window:
            post_rt = [h for h in history if h[0] >= rt_end]
            usable = post_rt or history
        ref_date, reference, ref_values = min(usable, key=lambda h: (h[1], h[0]))
        lesion_ok = True
        if variant.pd_lesion_increase_mm is not None:
            lesion_ok = any(
                (burden.values.get(t.lesion) is not None and ref_values.get(t.lesion) is not None
                 and burden.values[t.lesion] - ref_values[t.lesion] >= variant.pd_lesion_increase_mm - EPS)  # type: ignore[operator]
                for t in targets
            )
        measurable = measurable_category(
            burden.total, reference, base_total, complete=burden.complete, has_targets=has_targets,
            pr_pct=pr_pct, pd_pct=pd_pct, lesion_growth_ok=lesion_ok,
        )
        statuses = non_target_statuses(prep, tp)
        non_measurable = non_measurable_category(statuses)
        new = present_new_lesions(tp)
        present_ids = [lesion.lesion for lesion in new]
        unmeasured = unmeasured_new_lesions(tp)
        undecided: tuple[str, ...] = ()
        if variant.new_lesions_measurable_only:
            undecided = tuple(lesion.lesion for lesion in new if _new_measurable(lesion) is None)
            new = tuple(lesion for lesion in new if _new_measurable(lesion))
        if unmeasured:
            flags.append(NEW_LESION_NOT_MEASURED)
        t2 = "increased" if tp.clinical.t2_flair == "increased" else "stable"
        steroids = steroid_category(tp.clinical.steroid_dose_mg, base_steroids)
        clinical = "stable" if tp.clinical.clinically_stable else "deteriorated"
        # mRANO: a new lesion whose measurability cannot be told (no diameter) leaves "new measurable lesion" not evaluated.
        new_input: object = True if new else ("NE" if undecided else False)
        inputs: dict[str, object] = dict(measurable=measurable, non_measurable=non_measurable, t2_flair=t2,
                                         new=new_input, steroids=steroids, clinical=clinical)
        call, triggers = overall_response_rano(inputs, variant)
        # words
        parts: list[str] = []
        if burden.notes:
            parts.append("; ".join(burden.notes))
        if has_targets:
            if burden.missing:
                parts.append(f"{', '.join(burden.missing)} not evaluated; {label} of the others {_fmt(burden.total, unit)}")
            else:
                parts.append(f"{label} {_fmt(burden.total, unit)} vs baseline {_fmt(base_total, unit)}: "
                             f"{fmt_pct(pct_change(burden.total, base_total))}; vs nadir {_fmt(reference, unit)} ({ref_date}): "
                             f"{fmt_pct(pct_change(burden.total, reference))}")
            parts.append(f"measurable disease: {measurable}")
        else:
            parts.append("no measurable disease")
        if statuses:
            parts.append("non-measurable: " + ", ".join(f"{lid} {st.replace('_', ' ')}" for lid, st in statuses))
        parts.append(("new lesions: " + ", ".join(lesion.lesion for lesion in new)) if new else "no new lesions")
        if undecided:
            parts.append(not_measured_note(undecided, f"whether it is a new measurable lesion ({variant.source}) is not "
                                                      "evaluated: no PD from it, no SD/PR/CR while it is there"))
        elif unmeasured:
            parts.append(not_measured_note(unmeasured, f"still a new lesion; its size is not used by {variant.source}"))
        if variant.use_t2_flair and tp.clinical.t2_flair:
            parts.append(f"T2/FLAIR {tp.clinical.t2_flair}")
        elif tp.clinical.t2_flair == "increased":
            parts.append(f"T2/FLAIR increased (not used by {variant.source})")
        if variant.steroids != "ignored" and steroids != "unknown":
            at_baseline = f"{base_steroids:g} mg/day" if base_steroids is not None else "not recorded"
            parts.append(f"steroids {tp.clinical.steroid_dose_mg:g} mg/day vs {at_baseline} at baseline ({steroids.replace('_', ' ')})")
        if variant.use_clinical and clinical == "deteriorated":
            parts.append("clinical deterioration")
        text = "; ".join(parts)
        imaging_triggers = [t for t in triggers if t != "clinical"]
        clinical_pd = "clinical" in triggers
        confirmation = None
        if steroids == "increased" and variant.steroids != "ignored":
            flags.append("steroid_increase")
        # --- an open episode is resolved first
        if episode is not None:
            weeks = weeks_between(episode.start_date, tp.date)
            still = _still_progressed(burden, episode.reference, pd_pct, statuses, new, tp, variant)
            min_weeks = options.irano_confirm_min_weeks if variant.irano else options.mrano_confirm_min_weeks
            if episode.kind == "hold":
                if in_window and (imaging_triggers or still) and not clinical_pd and not pseudoprogression_window_exempt(tp):
                    call = held_call(inputs, variant)
                    text += (f"; still within {window_weeks:g} weeks after radiotherapy ({rt_end}): progression not called "
                             f"without enhancement outside the radiation field or histology -> {call}")
                    episode.rows.append(row_index)
                elif call == PD or clinical_pd:
                    episodes.append((episode.rows, "confirmed"))
                    episode = None
                    text += " -> PD (progression after the radiotherapy window confirms the earlier increase)"
                elif call == NE:
                    text += " -> NE"
                else:
                    episodes.append((episode.rows, "refuted"))
                    episode = None
                    text += f" -> {call} (the increase within the radiotherapy window was pseudoprogression)"
            else:
                # Progression at this scan on its own terms (vs the current nadir, new lesions, ...) is
                # progression on the follow-up imaging too: the preliminary PD stays open / is confirmed, never
                # refuted by it (Okada 2015; see preliminary_pd_persists).
                persists = (f"progression persists vs {_fmt(episode.reference, unit)}" if still else
                            f"progression at this scan ({', '.join(imaging_triggers)}) vs nadir {_fmt(reference, unit)}")
                still = preliminary_pd_persists(still=still, imaging_triggers=imaging_triggers)
                fresh = fresh_progression(imaging_triggers, [lesion.lesion for lesion in new], episode)
                fresh_text = ", ".join(
                    "new lesion(s) " + ", ".join(lesion.lesion for lesion in new if lesion.lesion not in episode.new_ids)
                    if trigger == "new" else trigger for trigger in fresh)
                at_once = bool(fresh) and needs_confirmation(variant, tp, prep, options, in_window=in_window) is None
                episode.triggers.update(imaging_triggers)
                episode.new_ids.update(present_ids)
                if clinical_pd:
                    call = PD
                    episodes.append((episode.rows, "confirmed"))
                    episode = None
                    text += " -> PD (clinical deterioration)"
                elif still and weeks >= min_weeks - EPS:
                    call = CONFIRMED_PD
                    confirmation = "confirms"
                    episodes.append((episode.rows, "confirmed"))
                    backdate = f"; PD dated to {episode.start_date}" if variant.irano else ""
                    text += (f"; {weeks:.1f} weeks after the preliminary PD of {episode.start_date}, {persists} "
                             f"-> confirmed PD{backdate}")
                    episode = None
                elif at_once:
                    call = PD
                    confirmation = "confirms"
                    episodes.append((episode.rows, "confirmed"))
                    text += (f"; {persists}, {weeks:.1f} weeks after the preliminary PD of {episode.start_date}; new at this "
                             f"scan: {fresh_text}, {_no_confirmation_needed(variant, tp, prep, options)} -> PD")
                    episode = None
                elif still:
                    call = PRELIMINARY_PD
                    confirmation = "pending"
                    episode.rows.append(row_index)
                    text += (f"; {persists}, only {weeks:.1f} weeks after the preliminary PD of {episode.start_date} "
                             f"(< {min_weeks:g}): still awaiting confirmation -> preliminary PD")
                elif call == NE:
                    text += f"; preliminary PD of {episode.start_date} neither confirmed nor refuted -> NE"
                else:
                    confirmation = "refutes"
                    episodes.append((episode.rows, "refuted"))
                    episode = None
                    text += f"; preliminary PD not confirmed -> {call} (pseudoprogression)"
        elif progressed:
            flags.append("after_progression")
            text += f" -> {call}"
        elif call == PD and not clinical_pd:
            why = needs_confirmation(variant, tp, prep, options, in_window=in_window)
            if variant.rt_window == "hold" and in_window and not pseudoprogression_window_exempt(tp):
                call = held_call(inputs, variant)
                episode = _Episode([row_index], tp.date, reference, dict(ref_values), "hold",
                                   set(imaging_triggers), set(present_ids))
                text += (f"; progression ({', '.join(imaging_triggers)}) within {window_weeks:g} weeks after radiotherapy "
                         f"({rt_end}) without enhancement outside the radiation field or histology: not PD -> {call}")
            elif why is not None:
                call = PRELIMINARY_PD
                confirmation = "pending"
                episode = _Episode([row_index], tp.date, reference, dict(ref_values), "preliminary",
                                   set(imaging_triggers), set(present_ids))
                text += f"; progression ({', '.join(imaging_triggers)}), {why}: needs a confirmation scan -> preliminary PD"
            else:
                exempt = " (outside the radiation field / histology)" if in_window and pseudoprogression_window_exempt(tp) else ""
                text += f" -> PD ({', '.join(imaging_triggers)}){exempt}"
        elif call == PD:
            text += " -> PD (clinical deterioration)"
        elif call == NE and steroids == "increased" and variant.steroids == "full" and measurable != "NE" and non_measurable != "NE":
            steroid_hold.append(row_index)
            text += "; stable imaging on a higher steroid dose: neither SD nor PD until the dose returns to baseline -> NE"
        else:
            text += f" -> {call}"
        if call in (PD, CONFIRMED_PD):
            progressed = True
        if call == PD and clinical_pd and steroid_hold:
            text += f" (dated to the steroid increase of {rows[steroid_hold[0]]['date']})"
            steroid_hold = []
        if call in (SD, PR, CR) and steroid_hold and steroids != "increased":
            for index in steroid_hold:
                rows[index]["response"] = SD
                rows[index]["reason"] += f"; SD in hindsight: steroid dose back to baseline on {tp.date}"
            steroid_hold = []
        if not burden.complete and has_targets:
            flags.append("targets_not_all_evaluated")
        if in_window and variant.rt_window != "none":
            flags.append("within_radiotherapy_window")
        rows.append(dict(
            date=tp.date, days_since_baseline=prep.days_since_baseline(tp), response=call, flags=flags, reason=text,
            **sums(burden.total if has_targets else None),
            change_from_baseline_pct=finite_or_none(pct_change(burden.total, base_total)) if has_targets and burden.complete else None,
            change_from_nadir_pct=finite_or_none(pct_change(burden.total, reference)) if has_targets and burden.complete else None,
            nadir=reference if has_targets else None, nadir_date=ref_date if has_targets else None,
            target_response=None if measurable == "NA" else measurable,
            non_target_response=None if non_measurable == "NA" else non_measurable,
            new_lesions=bool(present_new_lesions(tp)), confirmation=confirmation,
        ))
        if burden.complete and has_targets:
            history.append((tp.date, burden.total, dict(burden.values)))
    if episode is not None:
        episodes.append((episode.rows, "open"))
    apply_episode_outcomes(rows, episodes)
    results = tuple(TimepointAssessment(**{**row, "flags": tuple(row["flags"])}) for row in rows)
    # A scan held in the radiotherapy window whose progression was later confirmed is not stable disease
    # for the best response: it counts as the unconfirmed progression it was.
    calls = [
        (row.date, PRELIMINARY_PD if "progression_confirmed" in row.flags and row.response in (SD, NE) else row.response)
        for row in results[prep.baseline_index + 1:]
    ]
    names = BorNames(CR, PR, SD, None, (PD, CONFIRMED_PD), (PRELIMINARY_PD,))
    bor = best_overall_response(calls, baseline.date, options, names, confirm=options.confirm_responses)
    return Assessment(course.patient_id, prep.criterion, baseline.date, results, bor)


def _new_measurable(lesion: NewLesion) -> bool | None:
    """mRANO: whether a new lesion counts, being measurable; ``None`` when that cannot be told.

    Ellingson 2017: a new **measurable** lesion (>= 10 x 10 mm) is progression. The reader's
    ``measurable`` when given; else by size, the perpendicular taken equal to the longest diameter
    when not given (reading). A lesion listed without its longest diameter is not evaluated, never
    0 mm (RECIST 1.1 sec. 4.4.2 reading): ``None``.
    """
    if lesion.measurable is not None:
        return lesion.measurable
    if lesion.long_axis_mm is None:
        return None
    perpendicular = lesion.perpendicular_mm if lesion.perpendicular_mm is not None else lesion.long_axis_mm
    return lesion.long_axis_mm >= 10.0 and perpendicular >= 10.0


def _still_progressed(burden: Burden, reference: float, pd_pct: float, statuses: Sequence[tuple[str, str]],
                      new: Sequence[NewLesion], tp: Timepoint, variant: RanoVariant) -> bool:
    """Whether a follow-up still meets progression against the reference of the preliminary PD.

    mRANO (Ellingson 2017) and RANO 2.0 (Wen 2023): the preliminary PD is
    confirmed when the next scan still shows progression against the same
    reference (the increase persists or grows); new lesions still present
    and unequivocal non-target progression count as persisting.
    """
    grew = burden.total > reference and pct_change(burden.total, reference) >= pd_pct - EPS
    if grew:
        return True
    if any(status == "unequivocal_progression" for _, status in statuses):
        return True
    if new:
        return True
    return variant.use_t2_flair and tp.clinical.t2_flair == "increased"


def preliminary_pd_persists(*, still: bool, imaging_triggers: Sequence[str]) -> bool:
    """Whether a scan after a preliminary PD still shows progression (keeps the episode open, or confirms it).

    Okada 2015 (iRANO): "confirmation of radiographic progression on follow-up imaging" -- a follow-up that
    still meets progression against the preliminary PD's reference (``still``, :func:`_still_progressed`)
    **or** meets RANO progression on its own terms at this scan (``imaging_triggers``: an increase >= 25%
    vs the current nadir, a new lesion, unequivocal non-target or T2/FLAIR progression) shows radiographic
    progression. Such a scan can never refute the preliminary PD and be called PD at once: that made a
    scan with one more new lesion a *lower* call (preliminary PD) than the same scan without it (PD).
    Mirrors the radiotherapy-window episodes, where progression of any kind keeps the episode open.
    The same for mRANO (Ellingson 2017) and RANO 2.0 (Wen 2023) preliminary PD.
    """
    return still or bool(imaging_triggers)


def fresh_progression(imaging_triggers: Sequence[str], counted_new: Sequence[str], episode: _Episode) -> list[str]:
    """The imaging triggers at a scan that the open preliminary PD had not shown: a kind of progression not seen at
    its scans, or a new lesion not present at them.

    When such a progression needs no confirmation at this scan's date (:func:`needs_confirmation` is ``None``:
    e.g. iRANO after the six months, Okada 2015 "after 6 months, RANO applies"; RANO 2.0 outside the window and
    not on immunotherapy, Wen 2023) it is PD at once, as it would be without the open episode -- otherwise a new
    lesion that had opened the episode earlier would lower this call. The progression the episode already showed
    (the same triggers, the same new lesions) still waits for its confirmation scan.
    """
    fresh = [t for t in imaging_triggers if t != "new" and t not in episode.triggers]
    if "new" in imaging_triggers and set(counted_new) - episode.new_ids:
        fresh.append("new")
    return fresh


def _no_confirmation_needed(variant: RanoVariant, tp: Timepoint, prep: Prepared, options: AssessmentOptions) -> str:
    """Why a progression at ``tp`` is PD at once (words for the reason)."""
    if variant.irano:
        weeks = weeks_between(prep.course.context.treatment_start, tp.date)
        return f"{weeks:.1f} weeks after starting immunotherapy (> {options.irano_window_weeks:g}): RANO applies, PD at once"
    return f"no confirmation needed at this scan under {variant.source}: PD at once"


def raise_missing_baseline(prep: Prepared, burden: Burden, measure_name: str) -> None:
    """A selected target lacks the measurement this criterion needs at baseline."""
    from imaging.response.errors import CourseError

    need = {"product": "perpendicular_mm and long_axis_mm", "volume": "volume_mm3", "diameter": "long_axis_mm"}[measure_name]
    raise CourseError(
        f"needs {need} for every target at baseline (missing: {', '.join(burden.missing)})",
        timepoint_index=prep.baseline_index + 1, timepoint_date=prep.baseline.date, field=f"target[{burden.missing[0]}]",
    )


def _assessor(name: str) -> Callable[[Prepared, AssessmentOptions], Assessment]:
    variant = VARIANTS[name]

    def run(prep: Prepared, options: AssessmentOptions) -> Assessment:
        return assess_rano_family(prep, options, variant)

    run.__name__ = f"assess_{name}"
    run.__doc__ = f"Assess a prepared course by {variant.source}."
    return run


#: criterion name -> assessor, for the engine.
ASSESSORS: dict[str, Callable[[Prepared, AssessmentOptions], Assessment]] = {
    name: _assessor(name) for name in ("rano", "rano2", "mrano", "irano")
}
assess_ranobm = _assessor("ranobm")
