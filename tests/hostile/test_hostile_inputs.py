"""Hostile inputs (issue 8): each one alone gets the project's error naming the file and the reason;
inside a batch it fails only its own time point (or is skipped with its reason) and the rest completes.

The corpus is made at test time from a small generated archive, so every case has a known origin.
"""

from __future__ import annotations

import csv
import shutil
import struct
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from imaging.io import ImagingError, load_label_map, load_nifti, load_series, read_header, scan_archive
from pipelines.cli import app
from tests.data_factory import write_mini_archive

VICTIM = ("MINI02", "2024-02-20")  # the time point each DICOM case is planted in


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return write_mini_archive(tmp_path_factory.mktemp("clean")).parent


def _slice(root: Path) -> Path:
    """A middle slice of the victim series (by position, so its loss leaves a gap)."""
    files = sorted((root / VICTIM[0] / VICTIM[1] / "dicom").iterdir())
    return sorted(files, key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))[7]


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:700])


def _zero(p: Path) -> None:
    extra = p.with_name("empty.dcm")
    extra.write_bytes(b"")


def _not_dicom(p: Path) -> None:
    p.with_name("notes.dcm").write_text("this is a text file with a .dcm name\n")


def _short_pixels(p: Path) -> None:
    ds = pydicom.dcmread(p)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(p)


def _bad_sequence_length(p: Path) -> None:
    # A sequence (SQ) element whose explicit length runs past the end of the file.
    ds = pydicom.dcmread(p)
    item = pydicom.Dataset()
    item.CodeValue = "X"
    ds.ReferencedImageSequence = [item]
    ds.save_as(p)
    raw = bytearray(p.read_bytes())
    tag = struct.pack("<HH", 0x0008, 0x1140) + b"SQ\x00\x00"
    at = raw.index(tag) + len(tag)
    raw[at:at + 4] = struct.pack("<I", 0x7FFFFFF0)
    p.write_bytes(bytes(raw))


def _wrong_vr(p: Path) -> None:
    # Rows (0028,0010) re-labelled as a decimal string holding text: a header no reader can use.
    raw = bytearray(p.read_bytes())
    element = struct.pack("<HH", 0x0028, 0x0010) + b"US" + struct.pack("<H", 2)
    at = raw.index(element)
    raw[at + 4:at + 6] = b"DS"
    raw[at + 8:at + 10] = b"ab"
    p.write_bytes(bytes(raw))


# case -> (how to plant it, does the time point fail in a batch?, what the error/skip must mention)
DICOM_CASES = {
    "truncated file": (_truncate, True, None),
    "zero-byte file": (_zero, False, "empty.dcm"),
    "non-DICOM file with .dcm": (_not_dicom, False, "notes.dcm"),
    "pixel data shorter than the header says": (_short_pixels, True, None),
    "bad sequence length": (_bad_sequence_length, True, None),
    "wrong VR": (_wrong_vr, True, None),
}


@pytest.mark.parametrize("case", sorted(DICOM_CASES))
def test_hostile_dicom_alone_and_in_a_batch(archive, tmp_path, case):
    plant, fails, skipped_name = DICOM_CASES[case]
    root = tmp_path / "archive"
    shutil.copytree(archive, root)
    victim = _slice(root)
    plant(victim)
    series_dir = victim.parent

    # Alone: reading every file of the series gives the project's error (or a usable header), nothing else.
    for f in sorted(series_dir.iterdir()):
        try:
            read_header(f)
        except ImagingError as exc:
            assert f.name in str(exc), str(exc)
    if fails:
        with pytest.raises(ImagingError) as exc:
            load_series([f for f in series_dir.iterdir() if f.stat().st_size])
        assert str(exc.value)  # a reason, naming the file or the series
    scan = scan_archive(series_dir)
    if skipped_name:
        assert any(p.name == skipped_name and reason for p, reason in scan.skipped)

    # In a batch: the victim fails (or is fine, the junk skipped); everything else completes.
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(root / "config.yaml"), "--set", f"output_dir={out}"])
    assert result.exit_code == (1 if fails else 0), result.output
    failures = list(csv.DictReader((out / "failures.csv").open()))
    calls = {(r["patient_id"], r["date"]): r["response"] for r in csv.DictReader((out / "responses.csv").open())}
    if fails:
        assert [(f["patient_id"], f["date"]) for f in failures] == [VICTIM]
        assert calls[VICTIM] == "NE"
        assert "MINI02" in failures[0]["reason"] and VICTIM[1] in failures[0]["reason"]
    else:
        assert failures == []
        assert calls[VICTIM] == "PD"
    assert calls[("MINI01", "2024-02-20")] == "PR" and calls[("MINI02", "2024-04-10")] == "PD"


def test_corrupt_nifti_header_and_wrong_size_label_map(archive, tmp_path):
    root = tmp_path / "archive"
    shutil.copytree(archive, root)
    mask = root / VICTIM[0] / VICTIM[1] / "mask.nii.gz"
    import gzip

    raw = bytearray(gzip.decompress(mask.read_bytes()))
    raw[40:42] = struct.pack("<h", 9)  # dim[0], the number of dimensions, must be 1..7
    mask.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(ImagingError, match="mask.nii.gz"):
        load_nifti(mask)

    other = root / "MINI01" / "2024-02-20" / "mask.nii.gz"
    import numpy as np
    import SimpleITK as sitk

    small = sitk.GetImageFromArray(np.ones((4, 5, 6), dtype=np.uint8))
    small.SetOrigin((500.0, 500.0, 500.0))  # far from the image: no overlap
    sitk.WriteImage(small, str(other))
    image = load_series(sorted((root / "MINI01" / "2024-02-20" / "dicom").iterdir()))
    with pytest.raises(ImagingError, match="does not overlap"):
        load_label_map(other, image)

    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(root / "config.yaml"), "--set", f"output_dir={out}"])
    assert result.exit_code == 1
    failures = {(f["patient_id"], f["date"]): f["reason"] for f in csv.DictReader((out / "failures.csv").open())}
    assert set(failures) == {VICTIM, ("MINI01", "2024-02-20")}
    assert all("mask.nii.gz" in reason for reason in failures.values())
    calls = {(r["patient_id"], r["date"]): r["response"] for r in csv.DictReader((out / "responses.csv").open())}
    assert calls[("MINI01", "2024-04-10")] == "PR" and calls[("MINI02", "2024-04-10")] == "PD"
