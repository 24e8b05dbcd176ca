"""Lesion measurements in physical mm: diameters, products, volumes, centres."""

from imaging.measurement.diameters import (
    SliceDiameters,
    SliceOutline,
    cap_support,
    edge_midpoints_2d,
    max_3d_diameter,
    slice_diameters,
)
from imaging.measurement.lesions import LesionMeasurement, measure_lesions, measure_mask
from imaging.measurement.volume import mesh_volume_mm3

__all__ = [
    "LesionMeasurement", "SliceDiameters", "SliceOutline", "cap_support", "edge_midpoints_2d", "max_3d_diameter",
    "measure_lesions", "measure_mask", "mesh_volume_mm3", "slice_diameters",
]
