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
    if not np.any(sitk.GetArrayViewFromImage(labels) == label):
        raise RadiomicsError(f"label {label}: not present in the label map")
    ex = _extractor(str(path), tuple(sorted(settings.items())))
    try:
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
