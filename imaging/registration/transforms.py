"""Transforms as data: 4x4 matrices, decomposition into rotation and scales, and their files.

Convention (ITK's, used throughout :mod:`imaging.registration`): a registration transform maps
a FIXED physical point (LPS, mm) to the MOVING physical point of the same anatomy, so
``sitk.Resample(moving, fixed, transform)`` brings the moving image onto the fixed grid.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy.linalg import polar

from imaging.registration.errors import RegistrationError

SIDECAR_SUFFIX = ".json"
_TRANSFORM_SUFFIXES = (".tfm", ".txt", ".h5", ".hdf5", ".mat")


def transform_from_matrix(matrix_4x4: np.ndarray | list) -> sitk.AffineTransform:
    """An ITK affine transform from a 4x4 homogeneous matrix (x' = M x, points in mm)."""
    m = np.asarray(matrix_4x4, dtype=float)
    if m.shape != (4, 4):
        raise ValueError(f"expected a 4x4 matrix, got shape {m.shape}")
    if not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0]):
        raise ValueError(f"last row of a homogeneous matrix must be 0 0 0 1, got {m[3].tolist()}")
    t = sitk.AffineTransform(3)
    t.SetMatrix(m[:3, :3].ravel().tolist())
    t.SetTranslation(m[:3, 3].tolist())
    return t


def _components(transform: sitk.Transform) -> list[sitk.Transform]:
    """The transforms of a composite in the order they act on a point (first applied first)."""
    t = transform.Downcast() if hasattr(transform, "Downcast") else transform
    if isinstance(t, sitk.CompositeTransform):
        parts: list[sitk.Transform] = []
        # A composite applies its last-added transform first.
        for i in reversed(range(t.GetNumberOfTransforms())):
            parts.extend(_components(t.GetNthTransform(i)))
        return parts
    return [t]


def _is_linear(t: sitk.Transform) -> bool:
    return t.IsLinear() if hasattr(t, "IsLinear") else False


def linear_matrix(transform: sitk.Transform) -> np.ndarray:
    """4x4 matrix of the linear (rigid/affine) part of ``transform``.

    Non-linear components (B-spline, displacement field) of a composite are skipped: the result
    is the composition of its linear components, which is what plausibility limits on rotation
    and scale are about.
    """
    m = np.eye(4)
    for part in _components(transform):
        if not _is_linear(part):
            continue
        # Any linear ITK transform: x' = A x + b; A and b from four points.
        base = np.asarray(part.TransformPoint((0.0, 0.0, 0.0)), dtype=float)
        a = np.column_stack([np.asarray(part.TransformPoint(tuple(e)), dtype=float) - base for e in np.eye(3)])
        step = np.eye(4)
        step[:3, :3] = a
        step[:3, 3] = base
        m = step @ m
    return m


def decompose(matrix: np.ndarray) -> tuple[float, tuple[float, float, float], bool]:
    """Rotation angle (deg), scales and reflection flag of a 3x3 (or 4x4) linear map.

    The polar decomposition A = R P gives the closest rotation R and the stretch P; the scales
    are P's eigenvalues (A's singular values), ascending. ``reflection`` is True when
    det(A) < 0 (R is then a rotation times a reflection, never plausible for a patient).
    """
    a = np.asarray(matrix, dtype=float)[:3, :3]
    r, p = polar(a, side="right")
    reflection = bool(np.linalg.det(a) < 0)
    if reflection:
        r = -r
    cos = np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0)
    scales = tuple(float(v) for v in np.sort(np.linalg.eigvalsh((p + p.T) / 2.0)))
    return float(np.degrees(np.arccos(cos))), scales, reflection  # type: ignore[return-value]


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Where the JSON quality sidecar of a transform file lives: ``T.tfm`` -> ``T.tfm.json``."""
    p = Path(path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def save_transform(result, path: str | os.PathLike[str]) -> Path:  # noqa: ANN001 - RegistrationResult (import cycle)
    """Write ``result.transform`` (ITK .tfm/.txt or .h5) and its quality figures as a JSON sidecar.

    Parameters
    ----------
    result : a :class:`~imaging.registration.RegistrationResult`, or a bare ``sitk.Transform``
        (no sidecar is written then).
    path : transform file; the sidecar is ``path + ".json"``.

    Returns
    -------
    The transform file's path. Both files are written to a temporary name first and renamed,
    so a reader never sees half a file.
    """
    p = Path(path)
    if p.suffix.lower() not in _TRANSFORM_SUFFIXES:
        raise RegistrationError(f"{p}: unsupported transform file type {p.suffix!r}; use one of {', '.join(_TRANSFORM_SUFFIXES)}")
    p.parent.mkdir(parents=True, exist_ok=True)
    transform = result if isinstance(result, sitk.Transform) else result.transform
    tmp = p.with_name(f".{p.stem}.partial{p.suffix}")
    sitk.WriteTransform(transform, str(tmp))
    os.replace(tmp, p)
    if not isinstance(result, sitk.Transform):
        side = sidecar_path(p)
        tmp_side = side.with_name(f".{side.name}.partial")
        tmp_side.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        os.replace(tmp_side, side)
    return p


def load_transform(path: str | os.PathLike[str]) -> sitk.Transform:
    """Read a transform written by :func:`save_transform` (or any ITK transform file).

    Returns the concrete SimpleITK type (``Euler3DTransform``, ``AffineTransform``,
    ``CompositeTransform`` ...). The quality figures are in :func:`load_quality`.
    """
    p = Path(path)
    if not p.is_file():
        raise RegistrationError(f"{p}: no such transform file")
    try:
        t = sitk.ReadTransform(str(p))
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
        raise RegistrationError(f"{p}: unreadable transform ({reason})") from exc
    return t.Downcast() if hasattr(t, "Downcast") else t


def load_quality(path: str | os.PathLike[str]) -> dict | None:
    """The JSON sidecar of a transform file (status, problems, metric, rotation ...), or None."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise RegistrationError(f"{side}: invalid JSON ({exc})") from exc
