"""Shared checks of the DICOM objects: dciodvfy, SEG back to a label image."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk


def require_tool(name: str, package: str) -> str:
    """Path of a Debian tool the tests drive: skip locally when missing, fail under CI (system-deps installs it)."""
    found = shutil.which(name) or next((p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}") if os.access(p, os.X_OK)),
                                       None)
    if found:
        return found
    reason = f"{name} not installed (Debian package {package}; `make system-deps` or .ci/system-deps.sh installs it)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass(frozen=True)
class Validation:
    iod: str
    errors: tuple[str, ...]
    warnings: tuple[str, ...]


def dciodvfy(binary: str, path: Path) -> Validation:
    """Run dicom3tools' IOD validator; its verdict lines, split into errors and warnings."""
    proc = subprocess.run([binary, str(path)], capture_output=True, text=True, timeout=60)
    lines = [line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    errors = tuple(line for line in lines if line.startswith("Error"))
    warnings = tuple(line for line in lines if line.startswith("Warning"))
    iod = next((line for line in lines if not line.startswith(("Error", "Warning"))), "")
    return Validation(iod, errors, warnings)


def seg_on_grid(seg_path: Path, reference: sitk.Image, label_of_segment: dict[int, int]) -> sitk.Image:
    """A SEG read with highdicom, resampled (nearest neighbour) onto ``reference``; segment n -> label_of_segment[n]."""
    import highdicom as hd

    seg = hd.seg.segread(seg_path)
    volume = seg.get_volume(combine_segments=True, relabel=False)
    array = np.asarray(volume.array)
    lut = np.zeros(max(label_of_segment) + 1, dtype=np.uint16)
    for number, label in label_of_segment.items():
        lut[number] = label
    labels = lut[array]
    affine = np.asarray(volume.affine, dtype=float)  # (slice, row, column) index -> LPS
    steps = affine[:3, :3]
    spacing = np.linalg.norm(steps, axis=0)
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((float(spacing[2]), float(spacing[1]), float(spacing[0])))
    direction = np.stack([steps[:, 2] / spacing[2], steps[:, 1] / spacing[1], steps[:, 0] / spacing[0]], axis=1)
    image.SetDirection(tuple(float(v) for v in direction.flatten()))
    image.SetOrigin(tuple(float(v) for v in affine[:3, 3]))
    return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16)
