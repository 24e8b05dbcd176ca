"""Pixel data of one slice or frame, as stored (before RescaleSlope/Intercept).

Native little-endian grayscale pixel data are read straight from the offset
:func:`imaging.io.dicom.read_header` recorded, without parsing the file again
(the fast path that makes a 400-slice series load in well under a second).
Everything else (JPEG baseline/lossless, JPEG-LS, JPEG 2000, RLE, deflate,
big endian, colour) goes through pydicom's pixel decoders, which use
pylibjpeg (libjpeg, openjpeg, rle) or python-gdcm.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from imaging.io.dicom import DicomHeader, read_header
from imaging.io.errors import DicomFileError

_NATIVE_DTYPES: dict[tuple[int, int], np.dtype] = {
    (8, 0): np.dtype("u1"),
    (8, 1): np.dtype("i1"),
    (16, 0): np.dtype("<u2"),
    (16, 1): np.dtype("<i2"),
    (32, 0): np.dtype("<u4"),
    (32, 1): np.dtype("<i4"),
}


def native_dtype(header: DicomHeader) -> np.dtype | None:
    """The dtype of the fast path for ``header``, or ``None`` when its pixels need a decoder."""
    if header.pixel_data_offset is None or header.samples_per_pixel != 1 or header.bits_allocated is None:
        return None
    dtype = _NATIVE_DTYPES.get((header.bits_allocated, 1 if header.pixel_representation else 0))
    if dtype is None or header.rows is None or header.columns is None:
        return None
    needed = header.rows * header.columns * dtype.itemsize * max(header.number_of_frames, 1)
    if header.pixel_data_length is None or header.pixel_data_length < needed:
        return None
    return dtype


def _fix_bits_stored(arr: np.ndarray, header: DicomHeader) -> np.ndarray:
    """Mask unused high bits (unsigned) or sign-extend from BitsStored (signed), as pydicom does."""
    stored, allocated = header.bits_stored, header.bits_allocated
    if stored is None or allocated is None or stored >= allocated or arr.dtype.kind not in "iu":
        return arr
    if header.pixel_representation:
        shift = allocated - stored
        arr <<= shift
        arr >>= shift  # arithmetic shift on a signed dtype: sign extension
    else:
        arr &= (1 << stored) - 1
    return arr


def read_stored(header: DicomHeader, frame: int | None = None) -> np.ndarray:
    """The stored values of one slice, shape (rows, columns), or (rows, columns, samples) for colour.

    Parameters
    ----------
    header
        The file's header from :func:`imaging.io.dicom.read_header`.
    frame
        0-based frame index for a multi-frame file; ``None`` for a single-frame file.

    Raises
    ------
    DicomFileError
        Pixel data missing, truncated or undecodable; names the file and the reason.
    """
    dtype = native_dtype(header)
    path = header.path
    if dtype is not None:
        assert header.rows is not None and header.columns is not None and header.pixel_data_offset is not None
        n = header.rows * header.columns
        offset = header.pixel_data_offset + (frame or 0) * n * dtype.itemsize
        try:
            arr = np.fromfile(path, dtype=dtype, count=n, offset=offset)
        except (OSError, ValueError) as exc:
            raise DicomFileError(f"{path}: pixel data unreadable ({type(exc).__name__}: {exc})") from exc
        if arr.size != n:
            raise DicomFileError(f"{path}: pixel data truncated ({arr.size} of {n} pixels)")
        return _fix_bits_stored(arr.reshape(header.rows, header.columns), header)
    return _decode(path, frame, header.number_of_frames, not header.transfer_syntax_uid)


def _pydicom_pixels(path: Path, index: int | None, headerless: bool = False) -> np.ndarray:
    import pydicom  # only for what the native reader leaves to pydicom's decoders
    import pydicom.pixels

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if not headerless:
                return pydicom.pixels.pixel_array(os.fspath(path), index=index)
            # A file without the Part 10 header: parse it forcibly and name its encoding.
            ds = pydicom.dcmread(path, force=True)
            implicit, little = ds.original_encoding
            if not hasattr(ds, "file_meta"):
                ds.file_meta = pydicom.dataset.FileMetaDataset()
            if "TransferSyntaxUID" not in ds.file_meta:
                ds.file_meta.TransferSyntaxUID = (
                    pydicom.uid.ImplicitVRLittleEndian if implicit
                    else pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian
                )
            return pydicom.pixels.pixel_array(ds, index=index)
    except Exception as exc:  # the decoders raise many types on broken data; the boundary names them
        raise DicomFileError(f"{path}: pixel data unreadable ({type(exc).__name__}: {exc})") from exc


def _decode(path: Path, frame: int | None, n_frames: int, headerless: bool) -> np.ndarray:
    arr = _pydicom_pixels(path, frame if n_frames > 1 else None, headerless)
    if n_frames > 1 and frame is None:
        arr = arr[0]
    return arr


def read_pixels(path: str | os.PathLike[str]) -> np.ndarray:
    """All stored pixel values of one DICOM file, as pydicom lays them out.

    Shape (rows, columns) for one grayscale frame, (frames, rows, columns)
    for several, with a trailing samples axis for colour. No rescale applied.

    Raises
    ------
    DicomFileError
        Not DICOM, no pixel data, or pixel data that cannot be decoded.
    """
    header = read_header(path)
    if not header.has_pixel_data:
        raise DicomFileError(f"{header.path}: no pixel data ({header.sop_class_name})")
    if native_dtype(header) is not None:
        if header.number_of_frames > 1:
            return np.stack([read_stored(header, i) for i in range(header.number_of_frames)])
        return read_stored(header)
    return _pydicom_pixels(header.path, None, not header.transfer_syntax_uid)
