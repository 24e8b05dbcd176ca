"""nonzero_box: the index box of a mask's non-zero voxels, against np.argwhere on random masks."""

from __future__ import annotations

import numpy as np
import pytest

from imaging.io.geometry import nonzero_box


def _reference(mask, pads):
    nz = np.argwhere(mask)
    lo = np.maximum(nz.min(axis=0) - pads, 0)
    hi = np.minimum(nz.max(axis=0) + 1 + np.asarray(pads), mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


@pytest.mark.parametrize("seed", range(20))
def test_box_equals_the_extent_of_the_nonzero_voxels(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(1, 30, size=3))
    mask = np.zeros(shape, dtype=np.uint16)
    for _ in range(int(rng.integers(1, 4))):
        mask[tuple(int(rng.integers(0, n)) for n in shape)] = int(rng.integers(1, 9))
    pads = tuple(int(v) for v in rng.integers(0, 6, size=3))
    assert nonzero_box(mask, pads) == _reference(mask, pads)
    assert nonzero_box(mask != 0) == _reference(mask, (0, 0, 0))


def test_touching_the_edges_and_empty():
    mask = np.zeros((4, 5, 6), dtype=bool)
    mask[0, 4, 2] = mask[3, 0, 5] = True
    assert nonzero_box(mask, 2) == (slice(0, 4), slice(0, 5), slice(0, 6))
    assert nonzero_box(np.zeros((3, 3, 3), dtype=np.uint8)) is None
    with pytest.raises(ValueError, match="pad: 2 values for a 3-D array"):
        nonzero_box(mask, (1, 1))
