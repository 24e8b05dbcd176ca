#!/usr/bin/env python3
"""A DICOM archive shaped like a real PACS export, built from the generated sample data.

Two oncology patients, three studies each, as a PACS or a CD burner exports them:

* a CT patient (from sample patient P001, lung2): per study a topogram (coronal + sagittal
  localizer), the 5 mm soft-tissue reconstruction (the sample series' voxels on their grid), a
  1.25 mm lung-kernel reconstruction, a 10 mm MIP, a dose report screen capture and the reader's
  DICOM SEG (the tumour "L1" and the organ "Right lung"); the second study holds two SEGs of the
  same series, an older read and a revised one;
* an MR patient (from sample patient P002, brain1 glioma): per study T1, T1 post-contrast (the
  sample voxels on their grid), T2, FLAIR, DWI (b=0 and b=1000 in one series), ADC, and an
  RTSTRUCT drawn on the T1 post-contrast series (GTV, Edema enclosing the GTV, Brainstem, Eyes).

Folder and file names are random-looking (``DICOM/ST000001/SE000003/IM000012`` mixed with hash
names, several series per folder, no file extension), with a
DICOMDIR at the root referencing every DICOM file and non-DICOM files beside them (README.TXT,
AUTORUN.INF, a ``.JPG`` that is junk). Every UID is new (``generate_uid(entropy_srcs=...)``),
every random choice comes from a seeded numpy Generator and no clock is read: two builds give the
same bytes.

The truth (``build_pacs_export``'s return value, also written to ``<out>/truth.json``) lists
per patient, study and series what is where, the segmentation objects and what each item is,
and per lesion the long axis and volume of the mask as written.

Usage (from the repo root)::

    .venv/bin/python sample_data/pacs_export.py --sample sample_data/generated --out sample_data/pacs_export
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib.util
import io
import json
import math
import multiprocessing
import os
import shutil
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    RTStructureSetStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from scipy import ndimage

HERE = Path(__file__).resolve().parent


def _load_generator():
    """The sample generator (``generate.py``), for its grid, long-axis and DS helpers."""
    name = "_tumor_response_sample_generate"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gen = _load_generator()
Grid = gen.Grid
_ds = gen._ds


def long_axis_mm(mask: np.ndarray, grid: Grid) -> float:
    """``generate.long_axis_mm``'s maths (max over slices of the largest distance between the CORNERS
    of the mask's pixels), with the pairs taken among the corners on their convex hull only (the
    farthest pair of a point set lies on its hull): the same value, without the all-pairs cost."""
    from scipy.spatial import ConvexHull

    best = 0.0
    m = grid.index_to_physical()
    for k in np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1)):
        ji = np.argwhere(mask[k] > 0)
        cx = (2 * ji[:, 1][:, None] + np.array([-1, 1, -1, 1])[None, :]).ravel()
        cy = (2 * ji[:, 0][:, None] + np.array([-1, -1, 1, 1])[None, :]).ravel()
        cor = np.unique(np.stack([cx, cy], axis=1), axis=0).astype(float) / 2.0
        hull = cor[ConvexHull(cor * np.asarray(grid.spacing[:2])).vertices]
        pts = hull @ m[:3, :2].T
        d2 = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(axis=2)
        best = max(best, float(np.sqrt(d2.max())))
    return best


UID_NAMESPACE = "tumor-response/sample_data/pacs_export/v1"
SEED = 20240917
INSTITUTION = "EXAMPLE UNIVERSITY HOSPITAL"  # fake
REFERRING = "BROWN^EMMA"  # fake
READER = "GREEN^OLIVER^^DR"  # fake
EXPORT_DATE = "20240920"  # the date the export was "burnt"; fixed, no clock
FAKE_FIRST = {"F": ["ANNA", "CLARA", "HELEN", "IRIS", "LENA", "MAYA", "NORA", "VERA"],
              "M": ["ARTHUR", "BRUNO", "FELIX", "HUGO", "JONAS", "OSCAR", "PAUL", "VICTOR"]}
FAKE_LAST = ["ALDER", "BIRCH", "CEDAR", "HAZEL", "LINDEN", "MAPLE", "ROWAN", "WILLOW"]

#: The two exported patients. ``source`` is the sample patient, its first three time points are used.
EXPORT_PATIENTS: list[dict] = [
    {"key": "ct", "source": "P001", "n_studies": 3, "sex": "F", "age_years": 65,
     "study_description": "CT THORAX MIT KM", "study_time": "081200", "station": "CTAWP91234",
     "manufacturer": "SIEMENS", "model": "SOMATOM Definition AS+"},
    {"key": "mr", "source": "P002", "n_studies": 3, "sex": "M", "age_years": 52,
     "study_description": "MRT SCHAEDEL NATIV UND KM", "study_time": "133000", "station": "MRC40512",
     "manufacturer": "SIEMENS", "model": "Skyra"},
]


def _uid(*parts) -> str:
    return generate_uid(entropy_srcs=[UID_NAMESPACE, *map(str, parts)])


def _r4(v) -> float:
    return round(float(v), 4) + 0.0


def _tm(base: str, minutes: float) -> str:
    """HHMMSS ``base`` plus ``minutes`` (same day)."""
    t = dt.datetime(2000, 1, 1, int(base[:2]), int(base[2:4]), int(base[4:6])) + dt.timedelta(minutes=minutes)
    return t.strftime("%H%M%S")


def _da(date: str, days: int = 0) -> str:
    return (dt.date.fromisoformat(date) + dt.timedelta(days=days)).strftime("%Y%m%d")


# --------------------------------------------------------------------------------------------
# Layout: folders and file names
# --------------------------------------------------------------------------------------------
class Folder:
    """A folder of the export and the names of its files.

    ``seq``: ``IM000001``, ``IM000002`` ... in write order. ``hash``: eight random hex digits,
    a fraction ``ext`` of them with a ``.DCM`` extension.
    """

    def __init__(self, rel: str, style: str, rng: np.random.Generator, ext: float = 0.0):
        self.rel, self.style, self.rng, self.ext = rel, style, rng, ext
        self.n = 0
        self.used: set[str] = set()

    def next_path(self) -> str:
        if self.style == "seq":
            self.n += 1
            name = f"IM{self.n:06d}"
        else:
            while True:
                name = f"{int(self.rng.integers(0, 1 << 32)):08X}"
                if name not in self.used:
                    break
            if self.rng.random() < self.ext:
                name += ".DCM"
        self.used.add(name)
        return f"{self.rel}/{name}"


def _hex8(rng: np.random.Generator) -> str:
    return f"{int(rng.integers(0, 1 << 32)):08X}"


# --------------------------------------------------------------------------------------------
# DICOM writing
# --------------------------------------------------------------------------------------------
@dataclass
class Study:
    """What every object of one study shares."""

    patient: dict
    date: str  # YYYY-MM-DD
    study_uid: str
    for_uid: str
    accession: str
    study_id: str
    study_time: str
    description: str
    out: Path  # archive root being built
    files: list = field(default_factory=list)  # written file records

    @property
    def da(self) -> str:
        return self.date.replace("-", "")


@dataclass
class Series:
    role: str
    number: int
    description: str
    modality: str
    sop_class: str
    image_type: list
    time: str
    folder: Folder
    uid: str
    kernel: str | None = None
    thickness: float | None = None
    extra: dict = field(default_factory=dict)  # attributes for every instance
    files: list = field(default_factory=list)  # relative paths

    def truth(self) -> dict:
        return {"role": self.role, "series_uid": self.uid, "series_number": self.number,
                "description": self.description, "modality": self.modality, "sop_class_uid": self.sop_class,
                "image_type": list(self.image_type), "kernel": self.kernel,
                "slice_thickness_mm": self.thickness, "n_files": len(self.files), "files": list(self.files)}


def _file_meta(sop_class: str, sop_uid: str) -> FileMetaDataset:
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = sop_class
    fm.MediaStorageSOPInstanceUID = sop_uid
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    fm.ImplementationVersionName = "TUMORRESP_PACS"
    return fm


def _common(st: Study, ser: Series, sop_uid: str, instance: int) -> Dataset:
    """Patient, General Study, General Series, General Equipment, SOP Common."""
    p = st.patient
    ds = Dataset()
    ds.file_meta = _file_meta(ser.sop_class, sop_uid)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(ser.image_type)
    ds.InstanceCreationDate = st.da
    ds.InstanceCreationTime = ser.time
    ds.SOPClassUID = ser.sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = st.da
    ds.StudyTime = st.study_time
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = ser.time
    ds.AccessionNumber = st.accession
    ds.Modality = ser.modality
    ds.Manufacturer = p["manufacturer"]
    ds.InstitutionName = INSTITUTION
    ds.ReferringPhysicianName = REFERRING
    ds.StationName = p["station"]
    ds.StudyDescription = st.description
    ds.SeriesDescription = ser.description
    ds.ManufacturerModelName = p["model"]
    ds.PatientName = p["name"]
    ds.PatientID = p["patient_id"]
    ds.PatientBirthDate = p["birth_date"]
    ds.PatientSex = p["sex"]
    ds.PatientAge = f"{p['age_years']:03d}Y"
    ds.BodyPartExamined = p["body_part"]
    ds.DeviceSerialNumber = p["serial"]
    ds.SoftwareVersions = p["software"]
    ds.StudyInstanceUID = st.study_uid
    ds.SeriesInstanceUID = ser.uid
    ds.StudyID = st.study_id
    ds.SeriesNumber = ser.number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = instance
    return ds


def _save(st: Study, ser: Series, ds: Dataset) -> str:
    rel = ser.folder.next_path()
    path = st.out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    _record_file(st, ser, ds, rel)
    return rel


_DIR_KEYS = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
             "StudyTime", "StudyDescription", "StudyID", "AccessionNumber", "SeriesInstanceUID", "Modality",
             "SeriesNumber", "SeriesDescription", "InstanceNumber", "SOPClassUID", "SOPInstanceUID",
             "StructureSetLabel", "StructureSetDate", "StructureSetTime", "ImagePositionPatient")


def _record_file(st: Study, ser: Series, ds: Dataset, rel: str) -> None:
    """Note a written file: its path and what its DICOMDIR records need."""
    ser.files.append(rel)
    info = {k: (str(ds[k].value) if k not in ("SeriesNumber", "InstanceNumber", "ImagePositionPatient")
                else ds[k].value) for k in _DIR_KEYS if k in ds}
    if "ImagePositionPatient" in info:
        info["ImagePositionPatient"] = [float(v) for v in info["ImagePositionPatient"]]
    info["TransferSyntaxUID"] = str(ds.file_meta.TransferSyntaxUID)
    st.files.append({"path": rel, "series_uid": ser.uid, "sop_uid": str(ds.SOPInstanceUID),
                     "sop_class": str(ds.SOPClassUID), "dir": info})


def write_volume(st: Study, ser: Series, pixels: np.ndarray, grid: Grid, *, intercept: float = 0.0,
                 instance_start: int = 1, per_slice: dict | None = None, window: tuple | None = None) -> list[str]:
    """One file per slice of ``pixels`` (z, y, x; unsigned stored values) on ``grid``.

    InstanceNumber follows acquisition order, head to feet (descending LPS z), from ``instance_start``.
    ``per_slice`` holds attributes set on every slice of this call.
    """
    d = grid.D
    nx, ny, nz = grid.size
    sx, sy, sz = grid.spacing
    n = np.cross(d[:, 0], d[:, 1])
    o = np.asarray(grid.origin)
    ipps = [o + k * sz * n for k in range(nz)]
    order = sorted(range(nz), key=lambda k: (-round(float(ipps[k][2]), 6), k))
    instance = {k: instance_start + i for i, k in enumerate(order)}
    if pixels.min() < 0 or pixels.max() > 65535:
        raise ValueError(f"{ser.description}: stored values out of the unsigned 16-bit range")
    if window is None:
        lo, hi = np.percentile(pixels, [1, 99.5])
        window = ((lo + hi) / 2 + intercept, max(1.0, hi - lo))
    out = []
    for k in order:
        sop_uid = _uid(st.study_uid, ser.uid, "sop", instance[k])
        ds = _common(st, ser, sop_uid, instance[k])
        for key, value in ser.extra.items():
            setattr(ds, key, value)
        for key, value in (per_slice or {}).items():
            setattr(ds, key, value)
        if ser.thickness is not None:
            ds.SliceThickness = _ds(ser.thickness)
        ds.SpacingBetweenSlices = _ds(sz)
        ds.PatientPosition = "HFS"
        ds.ImagePositionPatient = [_ds(v) for v in ipps[k]]
        ds.ImageOrientationPatient = [_ds(v) for v in np.r_[d[:, 0], d[:, 1]]]
        ds.FrameOfReferenceUID = st.for_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = _ds(float(ipps[k][2]))
        _pixel_module(ds, pixels[k], (sy, sx), intercept, window, ser.modality)
        out.append(_save(st, ser, ds))
    return out


def _pixel_module(ds: Dataset, pix: np.ndarray, spacing_rc, intercept, window, modality) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(pix.shape[0]), int(pix.shape[1])
    ds.PixelSpacing = [_ds(spacing_rc[0]), _ds(spacing_rc[1])]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.WindowCenter = _ds(round(float(window[0])))
    ds.WindowWidth = _ds(round(float(window[1])))
    if modality == "CT":
        ds.RescaleIntercept = _ds(intercept)
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
    ds.PixelData = np.ascontiguousarray(pix, dtype="<u2").tobytes()


# --------------------------------------------------------------------------------------------
# Sample data
# --------------------------------------------------------------------------------------------
def _read_timepoint(sample_root: Path, pid: str, tp: dict) -> tuple[np.ndarray, np.ndarray, Grid]:
    g = tp["grid"]
    grid = Grid(tuple(g["size"]), tuple(g["spacing_mm"]), tuple(g["origin_lps"]), tuple(g["direction"]))
    img = sitk.ReadImage(str(sample_root / pid / tp["date"] / "image.nii.gz"))
    lab = sitk.ReadImage(str(sample_root / pid / tp["date"] / "mask.nii.gz"))
    for im in (img, lab):
        if (tuple(im.GetSize()) != grid.size
                or not np.allclose(im.GetOrigin(), grid.origin, atol=1e-3)
                or not np.allclose(im.GetDirection(), grid.direction, atol=1e-6)
                or not np.allclose(im.GetSpacing(), grid.spacing, atol=1e-6)):
            raise RuntimeError(f"{pid} {tp['date']}: the NIfTI grid is not the truth's grid")
    vol = sitk.GetArrayFromImage(img).astype(np.int16)
    mask = (sitk.GetArrayFromImage(lab) == 1).astype(np.uint8)
    return vol, mask, grid


def _sitk(arr: np.ndarray, grid: Grid) -> sitk.Image:
    im = sitk.GetImageFromArray(arr)
    im.SetSpacing(grid.spacing)
    im.SetOrigin(grid.origin)
    im.SetDirection(grid.direction)
    return im


def _downsampled_grid(grid: Grid, factor: int, z_origin_offset: float = 0.0, nz: int | None = None,
                      sz: float | None = None) -> Grid:
    """Same field of view, ``factor`` x coarser in plane (pixel centres move by half the new pixel)."""
    d = grid.D
    sx, sy, gz = grid.spacing
    off = 0.5 * (factor - 1) * (sx * d[:, 0] + sy * d[:, 1]) + z_origin_offset * d[:, 2]
    origin = tuple(round(float(v), 6) + 0.0 for v in np.asarray(grid.origin) + off)
    return Grid((grid.size[0] // factor, grid.size[1] // factor, nz or grid.size[2]),
                (round(sx * factor, 7), round(sy * factor, 7), sz or gz), origin, grid.direction)


def _block_mean(arr: np.ndarray, f: int) -> np.ndarray:
    z, y, x = arr.shape
    return arr[:, : y // f * f, : x // f * f].reshape(z, y // f, f, x // f, f).mean(axis=(2, 4))


def _window(values: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(values, [1, 99.5])
    return (lo + hi) / 2, max(1.0, hi - lo)


# --------------------------------------------------------------------------------------------
# CT study
# --------------------------------------------------------------------------------------------
def _fill_holes_2d(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_fill_holes`` slice by slice (4-connected background), in one labelling pass."""
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    lab, n = ndimage.label(~mask, structure=structure)
    outside = np.zeros(n + 1, bool)
    for edge in (lab[:, 0, :], lab[:, -1, :], lab[:, :, 0], lab[:, :, -1]):
        outside[np.unique(edge)] = True
    outside[0] = False
    return ~outside[lab]


def right_lung(hu: np.ndarray, grid: Grid, lesion: np.ndarray) -> np.ndarray:
    """The right lung (LPS x below the body's centre): air-density voxels enclosed by the body,
    vessels filled in per slice, the largest component; the lesion's voxels excluded."""
    body = hu > -500
    enclosed = _fill_holes_2d(body) & ~body
    lab, n = ndimage.label(enclosed)
    if n == 0:
        raise RuntimeError("no lung found")
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    keep = sizes * np.prod(grid.spacing) / 1000.0 >= 100.0  # components of 100 ml or more
    keep[0] = False
    lungs = keep[lab]
    m = grid.index_to_physical()
    xs = m[0, 0] * np.arange(grid.size[0]) + m[0, 3]  # identity-like in-plane axes (lung2)
    per_column = body.sum(axis=(0, 1)).astype(float)  # body voxels per x index
    x_mid = float(xs[int(np.searchsorted(np.cumsum(per_column), per_column.sum() / 2))])  # the body's median x
    right = lungs & (xs[None, None, :] < x_mid)
    right = _fill_holes_2d(right)
    box = ndimage.find_objects(right.astype(np.uint8))[0]
    right[box] = ndimage.binary_opening(right[box], structure=np.ones((1, 3, 3), bool))
    lab, n = ndimage.label(right)
    if n == 0:
        raise RuntimeError("no right lung found")
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    right = lab == (int(np.argmax(sizes[1:])) + 1)
    return (right & (lesion == 0)).astype(np.uint8)


def _localizers(st: Study, ser: Series, hu: np.ndarray, grid: Grid) -> None:
    """A coronal and a sagittal projection of the volume, 2 x coarser in plane, square pixels."""
    d = grid.D
    sx, sy, sz = grid.spacing
    nx, ny, nz = grid.size
    mu = np.clip(hu.astype(np.float32) + 1000.0, 0, None) / 1000.0  # attenuation relative to water
    o = np.asarray(grid.origin)
    pix = 2 * sx
    z_top = (nz - 1) * sz  # slice k = nz - 1 is the most superior (normal = +z for lung2)
    if d[2, 2] < 0.5:
        raise RuntimeError("localizers assume slices stacked feet to head")
    n_rows = int(math.floor(z_top / pix)) + 1
    kk = (z_top - np.arange(n_rows) * pix) / sz  # continuous slice index of each row, head first
    for idx, (axis, name) in enumerate(((1, "coronal"), (2, "sagittal"))):
        proj = mu.sum(axis=axis) * (sy if axis == 1 else sx)  # (z, x) or (z, y): line integral, mm
        proj = proj.reshape(nz, -1, 2).mean(axis=2)  # 2 x coarser across
        cols = np.arange(proj.shape[1], dtype=float)
        rr, cc = np.meshgrid(kk, cols, indexing="ij")
        img = ndimage.map_coordinates(proj, [rr, cc], order=1, mode="nearest")
        img = np.clip(img / max(float(img.max()), 1e-6) * 4000.0, 0, 4095)
        stored = np.rint(img).astype(np.uint16)
        if name == "coronal":
            row_dir, col_dir = d[:, 0], -d[:, 2]
            first = o + 0.5 * sx * d[:, 0] + ((ny - 1) / 2) * sy * d[:, 1] + z_top * d[:, 2]
        else:
            row_dir, col_dir = d[:, 1], -d[:, 2]
            first = o + ((nx - 1) / 2) * sx * d[:, 0] + 0.5 * sy * d[:, 1] + z_top * d[:, 2]
        sop_uid = _uid(st.study_uid, ser.uid, "sop", idx + 1)
        ds = _common(st, ser, sop_uid, idx + 1)
        for key, value in ser.extra.items():
            setattr(ds, key, value)
        ds.SliceThickness = _ds(ser.thickness)
        ds.PatientPosition = "HFS"
        ds.ImagePositionPatient = [_ds(v) for v in first]
        ds.ImageOrientationPatient = [_ds(v) for v in np.r_[row_dir, col_dir]]
        ds.FrameOfReferenceUID = st.for_uid
        ds.PositionReferenceIndicator = ""
        ds.ImageComments = f"{name} topogram"
        _pixel_module(ds, stored, (pix, pix), 0, (2000, 4000), "OT")
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        _save(st, ser, ds)


DOSE_LINES = [
    ("Patient Protocol", 18), ("", 12),
    ("Total mAs 2841      Total DLP {dlp:.0f} mGy*cm", 12), ("", 12),
    ("                Scan   KV   mAs / ref.   CTDIvol   DLP   TI    cSL", 11),
    ("                       mGy     mGy*cm    s     mm", 11),
    ("Patient Position H-SP", 11),
    ("Topogram         1    120   35 mA       0.13     6.1   4.6  0.6", 11),
    ("Thorax           2    120   {mas} / 110     {ctdi:.2f}   {dlp2:.0f}   0.5  1.2", 11),
]


def _dose_report(st: Study, ser: Series, rng: np.random.Generator) -> None:
    """A Secondary Capture 'Dose Report' screen: text rendered to an 8-bit image."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ctdi = 6.0 + float(rng.uniform(0, 2.5))
    dlp2 = ctdi * 31.0
    values = {"dlp": dlp2 + 6.1, "dlp2": dlp2, "ctdi": ctdi, "mas": int(rng.integers(80, 140))}
    fig = Figure(figsize=(5.12, 5.12), dpi=100, facecolor="black")
    FigureCanvasAgg(fig)
    y = 0.95
    for text, size in DOSE_LINES:
        fig.text(0.03, y, text.format(**values), color="white", fontsize=size * 0.75, family="monospace",
                 va="top")
        y -= 0.045 if size < 15 else 0.07
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    gray = rgba[..., :3].mean(axis=2).round().astype(np.uint8)
    sop_uid = _uid(st.study_uid, ser.uid, "sop", 1)
    ds = _common(st, ser, sop_uid, 1)
    del ds.AcquisitionNumber
    ds.ConversionType = "WSD"
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "YES"
    ds.DateOfSecondaryCapture = st.da
    ds.TimeOfSecondaryCapture = ser.time
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = gray.shape
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = gray.tobytes()
    _save(st, ser, ds)


def _write_seg(st: Study, ser: Series, sources: list[Dataset], segments: list[tuple[dict, np.ndarray]],
               content_date: str, content_time: str, creator: str) -> tuple[Dataset, str]:
    """A BINARY DICOM SEG (highdicom) of ``segments`` [(description, mask (z, y, x))] on ``sources``
    (the measured series, in array slice order). Clock-derived values are replaced by fixed ones."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    descriptions = []
    arrays = []
    for number, (info, mask) in enumerate(segments, start=1):
        if info["is_lesion"]:
            category = codes.SCT.MorphologicallyAbnormalStructure
            prop = codes.SCT.Neoplasm
            region = [hd.sr.CodedConcept("39607008", "SCT", "Lung")]
            algo, algo_id = "MANUAL", None
        else:
            category = hd.sr.CodedConcept("123037004", "SCT", "Anatomical Structure")
            prop = hd.sr.CodedConcept("3341006", "SCT", "Right lung")
            region = None
            algo = "SEMIAUTOMATIC"
            algo_id = hd.AlgorithmIdentificationSequence(name="LungSegmenter", family=codes.cid7162.ArtificialIntelligence,
                                                          version="2.3")
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=info["name"], segmented_property_category=category,
            segmented_property_type=prop, algorithm_type=algo, algorithm_identification=algo_id,
            tracking_uid=_uid(st.patient["patient_id"], "tracking", info["name"]), tracking_id=info["name"],
            anatomic_regions=region))
        arrays.append(mask.astype(bool))
    pixel_array = np.stack(arrays, axis=-1)
    sop_uid = _uid(st.study_uid, ser.uid, "seg", content_date, content_time)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=pixel_array,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
            series_instance_uid=ser.uid, series_number=ser.number, sop_instance_uid=sop_uid, instance_number=1,
            manufacturer="EXAMPLE READING SOFTWARE", manufacturer_model_name="OncoRead", software_versions="4.2.1",
            device_serial_number="OR-0042", content_label="TUMOR_READ",
            content_description=ser.description, content_creator_name=creator,
            series_description=ser.description, content_date=dt.date.fromisoformat(
                f"{content_date[:4]}-{content_date[4:6]}-{content_date[6:]}"),
            content_time=dt.time(int(content_time[:2]), int(content_time[2:4]), int(content_time[4:6])))
    # Values highdicom takes from the clock or makes up at random: fixed ones instead.
    seg.InstanceCreationDate = content_date
    seg.InstanceCreationTime = content_time
    seg.SeriesDate = content_date
    seg.SeriesTime = content_time
    dim_uid = _uid(sop_uid, "dimension-organization")
    _fix_nested(seg, dim_uid, f"{content_date}{content_time}")
    rel = ser.folder.next_path()
    path = st.out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path, enforce_file_format=True)
    _record_file(st, ser, seg, rel)
    return seg, rel


def _fix_nested(ds: Dataset, dim_uid: str, datetime_value: str) -> None:
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _fix_nested(item, dim_uid, datetime_value)
        elif elem.keyword == "DimensionOrganizationUID":
            elem.value = dim_uid
        elif elem.keyword == "ContributionDateTime":
            elem.value = datetime_value


def build_ct_study(task: dict) -> dict:
    sample_root, out = Path(task["sample_root"]), Path(task["out"])
    tp = task["timepoint"]
    patient = task["patient"]
    vol, mask, grid = _read_timepoint(sample_root, task["source"], tp)
    rng = np.random.default_rng(task["seed"])
    st = Study(patient, tp["date"], task["study_uid"], task["for_uid"], task["accession"], task["study_id"],
               task["study_time"], task["study_description"], out)
    sdir = task["folder"]
    shared = Folder(f"{sdir}/SE000001", "seq", rng)
    t0 = st.study_time
    contrast = {"ContrastBolusAgent": "Iomeprol 400", "ContrastBolusRoute": "IV", "ContrastBolusVolume": "80",
                "ContrastBolusStartTime": _tm(t0, 3)}
    ct_common = {"KVP": "120", "DataCollectionDiameter": "500", "GantryDetectorTilt": "0", "TableHeight": "168",
                 "RotationDirection": "CW", "XRayTubeCurrent": 110, "FilterType": "FLAT", "FocalSpots": "1.2",
                 "ScanOptions": "HELICAL_CT", "ReconstructionDiameter": _ds(grid.size[0] * grid.spacing[0])}

    def series(role, number, description, image_type, folder, minutes, kernel=None, thickness=None, extra=None,
               modality="CT", sop_class=CTImageStorage):
        return Series(role, number, description, modality, sop_class, image_type, _tm(t0, minutes), folder,
                      _uid(st.study_uid, "series", number), kernel, thickness, extra or {})

    topo = series("localizer", 1, "Topogram 0.6 T20f", ["ORIGINAL", "PRIMARY", "LOCALIZER"], shared, 0, "T20f", 0.6,
                  {**ct_common, "ConvolutionKernel": "T20f", "KVP": "120", "ScanOptions": "SURVIEW"})
    _localizers(st, topo, vol, grid)

    thorax = series("measure", 2, "Thorax 5.0 B30f", ["ORIGINAL", "PRIMARY", "AXIAL"], Folder(f"{sdir}/SE000002", "seq", rng),
                    4, "B30f", 5.0, {**ct_common, **contrast, "ConvolutionKernel": "B30f"})
    stored = (vol.astype(np.int32) + 1024).astype(np.uint16)
    write_volume(st, thorax, stored, grid, intercept=-1024, window=(40, 400))
    sources = [None] * grid.size[2]  # the measured series' headers in array order (for the SEG)
    for rel in thorax.files:
        h = dcmread(st.out / rel, stop_before_pixels=True)
        k = int(round(float(np.dot(np.asarray(h.ImagePositionPatient, float) - np.asarray(grid.origin), grid.D[:, 2])
                            / grid.spacing[2])))
        sources[k] = h

    # Lung kernel, 1.25 mm, cropped to +-40 mm around the lesion, 256 x 256 over the same field of view.
    cen = np.argwhere(mask > 0).mean(axis=0)  # (k, j, i)
    t_c = cen[0] * grid.spacing[2]
    t_lo, t_hi = max(0.0, t_c - 40.0), min((grid.size[2] - 1) * grid.spacing[2], t_c + 40.0)
    m0, m1 = int(math.ceil(t_lo / 1.25)), int(math.floor(t_hi / 1.25))
    lgrid = _downsampled_grid(grid, 2, z_origin_offset=m0 * 1.25, nz=m1 - m0 + 1, sz=1.25)
    ref = _sitk(np.zeros((lgrid.size[2], lgrid.size[1], lgrid.size[0]), np.float32), lgrid)
    lung = sitk.GetArrayFromImage(sitk.Resample(_sitk(vol.astype(np.float32), grid), ref, sitk.Transform(),
                                                sitk.sitkLinear, -1024.0, sitk.sitkFloat32))
    lung = lung + 0.8 * (lung - ndimage.gaussian_filter(lung, sigma=(0, 1.0, 1.0)))  # sharp kernel look
    lung_stored = (np.clip(np.rint(lung), -1024, 3071) + 1024).astype(np.uint16)
    lung_ser = series("lung_recon", 3, "Lung 1.25 B70f", ["ORIGINAL", "PRIMARY", "AXIAL"],
                      Folder(f"{sdir}/SE000003", "seq", rng), 5, "B70f", 1.25,
                      {**ct_common, **contrast, "ConvolutionKernel": "B70f"})
    write_volume(st, lung_ser, lung_stored, lgrid, intercept=-1024, window=(-600, 1200))

    # MIP, 10 mm slabs (two 5 mm slices each) over the lesion and 10 mm around it.
    ks = np.flatnonzero(mask.any(axis=(1, 2)))
    k_lo, k_hi = max(0, int(ks.min()) - 2), min(grid.size[2] - 1, int(ks.max()) + 2)
    if (k_hi - k_lo + 1) % 2:
        k_hi = k_hi + 1 if k_hi + 1 < grid.size[2] else k_hi
        k_lo = k_lo if (k_hi - k_lo + 1) % 2 == 0 else k_lo + 1
    slabs = np.stack([vol[k:k + 2].max(axis=0) for k in range(k_lo, k_hi, 2)]).astype(np.float32)
    slabs = np.rint(_block_mean(slabs, 2)).astype(np.int32)  # 256 x 256 over the same field of view
    mgrid = _downsampled_grid(grid, 2, z_origin_offset=(k_lo + 0.5) * grid.spacing[2], nz=len(slabs),
                              sz=2 * grid.spacing[2])
    mip = series("mip", 4, "MIP 10mm", ["DERIVED", "SECONDARY", "MIP"], Folder(f"{sdir}/SE000004", "seq", rng), 9,
                 "B30f", 10.0, {**ct_common, **contrast, "ConvolutionKernel": "B30f",
                                "DerivationDescription": "Maximum intensity projection, 10 mm slabs"})
    write_volume(st, mip, (slabs.astype(np.int32) + 1024).astype(np.uint16), mgrid, intercept=-1024, window=(40, 400))

    dose = series("dose", 501, "Dose Report", ["DERIVED", "SECONDARY", "SCREEN SAVE"], shared, 10, None, None, {},
                  "CT", SecondaryCaptureImageStorage)
    _dose_report(st, dose, rng)

    # The reader's SEG(s) on the 5 mm series.
    organ = right_lung(vol, grid, mask)
    voxel = float(np.prod(grid.spacing))
    reads = [("", mask)]
    if task["revised_read"]:
        dil = ndimage.binary_dilation(mask > 0, structure=np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool))
        reads = [("older", mask), ("revised", dil.astype(np.uint8))]
    seg_truth = []
    series_list = [topo, thorax, lung_ser, mip, dose]
    for r, (kind, lesion) in enumerate(reads):
        organ_r = (organ & (lesion == 0)).astype(np.uint8)
        number = 300 + r
        desc = "Tumor read (revised)" if kind == "revised" else "Tumor read"
        ser = series("seg", number, desc, ["DERIVED", "PRIMARY"], shared, 0, modality="SEG",
                     sop_class="1.2.840.10008.5.1.4.1.1.66.4")
        cdate, ctime = (_da(st.date), "163000") if kind != "revised" else (_da(st.date, 3), "101500")
        if kind == "older":
            ctime = "151000"
        items = [{"number": 1, "name": "L1", "is_lesion": True, "category": "Morphologically Abnormal Structure",
                  "type": "Neoplasm", "anatomic_region": "Lung"},
                 {"number": 2, "name": "Right lung", "is_lesion": False, "category": "Anatomical Structure",
                  "type": "Right lung", "anatomic_region": None}]
        seg, rel = _write_seg(st, ser, sources, [(items[0], lesion), (items[1], organ_r)], cdate, ctime, READER)
        items[0].update(voxels=int(lesion.sum()), volume_mm3=_r4(lesion.sum() * voxel),
                        long_axis_mm=_r4(long_axis_mm(lesion, grid)))
        items[1].update(voxels=int(organ_r.sum()), volume_mm3=_r4(organ_r.sum() * voxel),
                        overlap_with_lesion_voxels=int(np.count_nonzero(organ_r & lesion)))
        seg_truth.append({"path": rel, "kind": "SEG", "sop_uid": str(seg.SOPInstanceUID), "series_uid": ser.uid,
                          "series_number": number, "description": desc,
                          "content_datetime": f"{cdate}{ctime}", "read": kind or "single",
                          "referenced_series_uid": thorax.uid, "items": items})
        series_list.append(ser)
    newest = max(seg_truth, key=lambda s: s["content_datetime"])
    for s in seg_truth:
        s["is_newest"] = s is newest
    les = next(i for i in newest["items"] if i["is_lesion"])
    sample_les = next(x for x in tp["lesions"] if x["label"] == 1)
    lesions = [{"lesion_id": "L1", "segmentation_sop_uid": newest["sop_uid"], "segment_number": 1,
                "long_axis_mm": les["long_axis_mm"], "volume_mm3": les["volume_mm3"], "voxels": les["voxels"],
                "sample_mask_long_axis_mm": sample_les["mask_long_axis_mm"],
                "sample_long_axis_mm": sample_les["long_axis_mm"],
                "sample_mask_volume_mm3": sample_les["mask_volume_mm3"],
                "long_axis_diff_vs_sample_mask_mm": _r4(les["long_axis_mm"] - sample_les["mask_long_axis_mm"]),
                "note": ("the revised read's L1 is the sample mask dilated by one voxel in plane"
                         if task["revised_read"] else "the sample mask as is")}]
    return {"date": st.date, "files": st.files,
            "truth": {"date": st.date, "study_uid": st.study_uid, "accession_number": st.accession,
                      "study_id": st.study_id, "study_description": st.description, "frame_of_reference_uid": st.for_uid,
                      "source_timepoint": f"{task['source']}/{tp['date']}",
                      "series": [s.truth() for s in series_list], "segmentations": seg_truth, "lesions": lesions}}


# --------------------------------------------------------------------------------------------
# MR study
# --------------------------------------------------------------------------------------------
#: Organs at risk in the baseline image of brain1 (LPS from baseline voxel indices (i, j, k)), moved
#: with each time point's known rigid transform. Placed by eye on the image; not anatomically exact.
MR_ORGANS = [
    {"name": "Brainstem", "interpreted": "ORGAN", "color": [0, 255, 0],
     "blobs": [((128.0, 125.0, 18.0), (11.0, 11.0, 14.0))]},
    {"name": "Eyes", "interpreted": "AVOIDANCE", "color": [0, 128, 255],
     "blobs": [((95.0, 215.0, 15.5), (11.0, 11.0, 11.0)), ((165.0, 215.0, 15.5), (11.0, 11.0, 11.0))]},
]
EDEMA_MARGIN_MM = 9.0


def _head_mask(t1: np.ndarray) -> np.ndarray:
    p99 = np.percentile(t1[t1 > 0], 99)
    head = ndimage.gaussian_filter(t1.astype(np.float32), (0.5, 2, 2)) > 0.12 * p99
    head = np.stack([ndimage.binary_fill_holes(s) for s in head])
    lab, n = ndimage.label(head)
    sizes = ndimage.sum(head, lab, index=np.arange(1, n + 1))
    return lab == (int(np.argmax(sizes)) + 1)


def _blob_mask(grid: Grid, blobs, baseline_grid: Grid, to_tp: np.ndarray) -> np.ndarray:
    """Ellipsoids given in baseline voxel indices + semi-axes (mm, baseline grid axes), moved to this
    time point by ``to_tp`` (baseline LPS -> time point LPS), rasterised on ``grid`` (voxel centres)."""
    nx, ny, nz = grid.size
    k, j, i = np.mgrid[0:nz, 0:ny, 0:nx].astype(float)
    m = grid.index_to_physical()
    pts = np.stack([i, j, k, np.ones_like(i)], axis=-1) @ m.T  # LPS of this time point
    base = pts @ np.linalg.inv(to_tp).T  # back to baseline LPS
    bm = baseline_grid.index_to_physical()
    out = np.zeros((nz, ny, nx), bool)
    for centre_idx, axes in blobs:
        c = bm @ np.r_[centre_idx, 1.0]
        rel = (base[..., :3] - c[:3]) @ baseline_grid.D  # along the baseline grid axes, mm
        out |= ((rel / np.asarray(axes)) ** 2).sum(axis=-1) <= 1.0
    return out


def _contours(mask: np.ndarray, grid: Grid) -> list[tuple[int, np.ndarray]]:
    """Closed planar contours of a binary mask, slice by slice: [(k, (m, 3) LPS points)].

    skimage's marching squares at level 0.5 puts every vertex half way between a pixel centre
    inside and one outside, so filling the polygons by pixel centre (even-odd rule) gives the mask
    back exactly. Collinear vertices are dropped."""
    from skimage import measure

    m = grid.index_to_physical()
    out = []
    for k in range(mask.shape[0]):
        if not mask[k].any():
            continue
        padded = np.pad(mask[k].astype(np.float32), 1)
        for c in measure.find_contours(padded, 0.5):
            rc = c[:-1] - 1.0 if np.array_equal(c[0], c[-1]) else c - 1.0
            prev, nxt = np.roll(rc, 1, axis=0), np.roll(rc, -1, axis=0)
            cross = (rc[:, 0] - prev[:, 0]) * (nxt[:, 1] - rc[:, 1]) - (rc[:, 1] - prev[:, 1]) * (nxt[:, 0] - rc[:, 0])
            rc = rc[cross != 0]
            if len(rc) < 3:
                continue
            ijk = np.stack([rc[:, 1], rc[:, 0], np.full(len(rc), float(k)), np.ones(len(rc))], axis=1)
            out.append((k, (ijk @ m.T)[:, :3]))
    return out


def _write_rtstruct(st: Study, ser: Series, t1c: Series, t1c_sops: dict, grid: Grid, rois: list[dict],
                    when: tuple[str, str]) -> tuple[Dataset, str]:
    """RT Structure Set (pydicom, by hand) of ``rois`` [{name, interpreted, color, mask}] drawn on ``t1c``.
    ``t1c_sops``: array slice index -> SOPInstanceUID of the T1c file."""
    sdate, stime = when
    sop_uid = _uid(st.study_uid, ser.uid, "rtstruct")
    ds = _common(st, ser, sop_uid, 1)
    for key in ("ImageType", "AcquisitionDate", "AcquisitionTime", "AcquisitionNumber", "BodyPartExamined",
                "ContentDate", "ContentTime"):
        if key in ds:
            delattr(ds, key)
    ds.InstanceCreationDate = ds.SeriesDate = sdate
    ds.InstanceCreationTime = ds.SeriesTime = stime
    ds.Manufacturer = "EXAMPLE PLANNING SYSTEM"
    ds.ManufacturerModelName = "ContourStation"
    ds.SoftwareVersions = "11.0.3"
    ds.StationName = "RTPLAN01"
    ds.DeviceSerialNumber = "CS-0007"
    ds.OperatorsName = "GREEN^OLIVER"
    ds.StructureSetLabel = "RANO_READ"
    ds.StructureSetName = "Glioma read"
    ds.StructureSetDescription = "GTV, peritumoral edema and organs at risk on AX T1 POST GD"
    ds.StructureSetDate = sdate
    ds.StructureSetTime = stime
    ds.FrameOfReferenceUID = st.for_uid  # the Frame of Reference module, in the RT Structure Set IOD since 2021
    ds.PositionReferenceIndicator = ""

    def contour_image(k):
        item = Dataset()
        item.ReferencedSOPClassUID = MRImageStorage
        item.ReferencedSOPInstanceUID = t1c_sops[k]
        return item

    rs = Dataset()
    rs.SeriesInstanceUID = t1c.uid
    rs.ContourImageSequence = DicomSequence([contour_image(k) for k in sorted(t1c_sops)])
    rstudy = Dataset()
    rstudy.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (as RT systems write it)
    rstudy.ReferencedSOPInstanceUID = st.study_uid
    rstudy.RTReferencedSeriesSequence = DicomSequence([rs])
    rfor = Dataset()
    rfor.FrameOfReferenceUID = st.for_uid
    rfor.RTReferencedStudySequence = DicomSequence([rstudy])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([rfor])

    ssroi, roic, obs = [], [], []
    for number, roi in enumerate(rois, start=1):
        a = Dataset()
        a.ROINumber = number
        a.ReferencedFrameOfReferenceUID = st.for_uid
        a.ROIName = roi["name"]
        a.ROIGenerationAlgorithm = "MANUAL" if roi["interpreted"] in ("GTV", "CTV") else "SEMIAUTOMATIC"
        ssroi.append(a)
        b = Dataset()
        b.ROIDisplayColor = roi["color"]
        b.ReferencedROINumber = number
        items = []
        for n_c, (k, pts) in enumerate(_contours(roi["mask"], grid), start=1):
            c = Dataset()
            c.ContourImageSequence = DicomSequence([contour_image(k)])
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(pts)
            c.ContourNumber = n_c
            c.ContourData = [_ds(round(float(v), 4)) for v in pts.ravel()]
            items.append(c)
        b.ContourSequence = DicomSequence(items)
        roic.append(b)
        o = Dataset()
        o.ObservationNumber = number
        o.ReferencedROINumber = number
        o.ROIObservationLabel = roi["name"]
        o.RTROIInterpretedType = roi["interpreted"]
        o.ROIInterpreter = "GREEN^OLIVER"
        obs.append(o)
    ds.StructureSetROISequence = DicomSequence(ssroi)
    ds.ROIContourSequence = DicomSequence(roic)
    ds.RTROIObservationsSequence = DicomSequence(obs)
    ds.ApprovalStatus = "APPROVED"
    ds.ReviewDate = sdate
    ds.ReviewTime = stime
    ds.ReviewerName = "GREEN^OLIVER"
    rel = _save(st, ser, ds)
    return ds, rel


def build_mr_study(task: dict) -> dict:
    from imaging.io.masks import read_label_map

    sample_root, out = Path(task["sample_root"]), Path(task["out"])
    tp = task["timepoint"]
    base_tp = task["baseline_timepoint"]
    patient = task["patient"]
    t1c, mask, grid = _read_timepoint(sample_root, task["source"], tp)
    bg = base_tp["grid"]
    base_grid = Grid(tuple(bg["size"]), tuple(bg["spacing_mm"]), tuple(bg["origin_lps"]), tuple(bg["direction"]))
    to_tp = np.asarray(tp["transform"]["matrix_4x4"], dtype=float)
    rng = np.random.default_rng(task["seed"])
    st = Study(patient, tp["date"], task["study_uid"], task["for_uid"], task["accession"], task["study_id"],
               task["study_time"], task["study_description"], out)
    sdir = task["folder"]
    f_t1 = Folder(f"{sdir}/{_hex8(rng)}", "hash", rng)
    f_t2 = Folder(f"{sdir}/{_hex8(rng)}", "hash", rng)
    f_dw = Folder(f"{sdir}/{_hex8(rng)}", "hash", rng)
    f_rt = Folder(f"{sdir}/{_hex8(rng)}", "hash", rng)
    t0 = st.study_time
    mr_common = {"MagneticFieldStrength": "3", "ImagingFrequency": "123.25", "ImagedNucleus": "1H",
                 "MRAcquisitionType": "2D", "NumberOfAverages": "1", "EchoNumbers": 1, "PixelBandwidth": "220",
                 "ReceiveCoilName": "Head/Neck 20", "TransmitCoilName": "Body"}

    def series(role, number, description, image_type, folder, minutes, thickness, extra, sop_class=MRImageStorage):
        return Series(role, number, description, "MR", sop_class, image_type, _tm(t0, minutes), folder,
                      _uid(st.study_uid, "series", number), None, thickness, {**mr_common, **extra})

    sz = grid.spacing[2]
    # Synthetic contrasts from the T1c by intensity transforms (see the README).
    t1f = t1c.astype(np.float32)
    head = _head_mask(t1c)
    p99 = float(np.percentile(t1f[head], 99))
    u = np.clip(t1f / p99, 0, 1)
    head_s = ndimage.gaussian_filter(head.astype(np.float32), (0.3, 1.0, 1.0))
    inner = ndimage.binary_erosion(head, structure=np.ones((1, 15, 15), bool))
    csf = ndimage.gaussian_filter((inner & (ndimage.gaussian_filter(u, (0, 1, 1)) < 0.18)).astype(np.float32),
                                  (0.3, 1.0, 1.0))
    tum = mask > 0
    spacing_zyx = (grid.spacing[2], grid.spacing[1], grid.spacing[0])
    edema = (ndimage.distance_transform_edt(~tum, sampling=spacing_zyx) <= EDEMA_MARGIN_MM) & head | tum
    gt = ndimage.gaussian_filter(tum.astype(np.float32), (0.3, 1.5, 1.5))
    ge = ndimage.gaussian_filter((edema & ~tum).astype(np.float32), (0.3, 2.0, 2.0))
    t1pre = t1f * (1.0 - 0.45 * gt)
    t2 = head_s * (350 + 500 * (1 - u)) * (1 - 0.2 * csf) + 1500 * csf + 900 * ge + 600 * gt
    flair = head_s * (300 + 600 * u) * (1 - 0.8 * csf) + 1000 * ge + 700 * gt
    adc = head_s * 800 + 2200 * csf + 700 * ge + 300 * gt  # 1e-6 mm2/s
    noise = rng.normal(0, 6.0, size=(2,) + t1f.shape).astype(np.float32)
    t2 = t2 + noise[0] * head_s
    flair = flair + noise[1] * head_s

    def u16(a):
        return np.clip(np.rint(a), 0, 4095).astype(np.uint16)

    plan = [
        ("t2", 2, "AX T2 TSE", f_t2, 2, {"ScanningSequence": "SE", "SequenceVariant": ["SK", "SP"], "ScanOptions": "",
                                          "SequenceName": "*tse2d1_15", "RepetitionTime": "4000", "EchoTime": "98",
                                          "EchoTrainLength": "15", "FlipAngle": "150"}, u16(t2)),
        ("flair", 3, "AX T2 FLAIR", f_t2, 6, {"ScanningSequence": ["SE", "IR"], "SequenceVariant": ["SK", "SP", "MP"],
                                               "ScanOptions": "IR", "SequenceName": "*tir2d1_16",
                                               "RepetitionTime": "9000", "EchoTime": "86", "InversionTime": "2500",
                                               "EchoTrainLength": "16", "FlipAngle": "150"}, u16(flair)),
        ("t1", 6, "AX T1 SE", f_t1, 14, {"ScanningSequence": "SE", "SequenceVariant": "SK", "ScanOptions": "",
                                          "SequenceName": "*se2d1", "RepetitionTime": "550", "EchoTime": "9.1",
                                          "EchoTrainLength": "1", "FlipAngle": "90"}, u16(t1pre)),
    ]
    series_list = []
    written = {}
    for role, number, desc, folder, minutes, extra, pix in plan:
        ser = series(role, number, desc, ["ORIGINAL", "PRIMARY", "M", "ND", "NORM"], folder, minutes, sz, extra)
        write_volume(st, ser, pix, grid, window=_window(pix[head]))
        series_list.append(ser)
        written[role] = ser

    # DWI (b=0 and b=1000 in one series) and ADC: 128 x 128 over the same field of view.
    dgrid = _downsampled_grid(grid, 2)
    b0 = _block_mean(t2, 2)
    adc_d = _block_mean(adc, 2)
    b0s = u16(b0)
    b1000s = u16(b0s * np.exp(-adc_d * 1e-3))
    valid = b0s > 60
    with np.errstate(divide="ignore", invalid="ignore"):
        adc_calc = np.where(valid & (b1000s > 0), -np.log(b1000s / np.maximum(b0s, 1)) / 1000.0 * 1e6, 0)
    adc_s = u16(np.where(valid, adc_calc, 0))
    dwi_extra = {"ScanningSequence": "EP", "SequenceVariant": ["SK", "SP"], "ScanOptions": ["PFP", "FS"],
                 "SequenceName": "*ep_b0_1000", "RepetitionTime": "5200", "EchoTime": "72", "EchoTrainLength": "1",
                 "FlipAngle": "90", "PixelBandwidth": "1040"}
    dwi = series("dwi", 4, "AX DWI b0 b1000", ["ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"], f_dw, 8, sz, dwi_extra)
    nz = grid.size[2]
    write_volume(st, dwi, b0s, dgrid, instance_start=1, window=_window(b0s[b0s > 0]),
                 per_slice={"DiffusionBValue": 0.0, "DiffusionDirectionality": "NONE", "SequenceName": "*ep_b0"})
    write_volume(st, dwi, b1000s, dgrid, instance_start=nz + 1, window=_window(b1000s[b1000s > 0]),
                 per_slice={"DiffusionBValue": 1000.0, "DiffusionDirectionality": "ISOTROPIC",
                            "SequenceName": "*ep_b1000t", "ImageType": ["ORIGINAL", "PRIMARY", "DIFFUSION", "TRACEW"]})
    adc_ser = series("adc", 5, "AX DWI b0 b1000_ADC", ["DERIVED", "PRIMARY", "ADC"], f_dw, 8.5, sz,
                     {**dwi_extra, "SequenceName": "*ep_b1000", "ImageComments": "ADC in 1e-6 mm2/s",
                      "DerivationDescription": "ADC from b=0 and b=1000 s/mm2 (log ratio)"})
    write_volume(st, adc_ser, adc_s, dgrid, window=(1200, 2400))
    series_list += [dwi, adc_ser]

    t1c_ser = series("measure", 7, "AX T1 POST GD", ["ORIGINAL", "PRIMARY", "M", "ND", "NORM"], f_t1, 20, sz,
                     {"ScanningSequence": "SE", "SequenceVariant": "SK", "ScanOptions": "", "SequenceName": "*se2d1",
                      "RepetitionTime": "550", "EchoTime": "9.1", "EchoTrainLength": "1", "FlipAngle": "90",
                      "ContrastBolusAgent": "Gadobutrol", "ContrastBolusRoute": "IV", "ContrastBolusVolume": "7.5",
                      "ContrastBolusStartTime": _tm(t0, 16), "ContrastBolusIngredient": "GADOLINIUM"})
    write_volume(st, t1c_ser, t1c.astype(np.uint16), grid, window=_window(t1c[head]))
    series_list.insert(3, t1c_ser)
    t1c_sops = {}
    m_inv = np.linalg.inv(grid.index_to_physical())
    for rec in st.files:
        if rec["series_uid"] == t1c_ser.uid:
            ipp = np.asarray(rec["dir"]["ImagePositionPatient"])
            t1c_sops[int(round((m_inv @ np.r_[ipp, 1.0])[2]))] = rec["sop_uid"]

    # RTSTRUCT on the T1c.
    rois = [{"name": "GTV", "interpreted": "GTV", "color": [255, 0, 0], "mask": tum, "is_lesion": True},
            {"name": "Edema", "interpreted": "CTV", "color": [255, 255, 0], "mask": edema, "is_lesion": False}]
    for organ in MR_ORGANS:
        om = _blob_mask(grid, organ["blobs"], base_grid, to_tp)
        if (om & edema).any():
            raise RuntimeError(f"{organ['name']} overlaps the edema")
        rois.append({"name": organ["name"], "interpreted": organ["interpreted"], "color": organ["color"], "mask": om,
                     "is_lesion": False})
    rt_ser = series("rtstruct", 100, "RANO contours", [], f_rt, 0, None, {})
    rt_ser.modality, rt_ser.sop_class, rt_ser.extra = "RTSTRUCT", RTStructureSetStorage, {}
    when = (_da(st.date, 1), "094500")
    rt_ser.time = when[1]
    rt, rel = _write_rtstruct(st, rt_ser, t1c_ser, t1c_sops, grid, rois, when)
    series_list.append(rt_ser)

    # Rasterise each ROI back onto the T1c grid with the project's reader: the truth is what was written.
    ref = _sitk(np.zeros(t1c.shape, np.uint8), grid)
    voxel = float(np.prod(grid.spacing))
    items = []
    back = {}
    for number, roi in enumerate(rois, start=1):
        lab = sitk.GetArrayFromImage(read_label_map(out / rel, ref, roi_names=[roi["name"]]).image) > 0
        back[roi["name"]] = lab
        item = {"number": number, "name": roi["name"], "interpreted_type": roi["interpreted"],
                "is_lesion": roi["is_lesion"], "voxels": int(lab.sum()), "volume_mm3": _r4(lab.sum() * voxel),
                "raster_equals_drawn_mask": bool(np.array_equal(lab, roi["mask"]))}
        if roi["is_lesion"]:
            item["long_axis_mm"] = _r4(long_axis_mm(lab.astype(np.uint8), grid))
        items.append(item)
    if not (back["GTV"] <= back["Edema"]).all():
        raise RuntimeError("the rasterised Edema does not contain the rasterised GTV")
    items[1]["contains"] = "GTV"
    sample_les = next(x for x in tp["lesions"] if x["label"] == 1)
    gtv = items[0]
    seg_truth = [{"path": rel, "kind": "RTSTRUCT", "sop_uid": sop_uid_of(rt), "series_uid": rt_ser.uid,
                  "series_number": rt_ser.number, "description": rt_ser.description,
                  "content_datetime": f"{when[0]}{when[1]}", "read": "single", "is_newest": True,
                  "referenced_series_uid": t1c_ser.uid, "items": items}]
    lesions = [{"lesion_id": "GTV", "segmentation_sop_uid": sop_uid_of(rt), "roi_number": 1,
                "long_axis_mm": gtv["long_axis_mm"], "volume_mm3": gtv["volume_mm3"], "voxels": gtv["voxels"],
                "sample_mask_long_axis_mm": sample_les["mask_long_axis_mm"],
                "sample_long_axis_mm": sample_les["long_axis_mm"],
                "sample_mask_volume_mm3": sample_les["mask_volume_mm3"],
                "long_axis_diff_vs_sample_mask_mm": _r4(gtv["long_axis_mm"] - sample_les["mask_long_axis_mm"]),
                "note": "the RTSTRUCT's GTV contours rasterised onto the T1c grid with imaging.io.masks.read_label_map"}]
    return {"date": st.date, "files": st.files,
            "truth": {"date": st.date, "study_uid": st.study_uid, "accession_number": st.accession,
                      "study_id": st.study_id, "study_description": st.description, "frame_of_reference_uid": st.for_uid,
                      "source_timepoint": f"{task['source']}/{tp['date']}",
                      "series": [s.truth() for s in series_list], "segmentations": seg_truth, "lesions": lesions}}


def sop_uid_of(ds: Dataset) -> str:
    return str(ds.SOPInstanceUID)


# --------------------------------------------------------------------------------------------
# DICOMDIR, non-DICOM files
# --------------------------------------------------------------------------------------------
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
RECORD_TYPES = {RTStructureSetStorage: "RT STRUCTURE SET"}


def _dir_record(kind: str, info: dict, keys: tuple[str, ...]) -> Dataset:
    r = Dataset()
    r.OffsetOfTheNextDirectoryRecord = 0
    r.RecordInUseFlag = 0xFFFF
    r.OffsetOfReferencedLowerLevelDirectoryEntity = 0
    r.DirectoryRecordType = kind
    for k in keys:
        if k in info:
            setattr(r, k, info[k])
    return r


def write_dicomdir(root: Path, files: list[dict]) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # '.DCM' File IDs are not valid CS values (see the README)
        return _write_dicomdir(root, files)


def _write_dicomdir(root: Path, files: list[dict]) -> int:
    """A DICOMDIR at ``root`` (Basic Directory IOD) referencing ``files`` where they are:
    PATIENT / STUDY / SERIES / IMAGE or RT STRUCTURE SET records, in the order of ``files``.

    The records' offsets are byte positions in the file, found by writing it once, reading back
    where each record starts (pydicom's ``seq_item_tell``) and writing it again (the offsets are
    fixed-length UL values, so nothing moves)."""
    tree: dict = {}
    for rec in files:
        i = rec["dir"]
        p = tree.setdefault(i["PatientID"], {"info": i, "kids": {}})
        s = p["kids"].setdefault(i["StudyInstanceUID"], {"info": i, "kids": {}})
        se = s["kids"].setdefault(i["SeriesInstanceUID"], {"info": i, "kids": {}})
        se["kids"][rec["sop_uid"]] = {"info": i, "kids": {}, "rec": rec}

    nodes: list[dict] = []

    def flatten(level: dict, depth: int) -> list[dict]:
        siblings = []
        for node in level.values():
            info = node["info"]
            if depth == 0:
                r = _dir_record("PATIENT", info, ("PatientName", "PatientID"))
            elif depth == 1:
                r = _dir_record("STUDY", info, ("StudyDate", "StudyTime", "StudyDescription", "StudyInstanceUID",
                                                "StudyID", "AccessionNumber"))
            elif depth == 2:
                r = _dir_record("SERIES", info, ("Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription"))
            else:
                kind = RECORD_TYPES.get(info["SOPClassUID"], "IMAGE")
                keys = ("InstanceNumber", "StructureSetLabel", "StructureSetDate", "StructureSetTime") \
                    if kind == "RT STRUCTURE SET" else ("InstanceNumber",)
                r = _dir_record(kind, info, keys)
                r.ReferencedFileID = node["rec"]["path"].split("/")
                r.ReferencedSOPClassUIDInFile = info["SOPClassUID"]
                r.ReferencedSOPInstanceUIDInFile = info["SOPInstanceUID"]
                r.ReferencedTransferSyntaxUIDInFile = info["TransferSyntaxUID"]
            entry = {"record": r, "index": len(nodes)}
            nodes.append(entry)
            entry["children"] = flatten(node["kids"], depth + 1) if depth < 3 else []
            siblings.append(entry)
        for a, b in zip(siblings, siblings[1:]):
            a["next"] = b
        return siblings

    top = flatten(tree, 0)
    ds = Dataset()
    ds.file_meta = _file_meta(MEDIA_STORAGE_DIRECTORY, _uid("file-set"))
    ds.FileSetID = "PACSEXPORT"
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.FileSetConsistencyFlag = 0
    ds.DirectoryRecordSequence = DicomSequence([n["record"] for n in nodes])
    first = io.BytesIO()
    ds.save_as(first, enforce_file_format=True)
    first.seek(0)
    tells = [item.seq_item_tell for item in dcmread(first).DirectoryRecordSequence]
    for n in nodes:
        if "next" in n:
            n["record"].OffsetOfTheNextDirectoryRecord = tells[n["next"]["index"]]
        if n["children"]:
            n["record"].OffsetOfReferencedLowerLevelDirectoryEntity = tells[n["children"][0]["index"]]
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = tells[top[0]["index"]]
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = tells[top[-1]["index"]]
    final = io.BytesIO()
    ds.save_as(final, enforce_file_format=True)
    if len(final.getvalue()) != len(first.getvalue()):
        raise RuntimeError("DICOMDIR: the record offsets changed the encoding's length")
    (root / "DICOMDIR").write_bytes(final.getvalue())
    return sum(1 for n in nodes if "ReferencedFileID" in n["record"])


README_TXT = """PACS EXPORT - EXAMPLE UNIVERSITY HOSPITAL (FICTITIOUS)
=====================================================

This medium holds DICOM images exported from the picture archive.
Open DICOMDIR with any DICOM viewer.

SYNTHETIC TEST DATA: built by tumor-response's sample_data/pacs_export.py from
the generated sample data (derived from pyradiomics' test images). Not a real
patient. Not for clinical use. All names and identifiers are fake.

Exported {export_date} by PACS export service 7.2 (fictitious).
"""

AUTORUN_INF = "[autorun]\r\nopen=VIEWER\\LAUNCH.EXE\r\nicon=VIEWER\\VIEWER.ICO\r\nlabel=PACS EXPORT\r\n"


# --------------------------------------------------------------------------------------------
# The archive
# --------------------------------------------------------------------------------------------
def _clinical(sample_root: Path) -> dict[str, dict]:
    with open(sample_root / "clinical.csv", newline="") as fh:
        rows = {r["patient_id"]: r for r in csv.DictReader(fh)}
    return {pid: {"treatment_start": r["treatment_start"] or None, "radiotherapy_end": r["radiotherapy_end"] or None,
                  "immunotherapy": r["immunotherapy"].strip().lower() == "true"} for pid, r in rows.items()}


def _run(task: dict) -> dict:
    return build_ct_study(task) if task["kind"] == "ct" else build_mr_study(task)


def _plan(sample_root: Path, out: Path) -> tuple[list[dict], list[dict]]:
    """Patients (identities, folders) and the study tasks, all decided before anything is written."""
    clinical = _clinical(sample_root)
    patients, tasks = [], []
    study_counter = 0
    for pidx, spec in enumerate(EXPORT_PATIENTS):
        rng = np.random.default_rng([SEED, pidx])
        src_truth = json.loads((sample_root / spec["source"] / "truth.json").read_text())
        first = rng.choice(FAKE_FIRST[spec["sex"]])
        last = rng.choice(FAKE_LAST)
        pid = f"{int(rng.integers(10 ** 7, 10 ** 8))}"
        birth_year = int(src_truth["timepoints"][0]["date"][:4]) - spec["age_years"]
        birth = f"{birth_year}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
        tps = src_truth["timepoints"][: spec["n_studies"]]
        ctx = clinical[spec["source"]]
        base_idx = max(i for i, t in enumerate(tps) if t["date"] <= ctx["treatment_start"])
        patient = {"patient_id": pid, "name": f"{last}^{first}", "birth_date": birth, "sex": spec["sex"],
                   "age_years": spec["age_years"], "body_part": "CHEST" if spec["key"] == "ct" else "HEAD",
                   "manufacturer": spec["manufacturer"], "model": spec["model"], "station": spec["station"],
                   "serial": f"{int(rng.integers(10000, 99999))}",
                   "software": "syngo CT VA48A" if spec["key"] == "ct" else "syngo MR E11"}
        patient_folder = None if spec["key"] == "ct" else f"DICOM/{_hex8(rng)}"
        studies = []
        for sidx, tp in enumerate(tps):
            study_counter += 1
            srng = np.random.default_rng([SEED, pidx, sidx])
            acc = f"{int(srng.integers(10 ** 9, 10 ** 10))}"
            folder = (f"DICOM/ST{study_counter:06d}" if spec["key"] == "ct" else f"{patient_folder}/{_hex8(srng)}")
            task = {"kind": spec["key"], "sample_root": str(sample_root), "out": str(out), "source": spec["source"],
                    "timepoint": tp, "baseline_timepoint": tps[base_idx], "patient": patient,
                    "study_uid": _uid(pid, tp["date"], "study"), "for_uid": _uid(pid, tp["date"], "frame-of-reference"),
                    "accession": acc, "study_id": f"{int(srng.integers(1000, 9999))}",
                    "study_time": _tm(spec["study_time"], int(srng.integers(-90, 90))),
                    "study_description": spec["study_description"], "folder": folder,
                    "seed": [SEED, pidx, sidx, 1], "revised_read": spec["key"] == "ct" and sidx == 1}
            tasks.append(task)
            studies.append({"date": tp["date"], "is_baseline": sidx == base_idx, "task": len(tasks) - 1})
        patients.append({"patient_id": pid, "patient_name": patient["name"], "birth_date": birth, "sex": spec["sex"],
                         "modality": "CT" if spec["key"] == "ct" else "MR", "source_patient": spec["source"],
                         "source_case": src_truth["source_case"], "clinical": ctx,
                         "baseline_date": tps[base_idx]["date"], "studies": studies})
    return patients, tasks


def build_pacs_export(sample_root: Path, out: Path, jobs: int | None = None) -> dict:
    """Build the archive under ``out`` (in a temporary sibling folder, then renamed) and return its truth
    (also written to ``out/truth.json``)."""
    sample_root, out = Path(sample_root).resolve(), Path(out).resolve()
    if not (sample_root / ".complete").is_file():
        raise FileNotFoundError(f"{sample_root}: no generated sample data (run sample_data/generate.py)")
    out.parent.mkdir(parents=True, exist_ok=True)
    gen._remove_stale_temporaries(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        patients, tasks = _plan(sample_root, tmp)
        jobs = jobs if jobs is not None else min(2, os.cpu_count() or 1)
        order = sorted(range(len(tasks)), key=lambda i: (tasks[i]["kind"] != "ct", i))  # heavy CT studies first
        if jobs > 1:
            # fork where there is one: the workers need not import this file by name (the tests load it by path)
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else None)
            with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as ex:
                done = dict(zip(order, ex.map(_run, [tasks[i] for i in order])))
        else:
            done = {i: _run(tasks[i]) for i in order}
        files = []
        for i in range(len(tasks)):
            files.extend(done[i]["files"])
        n_dicomdir = write_dicomdir(tmp, files)
        (tmp / "README.TXT").write_text(README_TXT.format(export_date=EXPORT_DATE).replace("\n", "\r\n"))
        (tmp / "AUTORUN.INF").write_bytes(AUTORUN_INF.encode())
        # The treatment context a run needs (configs/pacs_export.yaml), by the export's own patient ids.
        rows = ["patient_id,treatment_start,radiotherapy_end,immunotherapy"]
        for p in patients:
            c = p["clinical"]
            rows.append(f"{p['patient_id']},{c['treatment_start']},{c.get('radiotherapy_end') or ''},"
                        f"{str(c.get('immunotherapy', False)).lower()}")
        (tmp / "clinical.csv").write_text("\n".join(rows) + "\n")
        junk_rng = np.random.default_rng([SEED, 99])
        junk_dir = Path(files[-1]["path"]).parent  # beside the last MR study's RTSTRUCT
        (tmp / junk_dir / "PREVIEW.JPG").write_bytes(b"\xff\xd8\xff\xe0" + junk_rng.bytes(2044))
        non_dicom = ["README.TXT", "AUTORUN.INF", "clinical.csv", f"{junk_dir.as_posix()}/PREVIEW.JPG", "truth.json"]
        for p in patients:
            studies = []
            for s in p["studies"]:
                st = done[s["task"]]["truth"]
                studies.append({"date": s["date"], "is_baseline": s["is_baseline"], **{k: v for k, v in st.items()
                                                                                     if k != "date"}})
            p["studies"] = studies
        truth = {
            "generator": "sample_data/pacs_export.py", "uid_namespace": UID_NAMESPACE, "seed": SEED,
            "note": ("Synthetic PACS-shaped export of the generated sample data; every UID is new. Per study: "
                     "series with their role ('measure' = the series the lesion is measured on), the segmentation "
                     "objects (SEG / RTSTRUCT) with what each item is, and per lesion the long axis (the sample "
                     "generator's long_axis_mm: max over slices of the Feret diameter of the pixel squares) and "
                     "volume of the mask as written (RTSTRUCT: rasterised back onto the T1c grid)."),
            "dicomdir": "DICOMDIR", "n_dicom_files": len(files), "n_dicomdir_records_for_files": n_dicomdir,
            "non_dicom_files": non_dicom, "patients": patients,
        }
        (tmp / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
        gen.swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return truth


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sample", type=Path, default=HERE / "generated", help="generated sample data (default: %(default)s)")
    ap.add_argument("--out", type=Path, required=True, help="archive folder (replaced atomically)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="studies built in parallel")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    truth = build_pacs_export(args.sample, args.out, jobs=args.jobs)
    seconds = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{'patient':10} {'source':6} {'date':10} {'lesion':6} {'long axis mm':>12} {'sample mask':>11} "
          f"{'diff':>7} {'volume mm3':>11}  segmentation")
    for p in truth["patients"]:
        for s in p["studies"]:
            for les in s["lesions"]:
                seg = next(x for x in s["segmentations"] if x["sop_uid"] == les["segmentation_sop_uid"])
                print(f"{p['patient_id']:10} {p['source_patient']:6} {s['date']:10} {les['lesion_id']:6} "
                      f"{les['long_axis_mm']:12.2f} {les['sample_mask_long_axis_mm']:11.2f} "
                      f"{les['long_axis_diff_vs_sample_mask_mm']:+7.2f} {les['volume_mm3']:11.1f}  "
                      f"{seg['kind']} {seg['path']}")
    print(f"wrote {args.out}: {truth['n_dicom_files']} DICOM files, {size / 1e6:.1f} MB, "
          f"{seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
