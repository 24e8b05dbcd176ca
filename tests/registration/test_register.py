"""register() on small synthetic volumes: accuracy, failure reporting, plausibility, files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from imaging.registration import (
    Level,
    RegistrationConfig,
    RegistrationError,
    body_mask,
    decompose,
    invert_transform,
    linear_matrix,
    load_quality,
    load_transform,
    register,
    sample_points,
    save_transform,
    target_registration_error,
    transform_from_matrix,
)
from tests.registration.factory import moved, rigid, textured_volume

RIGID = RegistrationConfig(stages=("rigid",))


@pytest.fixture(scope="module")
def volume() -> sitk.Image:
    return textured_volume()


@pytest.fixture(scope="module")
def points(volume) -> np.ndarray:
    return sample_points(body_mask(volume), 200, seed=3)


@pytest.fixture(scope="module")
def motion() -> sitk.Euler3DTransform:
    return rigid((1.5, -1.0, 4.0), (3.2, -2.1, 2.7), centre=(5.0, -3.0, 2.0))


def test_recovers_a_known_rigid_motion(volume, points, motion):
    res = register(volume, moved(volume, motion), RIGID)
    assert res.status == "ok" and res.problems == ()
    tre = target_registration_error(res.transform, motion, points)
    # 2 x 2 x 4 mm voxels: a tenth of a voxel is the precision a resampled copy allows.
    assert np.percentile(tre, 95) < 0.2
    assert res.rotation_deg == pytest.approx(np.degrees(np.arccos((np.trace(np.asarray(motion.GetMatrix()).reshape(3, 3)) - 1) / 2)), abs=0.1)
    assert res.metric_final < res.metric_initial
    assert [lv.stage for lv in res.levels] == ["rigid", "rigid"]
    assert res.seconds > 0


def test_rigid_then_affine_keeps_both_fits(volume, points, motion):
    res = register(volume, moved(volume, motion))  # default: rigid, then affine
    assert res.status == "ok", res.problems
    assert [s for s, _ in res.stage_transforms] == ["rigid", "affine"]
    rigid_fit, affine_fit = (t for _, t in res.stage_transforms)
    assert rigid_fit.GetName() == "Euler3DTransform" and affine_fit.GetName() == "AffineTransform"
    assert affine_fit.GetParameters() == res.transform.GetParameters()
    for t in (rigid_fit, affine_fit):
        assert np.percentile(target_registration_error(t, motion, points), 95) < 0.3
    assert max(abs(s - 1.0) for s in res.scales) < 0.01


def test_direction_convention_resample_brings_moving_onto_fixed(volume, motion):
    """transform maps FIXED points to MOVING points: Resample(moving, fixed, T) ~ fixed."""
    moving = moved(volume, motion)
    res = register(volume, moving, RIGID)
    body = sitk.GetArrayFromImage(body_mask(volume)).astype(bool)
    body[:3], body[-3:] = False, False  # slices that left the field of view

    def median_difference(t: sitk.Transform) -> float:
        back = sitk.Resample(moving, volume, t, sitk.sitkLinear, -1000.0)
        return float(np.median(np.abs(sitk.GetArrayViewFromImage(back) - sitk.GetArrayViewFromImage(volume))[body]))

    # As good as the true transform (resampling twice blurs either way), far better than none.
    assert median_difference(res.transform) <= 1.05 * median_difference(motion)
    assert median_difference(res.transform) < 0.2 * median_difference(sitk.Transform())


def test_noise_is_reported_failed(volume):
    rng = np.random.default_rng(0)
    noise = sitk.GetImageFromArray(rng.uniform(-1000, 1000, sitk.GetArrayViewFromImage(volume).shape).astype(np.float32))
    noise.CopyInformation(volume)
    res = register(volume, noise)
    assert res.status == "failed"
    assert any("too little shared information" in p for p in res.problems)
    with pytest.raises(RegistrationError, match="registration failed"):
        res.raise_for_status()


def test_no_overlap_is_reported_failed(volume):
    far = sitk.Image(volume)
    far.SetOrigin([v + 5000.0 for v in volume.GetOrigin()])
    res = register(volume, far, RegistrationConfig(stages=("rigid",), initializer="none"))
    assert res.status == "failed"
    assert res.problems and not res.ok


def test_rotation_over_the_limit_is_implausible(volume, motion):
    res = register(volume, moved(volume, motion), RegistrationConfig(stages=("rigid",), max_rotation_deg=2.0))
    assert res.status == "implausible"
    assert any("rotation" in p and "limit 2 deg" in p for p in res.problems)


def test_scaling_outside_the_range_is_implausible(volume):
    grow = sitk.AffineTransform(3)
    grow.SetMatrix((1.35, 0, 0, 0, 1.35, 0, 0, 0, 1.0))
    res = register(volume, moved(volume, grow))
    assert res.status == "implausible"
    assert max(res.scales) > 1.25
    assert any("scales" in p and "outside [0.8, 1.25]" in p for p in res.problems)


def test_masks_restrict_the_metric(volume, motion):
    # A mask that keeps half of the body still aligns it.
    arr = sitk.GetArrayFromImage(body_mask(volume))
    arr[:, :, : arr.shape[2] // 2] = 0
    half = sitk.GetImageFromArray(arr)
    half.CopyInformation(volume)
    res = register(volume, moved(volume, motion), RIGID, fixed_mask=half)
    assert res.status == "ok", res.problems
    pts = sample_points(half, 100, seed=5)
    assert np.percentile(target_registration_error(res.transform, motion, pts), 95) < 0.3


def test_empty_mask_and_bad_landmarks_are_errors(volume):
    empty = sitk.Image(volume.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(volume)
    with pytest.raises(RegistrationError, match="empty mask"):
        register(volume, volume, fixed_mask=empty)
    with pytest.raises(RegistrationError, match="landmarks"):
        register(volume, volume, landmarks=([[0, 0, 0]], [[0, 0]]))
    with pytest.raises(RegistrationError, match="3-D"):
        register(sitk.Image([8, 8], sitk.sitkFloat32), volume)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"stages": ()}, "empty"),
        ({"stages": ("affine", "rigid")}, "subsequence"),
        ({"stages": ("rigid", "warp")}, "unknown stage"),
        ({"scale_range": (1.1, 1.2)}, "scale_range"),
        ({"rigid_levels": ()}, "no levels"),
        ({"initializer": "magic"}, "initializer"),
    ],
)
def test_config_is_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RegistrationConfig(**kwargs)


def test_level_is_validated():
    with pytest.raises(ValueError, match="samples"):
        Level(2.5, 10)
    with pytest.raises(ValueError, match="relaxation"):
        Level(2.5, 1000, relaxation=1.0)


def test_bspline_stage_follows_a_local_deformation(volume):
    """A smooth local bump (4 mm) on top of a rigid shift: the B-spline stage reduces the error."""
    grid = sitk.BSplineTransformInitializer(volume, [4, 4, 2], 3)
    params = np.zeros(grid.GetNumberOfParameters())
    n = len(params) // 3
    params[n // 2] = 4.0  # x displacement of one central control point, mm
    grid.SetParameters(params.tolist())
    shift = sitk.TranslationTransform(3, (2.0, -1.5, 1.0))
    true = sitk.CompositeTransform([shift, grid])  # fixed -> moving: bump, then shift
    # The moving image shows fixed point x at true(x): sample the fixed image at true^-1(y).
    moving = sitk.Resample(volume, volume, invert_transform(true, volume), sitk.sitkBSpline, -1000.0)
    # A small budget keeps the test quick: one level, a 64 mm grid.
    cfg = RegistrationConfig(stages=("rigid", "affine", "bspline"), bspline_grid_mm=64.0,
                             bspline_levels=(Level(4.0, 5_000, iterations=25),))
    res = register(volume, moving, cfg)
    assert res.status == "ok", res.problems
    assert res.transform.GetName() == "CompositeTransform"
    assert res.bspline_max_displacement_mm is not None and res.bspline_min_jacobian is not None
    assert res.bspline_min_jacobian > 0
    pts = sample_points(body_mask(volume), 300, seed=9)
    affine_only = dict(res.stage_transforms)["affine"]
    err_affine = target_registration_error(affine_only, true, pts)
    err_bspline = target_registration_error(res.transform, true, pts)
    assert np.percentile(err_bspline, 95) < 0.75 * np.percentile(err_affine, 95)


def test_save_and_load_round_trip(tmp_path, volume, motion):
    res = register(volume, moved(volume, motion), RIGID)
    for name in ("T.tfm", "sub/T.h5"):
        path = save_transform(res, tmp_path / name)
        back = load_transform(path)
        assert back.GetName() == res.transform.GetName()
        np.testing.assert_allclose(back.GetParameters(), res.transform.GetParameters(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(back.GetFixedParameters(), res.transform.GetFixedParameters(), rtol=0, atol=1e-12)
        quality = load_quality(path)
        assert quality is not None
        assert quality["status"] == "ok"
        assert quality["metric_final"] == pytest.approx(res.metric_final)
        assert quality["rotation_deg"] == pytest.approx(res.rotation_deg)
        assert json.loads((tmp_path / (name + ".json")).read_text())["config"]["stages"] == ["rigid"]
    with pytest.raises(RegistrationError, match="unsupported"):
        save_transform(res, tmp_path / "T.png")
    with pytest.raises(RegistrationError, match="no such"):
        load_transform(tmp_path / "missing.tfm")


def test_matrix_helpers_round_trip():
    m = np.eye(4)
    a = np.deg2rad(10.0)
    m[:3, :3] = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ np.diag([1.1, 0.9, 1.0])
    m[:3, 3] = [1.0, 2.0, 3.0]
    t = transform_from_matrix(m)
    np.testing.assert_allclose(linear_matrix(t), m, atol=1e-12)
    angle, scales, reflection = decompose(m)
    assert angle == pytest.approx(10.0, abs=1e-9)
    np.testing.assert_allclose(scales, [0.9, 1.0, 1.1], atol=1e-12)
    assert not reflection
    assert decompose(np.diag([1.0, 1.0, -1.0]))[2]


def test_folding_bspline_is_detected(volume):
    from imaging.registration.rigid import _bspline_checks

    grid = sitk.BSplineTransformInitializer(volume, [4, 4, 2], 3)
    params = np.zeros(grid.GetNumberOfParameters())
    n = len(params) // 3
    params[n // 2] = 200.0  # one knot pushed far past its neighbours: the map folds
    grid.SetParameters(params.tolist())
    max_disp, min_jac = _bspline_checks(grid, volume)
    assert max_disp > 10.0
    assert min_jac < 0.0
    grid.SetParameters(np.zeros_like(params).tolist())
    assert _bspline_checks(grid, volume) == (0.0, 1.0)


def test_an_image_registered_to_itself_is_ok(volume):
    """Already aligned: the metric cannot improve, which is not a failure."""
    res = register(volume, volume)
    assert res.status == "ok", res.problems
    assert res.rotation_deg < 0.05 and np.linalg.norm(res.translation_mm) < 0.05


def test_a_fit_that_made_things_worse_is_reported_failed(volume, motion, monkeypatch):
    """Divergence, simulated: every level ends 15 mm off. The result must not pass as "ok"."""
    import imaging.registration.rigid as rigid_module

    real = rigid_module._run_level

    def diverging(stage, level, cfg, fixed, moving, linear, bspline):
        report = real(stage, level, cfg, fixed, moving, linear, bspline)
        linear.SetTranslation([v + 15.0 for v in linear.GetTranslation()])
        return report

    monkeypatch.setattr(rigid_module, "_run_level", diverging)
    res = register(volume, moved(volume, motion), RIGID)
    assert res.status == "failed"
    assert any(p.startswith("metric not improved") for p in res.problems)


def test_a_stage_that_undoes_the_previous_one_fails(volume, motion, monkeypatch):
    """The affine stage, simulated to wander off: the rigid fit stays available, the result fails."""
    import imaging.registration.rigid as rigid_module

    real = rigid_module._run_level

    def wandering_affine(stage, level, cfg, fixed, moving, linear, bspline):
        report = real(stage, level, cfg, fixed, moving, linear, bspline)
        if stage == "affine":
            linear.SetTranslation([v + 6.0 for v in linear.GetTranslation()])
        return report

    monkeypatch.setattr(rigid_module, "_run_level", wandering_affine)
    res = register(volume, moved(volume, motion))
    assert res.status == "failed"
    assert any("the affine stage made the fit worse" in p for p in res.problems)
    assert len(res.stage_metrics) == 2 and res.stage_metrics[1] > res.stage_metrics[0]
    rigid_fit = dict(res.stage_transforms)["rigid"]
    assert np.percentile(target_registration_error(rigid_fit, motion, sample_points(body_mask(volume), 50, seed=2)), 95) < 0.3


def test_the_evaluation_uses_its_sample_budget_the_same_points_each_time(volume, motion):
    """The quality metric is measured on ``evaluation_level.samples`` voxels drawn once inside the fixed
    mask (MetricEvaluate itself would use every voxel): the draw holds exactly that many voxels, all
    inside the mask, is the same for the same seed, and gives the same metric for the same transform."""
    import imaging.registration.rigid as rigid_module

    mask = body_mask(volume)
    level = Level(4.0, 2_000)
    side = rigid_module._Side(volume, [4.0], 6.0, rigid_module._as_mask(mask, "mask"))
    drawn = side.evaluation_mask(level, seed=5)
    _, level_mask, _ = side.level(4.0)
    arr, inside = sitk.GetArrayViewFromImage(drawn), sitk.GetArrayViewFromImage(level_mask)
    assert int(arr.sum()) == 2_000 and not np.any(arr & (inside == 0))
    assert np.array_equal(arr, sitk.GetArrayViewFromImage(side.evaluation_mask(level, seed=5)))
    other = rigid_module._Side(volume, [4.0], 6.0, rigid_module._as_mask(mask, "mask")).evaluation_mask(level, seed=6)
    assert not np.array_equal(arr, sitk.GetArrayViewFromImage(other))  # (the image is bound: a view must not outlive it)
    assert side.evaluation_mask(Level(4.0, 10_000_000), seed=5) is None  # the budget covers the level: all of it
    cfg = RegistrationConfig(stages=("rigid",), evaluation_level=level)
    moving = moved(volume, motion)
    a = register(volume, moving, cfg, fixed_mask=mask)
    b = register(volume, moving, cfg, fixed_mask=mask)
    assert a.metric_initial == b.metric_initial and a.metric_final == b.metric_final
    assert a.metric_final < a.metric_initial
    # the reported metric is MetricEvaluate on exactly the drawn voxels (not on every voxel of the level)
    fixed_side = rigid_module._Side(volume, [4.0], cfg.fov_margin_mm, rigid_module._as_mask(mask, "mask"))
    r, f_img, m_img = rigid_module._method(cfg, fixed_side, rigid_module._Side(moving, [4.0], cfg.fov_margin_mm, None), level)
    drawn_here = fixed_side.evaluation_mask(level, cfg.seed)
    r.SetMetricFixedMask(drawn_here)
    r.SetInitialTransform(a.transform, inPlace=False)
    assert float(r.MetricEvaluate(f_img, m_img)) == pytest.approx(a.metric_final, abs=1e-12)
    every_voxel = fixed_side.level(4.0)[1]
    r.SetMetricFixedMask(every_voxel)  # every voxel of the level: another value
    assert float(r.MetricEvaluate(f_img, m_img)) != pytest.approx(a.metric_final, abs=1e-6)


def test_the_quality_gates_keep_their_sensitivity(volume, motion, monkeypatch):
    """The metric that gates a result must see a small regression and must not see information in noise:
    an affine stage that wanders 1.5 mm from the rigid fit is reported, and two independent noise volumes
    share less than half the minimum mutual information (a coarse evaluation grid with few samples read
    0.045-0.1 nats of "information" in noise, against the 0.05 threshold)."""
    import imaging.registration.rigid as rigid_module

    real = rigid_module._run_level

    def wandering_affine(stage, level, cfg, fixed, moving, linear, bspline):
        report = real(stage, level, cfg, fixed, moving, linear, bspline)
        if stage == "affine":
            linear.SetTranslation([v + d for v, d in zip(linear.GetTranslation(), (1.5, 0.0, 0.0))])
        return report

    with monkeypatch.context() as m:
        m.setattr(rigid_module, "_run_level", wandering_affine)
        res = register(volume, moved(volume, motion))
    assert res.status == "failed" and any("the affine stage made the fit worse" in p for p in res.problems)

    rng = np.random.default_rng(11)
    noise = [sitk.GetImageFromArray(rng.normal(0, 100, (60, 128, 128)).astype(np.float32)) for _ in range(2)]
    for img in noise:
        img.SetSpacing((1.0, 1.0, 2.5))
    r, f_img, m_img = rigid_module._method(
        RegistrationConfig(), rigid_module._Side(noise[0], [2.5], 10.0, None), rigid_module._Side(noise[1], [2.5], 10.0, None),
        RegistrationConfig().evaluation_level)
    drawn = rigid_module._Side(noise[0], [2.5], 10.0, None).evaluation_mask(RegistrationConfig().evaluation_level, 1)
    if drawn is not None:
        r.SetMetricFixedMask(drawn)
    r.SetInitialTransform(sitk.Euler3DTransform(), inPlace=False)
    assert -float(r.MetricEvaluate(f_img, m_img)) < RegistrationConfig().min_mutual_information / 2
