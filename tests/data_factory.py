"""Test data with known truth: DICOM series of a known grid, analytic ellipsoids."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def rotation_matrix(rx_deg: float, ry_deg: float, rz_deg: float) -> np.ndarray:
    """Rotation about x, then y, then z (degrees); a proper rotation (det +1)."""
    rx, ry, rz = np.deg2rad([rx_deg, ry_deg, rz_deg])
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    mx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    my = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    mz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return mz @ my @ mx


def write_series(
    folder: Path,
    hu_zyx: np.ndarray,
    spacing_xyz: tuple[float, float, float],
    origin_lps: tuple[float, float, float],
    direction: np.ndarray,
    *,
    shuffle: bool = True,
    seed: int = 0,
    positions: list[np.ndarray] | None = None,
    series_uid: str | None = None,
    study_date: dt.date = dt.date(2024, 1, 2),
    patient_id: str = "TEST001",
    rescale_intercept: float = -1024.0,
    rescale_slope: float = 1.0,
) -> list[Path]:
    """Write a CT series, one file per slice, names in random order.

    ``direction`` columns are the x, y, z index axes in LPS; its third column
    must be row x column for a DICOM-conformant stack (positions follow it).
    ``positions`` overrides ImagePositionPatient per slice (for gaps, tilts).
    Stored value = (HU - intercept) / slope.
    """
    folder.mkdir(parents=True, exist_ok=True)
    nz, ny, nx = hu_zyx.shape
    direction = np.asarray(direction, dtype=float).reshape(3, 3)
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    for_uid = generate_uid()
    rng = random.Random(seed)
    names = [f"{rng.getrandbits(40):010x}" + (".dcm" if k % 3 else "") for k in range(nz)]
    if shuffle:
        rng.shuffle(names)
    paths = []
    for k in range(nz):
        pos = (
            positions[k]
            if positions is not None
            else np.asarray(origin_lps) + k * spacing_xyz[2] * direction[:, 2]
        )
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        sop_uid = generate_uid()
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = for_uid
        ds.PatientID = patient_id
        ds.PatientName = "TEST^PATIENT"
        ds.Modality = "CT"
        ds.StudyDate = study_date.strftime("%Y%m%d")
        ds.SeriesDescription = "synthetic"
        ds.InstanceNumber = nz - k  # deliberately opposite to the slice order
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*direction[:, 0], *direction[:, 1])]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.PixelSpacing = [f"{spacing_xyz[1]:.6f}", f"{spacing_xyz[0]:.6f}"]  # row spacing (y), column spacing (x)
        ds.SliceThickness = f"{spacing_xyz[2]:.4f}"
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = f"{rescale_intercept:g}"
        ds.RescaleSlope = f"{rescale_slope:g}"
        stored = np.round((hu_zyx[k].astype(float) - rescale_intercept) / rescale_slope)
        ds.PixelData = stored.astype(np.uint16).tobytes()
        path = folder / names[k]
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def make_image(array_zyx: np.ndarray, spacing_xyz, origin_lps, direction) -> sitk.Image:
    img = sitk.GetImageFromArray(array_zyx)
    img.SetSpacing(tuple(float(v) for v in spacing_xyz))
    img.SetOrigin(tuple(float(v) for v in origin_lps))
    img.SetDirection(tuple(float(v) for v in np.asarray(direction, dtype=float).flatten()))
    return img


def ellipsoid_labels(
    size_xyz: tuple[int, int, int],
    spacing_xyz: tuple[float, float, float],
    direction: np.ndarray,
    lesions: list[tuple[int, tuple[float, float, float], tuple[float, float, float], float]],
    origin_lps: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> sitk.Image:
    """Label map of ellipsoids digitised by voxel-centre inclusion.

    Each lesion is (label, centre as continuous (x, y, z) index, semi-axes (a, b, c) in mm,
    in-plane rotation in degrees); axes a, b lie in the acquisition plane, c along the slice normal.
    """
    nx, ny, nz = size_xyz
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    out = np.zeros((nz, ny, nx), dtype=np.uint16)
    for label, centre, (a, b, c), theta_deg in lesions:
        dx = (x - centre[0]) * spacing_xyz[0]
        dy = (y - centre[1]) * spacing_xyz[1]
        dz = (z - centre[2]) * spacing_xyz[2]
        t = np.deg2rad(theta_deg)
        u = dx * np.cos(t) + dy * np.sin(t)
        v = -dx * np.sin(t) + dy * np.cos(t)
        out[(u / a) ** 2 + (v / b) ** 2 + (dz / c) ** 2 <= 1.0] = label
    return make_image(out, spacing_xyz, origin_lps, direction)


def write_mini_archive(root: Path, *, n_patients: int = 2, spacing=(0.8, 0.8, 2.5), size=(64, 64, 16)) -> Path:
    """A small DICOM archive of ``n_patients`` x 3 time points with one ellipsoidal lesion each.

    Layout as the sample data: ``<root>/<patient>/<date>/dicom/``, ``mask.nii.gz`` (label 1 = L1),
    ``<patient>/lesions.json``, ``clinical.csv``, and ``config.yaml`` pointing at it (returned).
    Patient k's lesion has a 12 mm baseline long axis and a scale course (1.0, 0.6, 0.5) for even k
    (response) and (1.0, 1.5, 1.8) for odd k (progression).
    """
    import json as _json

    from imaging.io import save_nifti

    dates = [dt.date(2024, 1, 2), dt.date(2024, 2, 20), dt.date(2024, 4, 10)]
    clinical = ["patient_id,treatment_start,radiotherapy_end,immunotherapy"]
    nx, ny, nz = size
    for k in range(n_patients):
        pid = f"MINI{k + 1:02d}"
        scales = (1.0, 0.6, 0.5) if k % 2 == 0 else (1.0, 1.5, 1.8)
        clinical.append(f"{pid},2024-01-05,,false")
        for d, s in zip(dates, scales, strict=True):
            folder = root / pid / d.isoformat()
            labels = ellipsoid_labels(size, spacing, np.eye(3), [(1, (nx / 2, ny / 2, nz // 2), (6.0 * s, 4.0 * s, 5.0 * s), 20.0)],
                                      origin_lps=(-25.0, -25.0, -20.0))
            mask = sitk.GetArrayFromImage(labels)
            hu = np.where(mask > 0, 40, -800).astype(np.int16)
            write_series(folder / "dicom", hu, spacing, (-25.0, -25.0, -20.0), np.eye(3), study_date=d, patient_id=pid,
                         seed=k * 10 + d.month)
            save_nifti(labels, folder / "mask.nii.gz")
        (root / pid / "lesions.json").write_text(_json.dumps({"1": {"lesion_id": "L1", "organ": "lung", "nodal": False}}))
    (root / "clinical.csv").write_text("\n".join(clinical) + "\n")
    # One scanner frame for every scan, and too little anatomy to register (a lesion on a blank field).
    return write_run_config(root, "mini", tracking="scanner")


def write_run_config(root: Path, name: str, *, tracking: str) -> Path:
    """``root/config.yaml`` for an archive laid out as the sample data (``<patient>/<date>/dicom/``,
    ``mask.nii.gz``, ``<patient>/lesions.json``, ``clinical.csv``): RECIST, one in-process worker."""
    config = root / "config.yaml"
    config.write_text(
        f"name: {name}\n"
        "dataset:\n"
        "  root: .\n"
        '  mask: "{patient_id}/{study_date}/mask.nii.gz"\n'
        '  lesion_metadata: "{patient_id}/lesions.json"\n'
        "  clinical: clinical.csv\n"
        "output_dir: out\n"
        "criteria: [recist]\n"
        "executor: {kind: local, workers: 1}\n"
        f"tracking: {{method: {tracking}}}\n"
    )
    return config


#: Value representations that can hold an arbitrary short marker word (dates, numbers, ages, UIDs cannot).
_MARKER_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"})
#: Sequences given an item of marked Basic-Profile attributes (the first one is what the SEG/SR copy from).
_MARKED_SEQUENCES = ("ContributingEquipmentSequence", "RequestAttributesSequence", "OtherPatientIDsSequence",
                     "ReferencedPerformedProcedureStepSequence", "ProcedureCodeSequence")


def basic_profile_text_keywords() -> list[str]:
    """Keywords of PS3.15 Table E.1-1 (the edition pipelines.outputs.privacy applies) whose VR holds a marker word."""
    from pydicom.datadict import dictionary_VR, keyword_for_tag

    from pipelines.outputs.privacy import _profile

    single, _, _ = _profile()
    keywords = []
    for tag in sorted(single):
        keyword = keyword_for_tag(tag)
        if keyword and dictionary_VR(tag) in _MARKER_VRS and not keyword.endswith("Trial"):
            keywords.append(keyword)
    return keywords


def write_marker_archive(root: Path, *, n_patients: int = 2) -> tuple[Path, dict[str, str]]:
    """The mini archive with a unique marker word in every Basic-Profile text attribute, top level and
    inside nested sequences, and in a private attribute: (config path, marker -> where it was put).

    PatientID stays the archive's (MINI01...), the key the run's outputs show unless it pseudonymises.
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    config = write_mini_archive(root, n_patients=n_patients)
    # PatientSex is an enumerated value (M, F, O) that highdicom checks: it holds F, and must come out empty.
    keywords = [k for k in basic_profile_text_keywords() if k not in ("PatientID", "PatientSex")]
    markers: dict[str, str] = {}

    def marker(where: str) -> str:
        word = f"ZQMK{len(markers):04d}"
        markers[word] = where
        return word

    # One marker per attribute and place, the same in every file (a header value is per study, not per slice).
    top = {k: marker(k) for k in keywords}
    nested = {s: {k: marker(f"{s}/{k}") for k in keywords} for s in _MARKED_SEQUENCES}
    private = marker("private (0011,1001)")
    given_name = marker("PatientName (given name)")
    for f in sorted(root.rglob("dicom/*")):
        ds = pydicom.dcmread(f)
        for k, word in top.items():
            setattr(ds, k, word)
        ds.PatientName = f"{top['PatientName']}^{given_name}"
        ds.PatientSex = "F"
        for s, words in nested.items():
            item = Dataset()
            for k, word in words.items():
                setattr(item, k, word)
            setattr(ds, s, Sequence([item]))
        block = ds.private_block(0x0011, "TUMOR RESPONSE TEST", create=True)
        block.add_new(0x01, "LO", private)
        ds.save_as(f, enforce_file_format=True)
    return config, markers
