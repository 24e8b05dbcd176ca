"""What an assessment returns: frozen dataclasses, and their JSON form (course-format.md)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any


def _round(value: float | None, digits: int) -> float | None:
    if value is None:
        return None
    if math.isinf(value) or math.isnan(value):
        return None
    return round(value, digits) + 0.0


@dataclass(frozen=True)
class ComponentAssessment:
    """One burden of a tumour with enhancing and non-enhancing parts at one time point.

    RANO 2.0 (Wen 2023), mixed tumours: the enhancing and the non-enhancing (T2/FLAIR) burden are
    assessed in parallel, each to its own call, and the time point's response combines the two.

    Attributes
    ----------
    component
        ``"enhancing"`` or ``"non_enhancing"``.
    sum
        Sum of this component's targets, in the row's unit (``None``: no targets of this component).
    change_from_baseline_pct, change_from_nadir_pct, nadir
        As for the row, for this burden.
    target_response
        Category of this burden (``"decrease"``, ``"minor_decrease"``, ...).
    response
        The call of this burden with the shared inputs (new lesions, non-targets, steroids, clinical status).
    """

    component: str
    sum: float | None
    change_from_baseline_pct: float | None
    change_from_nadir_pct: float | None
    nadir: float | None
    target_response: str | None
    response: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "sum": _round(self.sum, 2),
            "change_from_baseline_pct": _round(self.change_from_baseline_pct, 1),
            "change_from_nadir_pct": _round(self.change_from_nadir_pct, 1),
            "nadir": _round(self.nadir, 2),
            "target_response": self.target_response,
            "response": self.response,
        }


@dataclass(frozen=True)
class TimepointAssessment:
    """The call at one time point, with the figures behind it.

    Attributes
    ----------
    date
        Date of the scan.
    days_since_baseline
        Days from the baseline scan (negative for pre-baseline scans).
    response
        The call, in the paper's words (``"PR"``, ``"iUPD"``, ``"preliminary PD"``);
        ``None`` for the baseline and pre-baseline scans.
    flags
        snake_case markers set with hindsight of the whole course.
    reason
        The call explained in a radiologist's words.
    sum_mm
        Sum of diameters of the targets (RECIST-like criteria), mm. At a time
        point with missing targets, the sum of those measured.
    sum_products_mm2
        Sum of products of perpendicular diameters (RANO family, irRC), mm2.
    sum_volume_mm3
        Sum of target volumes (volumetric criteria), mm3.
    change_from_baseline_pct, change_from_nadir_pct
        Change of the criterion's burden, percent.
    nadir, nadir_date
        Smallest burden before this time point (baseline included), in the
        criterion's unit, and its date.
    target_response, non_target_response
        The component calls (``None`` when not applicable).
    new_lesions
        Whether new lesions are present at this scan.
    new_lesion_target_sum_mm
        iRECIST: sum of the new-lesion targets (NLT), mm; not part of ``sum_mm``. ``None`` also when an
        NLT is listed without a diameter (the sum is not evaluable; the reason gives the measured part).
    confirmation
        Confirmation state, e.g. ``"awaiting"``, ``"confirmed"``, ``"not_confirmed"``.
    tgr_pct_per_month
        Tumour growth rate since the previous scan (Ferte 2014), % per month.
    components
        RANO 2.0 for a mixed tumour (Wen 2023): the enhancing and the non-enhancing burden, each with
        its own call (:class:`ComponentAssessment`); the row's sums are the enhancing burden's (the
        non-enhancing one's when there is no enhancing target). ``None`` otherwise.
    """

    date: dt.date
    days_since_baseline: int
    response: str | None
    flags: tuple[str, ...] = ()
    reason: str = ""
    sum_mm: float | None = None
    sum_products_mm2: float | None = None
    sum_volume_mm3: float | None = None
    change_from_baseline_pct: float | None = None
    change_from_nadir_pct: float | None = None
    nadir: float | None = None
    nadir_date: dt.date | None = None
    target_response: str | None = None
    non_target_response: str | None = None
    new_lesions: bool = False
    new_lesion_target_sum_mm: float | None = None
    confirmation: str | None = None
    tgr_pct_per_month: float | None = None
    components: tuple[ComponentAssessment, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of this time point (course-format.md, "Output")."""
        out: dict[str, Any] = {
            "date": self.date.isoformat(),
            "days_since_baseline": self.days_since_baseline,
            "response": self.response,
            "flags": list(self.flags),
            "reason": self.reason,
            "sum_mm": _round(self.sum_mm, 2),
        }
        if self.sum_products_mm2 is not None:
            out["sum_products_mm2"] = _round(self.sum_products_mm2, 2)
        if self.sum_volume_mm3 is not None:
            out["sum_volume_mm3"] = _round(self.sum_volume_mm3, 2)
        out["change_from_baseline_pct"] = _round(self.change_from_baseline_pct, 1)
        out["change_from_nadir_pct"] = _round(self.change_from_nadir_pct, 1)
        out["nadir"] = _round(self.nadir, 2)
        out["nadir_date"] = self.nadir_date.isoformat() if self.nadir_date else None
        out["target_response"] = self.target_response
        out["non_target_response"] = self.non_target_response
        out["new_lesions"] = self.new_lesions
        if self.new_lesion_target_sum_mm is not None:
            out["new_lesion_target_sum_mm"] = _round(self.new_lesion_target_sum_mm, 2)
        if self.confirmation is not None:
            out["confirmation"] = self.confirmation
        if self.tgr_pct_per_month is not None:
            out["tgr_pct_per_month"] = _round(self.tgr_pct_per_month, 2)
        if self.components is not None:
            out["components"] = {c.component: c.to_dict() for c in self.components}
        return out


@dataclass(frozen=True)
class BestOverallResponse:
    """Best overall response over the course (RECIST 1.1 sec. 4.4.3 and its analogues).

    Attributes
    ----------
    response
        The call, or ``"NE"`` when nothing qualifies.
    reason
        Why, including the confirmation used.
    date
        Date of the first time point of the qualifying response, if any.
    """

    response: str
    reason: str
    date: dt.date | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "response": self.response,
            "reason": self.reason,
            "date": self.date.isoformat() if self.date else None,
        }


@dataclass(frozen=True)
class Assessment:
    """One criterion applied to one course.

    Attributes
    ----------
    patient_id, criterion
        As given.
    baseline_date
        Date of the scan used as baseline.
    timepoints
        One per input time point, in input order (pre-baseline and baseline included).
    best_overall_response
        Best overall response with the criterion's confirmation rules.
    """

    patient_id: str | None
    criterion: str
    baseline_date: dt.date
    timepoints: tuple[TimepointAssessment, ...]
    best_overall_response: BestOverallResponse

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of course-format.md ("Output")."""
        return {
            "patient_id": self.patient_id,
            "criterion": self.criterion,
            "baseline_date": self.baseline_date.isoformat(),
            "timepoints": [tp.to_dict() for tp in self.timepoints],
            "best_overall_response": self.best_overall_response.to_dict(),
        }
