"""Lesion segmentation: lesions from label maps, their metadata, and semi-automatic segmentation from a seed or box."""

from imaging.segmentation.labels import LesionMode, label_fragments, lesion_label_map
from imaging.segmentation.metadata import (
    LesionMetadata,
    LesionMetadataError,
    lesion_metadata_from_mapping,
    load_lesion_metadata,
)
from imaging.segmentation.seeded import SeedSettings, SegmentationError, segment_from_box, segment_from_seed

__all__ = [
    "LesionMetadata", "LesionMetadataError", "LesionMode", "SeedSettings", "SegmentationError", "label_fragments",
    "lesion_label_map",
    "lesion_metadata_from_mapping", "load_lesion_metadata", "segment_from_box", "segment_from_seed",
]
