"""Masks of every kind land on their image's grid: NIfTI/NRRD label maps, DICOM SEG, RTSTRUCT."""

from __future__ import annotations

import logging
import math

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from matplotlib.path import Path as MplPath

from imaging.io import Geometry, MaskError, load_label_map, load_series, read_label_map
from imaging.io.rtstruct import fill_polygons
from tests.data_factory import make_image, rotation_matrix
from tests.io.io_factory import rtstruct, save, volume_slices, write_datasets

SHAPE = (7, 40, 44)


def _series(tmp_path, direction=None, spacing=(0.7, 0.8, 2.5), origin=(-12.0, -15.0, 40.0)):
    direction = np.eye(3) if direction is None else direction
    hu = np.zeros(SHAPE, dtype=np.int16)
    paths = write_datasets(tmp_path / "ct", volume_slices(hu, spacing, origin, direction))
    return paths, load_series(paths)


def _ellipse_contours(g: Geometry, centre_index, a_mm, b_mm, theta_deg, slices, n_points=96):
    """Closed contours (LPS) tracing an ellipse in the image's slice planes."""
    d = g.direction_matrix
    t = math.radians(theta_deg)
    e1 = math.cos(t) * d[:, 0] + math.sin(t) * d[:, 1]
    e2 = -math.sin(t) * d[:, 0] + math.cos(t) * d[:, 1]
    phi = np.linspace(0, 2 * np.pi, n_points, endpoint=False)
    contours = []
    for k in slices:
        c = g.index_to_lps(np.array([centre_index[0], centre_index[1], k], dtype=float))
        contours.append(c + np.outer(a_mm * np.cos(phi), e1) + np.outer(b_mm * np.sin(phi), e2))
    return contours


def _truth_from_polygon(g: Geometry, contour_lps):
    """Pixel-centre inclusion of one contour by matplotlib, in the same in-plane mm frame."""
    nx, ny, _ = g.size
    sx, sy, _ = g.spacing_mm
    idx = g.lps_to_index(contour_lps)
    poly = MplPath(np.stack([idx[:, 0] * sx, idx[:, 1] * sy], axis=1))
    j, i = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    return poly.contains_points(np.stack([i.ravel() * sx, j.ravel() * sy], axis=1)).reshape(ny, nx), int(round(idx[0, 2]))


@pytest.mark.parametrize("direction", [np.eye(3), rotation_matrix(15.0, -10.0, 30.0)], ids=["axial", "oblique"])
def test_rtstruct_ellipse_is_filled_in_physical_space(tmp_path, direction):
    paths, image = _series(tmp_path, direction=direction)
    g = Geometry.of(image)
    a, b = 9.0, 5.0
    contours = _ellipse_contours(g, (20.3, 18.7), a, b, 25.0, slices=[2, 3, 4])
    rt = save(rtstruct([pydicom.dcmread(paths[0])], [(3, "GTV", contours)]), tmp_path / "rt.dcm")
    labels = load_label_map(rt, image)
    assert Geometry.of(labels).same_grid(g, tol_mm=1e-9)
    arr = sitk.GetArrayFromImage(labels)
    assert set(np.unique(arr)) == {0, 3}
    for contour in contours:
        truth, k = _truth_from_polygon(g, contour)
        np.testing.assert_array_equal(arr[k] == 3, truth)
        # Area against the analytic ellipse: 96-gon and pixel digitisation, within 6 %.
        area = truth.sum() * g.spacing_mm[0] * g.spacing_mm[1]
        assert abs(area - math.pi * a * b) / (math.pi * a * b) < 0.06
    assert not arr[[0, 1, 5, 6]].any()


def test_rtstruct_holes_rois_and_selection(tmp_path):
    paths, image = _series(tmp_path)
    g = Geometry.of(image)
    outer = _ellipse_contours(g, (20, 20), 12.0, 12.0, 0.0, [3])[0]
    hole = _ellipse_contours(g, (20, 20), 4.0, 4.0, 0.0, [3])[0]
    other = _ellipse_contours(g, (8, 8), 3.0, 3.0, 0.0, [3])[0]
    ref = [pydicom.dcmread(paths[0])]
    rt = save(rtstruct(ref, [(1, "Ring", [outer, hole]), (7, "Node", [other])]), tmp_path / "rt.dcm")
    arr = sitk.GetArrayFromImage(load_label_map(rt, image))
    centre = np.round(g.lps_to_index(g.index_to_lps(np.array([20.0, 20.0, 3.0])))).astype(int)
    assert arr[3, centre[1], centre[0]] == 0  # the inner contour cuts a hole
    assert arr[3, centre[1], centre[0] + 11] == 1  # between the two circles (11 px * 0.7 mm = 7.7 mm out)
    assert arr[3, 8, 8] == 7
    only_node = sitk.GetArrayFromImage(load_label_map(rt, image, roi_names=["node"]))
    assert set(np.unique(only_node)) == {0, 7}
    with pytest.raises(MaskError, match="no ROI named 'Liver'"):
        load_label_map(rt, image, roi_names=["Liver"])


def test_rtstruct_outside_the_image_is_an_error(tmp_path):
    paths, image = _series(tmp_path)
    g = Geometry.of(image)
    far = _ellipse_contours(g, (20, 20), 5.0, 5.0, 0.0, [3])[0] + np.array([0.0, 0.0, 500.0])
    rt = save(rtstruct([pydicom.dcmread(paths[0])], [(1, "Elsewhere", [far])]), tmp_path / "rt.dcm")
    with pytest.raises(MaskError, match="do not overlap the image"):
        load_label_map(rt, image)


def test_rtstruct_drawn_on_another_orientation_is_refused(tmp_path):
    paths, image = _series(tmp_path)
    g = Geometry.of(image)
    tilted = _ellipse_contours(g, (20, 20), 5.0, 5.0, 0.0, [3])[0]
    tilted[:, 2] += np.linspace(0, 6.0, len(tilted))  # not in one slice plane
    rt = save(rtstruct([pydicom.dcmread(paths[0])], [(1, "Tilted", [tilted])]), tmp_path / "rt.dcm")
    with pytest.raises(MaskError, match="not in a slice plane"):
        load_label_map(rt, image)


def test_fill_polygons_half_open_edges_share_no_pixel():
    left = np.array([[0.0, 0.0], [3.0, 0.0], [3.0, 4.0], [0.0, 4.0]])
    right = left + np.array([3.0, 0.0])
    a = fill_polygons([left], (6, 8), (1.0, 1.0))
    b = fill_polygons([right], (6, 8), (1.0, 1.0))
    assert not (a & b).any()
    assert a.sum() == 3 * 4 and b.sum() == 3 * 4  # columns 0-2 and 3-5, rows 0-3


def test_dicom_seg_lands_on_its_image(tmp_path):
    hd = pytest.importorskip("highdicom")
    from pydicom.sr.codedict import codes

    paths, image = _series(tmp_path, direction=rotation_matrix(0.0, 0.0, 20.0))
    g = Geometry.of(image)
    sources = sorted((pydicom.dcmread(p) for p in paths), key=lambda ds: float(np.dot(ds.ImagePositionPatient, g.direction_matrix[:, 2])))
    truth = np.zeros(SHAPE, dtype=np.uint8)
    truth[2:4, 10:20, 12:25] = 1
    truth[5, 30:35, 5:9] = 2
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n, segment_label=f"lesion {n}", segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for n in (1, 2)
    ]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=truth, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=20, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="test", manufacturer_model_name="test", software_versions="1",
        device_serial_number="1",
    )
    path = tmp_path / "seg.dcm"
    seg.save_as(path)
    loaded = read_label_map(path, image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(loaded.image), truth)
    assert Geometry.of(loaded.image).same_grid(g)


def test_nifti_label_map_on_another_grid_is_resampled_and_logged(tmp_path, caplog):
    _, image = _series(tmp_path)
    g = Geometry.of(image)
    # The same physical block, on a grid twice as fine in x and y.
    fine = np.zeros((SHAPE[0], SHAPE[1] * 2, SHAPE[2] * 2), dtype=np.uint8)
    fine[2:5, 20:40, 30:50] = 4
    origin = g.index_to_lps(np.array([-0.25, -0.25, 0.0]))
    label = make_image(fine, (0.35, 0.4, 2.5), origin, g.direction_matrix)
    sitk.WriteImage(label, str(tmp_path / "fine.nrrd"))
    with caplog.at_level(logging.WARNING):
        loaded = read_label_map(tmp_path / "fine.nrrd", image)
    assert any("nearest neighbour" in p for p in loaded.problems)
    assert "resampled with nearest neighbour" in caplog.text
    arr = sitk.GetArrayFromImage(loaded.image)
    expected = np.zeros(SHAPE, dtype=np.uint16)
    expected[2:5, 10:20, 15:25] = 4
    np.testing.assert_array_equal(arr, expected)


def test_label_map_that_misses_its_image_is_an_error(tmp_path):
    _, image = _series(tmp_path)
    far = make_image(np.zeros((3, 4, 5), np.uint8), (1.0, 1.0, 1.0), (900.0, 900.0, 900.0), np.eye(3))
    sitk.WriteImage(far, str(tmp_path / "far.nii.gz"))
    with pytest.raises(MaskError, match="does not overlap its image"):
        load_label_map(tmp_path / "far.nii.gz", image)


def test_label_map_reports_sform_qform_trouble(tmp_path):
    _, image = _series(tmp_path)
    g = Geometry.of(image)
    ras = np.diag([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    affine[:3, :3] = ras @ g.direction_matrix @ np.diag(g.spacing_mm)
    affine[:3, 3] = ras @ np.asarray(g.origin_lps)
    data = np.zeros(g.size, dtype=np.uint8)
    data[10:12, 10:12, 3] = 1
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=1)
    moved = affine.copy()
    moved[:3, 3] += [2.0, 0.0, 0.0]
    img.set_qform(moved, code=1)
    nib.save(img, tmp_path / "m.nii.gz")
    loaded = read_label_map(tmp_path / "m.nii.gz", image)
    assert any("disagree by up to 2.000 mm" in p for p in loaded.problems)


def test_rtstruct_with_a_slice_skipped_inside_a_roi_says_its_volume_is_too_small(tmp_path):
    """Contours on slices 2 and 4, none on 3 (drawn on every other slice, or on a coarser grid than the image):
    slice 3 stays empty, and the problems say so, naming the ROI and the slice."""
    from imaging.io import read_label_map

    paths, image = _series(tmp_path)
    g = Geometry.of(image)
    contours = _ellipse_contours(g, (20.3, 18.7), 9.0, 5.0, 25.0, slices=[2, 4])
    rt = save(rtstruct([pydicom.dcmread(paths[0])], [(3, "GTV", contours)]), tmp_path / "rt.dcm")
    loaded = read_label_map(rt, image)
    arr = sitk.GetArrayFromImage(loaded.image)
    assert arr[2].any() and arr[4].any() and not arr[3].any()
    (problem,) = [m for m in loaded.problems if "none on 1 slice(s)" in m]
    assert "ROI 3 (GTV)" in problem and "(3)" in problem
