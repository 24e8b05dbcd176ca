"""Series loading: ours vs dcm2niix vs SimpleITK on a 512 x 512 x 400 CT series, shuffled on disk.

The series (one uncompressed file per slice, realistic CT headers with a private
block, random file names, InstanceNumbers reversed) is generated once under
``benchmarks/.cache/`` from a known volume, so every output can be checked
voxel for voxel and its grid to the micrometre.

Stages (median of 3 runs, warm page cache, dirty pages flushed before each run):

- ``load+write .nii``: our ``load_series`` + ``save_nifti`` in this process vs
  ``dcm2niix -z n`` (the binary shipped by the ``dcm2niix`` PyPI wheel) vs
  SimpleITK's ``ImageSeriesReader`` (files sorted by GDCM) + ``WriteImage``;
- ``load``: the in-memory volume only, ours vs SimpleITK;
- ``convert CLI``: ``tumor-response convert`` as a fresh process (interpreter
  start-up and imports included) vs ``dcm2niix``;
- ``peak memory``: peak RSS above the process's baseline after imports,
  for load + write, measured in a fresh subprocess (VmHWM, else ``resource.getrusage``);
  the ratio is to the volume's size in memory.

Accuracy columns: largest absolute voxel difference from the truth (HU) for
the timing rows; for the geometry row, the largest distance between the
output's corner voxel centres and the truth's (mm).

Usage: ``python benchmarks/bench_load.py [--slices N]``; ``run()`` returns the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CACHE = REPO / "benchmarks" / ".cache"
PY = sys.executable

SPACING = (0.7421875, 0.7421875, 1.25)
ORIGIN = (-190.0, -205.5, -612.25)


def phantom(n_slices: int, size: int = 512, seed: int = 0) -> np.ndarray:
    """A CT-like volume in HU: body ellipse, lungs, bone ring, soft-tissue noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    cx = cy = (size - 1) / 2
    body = ((x - cx) / (0.42 * size)) ** 2 + ((y - cy) / (0.32 * size)) ** 2 <= 1
    lungs = (((x - cx - 0.17 * size) / (0.1 * size)) ** 2 + ((y - cy) / (0.18 * size)) ** 2 <= 1) | (
        ((x - cx + 0.17 * size) / (0.1 * size)) ** 2 + ((y - cy) / (0.18 * size)) ** 2 <= 1
    )
    ring = np.abs(np.hypot((x - cx) / 0.40, (y - cy) / 0.30) - size) < 0.02 * size
    base = np.full((size, size), -1000.0, np.float32)
    base[body] = 40.0
    base[lungs] = -850.0
    base[ring & body] = 700.0
    out = np.empty((n_slices, size, size), dtype=np.int16)
    for k in range(n_slices):
        noise = rng.normal(0.0, 12.0, size=(size, size)).astype(np.float32)
        out[k] = np.clip(np.round(base + noise * body + 30.0 * np.sin(k / 25.0) * body), -1024, 3071)
    return out


def ct_header(k: int, n: int, *, series_uid: str, study_uid: str, for_uid: str, size: int, patient: str = "BENCH001"):
    """A single-frame CT dataset with a realistic header (about 120 elements, a private block, a sequence)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sop = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", sop
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20240102"
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = "101500.000000"
    ds.AccessionNumber, ds.Modality, ds.Manufacturer = "A123456", "CT", "BENCH MEDICAL"
    ds.InstitutionName, ds.ReferringPhysicianName, ds.StationName = "Bench Hospital", "", "CT01"
    ds.StudyDescription, ds.SeriesDescription = "CT CHEST", "AX 1.25mm"
    ds.ManufacturerModelName = "Bench 128"
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", generate_uid()
    ds.ReferencedImageSequence = Sequence([ref])
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex, ds.PatientAge = "BENCH^ONE", patient, "19600101", "O", "064Y"
    ds.BodyPartExamined, ds.ScanOptions, ds.SliceThickness, ds.KVP = "CHEST", "HELICAL MODE", "1.25", "120"
    ds.DataCollectionDiameter, ds.SoftwareVersions, ds.ProtocolName = "500", "1.0", "Chest"
    ds.ReconstructionDiameter, ds.DistanceSourceToDetector, ds.DistanceSourceToPatient = "380", "946", "541"
    ds.GantryDetectorTilt, ds.TableHeight, ds.RotationDirection = "0", "160", "CW"
    ds.ExposureTime, ds.XRayTubeCurrent, ds.Exposure = "500", "250", "7"
    ds.FilterType, ds.GeneratorPower, ds.FocalSpots = "BODY FILTER", "30000", "0.7"
    ds.ConvolutionKernel, ds.PatientPosition, ds.SpiralPitchFactor = "STANDARD", "FFS", 0.984
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.StudyID, ds.SeriesNumber, ds.AcquisitionNumber, ds.InstanceNumber = "1", 3, 1, n - k
    z = ORIGIN[2] + k * SPACING[2]
    ds.ImagePositionPatient = [f"{ORIGIN[0]:.6f}", f"{ORIGIN[1]:.6f}", f"{z:.6f}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator, ds.SliceLocation = for_uid, "SN", f"{z:.3f}"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.PixelSpacing = [f"{SPACING[1]:.7f}", f"{SPACING[0]:.7f}"]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelPaddingValue = -2000
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    block = ds.private_block(0x0019, "BENCH PRIVATE", create=True)
    for e in range(0x10, 0x40):
        block.add_new(e, "LO", f"private value {e}")
    return ds


def write_series(folder: Path, volume: np.ndarray, seed: int = 1) -> list[Path]:
    """One file per slice, random names, stored = HU + 1024 as signed 16 bit."""
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    n, size = volume.shape[0], volume.shape[1]
    series_uid, study_uid, for_uid = generate_uid(), generate_uid(), generate_uid()
    rng = random.Random(seed)
    names = [f"{rng.getrandbits(64):016x}" for _ in range(n)]
    paths = []
    for k in range(n):
        ds = ct_header(k, n, series_uid=series_uid, study_uid=study_uid, for_uid=for_uid, size=size)
        ds.PixelData = (volume[k].astype(np.int32) + 1024).astype(np.int16).tobytes()
        path = folder / names[k]
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def cached_series(n_slices: int) -> tuple[Path, np.ndarray]:
    folder = CACHE / f"ct512x512x{n_slices}"
    truth_file = CACHE / f"ct512x512x{n_slices}.npy"
    done = CACHE / f"ct512x512x{n_slices}.complete"
    if not done.is_file() or not truth_file.is_file():
        shutil.rmtree(folder, ignore_errors=True)
        print(f"generating {folder} (once) ...", file=sys.stderr)
        volume = phantom(n_slices)
        write_series(folder, volume)
        np.save(truth_file, volume)
        done.write_text("ok")
    return folder, np.load(truth_file, mmap_mode="r")


def _warm(folder: Path) -> None:
    for p in folder.iterdir():
        with open(p, "rb") as fh:
            while fh.read(1 << 22):
                pass


def _median_time(fn, repeats: int = 3, before=None) -> float:
    """Median wall time of ``fn``; ``before`` (untimed) resets the stage, then dirty pages are flushed.

    Flushing before every run puts each contender in front of the same, empty,
    write-back queue: otherwise whoever runs after a large write pays for it.
    """
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        os.sync()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _remove(*paths: Path) -> None:
    for p in paths:
        if p.is_dir():
            for q in p.iterdir():
                q.unlink()
        elif p.exists():
            p.unlink()


def _row(**row) -> dict:
    """A result row, floats rounded to what a 2-core shared machine can resolve."""
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}


def _dcm2niix() -> str | None:
    exe = shutil.which("dcm2niix", path=str(Path(PY).parent)) or shutil.which("dcm2niix")
    return exe


def _errors(path: Path, truth: np.ndarray) -> tuple[float, float]:
    """(max |voxel - truth| in HU, max corner distance from the truth grid in mm) of a NIfTI output."""
    import SimpleITK as sitk

    from imaging.io import Geometry, load_nifti

    # Peers choose their own axis order (dcm2niix flips the rows): compare in the truth's (LPS) layout.
    image = sitk.DICOMOrient(load_nifti(path), "LPS")
    g = Geometry.of(image)
    n = truth.shape
    truth_geom = Geometry(size=(n[2], n[1], n[0]), spacing_mm=SPACING, origin_lps=ORIGIN, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    if g.size != truth_geom.size:
        return float("inf"), float("inf")
    arr = sitk.GetArrayViewFromImage(image)
    err = max(int(np.max(np.abs(arr[k].astype(np.int32) - truth[k]))) for k in range(n[0]))
    corners = float(np.max(np.linalg.norm(g.corners_lps() - truth_geom.corners_lps(), axis=1)))
    return float(err), corners


_MEMORY_SCRIPT = r"""
import resource, sys, json
sys.path.insert(0, {repo!r})
import numpy, SimpleITK, pydicom
from pathlib import Path
from imaging.io import load_series, save_nifti

def high_water_kb():
    # VmHWM belongs to this process image; ru_maxrss would carry the parent's peak across fork+exec.
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

base = high_water_kb()
image = load_series(sorted(Path({folder!r}).iterdir()))
save_nifti(image, {out!r})
peak = high_water_kb()
print(json.dumps({{"base_kb": base, "peak_kb": peak}}))
"""

_CHILD_RSS = r"""
import resource, subprocess, sys, json
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(json.dumps({"peak_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def run(n_slices: int = 400, repeats: int = 3) -> list[dict]:
    import SimpleITK as sitk

    from imaging.io import load_series, save_nifti

    folder, truth = cached_series(n_slices)
    case = f"CT 512x512x{n_slices}, uncompressed, shuffled names"
    volume_mb = truth.nbytes / 2**20
    files = sorted(folder.iterdir())
    _warm(folder)
    rows: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="bench_load_"))
    try:
        ours_out = work / "ours.nii"

        def ours_load_write() -> None:
            save_nifti(load_series(files), ours_out)

        ours_load_write()  # warm-up (imports, page cache)
        ours_s = _median_time(ours_load_write, repeats, before=lambda: _remove(ours_out))
        ours_err, ours_geo = _errors(ours_out, truth)
        ours_load_s = _median_time(lambda: load_series(files), repeats)

        def sitk_read() -> sitk.Image:
            names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(names)
            return reader.Execute()

        sitk_out = work / "sitk.nii"
        sitk_s = _median_time(lambda: sitk.WriteImage(sitk_read(), str(sitk_out)), repeats, before=lambda: _remove(sitk_out))
        sitk_err, sitk_geo = _errors(sitk_out, truth)
        sitk_load_s = _median_time(sitk_read, repeats)

        rows.append(_row(stage="load", case=case, ours_s=ours_load_s, peer="SimpleITK ImageSeriesReader (GDCM sort)",
                         peer_s=sitk_load_s, ratio=ours_load_s / sitk_load_s, ours_accuracy=ours_err,
                         peer_accuracy=sitk_err, accuracy_unit="max |voxel - truth| HU"))
        rows.append(_row(stage="load+write .nii", case=case, ours_s=ours_s, peer="SimpleITK ImageSeriesReader + WriteImage",
                         peer_s=sitk_s, ratio=ours_s / sitk_s, ours_accuracy=ours_err, peer_accuracy=sitk_err,
                         accuracy_unit="max |voxel - truth| HU"))

        exe = _dcm2niix()
        if exe is None:
            print("dcm2niix not found: pip install dcm2niix (benchmark-only peer)", file=sys.stderr)
        else:
            version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip().splitlines()
            peer = f"dcm2niix -z n ({version[-1] if version else '?'})"
            d_out = work / "d2n"
            d_out.mkdir()
            cmd = [exe, "-z", "n", "-o", str(d_out), "-f", "vol", str(folder)]

            def dcm2niix_run() -> None:
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

            dcm2niix_run()
            d_s = _median_time(dcm2niix_run, repeats, before=lambda: _remove(d_out))
            d_err, d_geo = _errors(next(d_out.glob("*.nii")), truth)
            rows.append(_row(stage="load+write .nii", case=case, ours_s=ours_s, peer=peer, peer_s=d_s, ratio=ours_s / d_s,
                             ours_accuracy=ours_err, peer_accuracy=d_err, accuracy_unit="max |voxel - truth| HU"))
            rows.append(_row(stage="geometry", case=case, ours_s=None, peer=peer, peer_s=None, ratio=None,
                             ours_accuracy=ours_geo, peer_accuracy=d_geo, accuracy_unit="max corner distance from truth, mm"))

            cli = [str(Path(PY).parent / "tumor-response"), "convert", str(folder), str(work / "cli.nii")]
            cli_s = _median_time(lambda: subprocess.run(cli, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                                 repeats, before=lambda: _remove(work / "cli.nii"))
            rows.append(_row(stage="convert CLI (fresh process)", case=case, ours_s=cli_s, peer=peer, peer_s=d_s,
                             ratio=cli_s / d_s, ours_accuracy=_errors(work / "cli.nii", truth)[0], peer_accuracy=d_err,
                             accuracy_unit="max |voxel - truth| HU"))

            child = subprocess.run([PY, "-c", _CHILD_RSS, *cmd], capture_output=True, text=True, check=True)
            d_peak_mb = json.loads(child.stdout)["peak_kb"] / 1024
        script = _MEMORY_SCRIPT.format(repo=str(REPO), folder=str(folder), out=str(work / "mem.nii"))
        mem = json.loads(subprocess.run([PY, "-c", script], capture_output=True, text=True, check=True).stdout)
        ours_peak_mb = (mem["peak_kb"] - mem["base_kb"]) / 1024
        rows.append(_row(stage="peak memory (load + write)", case=case, ours_s=None,
                         peer="dcm2niix (whole process)" if exe else "-", peer_s=None,
                         ratio=ours_peak_mb / volume_mb, ours_accuracy=round(ours_peak_mb, 1),
                         peer_accuracy=round(d_peak_mb, 1) if exe else None,
                         accuracy_unit=f"MB peak RSS above baseline (volume {volume_mb:.0f} MB; ratio = ours / volume)"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def print_table(rows: list[dict]) -> None:
    def fmt(v, spec=".3f"):
        return "-" if v is None else (format(v, spec) if isinstance(v, float) else str(v))

    header = ("stage", "ours_s", "peer", "peer_s", "ratio", "ours_acc", "peer_acc", "unit")
    print(" | ".join(header))
    for r in rows:
        print(" | ".join([r["stage"], fmt(r["ours_s"]), r["peer"], fmt(r["peer_s"]), fmt(r["ratio"], ".2f"),
                          fmt(r["ours_accuracy"], ".4g"), fmt(r["peer_accuracy"], ".4g"), r["accuracy_unit"]]))
    if rows:
        print(f"case: {rows[0]['case']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print_table(run(args.slices, args.repeats))


if __name__ == "__main__":
    main()
