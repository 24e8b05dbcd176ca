"""Tumour compartments of gliomas in a label map, and what RANO measures on them.

A glioma label map (BraTS-style) gives every voxel a compartment: enhancing tumour, necrosis
(non-enhancing tumour core), non-enhancing tumour / FLAIR hyperintensity (oedema) and, after
surgery, the resection cavity. RANO (Wen 2010) measures the **enhancing lesions**, each by the
outer outline of its enhancement (a necrotic centre is part of the lesion, a cavity never is),
and follows the **FLAIR abnormality** as a whole.

- :class:`Compartments`, :data:`PRESETS`, :func:`compartments_from_config`: which label values
  form which compartment.
- :func:`enhancing_lesions`: one label per enhancing lesion, on the label map's grid.
- :func:`flair_burden`: binary mask of all abnormal tissue, on the FLAIR grid when given.
- :func:`rano_measurability`: RANO 2010 measurable disease, with the figures in the reason.

Slices are the acquisition plane of the label map (its first two index axes, whatever their
direction cosines), as in :mod:`imaging.measurement`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from imaging.io.geometry import Geometry
from imaging.measurement.lesions import LesionMeasurement

FIELDS = ("enhancing", "necrosis", "non_enhancing", "cavity")

#: RANO 2010 (Wen 2010, measurable disease): both perpendicular diameters >= 10 mm ...
RANO_MIN_DIAMETER_MM = 10.0
#: ... visible on two or more slices ...
RANO_MIN_SLICES = 2
#: ... "preferably, at most, 5 mm apart"; with thicker slices the minimum is twice the slice thickness.
RANO_SLICE_LIMIT_MM = 5.0

_CC26 = np.ones((3, 3, 3), dtype=bool)
# Holes of each slice, all slices at once: 4-connected background within a slice, never across slices.
_IN_PLANE_4 = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_4[1] = ndimage.generate_binary_structure(2, 1)


def _label_values(value: object, name: str) -> tuple[int, ...]:
    """A compartment's label values as a sorted tuple; ``ValueError`` naming ``name`` when invalid."""
    if value is None:
        return ()
    items = [value] if isinstance(value, (int, np.integer, str, float)) else value
    if not isinstance(items, Iterable) or isinstance(items, Mapping):
        raise ValueError(f"compartments.{name}: a label value or a list of label values is required, "
                         f"got {type(value).__name__}")
    out = set()
    for v in items:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"compartments.{name}: label values must be integers, got {v!r}")
        if v < 1:
            raise ValueError(f"compartments.{name}: label values must be >= 1 (0 is background), got {int(v)}")
        out.add(int(v))
    return tuple(sorted(out))


@dataclass(frozen=True)
class Compartments:
    """Label values of the tumour compartments of a glioma label map.

    Attributes
    ----------
    enhancing : enhancing tumour (what RANO measures); at least one value.
    necrosis : necrosis / non-enhancing tumour core, inside the enhancing rim.
    non_enhancing : non-enhancing tumour and FLAIR hyperintensity (oedema).
    cavity : resection cavity (never measured as tumour).

    Values are integers >= 1 (0 is background), each in at most one compartment; lists are
    accepted and stored as sorted tuples. Invalid values raise ``ValueError`` naming the field.
    """

    enhancing: tuple[int, ...]
    necrosis: tuple[int, ...] = ()
    non_enhancing: tuple[int, ...] = ()
    cavity: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        seen: dict[int, str] = {}
        for f in fields(self):
            values = _label_values(getattr(self, f.name), f.name)
            for v in values:
                if v in seen:
                    raise ValueError(f"compartments: label {v} is in both {seen[v]} and {f.name}; "
                                     "a label value belongs to one compartment")
                seen[v] = f.name
            object.__setattr__(self, f.name, values)
        if not self.enhancing:
            raise ValueError("compartments.enhancing: at least one label value is required "
                             "(RANO measures the enhancing tumour)")

    @property
    def abnormal(self) -> tuple[int, ...]:
        """Every label abnormal on FLAIR: non-enhancing + enhancing + necrosis (not the cavity)."""
        return tuple(sorted(self.enhancing + self.necrosis + self.non_enhancing))

    def to_dict(self) -> dict[str, list[int]]:
        return {name: list(getattr(self, name)) for name in FIELDS}


#: BraTS label conventions. 2021 (Baid 2021): 1 necrotic / non-enhancing tumour core (NCR/NET),
#: 2 peritumoural oedema, 4 enhancing tumour. 2023 (adult glioma): 1 necrosis (NCR), 2 surrounding
#: non-enhancing FLAIR hyperintensity (SNFH), 3 enhancing tumour. Neither has a cavity label.
PRESETS: dict[str, Compartments] = {
    "brats2021": Compartments(enhancing=(4,), necrosis=(1,), non_enhancing=(2,)),
    "brats2023": Compartments(enhancing=(3,), necrosis=(1,), non_enhancing=(2,)),
}


def compartments_from_config(value: str | Mapping | Compartments) -> Compartments:
    """Compartments from a config value: a preset name or a mapping.

    Parameters
    ----------
    value : ``"brats2021"`` / ``"brats2023"`` (:data:`PRESETS`, case-insensitive), or a mapping
        ``{enhancing: [..], necrosis: [..], non_enhancing: [..], cavity: [..]}`` (a single integer
        stands for a one-value list; absent or null fields are empty; ``enhancing`` is required).

    Raises
    ------
    ValueError
        Naming the field: unknown preset or field, non-integer or < 1 values, a value in two
        compartments, no enhancing label.
    """
    if isinstance(value, Compartments):
        return value
    if isinstance(value, str):
        key = value.strip().lower()
        if key not in PRESETS:
            raise ValueError(f"compartments: unknown preset {value!r}; known presets: {', '.join(sorted(PRESETS))}")
        return PRESETS[key]
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in FIELDS]
        if unknown:
            raise ValueError(f"compartments: unknown field {unknown[0]!r}; expected {', '.join(FIELDS)}")
        return Compartments(**{name: _label_values(value.get(name), name) for name in FIELDS})
    raise ValueError(f"compartments: a preset name ({', '.join(sorted(PRESETS))}) or a mapping of "
                     f"{', '.join(FIELDS)} to label values is required, got {type(value).__name__}")


def _label_array(labels: sitk.Image, what: str) -> np.ndarray:
    if labels.GetDimension() != 3 or labels.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{what}: a 3-D scalar label map is required, got {labels.GetDimension()}-D with "
                         f"{labels.GetNumberOfComponentsPerPixel()} component(s)")
    array = sitk.GetArrayViewFromImage(labels)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what}: an integer label map is required, got pixel type {array.dtype}")
    return np.asarray(array)


def compartment_mask(labels: sitk.Image, comp: Compartments, *names: str) -> sitk.Image:
    """UInt8 mask (0/1) of the named compartments (e.g. ``"cavity"``), on the label map's grid."""
    bad = [n for n in names if n not in FIELDS]
    if bad or not names:
        raise ValueError(f"compartment_mask: compartments {list(bad or names)!r}; expected some of {', '.join(FIELDS)}")
    array = _label_array(labels, "compartment_mask")
    values = [v for n in names for v in getattr(comp, n)]
    out = sitk.GetImageFromArray(np.isin(array, values).astype(np.uint8))
    out.CopyInformation(labels)
    return out


def enhancing_lesions(labels: sitk.Image, comp: Compartments) -> sitk.Image:
    """Label map of the enhancing lesions RANO measures, on the input's grid.

    Each 26-connected component of enhancing voxels is a lesion, with the necrosis it encloses:
    the outer outline of the enhancement. A necrosis voxel is filled in when the component
    encloses it in its slice (acquisition plane; 4-connected background, the dual of the 8-connected
    enhancement). A voxel enclosed in 3-D (6-connected background) is always enclosed in its slice
    (an in-slice path out would be a 3-D path out), so this also fills all necrosis enclosed in 3-D;
    it also fills the slices a cup-shaped rim closes around while the necrosis escapes through an
    open end, and not the necrosis beyond it. Necrosis not enclosed (beside the rim, through an open
    end) is not part of the lesion, nor are unlabelled or non-enhancing voxels inside the rim. No
    cavity voxel is ever part of a lesion, even enclosed.

    An enhancing component lying wholly inside another's outline (a nodule floating in a necrotic
    core) belongs to the outer lesion: RANO measures the outer outline, not the islands inside it.

    Returns
    -------
    UInt16 label map, lesions 1..n by decreasing voxel count (ties: the lesion whose first voxel in
    (slice, row, column) order comes first), 0 elsewhere; the input's geometry.
    """
    array = _label_array(labels, "enhancing_lesions")
    enhancing = np.isin(array, comp.enhancing)
    necrosis = np.isin(array, comp.necrosis) if comp.necrosis else np.zeros_like(enhancing)
    cavity = np.isin(array, comp.cavity) if comp.cavity else np.zeros_like(enhancing)
    necrosis &= ~cavity  # (compartments are disjoint; kept explicit: the cavity is never tumour)

    cc, n = ndimage.label(enhancing, structure=_CC26)
    out = np.zeros(array.shape, dtype=np.uint16)
    if n == 0:
        img = sitk.GetImageFromArray(out)
        img.CopyInformation(labels)
        return img
    if n > np.iinfo(np.uint16).max:
        raise ValueError(f"enhancing_lesions: {n} enhancing components; at most 65535 lesions in a UInt16 map")
    boxes = ndimage.find_objects(cc)
    sizes = np.bincount(cc.ravel(), minlength=n + 1)

    # Holes of each component in its slices (crop = its bounding box: anything it encloses lies inside).
    holes: list[tuple[tuple[slice, ...], np.ndarray]] = []
    for i, box in enumerate(boxes, start=1):
        part = cc[box] == i
        holes.append((box, ndimage.binary_fill_holes(part, structure=_IN_PLANE_4) & ~part))

    # Components wholly inside another's holes join the outermost such component.
    parent = np.arange(n + 1)
    reach = np.zeros(n + 1, dtype=np.int64)  # size of the outline of the enclosing component chosen
    for i, (box, hole) in enumerate(holes, start=1):
        inside = np.bincount(cc[box][hole], minlength=n + 1)
        for j in np.flatnonzero(inside[1:]) + 1:
            if j != i and inside[j] == sizes[j]:
                outline = int(sizes[i] + hole.sum())
                if outline > reach[j]:
                    parent[j], reach[j] = i, outline

    def root(i: int) -> int:
        seen = set()
        while parent[i] != i and i not in seen:
            seen.add(i)
            i = int(parent[i])
        return i

    groups: dict[int, list[int]] = {}
    for i in range(1, n + 1):
        groups.setdefault(root(i), []).append(i)

    # Paint each lesion: its enhancement, then the necrosis in its holes (a voxel enclosed by two
    # unrelated lesions goes to the larger enhancement).
    order = sorted(groups, key=lambda r: (-sum(int(sizes[i]) for i in groups[r]), r))
    provisional = np.zeros(array.shape, dtype=np.int32)
    for tag, r in enumerate(order, start=1):
        for i in groups[r]:
            box = boxes[i - 1]
            provisional[box][cc[box] == i] = tag
    for tag, r in enumerate(order, start=1):
        for i in groups[r]:
            box, hole = holes[i - 1]
            view = provisional[box]
            fill = hole & necrosis[box] & (view == 0)
            view[fill] = tag

    # Final numbering: decreasing voxel count, ties by first voxel in memory order.
    flat = provisional.ravel()
    counts = np.bincount(flat, minlength=len(order) + 1)
    nz = np.flatnonzero(flat)
    first = np.full(len(order) + 1, flat.size, dtype=np.int64)
    np.minimum.at(first, flat[nz], nz)
    ranked = sorted(range(1, len(order) + 1), key=lambda t: (-int(counts[t]), int(first[t])))
    lut = np.zeros(len(order) + 1, dtype=np.uint16)
    lut[ranked] = np.arange(1, len(ranked) + 1, dtype=np.uint16)
    out = lut[provisional]
    img = sitk.GetImageFromArray(out)
    img.CopyInformation(labels)
    return img


def flair_burden(
    labels: sitk.Image,
    comp: Compartments,
    flair: sitk.Image | None = None,
    transform: sitk.Transform | None = None,
) -> sitk.Image:
    """Binary mask (UInt8 0/1) of everything abnormal on FLAIR: non-enhancing + enhancing + necrosis, minus cavity.

    Parameters
    ----------
    labels : the compartment label map (usually on the T1c grid).
    comp : its compartments.
    flair : when given, the mask is returned on this image's grid (its size, spacing, origin and
        direction; its pixels are not read), resampled by nearest neighbour; else on the label grid.
    transform : maps FLAIR physical points (LPS mm) to label-map physical points (ITK's resampling
        convention: the fixed-to-moving transform of a registration with FLAIR fixed, label map
        moving); identity when ``None``. Requires ``flair``.
    """
    array = _label_array(labels, "flair_burden")
    abnormal = np.isin(array, comp.abnormal)
    if comp.cavity:
        abnormal &= ~np.isin(array, comp.cavity)
    mask = sitk.GetImageFromArray(abnormal.astype(np.uint8))
    mask.CopyInformation(labels)
    if flair is None:
        if transform is not None:
            raise ValueError("flair_burden: a transform was given without the FLAIR image whose grid it maps from")
        return mask
    if flair.GetDimension() != 3:
        raise ValueError(f"flair_burden: a 3-D FLAIR image is required, got {flair.GetDimension()}-D")
    if transform is None:
        transform = sitk.Transform(3, sitk.sitkIdentity)
    elif transform.GetDimension() != 3:
        raise ValueError(f"flair_burden: a 3-D transform is required, got {transform.GetDimension()}-D")
    return sitk.Resample(mask, flair, transform, sitk.sitkNearestNeighbor, 0.0, sitk.sitkUInt8)


def _lesion_voxels(m: LesionMeasurement, labels_or_mask: sitk.Image) -> np.ndarray:
    """The voxels of ``m``'s lesion: label ``m.label`` of a label map, else the non-zero voxels of a binary mask."""
    array = _label_array(labels_or_mask, "rano_measurability")
    lesion = array == m.label
    if not lesion.any():
        values = np.unique(array)
        if set(values.tolist()) <= {0, 1}:
            lesion = array != 0
        else:
            raise ValueError(f"rano_measurability: label {m.label} is not in the label map (labels "
                             f"{values[values != 0].tolist()[:10]}); pass the map the lesion was measured on")
    if int(lesion.sum()) != m.n_voxels:
        raise ValueError(f"rano_measurability: lesion {m.label} has {int(lesion.sum())} voxels in this image but "
                         f"{m.n_voxels} in its measurement; pass the map the lesion was measured on")
    return lesion


def rano_measurability(
    m: LesionMeasurement,
    labels_or_mask: sitk.Image,
    *,
    compartment_labels: sitk.Image | None = None,
    comp: Compartments | None = None,
    slice_thickness_mm: float | None = None,
    min_diameter_mm: float = RANO_MIN_DIAMETER_MM,
    min_slices: int = RANO_MIN_SLICES,
) -> tuple[bool, str]:
    """Whether an enhancing lesion is measurable disease by RANO (Wen 2010), and why.

    Wen 2010, measurable disease: contrast-enhancing lesions with two perpendicular diameters of at
    least 10 mm, visible on two or more axial slices preferably at most 5 mm apart (0 mm skip); with
    thicker slices the minimum is twice the slice thickness. Lesions around a cyst or surgical cavity
    are non-measurable unless there is a nodular component of >= 10 mm; the cavity is not measured.

    Read here: the two diameters are those of the RANO product (``product_long_axis_mm`` x
    ``perpendicular_mm``, the slice of the largest product); slices are those of the acquisition
    plane the lesion has voxels on. When the compartments are given and the lesion encloses or
    touches a cavity voxel (in its slice outlines, or 26-adjacent to them), its nodular component must
    also reach the minimum: the widest ball inside the lesion's enhancing tissue, in 3-D (the cap of
    a rim over a cavity is a wide disc in its slice but a thin plate, not a nodule), centred on a
    voxel with enhancement on an adjacent slice too (:func:`_nodule_diameter_mm`). Measured on
    analytic balls of 8-20 mm: -2.0 to +0.7 mm (mean -0.5) on 0.9 x 0.9 x 3 mm voxels, -0.6 to
    +0.5 mm on 1 mm voxels; rims 3-5 mm thick around a cavity read 4.5-7.9 mm. The reason then says to
    measure the nodule, as ``m``'s diameters run across a cavity the lesion encloses (its slices are
    filled for diameters).

    Parameters
    ----------
    m : the lesion's measurement (:func:`imaging.measurement.measure_lesions` on
        :func:`enhancing_lesions`' output, or on a lesion mask).
    labels_or_mask : the image ``m`` was measured on: a label map (lesion = ``m.label``) or a binary
        mask of the lesion; gives the slice spacing and the slices.
    compartment_labels, comp : the compartment label map on the same grid and its compartments
        (both or neither): enables the cavity rule.
    slice_thickness_mm : the slice thickness (+ gap) when known from the DICOM header; default the
        slice spacing of the grid.

    Returns
    -------
    (measurable, reason), e.g. ``(True, "18.2 x 12.1 mm on 5 slices: measurable")`` or
    ``(False, "12.4 x 8.0 mm on 3 slices, 8.0 mm perpendicular < 10 mm: non-measurable")``.
    """
    lesion = _lesion_voxels(m, labels_or_mask)
    geom = Geometry.of(labels_or_mask)
    slices = np.flatnonzero(lesion.any(axis=(1, 2)))
    n_slices = int(slices.size)
    thickness = float(geom.spacing_mm[2] if slice_thickness_mm is None else slice_thickness_mm)
    minimum = float(min_diameter_mm)
    why_min = f"{minimum:g} mm"
    if thickness > RANO_SLICE_LIMIT_MM and 2.0 * thickness > minimum:
        minimum = 2.0 * thickness
        why_min = f"{minimum:g} mm (twice the {thickness:g} mm slices)"

    long_mm, perp_mm = m.product_long_axis_mm, m.perpendicular_mm
    figures = f"{long_mm:.1f} x {perp_mm:.1f} mm on {n_slices} slice{'s' if n_slices != 1 else ''}"
    failures = []
    if long_mm < minimum:
        failures.append(f"{long_mm:.1f} mm long axis < {why_min}")
    if perp_mm < minimum:
        failures.append(f"{perp_mm:.1f} mm perpendicular < {why_min}")
    if n_slices < min_slices:
        failures.append(f"visible on {n_slices} < {min_slices} slices")

    note = ""
    if (compartment_labels is None) != (comp is None):
        raise ValueError("rano_measurability: give both compartment_labels and comp, or neither")
    if compartment_labels is not None and comp is not None and comp.cavity:
        if not Geometry.of(compartment_labels).same_grid(geom):
            raise ValueError("rano_measurability: the compartment label map is not on the lesion's grid")
        comp_array = _label_array(compartment_labels, "rano_measurability")
        cav = np.isin(comp_array, comp.cavity)
        outline = ndimage.binary_fill_holes(lesion, structure=_IN_PLANE_4)
        near = ndimage.binary_dilation(outline, structure=_CC26)
        if (cav & near).any():
            encloses = bool((cav & outline).any())
            where = "surrounds" if encloses else "borders"
            nodule = _nodule_diameter_mm(lesion & np.isin(comp_array, comp.enhancing), geom.spacing_mm)
            if nodule < minimum:
                failures.append(f"{where} a resection cavity, nodular component {nodule:.1f} mm < {why_min}")
            else:
                note = (f", {where} a resection cavity with a {nodule:.1f} mm nodular component "
                        "(measure the nodule, not the cavity)")
    if failures:
        return False, f"{figures}, {', '.join(failures)}: non-measurable"
    return True, f"{figures}{note}: measurable"


def _nodule_diameter_mm(solid: np.ndarray, spacing_xyz: tuple[float, float, float]) -> float:
    """Diameter of the widest ball inside ``solid`` (z, y, x) centred on a voxel visible on two slices, mm.

    Twice the largest physical distance from such a voxel centre to the nearest voxel centre outside,
    plus half the voxel's chord along that direction: the boundary lies between the last centre in and
    the first out, and the deepest centre is on average a quarter voxel off the ball's centre along
    the limiting direction (see :func:`rano_measurability` for the measured accuracy).
    """
    box = ndimage.find_objects(solid.astype(np.uint8))
    if not box or box[0] is None:
        return 0.0
    pad = np.pad(solid[box[0]], 1)
    s = np.array([spacing_xyz[2], spacing_xyz[1], spacing_xyz[0]], dtype=float)  # (z, y, x)
    dist, nearest = ndimage.distance_transform_edt(pad, sampling=tuple(s), return_indices=True)
    two_slices = np.zeros_like(pad)
    two_slices[1:] |= pad[:-1]
    two_slices[:-1] |= pad[1:]
    two_slices &= pad
    if not two_slices.any():
        return 0.0
    p = np.unravel_index(int(np.argmax(np.where(two_slices, dist, -1.0))), pad.shape)
    v = np.abs((nearest[(slice(None), *p)] - np.array(p)) * s)
    u = v / np.linalg.norm(v)
    chord = min(float(s[i] / u[i]) for i in range(3) if u[i] > 1e-9)
    return 2.0 * float(dist[p]) + 0.5 * chord
