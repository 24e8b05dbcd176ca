"""Error hierarchy of the loaders.

Every message names the file or series and the reason, so that a batch can
record it and go on.
"""

from __future__ import annotations


class ImagingError(Exception):
    """Base class of every error raised by :mod:`imaging`."""


class DicomFileError(ImagingError):
    """One file could not be read as DICOM (not DICOM, truncated, corrupt)."""


class SeriesError(ImagingError):
    """A DICOM series cannot be assembled into one volume."""


class GeometryError(SeriesError):
    """Slice geometry is inconsistent (orientation, spacing, gaps, shear)."""


class NiftiError(ImagingError):
    """A NIfTI file cannot be read or its header is unusable."""


class MaskError(ImagingError):
    """A mask / label map does not fit its image."""


class ArchiveError(ImagingError):
    """An archive folder cannot be crawled at all (missing, not a folder)."""


class CatalogueError(ImagingError):
    """The SQLite index catalogue cannot be opened or is not a catalogue of this tool."""
