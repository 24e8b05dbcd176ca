"""Deterministic archives for the scale benchmark (benchmarks/bench_scale.py).

- :func:`master_archive` ``(n_patients)``: ``n_patients`` x 4 DICOM CT studies of a small synthetic
  chest (64 x 64 x 24 voxels, 4 x 4 x 5 mm: body, two lungs, spine, one lung lesion whose size follows a
  per-patient course), each follow-up moved by a small rigid motion (so registration has work), the
  label map beside each study as ``{patient_id}/{study_date}/mask.nii.gz`` (label 1 = L1), ``lesions.json``
  per patient and ``clinical.csv``. Written with tests/data_factory.py (write_series, ellipsoid-style
  label maps, save_nifti); seeded, so the same call gives the same images (UIDs aside).
- :func:`subset_archive` ``(n_tp)``: the first ``n_tp`` time points of the master archive (patient by
  patient, 4 per patient, the last one possibly shorter), hard-linked, with its own clinical.csv and config.
- :func:`write_scale_config`: the run config (DICOM, mask template, clinical CSV, RECIST, tracking by
  registration, no DICOM export, no snapshots, no radiomics, 2 local workers).
- :func:`crawl_archive` ``(n_files)``: ``n_files`` small one-frame CT slice files (400 series of 250 slices,
  100 patients), made from one serialised template whose UIDs and positions are patched in place
  (fixed-width fields), for ``tumor-response index``.

Everything is generated under benchmarks/.cache/ once (a ``.complete`` stamp holds the layout version).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = HERE / ".cache"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

LAYOUT = "scale v1: 64x64x24 @ 4x4x5 mm, body+lungs+spine, rigid motion, 4 tp/patient"
SIZE_XYZ = (64, 64, 24)
SPACING_XYZ = (4.0, 4.0, 5.0)
ORIGIN_LPS = (-126.0, -126.0, -57.5)  # grid centred on the origin
TP_PER_PATIENT = 4
DATES = (0, 56, 112, 168)  # days from the baseline
#: Per-patient lesion size course (scale of the baseline semi-axes): response, stable, progression, mixed.
COURSES = ((1.0, 0.7, 0.5, 0.4), (1.0, 1.0, 0.95, 1.05), (1.0, 1.15, 1.35, 1.6), (1.0, 0.6, 0.65, 0.9))


def patient_id(k: int) -> str:
    return f"S{k + 1:04d}"


def _phantom(rng: np.random.Generator, motion: tuple[float, float, float, float], lesion: dict, scale: float):
    """HU volume (z, y, x) and label map of the chest phantom under a rigid motion (rotation about z in degrees,
    then a shift in mm) with the lesion's semi-axes scaled by ``scale``."""
    nx, ny, nz = SIZE_XYZ
    sx, sy, sz = SPACING_XYZ
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    # Patient coordinates (mm) of each voxel centre, brought back into the phantom's own frame.
    px = ORIGIN_LPS[0] + x * sx
    py = ORIGIN_LPS[1] + y * sy
    pz = ORIGIN_LPS[2] + z * sz
    theta, tx, ty, tz = motion
    c, s = np.cos(np.deg2rad(theta)), np.sin(np.deg2rad(theta))
    qx, qy, qz = px - tx, py - ty, pz - tz
    u = c * qx + s * qy
    v = -s * qx + c * qy
    w = qz
    hu = np.full((nz, ny, nx), -1000.0)
    body = (u / 110.0) ** 2 + (v / 80.0) ** 2 <= 1.0
    hu[body] = 40.0
    fat = body & ((u / 104.0) ** 2 + (v / 74.0) ** 2 > 1.0)
    hu[fat] = -90.0
    for side in (-1, 1):
        lung = ((u - side * 48.0) / 38.0) ** 2 + ((v + 5.0) / 55.0) ** 2 + (w / 70.0) ** 2 <= 1.0
        hu[lung] = -850.0
    spine = ((u / 14.0) ** 2 + ((v - 52.0) / 14.0) ** 2 <= 1.0)
    hu[spine] = 450.0
    sternum = (np.abs(u) < 8.0) & (np.abs(v + 72.0) < 4.0)
    hu[sternum] = 300.0
    heart = ((u + 8.0) / 30.0) ** 2 + ((v + 25.0) / 26.0) ** 2 + ((w + 20.0) / 40.0) ** 2 <= 1.0
    hu[heart] = 50.0
    # The lesion: an ellipsoid in the phantom frame, its axes in the axial plane rotated by lesion["theta"].
    cx, cy, cz = lesion["centre"]
    a, b, cc = (scale * r for r in lesion["axes"])
    t = np.deg2rad(lesion["theta"])
    du, dv, dw = u - cx, v - cy, w - cz
    lu = du * np.cos(t) + dv * np.sin(t)
    lv = -du * np.sin(t) + dv * np.cos(t)
    inside = (lu / a) ** 2 + (lv / b) ** 2 + (dw / cc) ** 2 <= 1.0
    hu[inside] = 30.0
    hu += rng.normal(0.0, 12.0, hu.shape)
    labels = inside.astype(np.uint16)
    return np.clip(np.round(hu), -1024, 3000).astype(np.int16), labels


def _write_patient(root: str, k: int) -> list[str]:
    """Write patient k's four studies, lesions.json; returns its clinical.csv line."""
    from data_factory import make_image, write_series

    from imaging.io import save_nifti

    rng = np.random.default_rng(1000 + k)
    pid = patient_id(k)
    side = 1 if k % 2 else -1
    lesion = {"centre": (side * 48.0 + rng.uniform(-8, 8), rng.uniform(-15, 5), rng.uniform(-15, 15)),
              "axes": (rng.uniform(10, 14), rng.uniform(7, 10), rng.uniform(7, 10)), "theta": rng.uniform(0, 180)}
    course = COURSES[k % len(COURSES)]
    base_date = dt.date(2023, 1, 2) + dt.timedelta(days=int(k % 300))
    for i, (days, scale) in enumerate(zip(DATES, course, strict=True)):
        motion = (0.0, 0.0, 0.0, 0.0) if i == 0 else (rng.uniform(-3, 3), rng.uniform(-6, 6), rng.uniform(-6, 6),
                                                       rng.uniform(-4, 4))
        hu, labels = _phantom(rng, motion, lesion, scale)
        date = base_date + dt.timedelta(days=days)
        folder = Path(root) / pid / date.isoformat()
        write_series(folder / "dicom", hu, SPACING_XYZ, ORIGIN_LPS, np.eye(3), study_date=date, patient_id=pid,
                     seed=k * 10 + i)
        save_nifti(make_image(labels, SPACING_XYZ, ORIGIN_LPS, np.eye(3)), folder / "mask.nii.gz")
    (Path(root) / pid / "lesions.json").write_text(json.dumps({"1": {"lesion_id": "L1", "organ": "lung", "nodal": False}}))
    return [f"{pid},{(base_date + dt.timedelta(days=3)).isoformat()},,false"]


def master_archive(n_patients: int, workers: int | None = None) -> Path:
    """The master archive of ``n_patients`` x 4 studies (built once; a larger one serves smaller requests)."""
    root = CACHE / "scale_master"
    stamp = root / ".complete"
    if stamp.is_file():
        info = json.loads(stamp.read_text())
        if info.get("layout") == LAYOUT and info.get("patients", 0) >= n_patients:
            return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    print(f"generating {root} ({n_patients} patients x {TP_PER_PATIENT}, once) ...", file=sys.stderr, flush=True)
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        lines = [line for got in pool.map(_write_patient, [str(root)] * n_patients, range(n_patients), chunksize=8)
                 for line in got]
    (root / "clinical.csv").write_text("\n".join(["patient_id,treatment_start,radiotherapy_end,immunotherapy", *lines]) + "\n")
    stamp.write_text(json.dumps({"layout": LAYOUT, "patients": n_patients}))
    return root


def write_scale_config(root: Path, *, workers: int = 2, name: str = "scale") -> Path:
    """``root/config.yaml``: like configs/sample.yaml on this archive, outputs reduced to the assessment."""
    config = root / "config.yaml"
    config.write_text(
        f"name: {name}\n"
        "dataset:\n"
        "  kind: dicom\n"
        "  root: .\n"
        '  mask: "{patient_id}/{study_date}/mask.nii.gz"\n'
        '  lesion_metadata: "{patient_id}/lesions.json"\n'
        "  clinical: clinical.csv\n"
        "  modality: [CT]\n"
        "output_dir: out\n"
        "criteria: [recist]\n"
        f"executor: {{kind: local, workers: {workers}}}\n"
        "tracking: {method: registration}\n"
        "outputs: {dicom: false, snapshots: false}\n"
        "radiomics: {enabled: false}\n"
    )
    return config


def subset_archive(n_tp: int) -> Path:
    """The first ``n_tp`` time points of the master archive, hard-linked under benchmarks/.cache/scale_<n_tp>/."""
    n_patients = -(-n_tp // TP_PER_PATIENT)
    master = master_archive(n_patients)
    root = CACHE / f"scale_{n_tp}"
    stamp = root / ".complete"
    if stamp.is_file() and stamp.read_text() == LAYOUT and (master / ".complete").stat().st_mtime <= stamp.stat().st_mtime:
        write_scale_config(root)
        return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    header, *lines = (master / "clinical.csv").read_text().splitlines()
    wanted = []
    left = n_tp
    for k in range(n_patients):
        pid = patient_id(k)
        (root / pid).mkdir()
        os.link(master / pid / "lesions.json", root / pid / "lesions.json")
        for tp in sorted(p for p in (master / pid).iterdir() if p.is_dir())[:min(TP_PER_PATIENT, left)]:
            shutil.copytree(tp, root / pid / tp.name, copy_function=os.link)
            left -= 1
        wanted.append(lines[k])
    (root / "clinical.csv").write_text("\n".join([header, *wanted]) + "\n")
    write_scale_config(root)
    stamp.write_text(LAYOUT)
    return root


# --- the crawl archive: many small slice files --------------------------------------------------------------

CRAWL_LAYOUT = "crawl v1: 250-slice series, 4 series/patient, 64x64 int16, patched template"
_SERIES_SIZE = 250


def _uid(kind: int, n: int) -> bytes:
    # Fixed width (26 + 20 = 46 chars, even: no padding byte to move); every component starts with a non-zero digit.
    return f"1.2.826.0.1.3680043.9.7{kind}.1{n:019d}".encode()


def _crawl_template():
    import pydicom
    from data_factory import CT_IMAGE_STORAGE
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = _uid(1, 0).decode()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = _uid(1, 0).decode()
    ds.StudyInstanceUID = _uid(2, 0).decode()
    ds.SeriesInstanceUID = _uid(3, 0).decode()
    ds.FrameOfReferenceUID = _uid(4, 0).decode()
    ds.PatientID = "C000000"
    ds.PatientName = "CRAWL^PATIENT"
    ds.Modality = "CT"
    ds.StudyDate = "20240102"
    ds.SeriesDescription = "synthetic crawl"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SeriesNumber = 1
    ds.InstanceNumber = "987654"  # IS, patched (fixed width)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = ["-100.0000", "-100.0000", "+0000.0000"]  # z patched (fixed width, 10 chars)
    ds.PixelSpacing = [0.8, 0.8]
    ds.SliceThickness = 1.0
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.KVP = 120
    ds.ConvolutionKernel = "B30f"
    ds.PixelData = np.random.default_rng(0).integers(-1000, 1000, size=(64, 64)).astype(np.int16).tobytes()
    from io import BytesIO

    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _write_crawl_series(root: str, s: int) -> None:
    template = _crawl_template()
    patient, study = s // 4, s // 2  # 4 series per patient, 2 per study
    blob = (template.replace(_uid(2, 0), _uid(2, study)).replace(_uid(3, 0), _uid(3, s))
            .replace(_uid(4, 0), _uid(4, study)).replace(b"C000000", f"C{patient:06d}".encode()))
    sop = _uid(1, 0)
    assert blob.count(sop) == 2 and blob.count(b"+0000.0000") == 1 and blob.count(b"987654") == 1
    folder = Path(root) / f"C{patient:06d}" / f"study{study}" / f"series{s}"
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(_SERIES_SIZE):
        n = s * _SERIES_SIZE + k
        data = (blob.replace(sop, _uid(1, n)).replace(b"+0000.0000", f"{k * 1.0:+010.4f}".encode())
                .replace(b"987654", f"{k + 1:06d}".encode()))
        (folder / f"{n:08x}.dcm").write_bytes(data)


def crawl_archive(n_files: int) -> Path:
    """``n_files`` slice files (rounded to whole 250-slice series), built once under benchmarks/.cache/crawl_<n>/."""
    root = CACHE / f"crawl_{n_files}"
    stamp = CACHE / f"crawl_{n_files}.complete"
    if stamp.is_file() and stamp.read_text() == CRAWL_LAYOUT:
        return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    print(f"generating {root} ({n_files} files, once) ...", file=sys.stderr, flush=True)
    n_series = max(1, n_files // _SERIES_SIZE)
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(_write_crawl_series, [str(root)] * n_series, range(n_series), chunksize=4))
    stamp.write_text(CRAWL_LAYOUT)
    return root


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tp", type=int, default=50, help="time points of the subset archive to build")
    ap.add_argument("--crawl", type=int, default=0, help="also build a crawl archive of this many files")
    args = ap.parse_args()
    print(subset_archive(args.tp))
    if args.crawl:
        print(crawl_archive(args.crawl))
