"""Co-registration of follow-ups to their baseline, lesion tracking and mask propagation.

Convention: a registration transform maps FIXED (baseline) physical LPS points to MOVING
(follow-up) physical LPS points, as ITK does; ``sitk.Resample(moving, fixed, transform)``
brings the follow-up onto the baseline grid. See ``docs/registration.md``.
"""

from imaging.registration.config import Level, RegistrationConfig
from imaging.registration.errors import RegistrationError, TrackingError
from imaging.registration.propagation import invert_transform, lesion_exclusion_mask, propagate_mask
from imaging.registration.quality import body_mask, sample_points, target_registration_error
from imaging.registration.rigid import LevelReport, RegistrationResult, register
from imaging.registration.tracking import (
    LabelMatch,
    LesionState,
    TrackedValue,
    TrackingResult,
    recist_values,
    track_lesions,
)
from imaging.registration.transforms import (
    decompose,
    linear_matrix,
    load_quality,
    load_transform,
    save_transform,
    transform_from_matrix,
)

__all__ = [
    "LabelMatch", "LesionState", "Level", "LevelReport", "RegistrationConfig", "RegistrationError",
    "RegistrationResult", "TrackedValue", "TrackingError", "TrackingResult", "body_mask", "decompose",
    "invert_transform", "lesion_exclusion_mask", "linear_matrix", "load_quality", "load_transform",
    "propagate_mask", "recist_values", "register", "sample_points", "save_transform", "target_registration_error",
    "track_lesions", "transform_from_matrix",
]
