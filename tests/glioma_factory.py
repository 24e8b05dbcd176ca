"""A generated glioma course with known truth: post-contrast T1, FLAIR on its own grid, BraTS labels.

Per time point, in physical space (LPS mm) around a head of semi-axes 62 x 75 x 55 mm with a 5 mm skull:

- enhancing tumour (BraTS 2021 label 4): an ellipsoidal shell, semi-axes ``enh_axes`` (in-plane a, b
  and c along the slice normal), around a necrotic core (label 1: the same ellipsoid scaled by 0.5);
- oedema (label 2): a sphere of radius ``oedema_r`` around it (the tumour lies inside);
- optionally a resection cavity (label 6 in the label map's own convention; the test's config names it).

The T1c is 1 x 1 x 3 mm (anisotropic), axis-aligned but flipped in L-R; the FLAIR is 1.2 x 1.2 x 4 mm,
rotated 6 degrees and shifted 4 mm by a known rigid transform (the patient moved between sequences).
Truth: the enhancing lesion's long axis 2a and perpendicular 2b in its central slice (product 4ab), the
FLAIR burden's volume (the oedema sphere, minus a cavity lens if any).
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from tests.data_factory import rotation_matrix

HEAD = (62.0, 75.0, 55.0)
T1C_SPACING = (1.0, 1.0, 3.0)
T1C_SIZE = (150, 176, 44)
FLAIR_SPACING = (1.2, 1.2, 4.0)
FLAIR_SIZE = (126, 146, 34)
CENTRE = np.array([18.0, -10.0, 6.0])
#: FLAIR physical point -> T1c physical point: the head moved between the two sequences.
FLAIR_ROTATION_DEG = (2.0, -3.0, 6.0)
FLAIR_SHIFT_MM = (4.0, -2.5, 1.5)


@dataclass(frozen=True)
class Scan:
    """One time point's tumour (mm)."""

    date: str
    enh_axes: tuple[float, float, float] | None  # None: a non-enhancing glioma (no enhancing tumour, no necrosis)
    oedema_r: float
    cavity: tuple[float, float] | None = None  # (radius, distance of its centre from the tumour centre along +x)


def _grid(size, spacing, origin, direction) -> np.ndarray:
    """Physical (LPS) coordinates of every voxel centre, array order (z, y, x, 3)."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in reversed(size)], indexing="ij"), axis=-1)[..., ::-1]
    return np.asarray(origin) + (idx * np.asarray(spacing)) @ np.asarray(direction).T


def _image(array: np.ndarray, spacing, origin, direction, pixel=sitk.sitkFloat32) -> sitk.Image:
    image = sitk.Cast(sitk.GetImageFromArray(array), pixel)
    image.SetSpacing(tuple(float(v) for v in spacing))
    image.SetOrigin(tuple(float(v) for v in origin))
    image.SetDirection(tuple(float(v) for v in np.asarray(direction).ravel()))
    return image


def _tissues(points: np.ndarray, scan: Scan) -> dict[str, np.ndarray]:
    rel = points - CENTRE
    a, b, c = scan.enh_axes or (1.0, 1.0, 1.0)
    q = (rel[..., 0] / a) ** 2 + (rel[..., 1] / b) ** 2 + (rel[..., 2] / c) ** 2
    if scan.enh_axes is None:
        q = np.full(q.shape, np.inf)
    head = ((points / np.asarray(HEAD)) ** 2).sum(-1) <= 1.0
    brain = ((points / (np.asarray(HEAD) - 5.0)) ** 2).sum(-1) <= 1.0
    oedema = (rel ** 2).sum(-1) <= scan.oedema_r ** 2
    core = q <= CORE_SCALE ** 2
    enhancing = (q <= 1.0) & ~core
    cavity = np.zeros_like(head)
    if scan.cavity is not None:
        r, d = scan.cavity
        cavity = ((rel - np.array([d, 0.0, 0.0])) ** 2).sum(-1) <= r ** 2
    return {"head": head, "brain": brain, "oedema": oedema & ~cavity, "core": core & ~cavity,
            "enhancing": enhancing & ~cavity, "cavity": cavity & brain}


CORE_SCALE = 0.5


def _texture(points: np.ndarray) -> np.ndarray:
    """Smooth anatomy (gyri, ventricles, in a caricature) that both sequences show, each in its own contrast."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return 12.0 * np.sin(x / 7.0) * np.cos(y / 9.0) + 8.0 * np.sin(z / 6.0 + y / 15.0)


def flair_to_t1c() -> sitk.Euler3DTransform:
    t = sitk.Euler3DTransform()
    t.SetRotation(*np.deg2rad(FLAIR_ROTATION_DEG))
    t.SetTranslation(FLAIR_SHIFT_MM)
    return t


def write_scan(folder: Path, scan: Scan, *, cavity_label: int = 6) -> dict[str, float]:
    """t1c.nii.gz, flair.nii.gz and labels.nii.gz (BraTS 2021 values, cavity = ``cavity_label``); the truth."""
    folder.mkdir(parents=True, exist_ok=True)
    t1_dir = np.diag([-1.0, 1.0, 1.0])
    t1_origin = np.array([75.0, -88.0, -66.0])
    pts = _grid(T1C_SIZE, T1C_SPACING, t1_origin, t1_dir)
    t = _tissues(pts, scan)
    t1 = np.where(t["head"], 220.0, 0.0)
    t1 = np.where(t["brain"], 100.0 + _texture(pts), t1)
    t1 = np.where(t["oedema"], 110.0, t1)
    t1 = np.where(t["core"], 40.0, t1)
    t1 = np.where(t["enhancing"], 320.0, t1)
    t1 = np.where(t["cavity"], 15.0, t1)
    labels = np.zeros(t1.shape, np.uint8)
    labels[t["oedema"]] = 2
    labels[t["core"]] = 1
    labels[t["enhancing"]] = 4
    labels[t["cavity"]] = cavity_label
    sitk.WriteImage(_image(t1, T1C_SPACING, t1_origin, t1_dir), str(folder / "t1c.nii.gz"))
    sitk.WriteImage(_image(labels, T1C_SPACING, t1_origin, t1_dir, sitk.sitkUInt8), str(folder / "labels.nii.gz"))
    # FLAIR: its own grid, sampled where the moved head is (FLAIR point p shows the anatomy at T(p)).
    f_dir = rotation_matrix(0.0, 0.0, 4.0)
    f_origin = np.array([-75.0, -88.0, -66.0])
    f_pts = _grid(FLAIR_SIZE, FLAIR_SPACING, f_origin, f_dir)
    move = flair_to_t1c()
    rot = np.asarray(move.GetMatrix()).reshape(3, 3)
    moved = (f_pts - np.asarray(move.GetCenter())) @ rot.T + np.asarray(move.GetCenter()) + np.asarray(move.GetTranslation())
    ft = _tissues(moved, scan)
    flair = np.where(ft["head"], 40.0, 0.0)
    flair = np.where(ft["brain"], 90.0 - 0.8 * _texture(moved), flair)  # the same anatomy, another contrast
    flair = np.where(ft["oedema"], 260.0, flair)
    flair = np.where(ft["core"], 200.0, flair)
    flair = np.where(ft["enhancing"], 230.0, flair)
    flair = np.where(ft["cavity"], 10.0, flair)
    sitk.WriteImage(_image(flair, FLAIR_SPACING, f_origin, f_dir), str(folder / "flair.nii.gz"))
    a, b, _ = scan.enh_axes or (0.0, 0.0, 0.0)
    volume = 4.0 / 3.0 * np.pi * scan.oedema_r ** 3
    if scan.cavity is not None:  # a cavity inside the oedema, clear of the enhancing tumour: never abnormal tissue
        r, d = scan.cavity
        assert d + r < scan.oedema_r and d - r > (scan.enh_axes or (0.0,))[0], "cavity must lie inside the oedema"
        volume -= 4.0 / 3.0 * np.pi * r ** 3
    return {"long_axis_mm": 2 * a, "perpendicular_mm": 2 * b, "product_mm2": 4 * a * b, "flair_volume_mm3": volume,
            "flair_product_mm2": 4 * scan.oedema_r ** 2}


def write_glioma_dataset(root: Path, scans: list[Scan], *, patient: str = "G001", treatment_start: str,
                         radiotherapy_end: str | None, visits_extra: dict[str, str] | None = None,
                         tumour: str = "") -> dict[str, dict]:
    """A NIfTI dataset of one patient (``root/<patient>/<date>/``), its visits and clinical CSVs; truth per date."""
    truth = {s.date: write_scan(root / patient / s.date, s) for s in scans}
    with (root / "visits.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["patient_id", "timepoint", "date", "steroid_dose_mg", "clinically_stable", "t2_flair"])
        for s in scans:
            w.writerow([patient, s.date, s.date, "0", "true", (visits_extra or {}).get(s.date, "")])
    with (root / "clinical.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["patient_id", "treatment_start", "radiotherapy_end", "immunotherapy", "tumour"])
        w.writerow([patient, treatment_start, radiotherapy_end or "", "false", tumour])
    assert all(dt.date.fromisoformat(s.date) for s in scans)
    return truth
