"""Options of an assessment: the windows and switches that trials set in their protocols."""

from __future__ import annotations

from dataclasses import dataclass

from imaging.response.errors import CourseError


@dataclass(frozen=True)
class AssessmentOptions:
    """Protocol-dependent settings; every default is the papers' usual value.

    Attributes
    ----------
    confirmation_min_weeks
        A CR/PR (and irRC, RANO family CR/PR) counts towards the best overall
        response only when a later assessment at least this many weeks after
        still shows it. RECIST 1.1, Eisenhauer 2009, sec. 4.6.1 ("no less than
        4 weeks"); RANO, Wen 2010 ("sustained for at least 4 weeks"); irRC,
        Wolchok 2009 (confirmation >= 4 weeks).
    sd_min_weeks
        SD counts as best response only if met at least once this many weeks
        after baseline. RECIST 1.1 sec. 4.4.3 ("in general not less than 6-8
        weeks", protocol-defined); 6 is the lower end.
    irecist_confirm_window_weeks
        Expected interval between an iUPD and the assessment that confirms it,
        counted from the **first** iUPD of the episode (not the previous
        assessment). iRECIST, Seymour 2017 ("4-8 weeks later"); EORTC iRECIST
        FAQ ("4-8 weeks after the initial iUPD"). An assessment of an open
        episode outside it carries ``confirmation_interval_outside_window``;
        before the lower bound the scan cannot confirm iCPD unless it shows an
        additional new lesion (iRECIST FAQ).
    rano_pseudoprogression_window_weeks
        Weeks after the end of (chemo)radiotherapy during which enhancing growth
        is not called PD unless outside the radiation field or proven by
        histology. RANO, Wen 2010 (12 weeks); RANO 2.0, Wen 2023.
    rano2_volumetric
        RANO 2.0 with volumes (PR >= 65% decrease, PD >= 40% increase of the
        total enhancing volume) instead of sums of products. Wen 2023.
    mrano_volumetric
        mRANO with volumes (PD >= 40% increase). Ellingson 2017.
    irano_window_weeks
        iRANO: progression within this many weeks (6 months) of starting
        immunotherapy needs confirmation. Okada 2015.
    irano_confirm_min_weeks
        iRANO: the confirmation scan is "about 3 months" later; scans earlier
        than this are still awaiting confirmation. Okada 2015 (12 weeks).
    mrano_confirm_min_weeks
        mRANO / RANO 2.0: minimum interval of the scan that confirms a
        preliminary PD. Ellingson 2017 (>= 4 weeks).
    reappearance_after_cr_is_pd
        After a CR, any reappearing disease is PD (RECIST 1.1 sec. 4.4.3,
        Table 3 note; RECIST working group FAQ).
    confirm_responses
        Whether CR/PR need confirmation for the best overall response. RECIST
        1.1 sec. 4.6.1: required in non-randomised trials where response is the
        primary end point, not in randomised trials. Default: required.
    ranolgg_confirm_responses
        RANO-LGG: the responses that count for the best overall response only
        when a later assessment at least ``confirmation_min_weeks`` after still
        shows them (or better). The paper's criteria ask it of PR (sustained for
        at least 4 weeks; van den Bent 2011) and are silent on CR and MR; the
        default confirms all three, as RANO 2010 does CR and as a reader holds every
        response category to the same standard (reading). ``("PR",)`` is the
        literal paper.
    rano2_volumetric_minor_response_pct
        RANO 2.0 volumetric option, non-enhancing burden: the volume decrease that is
        a minor response. The sphere-equivalent of the 25% decrease of a sum of
        products, 1 - 0.75 ** 1.5 = 35.0% (reading; Wen 2023 gives the volumetric PR
        and PD thresholds, 65% and 40%, by the same equivalence).
    """

    confirmation_min_weeks: float = 4.0
    sd_min_weeks: float = 6.0
    irecist_confirm_window_weeks: tuple[float, float] = (4.0, 8.0)
    rano_pseudoprogression_window_weeks: float = 12.0
    rano2_volumetric: bool = False
    mrano_volumetric: bool = False
    irano_window_weeks: float = 26.0
    irano_confirm_min_weeks: float = 12.0
    mrano_confirm_min_weeks: float = 4.0
    reappearance_after_cr_is_pd: bool = True
    confirm_responses: bool = True
    ranolgg_confirm_responses: tuple[str, ...] = ("CR", "PR", "MR")
    rano2_volumetric_minor_response_pct: float = 35.0

    def __post_init__(self) -> None:
        low, high = self.irecist_confirm_window_weeks
        if low < 0 or high < low:
            raise CourseError(
                f"must be (low, high) with 0 <= low <= high, got {self.irecist_confirm_window_weeks}",
                field="options.irecist_confirm_window_weeks",
            )
        for name in ("confirmation_min_weeks", "sd_min_weeks", "rano_pseudoprogression_window_weeks",
                     "irano_window_weeks", "irano_confirm_min_weeks", "mrano_confirm_min_weeks"):
            value = getattr(self, name)
            if value < 0:
                raise CourseError(f"must be >= 0, got {value}", field=f"options.{name}")
        levels = self.ranolgg_confirm_responses
        if isinstance(levels, str) or any(c not in ("CR", "PR", "MR") for c in levels):
            raise CourseError(f"must be a tuple of CR, PR, MR, got {self.ranolgg_confirm_responses!r}",
                              field="options.ranolgg_confirm_responses")
        if not 0 < self.rano2_volumetric_minor_response_pct < 65.0:
            raise CourseError(f"must be > 0 and < 65 (the volumetric PR), got {self.rano2_volumetric_minor_response_pct}",
                              field="options.rano2_volumetric_minor_response_pct")
