"""Response assessment: RECIST 1.1, iRECIST, the RANO family (RANO-LGG included), RANO-BM and irRC.

Pure Python (pydantic and the standard library only), so it runs on hand
measurements without any imaging library. The public surface:

* models of the course file (``Course``, ``Context``, ``Timepoint``,
  ``TargetLesion``, ``NonTargetLesion``, ``NewLesion``, ``Clinical``),
  ``load_course`` and ``course_from_dict``;
* ``assess(course, criterion, options)`` -> ``Assessment``; ``CRITERIA``;
  ``AssessmentOptions``;
* ``select_targets`` for the pipeline; ``CourseError`` for every failure.
"""

from imaging.response.engine import CRITERIA, assess, check_criterion
from imaging.response.errors import CourseError
from imaging.response.models import (
    Clinical,
    Context,
    Course,
    NewLesion,
    NonTargetLesion,
    TargetLesion,
    Timepoint,
    course_from_dict,
    load_course,
)
from imaging.response.options import AssessmentOptions
from imaging.response.result import Assessment, BestOverallResponse, ComponentAssessment, TimepointAssessment
from imaging.response.selection import TargetSelection, measurability, select_targets

__all__ = [
    "CRITERIA", "Assessment", "AssessmentOptions", "BestOverallResponse", "Clinical", "ComponentAssessment", "Context",
    "Course",
    "CourseError", "NewLesion", "NonTargetLesion", "TargetLesion", "TargetSelection", "Timepoint",
    "TimepointAssessment", "assess", "check_criterion", "course_from_dict", "load_course", "measurability",
    "select_targets",
]
