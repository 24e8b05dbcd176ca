"""Label maps and images with known truth for registration and tracking tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class Ball:
    """An ellipsoid in BASELINE physical space (LPS mm), axis-aligned."""

    label: int
    centre: tuple[float, float, float]
    radii: tuple[float, float, float]


def grid_image(size=(64, 64, 32), spacing=(2.0, 2.0, 3.0), origin=(-64.0, -64.0, -48.0), direction=None) -> sitk.Image:
    img = sitk.Image([int(v) for v in size], sitk.sitkUInt16)
    img.SetSpacing([float(v) for v in spacing])
    img.SetOrigin([float(v) for v in origin])
    if direction is not None:
        img.SetDirection([float(v) for v in np.asarray(direction, dtype=float).ravel()])
    return img


def physical_points(grid: sitk.Image) -> np.ndarray:
    """(nz, ny, nx, 3) LPS position of every voxel centre."""
    nx, ny, nz = grid.GetSize()
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    idx = np.stack([i, j, k], axis=-1).astype(float)
    d = np.asarray(grid.GetDirection(), dtype=float).reshape(3, 3)
    return np.asarray(grid.GetOrigin()) + (idx * np.asarray(grid.GetSpacing())) @ d.T


def rigid(rotation_deg=(0.0, 0.0, 0.0), translation_mm=(0.0, 0.0, 0.0), centre=(0.0, 0.0, 0.0)) -> sitk.Euler3DTransform:
    """Baseline point -> follow-up point."""
    return sitk.Euler3DTransform(centre, *np.deg2rad(rotation_deg), translation_mm)


def label_map(balls: Sequence[Ball], grid: sitk.Image | None = None, to_followup: sitk.Transform | None = None) -> sitk.Image:
    """The balls as a label map on ``grid`` in a follow-up frame.

    ``to_followup`` maps baseline points to follow-up points (as a registration of the
    follow-up to the baseline does): a follow-up voxel at y holds what the baseline has at
    to_followup^-1(y). Later balls overwrite earlier ones where they overlap.
    """
    grid = grid if grid is not None else grid_image()
    pts = physical_points(grid)
    if to_followup is not None:
        inv = to_followup.GetInverse()
        flat = pts.reshape(-1, 3)
        pts = np.array([inv.TransformPoint(tuple(p)) for p in flat.tolist()]).reshape(pts.shape)
    out = np.zeros(pts.shape[:3], dtype=np.uint16)
    for b in balls:
        q = (pts - np.asarray(b.centre)) / np.asarray(b.radii)
        out[(q**2).sum(axis=-1) <= 1.0] = b.label
    img = sitk.GetImageFromArray(out)
    img.CopyInformation(grid)
    return img


def textured_volume(size=(96, 96, 40), spacing=(2.0, 2.0, 4.0), seed: int = 7) -> sitk.Image:
    """A smooth random 'anatomy' (float32) with a body outline, cheap to register."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = size
    noise = rng.normal(size=(nz, ny, nx)).astype(np.float32)
    from scipy import ndimage

    tex = ndimage.gaussian_filter(noise, sigma=(1.0, 2.5, 2.5))
    tex = 400.0 * tex / tex.std()
    zz, yy, xx = np.meshgrid(np.linspace(-1, 1, nz), np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij")
    body = (xx**2 / 0.8**2 + yy**2 / 0.6**2) <= 1.0
    arr = np.where(body, tex + 40.0, -1000.0).astype(np.float32)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing([float(v) for v in spacing])
    img.SetOrigin([-(nx - 1) * spacing[0] / 2, -(ny - 1) * spacing[1] / 2, -(nz - 1) * spacing[2] / 2])
    return img


def moved(image: sitk.Image, to_moved: sitk.Transform, interpolator=sitk.sitkBSpline) -> sitk.Image:
    """``image`` with its content moved by ``to_moved`` (a fixed point x appears at to_moved(x))."""
    bg = float(sitk.GetArrayViewFromImage(image).min())
    return sitk.Resample(image, image, to_moved.GetInverse(), interpolator, bg, image.GetPixelID())
