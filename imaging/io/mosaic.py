"""Siemens mosaic images: one 2-D DICOM image holding every slice of a 3-D volume as tiles.

Siemens EPI (fMRI, DWI) writes each volume as one "mosaic" file: ImageType
contains ``MOSAIC``, and the slices are tiles laid out row by row on a square
grid of ``ceil(sqrt(n))`` x ``ceil(sqrt(n))`` tiles (the last ones blank).
Read as an ordinary image it is a single 2-D slice at the wrong place: its
ImagePositionPatient is the corner of the whole mosaic, not of any slice.

The geometry comes from the Siemens CSA header, read with nibabel's reader
(:mod:`nibabel.nicom.csareader`), never parsed by hand here:

- ``NumberOfImagesInMosaic`` (CSA image header; else the private element
  (0019,100A) of the ``SIEMENS MR HEADER`` block): the number of tiles n;
- ``SliceNormalVector`` (CSA image header): the direction in which the tiles
  follow each other. Its sign is what ImageOrientationPatient cannot tell;
- the slice spacing: SpacingBetweenSlices, checked against the slice centres
  of the protocol (``sSliceArray.asSlice[i].sPosition`` in the CSA series
  header's ``MrPhoenixProtocol``) when they are there; the protocol alone
  when SpacingBetweenSlices is absent.

The first tile's position is the mosaic's ImagePositionPatient moved by half
the difference between the mosaic and the tile size, in pixels, along the row
and column directions (nibabel's ``MosaicWrapper.image_position``); tile k is
at that position + k x spacing x SliceNormalVector.

Anything missing (no tile count, no slice normal, no slice spacing, a mosaic
whose size is not a multiple of the tile grid) is refused with the file and
the reason: a mosaic read as one slice, or stacked in the wrong direction, is
a silently wrong geometry.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imaging.io.dicom import DicomHeader

if TYPE_CHECKING:
    import pydicom

#: Slice spacings from SpacingBetweenSlices and from the protocol's slice centres may differ by this (mm).
SPACING_AGREEMENT_MM = 1e-2
#: SliceNormalVector and the cross product of ImageOrientationPatient must be parallel within this.
NORMAL_TOLERANCE = 1e-3


class MosaicError(Exception):
    """Internal: why a mosaic's geometry cannot be worked out (the message names the file)."""


@dataclass(frozen=True)
class MosaicLayout:
    """How the tiles of one mosaic file map to slices in patient space (LPS, mm).

    Attributes
    ----------
    n_tiles
        Slices in the mosaic (NumberOfImagesInMosaic).
    tiles_per_side
        Tiles per row and per column of the mosaic grid, ``ceil(sqrt(n_tiles))``.
    tile_rows, tile_columns
        Size of one tile (one slice), pixels.
    first_position_lps
        ImagePositionPatient of tile 0 (centre of its first pixel).
    slice_normal_lps
        Unit vector from tile k to tile k + 1 (SliceNormalVector).
    slice_spacing_mm
        Distance between consecutive tiles along ``slice_normal_lps``.
    spacing_source
        Where the spacing came from (for messages).
    """

    n_tiles: int
    tiles_per_side: int
    tile_rows: int
    tile_columns: int
    first_position_lps: tuple[float, float, float]
    slice_normal_lps: tuple[float, float, float]
    slice_spacing_mm: float
    spacing_source: str

    def tile_position_lps(self, k: int) -> tuple[float, float, float]:
        """ImagePositionPatient of tile ``k`` (0-based)."""
        p = np.asarray(self.first_position_lps) + k * self.slice_spacing_mm * np.asarray(self.slice_normal_lps)
        return (float(p[0]), float(p[1]), float(p[2]))


def is_mosaic(header: DicomHeader) -> bool:
    """True when ``header`` is a single-frame image whose ImageType says MOSAIC."""
    if header.frames or header.number_of_frames > 1:
        return False
    return "MOSAIC" in {v.strip().upper() for v in re.split(r"[\\/]", header.image_type or "")}


def _csa_reader() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel.nicom warns on import that its DICOM readers are experimental
        from nibabel.nicom import csareader
    return csareader


def _private_n_mosaic(ds: pydicom.Dataset) -> int | None:
    """NumberOfImagesInMosaic from the ``SIEMENS MR HEADER`` private block (usually (0019,100A))."""
    try:
        block = ds.private_block(0x0019, "SIEMENS MR HEADER")
        element = block[0x0A]
    except (KeyError, ValueError):
        return None
    try:
        value = int(element.value)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


_SLICE_POSITION = re.compile(r"^sSliceArray\.asSlice\[(\d+)\]\.sPosition\.d(Sag|Cor|Tra)\s*=\s*(\S+)", re.MULTILINE)
_SLICE_COUNT = re.compile(r"^sSliceArray\.lSize\s*=\s*(\d+)", re.MULTILINE)


def _protocol_slice_centres(csar: Any, ds: pydicom.Dataset) -> np.ndarray | None:
    """Slice centres (n, 3) in LPS mm from the protocol (``sSliceArray``), or None when absent.

    Siemens' patient coordinates (Sag, Cor, Tra) are DICOM's (x, y, z); an
    absent component is 0 (the protocol omits zeros).
    """
    try:
        series = csar.get_csa_header(ds, "series")
    except Exception:  # a damaged CSA series header only removes this cross-check
        return None
    if not series:
        return None
    text = None
    for name in ("MrPhoenixProtocol", "MrProtocol"):
        value = csar.get_scalar(series, name)
        if value:
            text = value.decode("latin-1", "replace") if isinstance(value, bytes) else str(value)
            break
    if not text:
        return None
    count = _SLICE_COUNT.search(text)
    if not count:
        return None
    n = int(count.group(1))
    if n < 1:
        return None
    centres = np.zeros((n, 3))
    axis = {"Sag": 0, "Cor": 1, "Tra": 2}
    for m in _SLICE_POSITION.finditer(text):
        i = int(m.group(1))
        if i < n:
            try:
                centres[i, axis[m.group(2)]] = float(m.group(3))
            except ValueError:
                return None
    return centres


def _layout(path: Path) -> MosaicLayout:
    csar = _csa_reader()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pydicom  # here, not at import: the lean parser's path never needs it

            ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many types on broken headers
        raise MosaicError(f"{path}: Siemens mosaic whose header cannot be read ({type(exc).__name__}: {exc})") from exc
    try:
        csa = csar.get_csa_header(ds, "image")
    except Exception as exc:  # nibabel raises CSAReadError and others on a damaged CSA header
        raise MosaicError(f"{path}: Siemens mosaic with an unreadable CSA image header ({type(exc).__name__}: {exc})") from exc
    n = None
    if csa:
        value = csar.get_scalar(csa, "NumberOfImagesInMosaic")
        n = int(value) if value else None
    if not n:
        n = _private_n_mosaic(ds)
    if not n:
        raise MosaicError(
            f"{path}: ImageType says MOSAIC but NumberOfImagesInMosaic is in neither the Siemens CSA image header "
            "nor the private element (0019,100A): the tiles (slices) cannot be cut out; export the series "
            "from the scanner without mosaic, or with its private headers kept"
        )
    rows, cols = int(ds.Rows), int(ds.Columns)
    side = int(math.ceil(math.sqrt(n)))
    if rows % side or cols % side:
        raise MosaicError(
            f"{path}: Siemens mosaic of {n} tiles: its {rows}x{cols} pixels do not divide into a {side}x{side} grid of tiles"
        )
    tile_rows, tile_cols = rows // side, cols // side
    iop = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=float)
    ipp = np.asarray([float(v) for v in ds.ImagePositionPatient], dtype=float)
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    row_cos, col_cos = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    normal = None
    if csa:
        try:
            normal = csar.get_vector(csa, "SliceNormalVector", 3)
        except ValueError:
            normal = None
    if normal is None:
        raise MosaicError(
            f"{path}: Siemens mosaic without SliceNormalVector in its CSA image header: the order of the tiles along "
            "the slice normal is unknown; export the series with its private (CSA) headers kept"
        )
    normal = np.asarray(normal, dtype=float)
    normal /= np.linalg.norm(normal)
    cross = np.cross(row_cos, col_cos)
    if abs(abs(float(normal @ cross)) - 1.0) > NORMAL_TOLERANCE:
        raise MosaicError(
            f"{path}: Siemens mosaic whose SliceNormalVector {tuple(round(float(v), 6) for v in normal)} is not "
            "perpendicular to its ImageOrientationPatient; refused rather than guessing the slice direction"
        )
    # The orthogonal normal with the CSA's sign (as nibabel's SiemensWrapper.slice_normal).
    normal = cross if float(normal @ cross) > 0 else -cross

    spacing_tag = ds.get("SpacingBetweenSlices")
    spacing = float(spacing_tag) if spacing_tag not in (None, "") else None
    centres = _protocol_slice_centres(csar, ds)
    protocol_spacing = None
    if centres is not None and len(centres) == n and n > 1:
        along = centres @ normal
        steps = np.diff(along)
        if np.ptp(steps) <= SPACING_AGREEMENT_MM and abs(float(np.mean(steps))) > 0:
            protocol_spacing = abs(float(np.mean(steps)))
    if spacing is not None and spacing > 0:
        source = "SpacingBetweenSlices"
        if protocol_spacing is not None and abs(protocol_spacing - spacing) > SPACING_AGREEMENT_MM:
            raise MosaicError(
                f"{path}: Siemens mosaic: SpacingBetweenSlices {spacing:g} mm disagrees with the protocol's slice "
                f"centres (sSliceArray, {protocol_spacing:.4f} mm apart); refused rather than choosing one"
            )
    elif protocol_spacing is not None:
        spacing, source = protocol_spacing, "the protocol's slice centres (sSliceArray)"
    elif n == 1:
        thickness = ds.get("SliceThickness")
        spacing, source = (float(thickness) if thickness else 1.0), "SliceThickness (single-tile mosaic)"
    else:
        raise MosaicError(
            f"{path}: Siemens mosaic of {n} tiles without SpacingBetweenSlices and without the protocol's slice "
            "positions (sSliceArray in the CSA series header): the slice spacing is unknown"
        )
    # nibabel MosaicWrapper.image_position: move from the mosaic's corner to the first tile's corner.
    shift_rows, shift_cols = (rows - tile_rows) / 2.0, (cols - tile_cols) / 2.0
    first = ipp + shift_rows * row_spacing * col_cos + shift_cols * col_spacing * row_cos
    return MosaicLayout(
        n_tiles=n,
        tiles_per_side=side,
        tile_rows=tile_rows,
        tile_columns=tile_cols,
        first_position_lps=(float(first[0]), float(first[1]), float(first[2])),
        slice_normal_lps=(float(normal[0]), float(normal[1]), float(normal[2])),
        slice_spacing_mm=float(spacing),
        spacing_source=source,
    )


@lru_cache(maxsize=4096)
def _cached_layout(path: str, size: int, mtime_ns: int) -> MosaicLayout | str:
    try:
        return _layout(Path(path))
    except MosaicError as exc:
        return str(exc)


def mosaic_layout(header: DicomHeader) -> MosaicLayout:
    """The tile layout of one mosaic file, read from its CSA header with pydicom and nibabel.

    Cached per file (path, size and modification time), so that grouping and
    loading the same file read its private header once.

    Raises
    ------
    MosaicError
        When the layout cannot be worked out; the message names the file and
        the reason.
    """
    path = header.path
    try:
        st = os.stat(path)
        key = (str(path), st.st_size, st.st_mtime_ns)
    except OSError as exc:
        raise MosaicError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    result = _cached_layout(*key)
    if isinstance(result, str):
        raise MosaicError(result)
    return result


def cut_tile(mosaic: np.ndarray, layout: MosaicLayout, k: int) -> np.ndarray:
    """Tile ``k`` (0-based, row-major on the tile grid) of a mosaic's stored pixel array (a view)."""
    r, c = divmod(k, layout.tiles_per_side)
    return mosaic[r * layout.tile_rows:(r + 1) * layout.tile_rows, c * layout.tile_columns:(c + 1) * layout.tile_columns]
