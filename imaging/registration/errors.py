"""Errors of the registration and tracking stage."""

from __future__ import annotations

from imaging.io.errors import ImagingError


class RegistrationError(ImagingError):
    """A registration could not be run or its result is not usable (the message says why)."""


class TrackingError(ImagingError):
    """Lesions cannot be tracked: label maps or transforms that do not fit together."""
