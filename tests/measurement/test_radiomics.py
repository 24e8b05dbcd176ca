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


def _pyradiomics_on_the_whole_image(image, labels, label, **settings):
    """pyradiomics' own extractor on the uncut image: the reference the cut inputs must reproduce."""
    import logging

    from radiomics import featureextractor, setVerbosity

    setVerbosity(logging.ERROR)
    ex = featureextractor.RadiomicsFeatureExtractor(str(DEFAULT_PARAMS))
    ex.settings.update(settings)
    return {k: float(np.asarray(v)) for k, v in ex.execute(image, labels, label=label).items()
            if not k.startswith("diagnostics_")}


def _assert_same_features(ours, reference):
    assert sorted(ours) == sorted(reference)
    for name, value in reference.items():
        assert ours[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name


@pytest.mark.parametrize("case", ["lung1", "brain1"])
def test_cut_to_the_lesion_gives_pyradiomics_whole_image_features(radiomics_data, case):
    """The inputs are cut to the lesion's box before pyradiomics sees them (speed); every feature must
    equal pyradiomics' own on the whole image, to 1e-9. brain1 (MR) with z-score normalisation, which is
    over the whole image and so must be done before the cut."""
    image = sitk.ReadImage(str(radiomics_data / f"{case}_image.nrrd"))
    labels = sitk.Cast(sitk.ReadImage(str(radiomics_data / f"{case}_label.nrrd")), sitk.sitkUInt16)
    settings = {"normalize": True, "normalizeScale": 100, "binWidth": 5} if case.startswith("brain") else {}
    _assert_same_features(radiomics_features(image, labels, 1, DEFAULT_PARAMS, **settings),
                          _pyradiomics_on_the_whole_image(image, labels, 1, **settings))


def test_cut_at_the_image_edge_and_on_an_oblique_anisotropic_grid():
    """A lesion touching two faces of an oblique 0.7 x 0.9 x 3 mm grid, next to a second lesion:
    the cut stops at the edge, and the features still equal pyradiomics' on the whole image."""
    rng = np.random.default_rng(7)
    shape = (20, 60, 50)  # z, y, x
    zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
    arr = np.zeros(shape, dtype=np.uint16)
    arr[((zz / 4.0) ** 2 + ((yy - 2) / 9.0) ** 2 + ((xx - 47) / 7.0) ** 2) <= 1.0] = 3  # at z=0, y=0, x=max
    arr[((zz - 12) / 3.0) ** 2 + ((yy - 35) / 8.0) ** 2 + ((xx - 20) / 6.0) ** 2 <= 1.0] = 5
    image_arr = (40.0 + 15.0 * rng.standard_normal(shape) + 30.0 * (arr > 0)).astype(np.float32)
    c, s = np.cos(np.radians(25)), np.sin(np.radians(25))
    direction = (c, -s, 0.0, s * 0.9, c * 0.9, np.sqrt(1 - 0.81), 0.0, 0.0, 1.0)
    direction = tuple(np.linalg.qr(np.asarray(direction).reshape(3, 3))[0].ravel())
    image, labels = sitk.GetImageFromArray(image_arr), sitk.GetImageFromArray(arr)
    for img in (image, labels):
        img.SetSpacing((0.7, 0.9, 3.0))
        img.SetOrigin((-20.0, 13.5, 101.0))
        img.SetDirection(direction)
    for label in (3, 5):
        _assert_same_features(radiomics_features(image, labels, label, DEFAULT_PARAMS),
                              _pyradiomics_on_the_whole_image(image, labels, label))


def _lesion_case(seed=3):
    rng = np.random.default_rng(seed)
    shape = (16, 40, 40)
    zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
    core = ((zz - 8) / 4.0) ** 2 + ((yy - 20) / 9.0) ** 2 + ((xx - 20) / 8.0) ** 2 <= 1.0
    rim = (((zz - 8) / 5.0) ** 2 + ((yy - 20) / 11.0) ** 2 + ((xx - 20) / 10.0) ** 2 <= 1.0) & ~core
    image = sitk.GetImageFromArray((40.0 + 15.0 * rng.standard_normal(shape) + 30.0 * core).astype(np.float32))
    image.SetSpacing((0.7, 0.7, 2.5))
    return image, core, rim


def test_the_cut_is_taken_for_the_pipelines_inputs_and_only_for_them(monkeypatch):
    """An integer label map on the image's grid is cut (the speed-up); a float map with non-integer values
    (pyradiomics truncates 1.3 to label 1), a vector map, and a map whose spacing differs within the
    geometry tolerance (pyradiomics resamples it onto the image) go to pyradiomics whole, and give its
    features."""
    import imaging.measurement.radiomics as module

    calls = []
    real = module._cropped
    monkeypatch.setattr(module, "_cropped", lambda *a, **k: calls.append(1) or real(*a, **k))
    image, core, rim = _lesion_case()

    labels = sitk.GetImageFromArray(core.astype(np.uint16))
    labels.CopyInformation(image)
    _assert_same_features(radiomics_features(image, labels, 1), _pyradiomics_on_the_whole_image(image, labels, 1))
    assert calls == [1]

    floats = sitk.GetImageFromArray((core * 1.0 + rim * 1.3).astype(np.float32))
    floats.CopyInformation(image)
    _assert_same_features(radiomics_features(image, floats, 1), _pyradiomics_on_the_whole_image(image, floats, 1))

    vector = sitk.Compose(labels, labels)
    assert radiomics_features(image, vector, 1)["original_shape_VoxelVolume"] == pytest.approx(
        float(core.sum()) * 0.7 * 0.7 * 2.5)

    near = sitk.Image(labels)
    near.SetSpacing((0.7 + 6e-5, 0.7, 2.5))  # within geometryTolerance (1e-4)
    _assert_same_features(radiomics_features(image, near, 1), _pyradiomics_on_the_whole_image(image, near, 1))
    assert calls == [1]
