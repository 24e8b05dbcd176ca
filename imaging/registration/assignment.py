"""The optimal one-to-one assignment behind lesion tracking (numpy and scipy only: no image library).

:func:`assign` pairs known lesions with observed ones at the least total cost
(``scipy.optimize.linear_sum_assignment``), keeping only admissible pairs. The pipeline's
tracking (:mod:`imaging.registration.tracking`) prices a pair by centroid distance and mask
overlap; :func:`assign_by_distance` is the same assignment for lesions known only by points
(measurements read from SR reports), priced by distance alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

#: The cost of a pair that may not be matched.
INADMISSIBLE = 1e6


def assign(cost: np.ndarray, admissible: np.ndarray) -> list[tuple[int, int]]:
    """(row, column) pairs of the least-cost one-to-one assignment, admissible pairs only."""
    if cost.size == 0:
        return []
    rows, cols = linear_sum_assignment(np.where(admissible, cost, INADMISSIBLE))
    return [(int(i), int(j)) for i, j in zip(rows, cols) if admissible[i, j]]


def distance_cost(dist: np.ndarray, max_distance_mm: float, overlap: np.ndarray | None = None) -> np.ndarray:
    """The tracking's price of a pair: distance over the limit (capped at 2) plus one minus the overlap."""
    ov = np.zeros_like(dist) if overlap is None else overlap
    return np.minimum(dist / max_distance_mm, 2.0) + (1.0 - ov)


def assign_by_distance(
    known: Sequence[Sequence[float]], observed: Sequence[Sequence[float]], max_distance_mm: float
) -> list[tuple[int, int, float]]:
    """Pair observed points with known points (mm, one frame): (known index, observed index, distance mm).

    A pair farther apart than ``max_distance_mm`` is never made; what is left unpaired is left
    to the caller (a new lesion, a lesion not seen).
    """
    if not len(known) or not len(observed):
        return []
    a = np.asarray(known, dtype=float).reshape(-1, 3)
    b = np.asarray(observed, dtype=float).reshape(-1, 3)
    dist = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    pairs = assign(distance_cost(dist, max_distance_mm), dist <= max_distance_mm)
    return [(i, j, float(dist[i, j])) for i, j in pairs]
