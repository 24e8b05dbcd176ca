"""Series assembly on generated series of known geometry.

Tolerance: 1e-3 mm on origin and spacing and 1e-6 on direction cosines; the
headers are written with 6-8 decimals, so anything larger is a real error.
"""

from __future__ import annotations

import numpy as np
import pytest

from imaging.io import Geometry, GeometryError, group_series, load_series, scan_archive
from tests.data_factory import rotation_matrix, write_series

SHAPE_ZYX = (7, 12, 10)  # small: geometry is what is tested


def _volume(seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-1000, 2000, size=SHAPE_ZYX).astype(np.int16)


GRIDS = {
    "axial-identity": (np.eye(3), (0.7, 0.7, 2.5)),
    "anisotropic": (np.eye(3), (0.5, 0.9, 5.0)),
    "flipped-y-and-z": (np.diag([1.0, -1.0, -1.0]), (0.8, 0.8, 3.0)),
    "oblique": (rotation_matrix(12.0, -7.0, 25.0), (0.6, 0.75, 1.5)),
    "coronal": (np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]]), (0.9, 0.9, 4.0)),
}


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_geometry_and_values(tmp_path, name):
    direction, spacing = GRIDS[name]
    assert np.linalg.det(direction) > 0
    hu = _volume()
    origin = (-120.5, 33.25, -410.0)
    write_series(tmp_path, hu, spacing, origin, direction, seed=3)
    image = load_series(sorted(tmp_path.iterdir()))
    g = Geometry.of(image)
    assert g.size == (SHAPE_ZYX[2], SHAPE_ZYX[1], SHAPE_ZYX[0])
    np.testing.assert_allclose(g.spacing_mm, spacing, atol=1e-3)
    np.testing.assert_allclose(g.origin_lps, origin, atol=1e-3)
    np.testing.assert_allclose(g.direction_matrix, direction, atol=1e-6)
    # Rescale applied, slices in position order whatever the file names and InstanceNumbers.
    import SimpleITK as sitk

    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), hu)


def test_missing_slice_is_an_error_naming_the_gap(tmp_path):
    direction, spacing = np.eye(3), (1.0, 1.0, 2.0)
    paths = write_series(tmp_path, _volume(), spacing, (0, 0, 0), direction)
    # drop the file whose position is z = 6 mm (the 4th slice)
    import pydicom

    victim = next(p for p in paths if abs(float(pydicom.dcmread(p).ImagePositionPatient[2]) - 6.0) < 1e-6)
    victim.unlink()
    with pytest.raises(GeometryError, match=r"missing slice.*gap of 4\.000 mm"):
        load_series(sorted(tmp_path.iterdir()))


def test_duplicate_position_is_an_error(tmp_path):
    positions = [np.array([0.0, 0.0, 2.0 * k]) for k in range(SHAPE_ZYX[0])]
    positions[4] = positions[3].copy()
    write_series(tmp_path, _volume(), (1.0, 1.0, 2.0), (0, 0, 0), np.eye(3), positions=positions)
    with pytest.raises(GeometryError, match="duplicate slice position"):
        load_series(sorted(tmp_path.iterdir()))


def test_gantry_tilt_is_refused_not_stacked(tmp_path):
    # A 15-degree gantry tilt: each slice origin slides 2 mm * tan(15) in y.
    shift = 2.0 * np.tan(np.deg2rad(15.0))
    positions = [np.array([0.0, k * shift, 2.0 * k]) for k in range(SHAPE_ZYX[0])]
    write_series(tmp_path, _volume(), (1.0, 1.0, 2.0), (0, 0, 0), np.eye(3), positions=positions)
    with pytest.raises(GeometryError, match="sheared stack"):
        load_series(sorted(tmp_path.iterdir()))


def test_two_interleaved_series_in_one_folder_are_separated(tmp_path):
    a = write_series(tmp_path, _volume(1), (1.0, 1.0, 2.0), (0, 0, 0), np.eye(3), seed=1, series_uid="1.2.3.1")
    b = write_series(tmp_path, _volume(2), (0.5, 0.5, 3.0), (10, 0, 0), np.eye(3), seed=2, series_uid="1.2.3.2")
    (tmp_path / "notes.txt").write_text("not dicom")
    scan = scan_archive(tmp_path)
    assert len(scan.headers) == len(a) + len(b)
    assert [p.name for p, _ in scan.skipped] == ["notes.txt"]
    series = {s.series_uid: s for s in group_series(scan.headers)}
    assert set(series) == {"1.2.3.1", "1.2.3.2"}
    img = load_series(series["1.2.3.2"])
    np.testing.assert_allclose(img.GetSpacing(), (0.5, 0.5, 3.0), atol=1e-6)
