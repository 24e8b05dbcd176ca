#!/usr/bin/env python3
"""A glioma patient for the sample data: post-contrast T1, FLAIR and a BraTS-style label map at every scan.

Derived from the REAL brain MR the sample data already uses (pyradiomics-bhklab's ``brain1`` case, its
image and tumour mask; see generate.py and sample_data/README.md), with what it lacks made up and said so:

- **compartments** (BraTS 2021 values): the real tumour mask is the enhancing lesion, its in-plane core
  (eroded by 3 voxels) the necrosis (label 1), the rim the enhancing tumour (label 4); the oedema
  (label 2) is the brain within ``oedema_mm`` of the tumour -- made up, and grown over time;
- **T1c**: the real MR, with the rim brightened x1.5 and the core darkened x0.6 (enhancement synthesised);
- **FLAIR**: *synthesised* from the real MR (its anatomy, another contrast: tissue mid-grey, the
  oedema and tumour bright) on its own grid (0.9 x 0.9 x 5 mm) after a small rigid motion of the head
  between the two sequences, as in a real exam;
- between scans the patient is repositioned by a small seeded rigid motion (as for P001-P003).

The story (``STORY``): after chemoradiotherapy, the enhancing lesion stays the same while the T2/FLAIR
abnormality grows, outside the 12 weeks after radiotherapy. RANO 2010 reads the FLAIR increase as
progression (PD); RANO 2.0 and mRANO, which do not use T2/FLAIR for enhancing tumours, call SD.

Written to ``--out`` (default ``sample_data/glioma``): ``P004/<date>/dicom/`` (two MR series in one
study: "AX T1 POST GD" and "AX FLAIR"), ``P004/<date>/labels.nii.gz`` (on the T1c grid),
``clinical.csv``, ``visits.csv``, ``truth.json``; staged in a temporary sibling and renamed into place,
then ``.complete`` is touched. Re-running gives byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate as g  # noqa: E402  (the sample data's generator: sources, grids, DICOM writer)

PATIENT = "P004"
SOURCE_CASE = "brain1"
CONTEXT = {"treatment_start": "2024-02-07", "radiotherapy_end": "2024-01-12", "immunotherapy": False}
#: (date, oedema margin around the tumour in mm). Enhancing lesion unchanged throughout.
STORY = [("2024-02-05", 8.0), ("2024-04-01", 8.5), ("2024-05-27", 14.0), ("2024-07-22", 14.0)]
SEED = 20240205
CORE_EROSION_VOXELS = 3
FLAIR_SPACING = (0.9, 0.9, 5.0)
FLAIR_MOTION = ((1.5, -1.0, 3.0), (2.0, -1.5, 1.0))  # degrees about x, y, z; mm
FAKE = {"name": "POE^ALEX", "birth_date": "19680417", "sex": "F", "study_time": "101500", "body_part": "BRAIN",
        "study_description": "MR BRAIN WITH AND WITHOUT CONTRAST"}
SERIES = {"t1c": ("AX T1 POST GD", 7), "flair": ("AX FLAIR", 4)}


def _euler(deg, trans, centre) -> sitk.Euler3DTransform:
    t = sitk.Euler3DTransform()
    t.SetCenter([float(v) for v in centre])
    t.SetRotation(*np.deg2rad(np.asarray(deg, float)))
    t.SetTranslation([float(v) for v in trans])
    return t


def _brain_mask(src: np.ndarray) -> np.ndarray:
    """The head's interior from the real MR: above the background, largest component, holes filled per slice."""
    level = np.percentile(src[src > 0], 20) if np.any(src > 0) else 1
    mask = src > level
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, labels, range(1, n + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    return np.stack([ndimage.binary_fill_holes(s) for s in mask])


def _compartments(tumour: np.ndarray, brain: np.ndarray, grid: g.Grid, oedema_mm: float) -> np.ndarray:
    """BraTS 2021 labels: 1 necrosis (the in-plane core), 4 enhancing (the rim), 2 oedema (``oedema_mm`` around)."""
    core = np.stack([ndimage.binary_erosion(s, iterations=CORE_EROSION_VOXELS) for s in tumour])
    distance = ndimage.distance_transform_edt(~tumour, sampling=tuple(reversed(grid.spacing)))
    labels = np.zeros(tumour.shape, np.uint8)
    labels[(distance <= oedema_mm) & brain & ~tumour] = 2
    labels[tumour & ~core] = 4
    labels[core] = 1
    return labels


def _image(arr: np.ndarray, like: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(like)
    return out


def _meta(date: str, role: str, study_uid: str, for_uid: str) -> dict:
    description, number = SERIES[role]
    acc = "A" + str(int(hashlib.sha1(f"{PATIENT}{date}".encode()).hexdigest(), 16) % 10 ** 8).zfill(8)
    return {"patient_id": PATIENT, "date": date, "study_uid": study_uid, "for_uid": for_uid, "accession": acc,
            "series_uid": g._uid(PATIENT, date, role, "series"), "series_key": role, "source_case": SOURCE_CASE,
            "fake": {**FAKE, "series_description": description, "series_number": number}}


def build(data_dir: Path, out: Path) -> dict:
    img = g.canonicalise(sitk.ReadImage(str(data_dir / f"{SOURCE_CASE}_image.nrrd")))
    lab = g.canonicalise(sitk.ReadImage(str(data_dir / f"{SOURCE_CASE}_label.nrrd")))
    grid = g.Grid.of(img)
    src = sitk.GetArrayFromImage(img).astype(np.float32)
    tumour = sitk.GetArrayFromImage(lab) != 0
    brain = _brain_mask(src)
    voxel_mm3 = float(np.prod(grid.spacing))
    lo, hi = np.percentile(src[brain], [1, 99.5])
    norm = np.clip((src - lo) / max(hi - lo, 1.0), 0.0, 1.0)
    rng = np.random.default_rng(SEED)
    truth = {"patient_id": PATIENT, "source_case": SOURCE_CASE, "context": CONTEXT, "timepoints": []}
    for i, (date, oedema_mm) in enumerate(STORY):
        labels = _compartments(tumour, brain, grid, oedema_mm)
        t1c = src.copy()
        t1c[labels == 4] *= 1.5
        t1c[labels == 1] *= 0.6
        flair = np.where(brain, 260.0 + 320.0 * (1.0 - np.abs(norm - 0.55) * 1.6), 0.0)  # tissue mid-grey, CSF dark
        flair[labels == 2] = 900.0
        flair[labels == 4] = 780.0
        flair[labels == 1] = 650.0
        flair = ndimage.gaussian_filter(flair, sigma=(0.3, 0.8, 0.8))
        # The patient is repositioned between scans (the baseline stays as the source lies).
        move = _euler(rng.uniform(-2, 2, 3) if i else np.zeros(3), rng.uniform(-4, 4, 3) if i else np.zeros(3),
                      grid.center())
        t1c_img = sitk.Resample(_image(t1c, img), img, move, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        lab_img = sitk.Resample(_image(labels, img), img, move, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        flair_scan = sitk.Resample(_image(flair.astype(np.float32), img), img, move, sitk.sitkLinear, 0.0,
                                   sitk.sitkFloat32)
        # FLAIR: its own grid, and the head moved a little between the two sequences of the exam.
        f_size = [int(round(n * s / fs)) for n, s, fs in zip(grid.size, grid.spacing, FLAIR_SPACING, strict=True)]
        f_ref = sitk.Image(f_size, sitk.sitkFloat32)
        f_ref.SetSpacing(FLAIR_SPACING)
        f_ref.SetDirection(img.GetDirection())
        f_ref.SetOrigin(img.GetOrigin())
        within_exam = _euler(*FLAIR_MOTION, grid.center())
        flair_img = sitk.Resample(flair_scan, f_ref, within_exam, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        tdir = out / PATIENT / date
        tdir.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(lab_img, str(tdir / "labels.nii.gz"), useCompression=True)
        study_uid, for_uid = g._uid(PATIENT, date, "study"), g._uid(PATIENT, date, "frame-of-reference")
        t1_arr = np.clip(np.rint(sitk.GetArrayFromImage(t1c_img)), 0, 32767).astype(np.int16)
        g.write_dicom_series(t1_arr, grid, "MR", tdir / "dicom" / "t1c", _meta(date, "t1c", study_uid, for_uid))
        fl_arr = np.clip(np.rint(sitk.GetArrayFromImage(flair_img)), 0, 32767).astype(np.int16)
        g.write_dicom_series(fl_arr, g.Grid.of(flair_img), "MR", tdir / "dicom" / "flair",
                             _meta(date, "flair", study_uid, for_uid))
        moved_labels = sitk.GetArrayFromImage(lab_img)
        truth["timepoints"].append({
            "date": date, "oedema_margin_mm": oedema_mm,
            "flair_burden_mm3": round(float(np.count_nonzero(moved_labels > 0)) * voxel_mm3, 1),
            "enhancing_mm3": round(float(np.count_nonzero(np.isin(moved_labels, (1, 4)))) * voxel_mm3, 1),
            "motion": {"deg": [round(float(v), 4) for v in np.rad2deg([move.GetAngleX(), move.GetAngleY(),
                                                                         move.GetAngleZ()])],
                       "mm": [round(float(v), 4) for v in move.GetTranslation()]},
        })
    volumes = [t["flair_burden_mm3"] for t in truth["timepoints"]]
    truth["intended"] = {
        "t2_flair": [None] + ["increased" if v >= 1.25 * min(volumes[:k + 1]) else "stable"
                              for k, v in enumerate(volumes[1:])],
        "rano": [None, "SD", "PD", "PD"], "rano2": [None, "SD", "SD", "SD"], "mrano": [None, "SD", "SD", "SD"],
        "note": "RANO 2010: T2/FLAIR increase read from the images, outside the 12 weeks after radiotherapy -> PD "
                "(kept after progression); RANO 2.0 / mRANO do not use T2/FLAIR for enhancing tumours -> SD",
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    c = CONTEXT
    (out / "clinical.csv").write_text("patient_id,treatment_start,radiotherapy_end,immunotherapy\n"
                                      f"{PATIENT},{c['treatment_start']},{c['radiotherapy_end']},false\n")
    visits = ["patient_id,timepoint,date,steroid_dose_mg,clinically_stable,t2_flair"]
    visits += [f"{PATIENT},{d},{d},2,true," for d, _ in STORY]  # no t2_flair: the images decide
    (out / "visits.csv").write_text("\n".join(visits) + "\n")
    return truth


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "glioma")
    args = ap.parse_args(argv)
    data_dir = g.fetch_sources([SOURCE_CASE])
    out = args.out.resolve()
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    truth = build(data_dir, tmp)
    (tmp / ".complete").touch()
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    for t, rano in zip(truth["timepoints"], truth["intended"]["rano"], strict=True):
        print(f"{PATIENT} {t['date']}: FLAIR burden {t['flair_burden_mm3'] / 1000:.1f} ml, enhancing "
              f"{t['enhancing_mm3'] / 1000:.2f} ml; RANO intended {rano}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
