"""`tumor-response convert`: DICOM folder, one slice, multi-frame file, NIfTI, NRRD -> NIfTI with the same grid and values."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from typer.testing import CliRunner

from imaging.io import Geometry, load_nifti, load_series
from pipelines.cli import app
from tests.data_factory import make_image, rotation_matrix
from tests.io.io_factory import enhanced_ct, save, volume_slices, write_datasets

HU = np.random.default_rng(21).integers(-1000, 2000, size=(5, 9, 10)).astype(np.int16)
GRID = dict(spacing_xyz=(0.7, 0.9, 2.0), origin_lps=(-20.0, 15.0, 60.0), direction=rotation_matrix(5.0, 0.0, 10.0))
runner = CliRunner()


def _convert(*args: str):
    return runner.invoke(app, ["convert", *map(str, args)])


def _same(path, reference_image=None, values=HU):
    out = load_nifti(path)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), values)
    if reference_image is not None:
        assert Geometry.of(out).same_grid(Geometry.of(reference_image), tol_mm=1e-3)
    return out


def test_convert_a_dicom_folder_and_a_single_slice(tmp_path):
    paths = write_datasets(tmp_path / "series", volume_slices(HU, **GRID), nested=True)
    reference = load_series(paths)
    result = _convert(tmp_path / "series", tmp_path / "out.nii.gz", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["size"] == [10, 9, 5] and record["problems"] == []
    _same(tmp_path / "out.nii.gz", reference)
    # One file of the series brings the rest of its series from its folder.
    flat = write_datasets(tmp_path / "flat", volume_slices(HU, **GRID))
    result = _convert(flat[0], tmp_path / "one.nii")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout
    _same(tmp_path / "one.nii", reference)


def test_convert_a_multiframe_file(tmp_path):
    path = save(enhanced_ct(HU, **{k: v for k, v in GRID.items()}), tmp_path / "mf.dcm")
    result = _convert(path, tmp_path / "mf.nii.gz")
    assert result.exit_code == 0, result.output
    out = _same(tmp_path / "mf.nii.gz")
    np.testing.assert_allclose(Geometry.of(out).origin_lps, GRID["origin_lps"], atol=1e-3)


def test_convert_a_folder_with_two_volumes_needs_a_choice(tmp_path):
    a = volume_slices(HU, **GRID, series_uid="1.2.826.0.1.501", extra={"EchoNumbers": 1})
    b = volume_slices(HU + 5, **GRID, series_uid="1.2.826.0.1.501", study_uid=a[0].StudyInstanceUID, extra={"EchoNumbers": 2})
    write_datasets(tmp_path / "mixed", a + b)
    result = _convert(tmp_path / "mixed", tmp_path / "x.nii.gz")
    assert result.exit_code == 1 and "holds 2 volumes" in result.output and "#echo2" in result.output
    result = _convert(tmp_path / "mixed", tmp_path / "x.nii.gz", "--volume", "echo2")
    assert result.exit_code == 0, result.output
    _same(tmp_path / "x.nii.gz", values=HU + 5)


def test_convert_nifti_and_nrrd(tmp_path):
    data = np.arange(3 * 4 * 5 * 2, dtype=np.int16).reshape(3, 4, 5, 2)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), tmp_path / "dyn.nii.gz")
    result = _convert(tmp_path / "dyn.nii.gz", tmp_path / "v.nii.gz")
    assert result.exit_code == 1 and "volume_index" in result.output
    result = _convert(tmp_path / "dyn.nii.gz", tmp_path / "v.nii.gz", "--volume-index", "1")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(sitk.GetArrayFromImage(load_nifti(tmp_path / "v.nii.gz")), data[..., 1].T)

    image = make_image(HU, GRID["spacing_xyz"], GRID["origin_lps"], GRID["direction"])
    sitk.WriteImage(image, str(tmp_path / "in.nrrd"))
    result = _convert(tmp_path / "in.nrrd", tmp_path / "from_nrrd.nii.gz")
    assert result.exit_code == 0, result.output
    _same(tmp_path / "from_nrrd.nii.gz", image)


def test_convert_reports_what_is_wrong(tmp_path):
    (tmp_path / "empty").mkdir()
    result = _convert(tmp_path / "empty", tmp_path / "x.nii.gz")
    assert result.exit_code == 1 and "no image volume" in result.output
    (tmp_path / "notes.txt").write_text("hello")
    result = _convert(tmp_path / "notes.txt", tmp_path / "x.nii.gz")
    assert result.exit_code == 1 and "notes.txt" in result.output
