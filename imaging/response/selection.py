"""Measurability and target selection at baseline.

RECIST 1.1 (Eisenhauer 2009) sec. 3.1 (measurability) and sec. 4.2 (baseline
documentation of target and non-target lesions); the RANO family and irRC
change the size rule and the limits (see :data:`SELECTION_RULES`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from imaging.response.errors import CourseError
from imaging.response.models import TargetLesion

NODAL_ORGAN = "lymph node"


@dataclass(frozen=True)
class SelectionRule:
    """Limits of target selection for one criterion.

    Attributes
    ----------
    max_targets
        At most this many targets in total.
    max_per_organ
        At most this many per organ (``None``: no per-organ limit).
    bidimensional
        Measurability needs both the longest diameter and its perpendicular
        >= ``min_size_mm`` (RANO family, irRC).
    min_size_mm
        Smallest measurable diameter, mm.
    nodes_allowed
        Whether lymph nodes can be targets (RECIST-like criteria).
    min_perpendicular_mm
        Unidimensional criteria that still ask for a minimum perpendicular
        diameter (RANO-BM: >= 5 mm).
    source
        Where the rule comes from.
    """

    max_targets: int
    max_per_organ: int | None
    bidimensional: bool
    min_size_mm: float
    nodes_allowed: bool
    source: str
    min_perpendicular_mm: float | None = None


#: Selection rules per criterion, as data.
SELECTION_RULES: dict[str, SelectionRule] = {
    "recist": SelectionRule(5, 2, False, 10.0, True, "RECIST 1.1, Eisenhauer 2009, sec. 3.1 and 4.2"),
    "irecist": SelectionRule(5, 2, False, 10.0, True, "iRECIST, Seymour 2017 (RECIST 1.1 sec. 3.1 and 4.2)"),
    "rano": SelectionRule(5, None, True, 10.0, False, "RANO, Wen 2010 (measurable disease)"),
    "mrano": SelectionRule(5, None, True, 10.0, False, "mRANO, Ellingson 2017 (measurable disease)"),
    "irano": SelectionRule(5, None, True, 10.0, False, "iRANO, Okada 2015 (RANO measurable disease)"),
    "rano2": SelectionRule(3, None, True, 10.0, False, "RANO 2.0, Wen 2023 (up to 3 target lesions)"),
    # RANO-LGG measures the non-enhancing lesion on T2/FLAIR with RANO's bidimensional rule (both diameters >= 10 mm
    # on >= 2 slices); it sets no number of target lesions: RANO 2010's 5 is this engine's reading.
    "ranolgg": SelectionRule(5, None, True, 10.0, False,
                             "RANO-LGG, van den Bent 2011 (T2/FLAIR lesions, both diameters >= 10 mm; up to 5: reading)"),
    "ranobm": SelectionRule(5, None, False, 10.0, False, "RANO-BM, Lin 2015 (up to 5 CNS targets, >= 10 mm, perpendicular >= 5 mm)", 5.0),
    "irrc": SelectionRule(10, 5, True, 5.0, True, "irRC, Wolchok 2009 (index lesions >= 5 x 5 mm, 5 per organ, 10 in all)"),
}

#: RECIST 1.1 sec. 3.1: lymph-node short-axis bounds, mm.
NODE_MEASURABLE_MIN_MM = 15.0
NODE_PATHOLOGICAL_MIN_MM = 10.0
#: RECIST 1.1 sec. 3.1: slices thicker than this double the minimum size.
SLICE_THICKNESS_LIMIT_MM = 5.0


@dataclass(frozen=True)
class TargetSelection:
    """Outcome of target selection at baseline.

    Attributes
    ----------
    targets
        The targets, largest first when selected by the engine, as given otherwise.
    non_targets
        Lesions given as targets that became non-targets (followed as present /
        absent from their measurements), with the reason for each.
    normal
        Lymph nodes < 10 mm short axis: normal, not followed.
    kept_as_given
        ``True`` when the given targets already satisfied the rules.
    notes
        What was changed and why, one sentence each.
    """

    targets: tuple[TargetLesion, ...]
    non_targets: tuple[tuple[TargetLesion, str], ...]
    normal: tuple[TargetLesion, ...]
    kept_as_given: bool
    notes: tuple[str, ...]


def minimum_measurable_mm(slice_thickness_mm: float | None, min_size_mm: float = 10.0) -> float:
    """Smallest measurable longest diameter, mm.

    RECIST 1.1, Eisenhauer 2009, sec. 3.1: >= 10 mm on CT with slices <= 5 mm;
    with thicker slices, >= twice the slice thickness.

    Parameters
    ----------
    slice_thickness_mm
        Reconstructed slice thickness of the baseline scan, mm (``None``: unknown, taken as <= 5 mm).
    min_size_mm
        The criterion's minimum size, mm.
    """
    if slice_thickness_mm is not None and slice_thickness_mm > SLICE_THICKNESS_LIMIT_MM:
        return max(min_size_mm, 2.0 * slice_thickness_mm)
    return min_size_mm


def lesion_size_key(lesion: TargetLesion, rule: SelectionRule) -> float:
    """Size used to rank candidates: short axis for nodes, long axis, or the product when bidimensional."""
    if lesion.nodal and rule.nodes_allowed and not rule.bidimensional:
        return lesion.short_axis_mm or 0.0
    if rule.bidimensional:
        if lesion.long_axis_mm is None and lesion.perpendicular_mm is None and lesion.volume_mm3 is not None:
            return lesion.volume_mm3 ** (2.0 / 3.0)  # measured by volume alone: ranked by its sphere's cross-section
        return (lesion.long_axis_mm or 0.0) * (lesion.perpendicular_mm or 0.0)
    return lesion.long_axis_mm or 0.0


#: Volumetric option of RANO 2.0 / mRANO, a lesion measured by its volume alone: the volume of a sphere of the
#: 10 mm minimum diameter (the sphere-equivalence the criteria use for volumes, criteria.md), mm3.
MIN_MEASURABLE_VOLUME_MM3 = math.pi / 6.0 * 10.0**3


def measurability(lesion: TargetLesion, *, slice_thickness_mm: float | None = None, criterion: str = "recist",
                  volumetric: bool = False) -> tuple[str, str]:
    """Classify a baseline lesion as ``"measurable"``, ``"non_measurable"`` or ``"normal"``.

    RECIST 1.1, Eisenhauer 2009, sec. 3.1: non-nodal lesions >= 10 mm (or 2x
    slice thickness > 5 mm); nodes by short axis: >= 15 mm measurable, 10 to
    < 15 mm pathological (non-target), < 10 mm normal. RANO (Wen 2010): two
    perpendicular diameters each >= 10 mm. irRC (Wolchok 2009): >= 5 x 5 mm.
    ``volumetric`` (RANO 2.0, Wen 2023, and mRANO, Ellingson 2017, volumetric options): a lesion
    measured by its volume alone (no diameter: a volume-only report) is measurable when its volume
    is at least that of a sphere of the 10 mm minimum diameter (:data:`MIN_MEASURABLE_VOLUME_MM3`).

    Returns
    -------
    (category, reason)
    """
    rule = _rule(criterion)
    name = lesion.lesion
    if lesion.coalesced_into is not None or lesion.split_from is not None:
        return "non_measurable", f"{name}: split/coalesced at baseline"
    if lesion.too_small_to_measure:
        return "non_measurable", f"{name}: too small to measure"
    if lesion.nodal and rule.nodes_allowed and not rule.bidimensional:
        short = lesion.short_axis_mm
        if short is None:
            return "non_measurable", f"{name}: node without short axis"
        if short >= NODE_MEASURABLE_MIN_MM:
            return "measurable", f"{name}: node {short:.1f} mm short axis"
        if short >= NODE_PATHOLOGICAL_MIN_MM:
            return "non_measurable", f"{name}: node {short:.1f} mm short axis (10-15 mm, pathological, non-target)"
        return "normal", f"{name}: node {short:.1f} mm short axis (< 10 mm, normal)"
    minimum = minimum_measurable_mm(slice_thickness_mm, rule.min_size_mm)
    long_axis = lesion.long_axis_mm
    if volumetric and long_axis is None and lesion.perpendicular_mm is None and lesion.volume_mm3 is not None:
        if lesion.volume_mm3 >= MIN_MEASURABLE_VOLUME_MM3:
            return "measurable", f"{name}: {lesion.volume_mm3:.0f} mm3 measured by volume (volumetric option)"
        return "non_measurable", (f"{name}: {lesion.volume_mm3:.0f} mm3 < {MIN_MEASURABLE_VOLUME_MM3:.0f} mm3 "
                                  "(a 10 mm sphere)")
    if long_axis is None:
        return "non_measurable", f"{name}: not measured"
    if long_axis < minimum:
        return "non_measurable", f"{name}: {long_axis:.1f} mm < {minimum:.1f} mm"
    if rule.bidimensional:
        perpendicular = lesion.perpendicular_mm
        if perpendicular is None:
            return "non_measurable", f"{name}: perpendicular diameter missing"
        if perpendicular < minimum:
            return "non_measurable", f"{name}: perpendicular {perpendicular:.1f} mm < {minimum:.1f} mm"
    if rule.min_perpendicular_mm is not None and lesion.perpendicular_mm is not None \
            and lesion.perpendicular_mm < rule.min_perpendicular_mm:
        return "non_measurable", f"{name}: perpendicular {lesion.perpendicular_mm:.1f} mm < {rule.min_perpendicular_mm:.1f} mm"
    return "measurable", f"{name}: measurable"


def select_targets(
    lesions: Iterable[TargetLesion], *, slice_thickness_mm: float | None = None, criterion: str = "recist",
    volumetric: bool = False,
) -> TargetSelection:
    """Choose the baseline targets among measured lesions.

    RECIST 1.1, Eisenhauer 2009, sec. 4.2: at most 5 targets, at most 2 per
    organ, chosen by size (largest first); all lymph nodes together count as
    one organ (RECIST working group FAQ); pathological nodes 10 to < 15 mm and
    non-measurable lesions are non-targets; nodes < 10 mm are normal. The
    limits of the other criteria are in :data:`SELECTION_RULES`.

    When every given lesion is measurable and the limits hold, the lesions are
    kept as given. Otherwise the largest measurable lesions are chosen (ties
    keep input order) and the rest become non-targets.

    Lesions without an organ (or with organ "unknown") are not subject to the
    per-organ limit (noted in the reason).

    Parameters
    ----------
    lesions
        Baseline lesions (as ``TargetLesion`` entries, all measured lesions).
    slice_thickness_mm
        Baseline slice thickness, mm.
    criterion
        One of :data:`imaging.response.CRITERIA`.
    """
    rule = _rule(criterion)
    lesions = tuple(lesions)
    measurable: list[TargetLesion] = []
    non_targets: list[tuple[TargetLesion, str]] = []
    normal: list[TargetLesion] = []
    notes: list[str] = []
    for lesion in lesions:
        category, why = measurability(lesion, slice_thickness_mm=slice_thickness_mm, criterion=criterion,
                                      volumetric=volumetric)
        if category == "measurable":
            measurable.append(lesion)
        elif category == "normal":
            normal.append(lesion)
            notes.append(f"{why}: not followed")
        else:
            non_targets.append((lesion, why))
            notes.append(f"{why}: non-target")
    ranked = sorted(enumerate(measurable), key=lambda item: (-lesion_size_key(item[1], rule), item[0]))
    chosen: list[tuple[int, TargetLesion]] = []
    per_organ: dict[str, int] = {}
    no_organ: list[str] = []
    for position, lesion in ranked:
        organ = _organ(lesion)
        if organ is None:
            no_organ.append(lesion.lesion)
        if len(chosen) >= rule.max_targets:
            non_targets.append((lesion, f"{lesion.lesion}: beyond {rule.max_targets} targets"))
            notes.append(f"{lesion.lesion}: beyond the {rule.max_targets}-target limit: non-target")
            continue
        if organ is not None and rule.max_per_organ is not None and per_organ.get(organ, 0) >= rule.max_per_organ:
            non_targets.append((lesion, f"{lesion.lesion}: beyond {rule.max_per_organ} in {organ}"))
            notes.append(f"{lesion.lesion}: beyond {rule.max_per_organ} targets in {organ}: non-target")
            continue
        if organ is not None:
            per_organ[organ] = per_organ.get(organ, 0) + 1
        chosen.append((position, lesion))
    kept_as_given = not non_targets and not normal
    if kept_as_given:
        targets = tuple(lesion for _, lesion in sorted(chosen))
    else:
        targets = tuple(lesion for _, lesion in chosen)
    if no_organ and rule.max_per_organ is not None:
        notes.append(f"organ not given for {', '.join(no_organ)}: per-organ limit not applied to them")
    return TargetSelection(targets, tuple(non_targets), tuple(normal), kept_as_given, tuple(notes))


#: Organ values that mean "not given" (the pipeline writes "unknown" when it has no metadata).
UNKNOWN_ORGANS = frozenset({"", "unknown", "unspecified", "none", "na", "n/a"})


def _organ(lesion: TargetLesion) -> str | None:
    if lesion.nodal:
        return NODAL_ORGAN
    organ = (lesion.organ or "").strip().lower()
    return None if organ in UNKNOWN_ORGANS else organ


def _rule(criterion: str) -> SelectionRule:
    try:
        return SELECTION_RULES[criterion]
    except KeyError:
        raise CourseError(
            f"unknown criterion {criterion!r}; valid: {', '.join(SELECTION_RULES)}", field="criterion"
        ) from None
