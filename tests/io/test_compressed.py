"""Compressed transfer syntaxes load to the same values as the uncompressed originals.

Lossless syntaxes (RLE, JPEG 2000 lossless, JPEG-LS lossless, JPEG lossless
process 14) must reproduce every voxel exactly; JPEG baseline (8-bit, lossy)
within a stated tolerance. Encoders: pydicom's (RLE natively, JPEG 2000 via
pylibjpeg-openjpeg, JPEG-LS via its available plugin) and GDCM for the JPEG
processes pydicom cannot encode.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from imaging.io import Geometry, load_series, read_header
from tests.io.io_factory import enhanced_ct, save, volume_slices, write_datasets

SHAPE = (4, 32, 36)  # JPEG 2000 needs >= 32 pixels a side for its default 6 resolutions
GRID = dict(spacing_xyz=(0.75, 0.75, 2.0), origin_lps=(-5.0, 7.0, 30.0), direction=np.eye(3))


def _hu() -> np.ndarray:
    # Stored values stay within 12 bits (0..4095), as CT scanners write them.
    return np.random.default_rng(11).integers(-1000, 3000, size=SHAPE).astype(np.int16)


def _gdcm_transcode(src, dst, syntax_name: str) -> None:
    gdcm = pytest.importorskip("gdcm")
    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, syntax_name)))
    change.SetInput(reader.GetImage())
    if not change.Change():
        pytest.skip(f"GDCM cannot encode {syntax_name} here")
    writer = gdcm.ImageWriter()
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    writer.SetFileName(str(dst))
    assert writer.Write()


def _bits_12(slices):
    for ds in slices:
        ds.BitsStored, ds.HighBit = 12, 11
    return slices


@pytest.mark.parametrize(
    "syntax, uid",
    [
        ("rle", RLELossless),
        ("jpeg2000-lossless", JPEG2000Lossless),
        ("jpeg-ls-lossless", JPEGLSLossless),
        ("jpeg-lossless-p14", "1.2.840.10008.1.2.4.70"),
    ],
)
def test_lossless_syntaxes_load_to_the_same_volume(tmp_path, syntax, uid):
    hu = _hu()
    reference_paths = write_datasets(tmp_path / "plain", _bits_12(volume_slices(hu, **GRID)))
    reference = load_series(reference_paths)
    out = tmp_path / syntax
    out.mkdir()
    for i, src in enumerate(reference_paths):
        dst = out / f"slice{i}"
        if syntax == "jpeg-lossless-p14":
            _gdcm_transcode(src, dst, "JPEGLosslessProcess14_1")
        else:
            ds = pydicom.dcmread(src)
            try:
                ds.compress(uid)
            except (RuntimeError, NotImplementedError) as exc:  # encoder plugin absent on this machine
                pytest.skip(f"no {syntax} encoder: {exc}")
            ds.save_as(dst, enforce_file_format=True)
        assert read_header(dst).transfer_syntax_uid == str(uid)
        assert read_header(dst).pixel_data_offset is None  # encapsulated: decoded, not read raw
    image = load_series(sorted(out.iterdir()))
    assert Geometry.of(image).same_grid(Geometry.of(reference), tol_mm=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), hu)


def test_jpeg_baseline_8bit_loads_within_lossy_tolerance(tmp_path):
    # A smooth 8-bit MR-like volume: JPEG's lossy DCT keeps it to within a few grey levels.
    z, y, x = np.meshgrid(np.arange(SHAPE[0]), np.arange(32), np.arange(32), indexing="ij")
    mr = (120 + 80 * np.sin(x / 6.0) * np.cos(y / 7.0) + 5 * z).astype(np.uint8)
    slices = volume_slices(mr, **GRID, intercept=0.0, modality="MR", dtype=np.uint8)
    plain = write_datasets(tmp_path / "plain", slices)
    out = tmp_path / "baseline"
    out.mkdir()
    for i, src in enumerate(plain):
        _gdcm_transcode(src, out / f"s{i}", "JPEGBaselineProcess1")
    assert read_header(out / "s0").transfer_syntax_uid == "1.2.840.10008.1.2.4.50"
    values = sitk.GetArrayFromImage(load_series(sorted(out.iterdir()))).astype(float)
    error = np.abs(values - mr)
    # Lossy: mean error under 2 grey levels and no voxel off by more than 16 (of 255).
    assert error.mean() < 2.0 and error.max() <= 16, (error.mean(), error.max())


def test_compressed_enhanced_multiframe(tmp_path):
    hu = _hu()
    ds = enhanced_ct(hu, (0.75, 0.75, 2.0), (-5.0, 7.0, 30.0), np.eye(3))
    ds.BitsStored, ds.HighBit = 12, 11
    try:
        ds.compress(JPEG2000Lossless)
    except (RuntimeError, NotImplementedError) as exc:
        pytest.skip(f"no JPEG 2000 encoder: {exc}")
    path = save(ds, tmp_path / "enhanced_j2k.dcm")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(load_series([path])), hu)
