"""Best overall response with confirmation and minimum duration, shared by the criteria.

RECIST 1.1, Eisenhauer 2009, sec. 4.4.3 (Table 3) and sec. 4.6.1; the other
criteria reuse the same logic with their own names (iRECIST iBOR, Seymour 2017;
RANO CR/PR "sustained for at least 4 weeks", Wen 2010; irRC confirmation,
Wolchok 2009).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from imaging.response.common import weeks_between
from imaging.response.options import AssessmentOptions
from imaging.response.result import BestOverallResponse


@dataclass(frozen=True)
class BorNames:
    """How a criterion names the calls the best-response logic needs.

    ``progression`` ends the course for the best response (calls after it are
    ignored); ``unconfirmed`` is a progression awaiting confirmation (iUPD,
    preliminary PD), which neither ends the course nor counts as stable.
    ``stable`` are calls that show at least stable disease. ``mr``: the minor
    response between PR and SD, for the criteria that have it (RANO-LGG, van den
    Bent 2011; RANO 2.0 for non-enhancing tumours, Wen 2023); ``None`` otherwise.
    """

    cr: str
    pr: str
    sd: str
    non_cr_non_pd: str | None
    progression: tuple[str, ...]
    unconfirmed: tuple[str, ...]
    ne: str = "NE"
    progression_name: str = "PD"
    mr: str | None = None


RECIST_NAMES = BorNames("CR", "PR", "SD", "non-CR/non-PD", ("PD",), ())


def best_overall_response(
    calls: Sequence[tuple[dt.date, str | None]],
    baseline_date: dt.date,
    options: AssessmentOptions,
    names: BorNames = RECIST_NAMES,
    *,
    confirm: bool = True,
    confirm_levels: Sequence[str] | None = None,
) -> BestOverallResponse:
    """Best overall response from the time-point calls after baseline.

    RECIST 1.1, Eisenhauer 2009, sec. 4.4.3 and Table 3, sec. 4.6.1:

    * CR (PR) counts when a later call at least ``confirmation_min_weeks``
      after is CR (CR or PR), with no call in between that is worse than PR
      (NE in between is allowed);
    * otherwise, any call of at least stable disease (CR, PR, SD, or
      non-CR/non-PD for non-target-only disease) at least ``sd_min_weeks``
      after baseline gives SD (non-CR/non-PD);
    * otherwise PD if a progression was called, else NE.

    With a minor response (``names.mr``; RANO-LGG, van den Bent 2011): MR counts when
    a later call at least ``confirmation_min_weeks`` after is MR, PR or CR with nothing
    worse than MR in between; an MR, like a PR, otherwise falls back to SD.

    Calls after the first progression are ignored.

    Parameters
    ----------
    calls
        ``(date, response)`` of the follow-up time points in date order.
    baseline_date
        Date of the baseline scan.
    options
        Confirmation and minimum-duration windows.
    names
        The criterion's names for the calls.
    confirm
        ``False`` for criteria or trials without confirmation (CR/PR count at once).
    confirm_levels
        With ``confirm``, the responses that need confirmation (``None``: all); the
        others count at once (RANO-LGG: ``AssessmentOptions.ranolgg_confirm_responses``).
    """
    considered: list[tuple[dt.date, str]] = []
    for date, call in calls:
        if call is None:
            continue
        considered.append((date, call))
        if call in names.progression:
            break
    responders: tuple[str, ...] = (names.cr, names.pr)
    not_worse = {names.cr: (names.cr, names.ne), names.pr: (names.cr, names.pr, names.ne)}
    confirm_as = {names.cr: (names.cr,), names.pr: (names.cr, names.pr)}
    if names.mr is not None:
        responders += (names.mr,)
        not_worse[names.mr] = (names.cr, names.pr, names.mr, names.ne)
        confirm_as[names.mr] = (names.cr, names.pr, names.mr)
    for level in responders:
        for i, (date_i, call_i) in enumerate(considered):
            if call_i not in confirm_as[level]:
                continue
            if not confirm or (confirm_levels is not None and level not in confirm_levels):
                return BestOverallResponse(level, f"{call_i} on {date_i} (no confirmation required)", date_i)
            for date_j, call_j in considered[i + 1:]:
                if call_j not in not_worse[level]:
                    break
                if call_j in confirm_as[level] and weeks_between(date_i, date_j) >= options.confirmation_min_weeks - 1e-9:
                    weeks = weeks_between(date_i, date_j)
                    return BestOverallResponse(
                        level,
                        f"{call_i} on {date_i} confirmed by {call_j} on {date_j} "
                        f"({weeks:.1f} weeks later, >= {options.confirmation_min_weeks:g})",
                        date_i,
                    )
    unconfirmed = [(d, c) for d, c in considered if c in responders]
    prefix = ""
    if unconfirmed:
        d, c = unconfirmed[0]
        prefix = f"{c} on {d} not confirmed (no {'/'.join(reversed(confirm_as[c]))} >= {options.confirmation_min_weeks:g} weeks later); "
    stable_calls = (names.cr, names.pr, names.sd) + ((names.mr,) if names.mr is not None else ())
    for kind, allowed in ((names.sd, stable_calls), (names.non_cr_non_pd, (names.non_cr_non_pd,))):
        if kind is None:
            continue
        for date, call in considered:
            if call in allowed:
                weeks = weeks_between(baseline_date, date)
                if weeks >= options.sd_min_weeks - 1e-9:
                    return BestOverallResponse(
                        kind,
                        f"{prefix}{call} on {date}, {weeks:.1f} weeks after baseline (>= {options.sd_min_weeks:g}) -> {kind}",
                        date,
                    )
    early = [(d, c) for d, c in considered if c in stable_calls or c == names.non_cr_non_pd]
    if early:
        d, c = early[0]
        prefix += f"{c} on {d} before the {options.sd_min_weeks:g}-week minimum for SD; "
    progressions = [(d, c) for d, c in considered if c in names.progression]
    if progressions:
        d, c = progressions[0]
        return BestOverallResponse(c, f"{prefix}{c} on {d}", d)
    # An unconfirmed progression counts only while still open at the end of the course;
    # one refuted later (iUPD then iSD) is not progression (iRECIST, Seymour 2017, iBOR).
    decided = [(d, c) for d, c in considered if c != names.ne]
    if decided and decided[-1][1] in names.unconfirmed:
        first_open = decided[-1]
        for d, c in reversed(decided):
            if c not in names.unconfirmed:
                break
            first_open = (d, c)
        d, c = first_open
        return BestOverallResponse(c, f"{prefix}{c} on {d}, not confirmed by the end of the course", d)
    if not considered:
        return BestOverallResponse(names.ne, "no assessment after baseline", None)
    return BestOverallResponse(names.ne, f"{prefix}no call qualifies -> {names.ne}", None)
