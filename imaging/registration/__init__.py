"""Co-registration of follow-ups to their baseline, lesion tracking and mask propagation.

Convention: a registration transform maps FIXED (baseline) physical LPS points to MOVING
(follow-up) physical LPS points, as ITK does; ``sitk.Resample(moving, fixed, transform)``
brings the follow-up onto the baseline grid. See ``docs/registration.md``.

The public names are imported on first use (PEP 562): importing a light submodule such as
:mod:`imaging.registration.assignment` (numpy and scipy only) does not import SimpleITK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the submodule that defines it.
_WHERE = {
    "Level": "config", "RegistrationConfig": "config",
    "RegistrationError": "errors", "TrackingError": "errors",
    "invert_transform": "propagation", "lesion_exclusion_mask": "propagation", "propagate_mask": "propagation",
    "body_mask": "quality", "sample_points": "quality", "target_registration_error": "quality",
    "LevelReport": "rigid", "RegistrationResult": "rigid", "register": "rigid",
    "LabelMatch": "tracking", "LesionState": "tracking", "TrackedValue": "tracking", "TrackingResult": "tracking",
    "recist_values": "tracking", "track_lesions": "tracking",
    "decompose": "transforms", "linear_matrix": "transforms", "load_quality": "transforms",
    "load_transform": "transforms", "save_transform": "transforms", "transform_from_matrix": "transforms",
}

__all__ = [
    "LabelMatch", "LesionState", "Level", "LevelReport", "RegistrationConfig", "RegistrationError",
    "RegistrationResult", "TrackedValue", "TrackingError", "TrackingResult", "body_mask", "decompose",
    "invert_transform", "lesion_exclusion_mask", "linear_matrix", "load_quality", "load_transform",
    "propagate_mask", "recist_values", "register", "sample_points", "save_transform", "target_registration_error",
    "track_lesions", "transform_from_matrix",
]
assert sorted(__all__) == sorted(_WHERE)


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


if TYPE_CHECKING:  # for type checkers and IDEs: the names as the eager package had them
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
