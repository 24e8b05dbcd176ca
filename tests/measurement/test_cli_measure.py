"""`tumor-response measure IMAGE MASK [--json] [--snapshots DIR]`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from imaging.measurement import measure_lesions
from pipelines.cli import app
from tests.data_factory import ellipsoid_labels, make_image, rotation_matrix


def _synthetic(tmp_path: Path) -> tuple[Path, Path, sitk.Image]:
    direction = rotation_matrix(5.0, -3.0, 12.0)
    labels = ellipsoid_labels((60, 50, 10), (0.7, 0.7, 2.5), direction,
                              [(1, (20, 25, 5), (8.0, 5.0, 6.0), 20.0), (4, (45, 25, 5), (5.0, 4.0, 5.0), 0.0)])
    hu = np.where(sitk.GetArrayFromImage(labels) > 0, 40.0, -800.0).astype(np.float32)
    image = make_image(hu, labels.GetSpacing(), labels.GetOrigin(), direction)
    sitk.WriteImage(image, str(tmp_path / "scan.nrrd"))
    sitk.WriteImage(labels, str(tmp_path / "mask.nii.gz"))
    return tmp_path / "scan.nrrd", tmp_path / "mask.nii.gz", labels


def test_json_records_match_the_library(tmp_path):
    scan, mask, labels = _synthetic(tmp_path)
    result = CliRunner().invoke(app, ["measure", str(scan), str(mask), "--json", "--snapshots", str(tmp_path / "png")])
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    expected = [m.to_dict() for m in measure_lesions(labels)]
    assert [r["label"] for r in records] == [1, 4]
    for got, want in zip(records, expected):
        for key, value in want.items():
            # through NIfTI (float32 affine) and back: 1e-4 mm
            np.testing.assert_allclose(np.asarray(got[key], dtype=float), np.asarray(value, dtype=float), atol=1e-4, err_msg=key)
        assert Path(got["snapshot"]).is_file()


def test_table_lists_every_field(tmp_path):
    scan, mask, _ = _synthetic(tmp_path)
    result = CliRunner().invoke(app, ["measure", str(scan), str(mask), "--mode", "components", "--min-volume", "50"])
    assert result.exit_code == 0, result.output
    for field in ("long_axis_mm", "short_axis_ends_lps", "bidimensional_product_mm2", "max_3d_diameter_mm", "volume_mesh_mm3"):
        assert field in result.output
    assert result.output.count("lesion ") == 2


@pytest.mark.sample_data
def test_dicom_folder_and_nifti_give_the_same_records(sample_root: Path):
    tp = sample_root / "P003" / "2024-06-24"
    runner = CliRunner()
    from_dicom = runner.invoke(app, ["measure", str(tp / "dicom"), str(tp / "mask.nii.gz"), "--json"])
    from_nifti = runner.invoke(app, ["measure", str(tp / "image.nii.gz"), str(tp / "mask.nii.gz"), "--json"])
    assert from_dicom.exit_code == 0 and from_nifti.exit_code == 0, from_dicom.output + from_nifti.output
    a, b = json.loads(from_dicom.output), json.loads(from_nifti.output)
    assert [r["label"] for r in a] == [1, 2]
    for ra, rb in zip(a, b):
        assert ra["n_voxels"] == rb["n_voxels"]
        assert ra["long_axis_mm"] == pytest.approx(rb["long_axis_mm"], abs=1e-3)  # grids equal to 1e-6 mm


def test_input_errors_exit_2(tmp_path):
    scan, mask, _ = _synthetic(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["measure", str(tmp_path / "missing"), str(mask)])
    assert result.exit_code == 2 and "no such file or folder" in result.output
    result = runner.invoke(app, ["measure", str(scan), str(mask), "--mode", "blobs"])
    assert result.exit_code == 2 and "--mode" in result.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["measure", str(tmp_path / "empty"), str(mask)])
    assert result.exit_code == 2 and "no DICOM image series" in result.output
