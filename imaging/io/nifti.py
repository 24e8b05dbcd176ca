"""NIfTI volumes and label maps.

NIfTI stores its affine in RAS; this project works in DICOM LPS. The
conversion happens here, once: SimpleITK's NIfTI reader and writer flip the
first two axes of the affine (RAS <-> LPS), and ``tests/io/test_nifti.py`` pins
that against an affine written by nibabel.
"""

from __future__ import annotations

import os
from pathlib import Path

import SimpleITK as sitk

from imaging.io.errors import NiftiError


def load_nifti(path: str | os.PathLike[str]) -> sitk.Image:
    """Load a 3-D NIfTI (.nii or .nii.gz) as a SimpleITK image in LPS.

    Raises
    ------
    NiftiError
        Unreadable file, or not a 3-D scalar volume.
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
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
        raise NiftiError(f"{p}: unreadable NIfTI ({first_line})") from exc
    if image.GetDimension() != 3:
        raise NiftiError(f"{p}: a {image.GetDimension()}-D image; a 3-D volume is required")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise NiftiError(f"{p}: {image.GetNumberOfComponentsPerPixel()} components per voxel; a scalar volume is required")
    return image


def save_nifti(image: sitk.Image, path: str | os.PathLike[str]) -> None:
    """Write an LPS SimpleITK image as NIfTI (the writer converts to RAS)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".partial" + "".join(p.suffixes))
    sitk.WriteImage(image, str(tmp), useCompression=p.name.endswith(".gz"))
    os.replace(tmp, p)
