"""Compact builders of courses with known truth for the response tests.

``tp("2024-02-05", T1=30, N1=node(16), nt={"NT1": "present"}, new=[new("N1")])``
builds one time point: keyword sizes are long axes (mm) of non-nodal targets,
``node(x)`` a nodal target with short axis ``x``; ``None`` = not evaluated.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from imaging.response import Course, course_from_dict

START = dt.date(2024, 1, 8)


def day(offset_days: int) -> str:
    """ISO date ``offset_days`` after the default treatment start."""
    return (START + dt.timedelta(days=offset_days)).isoformat()


def week(weeks: float) -> str:
    """ISO date ``weeks`` after the default treatment start."""
    return day(int(round(weeks * 7)))


class node(dict):  # noqa: N801 - reads like a unit in the tables
    """A nodal target measured by its short axis, mm."""

    def __init__(self, short_axis_mm: float | None, **extra: Any) -> None:
        super().__init__(nodal=True, short_axis_mm=short_axis_mm, **extra)


def lesion(long_axis_mm: float | None = None, **extra: Any) -> dict[str, Any]:
    """A non-nodal target with extra fields (organ, too_small_to_measure, split_from...)."""
    return {"long_axis_mm": long_axis_mm, **extra}


def new(name: str, long_axis_mm: float | None = 12.0, **extra: Any) -> dict[str, Any]:
    """A new lesion."""
    return {"lesion": name, "long_axis_mm": long_axis_mm, **extra}


def tp(date: str, *, nt: dict[str, str] | None = None, new_lesions: list[dict[str, Any]] | None = None,
       clinical: dict[str, Any] | None = None, organs: dict[str, str] | None = None, **targets: Any) -> dict[str, Any]:
    """One time point as a course-file mapping."""
    target_list = []
    for name, spec in targets.items():
        entry: dict[str, Any] = {"lesion": name}
        if isinstance(spec, dict):
            entry.update(spec)
        else:
            entry["long_axis_mm"] = spec
        entry.setdefault("organ", (organs or {}).get(name, f"organ_{name}"))
        target_list.append(entry)
    out: dict[str, Any] = {"date": date, "target": target_list}
    if nt:
        out["non_target"] = [{"lesion": k, "status": v} for k, v in nt.items()]
    if new_lesions:
        out["new_lesions"] = new_lesions
    if clinical:
        out["clinical"] = clinical
    return out


def course(*timepoints: dict[str, Any], treatment_start: str | None = None, immunotherapy: bool = False,
           radiotherapy_end: str | None = None, patient_id: str = "TEST", tumour: str | None = None) -> Course:
    """A validated course; the first time point is the baseline unless dated after ``treatment_start``.

    ``tumour`` sets ``context.tumour`` (RANO 2.0's kind of glioma) when given.
    """
    context: dict[str, Any] = {
        "treatment_start": treatment_start or START.isoformat(),
        "radiotherapy_end": radiotherapy_end,
        "immunotherapy": immunotherapy,
    }
    if tumour is not None:
        context["tumour"] = tumour
    return course_from_dict({"patient_id": patient_id, "context": context, "timepoints": list(timepoints)})


def calls(assessment: Any) -> list[str | None]:
    """Responses of the follow-up time points (after baseline)."""
    rows = assessment.timepoints
    first = next(i for i, row in enumerate(rows) if "baseline" in row.flags)
    return [row.response for row in rows[first + 1:]]
