"""Large-lesion measure benchmark: ``measure_lesions`` on analytic ellipsoids of 1e4 to 3e6 voxels.

The issue's target: a 1,000,000-voxel lesion (a large liver metastasis) measured in < 0.5 s with the
same accuracy, and how the cost grows with boundary size. Cases (all with the mesh volume):

- a series of ellipsoids (semi-axes 1 : 0.8 : 0.7, in-plane rotation 30 degrees, sub-voxel centre) of
  1e4, 1e5, 1e6 and 3e6 voxels on a CT grid of 0.8 x 0.8 x 1.25 mm with oblique direction cosines;
- 1e6 voxels on 0.7 x 0.7 x 2.5 mm (thick slices), oblique;
- a 1e6-voxel ball (a round metastasis: the worst case for the 3-D Feret search's direction pruning).

"peer" is the measurement code as it was before the large-lesion speed-up (frozen in
``tests/measurement/reference_*.py``), on the same label map: the before/after comparison. Times are
medians of REPEATS runs after one warm-up (the old path: REPEATS runs). Accuracy = |long axis - truth|
in in-plane voxels, truth = the largest sampled section of the ellipsoid (as in the tests). Notes give
the voxel count, the boundary voxels (lesion voxels with a 6-neighbour outside), CPU seconds and the
agreement of the two paths. ``stage_times`` (cProfile, 1e6 voxels) splits the time by stage.

Run alone: ``.venv/bin/python benchmarks/bench_measure_large.py`` (add ``--stages`` for the split).
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

REPEATS = 3
PEER = "pre-speed-up path (3c8871d)"
UNIT = "|long axis error| (voxels)"
CT = (0.8, 0.8, 1.25)
THICK = (0.7, 0.7, 2.5)


def _times(fn, repeats: int = REPEATS, warm_up: bool = True) -> tuple[float, float]:
    """(median wall s, median CPU s)."""
    if warm_up:
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def lesion(n_voxels: float, spacing=CT, ratio=(1.0, 0.8, 0.7), theta: float = 30.0):
    """(label map, truth long axis mm, voxel count, boundary voxel count) of an ellipsoid of about ``n_voxels``."""
    import SimpleITK as sitk
    from scipy import ndimage

    from tests.data_factory import ellipsoid_labels, rotation_matrix

    k = (n_voxels * float(np.prod(spacing)) / (4.0 / 3.0 * np.pi * float(np.prod(ratio)))) ** (1.0 / 3.0)
    a, b, c = (k * r for r in ratio)
    size = (int(2 * a / spacing[0]) + 10, int(2 * a / spacing[1]) + 10, int(2 * c / spacing[2]) + 6)
    centre = (size[0] / 2 + 0.31, size[1] / 2 - 0.22, size[2] // 2 + 0.13)
    labels = ellipsoid_labels(size, spacing, rotation_matrix(10.0, -5.0, 30.0), [(1, centre, (a, b, c), theta)])
    dz = (np.arange(size[2]) - centre[2]) * spacing[2]
    truth = 2.0 * a * float(np.sqrt(np.max(1.0 - (dz / c) ** 2)))
    mask = sitk.GetArrayFromImage(labels) > 0
    boundary = int(np.count_nonzero(mask & ~ndimage.binary_erosion(mask, border_value=0)))
    return labels, truth, int(np.count_nonzero(mask)), boundary


def stage_times(labels) -> dict[str, float]:
    """Cumulative seconds per stage of one ``measure_lesions`` call (cProfile; adds some overhead)."""
    from imaging.measurement import measure_lesions

    measure_lesions(labels)
    prof = cProfile.Profile()
    prof.enable()
    measure_lesions(labels)
    prof.disable()
    names = {
        "measure_lesions": "total",
        "find_objects": "bounding boxes (whole map)",
        "slice_hull_points": "row/column extremes",
        "__init__": "slice hulls + 2-D Feret",
        "long_axis": "2-D cap law (long axes)",
        "perpendicular": "perpendiculars (contours, chords)",
        "max_3d_diameter": "3-D diameter",
        "_feret_3d": "3-D Feret (in 3-D diameter)",
        "_cap_3d": "3-D cap law (in 3-D diameter)",
        "mesh_volume_mm3": "mesh volume (cell tables)",
        "count_nonzero": "voxel counts, centroid",
    }
    out: dict[str, float] = {}
    for (path, _line, fn), (_cc, _nc, _tt, cum, _callers) in pstats.Stats(prof).stats.items():  # type: ignore[attr-defined]
        if fn in names and ("measurement" in path or fn in ("find_objects", "count_nonzero")):
            if fn == "__init__" and "diameters" not in path:
                continue
            out[names[fn]] = out.get(names[fn], 0.0) + cum
    return {k: round(v, 4) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def _case_row(name: str, labels, truth: float, n_vox: int, boundary: int, spacing, *, peer: bool = True) -> dict:
    from imaging.measurement import measure_lesions
    from tests.measurement.reference_lesions import measure_lesions as old_measure_lesions

    ours_s, ours_cpu = _times(lambda: measure_lesions(labels))
    (m,) = measure_lesions(labels)
    pixel = max(spacing[:2])
    row = {
        "stage": "measure-large",
        "case": f"{name} {n_vox} voxels ({boundary} boundary), {spacing[0]}x{spacing[1]}x{spacing[2]} mm oblique",
        "ours_s": round(ours_s, 4),
        "peer": PEER if peer else None,
        "peer_s": None,
        "ratio": None,
        "ours_accuracy": round(abs(m.long_axis_mm - truth) / pixel, 3),
        "peer_accuracy": None,
        "accuracy_unit": UNIT,
        "n_voxels": n_vox,
        "boundary_voxels": boundary,
        "ours_cpu_s": round(ours_cpu, 4),
    }
    notes = [f"CPU {ours_cpu:.3f} s"]
    if peer:
        peer_s, peer_cpu = _times(lambda: old_measure_lesions(labels), warm_up=False)
        (o,) = old_measure_lesions(labels)
        worst = max(
            float(np.max(np.abs(np.asarray(v, dtype=float) - np.asarray(o.to_dict()[k], dtype=float))))
            for k, v in m.to_dict().items() if k != "volume_mesh_mm3"
        )
        mesh_rel = abs(m.volume_mesh_mm3 - o.volume_mesh_mm3) / o.volume_mesh_mm3
        row.update(peer_s=round(peer_s, 4), ratio=round(ours_s / peer_s, 4),
                   peer_accuracy=round(abs(o.long_axis_mm - truth) / pixel, 3), peer_cpu_s=round(peer_cpu, 4),
                   max_field_difference=worst, mesh_volume_rel_difference=float(f"{mesh_rel:.1e}"))
        notes.append(f"old path CPU {peer_cpu:.3f} s; largest difference over the other fields {worst:.1e} (mm, mm2, mm3); "
                     f"mesh volume {mesh_rel:.1e} relative (the old float32 vertex sum)")
    row["notes"] = "; ".join(notes)
    return row


def run() -> list[dict]:
    rows = []
    for n in (1e4, 1e5, 1e6, 3e6):
        labels, truth, n_vox, boundary = lesion(n)
        rows.append(_case_row("ellipsoid", labels, truth, n_vox, boundary, CT))
        if n == 1e6:
            rows[-1]["stage_times"] = stage_times(labels)
            rows[-1]["notes"] += "; stages (s): " + ", ".join(f"{k} {v}" for k, v in rows[-1]["stage_times"].items())
    labels, truth, n_vox, boundary = lesion(1e6, THICK)
    rows.append(_case_row("ellipsoid", labels, truth, n_vox, boundary, THICK))
    labels, truth, n_vox, boundary = lesion(1e6, CT, ratio=(1.0, 1.0, 1.0), theta=0.0)
    rows.append(_case_row("ball", labels, truth, n_vox, boundary, CT))
    return rows


if __name__ == "__main__":
    if "--stages" in sys.argv:
        for spacing, ratio in ((CT, (1.0, 0.8, 0.7)), (THICK, (1.0, 0.8, 0.7)), (CT, (1.0, 1.0, 1.0))):
            labels, *_ = lesion(1e6, spacing, ratio)
            print(spacing, ratio, stage_times(labels))
        sys.exit(0)
    columns = ("case", "ours_s", "ours_cpu_s", "peer_s", "peer_cpu_s", "ratio", "ours_accuracy", "peer_accuracy", "max_field_difference",
               "mesh_volume_rel_difference")
    result = run()
    widths = {c: max(len(c), *(len(str(r.get(c))) for r in result)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in result:
        print("  ".join(str(r.get(c)).ljust(widths[c]) for c in columns))
    for r in result:
        if r.get("stage_times"):
            print(f"stages ({r['case']}): {r['stage_times']}")
