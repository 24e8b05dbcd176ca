"""Rigid, affine and coarse B-spline registration of a follow-up to its baseline.

Method (details and figures in ``docs/registration.md``):

* Mattes mutual information (works within and across contrasts and modalities), linear
  interpolation, regular-step gradient descent with parameter scales from the physical shift.
* A pyramid built ONCE per image by block averaging (``sitk.BinShrink``) to a target voxel size
  per level, cascaded from finer levels where the factors divide. SimpleITK's built-in
  multi-resolution smooths and shrinks the full-resolution image at every level and samples a
  percentage of it; here a level costs a fixed sample budget whatever the image size.
* Deterministic: fixed sampling seed, fixed level order; the same inputs give the same result.
* Every result is checked: metric improved, enough shared information, rotation and scales
  plausible, B-spline without folding. A result that fails a check says so in ``status`` and
  ``problems`` and must not be used silently (:meth:`RegistrationResult.raise_for_status`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from imaging.registration.config import Level, RegistrationConfig
from imaging.registration.errors import RegistrationError
from imaging.registration.transforms import decompose, linear_matrix

Status = str  # "ok" | "failed" | "implausible"


DEFAULT_CONFIG = RegistrationConfig()  # frozen: safe to share as the default


class _NoInformation(Exception):
    """A level ended with (almost) no mutual information: stop early."""

# "Not improved" means worse than at the start by more than 1 % (and 0.001 nats): a pair that
# is aligned from the start ends a hair off its sampled optimum, which is no failure.
_METRIC_TOLERANCE_RELATIVE = 0.01
_METRIC_TOLERANCE_NATS = 1e-3


@dataclass(frozen=True)
class LevelReport:
    """What one pyramid level of one stage did."""

    stage: str
    spacing_mm: tuple[float, float, float]
    size: tuple[int, int, int]
    samples: int
    iterations: int
    metric: float
    stop: str
    seconds: float

    def to_dict(self) -> dict:
        return {
            "stage": self.stage, "spacing_mm": list(self.spacing_mm), "size": list(self.size),
            "samples": self.samples, "iterations": self.iterations, "metric": self.metric,
            "stop": self.stop, "seconds": round(self.seconds, 4),
        }


@dataclass(frozen=True)
class RegistrationResult:
    """Outcome of :func:`register`, with the figures that say whether it can be trusted.

    Attributes
    ----------
    transform : maps FIXED physical points (LPS, mm) to MOVING physical points (ITK
        convention): ``sitk.Resample(moving, fixed, transform)`` brings moving onto fixed.
        When ``status`` is "failed" it is the initial transform.
    status : "ok", "failed" (error, metric not improved, too little shared information) or
        "implausible" (rotation, scales, translation or B-spline folding beyond the limits).
    problems : one sentence per failed check, empty when ``status == "ok"``.
    metric_initial, metric_final : Mattes mutual information (ITK's sign: negative, lower is
        better) at the initial and final transform, on the samples of
        ``config.evaluation_level``.
    rotation_deg : rotation angle of the linear part (polar decomposition), degrees.
    scales : singular values of the linear part, ascending (1, 1, 1 for a rigid transform).
    translation_mm : displacement of the fixed grid's centre by the linear part, mm (LPS).
    seconds : wall time of :func:`register`, s.
    landmark_error_mm, landmark_error_max_mm : mean and largest |T(fixed) - moving| over the
        landmarks given to :func:`register`, mm; ``None`` without landmarks.
    bspline_max_displacement_mm, bspline_min_jacobian : of the B-spline stage, if run.
    levels : one report per level run.
    stage_transforms : (stage, transform) at the end of each stage, e.g. the rigid fit that
        the affine stage started from. Only ``transform`` passed the checks.
    stage_metrics : the metric after each stage (as ``metric_final``); a stage that ends worse
        than the one before fails the registration.
    """

    transform: sitk.Transform
    status: Status
    problems: tuple[str, ...]
    metric_initial: float
    metric_final: float
    rotation_deg: float
    scales: tuple[float, float, float]
    translation_mm: tuple[float, float, float]
    seconds: float
    landmark_error_mm: float | None = None
    landmark_error_max_mm: float | None = None
    bspline_max_displacement_mm: float | None = None
    bspline_min_jacobian: float | None = None
    levels: tuple[LevelReport, ...] = ()
    stage_transforms: tuple[tuple[str, sitk.Transform], ...] = ()
    stage_metrics: tuple[float, ...] = ()
    config: RegistrationConfig = field(default_factory=RegistrationConfig)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def raise_for_status(self) -> None:
        """Raise :class:`RegistrationError` naming the problems unless ``status == "ok"``."""
        if not self.ok:
            raise RegistrationError(f"registration {self.status}: " + "; ".join(self.problems))

    def to_dict(self) -> dict:
        """JSON-ready quality figures (everything but the transform itself)."""

        def num(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else float(v)

        return {
            "status": self.status,
            "problems": list(self.problems),
            "convention": "maps FIXED physical LPS points (mm) to MOVING physical LPS points (ITK)",
            "transform_type": self.transform.GetName(),
            "metric": "Mattes mutual information (negative, lower is better)",
            "metric_initial": num(self.metric_initial),
            "metric_final": num(self.metric_final),
            "rotation_deg": num(self.rotation_deg),
            "scales": [num(v) for v in self.scales],
            "translation_mm": [num(v) for v in self.translation_mm],
            "seconds": round(self.seconds, 4),
            "landmark_error_mm": num(self.landmark_error_mm),
            "landmark_error_max_mm": num(self.landmark_error_max_mm),
            "bspline_max_displacement_mm": num(self.bspline_max_displacement_mm),
            "bspline_min_jacobian": num(self.bspline_min_jacobian),
            "levels": [lv.to_dict() for lv in self.levels],
            "stages": [{"stage": s, "metric": num(m)} for (s, _), m in zip(self.stage_transforms, self.stage_metrics)],
            "config": self.config.to_dict(),
        }


class _Side:
    """One image of the pair as the optimiser sees it: block-averaged levels and their masks.

    Each level is made once by ``sitk.BinShrink`` (cascaded from a finer level when the factors
    divide) and cut by ``margin_mm`` along each face of the field of view: what lies there
    differs between two scans (anatomy entering or leaving the field when the patient moved;
    background filled in by resampling), and samples there bias the fit (on a rigidly moved
    copy of lung2 a 10 mm band cut the affine TRE95 from 0.16 to 0.06 mm). A mask is resampled
    (nearest neighbour) onto each level's grid, so the metric tests a small image per sample.
    """

    def __init__(self, image: sitk.Image, spacings_mm: Sequence[float], margin_mm: float, mask: sitk.Image | None):
        self.image = image if image.GetPixelID() == sitk.sitkFloat32 else sitk.Cast(image, sitk.sitkFloat32)
        self.spacing = np.asarray(self.image.GetSpacing(), dtype=float)
        self.margin_mm = margin_mm
        self.mask = mask
        self._shrunk: dict[tuple[int, ...], sitk.Image] = {(1, 1, 1): self.image}
        self._levels: dict[tuple[int, ...], tuple[sitk.Image, sitk.Image | None, float]] = {}
        self._evaluation_masks: dict[tuple[float, int, int], sitk.Image | None] = {}
        for s in sorted(set(spacings_mm)):  # finest first, so coarser levels shrink from them
            self.shrunk(s)

    def factors(self, spacing_mm: float) -> tuple[int, ...]:
        return tuple(max(1, int(round(spacing_mm / s))) for s in self.spacing)

    def shrunk(self, spacing_mm: float) -> sitk.Image:
        """The whole image block-averaged to about ``spacing_mm``."""
        f = self.factors(spacing_mm)
        if f not in self._shrunk:
            sources = [k for k in self._shrunk if all(a % b == 0 for a, b in zip(f, k))]
            src = max(sources, key=lambda k: int(np.prod(k)))
            self._shrunk[f] = sitk.BinShrink(self._shrunk[src], [a // b for a, b in zip(f, src)])
        return self._shrunk[f]

    def level(self, spacing_mm: float) -> tuple[sitk.Image, sitk.Image | None, float]:
        """(interior image, mask on its grid or None, fraction of its voxels inside the mask)."""
        f = self.factors(spacing_mm)
        if f not in self._levels:
            img = self.shrunk(spacing_mm)
            size = np.asarray(img.GetSize())
            cut = np.ceil(self.margin_mm / np.asarray(img.GetSpacing()) - 1e-9).astype(int)
            cut = np.where(size - 2 * cut >= 8, cut, 0)  # never crop a thin axis away
            if cut.any():
                img = sitk.RegionOfInterest(img, (size - 2 * cut).tolist(), cut.tolist())
            mask, fraction = None, 1.0
            if self.mask is not None:
                mask = sitk.Resample(self.mask, img, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
                fraction = int(np.count_nonzero(sitk.GetArrayViewFromImage(mask))) / float(np.prod(img.GetSize()))
                if fraction == 0.0:
                    raise RegistrationError(f"the mask leaves no voxel of the {spacing_mm:g} mm level inside the field of view")
            self._levels[f] = (img, mask, fraction)
        return self._levels[f]

    def evaluation_mask(self, level: Level, seed: int) -> sitk.Image | None:
        """``level.samples`` voxels of the level (inside its mask), drawn once with ``seed``, as a mask.

        ``MetricEvaluate`` ignores the sampling strategy and evaluates every voxel of the fixed grid
        that the fixed mask lets through (about 90 ms on a 120 x 120 x 57 grid, whatever the
        percentage set). Handing it the drawn samples as the mask makes every evaluation use the same
        points and costs half as much. ``None``: the level has no more voxels than that.
        """
        key = (level.spacing_mm, level.samples, seed)
        if key not in self._evaluation_masks:
            img, mask, _ = self.level(level.spacing_mm)
            size_zyx = tuple(int(v) for v in reversed(img.GetSize()))
            inside = (np.flatnonzero(sitk.GetArrayViewFromImage(mask)) if mask is not None
                      else np.arange(int(np.prod(size_zyx))))
            chosen = None
            if inside.size > level.samples:
                drawn = np.random.default_rng(seed).choice(inside, size=level.samples, replace=False)
                arr = np.zeros(size_zyx, dtype=np.uint8)
                arr.flat[drawn] = 1
                chosen = sitk.GetImageFromArray(arr)
                chosen.CopyInformation(img)
            self._evaluation_masks[key] = chosen
        return self._evaluation_masks[key]


def _as_mask(mask: sitk.Image | None, name: str) -> sitk.Image | None:
    if mask is None:
        return None
    if mask.GetDimension() != 3:
        raise RegistrationError(f"{name}: a {mask.GetDimension()}-D image; a 3-D mask is required")
    m = mask != 0  # SimpleITK comparisons give UInt8 0/1
    if not np.any(sitk.GetArrayViewFromImage(m)):
        raise RegistrationError(f"{name}: empty mask (no non-zero voxel)")
    return m


def _method(
    cfg: RegistrationConfig, fixed: _Side, moving: _Side, level: Level, stage: str = "rigid"
) -> tuple[sitk.ImageRegistrationMethod, sitk.Image, sitk.Image]:
    """A registration method set up for one level: metric, sampling, masks, interpolator."""
    f_img, f_mask, fraction = fixed.level(level.spacing_mm)
    m_img, m_mask, _ = moving.level(level.spacing_mm)
    r = sitk.ImageRegistrationMethod()
    r.SetMetricAsMattesMutualInformation(cfg.histogram_bins)
    # The budget counts samples inside the mask: ITK draws the percentage over the whole grid
    # and drops the draws that fall outside.
    rate = level.samples / max(float(np.prod(f_img.GetSize())) * fraction, 1.0)
    if rate >= 1.0:
        r.SetMetricSamplingStrategy(r.NONE)
    else:
        r.SetMetricSamplingStrategy(r.RANDOM)
        r.SetMetricSamplingPercentage(rate, cfg.seed)
    # The gradient filters would smooth whole images per level; central differences at the
    # samples are enough on block-averaged levels and cost nothing up front.
    r.SetMetricUseFixedImageGradientFilter(False)
    r.SetMetricUseMovingImageGradientFilter(False)
    r.SetInterpolator(sitk.sitkLinear)
    if f_mask is not None:
        r.SetMetricFixedMask(f_mask)
    if m_mask is not None:
        r.SetMetricMovingMask(m_mask)
    if cfg.threads is not None:
        r.SetNumberOfThreads(int(cfg.threads))
    return r, f_img, m_img


def _initial_transform(cfg: RegistrationConfig, fixed: sitk.Image, moving: sitk.Image) -> sitk.Euler3DTransform:
    if cfg.initializer == "none":
        t = sitk.Euler3DTransform()
        size = np.asarray(fixed.GetSize(), dtype=float)
        t.SetCenter(fixed.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2).tolist()))
        return t
    mode = {
        "geometry": sitk.CenteredTransformInitializerFilter.GEOMETRY,
        "moments": sitk.CenteredTransformInitializerFilter.MOMENTS,
    }[cfg.initializer]
    return sitk.Euler3DTransform(sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(), mode))


def _to_affine(t: sitk.Transform) -> sitk.AffineTransform:
    if isinstance(t, sitk.AffineTransform):
        return sitk.AffineTransform(t)
    e = sitk.Euler3DTransform(t)
    a = sitk.AffineTransform(3)
    a.SetCenter(e.GetCenter())
    a.SetMatrix(e.GetMatrix())
    a.SetTranslation(e.GetTranslation())
    return a


def _grid_centre(image: sitk.Image) -> np.ndarray:
    size = np.asarray(image.GetSize(), dtype=float)
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2).tolist()), dtype=float)


def _bspline_checks(bspline: sitk.BSplineTransform, grid: sitk.Image) -> tuple[float, float]:
    """Largest displacement (mm) and smallest Jacobian determinant of the B-spline on ``grid``.

    det(I + grad u), with grad u from central differences over the grid's interior voxels.
    """
    field_image = sitk.TransformToDisplacementField(
        bspline, sitk.sitkVectorFloat64, grid.GetSize(), grid.GetOrigin(), grid.GetSpacing(), grid.GetDirection()
    )
    u = sitk.GetArrayFromImage(field_image)  # (z, y, x, 3) LPS mm
    max_disp = float(np.sqrt((u**2).sum(axis=-1)).max())
    if min(u.shape[:3]) < 3:
        return max_disp, 1.0
    spacing_zyx = np.asarray(grid.GetSpacing(), dtype=float)[::-1]
    # g[..., c, a]: derivative of u_c along index axis a (x, y, z), per mm.
    g = np.stack([np.gradient(u, spacing_zyx[2 - a], axis=2 - a)[1:-1, 1:-1, 1:-1] for a in range(3)], axis=-1)
    d = np.asarray(grid.GetDirection(), dtype=float).reshape(3, 3)
    jac = np.eye(3) + g @ d.T
    return max_disp, float(np.linalg.det(jac).min())


def register(
    fixed: sitk.Image,
    moving: sitk.Image,
    config: RegistrationConfig = DEFAULT_CONFIG,
    *,
    fixed_mask: sitk.Image | None = None,
    moving_mask: sitk.Image | None = None,
    landmarks: tuple[Sequence[Sequence[float]], Sequence[Sequence[float]]] | None = None,
) -> RegistrationResult:
    """Register ``moving`` to ``fixed``: rigid, then affine, then optionally a coarse B-spline.

    Parameters
    ----------
    fixed, moving : 3-D scalar images with geometry (any pixel type; LPS, mm). For a
        follow-up, fixed = baseline and moving = follow-up.
    config : stages, pyramid levels, sample budgets, seed and plausibility limits.
    fixed_mask, moving_mask : optional non-zero = inside; the metric only uses samples inside
        (e.g. a body mask, or everything but a growing lesion). Ignored when
        ``config.use_masks`` is False. Any grid: tested at the physical sample points.
    landmarks : optional (fixed points, moving points), (n, 3) LPS mm each, the same anatomy
        in both; their error |T(fixed) - moving| is reported.

    Returns
    -------
    RegistrationResult
        With ``status`` "ok", "failed" or "implausible"; the transform of a result that is not
        "ok" must not be used (see :meth:`RegistrationResult.raise_for_status`).

    Raises
    ------
    RegistrationError
        Inputs that cannot be registered at all (not 3-D, vector images, empty masks,
        malformed landmarks). Failures of the optimisation itself are reported in the result.
    """
    t_start = time.perf_counter()
    cfg = config
    for name, img in (("fixed", fixed), ("moving", moving)):
        if img.GetDimension() != 3:
            raise RegistrationError(f"{name} image: {img.GetDimension()}-D; a 3-D volume is required")
        if img.GetNumberOfComponentsPerPixel() != 1:
            raise RegistrationError(f"{name} image: {img.GetNumberOfComponentsPerPixel()} components per voxel; a scalar volume is required")
    f_mask = _as_mask(fixed_mask, "fixed_mask") if cfg.use_masks else None
    m_mask = _as_mask(moving_mask, "moving_mask") if cfg.use_masks else None
    lm = _check_landmarks(landmarks)

    spacings = [lv.spacing_mm for s in cfg.stages for lv in cfg.levels(s)] + [cfg.evaluation_level.spacing_mm]
    fixed_side = _Side(fixed, spacings, cfg.fov_margin_mm, f_mask)
    moving_side = _Side(moving, spacings, cfg.fov_margin_mm, m_mask)

    def evaluate(t: sitk.Transform) -> float:
        r, f_img, m_img = _method(cfg, fixed_side, moving_side, cfg.evaluation_level)
        samples = fixed_side.evaluation_mask(cfg.evaluation_level, cfg.seed)
        if samples is not None:
            r.SetMetricFixedMask(samples)
        r.SetInitialTransform(t, inPlace=False)
        try:
            return float(r.MetricEvaluate(f_img, m_img))
        except RuntimeError:
            return math.nan

    coarsest = max(spacings)
    initial = _initial_transform(cfg, fixed_side.shrunk(coarsest), moving_side.shrunk(coarsest))
    # A copy: the optimiser works in place, and a failed run reports the untouched start.
    linear: sitk.Transform = sitk.Euler3DTransform(initial) if cfg.stages[0] == "rigid" else _to_affine(initial)
    metric_initial = evaluate(linear)
    reports: list[LevelReport] = []
    problems: list[str] = []
    bspline: sitk.BSplineTransform | None = None
    final: sitk.Transform = linear
    stage_transforms: list[tuple[str, sitk.Transform]] = []

    try:
        for stage in cfg.stages:
            if stage == "affine":
                linear = _to_affine(linear)
            if stage == "bspline":
                grid = fixed_side.shrunk(cfg.levels("bspline")[0].spacing_mm)
                extent = np.asarray(grid.GetSize()) * np.asarray(grid.GetSpacing())
                mesh = [max(1, int(round(e / cfg.bspline_grid_mm))) for e in extent]
                bspline = sitk.BSplineTransformInitializer(grid, mesh, 3)
            for level in cfg.levels(stage):
                reports.append(
                    _run_level(stage, level, cfg, fixed_side, moving_side, linear, bspline)
                )
                if -reports[-1].metric < cfg.min_mutual_information:
                    # Nothing to refine: noise, another image, or no overlap. Fail fast.
                    raise _NoInformation(reports[-1])
            done = linear if bspline is None else sitk.CompositeTransform([linear, bspline])
            stage_transforms.append((stage, done.Downcast() if hasattr(done, "Downcast") else done))
            if stage != "bspline":  # the next stage optimises a copy; keep this one as it is
                linear = sitk.Euler3DTransform(linear) if isinstance(linear, sitk.Euler3DTransform) else sitk.AffineTransform(linear)
        final = linear if bspline is None else sitk.CompositeTransform([linear, bspline])
    except _NoInformation as exc:
        lv = exc.args[0]
        problems.append(
            f"too little shared information: mutual information {-lv.metric:.4f} nats < "
            f"{cfg.min_mutual_information} after the {lv.stage} {lv.spacing_mm[0]:.3g} mm level "
            "(noise, wrong image, or no overlap)"
        )
        final = initial
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        problems.append(f"optimisation failed: {reason}")
        final = initial

    metric_final = evaluate(final) if not problems else metric_initial
    # Each stage starts from the previous one, so none may end worse than where it started.
    stage_metrics = [evaluate(t) for _, t in stage_transforms[:-1]] + ([metric_final] if stage_transforms and not problems else [])
    m4 = linear_matrix(final)
    rotation_deg, scales, reflection = decompose(m4)
    centre = _grid_centre(fixed)
    translation = m4[:3, :3] @ centre + m4[:3, 3] - centre

    status = "failed" if problems else "ok"
    if not problems:
        if not math.isfinite(metric_final):
            problems.append("metric could not be evaluated at the result (images no longer overlap)")
        elif math.isfinite(metric_initial) and metric_final > metric_initial + max(
            _METRIC_TOLERANCE_NATS, _METRIC_TOLERANCE_RELATIVE * abs(metric_initial)
        ):
            problems.append(f"metric not improved: {metric_final:.4f} at the result, {metric_initial:.4f} at the start")
        elif -metric_final < cfg.min_mutual_information:
            problems.append(
                f"too little shared information: mutual information {-metric_final:.4f} nats "
                f"< {cfg.min_mutual_information} (noise, wrong image, or no overlap)"
            )
        for k in range(1, len(stage_metrics)):
            before, after = stage_metrics[k - 1], stage_metrics[k]
            if after > before + max(_METRIC_TOLERANCE_NATS, _METRIC_TOLERANCE_RELATIVE * abs(before)):
                problems.append(
                    f"the {stage_transforms[k][0]} stage made the fit worse: metric {after:.4f} after it, "
                    f"{before:.4f} after the {stage_transforms[k - 1][0]} stage (see stage_transforms)"
                )
        if problems:
            status = "failed"
    implausible: list[str] = []
    if reflection:
        implausible.append("the linear part reflects (det < 0)")
    if rotation_deg > cfg.max_rotation_deg:
        implausible.append(f"rotation {rotation_deg:.1f} deg > limit {cfg.max_rotation_deg:g} deg")
    lo, hi = cfg.scale_range
    if min(scales) < lo or max(scales) > hi:
        implausible.append(f"scales {', '.join(f'{s:.3f}' for s in scales)} outside [{lo:g}, {hi:g}]")
    if cfg.max_translation_mm is not None and float(np.linalg.norm(translation)) > cfg.max_translation_mm:
        implausible.append(f"translation {np.linalg.norm(translation):.1f} mm > limit {cfg.max_translation_mm:g} mm")
    max_disp = min_jac = None
    if bspline is not None and not problems:
        max_disp, min_jac = _bspline_checks(bspline, fixed_side.shrunk(cfg.levels("bspline")[0].spacing_mm))
        if max_disp > cfg.max_bspline_displacement_mm:
            implausible.append(f"B-spline displacement {max_disp:.1f} mm > limit {cfg.max_bspline_displacement_mm:g} mm")
        if min_jac <= 0:
            implausible.append(f"B-spline folds (minimum Jacobian determinant {min_jac:.3f} <= 0)")
    if implausible:
        problems.extend(implausible)
        if status == "ok":
            status = "implausible"

    lm_mean = lm_max = None
    if lm is not None:
        fixed_pts, moving_pts = lm
        mapped = np.array([final.TransformPoint(tuple(p)) for p in fixed_pts.tolist()])
        err = np.linalg.norm(mapped - moving_pts, axis=1)
        lm_mean, lm_max = float(err.mean()), float(err.max())

    return RegistrationResult(
        transform=final,
        status=status,
        problems=tuple(problems),
        metric_initial=metric_initial,
        metric_final=metric_final,
        rotation_deg=rotation_deg,
        scales=scales,
        translation_mm=tuple(float(v) for v in translation),  # type: ignore[arg-type]
        seconds=time.perf_counter() - t_start,
        landmark_error_mm=lm_mean,
        landmark_error_max_mm=lm_max,
        bspline_max_displacement_mm=max_disp,
        bspline_min_jacobian=min_jac,
        levels=tuple(reports),
        stage_transforms=tuple(stage_transforms),
        stage_metrics=tuple(stage_metrics),
        config=cfg,
    )


def _check_landmarks(landmarks) -> tuple[np.ndarray, np.ndarray] | None:  # noqa: ANN001
    if landmarks is None:
        return None
    try:
        f_pts, m_pts = (np.asarray(p, dtype=float) for p in landmarks)
    except (TypeError, ValueError) as exc:
        raise RegistrationError(f"landmarks: expected (fixed points, moving points), each (n, 3) mm ({exc})") from exc
    if f_pts.ndim != 2 or f_pts.shape[1] != 3 or f_pts.shape != m_pts.shape or len(f_pts) == 0:
        raise RegistrationError(f"landmarks: expected two (n, 3) arrays of the same n >= 1, got {f_pts.shape} and {m_pts.shape}")
    return f_pts, m_pts


def _physical_shift_scales(transform: sitk.Transform, domain: sitk.Image, delta: float = 1e-3) -> list[float]:
    """Optimiser scales: squared largest shift of the domain's corners per unit of each parameter.

    The same idea as ITK's ``RegistrationParameterScalesFromPhysicalShift``, computed here on
    the 8 corners of the level's domain: ITK's estimator samples large domains with its global
    random generator, whose state moves on between calls, so two registrations in one process
    would not give the same result.
    """
    size = np.asarray(domain.GetSize(), dtype=float) - 1.0
    corners = [domain.TransformContinuousIndexToPhysicalPoint((size * np.array(c)).tolist())
               for c in np.ndindex(2, 2, 2)]
    params = np.asarray(transform.GetParameters(), dtype=float)
    probe = transform.Downcast() if hasattr(transform, "Downcast") else transform
    probe = type(probe)(probe)  # a copy to perturb
    base = np.array([probe.TransformPoint(c) for c in corners])
    scales = []
    for i in range(len(params)):
        p = params.copy()
        p[i] += delta
        probe.SetParameters(p.tolist())
        shifted = np.array([probe.TransformPoint(c) for c in corners])
        scales.append(float(np.max(np.sum((shifted - base) ** 2, axis=1)) / delta**2))
    return [max(v, 1e-12) for v in scales]


def _run_level(
    stage: str, level: Level, cfg: RegistrationConfig, fixed: _Side, moving: _Side,
    linear: sitk.Transform, bspline: sitk.BSplineTransform | None,
) -> LevelReport:
    t0 = time.perf_counter()
    r, f, m = _method(cfg, fixed, moving, level, stage)
    if stage == "bspline":
        assert bspline is not None
        r.SetOptimizerAsLBFGSB(
            gradientConvergenceTolerance=1e-5, numberOfIterations=level.iterations, maximumNumberOfCorrections=5,
            maximumNumberOfFunctionEvaluations=4 * level.iterations, costFunctionConvergenceFactor=1e7,
        )
        r.SetMovingInitialTransform(linear)
        r.SetInitialTransform(bspline, inPlace=True)
    else:
        step = level.step_mm if level.step_mm is not None else 2.0 * level.spacing_mm
        r.SetOptimizerAsRegularStepGradientDescent(
            learningRate=step, minStep=1e-3, numberOfIterations=level.iterations, relaxationFactor=level.relaxation,
            gradientMagnitudeTolerance=1e-10,
        )
        r.SetOptimizerScales(_physical_shift_scales(linear, f))
        r.SetInitialTransform(linear, inPlace=True)
    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    if cfg.threads is not None:
        # The metric's threader follows the global default, not the method's setting.
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(cfg.threads))
    try:
        r.Execute(f, m)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)
    return LevelReport(
        stage=stage,
        spacing_mm=tuple(float(v) for v in f.GetSpacing()),  # type: ignore[arg-type]
        size=tuple(int(v) for v in f.GetSize()),  # type: ignore[arg-type]
        samples=level.samples,
        iterations=int(r.GetOptimizerIteration()),
        metric=float(r.GetMetricValue()),
        stop=r.GetOptimizerStopConditionDescription(),
        seconds=time.perf_counter() - t0,
    )
