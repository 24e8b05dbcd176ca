"""Inverting registration transforms and warping baseline label maps into follow-ups."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from imaging.io.geometry import nonzero_box
from imaging.registration.errors import RegistrationError

_FIELD_SPACING_MM = 2.0  # grid of a numerically inverted B-spline: far finer than its 50 mm knots


def _coarse_grid(reference: sitk.Image, spacing_mm: float) -> sitk.Image:
    spacing = np.asarray(reference.GetSpacing(), dtype=float)
    factors = [max(1, int(round(spacing_mm / s))) for s in spacing]
    size = np.maximum(np.asarray(reference.GetSize()) // factors, 1)
    grid = sitk.Image([int(v) for v in size], sitk.sitkUInt8)
    grid.SetSpacing((spacing * factors).tolist())
    grid.SetDirection(reference.GetDirection())
    # Same field of view: the first coarse voxel centre sits in the middle of the first block.
    first = np.asarray(reference.TransformContinuousIndexToPhysicalPoint(((np.asarray(factors) - 1) / 2.0).tolist()))
    grid.SetOrigin(first.tolist())
    return grid


def invert_transform(transform: sitk.Transform, reference: sitk.Image) -> sitk.Transform:
    """The inverse of a registration transform (maps MOVING points back to FIXED points).

    Linear transforms and composites of them are inverted exactly. A non-linear component
    (the B-spline of a composite) is sampled as a displacement field on a ~2 mm copy of
    ``reference`` (the FIXED image's grid, where the B-spline lives) and inverted numerically.

    Raises
    ------
    RegistrationError
        When the transform cannot be inverted.
    """
    try:
        return transform.GetInverse()
    except RuntimeError:
        pass
    t = transform.Downcast() if hasattr(transform, "Downcast") else transform
    if not isinstance(t, sitk.CompositeTransform):
        return _invert_field(t, reference)
    # A composite applies its last-added transform first: T = A(B(x)) for [A, B]. Its inverse
    # B^-1(A^-1(y)) is the composite [B^-1, A^-1].
    inverses = []
    for i in reversed(range(t.GetNumberOfTransforms())):
        part = t.GetNthTransform(i)
        try:
            inverses.append(part.GetInverse())
        except RuntimeError:
            inverses.append(_invert_field(part, reference))
    return sitk.CompositeTransform(inverses)


def _invert_field(transform: sitk.Transform, reference: sitk.Image) -> sitk.Transform:
    grid = _coarse_grid(reference, _FIELD_SPACING_MM)
    try:
        field = sitk.TransformToDisplacementField(
            transform, sitk.sitkVectorFloat64, grid.GetSize(), grid.GetOrigin(), grid.GetSpacing(), grid.GetDirection()
        )
        inverse = sitk.InvertDisplacementField(
            field, maximumNumberOfIterations=20, maxErrorToleranceThreshold=0.01,
            meanErrorToleranceThreshold=0.001, enforceBoundaryCondition=True,
        )
    except RuntimeError as exc:
        raise RegistrationError(f"cannot invert a {transform.GetName()}: {str(exc).strip().splitlines()[-1]}") from exc
    return sitk.DisplacementFieldTransform(inverse)


def propagate_mask(
    baseline_labels: sitk.Image, followup_image: sitk.Image, transform: sitk.Transform | None
) -> sitk.Image:
    """Warp a baseline label map onto a follow-up's grid (nearest neighbour, labels kept).

    Parameters
    ----------
    baseline_labels : integer label map on the baseline grid.
    followup_image : the follow-up image; only its grid is used.
    transform : the registration of the follow-up to the baseline (FIXED = baseline, MOVING =
        follow-up: maps baseline points to follow-up points), or ``None`` when both scans share
        one frame of reference.

    Returns
    -------
    Label map on the follow-up grid, same pixel type as ``baseline_labels``: where the
    baseline lesions are in the follow-up, to seed its segmentation.
    """
    if transform is None:
        to_baseline: sitk.Transform = sitk.Transform()
    else:
        to_baseline = invert_transform(transform, baseline_labels)
    return sitk.Resample(
        baseline_labels, followup_image, to_baseline, sitk.sitkNearestNeighbor, 0, baseline_labels.GetPixelID()
    )


def lesion_exclusion_mask(labels: sitk.Image, margin_mm: float = 30.0) -> sitk.Image:
    """1 everywhere except within ``margin_mm`` of a lesion (label != 0), on ``labels``' grid.

    Passed as ``fixed_mask`` / ``moving_mask`` to :func:`~imaging.registration.register`, it
    keeps the changing tumour and the tissue it pushes aside out of the metric ("cost function
    masking", Brett et al., NeuroImage 2001;14:486-500), so the rigid/affine fit follows the
    unchanged anatomy. The margin is measured in mm (anisotropic voxels allowed); only the
    lesions' bounding box plus the margin is processed.
    """
    from scipy import ndimage

    arr = sitk.GetArrayViewFromImage(labels) != 0
    out = np.ones(arr.shape, dtype=np.uint8)
    spacing_zyx = np.asarray(labels.GetSpacing(), dtype=float)[::-1]
    box = nonzero_box(arr, tuple(np.ceil(margin_mm / spacing_zyx).astype(int) + 1))
    if box is not None:
        dist = ndimage.distance_transform_edt(~arr[box], sampling=spacing_zyx)
        out[box] = (dist > margin_mm).astype(np.uint8)
    mask = sitk.GetImageFromArray(out)
    mask.CopyInformation(labels)
    return mask
