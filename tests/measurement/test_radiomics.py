"""pyradiomics features per lesion from configs/radiomics.yaml, and their deltas."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from imaging.measurement import measure_lesions
from imaging.measurement.radiomics import DEFAULT_PARAMS, RadiomicsError, feature_deltas, radiomics_features
from tests.measurement.radiomics_cases import baseline


def test_features_of_a_real_ct_lesion_match_pyradiomics_baseline(radiomics_data, capfd):
    image = sitk.ReadImage(str(radiomics_data / "lung1_image.nrrd"))
    labels = sitk.Cast(sitk.ReadImage(str(radiomics_data / "lung1_label.nrrd")), sitk.sitkUInt16)
    f = radiomics_features(image, labels, 1, DEFAULT_PARAMS)
    assert all(isinstance(v, float) for v in f.values())
    assert not any(k.startswith("diagnostics_") for k in f)
    for family in ("firstorder", "shape", "glcm"):
        assert any(k.startswith(f"original_{family}_") for k in f), family
    # the mean HU does not depend on bins or shifts: the sdist's baseline to 1e-9
    assert f["original_firstorder_Mean"] == pytest.approx(float(baseline("baseline_firstorder.csv")["original_firstorder_Mean"]["lung1"]), rel=1e-9)
    (m,) = measure_lesions(labels, [1])
    assert f["original_shape_VoxelVolume"] == pytest.approx(m.volume_mm3, rel=1e-9)
    out, err = capfd.readouterr()
    assert "radiomics" not in (out + err).lower()  # pyradiomics' logging is silenced


def test_absent_label_and_missing_params_are_clear_errors(tmp_path):
    arr = np.zeros((4, 10, 10), dtype=np.uint16)
    arr[1:3, 3:7, 3:7] = 2
    labels = sitk.GetImageFromArray(arr)
    image = sitk.GetImageFromArray(np.random.default_rng(0).normal(40, 10, arr.shape).astype(np.float32))
    with pytest.raises(RadiomicsError, match="label 1: not present"):
        radiomics_features(image, labels, 1)
    with pytest.raises(RadiomicsError, match="no such radiomics params"):
        radiomics_features(image, labels, 2, tmp_path / "missing.yaml")
    f = radiomics_features(image, labels, 2)
    assert f["original_shape_VoxelVolume"] == pytest.approx(32.0)


def test_feature_deltas():
    d = feature_deltas({"a": 10.0, "b": 0.0, "c": 1.0, "gone": 3.0}, {"a": 12.5, "b": 2.0, "c": float("nan"), "new": 1.0})
    assert sorted(d) == ["a", "b", "c"]
    assert d["a"] == {"previous": 10.0, "current": 12.5, "absolute": 2.5, "relative": 0.25}
    assert d["b"]["absolute"] == 2.0 and d["b"]["relative"] is None  # no relative change from 0
    assert d["c"]["absolute"] is None and d["c"]["relative"] is None
    assert feature_deltas({"x": -4.0}, {"x": -2.0})["x"]["relative"] == pytest.approx(0.5)  # relative to |previous|
