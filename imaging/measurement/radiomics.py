"""Radiomics features per lesion with pyradiomics, and their change between time points.

The parameters come from a pyradiomics params YAML (``configs/radiomics.yaml``: original
image, first-order + shape + GLCM features, 25 HU bins for CT; MR needs normalisation, see
the file). pyradiomics logs a great deal at INFO and WARNING; it is silenced here to errors.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from imaging.io.geometry import nonzero_box

DEFAULT_PARAMS = Path(__file__).resolve().parents[2] / "configs" / "radiomics.yaml"


class RadiomicsError(ValueError):
    """pyradiomics could not compute features for a lesion; the message names the label and the reason."""


def _quiet() -> None:
    with warnings.catch_warnings():
        # its dependencies' import-time DeprecationWarnings are not ours to show
        warnings.simplefilter("ignore", DeprecationWarning)
        import radiomics
        from radiomics import featureextractor  # noqa: F401

    radiomics.setVerbosity(logging.ERROR)  # its own stderr handler
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    logging.getLogger("pykwalify").setLevel(logging.WARNING)  # "validation.valid" for every params file read


@lru_cache(maxsize=8)
def _extractor(params_path: str, overrides: tuple[tuple[str, Any], ...]):
    _quiet()
    from radiomics import featureextractor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pykwalify, validating the params file
        ex = featureextractor.RadiomicsFeatureExtractor(params_path)
    if overrides:
        ex.settings.update(dict(overrides))
    return ex


def radiomics_features(
    image: sitk.Image,
    labels: sitk.Image,
    label: int,
    params_path: str | os.PathLike[str] = DEFAULT_PARAMS,
    **settings: Any,
) -> dict[str, float]:
    """pyradiomics features of one lesion.

    Parameters
    ----------
    image : the scan (CT in HU, or MR), with its geometry.
    labels : the label map on the same grid.
    label : the lesion's label value.
    params_path : pyradiomics params YAML (default ``configs/radiomics.yaml``).
    **settings : overrides of the file's ``setting`` section (e.g. ``normalize=True`` for MR).

    Returns
    -------
    ``{feature name: value}``, e.g. ``"original_firstorder_Mean"``, ``"original_shape_VoxelVolume"``
    (mm3), ``"original_glcm_Contrast"``; floats, diagnostics left out.

    Raises
    ------
    RadiomicsError
        The label is absent, the mask is too small for the settings, or the grids differ.
    """
    path = Path(params_path)
    if not path.is_file():
        raise RadiomicsError(f"{path}: no such radiomics params file")
    inside = sitk.GetArrayViewFromImage(labels) == label
    if not np.any(inside):
        raise RadiomicsError(f"label {label}: not present in the label map")
    overrides = tuple(sorted(settings.items()))
    ex = _extractor(str(path), overrides)
    try:
        if _croppable(ex, image, labels):
            image, labels, ex = _cropped(ex, image, labels, inside, str(path), overrides)
        result = ex.execute(image, labels, label=int(label))
    except (ValueError, RuntimeError, AssertionError) as exc:
        raise RadiomicsError(f"label {label}: pyradiomics failed ({exc})") from exc
    out: dict[str, float] = {}
    for name, value in result.items():
        if name.startswith("diagnostics_"):
            continue
        try:
            out[name] = float(np.asarray(value))
        except (TypeError, ValueError):
            continue
    return out


# Voxels kept around the lesion's bounding box when the inputs are cut (pyradiomics crops to the box
# itself; the margin only keeps the cut from touching the lesion).
_CROP_MARGIN_VOXELS = 2

_INTEGER_PIXELS = {sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16, sitk.sitkUInt32, sitk.sitkInt32,
                   sitk.sitkUInt64, sitk.sitkInt64}


def _croppable(ex, image: sitk.Image, labels: sitk.Image) -> bool:  # noqa: ANN001 - a RadiomicsFeatureExtractor
    """Whether the features depend only on the voxels around the lesion, so the inputs may be cut.

    True only for what the pipeline hands over: the original image (no filter, whose response at the
    box would depend on what lies beyond it) on its acquired grid (no resampling), and a scalar
    integer label map on exactly the image's grid. Anything else (a float or vector mask, which
    pyradiomics casts or splits by channel; a mask on a grid that differs within
    ``geometryTolerance``, which pyradiomics resamples onto the image) goes to pyradiomics whole.
    """
    s = ex.settings
    if set(ex.enabledImagetypes) != {"Original"} or s.get("resampledPixelSpacing") is not None:
        return False
    if s.get("label_channel") is not None or labels.GetNumberOfComponentsPerPixel() != 1:
        return False
    if labels.GetPixelID() not in _INTEGER_PIXELS:
        return False
    return (image.GetSize() == labels.GetSize() and image.GetOrigin() == labels.GetOrigin()
            and image.GetSpacing() == labels.GetSpacing() and image.GetDirection() == labels.GetDirection())


def _cropped(ex, image: sitk.Image, labels: sitk.Image, inside: np.ndarray, params_path: str,  # noqa: ANN001
             overrides: tuple[tuple[str, Any], ...]):  # noqa: ANN202
    """Image and labels cut to the lesion's bounding box plus a margin, and the extractor to use on them.

    pyradiomics checks the mask (a label-statistics pass) and reads arrays over the whole image for
    every lesion; on a 512 x 512 x 61 CT that is most of a lesion's feature time and memory
    traffic. The features are the same on the cut: segment-based features use only the voxels in
    the box. z-score normalisation is over the whole image, so it is done here first, by
    pyradiomics' own ``normalizeImage``, and the extractor used on the cut does not repeat it.
    """
    from radiomics import imageoperations

    if ex.settings.get("normalize", False):
        image = imageoperations.normalizeImage(image, **ex.settings)
        ex = _extractor(params_path, tuple(sorted({**dict(overrides), "normalize": False}.items())))
    box = nonzero_box(inside, _CROP_MARGIN_VOXELS)
    assert box is not None  # the label is present (checked by the caller)
    lo = [b.start for b in reversed(box)]  # numpy (z, y, x) -> SimpleITK (x, y, z)
    size = [b.stop - b.start for b in reversed(box)]
    return sitk.RegionOfInterest(image, size, lo), sitk.RegionOfInterest(labels, size, lo), ex


def feature_deltas(previous: dict[str, float], current: dict[str, float]) -> dict[str, dict[str, float | None]]:
    """Change of each feature between two time points.

    Parameters
    ----------
    previous, current : feature dicts as returned by :func:`radiomics_features`.

    Returns
    -------
    ``{name: {"previous", "current", "absolute", "relative"}}`` for the features present in
    both: ``absolute = current - previous`` and ``relative = absolute / |previous|`` (a
    fraction; None when ``previous`` is 0 or either value is not finite).
    """
    out: dict[str, dict[str, float | None]] = {}
    for name in sorted(set(previous) & set(current)):
        a, b = float(previous[name]), float(current[name])
        finite = math.isfinite(a) and math.isfinite(b)
        absolute = b - a if finite else None
        relative = (b - a) / abs(a) if finite and a != 0.0 else None
        out[name] = {"previous": a, "current": b, "absolute": absolute, "relative": relative}
    return out
