"""Configuration of a registration: stages, pyramid levels, sample budgets, plausibility limits."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Stage = Literal["rigid", "affine", "bspline"]
Initializer = Literal["geometry", "moments", "none"]
STAGE_ORDER: tuple[str, ...] = ("rigid", "affine", "bspline")


@dataclass(frozen=True)
class Level:
    """One pyramid level of one stage.

    Attributes
    ----------
    spacing_mm : target voxel size of the level, mm. Each index axis is block-averaged
        (``sitk.BinShrink``) by ``max(1, round(spacing_mm / spacing))``, so a 0.63 mm in-plane
        axis is shrunk 4x for 2.5 mm and a 5 mm slice axis is left alone. Shrinking once, before
        the optimiser runs, is what makes a level cheap: nothing at full resolution is smoothed
        or sampled per level.
    samples : metric sample budget of the level (points inside the fixed mask when one is
        given). The cost of an iteration is proportional to it, not to the image size.
    iterations : optimiser iterations at most.
    step_mm : first step of the regular-step gradient descent, in mm of physical shift
        (rigid/affine; ignored by the B-spline stage). ``None``: 2 x ``spacing_mm``.
    relaxation : factor applied to the step each time the gradient turns by more than 90
        degrees; the level ends when the step falls below 0.001 mm. Closer to 1 converges
        further along shallow directions (an affine's scales) at the cost of iterations.
    """

    spacing_mm: float
    samples: int
    iterations: int = 200
    step_mm: float | None = None
    relaxation: float = 0.5

    def __post_init__(self) -> None:
        if not self.spacing_mm > 0:
            raise ValueError(f"Level.spacing_mm must be > 0, got {self.spacing_mm}")
        if self.samples < 100:
            raise ValueError(f"Level.samples must be >= 100, got {self.samples}")
        if self.iterations < 1:
            raise ValueError(f"Level.iterations must be >= 1, got {self.iterations}")
        if self.step_mm is not None and not self.step_mm > 0:
            raise ValueError(f"Level.step_mm must be > 0, got {self.step_mm}")
        if not 0 < self.relaxation < 1:
            raise ValueError(f"Level.relaxation must be in (0, 1), got {self.relaxation}")


@dataclass(frozen=True)
class RegistrationConfig:
    """How :func:`imaging.registration.register` aligns a moving image to a fixed one.

    The defaults (rigid then affine) reach a 95th-percentile target registration error of
    0.02-0.05 mm on rigidly moved copies of 512x512x61 and 256x256x150 CTs in about 2 s on
    one thread (``docs/registration.md`` has the figures).

    Attributes
    ----------
    stages : run in this order, each starting from the previous result: a subsequence of
        ("rigid", "affine", "bspline").
    rigid_levels, affine_levels, bspline_levels : pyramid levels of each stage, coarse to fine.
    evaluation_level : where ``metric_initial``, ``metric_final`` and the metric after each
        stage are measured: ``samples`` voxels of that level drawn once (``seed``), the same
        points for every evaluation, so they compare. The level sets the checks' sensitivity
        (at 2.5 mm a stage that moves the fit 0.5 mm or 0.5 degrees the wrong way is seen; at
        6 mm only from about 1 mm or 2 degrees), the samples their noise floor (two independent
        noise volumes share about 0.01 nats over 50k samples, 0.045-0.1 over 10k, against the
        0.05 threshold). Each evaluation also passes once over the whole level (ITK's intensity
        range set-up, a mask test per voxel): about 45 ms on a 512 x 512 x 61 CT at 2.5 mm.
    histogram_bins : Mattes mutual information bins. 64 gives a sharper optimum than the
        textbook 32 (TRE95 on the lung2 copy: 0.025 mm against 0.06 mm).
    seed : sampling seed; the same inputs and seed give the same transform.
    threads : ITK threads of the optimisation. 1 (the default) makes the result bit for bit
        reproducible: with more threads, ITK's Mattes metric adds the threads' gradient parts
        in the order they finish, and the optimiser's step decisions turn those 1e-15
        differences into results that differ by up to 1e-3. ``None``: SimpleITK's global
        default (faster on an idle multi-core machine, not reproducible). The metric's threader
        follows SimpleITK's process-wide default, which is set for the duration of each
        optimisation and restored after it.
    initializer : "geometry" (centres of the two grids, the default: follow-ups of one
        scanner), "moments" (centres of mass) or "none" (identity).
    max_rotation_deg : plausibility limit on the rotation of the linear part.
    scale_range : plausibility limits on the scales (singular values) of the linear part.
    max_translation_mm : plausibility limit on the displacement of the fixed grid's centre,
        or ``None`` for no limit.
    bspline_grid_mm : control-point spacing of the B-spline stage, mm.
    max_bspline_displacement_mm : plausibility limit on the B-spline displacement.
    min_mutual_information : below this mutual information (nats), at the end of any level
        or at the result, the images share too little to trust the fit (a noise image scores
        about 0.003; the sample CT and MR follow-ups 0.9 to 1.6): status "failed".
    use_masks : restrict the metric to ``fixed_mask`` / ``moving_mask`` when they are given.
    fov_margin_mm : band along each face of both fields of view that the metric ignores: what
        lies there differs between scans (anatomy entering or leaving the field; background
        filled in by resampling). 0 uses everything.
    """

    stages: tuple[Stage, ...] = ("rigid", "affine")
    # Converged fits take 15-45 iterations per level; the caps bound the time a hopeless pair
    # (noise, another patient) can take before it is reported.
    rigid_levels: tuple[Level, ...] = (
        Level(6.0, 10_000, iterations=200, relaxation=0.7),
        Level(2.5, 20_000, iterations=100, relaxation=0.7),
    )
    # The affine starts from the rigid fit. Its coarse level reaches real scale differences
    # (15 % and more); the finer ones start with small steps, so that they do not wander off
    # along the shallow scale directions and stop before coming back.
    affine_levels: tuple[Level, ...] = (
        Level(6.0, 10_000, iterations=200, step_mm=1.0, relaxation=0.7),
        Level(2.5, 20_000, iterations=100, step_mm=0.25, relaxation=0.7),
        Level(1.25, 50_000, iterations=100, step_mm=0.1, relaxation=0.7),
    )
    # ITK's Mattes metric works on every B-spline parameter for every sample (about 10 ns per
    # sample and parameter), so the optional B-spline stage runs on small budgets.
    bspline_levels: tuple[Level, ...] = (
        Level(5.0, 5_000, iterations=30),
        Level(2.5, 10_000, iterations=30),
    )
    evaluation_level: Level = Level(2.5, 50_000)
    histogram_bins: int = 64
    seed: int = 20240102
    threads: int | None = 1
    initializer: Initializer = "geometry"
    max_rotation_deg: float = 20.0
    scale_range: tuple[float, float] = (0.8, 1.25)
    max_translation_mm: float | None = None
    bspline_grid_mm: float = 60.0
    max_bspline_displacement_mm: float = 20.0
    min_mutual_information: float = 0.05
    use_masks: bool = True
    fov_margin_mm: float = 10.0

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("RegistrationConfig.stages is empty")
        unknown = [s for s in self.stages if s not in STAGE_ORDER]
        if unknown:
            raise ValueError(f"RegistrationConfig.stages: unknown stage(s) {unknown}; expected a subsequence of {STAGE_ORDER}")
        order = [STAGE_ORDER.index(s) for s in self.stages]
        if order != sorted(set(order)):
            raise ValueError(f"RegistrationConfig.stages must be a subsequence of {STAGE_ORDER} without repeats, got {self.stages}")
        for stage in self.stages:
            if not self.levels(stage):
                raise ValueError(f"RegistrationConfig: stage {stage!r} has no levels")
        lo, hi = self.scale_range
        if not 0 < lo <= 1 <= hi:
            raise ValueError(f"RegistrationConfig.scale_range must satisfy 0 < low <= 1 <= high, got {self.scale_range}")
        if not self.max_rotation_deg > 0:
            raise ValueError("RegistrationConfig.max_rotation_deg must be > 0")
        if self.fov_margin_mm < 0:
            raise ValueError("RegistrationConfig.fov_margin_mm must be >= 0")
        if self.histogram_bins < 8:
            raise ValueError("RegistrationConfig.histogram_bins must be >= 8")
        if self.initializer not in ("geometry", "moments", "none"):
            raise ValueError(f"RegistrationConfig.initializer: {self.initializer!r}; expected geometry, moments or none")

    def levels(self, stage: str) -> tuple[Level, ...]:
        """The pyramid levels of ``stage``."""
        return {"rigid": self.rigid_levels, "affine": self.affine_levels, "bspline": self.bspline_levels}[stage]

    def to_dict(self) -> dict:
        return asdict(self)
