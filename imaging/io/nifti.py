"""NIfTI volumes and label maps.

NIfTI stores its affine in RAS; this project works in DICOM LPS. The
conversion happens here, once: SimpleITK's NIfTI reader and writer flip the
first two axes of the affine (RAS <-> LPS), and ``tests/io/test_nifti.py`` pins
that against an affine written by nibabel.

A NIfTI header carries two affines, the sform and the qform, which other tools
may disagree about; :func:`read_nifti` reads both with nibabel and reports a
disagreement (in mm, at the corners of the grid) and which one SimpleITK used.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from imaging.io.errors import NiftiError
from imaging.io.geometry import Geometry, LoadedVolume

#: sform and qform placing the grid's corners further apart than this disagree (mm).
#: Both are stored as float32, which alone accounts for < 1e-4 mm over a 500 mm field.
SFORM_QFORM_TOLERANCE_MM = 1e-2
_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])
log = logging.getLogger(__name__)


def _corners(affine: np.ndarray, size_xyz: tuple[int, ...]) -> np.ndarray:
    n = np.asarray(size_xyz[:3], dtype=float) - 1
    idx = np.array([[i, j, k, 1.0] for i in (0, n[0]) for j in (0, n[1]) for k in (0, n[2])])
    return (idx @ affine.T)[:, :3]


def _xform_problems(p: Path, image: sitk.Image) -> list[str]:
    """Compare the header's sform and qform (nibabel) and say which SimpleITK used."""
    import nibabel as nib

    try:
        header: Any = nib.load(str(p)).header
        sform, scode = header.get_sform(coded=True)
        qform, qcode = header.get_qform(coded=True)
    except Exception as exc:  # nibabel raises several types on odd headers; this is a report, not the load
        return [f"{p}: nibabel could not read the header to compare sform and qform ({type(exc).__name__}: {exc})"]
    size = tuple(int(v) for v in image.GetSize())
    if not scode and not qcode:
        return [f"{p}: neither sform nor qform is set (codes 0): the geometry is the ANALYZE default from pixdim alone"]
    if not (scode and qcode) or sform is None or qform is None:
        return []
    s_corners, q_corners = _corners(np.asarray(sform), size), _corners(np.asarray(qform), size)
    diff = float(np.max(np.linalg.norm(s_corners - q_corners, axis=1)))
    if diff <= SFORM_QFORM_TOLERANCE_MM:
        return []
    g = Geometry.of(image)
    loaded_ras = (_LPS_FROM_RAS @ g.corners_lps().T).T
    used_s = float(np.max(np.linalg.norm(loaded_ras - s_corners, axis=1)))
    used_q = float(np.max(np.linalg.norm(loaded_ras - q_corners, axis=1)))
    used = "sform" if used_s <= used_q else "qform"
    return [
        f"{p}: sform (code {int(scode)}) and qform (code {int(qcode)}) disagree by up to {diff:.3f} mm at the grid's "
        f"corners; the {used} was used"
    ]


def read_nifti(path: str | os.PathLike[str], *, volume_index: int | None = None) -> LoadedVolume:
    """Load a NIfTI (.nii or .nii.gz) volume in LPS and report header problems.

    Parameters
    ----------
    path
        The file.
    volume_index
        For 4-D input, the 0-based volume to take; 4-D input without it is
        refused. Ignored (must be 0 or ``None``) for 3-D input.

    Returns
    -------
    LoadedVolume
        The 3-D scalar image in LPS, and problems such as sform/qform disagreement.

    Raises
    ------
    NiftiError
        Unreadable file, not a 3-D scalar volume, 4-D without ``volume_index``,
        or ``volume_index`` out of range.
    """
    p = Path(path)
    if not p.is_file():
        raise NiftiError(f"{p}: no such file")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    reader.SetImageIO("NiftiImageIO")
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        raise NiftiError(f"{p}: unreadable NIfTI ({lines[-1] if lines else 'unknown reason'})") from exc
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise NiftiError(f"{p}: {image.GetNumberOfComponentsPerPixel()} components per voxel; a scalar volume is required")
    dim = image.GetDimension()
    problems: list[str] = []
    if dim == 4:
        n_vol = image.GetSize()[3]
        if volume_index is None and n_vol == 1:
            volume_index = 0
        if volume_index is None:
            raise NiftiError(
                f"{p}: a 4-D image of {n_vol} volumes (size {list(image.GetSize())}); "
                "pass volume_index to choose one (0-based)"
            )
        if not 0 <= volume_index < n_vol:
            raise NiftiError(f"{p}: volume_index {volume_index} out of range: the file holds {n_vol} volumes")
        xyz = list(image.GetSize()[:3])
        image = sitk.Extract(image, xyz + [0], [0, 0, 0, int(volume_index)])
        if n_vol > 1:
            problems.append(f"{p}: volume {volume_index} of {n_vol} taken from a 4-D image")
    elif dim != 3:
        raise NiftiError(f"{p}: a {dim}-D image; a 3-D volume is required")
    elif volume_index not in (None, 0):
        raise NiftiError(f"{p}: volume_index {volume_index} given for a 3-D image")
    problems.extend(_xform_problems(p, image))
    return LoadedVolume(image=image, problems=tuple(problems), source=str(p))


def load_nifti(path: str | os.PathLike[str], *, volume_index: int | None = None) -> sitk.Image:
    """Load a 3-D NIfTI (.nii or .nii.gz) as a SimpleITK image in LPS.

    As :func:`read_nifti`; problems (sform/qform disagreement ...) are logged
    as warnings (``imaging.io.nifti`` logger).

    Raises
    ------
    NiftiError
        Unreadable file, not a 3-D scalar volume, or 4-D without ``volume_index``.
    """
    loaded = read_nifti(path, volume_index=volume_index)
    for problem in loaded.problems:
        log.warning("%s", problem)
    return loaded.image


def save_nifti(image: sitk.Image, path: str | os.PathLike[str], *, compression_level: int = -1) -> None:
    """Write an LPS SimpleITK image as NIfTI (the writer converts to RAS).

    ``.nii.gz`` is compressed (``compression_level`` 1-9; -1: zlib's default).
    The file appears atomically (written beside it, then renamed).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".partial" + "".join(p.suffixes))
    sitk.WriteImage(image, str(tmp), useCompression=p.name.endswith(".gz"), compressionLevel=compression_level)
    os.replace(tmp, p)
