"""Loaders: DICOM archives and series, NIfTI volumes and label maps, into SimpleITK images in LPS.

Public surface:

- crawl and index: :func:`scan_archive` (headers only, optional SQLite catalogue),
  :func:`group_series` (Patient / Study / Series, split into volumes), :func:`read_header`;
- volumes: :func:`load_series` / :func:`read_series` (DICOM), :func:`load_nifti` /
  :func:`read_nifti`, :func:`load_volume` (folder, DICOM, NIfTI, NRRD), :func:`save_nifti`;
- masks: :func:`load_label_map` / :func:`read_label_map` (NIfTI, NRRD, DICOM SEG, RTSTRUCT);
- segmentation objects of an archive: :func:`read_segmentation_ref` (a SEG's / RTSTRUCT's references and
  segments; the crawl fills :attr:`ScanResult.segmentations`), :func:`link_segmentations` (which series
  each one was drawn on);
- series selection: :func:`select_series` with a :class:`SeriesRule` (which volume of a study to measure,
  and why), :func:`describe_volume` (the fields it looks at, for tables);
- the error hierarchy under :class:`ImagingError`.

``read_*`` functions return a :class:`LoadedVolume` (image + problems found);
``load_*`` return the image and log the problems.
"""

from imaging.io.catalogue import CATALOGUE_NAME
from imaging.io.crawl import default_catalogue, scan_archive
from imaging.io.dicom import DicomHeader, FrameInfo, ScanResult, read_header
from imaging.io.errors import (
    ArchiveError,
    CatalogueError,
    DicomFileError,
    GeometryError,
    ImagingError,
    MaskError,
    NiftiError,
    SeriesError,
)
from imaging.io.geometry import Geometry, LoadedVolume
from imaging.io.grouping import SeriesInfo, group_series
from imaging.io.masks import load_label_map, read_label_map
from imaging.io.nifti import load_nifti, read_nifti, save_nifti
from imaging.io.pixels import read_pixels
from imaging.io.segrefs import (
    SegmentationLinks,
    SegmentationRef,
    SegmentationRefError,
    SegmentItem,
    link_segmentations,
    read_segmentation_ref,
)
from imaging.io.selection import SeriesChoice, SeriesRule, describe_volume, select_series
from imaging.io.series import load_series, read_series
from imaging.io.volume import load_volume

__all__ = [
    "CATALOGUE_NAME", "ArchiveError", "CatalogueError", "DicomFileError", "DicomHeader", "FrameInfo", "Geometry",
    "GeometryError", "ImagingError", "LoadedVolume", "MaskError", "NiftiError", "ScanResult", "SegmentItem",
    "SegmentationLinks", "SegmentationRef", "SegmentationRefError", "SeriesChoice", "SeriesError", "SeriesInfo",
    "SeriesRule", "default_catalogue", "describe_volume", "group_series", "link_segmentations", "load_label_map",
    "load_nifti", "load_series", "load_volume", "read_header", "read_label_map", "read_nifti", "read_pixels",
    "read_segmentation_ref", "read_series", "save_nifti", "scan_archive", "select_series",
]
