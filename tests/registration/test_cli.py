"""`tumor-response register FIXED MOVING --out T.tfm [--json]`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from imaging.io import save_nifti
from imaging.registration import load_quality, load_transform, target_registration_error
from pipelines.cli import app
from tests.registration.factory import moved, rigid, textured_volume

runner = CliRunner()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("register")
    volume = textured_volume()
    motion = rigid((1.0, 0.5, 3.0), (2.0, -3.0, 1.5))
    save_nifti(volume, root / "fixed.nii.gz")
    sitk.WriteImage(moved(volume, motion), str(root / "moving.nrrd"))
    return root, motion, volume


def test_json_output_and_files(pair):
    root, motion, volume = pair
    out = root / "T.tfm"
    result = runner.invoke(app, ["register", str(root / "fixed.nii.gz"), str(root / "moving.nrrd"), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["status"] == "ok" and payload["transform_file"] == str(out)
    assert payload["config"]["stages"] == ["rigid", "affine"]
    t = load_transform(out)
    pts = np.array([[0.0, 0.0, 0.0], [40.0, 30.0, 20.0], [-50.0, 20.0, -30.0]])
    assert target_registration_error(t, motion, pts).max() < 0.5  # mm, 2 x 2 x 4 mm voxels
    assert load_quality(out)["status"] == "ok"


def test_table_output_rigid_only(pair):
    root, _, _ = pair
    out = root / "rigid.h5"
    result = runner.invoke(app, ["register", str(root / "fixed.nii.gz"), str(root / "moving.nrrd"), "--out", str(out), "--stages", "rigid"])
    assert result.exit_code == 0, result.output
    assert "status" in result.stdout and "ok" in result.stdout
    assert load_transform(out).GetName() == "Euler3DTransform"


def test_failed_registration_exits_1_and_says_why(pair):
    root, _, volume = pair
    rng = np.random.default_rng(1)
    noise = sitk.GetImageFromArray(rng.uniform(-1000, 1000, sitk.GetArrayViewFromImage(volume).shape).astype(np.float32))
    noise.CopyInformation(volume)
    save_nifti(noise, root / "noise.nii.gz")
    out = root / "noise.tfm"
    result = runner.invoke(app, ["register", str(root / "fixed.nii.gz"), str(root / "noise.nii.gz"), "--out", str(out), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "failed"
    assert "too little shared information" in result.stderr
    assert load_quality(out)["status"] == "failed"  # written, and marked


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.nii.gz", "moving.nrrd", "--out", "T.tfm"], "no such file"),
        (["fixed.nii.gz", "moving.nrrd", "--out", "T.png"], "use a .tfm or .h5"),
        (["fixed.nii.gz", "moving.nrrd", "--out", "T.tfm", "--stages", "affine,rigid"], "subsequence"),
    ],
)
def test_input_errors_exit_2(pair, args, message):
    root, _, _ = pair
    args = [str(root / a) if a.endswith((".nii.gz", ".nrrd")) else a for a in args]
    args = [str(root / a) if a.startswith("T.") else a for a in args]
    result = runner.invoke(app, ["register", *args])
    assert result.exit_code == 2
    assert message in result.stderr


@pytest.mark.sample_data
def test_dicom_folders(sample_root, tmp_path):
    """P002 (25 MR slices): baseline and a follow-up straight from their DICOM folders."""
    out = tmp_path / "T.tfm"
    result = runner.invoke(app, [
        "register", str(sample_root / "P002/2024-03-25/dicom"), str(sample_root / "P002/2024-06-17/dicom"),
        "--out", str(out), "--json", "--stages", "rigid",
        "--fixed-lesions", str(sample_root / "P002/2024-03-25/mask.nii.gz"),
        "--moving-lesions", str(sample_root / "P002/2024-06-17/mask.nii.gz"),
    ])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["status"] == "ok"
    assert 0.5 < payload["rotation_deg"] < 3.0  # truth: (1.12, -0.12, -1.28) deg about the grid axes
