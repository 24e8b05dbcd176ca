"""Series assembly on generated series of known geometry.

Tolerance: 1e-3 mm on origin and spacing and 1e-6 on direction cosines; the
headers are written with 6-10 decimals, so anything larger is a real error.
Voxel values are compared exactly wherever no interpolation happens.
"""

from __future__ import annotations

import math

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from imaging.io import (
    Geometry,
    GeometryError,
    SeriesError,
    group_series,
    load_series,
    read_series,
    scan_archive,
)
from tests.data_factory import rotation_matrix, write_series
from tests.io.io_factory import volume_slices, write_datasets

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
    write_series(tmp_path, hu, spacing, origin, direction, seed=3)  # shuffled names, reversed InstanceNumbers
    image = load_series(sorted(tmp_path.iterdir()))
    g = Geometry.of(image)
    assert g.size == (SHAPE_ZYX[2], SHAPE_ZYX[1], SHAPE_ZYX[0])
    np.testing.assert_allclose(g.spacing_mm, spacing, atol=1e-3)
    np.testing.assert_allclose(g.origin_lps, origin, atol=1e-3)
    np.testing.assert_allclose(g.direction_matrix, direction, atol=1e-6)
    # Rescale applied, slices in position order whatever the file names and InstanceNumbers.
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), hu)
    assert image.GetPixelID() == sitk.sitkInt16


def test_threaded_and_serial_fill_agree(tmp_path):
    hu = np.random.default_rng(4).integers(-1000, 2000, size=(20, 9, 11)).astype(np.int16)
    write_series(tmp_path, hu, (1.0, 1.0, 2.0), (0, 0, 0), np.eye(3))
    files = sorted(tmp_path.iterdir())
    a = sitk.GetArrayFromImage(load_series(files, workers=1))
    b = sitk.GetArrayFromImage(load_series(files, workers=4))
    np.testing.assert_array_equal(a, hu)
    np.testing.assert_array_equal(b, hu)


def test_missing_slice_is_an_error_naming_the_gap(tmp_path):
    direction, spacing = np.eye(3), (1.0, 1.0, 2.0)
    paths = write_series(tmp_path, _volume(), spacing, (0, 0, 0), direction)
    # drop the file whose position is z = 6 mm (the 4th slice)
    victim = next(p for p in paths if abs(float(pydicom.dcmread(p).ImagePositionPatient[2]) - 6.0) < 1e-6)
    victim.unlink()
    with pytest.raises(GeometryError, match=r"missing slice.*gap of 4\.000 mm"):
        load_series(sorted(tmp_path.iterdir()))


def test_non_uniform_spacing_reports_the_actual_spacings(tmp_path):
    z = [0.0, 2.0, 4.0, 6.5, 8.5, 10.5, 12.5]
    write_series(tmp_path, _volume(), (1.0, 1.0, 2.0), (0, 0, 0), np.eye(3), positions=[np.array([0, 0, v]) for v in z])
    with pytest.raises(GeometryError, match=r"non-uniform slice spacing: \[2\.0, 2\.5\] mm"):
        load_series(sorted(tmp_path.iterdir()))


def test_conflicting_duplicate_position_is_an_error(tmp_path):
    positions = [np.array([0.0, 0.0, 2.0 * k]) for k in range(SHAPE_ZYX[0])]
    positions[4] = positions[3].copy()  # two different images at z = 6, none at z = 8
    write_series(tmp_path, _volume(), (1.0, 1.0, 2.0), (0, 0, 0), np.eye(3), positions=positions)
    with pytest.raises(GeometryError, match="duplicate slice position"):
        load_series(sorted(tmp_path.iterdir()))


def test_duplicate_with_identical_pixels_is_dropped_and_reported(tmp_path):
    hu = _volume()
    paths = write_series(tmp_path, hu, (1.0, 1.0, 2.0), (0, 0, 0), np.eye(3))
    copy = pydicom.dcmread(paths[2])
    copy.SOPInstanceUID = pydicom.uid.generate_uid()
    copy.file_meta.MediaStorageSOPInstanceUID = copy.SOPInstanceUID
    copy.save_as(tmp_path / "copy_of_a_slice", enforce_file_format=True)
    loaded = read_series(sorted(tmp_path.iterdir()))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(loaded.image), hu)
    assert any("dropped 1 duplicate slice" in p for p in loaded.problems), loaded.problems


def test_conflicting_duplicate_at_a_regular_position_is_refused(tmp_path):
    hu = _volume()
    paths = write_series(tmp_path, hu, (1.0, 1.0, 2.0), (0, 0, 0), np.eye(3))
    copy = pydicom.dcmread(paths[2])
    copy.SOPInstanceUID = pydicom.uid.generate_uid()
    copy.file_meta.MediaStorageSOPInstanceUID = copy.SOPInstanceUID
    arr = copy.pixel_array.copy()
    arr[0, 0] += 1
    copy.PixelData = arr.tobytes()
    copy.save_as(tmp_path / "altered_copy", enforce_file_format=True)
    with pytest.raises(GeometryError, match="duplicate slice position with different pixel data"):
        load_series(sorted(tmp_path.iterdir()))


def test_inconsistent_rows_and_columns_are_refused_naming_the_sizes(tmp_path):
    hu = _volume()
    slices = volume_slices(hu, (1.0, 1.0, 2.0), (0, 0, 0), np.eye(3), series_uid="1.2.826.0.1.99")
    odd = volume_slices(np.zeros((1, 6, 10), np.int16), (1.0, 1.0, 2.0), (0, 0, 14.0), np.eye(3), series_uid="1.2.826.0.1.99",
                        study_uid=slices[0].StudyInstanceUID)
    paths = write_datasets(tmp_path, slices + odd)
    with pytest.raises(GeometryError, match=r"inconsistent image size.*10x12.*10x6|10x6.*10x12"):
        load_series(paths)


def test_rescale_slope_and_intercept_are_applied_per_slice(tmp_path):
    hu = _volume().astype(float)
    slices = volume_slices(hu, (1.0, 1.0, 2.0), (0, 0, 0), np.eye(3), intercept=-1024.0)
    # A second intercept on some slices: values must still come out as hu.
    for k in (1, 4):
        stored = np.round(hu[k] + 2000).astype(np.uint16)
        slices[k].RescaleIntercept = "-2000"
        slices[k].PixelData = stored.tobytes()
    loaded = read_series(write_datasets(tmp_path, slices))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(loaded.image), hu)
    assert any("vary between slices" in p for p in loaded.problems)


def test_fractional_slope_gives_float32_values(tmp_path):
    pet = np.random.default_rng(5).uniform(0, 40, size=SHAPE_ZYX)
    slices = volume_slices(pet, (2.0, 2.0, 3.0), (0, 0, 0), np.eye(3), intercept=0.0, slope=0.001)
    image = load_series(write_datasets(tmp_path, slices))
    assert image.GetPixelID() == sitk.sitkFloat32
    # stored = round(value / 0.001): values are exact to half a quantum
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), pet, atol=0.0005 + 1e-6)


def test_values_beyond_int16_widen_to_int32(tmp_path):
    hu = _volume().astype(np.int32)
    hu[3, 4, 5] = 40000  # e.g. a metal implant on a 16-bit unsigned scanner
    slices = volume_slices(hu, (1.0, 1.0, 2.0), (0, 0, 0), np.eye(3), intercept=-1024.0)
    image = load_series(write_datasets(tmp_path, slices))
    assert image.GetPixelID() == sitk.sitkInt32
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), hu)


def _tilted_truth(tilt_deg: float, nz: int = 9, ny: int = 14, nx: int = 12, table_step: float = 2.0):
    """A CT gantry tilt as scanners write it: column cosine tilted, table moving along z.

    Pixel values are a linear function of the LPS position, which bilinear
    interpolation reproduces exactly, so the resampled values can be checked
    against the function itself.
    """
    t = math.radians(tilt_deg)
    row_cos = np.array([1.0, 0.0, 0.0])
    col_cos = np.array([0.0, math.cos(t), math.sin(t)])
    spacing = (0.8, 0.9)  # x (columns), y (rows)
    origin = np.array([-4.0, -6.0, 10.0])
    positions = [origin + np.array([0.0, 0.0, k * table_step]) for k in range(nz)]
    coeff = np.array([3.0, -2.0, 5.0])

    def f(points):
        return points @ coeff + 100.0

    j, i = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    hu = np.empty((nz, ny, nx))
    for k, p in enumerate(positions):
        pts = p + (i[..., None] * spacing[0]) * row_cos + (j[..., None] * spacing[1]) * col_cos
        hu[k] = f(pts)
    direction = np.stack([row_cos, col_cos, np.cross(row_cos, col_cos)], axis=1)
    return hu, positions, direction, spacing, f


@pytest.mark.parametrize("tilt_deg", [12.0, -20.0])
def test_gantry_tilt_is_resampled_onto_an_orthogonal_grid(tmp_path, tilt_deg):
    hu, positions, direction, (sx, sy), f = _tilted_truth(tilt_deg)
    nz, ny, nx = hu.shape
    slices = volume_slices(np.round(hu), (sx, sy, 1.0), positions[0], direction, positions=positions)
    loaded = read_series(write_datasets(tmp_path, slices))
    assert any("gantry tilt" in p and f"{abs(tilt_deg):.2f} deg" in p and "resampled" in p for p in loaded.problems)

    g = loaded.geometry
    t = math.radians(tilt_deg)
    drift = (nz - 1) * 2.0 * math.sin(t)  # in-plane travel of the slice origins along the column cosine, mm
    assert g.size == (nx, ny + math.ceil(abs(drift) / sy - 1e-6), nz)
    np.testing.assert_allclose(g.spacing_mm, (sx, sy, 2.0 * math.cos(t)), atol=1e-3)
    np.testing.assert_allclose(g.direction_matrix, direction, atol=1e-6)
    expected_origin = positions[0] + min(0.0, drift) * direction[:, 1]
    np.testing.assert_allclose(g.origin_lps, expected_origin, atol=1e-3)

    values = sitk.GetArrayFromImage(loaded.image).astype(float)
    k, j, i = np.meshgrid(np.arange(nz), np.arange(g.size[1]), np.arange(nx), indexing="ij")
    points = g.index_to_lps(np.stack([i, j, k], axis=-1).astype(float))
    # Which output voxels were acquired: in-plane coordinates within their slice's field of view.
    slice_origin = np.asarray(positions)[k]
    v_in = np.einsum("...c,c->...", points - slice_origin, direction[:, 1]) / sy
    inside = (v_in >= -1e-6) & (v_in <= ny - 1 + 1e-6)
    # Each slice is shifted by a fraction of a row, so ny - 1 or ny of its rows land on output rows.
    assert nz * (ny - 1) * nx <= inside.sum() <= nz * ny * nx
    # Tolerance 1 HU: stored values are rounded (0.5) and the interpolated result is rounded again (0.5).
    np.testing.assert_allclose(values[inside], f(points[inside]), atol=1.0 + 1e-6)
    assert np.all(values[~inside] == values.min())


def test_gantry_tilt_refused_on_request(tmp_path):
    hu, positions, direction, (sx, sy), _ = _tilted_truth(15.0)
    slices = volume_slices(np.round(hu), (sx, sy, 1.0), positions[0], direction, positions=positions)
    with pytest.raises(GeometryError, match=r"sheared stack \(gantry tilt 15\.00 deg\).*refused"):
        load_series(write_datasets(tmp_path, slices), tilt="refuse")


def test_sheared_axial_stack_is_resampled(tmp_path):
    # The other way to write a tilt: axial cosines, slice origins sliding in y.
    shift = 2.0 * np.tan(np.deg2rad(15.0))
    positions = [np.array([0.0, k * shift, 2.0 * k]) for k in range(SHAPE_ZYX[0])]
    write_series(tmp_path, _volume(), (1.0, 1.0, 2.0), (0, 0, 0), np.eye(3), positions=positions)
    loaded = read_series(sorted(tmp_path.iterdir()))
    assert any("sheared stack (gantry tilt 15.00 deg)" in p for p in loaded.problems)
    g = loaded.geometry
    assert g.size == (10, 12 + math.ceil(6 * shift - 1e-6), 7)
    np.testing.assert_allclose(g.spacing_mm, (1.0, 1.0, 2.0), atol=1e-3)


def test_implausible_shear_is_refused(tmp_path):
    shift = 2.0 * np.tan(np.deg2rad(50.0))
    positions = [np.array([0.0, k * shift, 2.0 * k]) for k in range(SHAPE_ZYX[0])]
    write_series(tmp_path, _volume(), (1.0, 1.0, 2.0), (0, 0, 0), np.eye(3), positions=positions)
    with pytest.raises(GeometryError, match="implausible shear of 50.0 deg"):
        load_series(sorted(tmp_path.iterdir()))


def test_irregular_in_plane_wander_is_refused(tmp_path):
    positions = [np.array([0.0, 0.0, 2.0 * k]) for k in range(SHAPE_ZYX[0])]
    positions[3] = positions[3] + np.array([0.0, 1.5, 0.0])  # one slice out of line
    write_series(tmp_path, _volume(), (1.0, 1.0, 2.0), (0, 0, 0), np.eye(3), positions=positions)
    with pytest.raises(GeometryError, match="irregular stack"):
        load_series(sorted(tmp_path.iterdir()))


def test_two_interleaved_series_in_one_folder_are_separated(tmp_path):
    hu_a, hu_b = _volume(1), _volume(2)
    a = write_series(tmp_path, hu_a, (1.0, 1.0, 2.0), (0, 0, 0), np.eye(3), seed=1, series_uid="1.2.3.1")
    b = write_series(tmp_path, hu_b, (0.5, 0.5, 3.0), (10, 0, 0), np.eye(3), seed=2, series_uid="1.2.3.2")
    (tmp_path / "notes.txt").write_text("not dicom")
    scan = scan_archive(tmp_path)
    assert len(scan.headers) == len(a) + len(b)
    assert [p.name for p, _ in scan.skipped] == ["notes.txt"]
    series = {s.series_uid: s for s in group_series(scan.headers)}
    assert set(series) == {"1.2.3.1", "1.2.3.2"}
    img = load_series(series["1.2.3.2"])
    np.testing.assert_allclose(img.GetSpacing(), (0.5, 0.5, 3.0), atol=1e-6)
    np.testing.assert_allclose(img.GetOrigin(), (10, 0, 0), atol=1e-3)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), hu_b)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(load_series(series["1.2.3.1"])), hu_a)
    # The two series' files given as one are refused, naming the reason.
    with pytest.raises(SeriesError, match="2 different series"):
        load_series(a + b)


def test_single_slice_takes_its_thickness_as_spacing(tmp_path):
    paths = write_series(tmp_path, _volume()[:1], (0.7, 0.7, 3.0), (1, 2, 3), np.eye(3))
    loaded = read_series(paths)
    assert loaded.geometry.size == (10, 12, 1)
    np.testing.assert_allclose(loaded.geometry.spacing_mm, (0.7, 0.7, 3.0), atol=1e-6)
    assert any("single slice" in p for p in loaded.problems)


def test_a_non_dicom_file_in_a_series_names_the_file(tmp_path):
    paths = write_series(tmp_path, _volume(), (1.0, 1.0, 2.0), (0, 0, 0), np.eye(3))
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\x00" * 300)
    from imaging.io import DicomFileError

    with pytest.raises(DicomFileError, match="junk.dcm: not a DICOM file"):
        load_series(paths + [junk])


def test_truncated_pixel_data_names_the_file(tmp_path):
    paths = write_series(tmp_path, _volume(), (1.0, 1.0, 2.0), (0, 0, 0), np.eye(3))
    data = paths[0].read_bytes()
    paths[0].write_bytes(data[:-50])
    from imaging.io import ImagingError

    with pytest.raises(ImagingError, match=paths[0].name):
        load_series(paths)
