"""Entry point: ``assess(course, criterion, options)``."""

from __future__ import annotations

from collections.abc import Callable

from imaging.response.common import Prepared, prepare
from imaging.response.errors import CourseError
from imaging.response.models import Course
from imaging.response.options import AssessmentOptions
from imaging.response.result import Assessment

#: Supported criteria, by their command-line names (course-format.md).
CRITERIA: tuple[str, ...] = ("recist", "irecist", "rano", "rano2", "mrano", "irano", "ranobm", "irrc", "ranolgg")


def _assessors() -> dict[str, Callable[[Prepared, AssessmentOptions], Assessment]]:
    """Criterion name -> assessor (imported lazily so that ``import imaging.response`` stays light)."""
    from imaging.response import irecist, irrc, rano, recist

    return {
        "recist": recist.assess_recist,
        "irecist": irecist.assess_irecist,
        **rano.ASSESSORS,
        "ranobm": rano.assess_ranobm,
        "irrc": irrc.assess_irrc,
    }


def check_criterion(criterion: str) -> str:
    """Normalise a criterion name, or raise :class:`CourseError` listing the valid ones."""
    name = criterion.strip().lower() if isinstance(criterion, str) else criterion
    if name not in CRITERIA:
        raise CourseError(f"unknown criterion {criterion!r}; valid: {', '.join(CRITERIA)}", field="criterion")
    return name


def assess(course: Course, criterion: str, options: AssessmentOptions | None = None) -> Assessment:
    """Assess a patient's course by one criterion.

    Parameters
    ----------
    course
        A validated course (:func:`imaging.response.load_course`).
    criterion
        One of :data:`CRITERIA`.
    options
        Confirmation windows and switches; defaults documented on
        :class:`AssessmentOptions`.

    Returns
    -------
    Assessment
        One row per input time point (pre-baseline and baseline included) and
        the best overall response.

    Raises
    ------
    CourseError
        Unknown criterion, or a course the criterion cannot assess (named time point and field).
    """
    name = check_criterion(criterion)
    if not isinstance(course, Course):
        raise CourseError(f"expected a Course, got {type(course).__name__}", field="course")
    options = options or AssessmentOptions()
    assessor = _assessors().get(name)
    if assessor is None:
        raise CourseError(f"criterion {name!r} is not implemented yet", field="criterion")
    volumetric = (name == "rano2" and options.rano2_volumetric) or (name == "mrano" and options.mrano_volumetric)
    prepared = prepare(course, name, volumetric=volumetric)
    return assessor(prepared, options)
