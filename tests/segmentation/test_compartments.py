"""Glioma compartments: configs, the enhancing lesions RANO measures, the FLAIR burden's mask, RANO measurability.

Truth is analytic (tests/segmentation/glioma_phantom.py and the shapes below, digitised by voxel-centre
inclusion on 0.9 x 0.9 x 3 mm grids, flipped or oblique). Voxel sets are compared exactly with the
digitised truth; volumes within 3 % of the analytic ones (voxel counting on 3 mm slices, lesions of
7-8 slices: docs/measurement.md measures worst cases near 1 %); diameters within max(one in-plane
voxel, 2 %), the project's tolerance (tests/measurement/test_lesions.py).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from imaging.io.geometry import Geometry
from imaging.measurement.lesions import measure_lesions
from imaging.segmentation.compartments import (
    PRESETS,
    Compartments,
    compartment_mask,
    compartments_from_config,
    enhancing_lesions,
    flair_burden,
    rano_measurability,
)
from tests.data_factory import ellipsoid_labels, make_image
from tests.segmentation.glioma_phantom import COMP, ENH_AXES, OEDEMA_R, T1C_DIRECTIONS, T1C_SPACING, glioma

VOXEL_MM3 = float(np.prod(T1C_SPACING))
OBLIQUE = T1C_DIRECTIONS["oblique"]


def _diameter_tol(mm: float) -> float:
    return max(T1C_SPACING[0], 0.02 * mm)


def _grid(size_xyz, centre_index) -> np.ndarray:
    """Coordinates (z, y, x, 3) in mm along the index axes, from ``centre_index``, on the T1c spacing."""
    nx, ny, nz = size_xyz
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    return (np.stack([i, j, k], axis=-1) - np.asarray(centre_index)) * np.asarray(T1C_SPACING)


def _image(array: np.ndarray, direction=OBLIQUE) -> sitk.Image:
    return make_image(array.astype(np.uint8), T1C_SPACING, (-20.0, 35.0, 110.0), direction)


# --- configs -------------------------------------------------------------------------------------

def test_presets_and_mappings():
    assert PRESETS["brats2021"] == Compartments(enhancing=(4,), necrosis=(1,), non_enhancing=(2,), cavity=())
    assert PRESETS["brats2023"] == Compartments(enhancing=(3,), necrosis=(1,), non_enhancing=(2,), cavity=())
    assert compartments_from_config(" BraTS2023 ") is PRESETS["brats2023"]
    comp = compartments_from_config({"enhancing": 3, "necrosis": [1, 7, 1], "non_enhancing": [2], "cavity": [4]})
    assert comp == Compartments(enhancing=(3,), necrosis=(1, 7), non_enhancing=(2,), cavity=(4,))
    assert comp.abnormal == (1, 2, 3, 7)
    assert compartments_from_config({"enhancing": [4], "cavity": None}).cavity == ()
    assert compartments_from_config(comp) is comp
    assert compartments_from_config(comp.to_dict()) == comp


@pytest.mark.parametrize("value, message", [
    ("brats2020", "compartments: unknown preset 'brats2020'; known presets: brats2021, brats2023"),
    ({"enhancing": [4], "necrosis": [1, 2], "non_enhancing": [2]},
     "compartments: label 2 is in both necrosis and non_enhancing"),
    ({"enhancing": [4], "cavity": [4]}, "compartments: label 4 is in both enhancing and cavity"),
    ({"enhancing": [4.0]}, "compartments.enhancing: label values must be integers, got 4.0"),
    ({"enhancing": [4], "cavity": ["5"]}, "compartments.cavity: label values must be integers, got '5'"),
    ({"enhancing": [4], "necrosis": [True]}, "compartments.necrosis: label values must be integers, got True"),
    ({"enhancing": [4], "non_enhancing": [0]}, "compartments.non_enhancing: label values must be >= 1 (0 is background)"),
    ({"enhancing": [4], "edema": [2]}, "compartments: unknown field 'edema'"),
    ({"necrosis": [1]}, "compartments.enhancing: at least one label value is required"),
    ({"enhancing": {"et": 4}}, "compartments.enhancing: a label value or a list of label values is required"),
    (42, "compartments: a preset name (brats2021, brats2023) or a mapping"),
])
def test_bad_configs_name_the_field(value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        compartments_from_config(value)


# --- enhancing lesions ---------------------------------------------------------------------------

@pytest.mark.parametrize("direction", sorted(T1C_DIRECTIONS))
def test_enhancing_lesion_is_the_outer_outline(direction):
    g = glioma(direction)
    lesions = enhancing_lesions(g.labels, COMP)
    assert Geometry.of(lesions) == Geometry.of(g.labels)
    assert lesions.GetPixelID() == sitk.sitkUInt16
    out = sitk.GetArrayFromImage(lesions)
    # the rim and its floating nodule are two 26-connected components; the nodule lies inside the rim's
    # outline, so they are one lesion, with the enclosed core: exactly the digitised outer ellipsoid
    enhancing = sitk.GetArrayFromImage(g.labels) == 4
    assert ndimage.label(enhancing, structure=np.ones((3, 3, 3)))[1] == 2
    assert out.max() == 1
    np.testing.assert_array_equal(out == 1, g.outer)
    assert g.core.sum() > 0 and (out[g.core] == 1).all()  # enclosed necrosis filled
    assert g.blob.sum() > 0 and not out[g.blob].any()  # necrosis touching the rim from outside: not
    assert not out[g.cavity].any()
    volume = (out == 1).sum() * VOXEL_MM3
    assert volume == pytest.approx(g.enhancing_volume_mm3, rel=0.03)  # 5251.2 vs 5277.9 mm3

    (m,) = measure_lesions(lesions)
    a, b, _ = ENH_AXES
    long_true, perp_true = 2 * a * np.sqrt(g.t1c_f), 2 * b * np.sqrt(g.t1c_f)  # 27.94, 19.96 mm
    assert abs(m.long_axis_mm - long_true) <= _diameter_tol(long_true)  # 27.84
    assert abs(m.perpendicular_mm - perp_true) <= _diameter_tol(perp_true)  # 19.84
    ok, reason = rano_measurability(m, lesions, compartment_labels=g.labels, comp=COMP)
    assert ok and reason == f"{m.product_long_axis_mm:.1f} x {m.perpendicular_mm:.1f} mm on 6 slices: measurable"


def test_open_rim_fills_the_slices_it_encloses_and_no_more():
    """A cup: rim cut open above qz = 4.5 mm. The core is open to the outside in 3-D, but enclosed in
    every slice the rim rings (dz = -6 .. 3 mm); the core's slice beyond the opening (dz = 6) is not filled."""
    q = _grid((30, 30, 13), (14.4, 15.2, 6.0))
    r = np.linalg.norm(q, axis=-1)
    core = r <= 7.0
    rim = (r <= 11.0) & ~core & (q[..., 2] <= 4.5)
    array = np.where(rim, 4, np.where(core, 1, 0))
    out = sitk.GetArrayFromImage(enhancing_lesions(_image(array), COMP))
    expected = rim | (core & (q[..., 2] <= 4.5))
    np.testing.assert_array_equal(out == 1, expected)
    assert (core & (q[..., 2] > 4.5)).sum() > 0 and not out[core & (q[..., 2] > 4.5)].any()
    # a 3-D fill alone would have filled none of it
    assert not (ndimage.binary_fill_holes(rim) & core).any()
    # the ball of radius 11 below qz = 4.5 (the top slice's slab ends there): V - cap of height 6.5
    truth = 4 / 3 * np.pi * 11**3 - np.pi * 6.5**2 * (3 * 11 - 6.5) / 3  # 4402.9 mm3
    assert out.sum() * VOXEL_MM3 == pytest.approx(truth, rel=0.03)


def _rim_around_cavity(split_core: bool):
    q = _grid((26, 26, 9), (12.6, 12.2, 4.3))
    r = np.linalg.norm(q, axis=-1)
    inner = r <= 6.0
    rim = (r <= 10.0) & ~inner
    cav = inner & (q[..., 0] < 0) if split_core else inner
    array = np.where(rim, 4, np.where(cav, 6, np.where(inner, 1, 0)))
    return _image(array, np.diag([-1.0, 1.0, -1.0])), rim, cav, inner & ~cav


def test_cavity_is_never_part_of_a_lesion_even_enclosed():
    labels, rim, cav, necrosis = _rim_around_cavity(split_core=True)
    out = sitk.GetArrayFromImage(enhancing_lesions(labels, COMP))
    np.testing.assert_array_equal(out == 1, rim | necrosis)
    assert not out[cav].any()
    truth = 4 / 3 * np.pi * (10**3 - 6**3) + 0.5 * 4 / 3 * np.pi * 6**3  # rim + half the core: 3736.4 mm3
    assert out.sum() * VOXEL_MM3 == pytest.approx(truth, rel=0.03)


def test_rim_around_a_cavity_is_not_measurable_without_a_nodule():
    labels, *_ = _rim_around_cavity(split_core=False)
    lesions = enhancing_lesions(labels, COMP)
    (m,) = measure_lesions(lesions)
    # measure_lesions fills each slice for diameters: they run across the cavity (20 x 20 mm)
    assert m.perpendicular_mm > 18
    assert rano_measurability(m, lesions)[0]  # without the compartments, the cavity is not seen
    ok, reason = rano_measurability(m, lesions, compartment_labels=labels, comp=COMP)
    assert not ok
    nodule = float(re.search(r"nodular component ([\d.]+) mm", reason).group(1))
    assert nodule < 9.0, reason  # the 4 mm rim; its caps are 16 mm discs in their slices but 4 mm plates
    assert reason.endswith(f"surrounds a resection cavity, nodular component {nodule:.1f} mm < 10 mm: non-measurable")


def test_nodule_beside_a_cavity_is_measurable_with_a_note():
    q = _grid((40, 26, 9), (12.0, 12.2, 4.0))
    nodule = np.linalg.norm(q, axis=-1) <= 7.0
    cav = np.linalg.norm(q - np.array([14.0, 0.0, 0.0]), axis=-1) <= 8.0  # touching: 1 mm overlap, the nodule wins
    labels = _image(np.where(nodule, 4, np.where(cav, 6, 0)))
    lesions = enhancing_lesions(labels, COMP)
    (m,) = measure_lesions(lesions)
    ok, reason = rano_measurability(m, lesions, compartment_labels=labels, comp=COMP)
    size = float(re.search(r"with a ([\d.]+) mm nodular component", reason).group(1))
    assert ok and abs(size - 14.0) <= 2.0, reason  # the estimator's range on these voxels (docstring)
    assert "borders a resection cavity" in reason and reason.endswith("(measure the nodule, not the cavity): measurable")


def test_lesions_are_numbered_by_decreasing_volume_ties_by_position():
    q = _grid((80, 40, 12), (0.0, 20.3, 6.2))
    x = q[..., 0]
    balls = {"a": (15.3, 8.0), "b": (34.3, 6.0), "c": (66.3, 4.0), "d": (50.3, 4.0)}  # x index of centre, radius mm
    masks = {k: np.linalg.norm(q - np.array([cx * T1C_SPACING[0], 0, 0]), axis=-1) <= rad
             for k, (cx, rad) in balls.items()}
    assert masks["c"].sum() == masks["d"].sum()  # twins: same sub-voxel placement
    array = np.zeros(x.shape, dtype=np.uint8)
    for m in masks.values():
        array[m] = 3
    out = sitk.GetArrayFromImage(enhancing_lesions(_image(array), PRESETS["brats2023"]))
    assert {k: int(np.unique(out[m])[0]) for k, m in masks.items()} == {"a": 1, "b": 2, "d": 3, "c": 4}


def test_no_enhancement_and_bad_maps():
    labels = _image(np.full((4, 5, 6), 2))
    out = enhancing_lesions(labels, COMP)
    assert Geometry.of(out) == Geometry.of(labels) and not sitk.GetArrayFromImage(out).any()
    with pytest.raises(ValueError, match="integer label map"):
        enhancing_lesions(sitk.Cast(labels, sitk.sitkFloat32), COMP)
    with pytest.raises(ValueError, match="3-D scalar label map"):
        enhancing_lesions(sitk.Image(8, 8, sitk.sitkUInt8), COMP)
    with pytest.raises(ValueError, match="compartment_mask"):
        compartment_mask(labels, COMP, "oedema")


# --- FLAIR burden mask ---------------------------------------------------------------------------

@pytest.mark.parametrize("direction", sorted(T1C_DIRECTIONS))
def test_flair_burden_on_the_label_grid(direction):
    g = glioma(direction)
    mask = flair_burden(g.labels, COMP)
    assert Geometry.of(mask) == Geometry.of(g.labels) and mask.GetPixelID() == sitk.sitkUInt8
    array = sitk.GetArrayFromImage(g.labels)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask) == 1, np.isin(array, (1, 2, 4)))
    assert not sitk.GetArrayFromImage(mask)[g.cavity].any()
    cavity = sitk.GetArrayFromImage(compartment_mask(g.labels, COMP, "cavity")) == 1
    np.testing.assert_array_equal(cavity, g.cavity)


@pytest.mark.parametrize("direction", sorted(T1C_DIRECTIONS))
def test_flair_burden_on_the_flair_grid_through_the_transform(direction):
    """Every FLAIR voxel whose true position (through the known rigid motion) lies farther than half a
    T1c voxel diagonal (1.63 mm, what nearest neighbour can move a boundary) from the oedema sphere's
    and the cavity's surfaces is classified exactly; the transform's direction is therefore checked."""
    g = glioma(direction)
    mask = flair_burden(g.labels, COMP, g.flair, g.flair_to_t1c)
    assert Geometry.of(mask) == Geometry.of(g.flair) and mask.GetPixelID() == sitk.sitkUInt8
    out = sitk.GetArrayFromImage(mask) == 1

    geom = Geometry.of(g.flair)
    nx, ny, nz = geom.size
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    p_flair = geom.index_to_lps(np.stack([i, j, k], axis=-1).astype(float))
    rot = np.asarray(g.flair_to_t1c.GetMatrix()).reshape(3, 3)
    centre = np.asarray(g.flair_to_t1c.GetCenter())
    p_t1c = (p_flair - centre) @ rot.T + centre + np.asarray(g.flair_to_t1c.GetTranslation())
    r = np.linalg.norm(p_t1c - g.centre_lps, axis=-1)
    r_cav = np.linalg.norm(p_t1c - (g.centre_lps + 27.0 * g.normal_lps), axis=-1)
    margin = 0.5 * float(np.linalg.norm(T1C_SPACING))
    surely_in = (r < OEDEMA_R - margin) & (r_cav > 9.0 + margin)
    surely_out = (r > OEDEMA_R + margin) | (r_cav < 9.0 - margin)
    assert surely_in.sum() > 10000 and (surely_out & (r_cav < 9.0)).sum() > 300
    assert out[surely_in].all() and not out[surely_out].any()

    with pytest.raises(ValueError, match="transform was given without the FLAIR image"):
        flair_burden(g.labels, COMP, transform=g.flair_to_t1c)


# --- RANO measurability --------------------------------------------------------------------------

def _measured(a, b, c, spacing=T1C_SPACING):
    size = (int(2 * a / spacing[0]) + 8, int(2 * a / spacing[1]) + 8, int(2 * c / spacing[2]) + 5)
    labels = ellipsoid_labels(size, spacing, OBLIQUE, [(1, (size[0] / 2 + 0.3, size[1] / 2 - 0.2, size[2] // 2),
                                                         (a, b, c), 20.0)])
    (m,) = measure_lesions(labels)
    return m, labels


def test_rano_measurability_reasons():
    m, labels = _measured(9.0, 4.0, 6.0)  # 18 x 8 mm on 3 slices
    ok, reason = rano_measurability(m, labels)
    assert not ok and m.perpendicular_mm < 10
    assert reason == (f"{m.product_long_axis_mm:.1f} x {m.perpendicular_mm:.1f} mm on 3 slices, "
                      f"{m.perpendicular_mm:.1f} mm perpendicular < 10 mm: non-measurable")

    m, labels = _measured(8.0, 8.0, 1.0)  # a 16 mm disc on one slice
    ok, reason = rano_measurability(m, labels)
    assert not ok and reason.endswith("on 1 slice, visible on 1 < 2 slices: non-measurable")

    m, labels = _measured(11.0, 11.0, 20.0)
    ok, reason = rano_measurability(m, labels)
    assert ok and reason == f"{m.product_long_axis_mm:.1f} x {m.perpendicular_mm:.1f} mm on {m.n_slices} slices: measurable"
    # the header's slice thickness (or 6 mm slices) raises the minimum to twice the thickness
    m6, labels6 = _measured(5.6, 5.6, 20.0, spacing=(0.9, 0.9, 6.0))
    ok, reason = rano_measurability(m6, labels6)
    assert not ok and "mm perpendicular < 12 mm (twice the 6 mm slices)" in reason
    ok, reason = rano_measurability(m, labels, slice_thickness_mm=12.0)
    assert not ok and "long axis < 24 mm (twice the 12 mm slices)" in reason

    with pytest.raises(ValueError, match="pass the map the lesion was measured on"):
        rano_measurability(m, labels6)
    with pytest.raises(ValueError, match="give both compartment_labels and comp"):
        rano_measurability(m, labels, comp=COMP)
