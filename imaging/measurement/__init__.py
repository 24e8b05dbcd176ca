"""Lesion measurements in physical mm: diameters, products, volumes, centres."""

from imaging.measurement.diameters import SliceDiameters, max_3d_diameter, slice_diameters
from imaging.measurement.lesions import LesionMeasurement, measure_lesions

__all__ = ["LesionMeasurement", "SliceDiameters", "max_3d_diameter", "measure_lesions", "slice_diameters"]
