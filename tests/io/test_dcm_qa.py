"""Real vendor files from dcm2niix's QA corpora, against dcm2niix's reference conversions.

The series under ``tests/io/data/dcm_qa/`` (provenance, commits and licences
in its README.md) are loaded the way an archive is: :func:`scan_archive`,
:func:`group_series`, then :func:`read_series` per volume. Each volume's grid
must place every corner voxel within 0.01 mm of dcm2niix's, and hold the same
values. dcm2niix writes RAS NIfTI; its affine is turned into LPS once, here,
with nibabel (x and y negated). dcm2niix writes the stored values with
scl_slope/scl_inter; nibabel applies them, so both sides are compared as
modality values.

- Siemens mosaics (``dcm_qa_mosaic`` axial oblique, ``dcm_qa`` sagittal):
  each mosaic file is one volume of the 4-D series, in the order of
  dcm2niix's 4-D volumes.
- The GE head CT of ``dcm_qa_ct`` (gantry tilt 18.5 degrees and slice spacings
  of 4.0, 1.08 and 7.0 mm): resampled onto the same regular slice grid as
  dcm2niix's equidistant conversion (``_Tilt_Eq``). Its in-plane lattice is
  anchored differently (the project's tilt policy keeps the lattice of the
  slice drifting least, dcm2niix that of the first slice): the slice planes
  and the row direction agree within 0.01 mm, the column lattice is a
  sub-pixel translate, and the values are checked against the acquired pixels.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy import ndimage

from imaging.io import Geometry, LoadedVolume, group_series, read_series, scan_archive

DATA = Path(__file__).parent / "data" / "dcm_qa"
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
CORNER_TOLERANCE_MM = 0.01


def _affine_lps(g: Geometry) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = g.direction_matrix * np.asarray(g.spacing_mm)
    a[:3, 3] = g.origin_lps
    return a


def _corners(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    n = np.asarray(shape[:3]) - 1
    idx = np.array([[i, j, k, 1.0] for i in (0, n[0]) for j in (0, n[1]) for k in (0, n[2])])
    return (affine @ idx.T).T[:, :3]


def _corner_error_mm(ours: Geometry, ref_affine_lps: np.ndarray, ref_shape: tuple[int, ...]) -> float:
    """Largest distance from a corner voxel of either grid to the nearest corner of the other."""
    a, b = _corners(_affine_lps(ours), ours.size), _corners(ref_affine_lps, ref_shape)
    d = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    return float(max(d.min(axis=1).max(), d.min(axis=0).max()))


def _in_reference_order(loaded: LoadedVolume, ref_affine_lps: np.ndarray) -> np.ndarray:
    """Our voxel values (x, y, z) permuted/flipped onto the reference's voxel axes (grids must coincide)."""
    m = np.linalg.inv(ref_affine_lps) @ _affine_lps(loaded.geometry)
    p = np.round(m[:3, :3])
    assert np.abs(m[:3, :3] - p).max() < 1e-3, f"index axes are not a permutation of the reference's: {m[:3, :3]}"
    arr = sitk.GetArrayFromImage(loaded.image).transpose(2, 1, 0).astype(np.float64)
    axes = [int(np.argmax(np.abs(p[:, j]))) for j in range(3)]
    for j in range(3):
        if p[axes[j], j] < 0:
            arr = np.flip(arr, axis=j)
    return np.transpose(arr, np.argsort(axes))


def _volumes(folder: Path) -> list:
    vols = group_series(scan_archive(folder).headers)
    assert vols, f"no volume found under {folder}"
    return vols


MOSAIC_CASES = [
    # (corpus folder, series folder, reference, volumes shipped, tiles)
    ("dcm_qa_mosaic", "In/ep2d_Asc_2", "Ref/2_ep2d_Asc.nii.gz", 2, 36),
    ("dcm_qa", "In/Orientation/sag/sagdesc36", "Ref/sag_desc_36sl_20.nii.gz", 2, 36),
]


@pytest.mark.parametrize(("corpus", "series", "reference", "n_volumes", "n_tiles"), MOSAIC_CASES)
def test_siemens_mosaic_matches_dcm2niix(corpus, series, reference, n_volumes, n_tiles):
    ref = nib.load(DATA / corpus / reference)
    ref_lps = RAS_TO_LPS @ ref.affine
    ref_values = np.asanyarray(ref.dataobj).astype(np.float64)  # scl_slope/scl_inter applied
    assert ref_values.shape[3] == n_volumes
    vols = _volumes(DATA / corpus / series)
    assert len(vols) == n_volumes
    # One volume per mosaic file, named in the order of dcm2niix's 4-D volumes.
    assert [v.volume_id.rsplit("#", 1)[-1] for v in vols] == [f"vol{k + 1}" for k in range(n_volumes)]
    for k, info in enumerate(vols):
        assert len(info.files) == 1 and info.n_slices == n_tiles
        loaded = read_series(info)
        assert loaded.geometry.size[2] == n_tiles
        assert _corner_error_mm(loaded.geometry, ref_lps, ref.shape) <= CORNER_TOLERANCE_MM
        # The crawl's header-only plan announces the grid the loader produces.
        assert info.geometry is not None and info.geometry.same_grid(loaded.geometry, tol_mm=1e-6)
        ours = _in_reference_order(loaded, ref_lps)
        np.testing.assert_array_equal(ours, ref_values[..., k])


def test_mosaic_corner_is_not_the_slice_position():
    """The mosaic's own ImagePositionPatient is the corner of the whole 384x384 image, far from any slice."""
    f = sorted((DATA / "dcm_qa_mosaic/In/ep2d_Asc_2").iterdir())[0]
    ds = pydicom.dcmread(f, stop_before_pixels=True)
    loaded = read_series([f])
    written = np.asarray([float(v) for v in ds.ImagePositionPatient])
    assert (ds.Rows, ds.Columns) == (384, 384)
    assert loaded.geometry.size == (64, 64, 36)
    assert np.linalg.norm(written - np.asarray(loaded.geometry.origin_lps)) > 100.0


@pytest.fixture(scope="module")
def ge_head_ct(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dcm_qa_ct")
    with tarfile.open(DATA / "dcm_qa_ct/In/GE.tar.xz") as tf:
        tf.extractall(folder, filter="data")
    return folder / "GE"


def test_ge_head_ct_variable_spacing_and_tilt_matches_dcm2niix_grid(ge_head_ct):
    (info,) = _volumes(ge_head_ct)
    assert info.n_slices == 28
    loaded = read_series(info)
    problems = " | ".join(loaded.problems)
    assert "variable slice spacing by design" in problems
    for spacing in ("4.002", "1.081", "6.999"):
        assert spacing in problems
    assert "gantry tilt 18.50 deg" in problems
    assert info.geometry is not None and info.geometry.same_grid(loaded.geometry, tol_mm=1e-6)

    reference = json.loads((DATA / "dcm_qa_ct/Ref/_2.geometry.json").read_text())["_2_Tilt_Eq_1.nii"]
    ref_lps = RAS_TO_LPS @ np.asarray(reference["affine_ras"])
    g = loaded.geometry
    assert list(g.size) == reference["shape"]  # 512 x 611 x 56: widened for the tilt, 2 x 28 slices
    m = np.linalg.inv(ref_lps) @ _affine_lps(g)
    # Same axes (y reversed in the RAS file), same spacings, same slice planes.
    np.testing.assert_allclose(np.abs(m[:3, :3]), np.eye(3), atol=1e-5)
    normal = g.direction_matrix[:, 2]
    ours_planes = np.sort(_corners(_affine_lps(g), g.size) @ normal)
    ref_planes = np.sort(_corners(ref_lps, tuple(reference["shape"])) @ normal)
    np.testing.assert_allclose(ours_planes, ref_planes, atol=CORNER_TOLERANCE_MM)
    row = g.direction_matrix[:, 0]
    np.testing.assert_allclose(
        np.sort(_corners(_affine_lps(g), g.size) @ row), np.sort(_corners(ref_lps, tuple(reference["shape"])) @ row),
        atol=CORNER_TOLERANCE_MM,
    )
    # Along the columns the two lattices differ by less than a pixel (the tilt anchor), never more.
    assert abs(m[0, 3]) < 1e-3 and abs(m[2, 3]) < 1e-3
    assert abs(m[1, 3] - round(m[1, 3])) < 0.5


def test_ge_head_ct_values_are_the_acquired_pixels(ge_head_ct):
    """The first and last acquired slices are output slices: sampled at the acquired pixels' centres, the
    output reproduces them (bilinear smoothing only); one pixel off, it would not."""
    (info,) = _volumes(ge_head_ct)
    loaded = read_series(info)
    g = loaded.geometry
    values = sitk.GetArrayFromImage(loaded.image).transpose(2, 1, 0).astype(np.float64)
    inverse = np.linalg.inv(_affine_lps(g))
    datasets = [pydicom.dcmread(f) for f in info.files]
    normal = g.direction_matrix[:, 2]
    datasets.sort(key=lambda d: float(np.dot(np.asarray(d.ImagePositionPatient, dtype=float), normal)))
    for ds, k_expected in ((datasets[0], 0), (datasets[-1], g.size[2] - 1)):
        acquired = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
        ipp = np.asarray(ds.ImagePositionPatient, dtype=float)
        dr, dc = (float(v) for v in ds.PixelSpacing)
        jj, ii = np.mgrid[0:ds.Rows:2, 0:ds.Columns:2]
        points = ipp + ii[..., None] * dc * iop[:3] + jj[..., None] * dr * iop[3:]
        index = points.reshape(-1, 3) @ inverse[:3, :3].T + inverse[:3, 3]
        np.testing.assert_allclose(index[:, 2], k_expected, atol=1e-3)
        index[:, 2] = k_expected  # on the output slice (within 1e-3 voxel): sample in-plane only
        truth = acquired[jj, ii].ravel()
        errors = {}
        for dy in (-1.0, 0.0, 1.0):
            shifted = index + np.array([0.0, dy, 0.0])
            sampled = ndimage.map_coordinates(values, shifted.T, order=1, mode="constant", cval=np.nan)
            inside = ~np.isnan(sampled)
            errors[dy] = float(np.mean(np.abs(sampled[inside] - truth[inside])))
        assert errors[0.0] < 10.0, errors
        assert errors[0.0] < 0.5 * min(errors[-1.0], errors[1.0]), errors
