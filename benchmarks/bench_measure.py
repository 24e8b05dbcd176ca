"""Measure benchmark: all measurements of a lesion, against pyradiomics' shape features on the same mask.

- speed: ``measure_lesions`` (long and short axes, RANO product, 3-D diameter, voxel and mesh
  volume, centre, end points) on a label map holding one 100,000-voxel lesion, against
  pyradiomics' feature extractor with only the shape class enabled (what a user would run:
  mesh, diameters, volumes), on the same label map; and the same on the real lung2 CT mask
  (512 x 512 x 61 grid, 24,644 voxels). Median of REPEATS runs in this process after one warm-up.
- accuracy: long-axis mean absolute error, in in-plane voxels, over N_ACCURACY analytic ellipsoids
  (diameters 5-60 mm, in-plane spacing 0.5-1 mm, slices 1-5 mm, identity/flipped/oblique grids,
  random in-plane rotation and sub-voxel centre: tests/measurement/ellipsoid_cases.py), ours
  ``long_axis_mm`` against pyradiomics' ``Maximum2DDiameterSlice``.

Run alone: ``.venv/bin/python benchmarks/bench_measure.py``.
"""

from __future__ import annotations

import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

REPEATS = 5
N_ACCURACY = 45  # 15 per grid direction
PEER = "pyradiomics shape"
UNIT = "long-axis MAE (voxels)"


def _median_time(fn, repeats: int = REPEATS) -> float:
    fn()  # warm-up: imports, caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _extractor():
    import radiomics
    from radiomics import featureextractor

    radiomics.setVerbosity(logging.ERROR)
    ex = featureextractor.RadiomicsFeatureExtractor(additionalInfo=False)
    ex.disableAllFeatures()
    ex.enableFeatureClassByName("shape")
    return ex


def large_lesion():
    """One ellipsoid of ~100,000 voxels on a CT-like oblique grid (0.7 x 0.7 x 2.5 mm)."""
    from tests.data_factory import ellipsoid_labels, rotation_matrix

    return ellipsoid_labels(
        (140, 120, 30), (0.7, 0.7, 2.5), rotation_matrix(10.0, -5.0, 30.0), [(1, (70.3, 60.2, 14.6), (40.0, 27.0, 27.0), 30.0)]
    )


def _blank_image(labels):
    import SimpleITK as sitk

    img = sitk.Cast(labels, sitk.sitkFloat32)
    img.CopyInformation(labels)
    return img


def accuracy(n: int = N_ACCURACY, seed: int = 2024) -> tuple[float, float, float, float]:
    """(ours MAE, peer MAE, ours bias, peer bias) of the long axis in in-plane voxels over ``n`` ellipsoids."""
    from imaging.measurement import measure_lesions
    from tests.measurement.ellipsoid_cases import DIRECTIONS, random_case

    rng = np.random.default_rng(seed)
    ex = _extractor()
    ours, peer = [], []
    names = sorted(DIRECTIONS)
    for k in range(n):
        case = random_case(rng, DIRECTIONS[names[k % len(names)]])
        (m,) = measure_lesions(case.labels)
        ours.append((m.long_axis_mm - case.long_axis_mm) / case.pixel_mm)
        r = ex.execute(_blank_image(case.labels), case.labels, label=1)
        peer.append((float(r["original_shape_Maximum2DDiameterSlice"]) - case.long_axis_mm) / case.pixel_mm)
    o, p = np.array(ours), np.array(peer)
    return float(np.abs(o).mean()), float(np.abs(p).mean()), float(o.mean()), float(p.mean())


def run() -> list[dict]:
    import SimpleITK as sitk

    from imaging.measurement import measure_lesions

    ex = _extractor()
    rows = []
    labels = large_lesion()
    n_vox = int(np.count_nonzero(sitk.GetArrayViewFromImage(labels)))
    image = _blank_image(labels)
    ours_s = _median_time(lambda: measure_lesions(labels))
    peer_s = _median_time(lambda: ex.execute(image, labels, label=1), repeats=3)
    ours_mae, peer_mae, ours_bias, peer_bias = accuracy()
    rows.append(
        {
            "stage": "measure",
            "case": f"ellipsoid {n_vox} voxels, 0.7x0.7x2.5 mm oblique grid",
            "ours_s": round(ours_s, 4),
            "peer": PEER,
            "peer_s": round(peer_s, 4),
            "ratio": round(ours_s / peer_s, 4),
            "ours_accuracy": round(ours_mae, 3),
            "peer_accuracy": round(peer_mae, 3),
            "accuracy_unit": UNIT,
            "notes": f"accuracy over {N_ACCURACY} analytic ellipsoids; bias ours {ours_bias:+.3f}, peer {peer_bias:+.3f} voxel",
        }
    )

    from tests.measurement.radiomics_cases import data_dir

    data = data_dir()
    if data is not None:
        lung_labels = sitk.Cast(sitk.ReadImage(str(data / "lung2_label.nrrd")), sitk.sitkUInt16)
        lung_image = sitk.ReadImage(str(data / "lung2_image.nrrd"))
        ours_s = _median_time(lambda: measure_lesions(lung_labels, [1]))
        peer_s = _median_time(lambda: ex.execute(lung_image, lung_labels, label=1), repeats=3)
        rows.append(
            {
                "stage": "measure",
                "case": "lung2 CT mask (real), 512x512x61 grid, 24644 voxels",
                "ours_s": round(ours_s, 4),
                "peer": PEER,
                "peer_s": round(peer_s, 4),
                "ratio": round(ours_s / peer_s, 4),
                "ours_accuracy": None,
                "peer_accuracy": None,
                "accuracy_unit": "no analytic truth (see the ellipsoid row)",
            }
        )
    return rows


if __name__ == "__main__":
    columns = ("case", "ours_s", "peer", "peer_s", "ratio", "ours_accuracy", "peer_accuracy", "accuracy_unit")
    result = run()
    widths = {c: max(len(c), *(len(str(r.get(c))) for r in result)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in result:
        print("  ".join(str(r.get(c)).ljust(widths[c]) for c in columns))
    for r in result:
        if r.get("notes"):
            print(f"note ({r['case']}): {r['notes']}")
