#!/usr/bin/env python3
"""Deterministic longitudinal sample data derived from REAL images.

Source: the CT/MR test cases (image + tumour mask, NRRD) shipped in the sdist of
pyradiomics-bhklab 3.1.4 on PyPI (BSD-3-clause, Copyright 2017 Harvard Medical School;
see the sdist's LICENSE.txt).  The sdist is downloaded once with pip into
``sample_data/.cache`` and verified against ``SDIST_SHA256``.

For every patient in ``PATIENTS`` and every timepoint, the (canonicalised) source image is
warped by

  (a) a local radial scaling of the lesion by a linear factor ``s`` about the lesion centroid
      ``c`` (exact scaled copy inside ``rho1``, identity outside ``rho2``, monotone cubic
      Hermite in between), then
  (b) a rigid repositioning ``R`` of the patient in the (fixed) scanner grid,

implemented as an inverse map sampled with ``scipy.ndimage.map_coordinates``.  P003 also gets
a new analytic ellipsoidal lesion.  Each timepoint is written as a DICOM series (one file per
slice), ``image.nii.gz`` and ``mask.nii.gz``; each patient gets ``truth.json`` (exact ground
truth) and ``lesions.json`` (label sidecar).

Usage (from the repo root)::

    .venv/bin/python sample_data/generate.py --out sample_data/generated

The output is written to a temporary sibling directory and renamed into place; finally
``<out>/.complete`` is touched (the Makefile depends on it).  Re-running gives byte-identical
files.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)
from scipy import ndimage

# --------------------------------------------------------------------------------------------
# The patient table (single source of truth for the stories).
#
# Expected RECIST 1.1 (single target lesion L1 + new lesion rule), printed at the end and
# written to truth.json "intended_recist":
#   P001: baseline, SD (-15%), PR (-32%), PR (-38%), PR (-40%)
#   P002: baseline, PD (+30% vs nadir and +>5 mm), SD (0%), SD (-20%),
#         PR (-35%, clear of the 30% boundary)
#   P003: null (pre-baseline), baseline, SD (+25% but only ~+4 mm < 5 mm), PD (+60%),
#         PD (new lesion L2, +90%), PD (+120%)
# --------------------------------------------------------------------------------------------
PATIENTS: list[dict] = [
    {
        "patient_id": "P001",
        "source_case": "lung2",
        "modality": "CT",
        "organ": "lung",
        "story": "partial response",
        "seed": 20240102,
        "context": {"treatment_start": "2024-01-08", "radiotherapy_end": None, "immunotherapy": False},
        # (date, lesion linear scale)
        "timepoints": [
            ("2024-01-02", 1.00),
            ("2024-02-13", 0.85),
            ("2024-03-26", 0.68),
            ("2024-05-07", 0.62),
            ("2024-06-18", 0.60),
        ],
        "new_lesion": None,
        "fake": {"name": "DOE^JANE", "birth_date": "19580314", "sex": "F", "series_number": 3,
                 "study_description": "CT CHEST WITH CONTRAST", "series_description": "AX CHEST 5mm",
                 "study_time": "091500", "body_part": "CHEST"},
    },
    {
        "patient_id": "P002",
        "source_case": "brain1",
        "modality": "MR",
        "organ": "brain",
        "story": "pseudoprogression after chemoradiotherapy (glioma)",
        "seed": 20240325,
        "context": {"treatment_start": "2024-03-28", "radiotherapy_end": "2024-02-26", "immunotherapy": False},
        "timepoints": [
            ("2024-03-25", 1.00),
            ("2024-05-06", 1.30),
            ("2024-06-17", 1.00),
            ("2024-07-29", 0.80),
            ("2024-09-09", 0.65),
        ],
        "new_lesion": None,
        "fake": {"name": "ROE^RICHARD", "birth_date": "19710829", "sex": "M", "series_number": 5,
                 "study_description": "MR BRAIN WITH AND WITHOUT CONTRAST", "series_description": "AX MR",
                 "study_time": "141000", "body_part": "BRAIN"},
    },
    {
        "patient_id": "P003",
        "source_case": "lung1",
        "modality": "CT",
        "organ": "lung",
        "story": "true progression under immunotherapy, new lesion",
        "seed": 20231106,
        "context": {"treatment_start": "2024-01-08", "radiotherapy_end": None, "immunotherapy": True},
        "timepoints": [
            ("2023-11-06", 0.92),  # pre-baseline: the lesion was smaller before
            ("2024-01-02", 1.00),
            ("2024-02-19", 1.25),
            ("2024-04-01", 1.60),
            ("2024-05-13", 1.90),
            ("2024-06-24", 2.20),
        ],
        # New lesion (label 2): axis-aligned ellipsoid, semi-axes (a, b, c) in mm along the grid's
        # (x, y, z) axes; in-plane long axis 2*max(a, b) = 12 mm then 16 mm.
        "new_lesion": {
            "label": 2, "lesion_id": "L2", "organ": "lung", "nodal": False,
            "semi_axes_mm": {"2024-05-13": (6.0, 4.8, 5.0), "2024-06-24": (8.0, 6.4, 6.7)},
            "min_distance_mm": 40.0,  # from the real lesion (at its largest extent)
            "margin_mm": 5.0,  # ellipsoid + margin must lie in lung parenchyma at HU < -600
            "hu_max": -600.0,
        },
        "fake": {"name": "ROE^MARY", "birth_date": "19640202", "sex": "F", "series_number": 2,
                 "study_description": "CT CHEST", "series_description": "AX LUNG 5mm",
                 "study_time": "103000", "body_part": "CHEST"},
    },
]

SDIST_NAME = "pyradiomics-bhklab"
SDIST_VERSION = "3.1.4"
SDIST_FILE = "pyradiomics_bhklab-3.1.4.tar.gz"
SDIST_SHA256 = "a44a087efc4ede91b5dfa5cf0de58ea3596bfaec1ef2484f278504b0a8fd5ffb"
SDIST_PREFIX = "pyradiomics_bhklab-3.1.4/"
CACHE_DIR = Path(__file__).resolve().parent / ".cache"

INSTITUTION = "EXAMPLE GENERAL HOSPITAL"  # fake
REFERRING = "SMITH^JOHN"  # fake
UID_NAMESPACE = "tumor-response/sample_data/v1"
BACKGROUND = {"CT": -1024.0, "MR": 0.0}
VALUE_RANGE = {"CT": (-1024, 3071), "MR": (0, 32767)}
RIGID_ROT_INPLANE_DEG = 4.0
RIGID_ROT_OUTPLANE_DEG = 2.0
RIGID_TRANS_MM = 5.0
INNER_MARGIN_MM = 2.0
FRAME_OF_REFERENCE_NOTE = (
    "One FrameOfReferenceUID per timepoint (study): the patient is repositioned between scans, so "
    "LPS coordinates of different timepoints are NOT in a common frame. transform.matrix_4x4 maps a "
    "baseline (= source) LPS point to the same anatomical point in that timepoint's LPS frame (exact "
    "outside the lesion's deformation zone). The scanner grid (size/spacing/origin/direction) is "
    "identical at every timepoint of a patient."
)


# --------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grid:
    size: tuple[int, int, int]  # (x, y, z) like SimpleITK
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # 9 floats, row-major, columns = axis cosines (SimpleITK)

    @property
    def D(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def normal(self) -> np.ndarray:
        return self.D[:, 2]

    def index_to_physical(self) -> np.ndarray:
        """4x4 mapping a continuous index (i, j, k) = (x, y, z) to LPS mm."""
        m = np.eye(4)
        m[:3, :3] = self.D @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    def center(self) -> np.ndarray:
        return self.index_to_physical()[:3] @ np.r_[(np.asarray(self.size) - 1) / 2.0, 1.0]

    @staticmethod
    def of(img: sitk.Image) -> Grid:
        return Grid(tuple(int(v) for v in img.GetSize()), tuple(img.GetSpacing()),
                    tuple(img.GetOrigin()), tuple(img.GetDirection()))

    def to_json(self) -> dict:
        return {"size": list(self.size), "spacing_mm": [round(v, 7) for v in self.spacing],
                "origin_lps": [round(v, 6) for v in self.origin],
                "direction": [round(v, 7) + 0.0 for v in self.direction]}


def canonicalise(img: sitk.Image) -> sitk.Image:
    """Return the image on a right-handed grid (slice normal = row x column cosines).

    If det(direction) < 0 the third index axis is flipped (slices reversed, third direction
    column negated, origin moved to the former last slice).  Origin is rounded to 1e-6 mm and
    spacing to 1e-7 mm (sub-micrometre; removes float noise such as 6.499999999999998) so that
    the grid written in DICOM/NIfTI/truth is exactly the one used for resampling.
    """
    arr = sitk.GetArrayFromImage(img)  # (z, y, x)
    d = np.asarray(img.GetDirection(), dtype=float).reshape(3, 3)
    sp = np.asarray(img.GetSpacing(), dtype=float)
    org = np.asarray(img.GetOrigin(), dtype=float)
    if np.linalg.det(d) < 0:
        nz = arr.shape[0]
        org = org + (nz - 1) * sp[2] * d[:, 2]
        d = d.copy()
        d[:, 2] = -d[:, 2]
        arr = arr[::-1]
    d = np.where(np.abs(d) < 1e-12, 0.0, d)
    assert np.allclose(np.cross(d[:, 0], d[:, 1]), d[:, 2], atol=1e-6), "grid is not right-handed"
    out = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    out.SetSpacing([round(float(v), 7) for v in sp])
    out.SetOrigin([round(float(v), 6) + 0.0 for v in org])
    out.SetDirection([float(v) + 0.0 for v in d.ravel()])
    return out


def rotation_matrix(deg_xyz, direction: np.ndarray) -> np.ndarray:
    """Rotation in LPS: R = D . Rz(g) . Ry(b) . Rx(a) . D^T with angles about the GRID axes.

    ``deg_xyz = [a, b, g]``: a about the grid x axis (row cosine), b about the grid y axis
    (column cosine), g about the slice normal (in-plane rotation).
    """
    a, b, g = np.deg2rad(np.asarray(deg_xyz, dtype=float))
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(g), -math.sin(g), 0], [math.sin(g), math.cos(g), 0], [0, 0, 1]])
    return direction @ rz @ ry @ rx @ direction.T


def rigid_matrix(deg_xyz, translation, center, direction) -> np.ndarray:
    """4x4: x' = R (x - center) + center + t (source/baseline LPS -> timepoint LPS)."""
    r = rotation_matrix(deg_xyz, direction)
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = np.asarray(center) + np.asarray(translation) - r @ np.asarray(center)
    return m


# --------------------------------------------------------------------------------------------
# Radial lesion scaling
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RadialMap:
    """Inverse radial map: follow-up radius rho -> source radius r = f(rho).

    rho <= rho1: r = rho / s (exact scaled copy); rho >= rho2: r = rho; in between a cubic
    Hermite with end values (rho1/s, rho2) and end slopes (1/s, 1).
    """

    s: float
    rho1: float
    rho2: float

    def _t(self, rho):
        return (rho - self.rho1) / (self.rho2 - self.rho1)

    def source_radius(self, rho) -> np.ndarray:
        rho = np.asarray(rho, dtype=float)
        h = self.rho2 - self.rho1
        t = np.clip(self._t(rho), 0.0, 1.0)
        t2, t3 = t * t, t * t * t
        herm = ((2 * t3 - 3 * t2 + 1) * (self.rho1 / self.s) + (t3 - 2 * t2 + t) * h / self.s
                + (-2 * t3 + 3 * t2) * self.rho2 + (t3 - t2) * h)
        return np.where(rho <= self.rho1, rho / self.s, np.where(rho >= self.rho2, rho, herm))

    def derivative(self, rho) -> np.ndarray:
        rho = np.asarray(rho, dtype=float)
        h = self.rho2 - self.rho1
        t = np.clip(self._t(rho), 0.0, 1.0)
        t2 = t * t
        dherm = ((6 * t2 - 6 * t) * (self.rho1 / self.s) + (3 * t2 - 4 * t + 1) * h / self.s
                 + (-6 * t2 + 6 * t) * self.rho2 + (3 * t2 - 2 * t) * h) / h
        return np.where(rho <= self.rho1, 1.0 / self.s, np.where(rho >= self.rho2, 1.0, dherm))

    def min_transition_slope(self, n: int = 20001) -> float:
        return float(self.derivative(np.linspace(self.rho1, self.rho2, n)).min())


def make_radial_map(s: float, r_lesion: float, margin: float = INNER_MARGIN_MM) -> RadialMap:
    """rho1 = s * R_lesion + margin; rho2 = the smallest on a 10 % ladder for which the
    transition slope f' stays within [0.25 * min(1, 1/s), 2 * max(1, 1/s)]: monotone (asserted)
    and without extreme local compression/stretching of the surrounding tissue."""
    if s <= 0:
        raise ValueError("scale must be positive")
    rho1 = s * r_lesion + margin
    lo, hi = 0.25 * min(1.0, 1.0 / s), 2.0 * max(1.0, 1.0 / s)
    gap = max(rho1, rho1 / s) - rho1 + 0.25 * rho1
    for _ in range(200):
        rmap = RadialMap(s, rho1, rho1 + gap)
        slopes = rmap.derivative(np.linspace(rmap.rho1, rmap.rho2, 20001))
        if slopes.min() >= lo and slopes.max() <= hi:
            break
        gap *= 1.1
    else:  # pragma: no cover
        raise RuntimeError(f"no monotone radial map for s={s}")
    assert rmap.min_transition_slope() > 0, "radial map is not monotone"
    return rmap


# --------------------------------------------------------------------------------------------
# The core warp (inverse map, chunked)
# --------------------------------------------------------------------------------------------
def warp_volume(src: np.ndarray, src_mask: np.ndarray, grid: Grid, forward: np.ndarray,
                centre: np.ndarray, rmap: RadialMap, background: float, mask_radius: float,
                chunk_voxels: int = 1 << 20) -> tuple[np.ndarray, np.ndarray, float]:
    """Resample ``src`` (z, y, x) and its binary mask onto the same grid after the radial lesion
    scaling (about ``centre``, LPS) followed by the rigid ``forward`` 4x4 (LPS -> LPS).

    Returns (float32 image, uint8 0/1 mask, fraction of voxels sampled outside the source).
    The mask is linearly interpolated as 0/1 and thresholded at >= 0.5; only voxels whose
    source point lies within ``mask_radius`` of ``centre`` are interpolated (elsewhere 0), from
    a crop of the mask around the lesion (padded by 2 voxels, so the crop changes no value).
    """
    nz, ny, nx = src.shape
    m = grid.index_to_physical()
    a = np.linalg.inv(forward) @ m  # output index -> pre-rigid (deformed-source) physical
    minv = np.linalg.inv(m)  # physical -> source index
    c = np.asarray(centre, dtype=float)
    out = np.empty(src.shape, dtype=np.float32)
    out_mask = np.zeros(src.shape, dtype=np.uint8)
    nzi = np.argwhere(src_mask > 0)
    if len(nzi):
        lo = np.maximum(nzi.min(axis=0) - 2, 0)
        hi = np.minimum(nzi.max(axis=0) + 3, src_mask.shape)
    else:
        lo, hi = np.zeros(3, int), np.ones(3, int)
    mask_f = src_mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(np.float32)
    per = max(1, chunk_voxels // (nx * ny))
    jj, ii = np.meshgrid(np.arange(ny, dtype=float), np.arange(nx, dtype=float), indexing="ij")
    outside = 0
    for k0 in range(0, nz, per):
        kk = np.arange(k0, min(nz, k0 + per), dtype=float)[:, None, None]
        p = [a[d, 0] * ii + a[d, 1] * jj + a[d, 2] * kk + a[d, 3] for d in range(3)]
        dv = [p[d] - c[d] for d in range(3)]
        rho = np.sqrt(dv[0] ** 2 + dv[1] ** 2 + dv[2] ** 2)
        ratio = np.ones_like(rho)
        near = rho < rmap.rho2
        if near.any():
            rn = rho[near]
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio[near] = np.where(rn > 0, rmap.source_radius(rn) / rn, 1.0 / rmap.s)
        q = [c[d] + dv[d] * ratio for d in range(3)]
        del p, dv
        idx = []
        for d in range(3):
            v = minv[d, 0] * q[0] + minv[d, 1] * q[1] + minv[d, 2] * q[2] + minv[d, 3]
            r = np.rint(v)
            idx.append(np.where(np.abs(v - r) < 1e-6, r, v))  # exact identity for the baseline
        del q
        coords = np.stack([idx[2], idx[1], idx[0]])  # array axis order (z, y, x)
        del idx
        lim = np.array([nz - 1, ny - 1, nx - 1], dtype=float).reshape(3, 1, 1, 1)
        outside += int(np.count_nonzero(((coords < 0) | (coords > lim)).any(axis=0)))
        sl = slice(k0, k0 + coords.shape[1])
        out[sl] = ndimage.map_coordinates(src, coords, order=1, mode="constant", cval=background,
                                          output=np.float32, prefilter=False)
        sel = rho * ratio <= mask_radius
        if sel.any():
            vals = ndimage.map_coordinates(mask_f, coords[:, sel] - lo[:, None], order=1, mode="constant",
                                           cval=0.0, output=np.float64, prefilter=False)
            block = np.zeros(sel.shape, dtype=np.uint8)
            block[sel] = vals >= 0.5
            out_mask[sl] = block
    return out, out_mask, outside / src.size


def paint_ellipsoid(img: np.ndarray, mask: np.ndarray, grid: Grid, centre_index, semi_axes,
                    value: float, label: int, ss: int = 4) -> np.ndarray:
    """Paint an axis-aligned (grid axes) ellipsoid in place: image = (1-occ)*img + occ*value,
    mask = label where occ >= 0.5; occ = fractional occupancy from ss^3 supersamples per voxel.
    Returns the occupancy array of the painted block."""
    sp = np.asarray(grid.spacing, dtype=float)
    ax = np.asarray(semi_axes, dtype=float)
    ci = np.asarray(centre_index, dtype=float)  # (i, j, k)
    lo = np.floor(ci - ax / sp - 1).astype(int)
    hi = np.ceil(ci + ax / sp + 1).astype(int)
    if (lo < 0).any() or (hi >= np.asarray(grid.size)).any():
        raise RuntimeError("new lesion ellipsoid leaves the field of view")
    offs = (np.arange(ss) + 0.5) / ss - 0.5
    rng_axes = []
    for d in range(3):
        vox = np.arange(lo[d], hi[d] + 1)
        # normalised coordinate (u/a) of every sub-sample: shape (n_vox, ss)
        rng_axes.append(((vox[:, None] + offs[None, :]) - ci[d]) * sp[d] / ax[d])
    ux, uy, uz = (r ** 2 for r in rng_axes)
    inside = (uz[:, None, None, :, None, None] + uy[None, :, None, None, :, None]
              + ux[None, None, :, None, None, :]) <= 1.0  # (k, j, i, sk, sj, si)
    occ = inside.mean(axis=(3, 4, 5))
    sl = (slice(lo[2], hi[2] + 1), slice(lo[1], hi[1] + 1), slice(lo[0], hi[0] + 1))
    img[sl] = (1.0 - occ) * img[sl] + occ * value
    sub = mask[sl]
    if (sub[occ >= 0.5] != 0).any():
        raise RuntimeError("new lesion overlaps an existing lesion label")
    sub[occ >= 0.5] = label
    return occ


# --------------------------------------------------------------------------------------------
# Lesion measurements on the source (reference implementations, brute force)
# --------------------------------------------------------------------------------------------
def lesion_stats(mask: np.ndarray, grid: Grid) -> dict:
    m = grid.index_to_physical()
    kji = np.argwhere(mask > 0)
    ijk = kji[:, ::-1].astype(float)
    pts = ijk @ m[:3, :3].T + m[:3, 3]
    c = pts.mean(axis=0)
    corners = np.array([[dx, dy, dz] for dx in (-0.5, 0.5) for dy in (-0.5, 0.5) for dz in (-0.5, 0.5)])
    cp = np.concatenate([(ijk + off) @ m[:3, :3].T + m[:3, 3] for off in corners])
    r_max = float(np.sqrt(((cp - c) ** 2).sum(axis=1)).max())
    v0 = len(kji) * float(np.prod(grid.spacing))
    return {"centroid": c, "r_lesion": r_max, "v0": v0, "l0": long_axis_mm(mask, grid), "corners": cp,
            "voxels": int(len(kji)), "slices": int(len(np.unique(kji[:, 0])))}


def long_axis_mm(mask: np.ndarray, grid: Grid) -> float:
    """Max over slices (index k) of the largest distance between CORNERS of the mask's pixels in
    that slice (Feret diameter of the union of pixel squares), brute force in physical mm."""
    best = 0.0
    m = grid.index_to_physical()
    for k in range(mask.shape[0]):
        ji = np.argwhere(mask[k] > 0)
        if len(ji) == 0:
            continue
        # corner coordinates doubled to stay integer: 2*i +- 1
        cx = (2 * ji[:, 1][:, None] + np.array([-1, 1, -1, 1])[None, :]).ravel()
        cy = (2 * ji[:, 0][:, None] + np.array([-1, -1, 1, 1])[None, :]).ravel()
        cor = np.unique(np.stack([cx, cy], axis=1), axis=0).astype(float) / 2.0
        pts = cor @ m[:3, :2].T  # in-plane physical offsets (translation irrelevant)
        for s0 in range(0, len(pts), 512):
            d2 = ((pts[s0:s0 + 512, None, :] - pts[None, :, :]) ** 2).sum(axis=2)
            best = max(best, float(np.sqrt(d2.max())))
    return best


def intended_recist(timepoints: list[dict]) -> list[str | None]:
    """RECIST 1.1 for one target lesion (label 1, non-new) plus the new-lesion rule, computed
    on the TRUE (unrounded) long axes; tolerance 1e-9 relative favours the "at least" side."""
    out: list[str | None] = []
    base = nadir = None
    eps = 1e-9
    for tp in timepoints:
        if tp["pre_baseline"]:
            out.append(None)
            continue
        total = sum(les["_long_axis_exact"] for les in tp["lesions"] if not les["new"])
        new = any(les["new"] for les in tp["lesions"])
        if tp["is_baseline"]:
            base = nadir = total
            out.append("baseline")
            continue
        if new or (total >= 1.2 * nadir * (1 - eps) and total - nadir >= 5.0 - eps):
            resp = "PD"
        elif total <= eps:
            resp = "CR"
        elif (total - base) / base <= -0.3 + eps:
            resp = "PR"
        else:
            resp = "SD"
        out.append(resp)
        nadir = min(nadir, total)
    return out


# --------------------------------------------------------------------------------------------
# Source download / extraction
# --------------------------------------------------------------------------------------------
def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_sources(cases: list[str], cache: Path = CACHE_DIR) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / SDIST_FILE
    if not sdist.exists():
        print(f"downloading {SDIST_NAME}=={SDIST_VERSION} sdist from PyPI into {cache} ...", flush=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", SDIST_NAME,
               f"{SDIST_NAME}=={SDIST_VERSION}", "-d", str(cache)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0 or not sdist.exists():
            raise SystemExit(f"error: could not download {SDIST_FILE} with pip:\n{res.stdout}\n{res.stderr}")
    digest = sha256_of(sdist)
    if digest != SDIST_SHA256:
        raise SystemExit(f"error: {sdist} has sha256 {digest}, expected {SDIST_SHA256}.\n"
                         f"Delete the file and re-run; if it persists, PyPI serves different bytes "
                         f"and the sample data would not be reproducible.")
    data_dir = cache / "pyradiomics_data"
    data_dir.mkdir(exist_ok=True)
    wanted = {f"{SDIST_PREFIX}data/{case}_{kind}.nrrd": data_dir / f"{case}_{kind}.nrrd"
              for case in cases for kind in ("image", "label")}
    wanted[f"{SDIST_PREFIX}LICENSE.txt"] = data_dir / "LICENSE.txt"
    wanted[f"{SDIST_PREFIX}data/README.md"] = data_dir / "README.md"
    if all(p.exists() for p in wanted.values()):
        return data_dir
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar:
            if member.name not in wanted:
                continue
            # Only the exact member names above are read, their content written to OUR path:
            # no member name is ever used as a filesystem path (no traversal possible).
            if not member.isfile() or ".." in Path(member.name).parts:
                raise SystemExit(f"error: unexpected tar member {member.name!r}")
            dest = wanted[member.name]
            src = tar.extractfile(member)
            tmp = dest.with_suffix(dest.suffix + ".part")
            with open(tmp, "wb") as f:
                shutil.copyfileobj(src, f)
            os.replace(tmp, dest)
    missing = [k for k, p in wanted.items() if not p.exists()]
    if missing:
        raise SystemExit(f"error: members missing from {SDIST_FILE}: {missing}")
    return data_dir


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------
def _ds(v: float) -> str:
    """Decimal String of at most 16 characters."""
    v = float(v)
    for decimals in range(8, -1, -1):
        s = f"{v:.{decimals}f}"
        if "." in s:
            s = s.rstrip("0").rstrip(".")
        if s in ("-0", ""):
            s = "0"
        if len(s) <= 16:
            return s
    raise ValueError(v)


def _uid(*parts) -> str:
    return generate_uid(entropy_srcs=[UID_NAMESPACE, *map(str, parts)])


def write_dicom_series(vol: np.ndarray, grid: Grid, modality: str, out_dir: Path, meta: dict) -> int:
    """Classic single-frame CT/MR Image Storage, explicit VR little endian, one file per slice.
    ``vol`` is (z, y, x) int: HU for CT, raw for MR. Returns the number of files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    d = grid.D
    nx, ny, nz = grid.size
    sx, sy, sz = grid.spacing
    o = np.asarray(grid.origin)
    n = np.cross(d[:, 0], d[:, 1])
    ipps = [o + k * sz * n for k in range(nz)]
    # Acquisition order head -> feet: most superior (largest LPS z) first.
    order = sorted(range(nz), key=lambda k: (-round(float(ipps[k][2]), 6), k))
    instance = {k: i + 1 for i, k in enumerate(order)}
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    if modality == "CT":
        intercept, wc, ww = -1024, -600, 1500
    else:
        intercept = 0
        lo_, hi_ = np.percentile(vol, [1, 99.5])
        wc, ww = int(round((lo_ + hi_) / 2)), max(1, int(round(hi_ - lo_)))
    if int(vol.min()) - intercept < 0 or int(vol.max()) - intercept > 65535:
        raise ValueError("pixel values out of the unsigned 16-bit range")
    f = meta["fake"]
    for k in range(nz):
        # A study of several series (the glioma's T1c and FLAIR) names each: its instances' UIDs differ.
        sop_uid = _uid(meta["patient_id"], meta["date"], *([meta["series_key"]] if "series_key" in meta else []), "sop", k)
        ds = Dataset()
        fm = FileMetaDataset()
        fm.MediaStorageSOPClassUID = sop_class
        fm.MediaStorageSOPInstanceUID = sop_uid
        fm.TransferSyntaxUID = ExplicitVRLittleEndian
        fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        fm.ImplementationVersionName = "TUMORRESP_SAMPLE"
        ds.file_meta = fm
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        date = meta["date"].replace("-", "")
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = f["study_time"]
        ds.AccessionNumber = meta["accession"]
        ds.Modality = modality
        ds.Manufacturer = "tumor-response sample_data generator"
        ds.InstitutionName = INSTITUTION
        ds.ReferringPhysicianName = REFERRING
        ds.StudyDescription = f["study_description"]
        ds.SeriesDescription = f["series_description"]
        ds.PatientName = f["name"]
        ds.PatientID = meta["patient_id"]
        ds.PatientBirthDate = f["birth_date"]
        ds.PatientSex = f["sex"]
        ds.BodyPartExamined = f["body_part"]
        ds.SliceThickness = _ds(sz)
        ds.SpacingBetweenSlices = _ds(sz)
        if modality == "CT":
            ds.KVP = ""
        else:
            ds.ScanningSequence = "RM"  # research mode: the real sequence is not known
            ds.SequenceVariant = "NONE"
            ds.ScanOptions = ""
            ds.MRAcquisitionType = "2D"
            ds.RepetitionTime = ""
            ds.EchoTime = ""
            ds.EchoTrainLength = ""
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = meta["study_uid"]
        ds.SeriesInstanceUID = meta["series_uid"]
        ds.StudyID = "1"
        ds.SeriesNumber = f["series_number"]
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = instance[k]
        ds.ImagePositionPatient = [_ds(v) for v in ipps[k]]
        ds.ImageOrientationPatient = [_ds(v) for v in np.r_[d[:, 0], d[:, 1]]]
        ds.FrameOfReferenceUID = meta["for_uid"]
        ds.PositionReferenceIndicator = ""
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ny
        ds.Columns = nx
        ds.PixelSpacing = [_ds(sy), _ds(sx)]  # [row spacing, column spacing]
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.WindowCenter = _ds(wc)
        ds.WindowWidth = _ds(ww)
        ds.RescaleIntercept = _ds(intercept)
        ds.RescaleSlope = "1"
        if modality == "CT":
            ds.RescaleType = "HU"
        ds.ImageComments = (f"SYNTHETIC follow-up derived from pyradiomics {meta['source_case']}; "
                            "not a real patient; not for clinical use")
        ds.PixelData = (vol[k].astype(np.int32) - intercept).astype("<u2").tobytes()
        name = hashlib.sha1(sop_uid.encode()).hexdigest()[:16]
        if name[0] not in "0123":  # ~1/4 of the files have no extension
            name += ".dcm"
        ds.save_as(out_dir / name, enforce_file_format=True)
    return nz


def to_sitk(arr: np.ndarray, grid: Grid) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(grid.spacing)
    img.SetOrigin(grid.origin)
    img.SetDirection(grid.direction)
    return img


# --------------------------------------------------------------------------------------------
# New lesion placement
# --------------------------------------------------------------------------------------------
def lung_parenchyma(hu: np.ndarray, voxel_ml: float) -> np.ndarray:
    """Air-density voxels enclosed by the body (per-slice hole filling), large components only."""
    body = hu > -500
    filled = np.stack([ndimage.binary_fill_holes(s) for s in body])
    lung = filled & ~body
    lab, n = ndimage.label(lung)
    if n == 0:
        return lung
    sizes = ndimage.sum(lung, lab, index=np.arange(1, n + 1)) * voxel_ml
    keep = np.flatnonzero(sizes >= 100.0) + 1
    return np.isin(lab, keep)


def ellipsoid_voxels(grid: Grid, centre_index, semi_axes) -> tuple[np.ndarray, ...] | None:
    """Index arrays (k, j, i) of voxels whose centre lies in the axis-aligned ellipsoid; None if
    the ellipsoid's bounding box leaves the grid."""
    sp = np.asarray(grid.spacing, dtype=float)
    ax = np.asarray(semi_axes, dtype=float)
    ci = np.asarray(centre_index, dtype=float)
    lo = np.floor(ci - ax / sp).astype(int)
    hi = np.ceil(ci + ax / sp).astype(int)
    if (lo < 0).any() or (hi >= np.asarray(grid.size)).any():
        return None
    k, j, i = np.mgrid[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1]
    inside = (((i - ci[0]) * sp[0] / ax[0]) ** 2 + ((j - ci[1]) * sp[1] / ax[1]) ** 2
              + ((k - ci[2]) * sp[2] / ax[2]) ** 2) <= 1.0
    return k[inside], j[inside], i[inside]


def choose_new_lesion_centre(hu: np.ndarray, grid: Grid, spec: dict, stats: dict, s_max: float,
                             rho2_max: float, seed: int) -> np.ndarray:
    """Centre (LPS, on a voxel centre of the baseline grid) where the largest ellipsoid plus the
    margin lies entirely in lung parenchyma at HU < hu_max, >= min_distance_mm from the real
    lesion at its largest extent, outside every deformation zone, and >= 15 mm inside the FOV."""
    axes = np.max(np.array(list(spec["semi_axes_mm"].values()), dtype=float), axis=0)
    grown = axes + spec["margin_mm"] + 0.5 * np.asarray(grid.spacing)  # conservative margin
    voxel_ml = float(np.prod(grid.spacing)) / 1000.0
    lung = lung_parenchyma(hu, voxel_ml)
    cand = np.flatnonzero(lung)
    if len(cand) == 0:
        raise RuntimeError("new lesion: no lung parenchyma found in the baseline image")
    rng = np.random.default_rng(seed)
    m = grid.index_to_physical()
    c = stats["centroid"]
    need = max(spec["min_distance_mm"] + s_max * stats["r_lesion"], rho2_max) + axes.max() + spec["margin_mm"]
    sp = np.asarray(grid.spacing)
    size = np.asarray(grid.size)
    for _ in range(5000):
        k, j, i = np.unravel_index(int(rng.choice(cand)), hu.shape)
        ci = np.array([i, j, k], dtype=float)
        p = m[:3] @ np.r_[ci, 1.0]
        if np.linalg.norm(p - c) < need:
            continue
        room = np.minimum(ci, size - 1 - ci) * sp - grown
        if (room < 15.0).any():
            continue
        vox = ellipsoid_voxels(grid, ci, grown)
        if vox is None:
            continue
        if (hu[vox] < spec["hu_max"]).all() and lung[vox].all():
            return p
    raise RuntimeError("new lesion: no valid centre found in lung parenchyma (HU < -600, "
                       f">= {spec['min_distance_mm']} mm from the lesion); check the source image")


LANDMARKS_PER_PATIENT = 12
LANDMARK_FOV_MARGIN_MM = 25.0  # >= the largest repositioning of a point near the FOV's edge


def choose_landmarks(vol: np.ndarray, grid: Grid, modality: str, centre: np.ndarray, exclude_mm: float,
                     seed: int, n: int = LANDMARKS_PER_PATIENT) -> np.ndarray:
    """``n`` baseline points (LPS, voxel centres) inside the body, each ``exclude_mm`` or more from the
    lesion centroid (outside every deformation zone, where the known rigid transform is exact) and
    ``LANDMARK_FOV_MARGIN_MM`` inside the grid, so that every follow-up still sees them.

    Written per time point as ``landmarks.csv`` (the baseline points moved by that time point's
    rigid transform): corresponding anatomical points with exact positions, which is what a
    registration's landmark error is measured on (configs' ``registration.landmarks``)."""
    if modality == "CT":
        body = vol > -300.0  # soft tissue and bone
    else:
        body = vol > float(np.percentile(vol[vol > 0], 25)) if (vol > 0).any() else vol > 0
    cand = np.flatnonzero(body)
    rng = np.random.default_rng(seed)
    m = grid.index_to_physical()
    sp = np.asarray(grid.spacing)
    size = np.asarray(grid.size)
    points: list[np.ndarray] = []
    for _ in range(20000):
        if len(points) == n or len(cand) == 0:
            break
        k, j, i = np.unravel_index(int(rng.choice(cand)), vol.shape)
        ci = np.array([i, j, k], dtype=float)
        if (np.minimum(ci, size - 1 - ci) * sp < LANDMARK_FOV_MARGIN_MM).any():
            continue
        pt = m[:3] @ np.r_[ci, 1.0]
        if np.linalg.norm(pt - centre) < exclude_mm or any(np.linalg.norm(pt - q) < 20.0 for q in points):
            continue
        points.append(pt)
    if len(points) < n:
        raise RuntimeError(f"landmarks: found only {len(points)} of {n} body points away from the lesion")
    return np.array(points)


def write_landmarks(path: Path, points_lps: np.ndarray) -> None:
    lines = ["name,x_mm,y_mm,z_mm"]
    lines += [f"A{k + 1:02d},{_r4(p[0])},{_r4(p[1])},{_r4(p[2])}" for k, p in enumerate(points_lps)]
    path.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------------
# One patient
# --------------------------------------------------------------------------------------------
def _r4(v):
    return round(float(v), 4) + 0.0


def build_patient(p: dict, data_dir: Path, out_root: Path) -> dict:
    t_start = time.time()
    pid, mod = p["patient_id"], p["modality"]
    img = canonicalise(sitk.ReadImage(str(data_dir / f"{p['source_case']}_image.nrrd")))
    lab = canonicalise(sitk.ReadImage(str(data_dir / f"{p['source_case']}_label.nrrd")))
    grid = Grid.of(img)
    if Grid.of(lab) != grid:
        raise RuntimeError(f"{p['source_case']}: image and label grids differ")
    src = sitk.GetArrayFromImage(img).astype(np.float32)  # int16 values: exact in float32
    mask = (sitk.GetArrayFromImage(lab) != 0).astype(np.uint8)
    del img, lab
    stats = lesion_stats(mask, grid)
    lesion_value = float(src[mask > 0].astype(np.float64).mean())
    c = stats["centroid"]
    bg = BACKGROUND[mod]
    lo_v, hi_v = VALUE_RANGE[mod]
    mask_radius = stats["r_lesion"] + float(np.linalg.norm(grid.spacing))

    # Baseline = last scan on or before treatment start.
    dates = [d for d, _ in p["timepoints"]]
    ts = p["context"]["treatment_start"]
    base_idx = max(i for i, d in enumerate(dates) if d <= ts)
    base_scale = p["timepoints"][base_idx][1]
    assert base_scale == 1.0, "the baseline must be the unscaled source"

    # Per-timepoint rigid motion: one seeded stream per patient, drawn in timepoint order.
    rng = np.random.default_rng(p["seed"])
    plans = []
    for i, (date, s) in enumerate(p["timepoints"]):
        if i == base_idx:
            deg, trans = np.zeros(3), np.zeros(3)
        else:
            deg = np.array([rng.uniform(-RIGID_ROT_OUTPLANE_DEG, RIGID_ROT_OUTPLANE_DEG),
                            rng.uniform(-RIGID_ROT_OUTPLANE_DEG, RIGID_ROT_OUTPLANE_DEG),
                            rng.uniform(-RIGID_ROT_INPLANE_DEG, RIGID_ROT_INPLANE_DEG)])
            trans = rng.uniform(-RIGID_TRANS_MM, RIGID_TRANS_MM, size=3)
        deg, trans = np.round(deg, 4), np.round(trans, 4)  # exactly what truth.json says
        fwd = rigid_matrix(deg, trans, grid.center(), grid.D)
        plans.append({"date": date, "s": s, "deg": deg, "trans": trans, "fwd": fwd,
                      "rmap": make_radial_map(s, stats["r_lesion"])})

    nl = p["new_lesion"]
    new_centre0 = None
    if nl is not None:
        s_max = max(s for _, s in p["timepoints"])
        rho2_max = max(pl["rmap"].rho2 for pl in plans)
        new_centre0 = choose_new_lesion_centre(src, grid, nl, stats, s_max, rho2_max, p["seed"] + 1)

    # Anatomical landmarks: beyond every deformation zone (and the new lesion's site) by 10 mm.
    exclude = max(pl["rmap"].rho2 for pl in plans) + 10.0
    landmarks0 = choose_landmarks(src, grid, mod, c, exclude, p["seed"] + 2)
    if new_centre0 is not None:
        far = np.linalg.norm(landmarks0 - new_centre0, axis=1) > 40.0
        landmarks0 = landmarks0[far]

    pdir = out_root / pid
    pdir.mkdir(parents=True)
    frame_uids = {}
    tps_truth = []
    summary = []
    m = grid.index_to_physical()
    minv = np.linalg.inv(m)
    for i, pl in enumerate(plans):
        date, s, fwd, rmap = pl["date"], pl["s"], pl["fwd"], pl["rmap"]
        tdir = pdir / date
        warped, wmask, out_frac = warp_volume(src, mask, grid, fwd, c, rmap, bg, mask_radius)
        # FOV check: every voxel corner of the exactly scaled + moved lesion must lie within the
        # span of the voxel centres (margin in mm, along the grid axes).
        cor = c + s * (stats["corners"] - c)
        cor_idx = (np.c_[cor, np.ones(len(cor))] @ (minv @ fwd).T)[:, :3]
        sp = np.asarray(grid.spacing)
        size = np.asarray(grid.size)
        fov_margin = float(np.min(np.minimum(cor_idx.min(axis=0) * sp, (size - 1 - cor_idx.max(axis=0)) * sp)))
        if fov_margin < 0:
            raise RuntimeError(f"{pid} {date}: scaled lesion leaves the field of view ({fov_margin:.1f} mm)")
        lesions = [{"label": 1, "lesion_id": "L1", "new": False, "scale": s,
                    "volume_mm3": _r4(s ** 3 * stats["v0"]), "long_axis_mm": _r4(s * stats["l0"]),
                    "center_lps": [_r4(v) for v in fwd[:3] @ np.r_[c, 1.0]],
                    "_long_axis_exact": s * stats["l0"]}]
        if nl is not None and date in nl["semi_axes_mm"]:
            axes = nl["semi_axes_mm"][date]
            cidx = (minv @ np.r_[fwd[:3] @ np.r_[new_centre0, 1.0], 1.0])[:3]
            cidx[2] = round(cidx[2])  # centre on a slice centre
            centre_lps = (m @ np.r_[cidx, 1.0])[:3]
            grown = np.asarray(axes) + nl["margin_mm"]
            vox = ellipsoid_voxels(grid, cidx, grown)
            if vox is None or not (warped[vox] < nl["hu_max"]).all():
                raise RuntimeError(f"{pid} {date}: new lesion site is not at HU < {nl['hu_max']} in the follow-up")
            paint_ellipsoid(warped, wmask, grid, cidx, axes, lesion_value, nl["label"])
            a, b, cc = axes
            lesions.append({"label": nl["label"], "lesion_id": nl["lesion_id"], "new": True, "scale": None,
                            "semi_axes_mm": [a, b, cc],
                            "volume_mm3": _r4(4.0 / 3.0 * math.pi * a * b * cc),
                            "long_axis_mm": _r4(2 * max(a, b)),
                            "center_lps": [_r4(v) for v in centre_lps],
                            "_long_axis_exact": 2 * max(a, b)})
        vol = np.clip(np.rint(warped), lo_v, hi_v).astype(np.int16)
        del warped
        study_uid = _uid(pid, date, "study")
        series_uid = _uid(pid, date, "series")
        for_uid = _uid(pid, date, "frame-of-reference")
        frame_uids[date] = for_uid
        acc = "A" + str(int(hashlib.sha1(f"{pid}{date}".encode()).hexdigest(), 16) % 10 ** 8).zfill(8)
        meta = {"patient_id": pid, "date": date, "fake": p["fake"], "study_uid": study_uid,
                "series_uid": series_uid, "for_uid": for_uid, "accession": acc,
                "source_case": p["source_case"]}
        write_dicom_series(vol, grid, mod, tdir / "dicom", meta)
        sitk.WriteImage(to_sitk(vol, grid), str(tdir / "image.nii.gz"), useCompression=True)
        sitk.WriteImage(to_sitk(wmask, grid), str(tdir / "mask.nii.gz"), useCompression=True)
        write_landmarks(tdir / "landmarks.csv", (np.c_[landmarks0, np.ones(len(landmarks0))] @ fwd.T)[:, :3])
        voxel_mm3 = float(np.prod(grid.spacing))
        for les in lesions:
            # As written (informational): the same reference measurements on the written mask.
            # They differ from the ideal truth by partial volume / slice sampling.
            lm = (wmask == les["label"]).astype(np.uint8)
            les["mask_volume_mm3"] = _r4(int(np.count_nonzero(lm)) * voxel_mm3)
            les["mask_long_axis_mm"] = _r4(long_axis_mm(lm, grid))
        tps_truth.append({
            "date": date, "pre_baseline": i < base_idx, "is_baseline": i == base_idx,
            "folder": f"{pid}/{date}", "study_instance_uid": study_uid, "series_instance_uid": series_uid,
            "frame_of_reference_uid": for_uid, "accession_number": acc, "grid": grid.to_json(),
            "transform": {"rotation_deg": [float(v) + 0.0 for v in pl["deg"]],
                          "translation_mm": [float(v) + 0.0 for v in pl["trans"]],
                          "center_lps": [round(float(v), 6) + 0.0 for v in grid.center()],
                          "convention": "x' = R (x - center) + center + t; R = D Rz Ry Rx D^T with "
                                        "rotation_deg = angles about the grid x axis, grid y axis and "
                                        "slice normal (D = grid direction)",
                          "matrix_4x4": [[round(float(v), 7) + 0.0 for v in row] for row in fwd]},
            "radial_map": {"scale": s, "center_lps": [_r4(v) for v in c], "rho1_mm": _r4(rmap.rho1),
                           "rho2_mm": _r4(rmap.rho2)},
            "fov_margin_mm": _r4(fov_margin), "outside_source_fraction": _r4(out_frac),
            "lesions": lesions,
        })
    recist = intended_recist(tps_truth)
    for tp in tps_truth:
        for les in tp["lesions"]:
            summary.append((pid, tp["date"], les["lesion_id"], les["scale"], les["long_axis_mm"],
                            les["volume_mm3"], les["mask_volume_mm3"], les["mask_long_axis_mm"]))
            les.pop("_long_axis_exact")
    truth = {
        "patient_id": pid, "source_case": p["source_case"], "modality": mod, "story": p["story"],
        "context": p["context"], "frame_of_reference_note": FRAME_OF_REFERENCE_NOTE,
        "intended_recist": recist,
        "source": {"sdist": SDIST_FILE, "sha256": SDIST_SHA256, "image": f"data/{p['source_case']}_image.nrrd",
                   "label": f"data/{p['source_case']}_label.nrrd",
                   "lesion_voxels": stats["voxels"], "lesion_slices": stats["slices"],
                   "V0_mm3": _r4(stats["v0"]), "L0_mm": _r4(stats["l0"]),
                   "centroid_lps": [_r4(v) for v in c], "R_lesion_mm": _r4(stats["r_lesion"]),
                   "lesion_mean_value": _r4(lesion_value)},
        "timepoints": tps_truth,
    }
    if nl is not None:
        truth["new_lesion_centre_baseline_lps"] = [_r4(v) for v in new_centre0]
    (pdir / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    sidecar = {"1": {"lesion_id": "L1", "organ": p["organ"], "nodal": False}}
    if nl is not None:
        sidecar[str(nl["label"])] = {"lesion_id": nl["lesion_id"], "organ": nl["organ"], "nodal": nl["nodal"]}
    (pdir / "lesions.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return {"patient_id": pid, "summary": summary, "recist": list(zip([t["date"] for t in tps_truth], recist)),
            "seconds": time.time() - t_start,
            "fov": [(t["date"], t["fov_margin_mm"], t["outside_source_fraction"]) for t in tps_truth]}


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------
def swap_into_place(tmp: Path, out: Path) -> None:
    """Put the finished folder ``tmp`` where ``out`` is, by renames: a reader sees the old or the new one."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    if old.exists():
        shutil.rmtree(old)


def _remove_stale_temporaries(out: Path) -> None:
    """Remove ``.<name>.tmp-<pid>`` / ``.<name>.old-<pid>`` siblings left by killed runs."""
    for p in out.parent.glob(f".{out.name}.*-*"):
        kind, _, pid = p.name[len(out.name) + 2:].partition("-")
        if kind not in ("tmp", "old") or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # that run is still alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(p, ignore_errors=True)


def _write_clinical_csv(path: Path) -> None:
    """The clinical table a run config joins by patient: the treatment context of each course."""
    lines = ["patient_id,treatment_start,radiotherapy_end,immunotherapy"]
    for p in sorted(PATIENTS, key=lambda q: q["patient_id"]):
        c = p["context"]
        lines.append(f"{p['patient_id']},{c['treatment_start']},{c['radiotherapy_end'] or ''},{str(c['immunotherapy']).lower()}")
    path.write_text("\n".join(lines) + "\n")


def _write_visits_csv(path: Path) -> None:
    """One row per scan: its folder (the time point), date, and the clinical data a reader records.

    Steroids are stable and patients clinically stable throughout; the glioma's T2/FLAIR is
    'stable' (its enlargement is enhancing, treatment-related: pseudoprogression).
    """
    lines = ["patient_id,timepoint,date,steroid_dose_mg,clinically_stable,t2_flair"]
    for p in sorted(PATIENTS, key=lambda q: q["patient_id"]):
        brain = p["organ"] == "brain"
        for date, *_ in p["timepoints"]:
            lines.append(f"{p['patient_id']},{date},{date},{'2' if brain else '0'},true,{'stable' if brain else ''}")
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="output directory (replaced atomically)")
    ap.add_argument("--cache", type=Path, default=CACHE_DIR, help="download/extract cache (default: %(default)s)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="parallel patients")
    args = ap.parse_args(argv)
    t0 = time.time()
    out = args.out.resolve()
    data_dir = fetch_sources(sorted({p["source_case"] for p in PATIENTS}), args.cache)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        order = sorted(PATIENTS, key=lambda p: {"lung2": 0, "lung1": 1}.get(p["source_case"], 2))
        if args.jobs > 1:
            with ProcessPoolExecutor(max_workers=args.jobs) as ex:
                results = list(ex.map(build_patient, order, [data_dir] * len(order), [tmp] * len(order)))
        else:
            results = [build_patient(p, data_dir, tmp) for p in order]
        results.sort(key=lambda r: r["patient_id"])
        _write_clinical_csv(tmp / "clinical.csv")
        _write_visits_csv(tmp / "visits.csv")
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (out / ".complete").touch()

    print(f"{'patient':7} {'date':10} {'lesion':6} {'scale':>5} {'true LA mm':>10} {'true vol mm3':>12} "
          f"{'mask vol mm3':>12} {'vol err':>7} {'mask LA mm':>10}")
    for r in results:
        for pid, date, lid, s, la, v, vv, mla in r["summary"]:
            err = 100.0 * (vv - v) / v
            print(f"{pid:7} {date:10} {lid:6} {'' if s is None else f'{s:.2f}':>5} {la:10.2f} {v:12.1f} "
                  f"{vv:12.1f} {err:+6.1f}% {mla:10.2f}")
    for r in results:
        print(f"{r['patient_id']} intended RECIST: " + ", ".join(f"{d}={x}" for d, x in r["recist"]))
        print(f"{r['patient_id']} min FOV margin of the scaled lesion: {min(f[1] for f in r['fov']):.1f} mm; "
              f"max fraction sampled outside the source: {max(f[2] for f in r['fov']):.4f}; "
              f"{r['seconds']:.1f} s")
    print(f"wrote {out} in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
