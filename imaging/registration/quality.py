"""Accuracy figures of a registration against a known transform: body points and TRE."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

CT_BODY_HU = -500.0  # air/lung below, soft tissue and bone above


def body_mask(image: sitk.Image, threshold: float | None = None) -> sitk.Image:
    """Voxels inside the body by an intensity threshold (uint8, 1 = body).

    Parameters
    ----------
    threshold : voxels above it are body. ``None``: -500 HU for a CT (an image whose minimum
        is below -500), else 20 % of the 99th percentile (MR; background near 0).
    """
    arr = sitk.GetArrayViewFromImage(image)
    if threshold is None:
        threshold = CT_BODY_HU if float(arr.min()) < CT_BODY_HU else 0.2 * float(np.percentile(arr, 99))
    mask = sitk.GetImageFromArray((arr > threshold).astype(np.uint8))
    mask.CopyInformation(image)
    return mask


def sample_points(mask: sitk.Image, n: int, seed: int = 0) -> np.ndarray:
    """``n`` distinct voxel centres drawn uniformly from the non-zero voxels of ``mask``, (n, 3) LPS mm."""
    idx = np.argwhere(sitk.GetArrayViewFromImage(mask) != 0)
    if len(idx) < n:
        raise ValueError(f"mask has {len(idx)} voxels, {n} points requested")
    pick = idx[np.random.default_rng(seed).choice(len(idx), n, replace=False)][:, ::-1]
    return np.array([mask.TransformIndexToPhysicalPoint([int(v) for v in p]) for p in pick], dtype=float)


def target_registration_error(
    estimated: sitk.Transform, true: sitk.Transform, points: Sequence[Sequence[float]] | np.ndarray
) -> np.ndarray:
    """|T_est(x) - T_true(x)| at each point x (mm), for transforms of the same direction."""
    pts = np.asarray(points, dtype=float).reshape(-1, 3)
    est = np.array([estimated.TransformPoint(tuple(p)) for p in pts.tolist()], dtype=float)
    ref = np.array([true.TransformPoint(tuple(p)) for p in pts.tolist()], dtype=float)
    return np.linalg.norm(est - ref, axis=1)
