"""Vendor formats: Siemens mosaics, and slice spacing that varies by design versus missing slices.

Mosaics are the real files shipped for ``test_dcm_qa.py`` (provenance in
``tests/io/data/dcm_qa/README.md``), copied and edited with pydicom where a
test needs a header without one of its parts. Spacing cases are synthetic
series of known truth: a linear ramp along the slice normal, which linear
interpolation reproduces exactly, so resampled values are checked to the
rounding of the stored integers.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from imaging.io import GeometryError, group_series, read_header, read_series, scan_archive
from imaging.io.stack import classify_spacing, variable_spacing_grid
from tests.io.io_factory import volume_slices, write_datasets

DATA = Path(__file__).parent / "data" / "dcm_qa"
MOSAIC_DIR = DATA / "dcm_qa_mosaic" / "In" / "ep2d_Asc_2"
NY, NX = 6, 7


# ---------------------------------------------------------------------------------------------
# Siemens mosaic


def _mosaic_copy(tmp_path: Path, edit=None) -> Path:
    """A copy of the first mosaic of the shipped fMRI series, optionally edited (pydicom dataset in, out)."""
    src = sorted(MOSAIC_DIR.iterdir())[0]
    dst = tmp_path / src.name
    if edit is None:
        shutil.copy2(src, dst)
        return dst
    ds = pydicom.dcmread(src)
    edit(ds)
    ds.save_as(dst)
    return dst


def test_mosaic_tiles_are_the_slices_as_nibabel_places_them(tmp_path):
    """Independent check: nibabel's MosaicWrapper affine (voxel -> LPS) places the same 8 corners."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nibabel.nicom import dicomwrappers

    path = _mosaic_copy(tmp_path)
    wrapper = dicomwrappers.wrapper_from_data(pydicom.dcmread(path))
    assert wrapper.is_mosaic
    loaded = read_series([path])
    g = loaded.geometry
    assert g.size == (64, 64, 36)
    shape = wrapper.image_shape
    n = np.asarray(shape) - 1
    idx = np.array([[i, j, k, 1.0] for i in (0, n[0]) for j in (0, n[1]) for k in (0, n[2])])
    theirs = (wrapper.affine @ idx.T).T[:, :3]
    ours = g.corners_lps()
    d = np.linalg.norm(ours[:, None, :] - theirs[None, :, :], axis=2)
    assert d.min(axis=1).max() < 1e-3 and d.min(axis=0).max() < 1e-3
    # and the values: nibabel's (rows, columns, tiles) against ours (z, y, x)
    ours_values = sitk.GetArrayFromImage(loaded.image)
    theirs_values = np.asarray(wrapper.get_data())  # tiles in mosaic order
    # same tile order: nibabel's slice axis follows SliceNormalVector, and so does ours here
    np.testing.assert_array_equal(ours_values.transpose(1, 2, 0), theirs_values)


def test_mosaic_series_is_one_volume_per_file(tmp_path):
    for f in sorted(MOSAIC_DIR.iterdir()):
        shutil.copy2(f, tmp_path / f.name)
    vols = group_series(scan_archive(tmp_path).headers)
    assert [v.volume_id.rsplit("#", 1)[-1] for v in vols] == ["vol1", "vol2"]
    assert all(v.n_slices == 36 and v.geometry is not None and v.geometry.size == (64, 64, 36) for v in vols)
    assert all("one per file" in " ".join(v.problems) for v in vols)
    files = sorted(tmp_path.iterdir())
    with pytest.raises(GeometryError, match=r"2 volumes.*#vol1.*#vol2"):
        read_series(files)
    second = read_series(files, volume="vol2")
    assert second.geometry.same_grid(vols[1].geometry)
    assert np.array_equal(sitk.GetArrayFromImage(second.image), sitk.GetArrayFromImage(read_series(vols[1]).image))


def _drop_csa_image_header(ds: pydicom.Dataset) -> None:
    block = ds.private_block(0x0029, "SIEMENS CSA HEADER")
    del ds[block.get_tag(0x10)]


def test_mosaic_without_slice_normal_is_refused(tmp_path):
    path = _mosaic_copy(tmp_path, _drop_csa_image_header)
    assert "MOSAIC" in read_header(path).image_type
    with pytest.raises(GeometryError, match=rf"{path.name}.*without SliceNormalVector.*order of the tiles"):
        read_series([path])


def test_mosaic_without_tile_count_is_refused(tmp_path):
    def strip(ds: pydicom.Dataset) -> None:
        _drop_csa_image_header(ds)
        del ds[ds.private_block(0x0019, "SIEMENS MR HEADER").get_tag(0x0A)]

    path = _mosaic_copy(tmp_path, strip)
    with pytest.raises(GeometryError, match=rf"{path.name}.*MOSAIC but NumberOfImagesInMosaic.*\(0019,100A\)"):
        read_series([path])
    # The index says the same, without raising.
    (info,) = group_series([read_header(path)])
    assert info.geometry is None and any("NumberOfImagesInMosaic" in p for p in info.problems)


def test_mosaic_spacing_from_the_protocol_when_the_tag_is_absent(tmp_path):
    reference = read_series([_mosaic_copy(tmp_path)]).geometry

    def strip(ds: pydicom.Dataset) -> None:
        del ds.SpacingBetweenSlices

    other = tmp_path / "no_spacing"
    other.mkdir()
    geometry = read_series([_mosaic_copy(other, strip)]).geometry
    assert geometry.same_grid(reference, tol_mm=1e-4)
    np.testing.assert_allclose(geometry.spacing_mm[2], 3.6, atol=1e-4)


def test_mosaic_spacing_contradicting_the_protocol_is_refused(tmp_path):
    def wrong(ds: pydicom.Dataset) -> None:
        ds.SpacingBetweenSlices = "5.0"

    path = _mosaic_copy(tmp_path, wrong)
    with pytest.raises(GeometryError, match=r"SpacingBetweenSlices 5 mm disagrees with the protocol.*3\.6000 mm"):
        read_series([path])


# ---------------------------------------------------------------------------------------------
# slice spacing


def _ramp_series(folder: Path, z_mm: list[float]) -> list[Path]:
    """Axial slices at the given z (mm), values 3 * z + column index (HU), 0.5 mm pixels."""
    hu = np.stack([np.full((NY, NX), 3.0 * z) + np.arange(NX)[None, :] for z in z_mm]).astype(float)
    positions = [np.array([10.0, -20.0, z]) for z in z_mm]
    slices = volume_slices(np.round(hu), (0.5, 0.5, 1.0), positions[0], np.eye(3), positions=positions)
    return write_datasets(folder, slices, seed=3)


def test_variable_spacing_by_design_is_resampled_at_the_smallest_spacing(tmp_path):
    z = [0.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0]  # 6 x 2.5 mm, then 5 x 5 mm
    loaded = read_series(_ramp_series(tmp_path, z))
    g = loaded.geometry
    assert g.size == (NX, NY, 17)
    np.testing.assert_allclose(g.spacing_mm, (0.5, 0.5, 2.5), atol=1e-9)
    np.testing.assert_allclose(g.origin_lps, (10.0, -20.0, 0.0), atol=1e-9)
    (problem,) = [p for p in loaded.problems if "variable slice spacing" in p]
    assert "6 x 2.500 mm, 5 x 5.000 mm" in problem and "17 slices 2.5000 mm apart" in problem
    assert "linear interpolation" in problem
    values = sitk.GetArrayFromImage(loaded.image).astype(float)
    truth = 3.0 * (np.arange(17) * 2.5)[:, None, None] + np.arange(NX)[None, None, :]
    np.testing.assert_allclose(values, np.broadcast_to(truth, values.shape), atol=0.5 + 1e-6)
    # The index announces the same grid and the same problem.
    (info,) = group_series(scan_archive(tmp_path).headers)
    assert info.geometry == g and problem in info.problems and info.n_slices == len(z)


def test_variable_spacing_with_a_fine_transition_is_capped_at_twice_the_slices(tmp_path):
    """The GE head CT pattern: 4 mm, one 1.08 mm transition, 7 mm; 1.08 mm would make 4x the slices."""
    z = list(np.cumsum([0.0] + [4.0] * 5 + [1.08] + [7.0] * 6))
    loaded = read_series(_ramp_series(tmp_path, z))
    g = loaded.geometry
    n = len(z)
    assert g.size[2] == 2 * n
    np.testing.assert_allclose(g.spacing_mm[2], (z[-1] - z[0]) / (2 * n - 1), atol=1e-9)
    values = sitk.GetArrayFromImage(loaded.image).astype(float)
    # Linear between the acquired (rounded) values, then rounded: within 0.5 of the interpolated truth.
    along = np.interp(np.arange(2 * n) * g.spacing_mm[2], np.asarray(z) - z[0], np.round(3.0 * np.asarray(z)))
    truth = along[:, None, None] + np.arange(NX)[None, None, :]
    np.testing.assert_allclose(values, np.broadcast_to(truth, values.shape), atol=0.5 + 1e-6)
    assert any("twice the 13 acquired slices" in p and "1.080 mm" in p for p in loaded.problems)


def test_missing_slice_is_still_a_missing_slice(tmp_path):
    z = [0.0, 2.0, 4.0, 8.0, 10.0, 12.0, 14.0]  # z = 6 lost
    with pytest.raises(GeometryError, match=r"missing slice\(s\): gap of 4\.000 mm between positions 4\.000 and 8\.000"):
        read_series(_ramp_series(tmp_path, z))


def test_missing_slice_inside_a_variable_spacing_stack_is_still_an_error(tmp_path):
    z = [0.0, 2.5, 5.0, 7.5, 12.5, 15.0, 20.0, 25.0, 30.0]  # 10.0 lost from the 2.5 mm part
    with pytest.raises(GeometryError, match=r"missing slice\(s\): gap of 5\.000 mm between positions 7\.500 and 12\.500"):
        read_series(_ramp_series(tmp_path, z))


def test_irregular_spacing_is_refused_naming_the_spacings(tmp_path):
    z = [0.0, 2.0, 4.3, 6.1, 8.9, 10.0, 12.4]
    with pytest.raises(GeometryError, match=r"non-uniform slice spacing: \[1\.1, 1\.8, 2\.0, 2\.3, 2\.4, 2\.8\] mm"):
        read_series(_ramp_series(tmp_path, z))


@pytest.mark.parametrize(
    ("gaps", "holes", "by_design"),
    [
        ([4.002] * 13 + [1.081] + [6.999] * 13, [], True),  # dcm_qa_ct's GE head CT
        ([2.0] * 3 + [4.0] + [2.0] * 3, [3], False),  # one lost slice
        ([2.0] * 3 + [6.0] + [2.0] * 3, [3], False),  # two lost slices
        ([2.0] * 4 + [4.0], [4], False),  # lost at the end
        ([2.0] * 3 + [2.5] + [2.0] * 3, [], False),  # one odd gap: irregular
        ([4.0] * 5 + [20.0] + [7.0] * 5, [5], False),  # a transition too wide: slices lost
        ([2.5] * 6 + [5.0] * 5, [], True),  # runs of multiples: by design
        ([2.0] * 3 + [4.0] * 2 + [2.0] * 3, [3, 4], False),  # every other slice lost over a stretch
        ([5.0] * 5 + [2.5] * 4 + [5.0] * 5, [], True),  # a thin-slice zone inside a thick stack: by design
        ([2.0, 3.0], [], False),  # nothing repeated
        ([2.0, 2.3, 1.8, 2.8, 1.1, 2.4], [], False),  # jitter: no regular spacing to call a gap a hole
    ],
)
def test_classify_spacing(gaps, holes, by_design):
    pattern = classify_spacing(np.asarray(gaps))
    assert pattern.holes == holes
    assert pattern.by_design is by_design


def test_variable_spacing_grid_keeps_both_ends():
    n, spacing = variable_spacing_grid(np.array([2.5] * 6 + [5.0] * 5), 12)
    assert (n, spacing) == (17, 2.5)
    n, spacing = variable_spacing_grid(np.array([4.0] * 13 + [1.08] + [7.0] * 13), 28)
    assert n == 56 and spacing == pytest.approx((13 * 4.0 + 1.08 + 13 * 7.0) / 55)


def test_unlabelled_repeated_volumes_are_refused_as_4d(tmp_path):
    """Every position twice with different pixels and nothing to tell the volumes apart (as GE fMRI exports)."""
    z = [0.0, 2.0, 4.0, 6.0]
    hu = np.stack([np.full((NY, NX), v) for v in (1.0, 2.0, 3.0, 4.0)])
    positions = [np.array([0.0, 0.0, v]) for v in z]
    uid = pydicom.uid.generate_uid()
    study = pydicom.uid.generate_uid()
    first = volume_slices(hu, (1.0, 1.0, 2.0), positions[0], np.eye(3), positions=positions, series_uid=uid, study_uid=study)
    second = volume_slices(hu + 10, (1.0, 1.0, 2.0), positions[0], np.eye(3), positions=positions, series_uid=uid, study_uid=study)
    paths = write_datasets(tmp_path, first + second, seed=5)
    with pytest.raises(GeometryError, match=r"every one of the 4 positions holds 2 slices: 2 volumes of a 4-D series"):
        read_series(paths)
