"""The large-lesion fast path gives the old path's numbers.

``reference_diameters.py`` / ``reference_lesions.py`` are frozen copies of the measurement code
before the speed-up (all-pairs Feret, cap law over every voxel, centroid from ``np.nonzero``).
The fast path changes how the same quantities are found, not what they are: the 3-D Feret search
is exact (hull vertices, then a tree that skips only pairs of boxes that cannot hold the longest
pair), the cap law reads every voxel within four cap depths of each end (exactly the voxels it
uses), the centroid is an exact integer sum, and the mesh volume adds per-cell tables of the same
marching-cubes surface (the old sum of float32 vertices differs from it by ~1e-8, relative: 1e-7
allowed). Projections are computed term by term instead of
by a matrix product, so values may differ in the last bits: every length is required to agree to
1e-6 mm and every end point to 1e-6 mm.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imaging.measurement import measure_lesions
from imaging.measurement.diameters import _cap_3d, _feret, _feret_3d, _line_extremes, cap_support, max_3d_diameter
from tests.data_factory import ellipsoid_labels, make_image, rotation_matrix
from tests.hypothesis_profiles import examples
from tests.measurement import reference_diameters as ref
from tests.measurement.reference_lesions import measure_lesions as reference_measure_lesions


def _sphere_surface(rng: np.random.Generator, n: int, dim: int = 3) -> np.ndarray:
    p = rng.normal(size=(n, dim))
    return p / np.linalg.norm(p, axis=1, keepdims=True) * 20.0


def _lattice_shell(radius: float, dim: int = 3) -> np.ndarray:
    """Lattice points of a digitised ball's outer layer: many exactly tied farthest pairs."""
    r = int(radius) + 2
    grid = np.stack(np.meshgrid(*[np.arange(-r, r + 1)] * dim, indexing="ij"), axis=-1).reshape(-1, dim).astype(float)
    norm = np.linalg.norm(grid, axis=1)
    return grid[(norm <= radius) & (norm > radius - 1.0)] * 0.7


@settings(max_examples=examples(25), deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1025, 4000), st.sampled_from(["normal", "sphere", "circle"]))
def test_tree_feret_equals_all_pairs(seed, n, kind):
    """Same length and the same pair (tie rules included) as the all-pairs search."""
    rng = np.random.default_rng(seed)
    if kind == "normal":
        pts = rng.normal(size=(n, 3)) * rng.uniform(0.2, 30.0, size=3)
    elif kind == "sphere":
        pts = _sphere_surface(rng, n)
    else:
        pts = _sphere_surface(rng, n, dim=2)
    assert _feret(pts) == ref._feret(pts)


@pytest.mark.parametrize("dim, radius", [(2, 400.0), (3, 14.0)])
def test_tree_feret_on_tied_lattice_points(dim, radius):
    pts = _lattice_shell(radius, dim)
    assert len(pts) > 1024  # the tree path
    np.random.default_rng(0).shuffle(pts)
    assert _feret(pts) == ref._feret(pts)


@pytest.mark.parametrize("radius", [14.0, 22.0])
def test_3d_feret_of_a_round_set_goes_through_the_hull(radius):
    """Round point sets defeat the direction pruning (every point is in some cap): hull, then tree."""
    pts = _lattice_shell(radius) + np.random.default_rng(1).uniform(-0.01, 0.01, size=3)
    d, i, j = _feret_3d(pts)
    d_ref, i_ref, j_ref = ref._feret(pts)
    assert d == pytest.approx(d_ref, rel=1e-12)
    assert np.linalg.norm(pts[i] - pts[j]) == pytest.approx(d_ref, rel=1e-12)


def _shapes() -> dict[str, np.ndarray]:
    """Lesion masks (z, y, x): ellipsoids, a ball, a lobulated union, a flat plate, one slice, a rough blob."""
    rng = np.random.default_rng(7)
    z, y, x = np.mgrid[0:40, 0:90, 0:100]
    out = {}
    out["ellipsoid"] = ((x - 50.3) / 40) ** 2 + ((y - 44.8) / 28) ** 2 + ((z - 19.6) / 15) ** 2 <= 1
    out["ball"] = (x - 50.2) ** 2 + (y - 45.1) ** 2 + ((z - 19.8) * 2.0) ** 2 <= 36.0**2
    lob = np.zeros_like(out["ball"])
    for _ in range(5):
        c = rng.uniform([15, 20, 25], [25, 70, 75])
        r = rng.uniform([6, 10, 10], [12, 25, 25])
        lob |= ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 <= 1
    out["lobulated"] = lob
    out["plate"] = (np.abs(z - 20) <= 1) & ((x - 50) ** 2 + (y - 45) ** 2 <= 38**2)
    one = np.zeros_like(lob)
    one[20] = ((x[20] - 50) / 45) ** 2 + ((y[20] - 45) / 20) ** 2 <= 1
    out["one slice"] = one
    noise = rng.random(lob.shape) < 0.5
    out["rough"] = out["ellipsoid"] & (noise | (((x - 50.3) / 36) ** 2 + ((y - 44.8) / 25) ** 2 + ((z - 19.6) / 13) ** 2 <= 1))
    return out


_GRIDS = [((0.8, 0.8, 1.25), np.eye(3)), ((0.7, 0.7, 2.5), rotation_matrix(15.0, -10.0, 30.0)), ((0.6, 0.9, 2.0), np.diag([-1.0, 1.0, -1.0]))]


@pytest.mark.parametrize("name", sorted(_shapes()))
def test_measurements_equal_the_old_path(name):
    """Every field of ``measure_lesions`` as before the speed-up: lengths, areas, volumes and end points to 1e-6."""
    arr = _shapes()[name].astype(np.uint8)
    for spacing, direction in _GRIDS:
        labels = make_image(arr, spacing, (-40.0, 12.0, 300.0), direction)
        (new,) = measure_lesions(labels)
        (old,) = reference_measure_lesions(labels)
        a, b = new.to_dict(), old.to_dict()
        assert a.keys() == b.keys()
        for key in a:
            rtol = 1e-7 if key == "volume_mesh_mm3" else 0.0  # the old one summed float32 vertices
            np.testing.assert_allclose(np.asarray(a[key], dtype=float), np.asarray(b[key], dtype=float), rtol=rtol, atol=1e-6,
                                       err_msg=f"{name} {spacing}: {key}")


def test_a_large_round_lesion_equals_the_old_path():
    """A 250,000-voxel ball on an oblique 0.8 x 0.8 x 1.25 mm grid: the hull path of the 3-D Feret."""
    sp = (0.8, 0.8, 1.25)
    labels = ellipsoid_labels((115, 115, 75), sp, rotation_matrix(10.0, -5.0, 30.0), [(1, (57.3, 56.8, 37.2), (42.0, 42.0, 42.0), 0.0)])
    (new,) = measure_lesions(labels, mesh_volume=False)
    (old,) = reference_measure_lesions(labels, mesh_volume=False)
    assert new.n_voxels > 200_000
    for key, value in new.to_dict().items():
        np.testing.assert_allclose(np.asarray(value, dtype=float), np.asarray(old.to_dict()[key], dtype=float), rtol=0, atol=1e-6,
                                   err_msg=key)


@pytest.mark.parametrize("name", ["ellipsoid", "ball", "lobulated", "rough"])
def test_cap_law_on_rows_near_the_end_equals_all_voxels(name):
    mask = _shapes()[name]
    spacing = np.array([0.7, 0.9, 2.5])
    rows = _line_extremes(mask, 2)
    zz, yy, xx = np.nonzero(mask)
    rng = np.random.default_rng(3)
    for _ in range(10):
        w = rng.normal(size=3)
        w /= np.linalg.norm(w)
        depth, half, cell = 3.0 * np.sqrt(0.7 * 0.9), 0.5 * float(np.abs(w) @ spacing), float(np.prod(spacing))
        t = (xx * spacing[0]) * w[0] + (yy * spacing[1]) * w[1] + (zz * spacing[2]) * w[2]
        assert _cap_3d(mask, spacing, w, rows, len(xx), cell, depth, half) == cap_support(t, cell, depth, half, exponent=0.5)


def test_3d_diameter_without_the_callers_data():
    """``max_3d_diameter`` alone (no hulls, no rows) and with ``voxels_zyx`` (the old cap law) agree."""
    mask = _shapes()["lobulated"]
    spacing = (0.7, 0.7, 2.5)
    d, p, q = max_3d_diameter(mask, spacing)
    d_old, p_old, q_old = max_3d_diameter(mask, spacing, voxels_zyx=np.nonzero(mask))
    assert d == pytest.approx(d_old, abs=1e-9)
    np.testing.assert_allclose(p, p_old, atol=1e-9)
    np.testing.assert_allclose(q, q_old, atol=1e-9)


@pytest.mark.parametrize("name", sorted(_shapes()))
def test_mesh_volume_by_cell_tables_equals_marching_cubes(name):
    """The cell-table mesh volume is skimage's marching-cubes surface's, to its float32 rounding (1e-7)."""
    from imaging.measurement.volume import mesh_volume_marching_cubes, mesh_volume_mm3

    mask = _shapes()[name]
    for spacing in ((0.8, 0.8, 1.25), (0.5, 0.9, 3.0)):
        assert mesh_volume_mm3(mask, spacing) == pytest.approx(mesh_volume_marching_cubes(mask, spacing), rel=1e-7)
    speckle = np.random.default_rng(5).random((12, 14, 16)) < 0.5  # every ambiguous configuration
    assert mesh_volume_mm3(speckle, (0.7, 0.8, 2.0)) == pytest.approx(mesh_volume_marching_cubes(speckle, (0.7, 0.8, 2.0)), rel=1e-7)
