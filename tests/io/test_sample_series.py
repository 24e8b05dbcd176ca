"""Generated sample series: geometry against truth.json, DICOM and NIfTI agreeing voxel for voxel."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from imaging.io import Geometry, group_series, load_label_map, load_nifti, load_series, scan_archive

pytestmark = pytest.mark.sample_data


@pytest.mark.parametrize("patient, index", [("P002", 1), ("P003", 0)])
def test_series_geometry_matches_truth(sample_root, sample_truth, patient, index):
    tp = sample_truth[patient]["timepoints"][index]
    folder = sample_root / tp["folder"]
    (series,) = group_series(scan_archive(folder / "dicom").headers)
    assert series.series_uid == tp["series_instance_uid"]
    image = load_series(series)
    g = Geometry.of(image)
    grid = tp["grid"]
    assert list(g.size) == grid["size"]
    # 1e-3 mm: headers carry 6+ decimals
    np.testing.assert_allclose(g.spacing_mm, grid["spacing_mm"], atol=1e-3)
    np.testing.assert_allclose(g.origin_lps, grid["origin_lps"], atol=1e-3)
    np.testing.assert_allclose(g.direction, grid["direction"], atol=1e-6)

    nifti = load_nifti(folder / "image.nii.gz")
    assert Geometry.of(nifti).same_grid(g, tol_mm=1e-3)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(nifti), sitk.GetArrayFromImage(image))
    labels = load_label_map(folder / "mask.nii.gz", image)
    assert int(np.count_nonzero(sitk.GetArrayViewFromImage(labels))) > 0
