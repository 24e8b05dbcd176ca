"""Against pyradiomics on its own five real cases (CT lung, MR brain, MR breast).

The baseline is pyradiomics' shape features as shipped in its sdist (no resampling: the
``<case>`` columns, not ``<case>_resampling``), so this test also pins our reading of the
masks (label 1, NRRD geometry).

pyradiomics' ``Maximum2DDiameterSlice`` is the largest distance between marching-cubes
vertices with the same z. Vertices on the edges between two slices sit at z = k + 1/2, so
besides the acquired slices pyradiomics also measures the half-way planes, whose vertices
come from two different slices: on brain1 (6.5 mm slices) that plane (z = 12.5) gives
53.59 mm while no acquired slice holds more than 47.97 mm; on lung1 the half-way plane is
0.3 voxel wider than any slice. A RECIST long axis lies in one acquired slice, so we compare
with pyradiomics' own definition restricted to the acquired slices (recomputed below with
the same marching cubes) on every case, and with the baseline itself where its maximum is
not such a mixed plane 7 voxels wide (all but brain1, whose half-way plane is checked).
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from skimage import measure as skmeasure

from imaging.measurement import measure_lesions
from tests.measurement.radiomics_cases import CASES, baseline


def _same_z_diameters(mask: np.ndarray, spacing_xyz) -> dict[float, float]:
    """pyradiomics' Maximum2DDiameterSlice per vertex plane: {z index (k or k + 1/2): mm}."""
    verts = skmeasure.marching_cubes(np.pad(mask, 1).astype(np.float32), 0.5)[0] - 1.0  # (z, y, x) indices
    out = {}
    for z in np.unique(verts[:, 0]):
        pts = verts[verts[:, 0] == z][:, 1:] * np.array([spacing_xyz[1], spacing_xyz[0]])
        d = pts[:, None, :] - pts[None, :, :]
        out[float(z)] = float(np.sqrt((d**2).sum(-1).max()))
    return out


@pytest.mark.parametrize("case", CASES)
def test_long_axis_and_volume_against_pyradiomics(radiomics_data, case):
    row = {k: float(v[case]) for k, v in baseline().items() if k.startswith("original_shape_")}
    labels = sitk.ReadImage(str(radiomics_data / f"{case}_label.nrrd"))
    (m,) = measure_lesions(sitk.Cast(labels, sitk.sitkUInt16), label_values=[1])
    spacing = labels.GetSpacing()
    voxel = max(spacing[:2])

    # volume: the voxel count is pyradiomics' VoxelVolume (issue: within 1 %; it is exact to 1e-9)
    assert m.volume_mm3 == pytest.approx(row["original_shape_VoxelVolume"], rel=1e-9)
    # the mesh volume is pyradiomics' MeshVolume up to the marching-cubes variant (0.1 %)
    assert m.volume_mesh_mm3 == pytest.approx(row["original_shape_MeshVolume"], rel=1e-3)

    reference = row["original_shape_Maximum2DDiameterSlice"]
    per_plane = _same_z_diameters(sitk.GetArrayViewFromImage(labels) == 1, spacing)
    assert max(per_plane.values()) == pytest.approx(reference, rel=1e-9)  # our reading of their definition
    on_slices = max(d for z, d in per_plane.items() if z == int(z))
    # Within one in-plane voxel of pyradiomics restricted to the acquired slices, on every case (the
    # cap law reads 0.1-0.6 voxel shorter than the iso-0.5 contour pyradiomics measures: the
    # over-read it corrects) ...
    assert abs(m.long_axis_mm - on_slices) <= voxel, (m.long_axis_mm, on_slices)
    assert m.long_axis_mm <= on_slices + 0.5 * voxel
    # ... and of the baseline itself where its maximum is on an acquired slice or a half-way plane
    # no wider than one (lung1: 0.3 voxel wider). brain1's half-way plane is 7 voxels wider.
    if case == "brain1":
        best_z = max(per_plane, key=per_plane.__getitem__)
        assert best_z != int(best_z) and reference - on_slices > 5 * voxel
    else:
        assert abs(m.long_axis_mm - reference) <= voxel, (m.long_axis_mm, reference)
