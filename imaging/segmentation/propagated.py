"""Segmentation of a follow-up scan's lesions from a prior label map.

When a follow-up scan has no mask, the baseline's lesion mask warped onto the follow-up's grid
by registration (:func:`imaging.registration.propagation.propagate_mask`) says where each known
lesion should be. :func:`segment_from_prior` replaces the manual seed of
:func:`~imaging.segmentation.segment_from_seed` with it, label by label:

1. **Search region**: the prior region's bounding box grown by ``search_margin_mm`` on every
   side (converted to voxels per axis with the spacing), clipped to the image, so a lesion that
   grew or that registration placed a few mm off is still inside it.
2. **Seed**: the most interior lesion-like voxel of the prior region (largest distance, in mm,
   to the edge of the lesion-like voxels inside the prior region; anisotropic voxels allowed).
   Lesion-like is, on CT, inside ``settings.ct_window_hu``. On MR, which has no absolute scale,
   it is the MR ``"threshold"`` rule of :mod:`imaging.segmentation.seeded` with the prior region
   standing in for the neighbourhood of a seed: the surroundings are the rest of the search
   region (median, and spread = 1.4826 x median absolute deviation); the lesion's tissue is the
   deepest cluster of prior-region voxels more than 3 spreads from that median (brighter or
   darker), which must reach at least 1.5 mm from its edge (noise gives isolated voxels only);
   lesion-like is beyond the level half-way (``settings.mr_fraction``) between that cluster's
   median and the surroundings'. A lesion that shrank to a small part of its prior region is
   found either way (the rule looks at the region's lesion-like part, not at its middle).
3. **Growing**: :mod:`imaging.segmentation.seeded`'s method (candidates, connected region,
   clean-up, hole filling) in the search region, with its leak stop (split at necks) always
   applied: the search region is not centred on the seed and is only ``search_margin_mm``
   wider than the prior, so touching its edge is no reliable sign of a leak, and a leak into a
   neighbouring lesion or a short vessel may never reach the edge at all.
4. **Overlaps**: where the regions grown for two labels overlap, each voxel goes to the label
   whose prior region is nearer (Euclidean distance in mm; ties to the smaller label value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from imaging.io.geometry import Geometry
from imaging.segmentation.seeded import DEFAULTS, SeedSettings, SegmentationError, _segment

_INTEGER_PIXELS = {
    sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16,
    sitk.sitkUInt32, sitk.sitkInt32, sitk.sitkUInt64, sitk.sitkInt64,
}
_MR_OUTLIER_SPREADS = 3.0  # MR: lesion tissue lies this many spreads of the surroundings from their median ...
_MR_MIN_DEPTH_MM = 1.5  # ... in a cluster at least this deep (isolated noise voxels are not)
_THIN_MM = 2.0  # seed closer than this to the edge of the lesion-like tissue: a vessel, scar or rim?
_MIN_INSIDE = 1.0 / 3.0  # less of the segmented lesion inside its prior region: neighbouring tissue?


@dataclass(frozen=True)
class PriorSegmentation:
    """Result of :func:`segment_from_prior`.

    Attributes
    ----------
    labels : UInt16 label map on the image's grid; each found lesion keeps its prior label value.
    found : prior label value -> whether a lesion was segmented for it.
    problems : one sentence per lesion not found or doubtful, naming the label, and why.
    """

    labels: sitk.Image
    found: dict[int, bool]
    problems: tuple[str, ...]


def segment_from_prior(
    image: sitk.Image,
    prior: sitk.Image,
    *,
    modality: Literal["CT", "MR"] = "CT",
    search_margin_mm: float = 15.0,
    settings: SeedSettings = DEFAULTS,
) -> PriorSegmentation:
    """Segment a follow-up scan's lesions where a prior label map says the known lesions are.

    For each non-zero label value of ``prior`` (typically the baseline mask warped onto this scan
    by registration), the lesion is grown from the most interior lesion-like voxel of the prior
    region, in a search region reaching ``search_margin_mm`` beyond the prior region's bounding
    box, and keeps the prior's label value (the module docstring gives the method). Where the
    regions grown for two labels overlap, each voxel goes to the label whose prior region is
    nearer (distance in mm; ties to the smaller label value), so labels never overwrite each
    other arbitrarily.

    Conventions: both images are in DICOM LPS with spacing in mm, and ``prior`` must be on the
    same grid as ``image`` (same size, voxel centres within 0.001 mm): resample it first, e.g.
    with :func:`~imaging.registration.propagation.propagate_mask`. Indices in messages are
    (x, y, z) voxel indices of ``image``.

    What it cannot do: it finds only the lesions known to the prior. A new lesion needs a mask
    (or a seed); a lesion that split is returned as its part holding the seed; fragments of one
    prior label give one lesion. Lesion-like is a matter of intensity only: where registration
    put the prior on other soft tissue (CT: mediastinum, chest wall; MR: any tissue brighter or
    darker than its surroundings), that tissue is segmented, and only the doubts below flag it.
    A lesion barely distinguishable from its surroundings (a faint MR lesion) is not found.

    Parameters
    ----------
    image : the follow-up scan, CT (HU) or MR, 3-D, one value per voxel.
    prior : integer label map on ``image``'s grid; label values 1..65535, 0 = background.
    modality : "CT" (HU window ``settings.ct_window_hu``) or "MR" (contrast with the surroundings).
    search_margin_mm : how far beyond the prior region's bounding box a lesion may reach, mm.
    settings : thresholds and radii of the growing (:class:`~imaging.segmentation.SeedSettings`).

    Returns
    -------
    PriorSegmentation
        ``labels`` (UInt16, on ``image``'s grid, found lesions only), ``found`` (every non-zero
        prior label -> bool) and ``problems``. A label is not found (``found=False``, absent from
        ``labels``, a problem "label N: no lesion-like tissue where the baseline lesion maps
        (...); recorded as not found — review") when its prior region holds no lesion-like voxel
        (CT: none in the HU window; MR: no cluster of it stands out from the surroundings) — the
        lesion is gone, or registration put the prior elsewhere — or when the growing fails, or
        when nearer labels claim all of its voxels, or when what grows from it both reaches the
        edge of the search region and lies less than a third in the prior region (a misplaced
        prior grows into the surrounding organ: chest wall, mediastinum). One label's failure never stops the others.
        A found lesion is doubtful (a problem, but kept) when it reaches the edge of the search
        region (cut off or leaked), when the lesion-like tissue at its seed is thinner than
        2 mm (a vessel, scar or partial-volume rim?), or when less than a third of it lies in
        its prior region (neighbouring tissue?).

    Raises
    ------
    SegmentationError
        Either image is not 3-D or not scalar, ``prior`` is not an integer label map with values
        0..65535, ``prior`` is not on ``image``'s grid (the message names what differs),
        ``modality`` is unknown or ``search_margin_mm`` is negative.
    """
    _check_inputs(image, prior, modality, search_margin_mm)
    geom = Geometry.of(image)
    sampling = tuple(geom.spacing_mm[::-1])  # z, y, x
    array = sitk.GetArrayViewFromImage(image)
    prior_arr = sitk.GetArrayFromImage(prior).astype(np.int64, copy=False)
    values = [int(v) for v in np.unique(prior_arr) if v != 0]
    pad = [int(math.ceil(search_margin_mm / s)) for s in sampling]

    found: dict[int, bool] = {}
    problems: dict[int, list[str]] = {v: [] for v in values}
    grown: dict[int, tuple[tuple[slice, slice, slice], np.ndarray]] = {}
    depths: dict[int, float] = {}
    boxes = ndimage.find_objects(prior_arr.astype(np.int32)) if values else []
    for v in values:
        box = boxes[v - 1]
        roi = tuple(slice(max(0, s.start - p), min(n, s.stop + p)) for s, p, n in zip(box, pad, prior_arr.shape))
        sub = np.asarray(array[roi], dtype=np.float64)
        region = prior_arr[roi] == v
        seed = _prior_seed(sub, region, modality, settings, sampling)
        if isinstance(seed, str):
            found[v] = False
            problems[v].append(_not_found(v, seed))
            continue
        (z, y, x), depth_mm, _ = seed
        seed_xyz = (x + roi[2].start, y + roi[1].start, z + roi[0].start)
        try:
            seg = _segment(image, seed_xyz, roi, modality, "auto", settings, in_box=True)  # type: ignore[arg-type]
        except SegmentationError as exc:
            found[v] = False
            problems[v].append(_not_found(v, f"growing from voxel {seed_xyz} failed: {exc}"))
            continue
        found[v] = True
        grown[v] = (roi, np.asarray(sitk.GetArrayViewFromImage(seg)[roi]) > 0)  # type: ignore[assignment]
        depths[v] = depth_mm

    out = _resolve_overlaps(grown, prior_arr, sampling)
    for v, (roi, _) in grown.items():
        mine = out[roi] == v
        if not mine.any():
            found[v] = False
            problems[v].append(
                f"label {v}: all of the lesion grown for it lies nearer other labels' baseline lesions and went to "
                "them; recorded as not found — review"
            )
        elif _misplaced(mine, prior_arr[roi] == v):
            found[v] = False
            out[roi][mine] = 0
            problems[v].append(_not_found(v, (
                "the tissue grown from it runs to the edge of the search region and less than "
                f"{100 * _MIN_INSIDE:.0f} % of it lies where the baseline lesion maps: surrounding tissue, not the lesion")))
        else:
            problems[v].extend(_doubts(v, mine, prior_arr[roi] == v, depths[v], search_margin_mm))

    labels = sitk.GetImageFromArray(out)
    labels.CopyInformation(image)
    return PriorSegmentation(
        labels=labels,
        found={v: found[v] for v in values},
        problems=tuple(p for v in values for p in problems[v]),
    )


def _not_found(label: int, why: str) -> str:
    return f"label {label}: no lesion-like tissue where the baseline lesion maps ({why}); recorded as not found — review"


def _check_inputs(image: sitk.Image, prior: sitk.Image, modality: str, search_margin_mm: float) -> None:
    for name, img in (("image", image), ("prior", prior)):
        if img.GetDimension() != 3:
            raise SegmentationError(f"segment_from_prior: the {name} is {img.GetDimension()}-D; a 3-D volume is needed")
        if img.GetNumberOfComponentsPerPixel() != 1:
            raise SegmentationError(
                f"segment_from_prior: the {name} has {img.GetNumberOfComponentsPerPixel()} values per voxel; one is needed"
            )
    if prior.GetPixelID() not in _INTEGER_PIXELS:
        raise SegmentationError(
            f"segment_from_prior: the prior must be an integer label map, not {prior.GetPixelIDTypeAsString()}"
        )
    a, b = Geometry.of(image), Geometry.of(prior)
    if not a.same_grid(b):
        diffs = []
        if a.size != b.size:
            diffs.append(f"size {list(b.size)} vs the image's {list(a.size)}")
        if not np.allclose(a.spacing_mm, b.spacing_mm, rtol=0, atol=1e-6):
            diffs.append(f"spacing {np.round(b.spacing_mm, 4).tolist()} mm vs {np.round(a.spacing_mm, 4).tolist()} mm")
        if not np.allclose(a.origin_lps, b.origin_lps, rtol=0, atol=1e-3):
            diffs.append(f"origin {np.round(b.origin_lps, 3).tolist()} vs {np.round(a.origin_lps, 3).tolist()} (LPS mm)")
        if not np.allclose(a.direction, b.direction, rtol=0, atol=1e-6):
            diffs.append(f"direction {np.round(b.direction, 4).tolist()} vs {np.round(a.direction, 4).tolist()}")
        raise SegmentationError(
            "segment_from_prior: the prior label map is not on the image's grid ("
            + ("; ".join(diffs) or "voxel centres more than 0.001 mm apart")
            + "); resample it onto the image first"
        )
    arr = sitk.GetArrayViewFromImage(prior)
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 65535):
        raise SegmentationError(
            f"segment_from_prior: prior label values must be 0..65535 (UInt16 output); found {int(arr.min())}..{int(arr.max())}"
        )
    if modality not in ("CT", "MR"):
        raise SegmentationError(f"segment_from_prior: unknown modality {modality!r}; expected 'CT' or 'MR'")
    if not (math.isfinite(search_margin_mm) and search_margin_mm >= 0):
        raise SegmentationError(f"segment_from_prior: search_margin_mm must be a finite number >= 0, not {search_margin_mm!r}")


def _depth(mask: np.ndarray, sampling: tuple[float, ...]) -> np.ndarray:
    """Distance (mm) of each voxel of ``mask`` to the nearest voxel outside it (outside the array counts as outside)."""
    return ndimage.distance_transform_edt(np.pad(mask, 1), sampling=sampling)[1:-1, 1:-1, 1:-1]


def _prior_seed(
    sub: np.ndarray, region: np.ndarray, modality: str, settings: SeedSettings, sampling: tuple[float, ...]
) -> tuple[tuple[int, int, int], float, float] | str:
    """Most interior lesion-like voxel of the prior region (index in ``sub``), its depth in mm and the
    lesion-like fraction of the region; or why there is none."""
    if modality == "CT":
        lo, hi = settings.ct_window_hu
        lesion_like = (sub >= lo) & (sub <= hi)
        if not np.any(lesion_like & region):
            return (
                f"none of its {int(region.sum())} voxels is in the HU window [{lo:g}, {hi:g}]; "
                f"their median is {float(np.median(sub[region])):.0f} HU"
            )
    else:
        around_values = sub[~region]
        if around_values.size == 0:
            return "the search region holds no surroundings to compare it with"
        around = float(np.median(around_values))
        spread = 1.4826 * float(np.median(np.abs(around_values - around)))
        # the lesion's tissue: the deepest cluster of prior-region voxels far from the surroundings' median,
        # brighter or darker (noise gives only isolated voxels that far out)
        deepest, cluster = 0.0, None
        for sign in (1.0, -1.0):
            outlying = region & (sign * (sub - around) > _MR_OUTLIER_SPREADS * spread)
            if outlying.any():
                d = float(_depth(outlying, sampling).max())
                if cluster is None or d > deepest:
                    deepest, cluster = d, outlying
        what = (
            f"more than {_MR_OUTLIER_SPREADS:g} x {spread:.4g} (the surroundings' spread) from the surroundings' "
            f"median {around:.4g}"
        )
        if cluster is None:
            return f"none of its {int(region.sum())} voxels lies {what}"
        if deepest < _MR_MIN_DEPTH_MM:
            return (
                f"its voxels lying {what} reach only {deepest:.1f} mm from their edge, under "
                f"{_MR_MIN_DEPTH_MM:g} mm: noise or a thin structure"
            )
        lesion = float(np.median(sub[cluster]))
        level = around + settings.mr_fraction * (lesion - around)
        lesion_like = sub >= level if lesion >= around else sub <= level
    inside = lesion_like & region
    depth = _depth(inside, sampling)
    k = int(np.argmax(depth))
    z, y, x = (int(i) for i in np.unravel_index(k, depth.shape))
    return (z, y, x), float(depth.flat[k]), float(inside.sum() / region.sum())


def _touches_edge(mask: np.ndarray) -> bool:
    edge = np.zeros(mask.shape, dtype=bool)
    edge[[0, -1], :, :] = edge[:, [0, -1], :] = edge[:, :, [0, -1]] = True
    return bool(np.any(mask & edge))


def _misplaced(mask: np.ndarray, region: np.ndarray) -> bool:
    """Grown into what surrounds the prior, not the lesion: it reaches the search region's edge (leaked) and
    less than ``_MIN_INSIDE`` of it lies in the prior region (e.g. a prior put on the chest wall or the
    mediastinum by a registration error)."""
    inside = float(np.count_nonzero(mask & region)) / max(1, int(np.count_nonzero(mask)))
    return _touches_edge(mask) and inside < _MIN_INSIDE


def _doubts(label: int, mask: np.ndarray, region: np.ndarray, depth_mm: float, margin_mm: float) -> list[str]:
    out = []
    edge = np.zeros(mask.shape, dtype=bool)
    edge[[0, -1], :, :] = edge[:, [0, -1], :] = edge[:, :, [0, -1]] = True
    if np.any(mask & edge):
        out.append(
            f"label {label}: the lesion reaches the edge of its search region (the baseline lesion's box + "
            f"{margin_mm:g} mm, or the image's edge): it may be cut off there or have leaked — review"
        )
    if depth_mm < _THIN_MM:
        out.append(
            f"label {label}: the lesion-like tissue where the baseline lesion maps is at most {depth_mm:.1f} mm from "
            f"its edge (under {_THIN_MM:g} mm): it may be a vessel, a scar or a partial-volume rim — review"
        )
    inside = float(np.count_nonzero(mask & region)) / max(1, int(np.count_nonzero(mask)))
    if inside < _MIN_INSIDE:
        out.append(
            f"label {label}: only {100 * inside:.0f} % of the lesion lies where the baseline lesion maps: "
            f"it may be neighbouring tissue (or a lesion that grew or moved far) — review"
        )
    return out


def _resolve_overlaps(
    grown: dict[int, tuple[tuple[slice, slice, slice], np.ndarray]], prior: np.ndarray, sampling: tuple[float, ...]
) -> np.ndarray:
    """UInt16 label map of the grown regions; a voxel claimed by several labels goes to the one whose prior
    region is nearest (mm), ties to the smaller label value."""
    out = np.zeros(prior.shape, dtype=np.uint16)
    claims = np.zeros(prior.shape, dtype=np.uint16)
    for v, (roi, mask) in grown.items():
        out[roi][mask] = v
        claims[roi] += mask
    contested = np.flatnonzero(claims > 1)
    if contested.size == 0:
        return out
    best = np.full(contested.size, np.inf)
    winner = np.zeros(contested.size, dtype=np.uint16)
    for v in sorted(grown):
        roi, mask = grown[v]
        mine = mask & (claims[roi] > 1)
        if not mine.any():
            continue
        # the prior region lies wholly inside the search region, so this distance is exact
        dist = ndimage.distance_transform_edt(prior[roi] != v, sampling=sampling)[mine]
        local = np.nonzero(mine)
        flat = np.ravel_multi_index(tuple(i + s.start for i, s in zip(local, roi)), prior.shape)
        pos = np.searchsorted(contested, flat)
        nearer = dist < best[pos]
        best[pos[nearer]] = dist[nearer]
        winner[pos[nearer]] = v
    out.flat[contested] = winner
    return out
