"""Snapshots: the long-axis slice in radiological orientation, true aspect, outline and diameters."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from imaging.io.geometry import Geometry
from imaging.measurement import measure_lesions
from imaging.measurement.snapshot import _view, snapshot_png
from tests.data_factory import ellipsoid_labels, make_image, rotation_matrix


def _scene(direction: np.ndarray):
    """A lesion in the middle and a bright marker on the patient's left (+L), whatever the grid."""
    size, spacing = (80, 60, 9), (0.8, 0.8, 3.0)
    labels = ellipsoid_labels(size, spacing, direction, [(1, (40, 30, 4), (12.0, 7.0, 9.0), 30.0)])
    hu = np.full(size[::-1], -800.0, dtype=np.float32)
    hu[sitk_array(labels) > 0] = 40.0
    geom = Geometry.of(labels)
    z, y, x = np.mgrid[0 : size[2], 0 : size[1], 0 : size[0]]
    lps = geom.index_to_lps(np.stack([x, y, z], axis=-1).astype(float))
    centre = geom.index_to_lps(np.array([40.0, 30.0, 4.0]))
    hu[(np.abs(lps[..., 0] - centre[0] - 20.0) < 4.0) & (np.abs(lps[..., 1] - centre[1]) < 4.0)] = 1000.0
    return make_image(hu, spacing, labels.GetOrigin(), direction), labels


def sitk_array(image):
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(image)


@pytest.mark.parametrize("name,direction", [("identity", np.eye(3)), ("x flipped", np.diag([-1.0, 1.0, -1.0])),
                                            ("transposed", np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]))])
def test_patient_left_is_on_the_image_right(tmp_path, name, direction):
    image, labels = _scene(direction)
    (m,) = measure_lesions(labels)
    path = snapshot_png(image, labels, m, tmp_path / f"{name}.png", window=(0.0, 2000.0), margin_mm=30.0)
    png = imread(path)
    assert png.ndim == 3 and png.shape[0] > 200 and png.shape[1] > 200
    grey = png[..., :3].mean(axis=2)
    # the marker (white, 1000 HU at the top of the window) is right of the middle, at mid-height
    bright = grey > 0.95
    rows, cols = np.nonzero(bright[int(0.2 * grey.shape[0]) :, :])
    assert cols.size > 50
    assert np.median(cols) > 0.6 * grey.shape[1], name


def test_orientation_letters_and_aspect():
    axial = _view(Geometry((10, 20, 3), (0.5, 1.0, 2.0), (0, 0, 0), tuple(np.eye(3).ravel())))
    assert axial.letters == ("R", "L", "A", "P") and not axial.transpose
    assert (axial.spacing_h, axial.spacing_v) == (0.5, 1.0)  # pixels drawn 0.5 mm wide, 1 mm high
    flipped = _view(Geometry((10, 20, 3), (0.5, 1.0, 2.0), (0, 0, 0), tuple(np.diag([-1.0, -1.0, 1.0]).ravel())))
    assert flipped.flip_h and flipped.flip_v and flipped.letters == ("R", "L", "A", "P")
    coronal = _view(Geometry((10, 20, 3), (1, 1, 1), (0, 0, 0), tuple(np.array([[1, 0, 0], [0, 0, -1], [0, -1, 0]], float).ravel())))
    assert coronal.letters == ("R", "L", "S", "I")
    sagittal = _view(Geometry((10, 20, 3), (1, 1, 1), (0, 0, 0), tuple(np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], float).ravel())))
    assert sagittal.letters == ("A", "P", "S", "I")
    oblique = _view(Geometry((10, 20, 3), (1, 1, 1), (0, 0, 0), tuple(rotation_matrix(10, 5, 20).ravel())))
    assert oblique.letters == ("R", "L", "A", "P")  # nearest orientation, no resampling


def test_errors(tmp_path):
    image, labels = _scene(np.eye(3))
    (m,) = measure_lesions(labels)
    other = make_image(np.zeros((3, 4, 4), np.uint16), (1, 1, 1), (0, 0, 0), np.eye(3))
    with pytest.raises(ValueError, match="not on the image's grid"):
        snapshot_png(image, other, m, tmp_path / "x.png")
