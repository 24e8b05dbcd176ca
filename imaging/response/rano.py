"""The RANO family: RANO 2010, RANO 2.0, mRANO, iRANO, RANO-LGG and RANO-BM.

Sources: RANO, Wen et al., J Clin Oncol 2010;28:1963-72 (Table 2, "Summary of
the RANO response criteria"). RANO 2.0, Wen et al., J Clin Oncol
2023;41:5187-99. mRANO, Ellingson et al., Neurotherapeutics 2017;14:307-20.
iRANO, Okada et al., Lancet Oncol 2015;16:e534-42. RANO-BM, Lin et al.,
Lancet Oncol 2015;16:e270-8. RANO-LGG, van den Bent et al., Lancet Oncol
2011;12:583-93 (the response criteria for low-grade, non-enhancing glioma).

The criteria differ in data, not in code: :data:`VARIANTS` holds, per
criterion, the measure, thresholds, which clinical inputs count, and how an
early progression is handled (held in the radiotherapy window, or preliminary
and confirmed at the next scan). RANO 2.0 picks its variant by the kind of
tumour (``context.tumour``, :func:`variant_for`): enhancing, non-enhancing
(T2/FLAIR, with the minor response) or mixed (both burdens assessed in
parallel and combined, :data:`MIXED_COMBINATION`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

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
from imaging.response.models import Course, NewLesion, TargetLesion, Timepoint
from imaging.response.options import AssessmentOptions
from imaging.response.recist import baseline_reason
from imaging.response.result import Assessment, ComponentAssessment, TimepointAssessment

PRELIMINARY_PD = "preliminary PD"
CONFIRMED_PD = "confirmed PD"
#: Minor response (RANO-LGG, van den Bent 2011; RANO 2.0 for non-enhancing tumours, Wen 2023): a 25% to < 50%
#: decrease of the T2/FLAIR sum of products from baseline. The papers' abbreviation.
MR = "MR"
#: Flag: unequivocal progression of a non-measurable lesion under a criterion whose PD list does not name it
#: (RANO-LGG): it blocks a response, and the reason says so.
NON_MEASURABLE_PROGRESSION = "non_measurable_progression"

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
    mr_decrease_pct
        Minor response: a decrease from baseline of at least this much (and less than
        ``pr_decrease_pct``) is MR (RANO-LGG; RANO 2.0 for non-enhancing tumours); ``None``: no MR.
    use_enhancement
        ``clinical.enhancement`` ``new`` or ``increased`` is PD, and CR needs enhancement gone
        (RANO-LGG: "new or increased enhancement"; RANO 2.0 for non-enhancing tumours, reading).
    non_measurable_pd
        Unequivocal progression of a non-measurable lesion is PD (RANO 2010 Table 2 and the others);
        ``False`` for RANO-LGG, whose PD list does not name it: it only blocks a response.
    component
        The tumour component the targets measure: ``"enhancing"`` (T1 post-contrast) or
        ``"non_enhancing"`` (T2/FLAIR).
    mixed
        RANO 2.0 for tumours with enhancing and non-enhancing parts: both burdens are assessed in
        parallel and the two calls combined (:data:`MIXED_COMBINATION`).
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
    mr_decrease_pct: float | None = None
    use_enhancement: bool = False
    non_measurable_pd: bool = True
    component: str = "enhancing"
    mixed: bool = False


VARIANTS: dict[str, RanoVariant] = {
    "rano": RanoVariant("rano", "RANO, Wen 2010", "product", 50.0, 25.0, None, True, "full", True, "hold"),
    "irano": RanoVariant("irano", "iRANO, Okada 2015", "product", 50.0, 25.0, None, True, "full", True, "hold", irano=True),
    "rano2": RanoVariant("rano2", "RANO 2.0, Wen 2023", "product", 50.0, 25.0, None, False, "cr_pr", True, "confirm",
                         confirm_on_immunotherapy=True),
    "mrano": RanoVariant("mrano", "mRANO, Ellingson 2017", "product", 50.0, 25.0, None, False, "ignored", False, "none",
                         confirm_always=True, new_lesions_measurable_only=True),
    "ranobm": RanoVariant("ranobm", "RANO-BM, Lin 2015", "diameter", 30.0, 20.0, 5.0, False, "full", True, "none"),
    # RANO-LGG (van den Bent 2011, response criteria): T2/FLAIR sum of products; PR >= 50% and MR 25% to < 50%
    # decrease from baseline, PD >= 25% increase from the smallest measurement; new lesions, new or increased
    # enhancement and clinical deterioration are PD; steroids as RANO 2010; no radiotherapy window (the paper
    # leaves an increase due to radiation effect to the reader) and so no confirmation of progression.
    "ranolgg": RanoVariant("ranolgg", "RANO-LGG, van den Bent 2011", "product", 50.0, 25.0, None, False, "full", True, "none",
                           mr_decrease_pct=25.0, use_enhancement=True, non_measurable_pd=False, component="non_enhancing"),
}

#: RANO 2.0 (Wen 2023) for non-enhancing tumours (``context.tumour: non_enhancing``, e.g. IDH-mutant lower-grade
#: glioma): as for enhancing tumours, but the targets are the T2/FLAIR lesions (sums of products), the minor
#: response (25% to < 50% decrease) is a category, and new or increased enhancement is PD (reading, as RANO-LGG).
RANO2_NON_ENHANCING = replace(VARIANTS["rano2"], source="RANO 2.0 (non-enhancing tumour), Wen 2023",
                              mr_decrease_pct=25.0, use_enhancement=True, component="non_enhancing")
#: RANO 2.0 (Wen 2023) for tumours with enhancing and non-enhancing parts (``context.tumour: mixed``): the enhancing
#: burden by the enhancing rules, the T2/FLAIR burden by the non-enhancing ones, in parallel; the two calls combined.
RANO2_MIXED = replace(VARIANTS["rano2"], source="RANO 2.0 (mixed tumour), Wen 2023", mixed=True)


def variant_for(name: str, course: Course) -> RanoVariant:
    """The variant that assesses ``course`` by criterion ``name``.

    RANO 2.0 (Wen 2023) by ``context.tumour``: ``non_enhancing`` -> :data:`RANO2_NON_ENHANCING`, ``mixed`` ->
    :data:`RANO2_MIXED`; ``enhancing`` or null -> the enhancing-tumour rules, exactly as before the field existed.
    """
    if name == "rano2":
        if course.context.tumour == "non_enhancing":
            return RANO2_NON_ENHANCING
        if course.context.tumour == "mixed":
            return RANO2_MIXED
    return VARIANTS[name]


#: RANO 2.0 (Wen 2023), mixed tumours: "the whole evaluation should be performed in parallel for both the CE and
#: the non-CE tumor burden at each timepoint in order to assign the response category (e.g., PD, SD, PR, ...), then
#: the overall response category is assigned based on both CE and non-CE categories: PD + SD/MR/PR/CR = PD;
#: MR/PR + SD = MR/PR; CR + SD/MR/PR = SD/MR/PR; SD + SD = SD". Keys (enhancing call, non-enhancing call); the
#: enhancing burden has no MR. Cells the paper does not state are this engine's reading: CR + CR = CR; PR + PR = PR;
#: PR + MR = MR (both parts respond: the lesser response, as CR + PR = PR); NE with anything but PD = NE.
MIXED_COMBINATION: dict[tuple[str, str], str] = {}
for _ce in (CR, PR, SD, PD, NE):
    for _non_ce in (CR, PR, MR, SD, PD, NE):
        if PD in (_ce, _non_ce):
            _overall = PD                                   # PD + SD/MR/PR/CR = PD
        elif NE in (_ce, _non_ce):
            _overall = NE                                   # reading
        elif _ce == CR:
            _overall = _non_ce                              # CR + SD/MR/PR = SD/MR/PR (CR + CR = CR, reading)
        elif _non_ce == CR:
            _overall = _ce                                  # the same, the other way round
        elif _ce == SD:
            _overall = _non_ce                              # MR/PR + SD = MR/PR; SD + SD = SD
        elif _non_ce == SD:
            _overall = _ce                                  # PR + SD = PR
        else:
            _overall = MR if MR in (_ce, _non_ce) else PR   # PR + MR = MR, PR + PR = PR (reading)
        MIXED_COMBINATION[(_ce, _non_ce)] = _overall
del _ce, _non_ce, _overall


def combine_mixed(enhancing: str, non_enhancing: str) -> str:
    """Overall call of a mixed tumour from the calls of its two burdens (RANO 2.0, Wen 2023; :data:`MIXED_COMBINATION`)."""
    return MIXED_COMBINATION[(enhancing, non_enhancing)]

#: Volumetric thresholds, the sphere-equivalents of 50% / 25% in two dimensions:
#: RANO 2.0 (Wen 2023) and mRANO (Ellingson 2017): PR >= 65% decrease, PD >= 40% increase.
#: The minor response by volume is :attr:`AssessmentOptions.rano2_volumetric_minor_response_pct` (reading).
VOLUMETRIC_PR_PCT, VOLUMETRIC_PD_PCT = 65.0, 40.0

#: RANO 2010, Table 2: conditions of each call, as data. Each key names an input
#: category computed per time point; a call needs every condition ("all").
#: PD needs any one of ``PD_TRIGGERS``. MR and the ``enhancement`` row are RANO-LGG's
#: (van den Bent 2011): MR is a 25% to < 50% decrease with the conditions of PR; CR needs
#: any enhancement that had been present to have resolved, every
#: call "no new or increased enhancement". Criteria without MR never reach it; criteria that
#: do not use enhancement see ``"none"`` there.
RESPONSE_REQUIREMENTS: dict[str, dict[str, frozenset]] = {
    CR: {
        "measurable": frozenset({"gone", "NA"}),
        "non_measurable": frozenset({"absent", "NA"}),
        "t2_flair": frozenset({"stable"}),
        "new": frozenset({False}),
        "enhancement": frozenset({"none", "unknown"}),
        "steroids": frozenset({"none", "unknown"}),
        "clinical": frozenset({"stable"}),
    },
    PR: {
        "measurable": frozenset({"decrease", "gone"}),
        "non_measurable": frozenset({"absent", "stable", "NA"}),
        "t2_flair": frozenset({"stable"}),
        "new": frozenset({False}),
        "enhancement": frozenset({"none", "stable", "unknown"}),
        "steroids": frozenset({"none", "stable_or_lower", "unknown"}),
        "clinical": frozenset({"stable"}),
    },
    MR: {
        "measurable": frozenset({"minor_decrease", "decrease", "gone"}),
        "non_measurable": frozenset({"absent", "stable", "NA"}),
        "t2_flair": frozenset({"stable"}),
        "new": frozenset({False}),
        "enhancement": frozenset({"none", "stable", "unknown"}),
        "steroids": frozenset({"none", "stable_or_lower", "unknown"}),
        "clinical": frozenset({"stable"}),
    },
    SD: {
        "measurable": frozenset({"stable", "minor_decrease", "decrease", "gone", "NA"}),
        "non_measurable": frozenset({"absent", "stable", "increase", "NA"}),
        "t2_flair": frozenset({"stable"}),
        "new": frozenset({False}),
        "enhancement": frozenset({"none", "stable", "unknown"}),
        "steroids": frozenset({"none", "stable_or_lower", "unknown"}),
        "clinical": frozenset({"stable"}),
    },
}
#: RANO 2010, Table 2, PD column ("any"): the input category that triggers it; ``enhancement``: RANO-LGG
#: (van den Bent 2011: "new or increased enhancement", radiological evidence of malignant transformation).
PD_TRIGGERS: dict[str, object] = {
    "measurable": "increase",
    "non_measurable": "unequivocal_progression",
    "t2_flair": "increased",
    "new": True,
    "enhancement": "new_or_increased",
    "clinical": "deteriorated",
}
#: ``clinical.enhancement`` as the table's input category.
ENHANCEMENT_CATEGORY: dict[str | None, str] = {
    None: "unknown", "none": "none", "stable": "stable", "new": "new_or_increased", "increased": "new_or_increased",
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
    pr_pct: float, pd_pct: float, lesion_growth_ok: bool = True, mr_pct: float | None = None,
) -> str:
    """Change of the measurable disease, as a category.

    RANO (Wen 2010): ``"increase"`` >= 25% from the smallest sum (nadir),
    ``"gone"`` all gone, ``"decrease"`` >= 50% from baseline, ``"stable"``
    otherwise; thresholds per criterion. With targets not evaluated:
    ``"increase"`` if the measured ones already make it, else ``"NE"``.
    RANO-BM (Lin 2015) also needs one lesion +5 mm (``lesion_growth_ok``).
    RANO-LGG (van den Bent 2011) and RANO 2.0 for non-enhancing tumours (Wen 2023):
    ``"minor_decrease"`` for a decrease of ``mr_pct`` (25%) to < ``pr_pct`` (50%) from baseline.
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
    if mr_pct is not None and pct_change(total, baseline_total) <= -mr_pct + EPS:
        return "minor_decrease"
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
    CR, PR, (MR,) SD whose every requirement holds; inputs a criterion does not use
    are neutral. MR only where the criterion has it (RANO-LGG, van den Bent 2011;
    RANO 2.0 for non-enhancing tumours, Wen 2023). RANO-LGG names no PD for
    non-measurable disease: there its unequivocal progression only blocks a
    response (read as an ``"increase"``). ``"NE"`` when the measurable or non-measurable disease was not
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
    used.setdefault("enhancement", "none")
    if not variant.use_t2_flair:
        used["t2_flair"] = "stable"
    if not variant.use_clinical:
        used["clinical"] = "stable"
    if not variant.use_enhancement:
        used["enhancement"] = "none"
    if not variant.non_measurable_pd and used["non_measurable"] == "unequivocal_progression":
        used["non_measurable"] = "increase"
    triggers = [key for key, value in PD_TRIGGERS.items() if used.get(key) == value]
    if triggers:
        return PD, triggers
    if used["measurable"] == "NE" or used["non_measurable"] == "NE" or used["new"] == "NE":
        return NE, []
    for call in ((CR, PR, MR, SD) if variant.mr_decrease_pct is not None else (CR, PR, SD)):
        needs = dict(RESPONSE_REQUIREMENTS[call])
        if variant.steroids == "ignored" or (variant.steroids == "cr_pr" and call == SD):
            needs.pop("steroids")
        elif variant.steroids == "cr_pr" and call in (CR, PR, MR):
            needs["steroids"] = frozenset({"none", "stable_or_lower", "unknown"})
        if all(used[key] in allowed for key, allowed in needs.items()):
            return call, []
    return NE, []


#: Inputs that progression inside the radiotherapy window sets aside, and the neutral value they take.
WINDOW_NEUTRAL: dict[str, object] = {
    "measurable": "stable", "non_measurable": "stable", "t2_flair": "stable", "new": False, "enhancement": "stable",
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
    return SD if call in (CR, PR, MR) else call


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
class _Track:
    """One burden followed over the course: the targets of one tumour component, and its thresholds.

    Every criterion follows one; RANO 2.0 for a mixed tumour two, the enhancing and the non-enhancing burden,
    "assessed in parallel" (Wen 2023). ``variant`` is the table that calls this burden (for a mixed tumour:
    the enhancing rules for the one, the non-enhancing rules, with MR, for the other).
    """

    component: str
    label: str
    targets: tuple[TargetLesion, ...]
    pr_pct: float
    pd_pct: float
    mr_pct: float | None
    variant: RanoVariant
    base_total: float = 0.0
    history: list[tuple[dt.date, float, dict[str, float | None]]] = field(default_factory=list)

    @property
    def has_targets(self) -> bool:
        return bool(self.targets)


@dataclass
class _Reading:
    """A track at one scan: its burden, the reference it is compared with, and the category."""

    track: _Track
    burden: Burden
    ref_date: dt.date
    reference: float
    ref_values: dict[str, float | None]
    measurable: str


@dataclass
class _Episode:
    rows: list[int]
    start_date: dt.date
    #: Per track, the reference (smallest sum) at the scan that opened the episode.
    references: tuple[float, ...]
    kind: str  # "hold" (RANO window) or "preliminary"
    #: Imaging triggers seen in the episode, and the new lesions present at its scans (for fresh_progression).
    triggers: set[str] = field(default_factory=set)
    new_ids: set[str] = field(default_factory=set)


def _tracks(prep: Prepared, options: AssessmentOptions, variant: RanoVariant, measure_name: str, pr_pct: float,
            pd_pct: float) -> list[_Track]:
    """The burdens a criterion follows (:class:`_Track`).

    One, over every selected target, except RANO 2.0 for a mixed tumour (Wen 2023): the enhancing targets with the
    enhancing rules (no MR), the non-enhancing (T2/FLAIR) targets with the non-enhancing rules (MR), in that order.
    The minor response by volume is ``options.rano2_volumetric_minor_response_pct`` (reading).
    """
    label = _label(measure_name)
    volumetric = measure_name == "volume"
    mr_volume = options.rano2_volumetric_minor_response_pct
    if variant.mixed:
        enhancing = replace(variant, mixed=False)
        non_enhancing = replace(RANO2_NON_ENHANCING, use_enhancement=False)
        mr = mr_volume if volumetric else non_enhancing.mr_decrease_pct
        return [
            _Track("enhancing", f"enhancing {label}", tuple(t for t in prep.targets if t.component == "enhancing"),
                   pr_pct, pd_pct, None, enhancing),
            _Track("non_enhancing", f"T2/FLAIR {label}", tuple(t for t in prep.targets if t.component == "non_enhancing"),
                   pr_pct, pd_pct, mr, non_enhancing),
        ]
    mr_pct = variant.mr_decrease_pct
    if mr_pct is not None and volumetric:
        mr_pct = mr_volume
    words = f"T2/FLAIR {label}" if variant.component == "non_enhancing" else label
    return [_Track(variant.component, words, prep.targets, pr_pct, pd_pct, mr_pct, variant)]


def _enhancement_words(value: str, variant: RanoVariant) -> str:
    """``clinical.enhancement`` in words, and whether the criterion uses it."""
    if not variant.use_enhancement:
        why = ": the enhancing burden is measured" if variant.mixed else ""
        return f"enhancement {value} (not used by {variant.source}{why})"
    return {
        "none": "no enhancement",
        "stable": "enhancement present, not increased",
        "new": "new enhancement (radiological evidence of malignant transformation)",
        "increased": "increased enhancement (radiological evidence of malignant transformation)",
    }[value]


def assess_rano_family(prep: Prepared, options: AssessmentOptions, variant: RanoVariant) -> Assessment:
    """Assess a prepared course by one criterion of the RANO family (see :data:`VARIANTS`).

    A scan after a preliminary PD that still shows progression keeps it open or confirms it
    (:func:`preliminary_pd_persists`, Okada 2015); clinical decline is PD at once (Okada 2015: the hold is
    for patients without significant clinical decline). A new lesion listed without a diameter is still a
    new lesion; for mRANO, whose new lesions count only when measurable (Ellingson 2017), its measurability
    is not evaluated (:func:`_new_measurable`): flag ``new_lesion_not_measured`` in every variant.

    RANO 2.0 for a mixed tumour (Wen 2023): the enhancing and the T2/FLAIR burden are called in parallel, each
    with the shared inputs (new lesions, non-targets, steroids, clinical status), and the calls combined
    (:func:`combine_mixed`); the row's sums and changes are the enhancing burden's (the non-enhancing one's when
    there is no enhancing target), ``components`` holds both.
    """
    course = prep.course
    measure_name = variant.measure
    pr_pct, pd_pct = variant.pr_decrease_pct, variant.pd_increase_pct
    if (variant.name == "rano2" and options.rano2_volumetric) or (variant.name == "mrano" and options.mrano_volumetric):
        measure_name = "volume"
        pr_pct, pd_pct = VOLUMETRIC_PR_PCT, VOLUMETRIC_PD_PCT
    measure: Callable[[TargetLesion, bool], float | None] = {
        "product": product_mm2, "volume": volume_mm3, "diameter": diameter_mm}[measure_name]
    unit = _unit(measure_name)
    tracks = _tracks(prep, options, variant, measure_name, pr_pct, pd_pct)
    primary = next((track for track in tracks if track.has_targets), tracks[0])
    rt_end = course.context.radiotherapy_end
    window_weeks = options.rano_pseudoprogression_window_weeks

    def burden_of(tp: Timepoint, track: _Track) -> Burden:
        return target_burden(tp, track.targets, measure, unit=unit)

    def sums(value: float | None) -> dict[str, float | None]:
        key = {"product": "sum_products_mm2", "volume": "sum_volume_mm3", "diameter": "sum_mm"}[measure_name]
        return {key: value}

    rows: list[dict] = []
    for tp in course.timepoints[: prep.baseline_index]:
        burden = burden_of(tp, primary)
        rows.append(dict(
            date=tp.date, days_since_baseline=prep.days_since_baseline(tp), response=None, flags=["pre_baseline"],
            reason="pre-baseline scan (before the baseline): no response; used for growth rates only",
            **sums(burden.total if burden.complete and primary.has_targets else None),
        ))
    baseline = prep.baseline
    for track in tracks:
        base_burden = burden_of(baseline, track)
        if track.has_targets and not base_burden.complete:
            raise_missing_baseline(prep, base_burden, measure_name)
        track.base_total = base_burden.total
        track.history.append((baseline.date, base_burden.total, dict(base_burden.values)))
    base_steroids = baseline.clinical.steroid_dose_mg
    reason = baseline_reason(prep, primary.label,
                             primary.base_total if primary.has_targets and not variant.mixed else None, unit)
    if variant.mixed:
        reason += "; " + "; ".join(
            (f"{track.component.replace('_', '-')} targets {', '.join(t.lesion for t in track.targets)}, "
             f"{track.label} {_fmt(track.base_total, unit)}") if track.has_targets
            else f"no measurable {track.component.replace('_', '-')} disease"
            for track in tracks)
        reason += f"; {variant.source}: the two burdens are assessed in parallel and their calls combined"
    if variant.name in ("rano2", "mrano") and rt_end is not None and baseline.date < rt_end:
        reason += (f"; note: the baseline precedes the end of radiotherapy ({rt_end}); {variant.source} expects the "
                   "post-radiotherapy scan as baseline in newly diagnosed disease")
    if measure_name == "volume":
        reason += f"; volumetric thresholds: PR >= {pr_pct:g}% decrease, PD >= {pd_pct:g}% increase"
        mr_volume = [track.mr_pct for track in tracks if track.mr_pct is not None]
        if mr_volume:
            reason += f", MR >= {mr_volume[0]:g}% decrease"
    rows.append(dict(
        date=baseline.date, days_since_baseline=0, response=None, flags=["baseline"], reason=reason,
        **sums(primary.base_total if primary.has_targets else None),
        nadir=primary.base_total if primary.has_targets else None,
        nadir_date=baseline.date if primary.has_targets else None,
    ))
    episode: _Episode | None = None
    episodes: list[tuple[list[int], str]] = []
    steroid_hold: list[int] = []
    progressed = False
    for tp in course.timepoints[prep.baseline_index + 1:]:
        row_index = len(rows)
        flags: list[str] = []
        in_window = in_radiotherapy_window(tp.date, rt_end, window_weeks)
        readings: list[_Reading] = []
        for track in tracks:
            burden = burden_of(tp, track)
            # Reference for progression: the smallest complete sum so far; after the RT window,
            # only scans from the end of radiotherapy on (RANO, Wen 2010: "first post-radiotherapy scan or a smaller later one").
            usable = track.history
            if variant.rt_window == "hold" and rt_end is not None and baseline.date < rt_end and not in_window:
                post_rt = [h for h in track.history if h[0] >= rt_end]
                usable = post_rt or track.history
            ref_date, reference, ref_values = min(usable, key=lambda h: (h[1], h[0]))
            lesion_ok = True
            if variant.pd_lesion_increase_mm is not None:
                lesion_ok = any(
                    (burden.values.get(t.lesion) is not None and ref_values.get(t.lesion) is not None
                     and burden.values[t.lesion] - ref_values[t.lesion] >= variant.pd_lesion_increase_mm - EPS)  # type: ignore[operator]
                    for t in track.targets
                )
            measurable = measurable_category(
                burden.total, reference, track.base_total, complete=burden.complete, has_targets=track.has_targets,
                pr_pct=track.pr_pct, pd_pct=track.pd_pct, lesion_growth_ok=lesion_ok, mr_pct=track.mr_pct,
            )
            readings.append(_Reading(track, burden, ref_date, reference, dict(ref_values), measurable))
        main = next(r for r in readings if r.track is primary)
        burden, reference, ref_date = main.burden, main.reference, main.ref_date
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
        inputs: dict[str, object] = dict(measurable=main.measurable, non_measurable=non_measurable, t2_flair=t2,
                                         new=new_input, steroids=steroids, clinical=clinical,
                                         enhancement=ENHANCEMENT_CATEGORY[tp.clinical.enhancement])
        track_calls: list[str] = []
        if variant.mixed:
            # RANO 2.0 (Wen 2023), mixed tumour: each burden called with the shared inputs, then combined.
            triggers = []
            for reading in readings:
                track_call, track_triggers = overall_response_rano({**inputs, "measurable": reading.measurable},
                                                                   reading.track.variant)
                track_calls.append(track_call)
                triggers.extend(t for t in track_triggers if t not in triggers)
            call = combine_mixed(track_calls[0], track_calls[1])
            if call != PD:
                triggers = []
        else:
            call, triggers = overall_response_rano(inputs, variant)
        # words
        parts: list[str] = []
        for reading in readings:
            if reading.burden.notes:
                parts.append("; ".join(reading.burden.notes))
        for reading in readings:
            track, rb = reading.track, reading.burden
            what = f"{track.component.replace('_', '-')} " if variant.mixed else ""
            if track.has_targets:
                if rb.missing:
                    parts.append(f"{', '.join(rb.missing)} not evaluated; {track.label} of the others {_fmt(rb.total, unit)}")
                else:
                    parts.append(f"{track.label} {_fmt(rb.total, unit)} vs baseline {_fmt(track.base_total, unit)}: "
                                 f"{fmt_pct(pct_change(rb.total, track.base_total))}; vs nadir {_fmt(reading.reference, unit)} "
                                 f"({reading.ref_date}): {fmt_pct(pct_change(rb.total, reading.reference))}")
                parts.append(f"{what}measurable disease: {reading.measurable}")
            else:
                parts.append(f"no measurable {what}disease")
        if statuses:
            parts.append("non-measurable: " + ", ".join(f"{lid} {st.replace('_', ' ')}" for lid, st in statuses))
        if non_measurable == "unequivocal_progression" and not variant.non_measurable_pd:
            flags.append(NON_MEASURABLE_PROGRESSION)
            parts.append(f"unequivocal progression of non-measurable disease is not among the PD criteria of "
                         f"{variant.source}: no response")
        parts.append(("new lesions: " + ", ".join(lesion.lesion for lesion in new)) if new else "no new lesions")
        if undecided:
            parts.append(not_measured_note(undecided, f"whether it is a new measurable lesion ({variant.source}) is not "
                                                      "evaluated: no PD from it, no SD/PR/CR while it is there"))
        elif unmeasured:
            parts.append(not_measured_note(unmeasured, f"still a new lesion; its size is not used by {variant.source}"))
        if tp.clinical.enhancement is not None:
            parts.append(_enhancement_words(tp.clinical.enhancement, variant))
        if variant.use_t2_flair and tp.clinical.t2_flair:
            source = f" ({tp.clinical.t2_flair_source})" if tp.clinical.t2_flair_source else ""
            parts.append(f"T2/FLAIR {tp.clinical.t2_flair}{source}")
        elif tp.clinical.t2_flair == "increased":
            why = ": the T2/FLAIR disease is measured" if variant.component == "non_enhancing" or variant.mixed else ""
            parts.append(f"T2/FLAIR increased (not used by {variant.source}{why})")
        if variant.steroids != "ignored" and steroids != "unknown":
            at_baseline = f"{base_steroids:g} mg/day" if base_steroids is not None else "not recorded"
            parts.append(f"steroids {tp.clinical.steroid_dose_mg:g} mg/day vs {at_baseline} at baseline ({steroids.replace('_', ' ')})")
        if variant.use_clinical and clinical == "deteriorated":
            parts.append("clinical deterioration")
        if variant.mixed:
            parts.append(f"in parallel: enhancing {track_calls[0]}, non-enhancing {track_calls[1]}; combined "
                         f"({variant.source}): {track_calls[0]} + {track_calls[1]} = {call}")
        text = "; ".join(parts)
        imaging_triggers = [t for t in triggers if t != "clinical"]
        clinical_pd = "clinical" in triggers
        confirmation = None
        if steroids == "increased" and variant.steroids != "ignored":
            flags.append("steroid_increase")
        # --- an open episode is resolved first
        if episode is not None:
            weeks = weeks_between(episode.start_date, tp.date)
            grew = any(r.burden.total > ref and pct_change(r.burden.total, ref) >= r.track.pd_pct - EPS
                       for r, ref in zip(readings, episode.references))
            enhancement_persists = ("enhancement" in episode.triggers
                                    and tp.clinical.enhancement in ("new", "increased", "stable"))
            still = _still_progressed(grew, statuses, new, tp, variant, enhancement_persists=enhancement_persists)
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
                persists = (f"progression persists vs {_references_text(episode, readings, unit)}" if still else
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
            references = tuple(r.reference for r in readings)
            if variant.rt_window == "hold" and in_window and not pseudoprogression_window_exempt(tp):
                call = held_call(inputs, variant)
                episode = _Episode([row_index], tp.date, references, "hold", set(imaging_triggers), set(present_ids))
                text += (f"; progression ({', '.join(imaging_triggers)}) within {window_weeks:g} weeks after radiotherapy "
                         f"({rt_end}) without enhancement outside the radiation field or histology: not PD -> {call}")
            elif why is not None:
                call = PRELIMINARY_PD
                confirmation = "pending"
                episode = _Episode([row_index], tp.date, references, "preliminary", set(imaging_triggers), set(present_ids))
                text += f"; progression ({', '.join(imaging_triggers)}), {why}: needs a confirmation scan -> preliminary PD"
            else:
                exempt = " (outside the radiation field / histology)" if in_window and pseudoprogression_window_exempt(tp) else ""
                text += f" -> PD ({', '.join(imaging_triggers)}){exempt}"
        elif call == PD:
            text += " -> PD (clinical deterioration)"
        elif (call == NE and steroids == "increased" and variant.steroids == "full"
              and all(r.measurable != "NE" for r in readings) and non_measurable != "NE"):
            steroid_hold.append(row_index)
            text += "; stable imaging on a higher steroid dose: neither SD nor PD until the dose returns to baseline -> NE"
        else:
            text += f" -> {call}"
        if call in (PD, CONFIRMED_PD):
            progressed = True
        if call == PD and clinical_pd and steroid_hold:
            text += f" (dated to the steroid increase of {rows[steroid_hold[0]]['date']})"
            steroid_hold = []
        if call in (SD, MR, PR, CR) and steroid_hold and steroids != "increased":
            for index in steroid_hold:
                rows[index]["response"] = SD
                rows[index]["reason"] += f"; SD in hindsight: steroid dose back to baseline on {tp.date}"
            steroid_hold = []
        if any(not r.burden.complete and r.track.has_targets for r in readings):
            flags.append("targets_not_all_evaluated")
        if in_window and variant.rt_window != "none":
            flags.append("within_radiotherapy_window")
        has_targets = primary.has_targets
        row = dict(
            date=tp.date, days_since_baseline=prep.days_since_baseline(tp), response=call, flags=flags, reason=text,
            **sums(burden.total if has_targets else None),
            change_from_baseline_pct=finite_or_none(pct_change(burden.total, primary.base_total)) if has_targets and burden.complete else None,
            change_from_nadir_pct=finite_or_none(pct_change(burden.total, reference)) if has_targets and burden.complete else None,
            nadir=reference if has_targets else None, nadir_date=ref_date if has_targets else None,
            target_response=None if main.measurable == "NA" else main.measurable,
            non_target_response=None if non_measurable == "NA" else non_measurable,
            new_lesions=bool(present_new_lesions(tp)), confirmation=confirmation,
        )
        if variant.mixed:
            row["components"] = tuple(_component_row(reading, track_call) for reading, track_call in zip(readings, track_calls))
        rows.append(row)
        for reading in readings:
            if reading.burden.complete and reading.track.has_targets:
                reading.track.history.append((tp.date, reading.burden.total, dict(reading.burden.values)))
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
    with_mr = variant.mr_decrease_pct is not None or variant.mixed
    names = BorNames(CR, PR, SD, None, (PD, CONFIRMED_PD), (PRELIMINARY_PD,), mr=MR if with_mr else None)
    confirm_levels = options.ranolgg_confirm_responses if variant.name == "ranolgg" else None
    bor = best_overall_response(calls, baseline.date, options, names, confirm=options.confirm_responses,
                                confirm_levels=confirm_levels)
    return Assessment(course.patient_id, prep.criterion, baseline.date, results, bor)


def _component_row(reading: _Reading, call: str) -> ComponentAssessment:
    """One burden of a mixed tumour at a scan, for the output (RANO 2.0, Wen 2023)."""
    track, burden = reading.track, reading.burden
    measured = track.has_targets and burden.complete
    return ComponentAssessment(
        component=track.component,
        sum=burden.total if track.has_targets else None,
        change_from_baseline_pct=finite_or_none(pct_change(burden.total, track.base_total)) if measured else None,
        change_from_nadir_pct=finite_or_none(pct_change(burden.total, reading.reference)) if measured else None,
        nadir=reading.reference if track.has_targets else None,
        target_response=None if reading.measurable == "NA" else reading.measurable,
        response=call,
    )


def _references_text(episode: _Episode, readings: Sequence[_Reading], unit: str) -> str:
    """The references of an open preliminary PD, in words (one burden: its sum; a mixed tumour: each)."""
    if len(readings) == 1:
        return _fmt(episode.references[0], unit)
    return ", ".join(f"{r.track.label} {_fmt(ref, unit)}" for r, ref in zip(readings, episode.references) if r.track.has_targets)


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


def _still_progressed(grew: bool, statuses: Sequence[tuple[str, str]], new: Sequence[NewLesion], tp: Timepoint,
                      variant: RanoVariant, *, enhancement_persists: bool = False) -> bool:
    """Whether a follow-up still meets progression against the reference of the preliminary PD.

    mRANO (Ellingson 2017) and RANO 2.0 (Wen 2023): the preliminary PD is
    confirmed when the next scan still shows progression against the same
    reference (the increase persists or grows: ``grew``, for a mixed tumour in either burden);
    new lesions still present and unequivocal non-target progression count as persisting.
    RANO 2.0 for a non-enhancing tumour (reading): a preliminary PD from new or increased
    enhancement persists while enhancement is still there (``new``, ``increased`` or ``stable``);
    enhancement that has gone (``none``) does not.
    """
    if grew:
        return True
    if any(status == "unequivocal_progression" for _, status in statuses):
        return True
    if new:
        return True
    if variant.use_enhancement and enhancement_persists:
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
        return assess_rano_family(prep, options, variant_for(name, prep.course))

    run.__name__ = f"assess_{name}"
    run.__doc__ = f"Assess a prepared course by {variant.source}."
    return run


#: criterion name -> assessor, for the engine.
ASSESSORS: dict[str, Callable[[Prepared, AssessmentOptions], Assessment]] = {
    name: _assessor(name) for name in ("rano", "rano2", "mrano", "irano", "ranolgg")
}
assess_ranobm = _assessor("ranobm")
assess_ranolgg = ASSESSORS["ranolgg"]
