"""Lesion segmentation: lesions from label maps (semi-automatic segmentation arrives with issue 4)."""

from imaging.segmentation.labels import LesionMode, lesion_label_map

__all__ = ["LesionMode", "lesion_label_map"]
