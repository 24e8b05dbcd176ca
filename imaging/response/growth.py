"""Tumour growth rate and the hyperprogression flag (never a call).

Tumour growth rate: Ferte et al., Clin Cancer Res 2014 (TG = 3 ln(D1/D0) / t,
t in months, D the sum of longest diameters; TGR = 100 (exp(TG) - 1) % per
month). Hyperprogression: Champiat et al., Clin Cancer Res 2017 (RECIST PD at
the first evaluation on treatment and TGR on treatment / TGR before treatment
>= 2); Saada-Bouzid et al., Ann Oncol 2017 use the same ratio (>= 2) of
tumour-growth kinetics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from imaging.response.common import DAYS_PER_MONTH, Burden, Prepared
from imaging.response.models import TargetLesion, Timepoint

#: Champiat 2017: TGR ratio threshold.
HYPERPROGRESSION_RATIO = 2.0


def tumour_growth_rate(sum_before_mm: float, sum_after_mm: float, days: int) -> float:
    """Tumour growth rate between two scans, % per month.

    Ferte et al., Clin Cancer Res 2014: TG = 3 ln(D1/D0) / t with t in months
    (the 3 turns diameters into a volume), TGR = 100 (exp(TG) - 1).

    Parameters
    ----------
    sum_before_mm, sum_after_mm
        Sum of longest diameters of the same targets at the two scans, mm (> 0 before).
    days
        Days between the scans (> 0).

    Returns
    -------
    float
        % per month; -100 when the lesions have gone.
    """
    if sum_before_mm <= 0 or days <= 0:
        raise ValueError("growth rate needs a positive earlier sum and a positive interval")
    if sum_after_mm <= 0:
        return -100.0
    months = days / DAYS_PER_MONTH
    tg = 3.0 * math.log(sum_after_mm / sum_before_mm) / months
    try:
        return 100.0 * math.expm1(tg)
    except OverflowError:
        return math.inf


def hyperprogression_champiat(progression: bool, tgr_before_pct: float, tgr_on_pct: float) -> bool:
    """Hyperprogression by Champiat et al., Clin Cancer Res 2017.

    RECIST progression at the first evaluation on treatment **and** a TGR ratio
    (on treatment / before treatment) >= 2. The ratio is defined only when the
    growth rate before treatment is positive (reading taken here: otherwise
    not evaluable).
    """
    if not progression or tgr_before_pct <= 0:
        return False
    return tgr_on_pct / tgr_before_pct >= HYPERPROGRESSION_RATIO - 1e-12


@dataclass(frozen=True)
class HyperprogressionResult:
    """Outcome of the check at the first assessment on treatment."""

    flag: bool
    reason: str
    tgr_before_pct_per_month: float | None
    tgr_on_pct_per_month: float | None
    ratio: float | None


def hyperprogression_check(
    prep: Prepared,
    tp: Timepoint,
    *,
    progression: bool,
    sum_of: Callable[[Timepoint, Sequence[TargetLesion]], Burden],
) -> HyperprogressionResult | None:
    """Evaluate the hyperprogression flag at the first on-treatment scan ``tp``.

    Only for courses on immunotherapy (course-format.md, ``context.immunotherapy``).
    Uses the latest pre-baseline scan at which every baseline target was
    measured and the sum is > 0. Ferte 2014's D is the sum over the same
    lesions at both scans, so only complete sums are used: a target not
    measured is never 0 mm (RECIST 1.1 sec. 4.4.2); with one at ``tp`` the
    on-treatment rate, and the flag, are not evaluable. Returns ``None`` when
    not on immunotherapy or when the course has no targets.
    """
    if not prep.course.context.immunotherapy or not prep.targets:
        return None
    baseline = prep.baseline
    base = sum_of(baseline, prep.targets)
    now = sum_of(tp, prep.targets)
    tgr_on: float | None = None
    if base.total > 0 and now.complete:
        tgr_on = tumour_growth_rate(base.total, now.total, (tp.date - baseline.date).days)
    pre_scans = prep.course.timepoints[: prep.baseline_index]
    pre: tuple[Timepoint, Burden] | None = None
    for candidate in reversed(pre_scans):
        burden = sum_of(candidate, prep.targets)
        if burden.complete and burden.total > 0:
            pre = (candidate, burden)
            break
    if not progression:
        return HyperprogressionResult(False, "", None, tgr_on, None)
    definition = "hyperprogression (Champiat 2017: PD at first evaluation and TGR ratio >= 2)"
    if pre is None:
        why = "no pre-baseline scan" if not pre_scans else "no pre-baseline scan with every target measured"
        return HyperprogressionResult(False, f"{definition} not evaluable: {why}", None, tgr_on, None)
    if tgr_on is None:
        return HyperprogressionResult(False, f"{definition} not evaluable: targets not all measured", None, None, None)
    pre_tp, pre_burden = pre
    tgr_before = tumour_growth_rate(pre_burden.total, base.total, (baseline.date - pre_tp.date).days)
    figures = (f"TGR before {tgr_before:.1f} %/month ({pre_tp.date} to {baseline.date}), "
               f"on treatment {tgr_on:.1f} %/month")
    if tgr_before <= 0:
        return HyperprogressionResult(
            False, f"{definition} not evaluable: {figures}; ratio undefined (no growth before treatment)",
            tgr_before, tgr_on, None,
        )
    ratio = tgr_on / tgr_before
    flag = hyperprogression_champiat(True, tgr_before, tgr_on)
    verdict = "-> hyperprogression" if flag else "-> not hyperprogression"
    return HyperprogressionResult(flag, f"{definition}: {figures}, ratio {ratio:.1f} {verdict}", tgr_before, tgr_on, ratio)
