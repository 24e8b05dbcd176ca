"""Segmentation from a prior label map (the baseline's mask warped onto a follow-up), against known truth.

Synthetic scans: analytic shapes defined in LPS mm, digitised with partial volume (the fraction of
each voxel inside a shape, from 4 x 4 x 4 sub-samples), over a lung-like body at -800 HU with a
chest wall (+40 HU), a rib (+700 HU) and an enhancing vessel (+150 HU); lesions at +40 HU; noise
sd 15 HU. Truth = voxels at least half inside a lesion; the prior = the baseline lesion, digitised
the same way on the same grid. The HU window's lower bound (-300 HU) keeps voxels about 60 % inside,
so segmented volumes run a few per cent below the analytic ones: the tolerances below leave room
for that and nothing else.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

import imaging.segmentation.propagated as propagated
from imaging.io.geometry import Geometry
from imaging.segmentation import PriorSegmentation, SegmentationError, segment_from_prior
from tests.data_factory import make_image, rotation_matrix

GROWTH = 1.3 ** (1 / 3)  # linear scale of a 30 % volume growth
MOVE = np.array([2.0, -2.0, 2.0 * np.sqrt(2.0)])  # 4 mm


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b)))


def _ellipsoid(centre, axes, rotation=None):
    centre, axes = np.asarray(centre, float), np.asarray(axes, float)
    rot = np.eye(3) if rotation is None else np.asarray(rotation, float)

    def inside(p):
        q = (p - centre) @ rot  # coordinates along the ellipsoid's own axes
        return np.sum((q / axes) ** 2, axis=-1) <= 1.0

    return inside


def _cylinder_z(x, y, r):
    return lambda p: (p[..., 0] - x) ** 2 + (p[..., 1] - y) ** 2 <= r**2


def _slab_x(x0):
    return lambda p: p[..., 0] >= x0


class Grid:
    """A grid centred on LPS (0, 0, 0); shapes given as functions of LPS points are digitised on it."""

    def __init__(self, size_xyz, spacing_xyz, direction=None):
        self.size, self.spacing = tuple(size_xyz), tuple(spacing_xyz)
        self.direction = np.eye(3) if direction is None else np.asarray(direction, float)
        half = (np.asarray(size_xyz) - 1) / 2 * np.asarray(spacing_xyz)
        self.origin = tuple(-(self.direction @ half))
        self.geom = Geometry(self.size, self.spacing, self.origin, tuple(self.direction.flatten()))
        nx, ny, nz = self.size
        z, y, x = np.meshgrid(np.arange(nz + 1), np.arange(ny + 1), np.arange(nx + 1), indexing="ij")
        self._corners = self.geom.index_to_lps(np.stack([x, y, z], axis=-1) - 0.5)

    def fraction(self, inside, n=4) -> np.ndarray:
        """Fraction of each voxel inside the shape: voxels whose 8 corners agree are wholly in or out (the shapes
        here are far larger than a voxel), the others are sub-sampled n x n x n."""
        c = inside(self._corners)
        shifted = [c[a : a + c.shape[0] - 1, b : b + c.shape[1] - 1, d : d + c.shape[2] - 1]
                   for a in (0, 1) for b in (0, 1) for d in (0, 1)]
        all_in, any_in = np.logical_and.reduce(shifted), np.logical_or.reduce(shifted)
        f = all_in.astype(float)
        mixed = any_in & ~all_in
        index = np.stack(np.nonzero(mixed)[::-1], axis=-1).astype(float)  # (x, y, z)
        offsets = (np.arange(n) + 0.5) / n - 0.5
        count = np.zeros(len(index))
        for dx in offsets:
            for dy in offsets:
                for dz in offsets:
                    count += inside(self.geom.index_to_lps(index + (dx, dy, dz)))
        f[mixed] = count / n**3
        return f

    def image(self, array: np.ndarray) -> sitk.Image:
        return make_image(array, self.spacing, self.origin, self.direction)


def _ct(grid: Grid, lesions, *, seed=0, vessel=None):
    """HU image of the body with the lesions (inside functions) and each lesion's partial-volume fraction."""
    hu = np.full(grid.size[::-1], -800.0)
    structures = [(_slab_x(30.0), 40.0), (_cylinder_z(34.0, 10.0, 3.0), 700.0)]
    if vessel is not None:
        structures.append((vessel, 150.0))
    fractions = [grid.fraction(inside) for inside in lesions]
    for f, value in [(grid.fraction(s), v) for s, v in structures] + [(f, 40.0) for f in fractions]:
        hu = hu * (1 - f) + value * f
    hu += np.random.default_rng(seed).normal(0.0, 15.0, hu.shape)
    return grid.image(hu.astype(np.float32)), fractions


def _prior(grid: Grid, lesions) -> sitk.Image:
    """UInt16 label map: each (label, inside function), digitised at half a voxel."""
    out = np.zeros(grid.size[::-1], dtype=np.uint16)
    for label, inside in lesions:
        out[grid.fraction(inside) >= 0.5] = label
    img = grid.image(out)
    assert img.GetPixelID() == sitk.sitkUInt16
    return img


def _check_grown_and_moved(grid: Grid) -> tuple[float, float]:
    """One lesion (label 3) grown by 30 % in volume and moved by 4 mm, touched by a vessel; -> (Dice, volume error)."""
    centre, axes = np.array([-6.0, 3.0, 0.0]), np.array([9.0, 7.0, 8.0])
    rot = rotation_matrix(0, 0, 25)
    now_centre, now_axes = centre + MOVE, axes * GROWTH
    # a 3 mm vessel along z, its wall 0.5 mm into the lesion's widest section
    vessel = _cylinder_z(now_centre[0], now_centre[1] + now_axes[0] + 1.0, 1.5)
    image, (f,) = _ct(grid, [_ellipsoid(now_centre, now_axes, rot)], vessel=vessel)
    prior = _prior(grid, [(3, _ellipsoid(centre, axes, rot))])

    result = segment_from_prior(image, prior)

    assert isinstance(result, PriorSegmentation)
    assert result.found == {3: True}
    assert result.problems == ()
    assert result.labels.GetPixelID() == sitk.sitkUInt16
    assert Geometry.of(result.labels).same_grid(Geometry.of(image))
    assert result.labels.GetDirection() == image.GetDirection()
    got = sitk.GetArrayFromImage(result.labels)
    assert set(np.unique(got)) == {0, 3}
    volume = np.count_nonzero(got) * np.prod(grid.spacing)
    analytic = 4 / 3 * np.pi * np.prod(now_axes)
    error = volume / analytic - 1
    dice = _dice(got == 3, f >= 0.5)
    assert abs(error) <= 0.10, f"volume {volume:.0f} mm3 vs analytic {analytic:.0f} mm3"
    assert dice >= 0.85
    return dice, error


def test_grown_and_moved_lesion_keeps_its_label():
    _check_grown_and_moved(Grid((96, 96, 36), (0.8, 0.8, 2.0)))


@pytest.mark.parametrize(
    "direction",
    [np.diag([-1.0, 1.0, 1.0]), rotation_matrix(12, -8, 25)],
    ids=["flipped-x", "oblique"],
)
def test_anisotropic_voxels_and_a_non_identity_direction(direction):
    _check_grown_and_moved(Grid((110, 110, 24), (0.7, 0.7, 3.0), direction))


def test_a_vanished_lesion_is_not_found_and_the_other_is():
    grid = Grid((96, 96, 36), (0.8, 0.8, 2.0))
    kept = _ellipsoid((-12.0, -8.0, 4.0), (7.0, 6.0, 6.0))
    gone = _ellipsoid((10.0, 14.0, -8.0), (6.0, 6.0, 5.0))  # in aerated lung at follow-up
    image, (f,) = _ct(grid, [kept])
    result = segment_from_prior(image, _prior(grid, [(1, kept), (2, gone)]))

    assert result.found == {1: True, 2: False}
    assert len(result.problems) == 1
    assert result.problems[0].startswith("label 2: no lesion-like tissue where the baseline lesion maps (")
    assert "HU window" in result.problems[0] and "recorded as not found" in result.problems[0]
    got = sitk.GetArrayFromImage(result.labels)
    assert set(np.unique(got)) == {0, 1}
    assert _dice(got == 1, f >= 0.5) >= 0.85


def test_a_prior_misplaced_onto_the_chest_wall_is_not_found():
    """A registration error puts a lesion's prior over the chest wall (the 40 HU slab at x >= 30 mm): what
    grows from it is the wall, out to the search region's edge, with a few per cent of it in the prior."""
    grid = Grid((96, 96, 36), (0.8, 0.8, 2.0))
    kept = _ellipsoid((-12.0, -8.0, 4.0), (7.0, 6.0, 6.0))
    misplaced = _ellipsoid((32.0, -10.0, 0.0), (5.0, 5.0, 5.0))
    image, _ = _ct(grid, [kept])
    result = segment_from_prior(image, _prior(grid, [(1, kept), (2, misplaced)]))
    assert result.found == {1: True, 2: False}
    assert len(result.problems) == 1 and result.problems[0].startswith("label 2: no lesion-like tissue")
    assert "surrounding tissue" in result.problems[0]
    assert set(np.unique(sitk.GetArrayFromImage(result.labels))) == {0, 1}


def test_a_shrunken_lesion_off_its_prior_centre_is_found():
    """Partial response: the lesion is half as wide (1/8 of the volume) and 6 mm off the prior's centre, which
    now lies in aerated lung; the seed must be the most interior lesion-like voxel, not the prior's middle."""
    grid = Grid((96, 96, 36), (0.8, 0.8, 2.0))
    centre = np.array([-5.0, 4.0, 0.0])
    now = _ellipsoid(centre + (6.0, 0.0, 0.0), [5.0] * 3)
    image, (f,) = _ct(grid, [now])
    result = segment_from_prior(image, _prior(grid, [(1, _ellipsoid(centre, [10.0] * 3))]))
    assert result.found == {1: True}
    assert result.problems == ()
    got = sitk.GetArrayFromImage(result.labels)
    assert _dice(got == 1, f >= 0.5) >= 0.85
    assert abs(np.count_nonzero(got) * np.prod(grid.spacing) / (4 / 3 * np.pi * 5.0**3) - 1) <= 0.10


def test_the_search_margin_is_in_mm_on_every_axis():
    """On 0.7 x 0.7 x 3 mm voxels the lesion grew 12 mm beyond its prior on every side: within the 15 mm margin
    (21 voxels in-plane, 5 slices), so captured whole; flagged only for having grown far beyond its prior."""
    grid = Grid((120, 120, 26), (0.7, 0.7, 3.0))
    image, (f,) = _ct(grid, [_ellipsoid((-4.0, 0.0, 0.0), [19.0] * 3)])
    result = segment_from_prior(image, _prior(grid, [(1, _ellipsoid((-4.0, 0.0, 0.0), [7.0] * 3))]))
    assert result.found == {1: True}
    assert len(result.problems) == 1 and "grew or moved far" in result.problems[0]
    got = sitk.GetArrayFromImage(result.labels)
    assert _dice(got == 1, f >= 0.5) >= 0.85
    assert abs(np.count_nonzero(got) * np.prod(grid.spacing) / (4 / 3 * np.pi * 19.0**3) - 1) <= 0.10


def test_a_new_lesion_touching_a_known_one_is_not_swallowed():
    """A new nodule (no prior) touches lesion 1 through a narrow neck, well inside the search region: the leak
    stop must split them although the region never reaches the search region's edge."""
    grid = Grid((96, 96, 36), (0.8, 0.8, 2.0))
    known = _ellipsoid((-8.0, 0.0, 0.0), [8.0] * 3)
    new = _ellipsoid((5.5, 0.0, 0.0), [6.0] * 3)  # centres 13.5 mm apart: a 0.5 mm overlap, neck radius ~2.2 mm
    image, (f_known, f_new) = _ct(grid, [known, new])
    result = segment_from_prior(image, _prior(grid, [(1, _ellipsoid((-8.0, 0.0, 0.0), [7.0] * 3))]))
    assert result.found == {1: True}
    got = sitk.GetArrayFromImage(result.labels) == 1
    assert _dice(got, f_known >= 0.5) >= 0.85
    assert np.count_nonzero(got & (f_new >= 0.5)) <= 0.05 * np.count_nonzero(f_new >= 0.5)


@pytest.mark.parametrize(
    ("half_gap", "radius", "prior_radius"),
    [(8.0, 8.5, 6.0), (5.0, 9.0, 4.0)],
    ids=["touching", "coalesced"],
)
def test_neighbouring_lesions_keep_their_own_labels(half_gap, radius, prior_radius):
    """Labels 7 (left, -x) and 2 (right): each voxel of the lesions goes to the nearer one; truth =
    the nearer centre (equal radii, so the mid-plane x = 0, which is also nearer-prior-region)."""
    grid = Grid((100, 80, 30), (0.8, 0.8, 2.0))
    left, right = np.array([-half_gap, 0.0, 0.0]), np.array([half_gap, 0.0, 0.0])
    image, fractions = _ct(grid, [_ellipsoid(left, [radius] * 3), _ellipsoid(right, [radius] * 3)])
    prior = _prior(grid, [(7, _ellipsoid(left, [prior_radius] * 3)), (2, _ellipsoid(right, [prior_radius] * 3))])
    result = segment_from_prior(image, prior)

    assert result.found == {2: True, 7: True}
    if half_gap == 8.0:
        assert result.problems == ()
    got = sitk.GetArrayFromImage(result.labels)
    union = (fractions[0] >= 0.5) | (fractions[1] >= 0.5)
    x_lps = grid.geom.index_to_lps(np.stack(np.nonzero(got >= 0)[::-1], axis=-1).astype(float))[:, 0]
    x_lps = x_lps.reshape(got.shape)
    truth_left, truth_right = union & (x_lps < 0), union & (x_lps > 0)
    assert _dice(got == 7, truth_left) >= 0.85
    assert _dice(got == 2, truth_right) >= 0.85
    # no swap, no arbitrary overwrite: neither label reaches more than one voxel past the mid-plane
    assert not np.any((got == 7) & (x_lps > 0.8))
    assert not np.any((got == 2) & (x_lps < -0.8))
    assert _dice(got > 0, union) >= 0.85


def test_overlapping_growth_goes_to_the_nearer_prior(monkeypatch):
    """Both labels' growing returns the whole blob: the shared voxels are split by distance to the priors."""
    grid = Grid((60, 40, 10), (1.0, 1.0, 2.0))
    image, _ = _ct(grid, [_ellipsoid((0.0, 0.0, 0.0), (20.0, 8.0, 6.0))])
    prior = _prior(grid, [(5, _ellipsoid((-12.0, 0.0, 0.0), [3.0] * 3)), (1, _ellipsoid((8.0, 0.0, 0.0), [3.0] * 3))])
    blob = sitk.GetArrayFromImage(_prior(grid, [(1, _ellipsoid((0.0, 0.0, 0.0), (20.0, 8.0, 6.0)))])) > 0

    def whole_blob(image, seed, roi, modality, method, settings, in_box):
        out = sitk.GetImageFromArray(blob.astype(np.uint8))
        out.CopyInformation(image)
        return out

    monkeypatch.setattr(propagated, "_segment", whole_blob)
    result = segment_from_prior(image, prior, search_margin_mm=30.0)
    got = sitk.GetArrayFromImage(result.labels)
    x = grid.geom.index_to_lps(np.stack(np.nonzero(got >= 0)[::-1], axis=-1).astype(float))[:, 0].reshape(got.shape)
    # equal priors centred at x = -12 and +8 mm: the boundary between the labels is the plane x = -2 mm
    # (give or take the 1 mm voxels of the digitised priors)
    assert np.array_equal(got > 0, blob)
    assert np.all(got[blob & (x < -3.5)] == 5)
    assert np.all(got[blob & (x > -0.5)] == 1)


def test_a_failing_label_does_not_stop_the_others(monkeypatch):
    grid = Grid((80, 80, 30), (0.8, 0.8, 2.0))
    a, b = _ellipsoid((-12.0, 0.0, 0.0), [6.0] * 3), _ellipsoid((12.0, 0.0, 0.0), [6.0] * 3)
    image, _ = _ct(grid, [a, b])
    real = propagated._segment

    def fail_on_the_right(image, seed, roi, *args, **kwargs):
        if image.TransformIndexToPhysicalPoint(seed)[0] > 0:
            raise SegmentationError("synthetic failure")
        return real(image, seed, roi, *args, **kwargs)

    monkeypatch.setattr(propagated, "_segment", fail_on_the_right)
    result = segment_from_prior(image, _prior(grid, [(1, a), (2, b)]))
    assert result.found == {1: True, 2: False}
    assert len(result.problems) == 1 and result.problems[0].startswith("label 2: no lesion-like tissue")
    assert "synthetic failure" in result.problems[0]
    assert set(np.unique(sitk.GetArrayFromImage(result.labels))) == {0, 1}


def _small_case():
    grid = Grid((40, 40, 12), (1.0, 1.0, 2.0))
    inside = _ellipsoid((0.0, 0.0, 0.0), [6.0] * 3)
    image, _ = _ct(grid, [inside])
    return image, _prior(grid, [(1, inside)])


def _shifted(prior: sitk.Image) -> sitk.Image:
    out = sitk.Image(prior)
    out.SetOrigin(tuple(np.asarray(prior.GetOrigin()) + (0.0, 2.0, 0.0)))
    return out


def _respaced(prior: sitk.Image) -> sitk.Image:
    out = sitk.Image(prior)
    out.SetSpacing((1.0, 1.0, 2.5))
    return out


def _turned(prior: sitk.Image) -> sitk.Image:
    out = sitk.Image(prior)
    out.SetDirection(tuple(rotation_matrix(0, 0, 5).flatten()))
    return out


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_shifted, r"not on the image's grid \(origin"),
        (_respaced, r"not on the image's grid \(spacing"),
        (_turned, r"not on the image's grid \(direction"),
        (lambda p: p[:, :, 1:], r"not on the image's grid \(size \[40, 40, 11\]"),
        (lambda p: sitk.Cast(p, sitk.sitkFloat32), "integer label map"),
        (lambda p: p[:, :, 3], "prior is 2-D"),
    ],
    ids=["origin", "spacing", "direction", "size", "float", "2-D"],
)
def test_a_prior_off_the_grid_is_refused(change, match):
    image, prior = _small_case()
    with pytest.raises(SegmentationError, match=match):
        segment_from_prior(image, change(prior))


def test_bad_arguments_are_refused():
    image, prior = _small_case()
    with pytest.raises(SegmentationError, match="image is 2-D"):
        segment_from_prior(image[:, :, 3], prior[:, :, 3])
    with pytest.raises(SegmentationError, match="unknown modality"):
        segment_from_prior(image, prior, modality="PET")  # type: ignore[arg-type]
    with pytest.raises(SegmentationError, match="search_margin_mm"):
        segment_from_prior(image, prior, search_margin_mm=-1.0)
    empty = segment_from_prior(image, prior * 0)
    assert empty.found == {} and empty.problems == () and not sitk.GetArrayViewFromImage(empty.labels).any()


def _mr(grid: Grid, lesions, *, scale=1.0, offset=0.0, seed=1):
    """MR-like: grey tissue (300) with a bright fat layer (1000) and a dark fluid-filled cyst (60), bright lesions
    (800); noise sd 25; then any affine intensity scale."""
    arr = np.full(grid.size[::-1], 300.0)
    fractions = [grid.fraction(inside) for inside in lesions]
    for f, value in [(grid.fraction(_slab_x(30.0)), 1000.0), (grid.fraction(_ellipsoid((-20, 20, 0), [7.0] * 3)), 60.0)]:
        arr = arr * (1 - f) + value * f
    for f in fractions:
        arr = arr * (1 - f) + 800.0 * f
    arr += np.random.default_rng(seed).normal(0.0, 25.0, arr.shape)
    return grid.image((arr * scale + offset).astype(np.float32)), fractions


@pytest.mark.parametrize(
    ("prior_centre", "prior_axes", "now_centre", "now_axes"),
    [
        ((-4.0, -6.0, 0.0), (8.0, 7.0, 7.0), tuple(np.array([-4.0, -6.0, 0.0]) + MOVE), tuple(np.array([8.0, 7.0, 7.0]) * GROWTH)),
        ((-4.0, -6.0, 0.0), (10.0, 10.0, 10.0), (1.0, -6.0, 0.0), (5.0, 5.0, 5.0)),
    ],
    ids=["grown-and-moved", "shrunk-off-centre"],
)
def test_mr_on_any_intensity_scale(prior_centre, prior_axes, now_centre, now_axes):
    """Bright lesion on grey tissue, beside a bright fat layer and a dark cyst; a second prior label over plain
    tissue (the lesion is gone). The shrunk lesion has 1/8 of its prior's volume and sits 5 mm off its centre."""
    grid = Grid((96, 96, 30), (0.8, 0.8, 2.0))
    gone = _ellipsoid((12.0, 18.0, 6.0), [5.0] * 3)
    prior = _prior(grid, [(4, _ellipsoid(prior_centre, prior_axes)), (9, gone)])
    masks = []
    for scale, offset in [(1.0, 0.0), (0.013, -2.0)]:
        image, (f,) = _mr(grid, [_ellipsoid(now_centre, now_axes)], scale=scale, offset=offset)
        result = segment_from_prior(image, prior, modality="MR")
        assert result.found == {4: True, 9: False}
        assert len(result.problems) == 1 and result.problems[0].startswith("label 9: no lesion-like tissue")
        got = sitk.GetArrayFromImage(result.labels)
        assert set(np.unique(got)) == {0, 4}
        assert _dice(got == 4, f >= 0.5) >= 0.8
        masks.append(got)
    assert np.array_equal(masks[0], masks[1])
