"""Semi-automatic lesion segmentation from a seed point or a bounding box.

For users without masks: one click (or a box) per lesion gives a label map that
``measure_lesions`` can measure. The method is deliberately simple and explainable:

1. **Candidate voxels** in a search region around the seed (a box reaching ``roi_radius_mm``
   from it on every side, or the box given):

   - CT: an HU window, by default -300..250 HU. Solid tumour is about -100..+100 HU and
     aerated lung about -850 HU, so -300 keeps the lesion and the partial-volume rim nearer
     to it than to the lung; 250 leaves out bone and dense contrast.
   - MR ``"threshold"`` (default): a normalised-intensity threshold half-way between the
     lesion (median within 3 mm of the seed) and its surroundings (median of the search
     region): intensities in MR have no absolute scale, only this contrast.
   - MR ``"confidence"``: SimpleITK's confidence-connected region growing (mean +- 2.5 sd
     of the seed's neighbourhood, re-estimated twice).

2. **Region growing**: the connected component of the candidates holding the seed (when
   the seed itself is not a candidate, the nearest candidate within 3 mm).
3. **Clean-up**: an in-plane opening (disc of 1.5 mm) cuts threads (small vessels, septa);
   the seed's component is kept and dilated back inside the grown region, so the opening
   loses no boundary detail.
4. **Leak stop**: a region that reaches the edge of the search region has leaked (into a
   vessel, the mediastinum, the chest wall, bright meninges). It is then split along its
   necks: a watershed of its distance map (markers: maxima at least 1 mm high), and the
   seed's basin is merged with a neighbouring basin only when the neck between them is at
   least 80 % as thick as the thinner of the two (lobes of one lesion), not a narrow contact.
5. Holes are filled slice by slice (necrotic or cystic centres belong to the lesion).

Quality on the five real cases of pyradiomics' data (seed = the reference mask's most
interior voxel), Dice against their reference masks: see ``docs/measurement.md``; it is
good on solid lung lesions and mediocre on MR, where the references include non-enhancing
tissue a threshold cannot see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from imaging.io.geometry import Geometry

Modality = Literal["CT", "MR"]
Method = Literal["auto", "window", "threshold", "confidence"]
Space = Literal["lps", "index"]


class SegmentationError(ValueError):
    """The seed or box cannot give a lesion; the message says why (position, intensity)."""


@dataclass(frozen=True)
class SeedSettings:
    """Parameters of :func:`segment_from_seed` and :func:`segment_from_box` (defaults as documented above)."""

    ct_window_hu: tuple[float, float] = (-300.0, 250.0)
    mr_fraction: float = 0.5  # threshold = surroundings + fraction x (lesion - surroundings)
    confidence_multiplier: float = 2.5
    confidence_iterations: int = 2
    seed_radius_mm: float = 3.0
    roi_radius_mm: float = 50.0
    opening_radius_mm: float = 1.5
    marker_height_mm: float = 1.0
    neck_ratio: float = 0.8


DEFAULTS = SeedSettings()


def _disc(radius_mm: float, spacing_xyz: Sequence[float]) -> np.ndarray:
    """In-plane disc structuring element, shape (1, ny, nx)."""
    rx, ry = (max(0, int(np.floor(radius_mm / s))) for s in spacing_xyz[:2])
    y, x = np.mgrid[-ry : ry + 1, -rx : rx + 1]
    return ((x * spacing_xyz[0]) ** 2 + (y * spacing_xyz[1]) ** 2 <= radius_mm**2)[None]


def _ball_distance2(shape: tuple[int, ...], centre_zyx: tuple[int, int, int], spacing_xyz: Sequence[float]) -> np.ndarray:
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (
        ((zz - centre_zyx[0]) * spacing_xyz[2]) ** 2
        + ((yy - centre_zyx[1]) * spacing_xyz[1]) ** 2
        + ((xx - centre_zyx[2]) * spacing_xyz[0]) ** 2
    )


def _split_at_necks(core: np.ndarray, seed: tuple[int, int, int], spacing_xyz: Sequence[float], settings: SeedSettings) -> np.ndarray:
    """The seed's part of a leaked region: watershed of the distance map, basins merged across thick necks."""
    edt = ndimage.distance_transform_edt(core, sampling=tuple(spacing_xyz[::-1]))
    markers, _ = ndimage.label(h_maxima(edt, settings.marker_height_mm))
    if not np.any(markers[core]):
        return core
    basins = watershed(-edt, markers, mask=core)
    if basins[seed] == 0:
        return core
    n = int(basins.max())
    peak = np.concatenate([[0.0], ndimage.maximum(edt, basins, index=np.arange(1, n + 1))])
    # neck between two adjacent basins: the thickest point of their shared boundary
    neck = np.zeros((n + 1, n + 1))
    for axis in range(3):
        a, e = np.moveaxis(basins, axis, 0), np.moveaxis(edt, axis, 0)
        l1, l2 = a[:-1], a[1:]
        touching = (l1 != l2) & (l1 > 0) & (l2 > 0)
        np.maximum.at(neck, (l1[touching], l2[touching]), np.minimum(e[:-1], e[1:])[touching])
    neck = np.maximum(neck, neck.T)
    region = {int(basins[seed])}
    top = peak[int(basins[seed])]
    grew = True
    while grew:
        grew = False
        for b in range(1, n + 1):
            if b in region:
                continue
            thickest = max(neck[a, b] for a in region)
            if thickest > 0 and thickest >= settings.neck_ratio * min(top, peak[b]):
                region.add(b)
                top = max(top, peak[b])
                grew = True
    return np.isin(basins, list(region))


def _segment(
    image: sitk.Image,
    seed_index: tuple[int, int, int],
    roi: tuple[slice, slice, slice],
    modality: Modality,
    method: Method,
    settings: SeedSettings,
    in_box: bool,
) -> sitk.Image:
    geom = Geometry.of(image)
    spacing = geom.spacing_mm
    array = sitk.GetArrayViewFromImage(image)
    sub = np.asarray(array[roi], dtype=np.float64)
    x, y, z = seed_index
    seed = (z - roi[0].start, y - roi[1].start, x - roi[2].start)
    if method == "auto":
        method = "window" if modality == "CT" else "threshold"

    d2 = _ball_distance2(sub.shape, seed, spacing)
    inside_roi = np.ones(sub.shape, dtype=bool)
    if method == "window":
        lo, hi = settings.ct_window_hu
        candidates = (sub >= lo) & (sub <= hi)
        what = f"the HU window [{lo:g}, {hi:g}]"
    elif method == "threshold":
        lesion = float(np.median(sub[d2 <= settings.seed_radius_mm**2]))
        around = float(np.median(sub[inside_roi]))
        level = around + settings.mr_fraction * (lesion - around)
        candidates = sub >= level if lesion >= around else sub <= level
        what = f"the threshold {level:.4g} (lesion {lesion:.4g}, surroundings {around:.4g})"
    elif method == "confidence":
        sub_img = sitk.GetImageFromArray(sub.astype(np.float32))
        sub_img.SetSpacing(spacing)
        grown_img = sitk.ConfidenceConnected(
            sub_img, seedList=[(seed[2], seed[1], seed[0])], numberOfIterations=settings.confidence_iterations,
            multiplier=settings.confidence_multiplier, initialNeighborhoodRadius=1, replaceValue=1,
        )
        candidates = sitk.GetArrayFromImage(grown_img) > 0
        what = "the confidence interval of the seed's neighbourhood"
    else:
        raise SegmentationError(f"unknown method {method!r}; expected auto, window, threshold or confidence")
    candidates &= inside_roi

    components, _ = ndimage.label(candidates)
    if components[seed] == 0:
        dist, nearest = ndimage.distance_transform_edt(components == 0, sampling=tuple(spacing[::-1]), return_indices=True)
        if dist[seed] > settings.seed_radius_mm:
            raise SegmentationError(
                f"seed voxel {seed_index} ({sub[seed]:.4g}) is not within {settings.seed_radius_mm:g} mm of {what}"
            )
        seed = tuple(int(n[seed]) for n in nearest)  # type: ignore[assignment]
    grown = components == components[seed]

    disc = _disc(settings.opening_radius_mm, spacing)
    opened = ndimage.binary_opening(grown, structure=disc)
    parts, _ = ndimage.label(opened)
    core = parts == parts[seed] if parts[seed] else grown
    edge = np.zeros(sub.shape, dtype=bool)
    edge[[0, -1], :, :] = edge[:, [0, -1], :] = edge[:, :, [0, -1]] = True
    if in_box or np.any(core & edge):
        core = _split_at_necks(core, seed, spacing, settings)
    result = ndimage.binary_dilation(core, structure=disc) & grown
    for k in range(result.shape[0]):
        result[k] = ndimage.binary_fill_holes(result[k])

    out = np.zeros(array.shape, dtype=np.uint8)
    out[roi] = result
    labels = sitk.GetImageFromArray(out)
    labels.CopyInformation(image)
    return labels


def _index_of(image: sitk.Image, point: Sequence[float], space: Space) -> tuple[int, int, int]:
    geom = Geometry.of(image)
    if space == "lps":
        idx = np.rint(geom.lps_to_index(np.asarray(point, dtype=float))).astype(int)
    elif space == "index":
        idx = np.asarray(point, dtype=int)
    else:
        raise SegmentationError(f"unknown space {space!r}; expected 'lps' or 'index'")
    if idx.shape != (3,) or np.any(idx < 0) or np.any(idx >= np.asarray(geom.size)):
        raise SegmentationError(f"seed {tuple(point)} ({space}) is outside the image (size {geom.size})")
    return int(idx[0]), int(idx[1]), int(idx[2])


def segment_from_seed(
    image: sitk.Image,
    seed: Sequence[float],
    *,
    space: Space = "lps",
    modality: Modality = "CT",
    method: Method = "auto",
    settings: SeedSettings = DEFAULTS,
) -> sitk.Image:
    """Segment the lesion around a seed point.

    Parameters
    ----------
    image : CT (HU) or MR scan with its geometry.
    seed : a point inside the lesion: LPS mm (``space="lps"``) or a voxel index (x, y, z).
    modality : "CT" or "MR": chooses the candidate rule when ``method="auto"``.
    method : "window" (CT HU window), "threshold" (MR normalised threshold), "confidence"
        (confidence-connected growing), or "auto".
    settings : thresholds and radii (:class:`SeedSettings`).

    Returns
    -------
    UInt8 label map on the image's grid: 1 in the lesion, 0 elsewhere.

    Raises
    ------
    SegmentationError
        The seed is outside the image, or no candidate voxel lies within 3 mm of it.
    """
    index = _index_of(image, seed, space)
    geom = Geometry.of(image)
    r = [max(1, int(np.ceil(settings.roi_radius_mm / s))) for s in geom.spacing_mm]
    roi = tuple(slice(max(0, index[a] - r[a]), min(geom.size[a], index[a] + r[a] + 1)) for a in (2, 1, 0))
    return _segment(image, index, roi, modality, method, settings, in_box=False)  # type: ignore[arg-type]


def segment_from_box(
    image: sitk.Image,
    box: tuple[Sequence[float], Sequence[float]],
    *,
    space: Space = "lps",
    modality: Modality = "CT",
    method: Method = "auto",
    settings: SeedSettings = DEFAULTS,
) -> sitk.Image:
    """Segment the lesion inside a bounding box (the box limits the lesion and the search).

    The seed is the most interior lesion-like voxel of the box (CT: in the HU window; MR:
    brighter than Otsu's threshold of the box), and the region is always split at its necks
    (a tight box is touched by the lesion on every side, so touching it says nothing).

    Parameters
    ----------
    box : two opposite corners, LPS mm or voxel indices (inclusive), in any order.
    Other parameters as :func:`segment_from_seed`.
    """
    a = np.asarray(_index_of(image, box[0], space))
    b = np.asarray(_index_of(image, box[1], space))
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    roi = (slice(int(lo[2]), int(hi[2]) + 1), slice(int(lo[1]), int(hi[1]) + 1), slice(int(lo[0]), int(hi[0]) + 1))
    seed = _box_seed(image, roi, modality, settings)
    return _segment(image, seed, roi, modality, method, settings, in_box=True)


def _box_seed(image: sitk.Image, roi: tuple[slice, slice, slice], modality: Modality, settings: SeedSettings) -> tuple[int, int, int]:
    """The most interior lesion-like voxel of a box: CT, inside the HU window; MR, on the bright side
    of Otsu's threshold (an enhancing lesion is assumed); the box's centre when there is none."""
    from skimage.filters import threshold_otsu

    sub = np.asarray(sitk.GetArrayViewFromImage(image)[roi], dtype=np.float64)
    if modality == "CT":
        lo, hi = settings.ct_window_hu
        candidates = (sub >= lo) & (sub <= hi)
    else:
        candidates = sub > threshold_otsu(sub) if np.ptp(sub) > 0 else np.zeros(sub.shape, dtype=bool)
    if not candidates.any():
        z, y, x = (n // 2 for n in sub.shape)
    else:
        spacing = Geometry.of(image).spacing_mm
        depth = ndimage.distance_transform_edt(np.pad(candidates, 1), sampling=tuple(spacing[::-1]))[1:-1, 1:-1, 1:-1]
        z, y, x = np.unravel_index(int(np.argmax(depth)), sub.shape)
    return int(x) + roi[2].start, int(y) + roi[1].start, int(z) + roi[0].start
