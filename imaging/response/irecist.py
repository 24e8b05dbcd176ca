"""iRECIST (Seymour et al., Lancet Oncol 2017;18:e143-52), on top of RECIST 1.1.

The first RECIST 1.1 progression is unconfirmed (iUPD); the next assessment
confirms it (iCPD), keeps it open (still iUPD) or refutes it (iSD/iPR/iCR,
resetting the bar). New lesions are followed as new-lesion targets (NLT) and
non-targets (NLNT), apart from the sum of diameters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from imaging.response.bor import BorNames, best_overall_response
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
    Prepared,
    apply_episode_outcomes,
    finite_or_none,
    fmt_delta,
    fmt_mm,
    not_measured_note,
    present_new_lesions,
    unmeasured_new_lesions,
    weeks_between,
)
from imaging.response.growth import hyperprogression_check
from imaging.response.models import NewLesion, Timepoint
from imaging.response.options import AssessmentOptions
from imaging.response.recist import (
    RecistState,
    advance_state,
    baseline_reason,
    overall_response_recist,
    pre_baseline_row,
    progression_by_sum,
    read_timepoint_recist,
    reappearance_after_cr,
    sum_of_diameters,
)
from imaging.response.result import Assessment, TimepointAssessment
from imaging.response.selection import NODE_MEASURABLE_MIN_MM

ICR, IPR, ISD, IUPD, ICPD, INN = "iCR", "iPR", "iSD", "iUPD", "iCPD", "iNN"

#: RECIST 1.1 call -> iRECIST call (Seymour 2017, Table 2: same categories with an "i").
I_NAMES: dict[str, str] = {CR: ICR, PR: IPR, SD: ISD, PD: IUPD, NE: NE, NON_CR_NON_PD: INN, NA: NA}

IRECIST_NAMES = BorNames(ICR, IPR, ISD, INN, (ICPD,), (IUPD,))

#: iRECIST: NLT limits (Seymour 2017: up to 5 new-lesion targets, at most 2 per organ).
NLT_MAX, NLT_MAX_PER_ORGAN = 5, 2
#: iRECIST: a further increase of >= 5 mm (target sum or NLT sum) confirms iCPD.
ICPD_INCREASE_MM = 5.0
#: RECIST 1.1 sec. 3.1, applied to new lesions to pick NLTs when ``measurable`` is not given.
NEW_LESION_MEASURABLE_MM = 10.0


# --------------------------------------------------------------------------- new-lesion bookkeeping


def new_lesion_is_measurable(lesion: NewLesion) -> bool | None:
    """Whether a new lesion can be a new-lesion target (NLT); ``None`` while that cannot be told.

    iRECIST, Seymour 2017 ("new lesions ... measurable by RECIST 1.1 size
    rules"): the reader's ``measurable`` when given, else >= 10 mm longest
    diameter (nodes: >= 15 mm short axis). A lesion listed without the
    diameter the rule needs is not evaluated, never 0 mm (RECIST 1.1 sec.
    4.4.2): ``None``, and the lesion waits for its first measurement to be
    sorted into NLT or NLNT. Exception: ``status: increase`` is defined for
    non-measurable new lesions (course-format.md), so such a lesion is NLNT.
    """
    if lesion.measurable is not None:
        return lesion.measurable
    size = lesion.short_axis_mm if lesion.nodal else lesion.long_axis_mm
    if size is None:
        return False if lesion.status == "increase" else None
    return size >= (NODE_MEASURABLE_MIN_MM if lesion.nodal else NEW_LESION_MEASURABLE_MM)


def new_lesion_size_mm(lesion: NewLesion) -> float | None:
    """Diameter of a new lesion for the NLT sum: short axis of nodes, else longest diameter."""
    if lesion.nodal and lesion.short_axis_mm is not None:
        return lesion.short_axis_mm
    return lesion.long_axis_mm


def assign_new_lesion_targets(
    appearing: Sequence[NewLesion], nlt: dict[str, str | None], nlnt: set[str]
) -> tuple[list[str], list[str], list[str]]:
    """Sort new lesions into NLT and NLNT, updating ``nlt`` (id -> organ) and ``nlnt``.

    iRECIST, Seymour 2017: measurable new lesions become new-lesion targets,
    up to 5 in all and 2 per organ (largest first, nodes one organ); the others
    are new-lesion non-targets. A lesion whose measurability cannot be told yet
    (listed without a diameter, :func:`new_lesion_is_measurable` ``None``) is
    left unsorted until it is measured.

    Returns
    -------
    (added NLT, added NLNT, still unsorted)
    """
    added_t: list[str] = []
    added_nt: list[str] = []
    pending: list[str] = []
    ranked = sorted(appearing, key=lambda lesion: -(new_lesion_size_mm(lesion) or 0.0))
    for lesion in ranked:
        measurable = new_lesion_is_measurable(lesion)
        if measurable is None:
            pending.append(lesion.lesion)
            continue
        organ = "lymph node" if lesion.nodal else (lesion.organ or "").strip().lower() or None
        per_organ = sum(1 for o in nlt.values() if o is not None and o == organ)
        if measurable and len(nlt) < NLT_MAX and (organ is None or per_organ < NLT_MAX_PER_ORGAN):
            nlt[lesion.lesion] = organ
            added_t.append(lesion.lesion)
        else:
            nlnt.add(lesion.lesion)
            added_nt.append(lesion.lesion)
    return added_t, added_nt, pending


@dataclass(frozen=True)
class NltSum:
    """The new-lesion-target sum at one scan.

    Attributes
    ----------
    total
        Sum over the NLTs measured at this scan, mm (an NLT no longer listed has resolved: 0).
    missing
        NLTs listed at this scan without a diameter: not evaluated, never 0 mm.
    """

    total: float
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.missing


def new_lesion_target_sum_mm(tp: Timepoint, nlt_ids: Sequence[str]) -> NltSum:
    """Sum of diameters of the new-lesion targets at a scan (kept apart from the SOD), mm.

    iRECIST, Seymour 2017. An NLT no longer listed counts 0 (resolved). One
    listed without a diameter is not evaluated: it is left out of ``total`` and
    named in ``missing``, and the sum is then not evaluable as a whole -- the
    RECIST 1.1 rule for targets (Eisenhauer 2009, sec. 4.4.2; the digest's
    sec. 4.3.3) applied to the NLT sum: it does not become the NLT nadir, and
    progression is called from it only when the measured NLTs alone meet it.
    """
    by_id = {lesion.lesion: lesion for lesion in tp.new_lesions}
    total = 0.0
    missing: list[str] = []
    for lesion_id in nlt_ids:
        lesion = by_id.get(lesion_id)
        if lesion is None:
            continue
        size = new_lesion_size_mm(lesion)
        if size is None:
            missing.append(lesion_id)
            continue
        total += size
    return NltSum(total, tuple(missing))


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Episode:
    """An open iUPD: the categories in iUPD and the reference values to confirm it against.

    Attributes
    ----------
    start_row, start_date
        Row and date of the first iUPD of the episode (the confirmation window runs from it).
    last_date
        Date of the latest assessment of the episode.
    sum_mm
        SOD at the iUPD (for "further shrinkage of the baseline disease", :func:`still_iupd`).
    target_sum_mm
        SOD when the targets became iUPD, the reference of the +5 mm route.
    nlt_sum_mm
        NLT sum at the iUPD, the reference of the NLT +5 mm route.
    causes
        Categories in iUPD: those of the first iUPD, and those that reached RECIST 1.1 PD at a later,
        unconfirming assessment of the episode (Seymour 2017, Table 2, "previous iUPD in any category":
        a category that is iUPD is confirmed by its further increase).
    rows
        Rows of the unconfirmed time points of the episode.

    A reference is ``None`` while it is not evaluable -- a target or NLT not measured at that assessment
    (RECIST 1.1 sec. 4.4.2: a partial sum is not the sum), or the NLT set changed since; the first
    evaluable value later in the episode then becomes the reference.
    """

    start_row: int
    start_date: dt.date
    last_date: dt.date
    sum_mm: float | None
    nlt_sum_mm: float | None
    causes: frozenset[str]
    rows: tuple[int, ...]
    target_sum_mm: float | None = None


def confirm_iupd(
    episode: Episode,
    *,
    sum_mm: float,
    target_pd: bool,
    non_target_statuses: Sequence[tuple[str, str]],
    non_target_pd: bool,
    nlt_sum_mm: float | None,
    nlnt_increase: Sequence[str],
    additional_new: Sequence[str],
    weeks_since_iupd: float,
    min_weeks: float,
    sum_missing: Sequence[str] = (),
    nlt_missing: Sequence[str] = (),
) -> tuple[bool, list[str], str | None]:
    """Whether the assessment after an iUPD confirms it (iCPD).

    iRECIST, Seymour 2017, Table 2 and "Confirmation of progression": iCPD
    when, compared with the iUPD assessment, the target sum has grown a
    further >= 5 mm (increases are cumulative: iRECIST FAQ); non-target disease
    that was iUPD has grown further (need not be unequivocal: status
    ``increase``); the NLT sum has grown >= 5 mm; any NLNT has grown; any
    additional new lesion has appeared; or a category that had not progressed
    now meets RECIST 1.1 PD. A scan less than ``min_weeks`` after the iUPD
    cannot confirm it except by an additional new lesion (iRECIST FAQ).
    ``sum_mm`` is the SOD of the targets measured at this scan: with a target
    not measured the +5 mm route holds only if the measured ones alone meet it
    (RECIST 1.1 sec. 4.4.2), and it is tested only against an evaluable SOD of
    the iUPD (``episode.target_sum_mm``). ``nlt_sum_mm`` is the sum of the NLTs measured at this scan (``None`` when
    the NLT set changed at this scan and no comparison holds); with an NLT not
    measured, the +5 mm route holds only if the measured NLTs alone meet it,
    and without an evaluable NLT sum at the iUPD the route cannot be tested.

    Returns
    -------
    (confirmed, routes, note)
        The routes met, in words, and a note when the scan was too early.
    """
    routes: list[str] = []
    if "target" in episode.causes:
        reference = episode.target_sum_mm
        if reference is not None and sum_mm >= reference + ICPD_INCREASE_MM - EPS:
            routes.append(f"SOD {fmt_mm(sum_mm)} vs {fmt_mm(reference)} at iUPD: {fmt_delta(sum_mm - reference)} (>= +5 mm"
                          + (f", the measured targets alone; {', '.join(sum_missing)} not measured" if sum_missing else "") + ")")
    elif target_pd:
        routes.append("targets now meet RECIST 1.1 PD")
    if "non_target" in episode.causes:
        grown = [lesion for lesion, status in non_target_statuses if status == "increase"]
        if grown:
            routes.append(f"further increase of non-target disease ({', '.join(grown)})")
    elif non_target_pd:
        routes.append("non-targets now show unequivocal progression")
    if (nlt_sum_mm is not None and episode.nlt_sum_mm is not None
            and nlt_sum_mm >= episode.nlt_sum_mm + ICPD_INCREASE_MM - EPS and nlt_sum_mm > 0):
        routes.append(f"NLT sum {fmt_mm(nlt_sum_mm)} vs {fmt_mm(episode.nlt_sum_mm)} at iUPD (>= +5 mm"
                      + (f", the measured NLTs alone; {', '.join(nlt_missing)} not measured" if nlt_missing else "") + ")")
    if nlnt_increase:
        routes.append(f"new-lesion non-target increase ({', '.join(nlnt_increase)})")
    early_routes = list(routes)
    if additional_new:
        routes.append(f"additional new lesion(s) {', '.join(additional_new)}")
    if weeks_since_iupd < min_weeks - EPS and not additional_new:
        if early_routes:
            return False, [], (f"{weeks_since_iupd:.1f} weeks after the iUPD (< {min_weeks:g}): too early to confirm "
                               f"without an additional new lesion ({'; '.join(early_routes)})")
        return False, [], None
    return bool(routes), routes, None


def carry_episode(
    episode: Episode, date: dt.date, *, sod: float | None, target_pd: bool, non_target_pd: bool,
    nlt_sum_mm: float | None, nlt_set_changed: bool,
) -> Episode:
    """The episode after an assessment that neither confirmed nor refuted it.

    iRECIST, Seymour 2017, Table 2 ("previous iUPD in any category"): a category that meets RECIST 1.1 PD
    at such an assessment (one too early to confirm: iRECIST FAQ) is iUPD from then on; its further increase
    confirms iCPD -- for the targets, +5 mm from the SOD of that assessment. References not evaluable so far
    (``None``: a lesion not measured) are taken from the first evaluable value (``sod``, ``nlt_sum_mm``; None
    when not evaluable here); the NLT reference restarts when the NLT set changed (an NLT measured for the
    first time).
    """
    causes = set(episode.causes)
    target_sum = episode.target_sum_mm
    if "target" not in causes and target_pd:
        causes.add("target")
        target_sum = sod
    elif "target" in causes and target_sum is None:
        target_sum = sod
    if non_target_pd:
        causes.add("non_target")
    nlt_reference = episode.nlt_sum_mm
    if nlt_set_changed or nlt_reference is None:
        nlt_reference = nlt_sum_mm
    return replace(episode, last_date=date, sum_mm=episode.sum_mm if episode.sum_mm is not None else sod,
                   nlt_sum_mm=nlt_reference, causes=frozenset(causes), target_sum_mm=target_sum)


def confirmation_interval_weeks(episode: Episode, date: dt.date) -> tuple[float, dt.date]:
    """Weeks from the first iUPD of the open episode to an assessment, and that iUPD's date.

    iRECIST, Seymour 2017 ("Confirmation of progression": the next assessment
    4-8 weeks **after iUPD**) and the EORTC iRECIST FAQ ("scans done prior to
    4 weeks after 1st iUPD ... should be repeated to fulfill the requirement of
    4-8 weeks after the initial iUPD"): the interval runs from the episode's
    first iUPD, not from the previous assessment, however many still-iUPD or NE
    assessments came in between. Outside ``irecist_confirm_window_weeks`` the
    assessment is flagged ``confirmation_interval_outside_window``.
    """
    return weeks_between(episode.start_date, date), episode.start_date


def still_iupd(
    episode: Episode,
    *,
    target_pd: bool,
    non_target_pd: bool,
    new_present: bool,
    sum_mm: float | None,
    complete: bool,
) -> str | None:
    """Why an unconfirmed iUPD stays iUPD (``None`` when the bar resets).

    iRECIST, Seymour 2017, Table 2 (column "previous iUPD"): the time point
    remains iUPD while a category still meets progression; new lesions that
    caused the iUPD and have not grown keep it iUPD unless the baseline
    disease has shrunk further since the iUPD (EORTC iRECIST FAQ on
    scenario B of the paper: "appearance of a new lesion does not preclude the
    next assessment being iPR because of further shrinkage").
    """
    reasons: list[str] = []
    if target_pd:
        reasons.append("targets still meet PD vs nadir")
    if non_target_pd:
        reasons.append("non-targets still unequivocally progressed")
    if new_present:
        shrunk = (complete and sum_mm is not None and episode.sum_mm is not None and sum_mm < episode.sum_mm - EPS)
        if not shrunk:
            reasons.append("new lesions still present without further shrinkage of the baseline disease")
    return "; ".join(reasons) if reasons else None


def iupd_causes(*, target_pd: bool, non_target_pd: bool, new_pd: bool, reappeared: bool) -> frozenset[str]:
    """Categories that make a time point iUPD (RECIST 1.1 PD in each; Seymour 2017, Table 2)."""
    causes = set()
    if target_pd:
        causes.add("target")
    if non_target_pd:
        causes.add("non_target")
    if new_pd:
        causes.add("new")
    if reappeared:
        causes.add("reappearance")
    return frozenset(causes)


# --------------------------------------------------------------------------- whole course


@dataclass
class _NewLesionState:
    seen: set[str] = field(default_factory=set)
    nlt: dict[str, str | None] = field(default_factory=dict)
    nlnt: set[str] = field(default_factory=set)
    #: New lesions not sorted into NLT/NLNT yet: listed without a diameter since they appeared.
    unsorted: set[str] = field(default_factory=set)
    #: Smallest evaluable NLT sum since the NLT set last changed; ``None`` until one is evaluable.
    nlt_nadir_mm: float | None = None


def _unmeasured_consequence(unmeasured: Sequence[str], news: _NewLesionState) -> str:
    """What an unmeasured new lesion means for iRECIST, by its category (NLT, NLNT, not sorted yet)."""
    parts: list[str] = []
    in_nlt = [lid for lid in unmeasured if lid in news.nlt]
    unsorted = [lid for lid in unmeasured if lid in news.unsorted]
    in_nlnt = [lid for lid in unmeasured if lid in news.nlnt]
    if in_nlt:
        parts.append(f"NLT {', '.join(in_nlt)}: NLT sum not evaluable, not the NLT nadir")
    if unsorted:
        parts.append(f"{', '.join(unsorted)}: NLT or NLNT decided when first measured")
    if in_nlnt:
        parts.append(f"NLNT {', '.join(in_nlnt)}: size not used")
    return "; ".join(parts)


def assess_irecist(prep: Prepared, options: AssessmentOptions) -> Assessment:
    """Assess a prepared course by iRECIST (Seymour 2017).

    Time-point calls by Table 2 of the paper with the confirmation rules of
    the text and the iRECIST FAQ; iBOR with the RECIST 1.1 confirmation and
    SD-duration rules, an unconfirmed iUPD not counting as progression.
    Flags with hindsight: ``possible_pseudoprogression``,
    ``pseudoprogression_confirmed``, ``progression_confirmed`` on the iUPD
    time points; ``clinically_unstable``; ``confirmation_interval_outside_window``
    (interval from the first iUPD of the episode: :func:`confirmation_interval_weeks`);
    ``new_lesion_not_measured`` (a new lesion listed without a diameter: never 0 mm,
    :func:`new_lesion_target_sum_mm`); ``hyperprogression`` at the first assessment.
    """
    course = prep.course
    rows: list[dict] = []
    for tp in course.timepoints[: prep.baseline_index]:
        pre = pre_baseline_row(prep, tp).__dict__
        rows.append({**pre, "flags": list(pre["flags"])})
    baseline = prep.baseline
    base_sum = sum_of_diameters(baseline, prep.targets).total
    has_targets = bool(prep.targets)
    rows.append(dict(
        date=baseline.date, days_since_baseline=0, response=None, flags=["baseline"],
        reason=baseline_reason(prep, "SOD", base_sum if has_targets else None),
        sum_mm=base_sum if has_targets else None,
        nadir=base_sum if has_targets else None, nadir_date=baseline.date if has_targets else None,
    ))
    state = RecistState(base_sum, base_sum, baseline.date)
    news = _NewLesionState()
    episode: Episode | None = None
    episodes: list[tuple[tuple[int, ...], str]] = []  # (rows of iUPD calls, outcome)
    confirmed_on: dt.date | None = None
    had_icr = False
    low, high = options.irecist_confirm_window_weeks
    first = True
    for tp in course.timepoints[prep.baseline_index + 1:]:
        row_index = len(rows)
        flags: list[str] = []
        reading = read_timepoint_recist(prep, tp, state, AssessmentOptions(reappearance_after_cr_is_pd=False))
        burden = reading.burden
        present = list(present_new_lesions(tp))
        appearing = [lesion for lesion in present if lesion.lesion not in news.seen]
        sorting = appearing + [lesion for lesion in present if lesion.lesion in news.unsorted]
        added_t, added_nt, unsorted = assign_new_lesion_targets(sorting, news.nlt, news.nlnt)
        first_measured = [lid for lid in added_t + added_nt if lid in news.unsorted]
        news.unsorted.difference_update(added_t + added_nt)
        news.unsorted.update(unsorted)
        nlt = new_lesion_target_sum_mm(tp, list(news.nlt))
        nlt_sum = nlt.total
        by_id = {lesion.lesion: lesion for lesion in present}
        nlnt_increase = [lid for lid in sorted(news.nlnt) if lid not in added_nt and lid in by_id and by_id[lid].status == "increase"]
        # With an NLT not measured the sum is partial: PD from it stands only because the measured NLTs alone meet it.
        nlt_pd = bool(news.nlt) and news.nlt_nadir_mm is not None and not added_t and progression_by_sum(nlt_sum, news.nlt_nadir_mm)
        unmeasured = unmeasured_new_lesions(tp)
        if unmeasured:
            flags.append(NEW_LESION_NOT_MEASURED)
        target_pd = reading.target_response == PD
        nt_pd = reading.non_target_response == PD
        additional = [lesion.lesion for lesion in appearing]
        reappeared = reappearance_after_cr(had_icr, dict(burden.values), prep.targets, reading.statuses)
        new_parts: list[str] = []
        if additional:
            new_parts.append(f"new lesion(s) {', '.join(additional)}"
                             + (f" (NLT {', '.join(added_t)})" if added_t else "")
                             + (f" (NLNT {', '.join(added_nt)})" if added_nt else ""))
        if first_measured:
            new_parts.append(f"{', '.join(first_measured)} measured for the first time: "
                             + ", ".join(f"{lid} {'NLT' if lid in news.nlt else 'NLNT'}" for lid in first_measured))
        if unmeasured:
            new_parts.append(not_measured_note(unmeasured, _unmeasured_consequence(unmeasured, news)))
        if news.nlt and nlt.complete:
            new_parts.append(f"NLT sum {fmt_mm(nlt_sum)}")
        elif news.nlt:
            new_parts.append(f"NLT sum not evaluable ({', '.join(nlt.missing)} not measured; measured NLTs {fmt_mm(nlt_sum)}"
                             + ("" if nlt_pd else ", not PD on their own, as RECIST 1.1 sec. 4.4.2 for targets") + ")")
        if nlnt_increase:
            new_parts.append(f"NLNT increase ({', '.join(nlnt_increase)})")
        if nlt_pd and nlt.complete:
            new_parts.append(f"NLT sum meets PD vs its nadir {fmt_mm(news.nlt_nadir_mm or 0.0)}")
        elif nlt_pd:
            new_parts.append(f"but the sum of the measured NLTs alone meets PD vs its nadir {fmt_mm(news.nlt_nadir_mm or 0.0)} "
                             "(PD from the measured ones alone stands, as RECIST 1.1 sec. 4.4.2 for targets)")
        known_present = [lesion.lesion for lesion in present if lesion.lesion not in additional]
        if known_present and not additional:
            new_parts.append(f"known new lesion(s) {', '.join(known_present)} present")
        new_text = "; ".join(new_parts) if new_parts else "no new lesions"
        components = f"{reading.target_reason}; {reading.non_target_reason}; {new_text}"
        t_i = I_NAMES[reading.target_response]
        nt_i = I_NAMES[reading.non_target_response]
        interval_weeks = None
        interval_from: dt.date | None = None
        confirmation = None
        if episode is not None:
            interval_weeks, interval_from = confirmation_interval_weeks(episode, tp.date)
            if not (low - EPS <= interval_weeks <= high + EPS):
                flags.append("confirmation_interval_outside_window")
        if episode is None and confirmed_on is None:
            new_pd = bool(additional) or nlt_pd or bool(nlnt_increase)
            causes = iupd_causes(target_pd=target_pd, non_target_pd=nt_pd, new_pd=new_pd, reappeared=bool(reappeared))
            if causes:
                call = IUPD
                why = f"{components}" + (f"; {reappeared}" if reappeared else "") + " -> iUPD (unconfirmed progression; confirm at the next assessment, 4-8 weeks)"
                sod = burden.total if has_targets and burden.complete else None
                episode = Episode(row_index, tp.date, tp.date, sod, nlt_sum if nlt.complete else None, causes,
                                  (row_index,), target_sum_mm=sod if "target" in causes else None)
                confirmation = "pending"
            else:
                recist_call = overall_response_recist(reading.target_response, reading.non_target_response, False)
                if recist_call == CR and known_present:
                    recist_call = PR
                call = I_NAMES[recist_call]
                why = f"{components} -> {call}"
        elif episode is not None:
            weeks_since = weeks_between(episode.start_date, tp.date)
            ok, routes, early = confirm_iupd(
                episode, sum_mm=burden.total, target_pd=target_pd, non_target_statuses=reading.statuses,
                non_target_pd=nt_pd, nlt_sum_mm=None if added_t else nlt_sum, nlnt_increase=nlnt_increase,
                additional_new=additional, sum_missing=burden.missing, nlt_missing=nlt.missing,
                weeks_since_iupd=weeks_since, min_weeks=low,
            )
            since = f"iUPD of {episode.start_date}"
            if ok:
                call = ICPD
                why = f"{components}; {since} confirmed: {'; '.join(routes)} -> iCPD"
                episodes.append((episode.rows, "confirmed"))
                confirmed_on = tp.date
                episode = None
                confirmation = "confirms"
            else:
                still = still_iupd(
                    episode, target_pd=target_pd, non_target_pd=nt_pd, new_present=bool(present),
                    sum_mm=burden.total if has_targets else None, complete=burden.complete,
                )
                if early:
                    still = f"{early}; {still}" if still else early
                carried = carry_episode(episode, tp.date, sod=burden.total if has_targets and burden.complete else None,
                                        target_pd=target_pd, non_target_pd=nt_pd,
                                        nlt_sum_mm=nlt_sum if nlt.complete else None, nlt_set_changed=bool(added_t))
                if still:
                    call = IUPD
                    why = f"{components}; {since} not confirmed, still progressed ({still}) -> iUPD (still unconfirmed)"
                    episode = replace(carried, rows=episode.rows + (row_index,))
                    confirmation = "pending"
                else:
                    recist_call = overall_response_recist(reading.target_response, reading.non_target_response, False)
                    if recist_call == CR and present:
                        recist_call = PR
                    call = I_NAMES[recist_call]
                    if call == NE:
                        why = f"{components}; {since} neither confirmed nor refuted -> NE (confirmation at the next assessment)"
                        episode = carried
                    else:
                        why = f"{components}; {since} not confirmed -> {call} (bar reset: a later progression is a new iUPD)"
                        episodes.append((episode.rows, "refuted"))
                        episode = None
                        confirmation = "refutes"
        else:
            new_pd = bool(additional) or nlt_pd or bool(nlnt_increase)
            if target_pd or nt_pd or new_pd:
                call = ICPD
                why = f"{components} -> iCPD (progression already confirmed on {confirmed_on})"
            else:
                recist_call = overall_response_recist(reading.target_response, reading.non_target_response, False)
                if recist_call == CR and present:
                    recist_call = PR
                call = I_NAMES[recist_call]
                why = f"{components} -> {call}"
            flags.append("after_progression")
        if call == IUPD and not tp.clinical.clinically_stable:
            flags.append("clinically_unstable")
            why += "; clinically unstable: iUPD not kept open for treatment (treatment would stop), the next assessment decides"
        if interval_weeks is not None:
            why += f"; {interval_weeks:.1f} weeks after the first iUPD of this episode ({interval_from})"
            if "confirmation_interval_outside_window" in flags:
                why += f" (outside the {low:g}-{high:g}-week window)"
        if not burden.complete and has_targets:
            flags.append("targets_not_all_evaluated")
        tgr = None
        if first:
            hyper = hyperprogression_check(prep, tp, progression=call in (IUPD, ICPD), sum_of=sum_of_diameters)
            if hyper is not None:
                tgr = hyper.tgr_on_pct_per_month
                if hyper.flag:
                    flags.append("hyperprogression")
                if hyper.reason:
                    why += f"; {hyper.reason}"
        rows.append(dict(
            date=tp.date, days_since_baseline=prep.days_since_baseline(tp), response=call, flags=flags, reason=why,
            sum_mm=burden.total if has_targets else None,
            change_from_baseline_pct=reading.pct_baseline, change_from_nadir_pct=reading.pct_nadir,
            nadir=state.nadir_mm if has_targets else None, nadir_date=state.nadir_date if has_targets else None,
            target_response=None if t_i == NA else t_i, non_target_response=None if nt_i == NA else nt_i,
            new_lesions=bool(present), new_lesion_target_sum_mm=nlt_sum if news.nlt and nlt.complete else None,
            confirmation=confirmation, tgr_pct_per_month=finite_or_none(tgr),
        ))
        # bookkeeping for the next time point
        news.seen.update(lesion.lesion for lesion in present)
        if news.nlt:
            # A new NLT changes the set being summed: its reference restarts at the current sum. Only an
            # evaluable sum (every NLT measured) becomes the nadir (RECIST 1.1 sec. 4.4.2, as for targets).
            if added_t or news.nlt_nadir_mm is None:
                news.nlt_nadir_mm = nlt_sum if nlt.complete else None
            elif nlt.complete:
                news.nlt_nadir_mm = min(news.nlt_nadir_mm, nlt_sum)
        advance_state(state, tp, reading)
        if call == ICR:
            had_icr = True
        first = False
    if episode is not None:
        episodes.append((episode.rows, "open"))
    apply_episode_outcomes(rows, episodes)
    results = tuple(TimepointAssessment(**{**row, "flags": tuple(row["flags"])}) for row in rows)
    calls = [(row.date, row.response) for row in results[prep.baseline_index + 1:]]
    bor = best_overall_response(calls, baseline.date, options, IRECIST_NAMES, confirm=options.confirm_responses)
    return Assessment(course.patient_id, prep.criterion, baseline.date, results, bor)
