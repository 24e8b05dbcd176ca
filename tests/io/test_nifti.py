"""RAS (NIfTI) <-> LPS (this project) at the boundary, pinned against nibabel."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from imaging.io import Geometry, load_nifti, save_nifti
from tests.data_factory import make_image, rotation_matrix


def test_nibabel_affine_is_read_as_lps(tmp_path):
    # An oblique, anisotropic RAS affine written by nibabel.
    rot = rotation_matrix(5.0, -10.0, 20.0)
    spacing = np.array([0.8, 1.2, 3.0])
    affine = np.eye(4)
    affine[:3, :3] = rot * spacing
    affine[:3, 3] = [12.0, -30.0, 45.0]
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # nibabel order: (i, j, k)
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    path = tmp_path / "x.nii.gz"
    nib.save(img, path)

    loaded = load_nifti(path)
    g = Geometry.of(loaded)
    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(g.spacing_mm, spacing, atol=1e-5)
    np.testing.assert_allclose(g.origin_lps, ras_to_lps @ affine[:3, 3], atol=1e-4)
    np.testing.assert_allclose(g.direction_matrix, ras_to_lps @ rot, atol=1e-5)
    # voxel (i, j, k) of nibabel is index (x, y, z) of SimpleITK
    arr = sitk.GetArrayFromImage(loaded)  # (z, y, x)
    assert arr[5, 3, 2] == data[2, 3, 5]
    # the same physical point: voxel (2, 3, 5)
    p_ras = affine @ np.array([2, 3, 5, 1.0])
    np.testing.assert_allclose(loaded.TransformIndexToPhysicalPoint((2, 3, 5)), ras_to_lps @ p_ras[:3], atol=1e-4)


def test_round_trip_keeps_geometry_and_values(tmp_path):
    direction = rotation_matrix(0.0, 8.0, -15.0)
    arr = np.random.default_rng(0).integers(-1024, 3000, size=(6, 7, 8)).astype(np.int16)
    image = make_image(arr, (0.7, 0.9, 2.5), (-100.0, 50.0, 20.0), direction)
    path = tmp_path / "rt.nii.gz"
    save_nifti(image, path)
    back = load_nifti(path)
    assert Geometry.of(back).same_grid(Geometry.of(image), tol_mm=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), arr)


def _nifti(tmp_path, data, affine, *, qform=None, name="x.nii.gz"):
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=2)
    img.set_qform(affine if qform is None else qform, code=1)
    path = tmp_path / name
    nib.save(img, path)
    return path


def test_sform_qform_disagreement_is_reported_in_mm(tmp_path):
    from imaging.io import read_nifti

    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    shifted = affine.copy()
    shifted[:3, 3] = [0.0, 3.0, 4.0]  # 5 mm apart everywhere
    path = _nifti(tmp_path, np.zeros((4, 5, 6), np.int16), affine, qform=shifted)
    loaded = read_nifti(path)
    (problem,) = loaded.problems
    assert str(path) in problem and "disagree by up to 5.000 mm" in problem
    assert "sform" in problem and "qform" in problem
    # Agreeing affines are silent.
    quiet = _nifti(tmp_path, np.zeros((4, 5, 6), np.int16), affine, name="ok.nii.gz")
    assert read_nifti(quiet).problems == ()


def test_four_d_input_is_refused_unless_a_volume_is_chosen(tmp_path):
    from imaging.io import NiftiError

    data = np.arange(3 * 4 * 5 * 2, dtype=np.int16).reshape(3, 4, 5, 2)
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    path = _nifti(tmp_path, data, affine, name="dyn.nii.gz")
    with pytest.raises(NiftiError, match=r"4-D image of 2 volumes.*volume_index"):
        load_nifti(path)
    second = load_nifti(path, volume_index=1)
    assert second.GetSize() == (3, 4, 5)
    np.testing.assert_allclose(second.GetSpacing(), (0.8, 0.9, 2.5), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(second), data[..., 1].transpose(2, 1, 0))
    with pytest.raises(NiftiError, match="out of range"):
        load_nifti(path, volume_index=2)


def test_dicom_to_nifti_to_volume_round_trip(tmp_path):
    from imaging.io import load_series
    from tests.data_factory import write_series

    hu = np.random.default_rng(9).integers(-1024, 3000, size=(6, 9, 8)).astype(np.int16)
    direction = rotation_matrix(20.0, -10.0, 35.0)
    write_series(tmp_path / "dcm", hu, (0.6, 0.8, 2.0), (-33.3, 12.5, 101.0), direction)
    image = load_series(sorted((tmp_path / "dcm").iterdir()))
    save_nifti(image, tmp_path / "vol.nii.gz")
    back = load_nifti(tmp_path / "vol.nii.gz")
    # 1e-3 mm: NIfTI stores its affine as float32 (~1e-5 mm here).
    assert Geometry.of(back).same_grid(Geometry.of(image), tol_mm=1e-3)
    np.testing.assert_allclose(Geometry.of(back).direction_matrix, direction, atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), hu)
    # nibabel agrees on the RAS position of a voxel.
    nib_img = nib.load(tmp_path / "vol.nii.gz")
    p_ras = nib_img.affine @ np.array([2, 3, 4, 1.0])
    np.testing.assert_allclose(image.TransformIndexToPhysicalPoint((2, 3, 4)), np.diag([-1, -1, 1]) @ p_ras[:3], atol=1e-3)
