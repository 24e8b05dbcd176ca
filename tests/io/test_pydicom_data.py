"""Real files: every file of the ``pydicom-data`` package loads, or raises this project's error with a reason.

"Loads" means: the header reads; where the file holds pixel data, the pixels
decode (whatever the transfer syntax); where it is a slice or frames of a
volume, it assembles. Any failure must be an :class:`ImagingError` whose
message names the file or series and says why; anything else fails the test.
Lossless pairs (the same image stored uncompressed and compressed) must decode
to identical values.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from imaging.io import (
    DicomFileError,
    ImagingError,
    group_series,
    read_header,
    read_pixels,
    read_series,
    scan_archive,
)

data_store = pytest.importorskip("data_store", reason="pydicom-data is a test dependency")
DATA = Path(data_store.__path__[0]) / "data"
FILES = sorted(p.name for p in DATA.iterdir() if p.is_file()) if DATA.is_dir() else []



def _outcome(path: Path) -> dict:
    """What the loaders make of one file; raises only if something other than ImagingError escapes."""
    out: dict = {"header": None, "pixels": None, "volume": None, "errors": []}
    try:
        header = read_header(path)
    except DicomFileError as exc:
        assert str(path) in str(exc), f"error does not name the file: {exc}"
        out["errors"].append(str(exc))
        return out
    out["header"] = header
    if header.has_pixel_data:
        try:
            pixels = read_pixels(path)
        except DicomFileError as exc:
            assert str(path) in str(exc), f"error does not name the file: {exc}"
            out["errors"].append(str(exc))
        else:
            assert pixels.size > 0
            assert pixels.shape[-2:] == (header.rows, header.columns) or pixels.shape[-3:-1] == (header.rows, header.columns)
            out["pixels"] = pixels
    if header.is_image:
        try:
            out["volume"] = read_series([path])
        except ImagingError as exc:
            assert path.name in str(exc) or str(path.parent) in str(exc), f"error names neither file nor series: {exc}"
            out["errors"].append(str(exc))
    else:
        assert header.not_image_reason  # skipped by the crawl with this reason
    return out


@pytest.mark.parametrize("name", FILES)
def test_every_pydicom_data_file_loads_or_fails_with_a_reason(name):
    out = _outcome(DATA / name)
    for message in out["errors"]:
        assert ": " in message and len(message) > len(str(DATA / name)) + 5  # a reason after the name
    if out["volume"] is not None:
        g = out["volume"].geometry
        assert all(s > 0 for s in g.spacing_mm) and np.isclose(abs(np.linalg.det(g.direction_matrix)), 1.0, atol=1e-3)


def test_the_corpus_is_there():
    assert len(FILES) >= 60


@pytest.mark.parametrize(
    "compressed, plain",
    [
        ("693_J2KR.dcm", "693_UNCR.dcm"),
        ("MR2_J2KR.dcm", "MR2_UNCR.dcm"),
        ("RG1_J2KR.dcm", "RG1_UNCR.dcm"),
        ("RG3_J2KR.dcm", "RG3_UNCR.dcm"),
        ("emri_small_RLE.dcm", "emri_small.dcm"),
        ("emri_small_big_endian.dcm", "emri_small.dcm"),
        ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm"),
        ("emri_small_jpeg_ls_lossless.dcm", "emri_small.dcm"),
        # Its encapsulated pixel data lacks the sequence delimiter; the frames themselves are whole.
        ("emri_small_jpeg_2k_lossless_too_short.dcm", "emri_small.dcm"),
        ("OBXXXX1A_rle.dcm", "OBXXXX1A.dcm"),
    ],
)
def test_lossless_pairs_decode_identically(compressed, plain):
    a, b = read_pixels(DATA / compressed), read_pixels(DATA / plain)
    np.testing.assert_array_equal(a.astype(np.int64), b.astype(np.int64))


def test_ct_volume_loads_with_hounsfield_units():
    loaded = read_series([DATA / "693_UNCR.dcm"])
    assert loaded.geometry.size[2] == 1
    values = loaded.image
    import SimpleITK as sitk

    arr = sitk.GetArrayViewFromImage(values)
    assert arr.min() >= -3024 and arr.max() <= 4095  # rescaled to HU (-3024: the scanner's padding outside the FOV)


def test_crawling_the_whole_corpus_never_stops():
    scan = scan_archive(DATA)
    assert scan.n_files == len(FILES)
    assert len(scan.headers) + len(scan.skipped) == scan.n_files
    for path, reason in scan.skipped:
        assert reason, path
    for volume in group_series(scan.headers):
        try:
            read_series(volume)
        except ImagingError as exc:
            assert volume.volume_id in str(exc) or any(str(f) in str(exc) for f in volume.files), exc


def test_crawling_pydicoms_own_test_files_never_stops():
    """A messier corpus: DICOMDIRs, deflated and big-endian files, broken headers, SR, RT, SEG."""
    import pydicom

    root = Path(os.path.dirname(pydicom.__file__)) / "data"
    scan = scan_archive(root, workers=1)
    assert scan.n_files > 100
    assert len(scan.headers) + len(scan.skipped) == scan.n_files
    assert any("DICOMDIR" in reason for _, reason in scan.skipped)
    loaded = failed = 0
    for volume in group_series(scan.headers):
        try:
            read_series(volume)
            loaded += 1
        except ImagingError as exc:
            # Names the series, or the file that broke it.
            assert volume.volume_id in str(exc) or any(str(f) in str(exc) for f in volume.files), exc
            failed += 1
    assert loaded > 10
