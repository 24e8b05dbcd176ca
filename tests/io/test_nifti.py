"""RAS (NIfTI) <-> LPS (this project) at the boundary, pinned against nibabel."""

from __future__ import annotations

import nibabel as nib
import numpy as np
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
