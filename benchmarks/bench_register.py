"""Register benchmark: rigid + affine of a CT against a rigidly moved copy (known transform).

Cases (both from the sample data, ``make sample-data``):

- ``lung2 512x512x61``: P001's baseline (pyradiomics' real lung2 CT, 0.63 x 0.63 x 5 mm) against
  a copy moved by a known rigid transform;
- ``256x256x150``: P003's baseline (pyradiomics' lung1 CT) resampled (cubic B-spline) to a
  256 x 256 x 150 grid of the same field of view (1.14 x 1.14 x 1.6 mm), against a moved copy.

The motion is drawn like the sample data's repositioning (seeded): up to 2 degrees about the
grid x and y axes, 4 degrees about the slice normal, 5 mm per axis, about the grid centre; the
copy is resampled with a cubic B-spline and -1024 HU outside the field of view.

- speed: wall time of the registration call with both images already in memory, median of
  REPEATS runs (after one warm-up run for ours). Ours: ``imaging.registration.register`` with
  its defaults (rigid then affine, one thread: bit-reproducible). Peers, each in its own
  process (itk-elastix and picsl-greedy bundle their own ITK), with their default threads:
  itk-elastix's default rigid parameter map; picsl-greedy rigid (``-a -dof 6 -ia-image-centers
  -n 100x50x10 -m NMI``, its documented example); and the textbook three-level SimpleITK rigid
  set-up of the SimpleITK notebooks (Mattes MI 50 bins, 1 % random samples, gradient descent
  100 iterations, shrink 4/2/1, smoothing 2/1/0 mm).
- accuracy: TRE95, the 95th percentile of |T_est(x) - T_true(x)| over 500 points inside the
  body (fixed image above -500 HU, seeded).

Peers are optional (``pip install itk-elastix picsl-greedy``, never imported at runtime); a
peer that is not installed is skipped with a note. Run alone:
``.venv/bin/python benchmarks/bench_register.py``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

REPEATS = 3
N_POINTS = 500
UNIT = "TRE95 mm"
SAMPLE = REPO / "sample_data" / "generated"
MOTION_SEED = 20240517

# Runs in a fresh interpreter: argv = kind, fixed, moving, repeats, out.json.
_PEER_SCRIPT = r"""
import json, sys, time
kind, fixed, moving, repeats, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
times, results = [], []
if kind == "elastix":
    import itk
    f = itk.imread(fixed, itk.F)
    m = itk.imread(moving, itk.F)
    po = itk.ParameterObject.New()
    po.AddParameterMap(po.GetDefaultParameterMap("rigid"))
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, tp = itk.elastix_registration_method(f, m, parameter_object=po, log_to_console=False)
        times.append(time.perf_counter() - t0)
        results.append({"parameters": [float(v) for v in tp.GetParameter(0, "TransformParameters")],
                        "center": [float(v) for v in tp.GetParameter(0, "CenterOfRotationPoint")],
                        "zyx": tp.GetParameter(0, "ComputeZYX")[0] if "ComputeZYX" in tp.GetParameterMap(0).keys() else "false"})
elif kind == "greedy":
    import io
    import SimpleITK as sitk
    from picsl_greedy import Greedy3D
    f = sitk.ReadImage(fixed, sitk.sitkFloat32)
    m = sitk.ReadImage(moving, sitk.sitkFloat32)
    for _ in range(repeats):
        g = Greedy3D()
        t0 = time.perf_counter()
        g.execute("-i fx mv -a -dof 6 -ia-image-centers -n 100x50x10 -m NMI -o rig", out=io.StringIO(), fx=f, mv=m, rig=None)
        times.append(time.perf_counter() - t0)
        results.append({"matrix_ras": [[float(v) for v in row] for row in g["rig"]]})
else:
    raise SystemExit(f"unknown peer {kind}")
with open(out, "w") as fh:
    json.dump({"times": times, "results": results}, fh)
"""


def _motion(rng: np.random.Generator, image):
    import SimpleITK as sitk

    deg = [rng.uniform(-2, 2), rng.uniform(-2, 2), rng.uniform(-4, 4)]
    trans = rng.uniform(-5, 5, size=3)
    centre = image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in image.GetSize()])
    # The sample data's grids have identity direction: grid axes = LPS axes.
    return sitk.Euler3DTransform(centre, *np.deg2rad(deg), trans.tolist()), deg, trans


def _grid_256(image):
    import SimpleITK as sitk

    sp_in, size_in = np.asarray(image.GetSpacing()), np.asarray(image.GetSize())
    size = np.array([256, 256, 150])
    spacing = sp_in * size_in / size  # same field of view
    ref = sitk.Image(size.tolist(), sitk.sitkInt16)
    ref.SetSpacing(spacing.tolist())
    ref.SetDirection(image.GetDirection())
    d = np.asarray(image.GetDirection()).reshape(3, 3)
    ref.SetOrigin((np.asarray(image.GetOrigin()) + d @ ((spacing - sp_in) / 2.0)).tolist())
    return sitk.Resample(image, ref, sitk.Transform(), sitk.sitkBSpline, -1024.0, sitk.sitkInt16)


def cases() -> list[dict]:
    """The two pairs: fixed, moving, true transform (fixed -> moving), TRE points."""
    import SimpleITK as sitk

    from imaging.io import load_nifti
    from imaging.registration import body_mask, sample_points

    if not (SAMPLE / ".complete").is_file():
        raise RuntimeError("sample data missing: run `make sample-data`")
    rng = np.random.default_rng(MOTION_SEED)
    out = []
    sources = [
        ("lung2 512x512x61", load_nifti(SAMPLE / "P001" / "2024-01-02" / "image.nii.gz")),
        ("256x256x150", _grid_256(load_nifti(SAMPLE / "P003" / "2024-01-02" / "image.nii.gz"))),
    ]
    for name, fixed in sources:
        true, deg, trans = _motion(rng, fixed)
        moving = sitk.Resample(fixed, fixed, true.GetInverse(), sitk.sitkBSpline, -1024.0, fixed.GetPixelID())
        points = sample_points(body_mask(fixed), N_POINTS, seed=1)
        out.append({"case": name, "fixed": fixed, "moving": moving, "true": true, "points": points,
                    "motion": {"rotation_deg": [round(v, 3) for v in deg], "translation_mm": [round(float(v), 3) for v in trans]}})
    return out


def _tre95(transform, case) -> float:
    from imaging.registration import target_registration_error

    return float(np.percentile(target_registration_error(transform, case["true"], case["points"]), 95))


def ours(case, repeats: int = REPEATS) -> tuple[float, float, dict]:
    from imaging.registration import register

    register(case["fixed"], case["moving"])  # warm-up: imports, first allocations
    times, results = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = register(case["fixed"], case["moving"])
        times.append(time.perf_counter() - t0)
        results.append(res)
    res = results[-1]
    rigid = dict(res.stage_transforms)["rigid"]
    extra = {"status": res.status, "rigid_tre95_mm": round(_tre95(rigid, case), 4),
             "levels": [(lv.stage, round(lv.spacing_mm[0], 2), lv.iterations, round(lv.seconds, 3)) for lv in res.levels]}
    return statistics.median(times), _tre95(res.transform, case), extra


def textbook(case, repeats: int = REPEATS) -> tuple[float, float]:
    """The three-level rigid set-up of the SimpleITK notebooks."""
    import SimpleITK as sitk

    fixed = sitk.Cast(case["fixed"], sitk.sitkFloat32)
    moving = sitk.Cast(case["moving"], sitk.sitkFloat32)
    times, tre = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        initial = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                                    sitk.CenteredTransformInitializerFilter.GEOMETRY)
        r = sitk.ImageRegistrationMethod()
        r.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
        r.SetMetricSamplingStrategy(r.RANDOM)
        r.SetMetricSamplingPercentage(0.01)
        r.SetInterpolator(sitk.sitkLinear)
        r.SetOptimizerAsGradientDescent(learningRate=1.0, numberOfIterations=100, convergenceMinimumValue=1e-6,
                                        convergenceWindowSize=10)
        r.SetOptimizerScalesFromPhysicalShift()
        r.SetShrinkFactorsPerLevel(shrinkFactors=[4, 2, 1])
        r.SetSmoothingSigmasPerLevel(smoothingSigmas=[2, 1, 0])
        r.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        r.SetInitialTransform(initial, inPlace=False)
        result = r.Execute(fixed, moving)
        times.append(time.perf_counter() - t0)
        tre.append(_tre95(result, case))
    return statistics.median(times), float(np.median(tre))


def _peer_transform(kind: str, result: dict):
    import SimpleITK as sitk

    from imaging.registration import transform_from_matrix

    if kind == "elastix":
        p, c = result["parameters"], result["center"]
        t = sitk.Euler3DTransform(c, p[0], p[1], p[2], p[3:])
        t.SetComputeZYX(str(result["zyx"]).lower() == "true")
        return t
    # greedy: a matrix on RAS physical points, fixed -> moving; LPS = F M F with F = diag(-1, -1, 1).
    f = np.diag([-1.0, -1.0, 1.0, 1.0])
    return transform_from_matrix(f @ np.asarray(result["matrix_ras"]) @ f)


def peer(kind: str, case, workdir: Path, repeats: int = REPEATS) -> tuple[float, float] | None:
    """Median time and TRE95 of a peer run in its own process, or None when it is not installed."""
    module = {"elastix": "itk", "greedy": "picsl_greedy"}[kind]
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    if probe.returncode != 0:
        return None
    import SimpleITK as sitk

    fixed, moving = workdir / "fixed.nii", workdir / "moving.nii"
    if not fixed.exists():
        sitk.WriteImage(case["fixed"], str(fixed))
        sitk.WriteImage(case["moving"], str(moving))
    out = workdir / f"{kind}.json"
    subprocess.run([sys.executable, "-c", _PEER_SCRIPT, kind, str(fixed), str(moving), str(repeats), str(out)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    got = json.loads(out.read_text())
    tre = [_tre95(_peer_transform(kind, r), case) for r in got["results"]]
    return statistics.median(got["times"]), float(np.median(tre))


PEERS = ("itk-elastix default rigid", "picsl-greedy rigid", "SimpleITK textbook 3-level rigid")


def run() -> list[dict]:
    rows = []
    for case in cases():
        ours_s, ours_tre, extra = ours(case)
        with tempfile.TemporaryDirectory(prefix="bench_register_") as tmp:
            measured = {
                PEERS[0]: peer("elastix", case, Path(tmp)),
                PEERS[1]: peer("greedy", case, Path(tmp)),
                PEERS[2]: textbook(case),
            }
        for name, got in measured.items():
            row = {"stage": "register", "case": case["case"], "ours_s": round(ours_s, 3), "peer": name,
                   "peer_s": None, "ratio": None, "ours_accuracy": round(ours_tre, 4), "peer_accuracy": None,
                   "accuracy_unit": UNIT, "motion": case["motion"], "ours_detail": extra,
                   "note": "ours: rigid + affine, 1 thread (bit-reproducible); peers: rigid, their default threads "
                           f"({os.cpu_count()} cores)"}
            if got is None:
                row["note"] += "; peer not installed (pip install itk-elastix picsl-greedy)"
            else:
                row.update(peer_s=round(got[0], 3), ratio=round(ours_s / got[0], 3), peer_accuracy=round(got[1], 4))
            rows.append(row)
    return rows


if __name__ == "__main__":
    columns = ("case", "ours_s", "peer", "peer_s", "ratio", "ours_accuracy", "peer_accuracy", "accuracy_unit")
    result = run()
    widths = {c: max(len(c), *(len(str(r.get(c))) for r in result)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in result:
        print("  ".join(str(r.get(c)).ljust(widths[c]) for c in columns))
    for r in result[:: len(PEERS)]:
        print(f"{r['case']}: motion {r['motion']}; ours {r['ours_detail']}")
