"""Lesion segmentation: lesions from label maps, their metadata, and semi-automatic segmentation from a seed, a box
or a prior label map (the baseline's mask warped onto a follow-up)."""

from imaging.segmentation.labels import LesionMode, label_fragments, lesion_label_map
from imaging.segmentation.metadata import (
    LesionMetadata,
    LesionMetadataError,
    lesion_metadata_from_mapping,
    load_lesion_metadata,
)
from imaging.segmentation.propagated import PriorSegmentation, segment_from_prior
from imaging.segmentation.seeded import SeedSettings, SegmentationError, segment_from_box, segment_from_seed

__all__ = [
    "LesionMetadata", "LesionMetadataError", "LesionMode", "PriorSegmentation", "SeedSettings", "SegmentationError",
    "label_fragments", "lesion_label_map", "lesion_metadata_from_mapping", "load_lesion_metadata", "segment_from_box",
    "segment_from_prior", "segment_from_seed",
]
