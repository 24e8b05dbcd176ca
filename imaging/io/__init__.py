"""Loaders: DICOM series, NIfTI volumes and label maps, into SimpleITK images in LPS."""

from imaging.io.dicom import DicomHeader, ScanResult, SeriesInfo, group_series, load_series, read_header, scan_archive
from imaging.io.errors import DicomFileError, GeometryError, ImagingError, MaskError, NiftiError, SeriesError
from imaging.io.geometry import Geometry
from imaging.io.masks import load_label_map
from imaging.io.nifti import load_nifti, save_nifti

__all__ = [
    "DicomFileError", "DicomHeader", "Geometry", "GeometryError", "ImagingError", "MaskError", "NiftiError",
    "ScanResult", "SeriesError", "SeriesInfo", "group_series", "load_label_map", "load_nifti", "load_series",
    "read_header", "save_nifti", "scan_archive",
]
