"""Enhanced multi-frame DICOM loads into the same LPS volume as the single-frame series it stands for.

Tolerances as for single-frame series: 1e-3 mm on origin and spacing, 1e-6 on
direction cosines; values exact (stored integers, integral rescale).
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from imaging.io import Geometry, GeometryError, group_series, load_series, read_header, scan_archive
from tests.data_factory import rotation_matrix
from tests.io.io_factory import enhanced_ct, save, volume_slices, write_datasets

SHAPE = (6, 9, 11)


def _truth(seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 2500, size=SHAPE).astype(np.int16)


def test_enhanced_ct_with_shuffled_frames_and_per_frame_rescale(tmp_path):
    hu = _truth()
    direction = rotation_matrix(10.0, 5.0, -30.0)
    spacing, origin = (0.7, 0.9, 2.5), (12.0, -40.0, 105.5)
    intercepts = [-1024.0, -1024.0, -2048.0, -1024.0, -1000.0, -1024.0]
    path = save(enhanced_ct(hu, spacing, origin, direction, intercepts=intercepts), tmp_path / "enhanced.dcm")

    header = read_header(path)
    assert header.is_multiframe and len(header.frames) == SHAPE[0] and header.is_image
    image = load_series([path])
    g = Geometry.of(image)
    assert g.size == (SHAPE[2], SHAPE[1], SHAPE[0])
    np.testing.assert_allclose(g.spacing_mm, spacing, atol=1e-3)
    np.testing.assert_allclose(g.origin_lps, origin, atol=1e-3)
    np.testing.assert_allclose(g.direction_matrix, direction, atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), hu)


def test_legacy_converted_enhanced_ct_matches_its_single_frame_source(tmp_path):
    hd = pytest.importorskip("highdicom")
    hu = _truth(4)
    direction = rotation_matrix(0.0, 0.0, 15.0)
    slices = volume_slices(hu, (0.8, 0.8, 3.0), (-50.0, 20.0, 7.0), direction)
    single = write_datasets(tmp_path / "single", slices)
    sources = [pydicom.dcmread(p) for p in single]
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        sources, series_instance_uid=hd.UID(), series_number=9, sop_instance_uid=hd.UID(), instance_number=1
    )
    path = tmp_path / "legacy_enhanced.dcm"
    enhanced.save_as(path)
    a, b = load_series(single), load_series([path])
    assert Geometry.of(a).same_grid(Geometry.of(b), tol_mm=1e-3)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(b), sitk.GetArrayFromImage(a))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(b), hu)


def test_multiframe_with_two_temporal_positions_is_two_volumes(tmp_path):
    hu = _truth(5)
    # Frames 0-2 at t=1 and 3-5 at t=2, both covering the same three positions.
    stack = np.concatenate([hu[:3], hu[3:]])
    ds = enhanced_ct(stack, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), np.eye(3), temporal=[1, 1, 1, 2, 2, 2])
    for item in ds.PerFrameFunctionalGroupsSequence:
        z = float(item.PlanePositionSequence[0].ImagePositionPatient[2])
        item.PlanePositionSequence[0].ImagePositionPatient[2] = str(z - 6.0 if z >= 6.0 else z)
    path = save(ds, tmp_path / "dynamic.dcm")
    volumes = group_series(scan_archive(tmp_path).headers)
    assert [v.volume_id.split("#")[1] for v in volumes] == ["t1", "t2"]
    assert [len(v.frames[0]) for v in volumes] == [3, 3]
    t1, t2 = (sitk.GetArrayFromImage(load_series(v)) for v in volumes)
    np.testing.assert_array_equal(t1, hu[:3])
    np.testing.assert_array_equal(t2, hu[3:])
    # Given as one file without naming a volume, the loader says what it holds.
    with pytest.raises(GeometryError, match=r"2 volumes \(several temporal positions\).*#t1.*#t2"):
        load_series([path])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(load_series([path], volume="t2")), hu[3:])
