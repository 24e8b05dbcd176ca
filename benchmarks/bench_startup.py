"""Start-up: whole-process ``tumor-response`` commands, interpreter start and imports included.

Each row times the console script as a fresh process (what a user or a shell
loop pays), median of >= 3 runs after one untimed warm-up:

- ``--help``: the top-level help, against the issue's target of 0.2 s;
- ``assess``: one course (``out/courses/P002.json`` from ``make demo``, else a
  small course written here) by recist, irecist and mrano, against 0.3 s;
- ``convert CLI``: ``tumor-response convert`` of the 512 x 512 x 400 CT of
  ``bench_load.py`` (same cached series) against ``dcm2niix -z n``, target
  ratio <= 1.3;
- ``import floor``: ``python -c pass`` and the imports ``convert`` needs, so
  the convert row can be split into start-up and work.

For the target rows ``peer`` is the target and ``ratio`` = ours / target (<= 1 meets it).
Usage: ``python benchmarks/bench_startup.py [--slices N] [--repeats N]``; ``run()`` returns the rows.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable
CLI = str(Path(PY).parent / "tumor-response")

HELP_TARGET_S = 0.2
ASSESS_TARGET_S = 0.3
CONVERT_TARGET_RATIO = 1.3

#: A small course (docs/response.md) for when ``make demo`` has not been run.
_COURSE = {
    "patient_id": "BENCH",
    "context": {"treatment_start": "2024-01-05", "immunotherapy": False},
    "timepoints": [
        {"date": d, "slice_thickness_mm": 5.0, "non_target": [], "new_lesions": [],
         "target": [{"lesion": "L1", "organ": "liver", "nodal": False, "long_axis_mm": a, "perpendicular_mm": p,
                     "volume_mm3": v},
                    {"lesion": "L2", "organ": "lung", "nodal": False, "long_axis_mm": b, "perpendicular_mm": q,
                     "volume_mm3": w}]}
        for d, a, p, v, b, q, w in (
            ("2024-01-02", 40.0, 30.0, 25000.0, 22.0, 15.0, 3800.0),
            ("2024-03-01", 30.0, 22.0, 10000.0, 18.0, 12.0, 2000.0),
            ("2024-05-02", 26.0, 20.0, 7000.0, 15.0, 10.0, 1200.0),
            ("2024-07-01", 34.0, 25.0, 15000.0, 19.0, 14.0, 2600.0),
        )
    ],
}


def _bench_load():
    """benchmarks/bench_load.py (its cached CT series and helpers), loaded by path as benchmarks/run.py does."""
    spec = importlib.util.spec_from_file_location("bench_load", HERE / "bench_load.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _quiet(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _median_process(cmd: list[str], repeats: int) -> float:
    """Median wall time of ``cmd`` as a fresh process, after one untimed warm-up (page cache, .pyc)."""
    _quiet(cmd)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _quiet(cmd)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _row(**row) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}


def _course(work: Path) -> tuple[Path, str]:
    demo = REPO / "out" / "courses" / "P002.json"
    if demo.is_file():
        return demo, "out/courses/P002.json (make demo)"
    path = work / "course.json"
    path.write_text(json.dumps(_COURSE))
    return path, "4 time points, 2 targets (written by the benchmark)"


def run(n_slices: int = 400, repeats: int = 3) -> list[dict]:
    small = max(repeats, 7)  # sub-second rows: more runs, same median semantics
    rows: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="bench_startup_"))
    try:
        floor_s = _median_process([PY, "-c", "pass"], small)
        help_s = _median_process([CLI, "--help"], small)
        rows.append(_row(stage="start-up: --help (fresh process)", case=f"tumor-response --help; bare interpreter {floor_s:.3f} s",
                         ours_s=help_s, peer="target", peer_s=HELP_TARGET_S, ratio=help_s / HELP_TARGET_S,
                         ours_accuracy=None, peer_accuracy=None, accuracy_unit="-"))

        course, case = _course(work)
        assess_cmd = [CLI, "assess", str(course), "--criteria", "recist,irecist,mrano"]
        assess_s = _median_process(assess_cmd, small)
        rows.append(_row(stage="start-up: assess one course (fresh process)", case=f"{case}, recist,irecist,mrano",
                         ours_s=assess_s, peer="target", peer_s=ASSESS_TARGET_S, ratio=assess_s / ASSESS_TARGET_S,
                         ours_accuracy=None, peer_accuracy=None, accuracy_unit="-"))

        bl = _bench_load()
        exe = bl._dcm2niix()
        folder, truth = bl.cached_series(n_slices)
        case = f"CT 512x512x{n_slices}, uncompressed, shuffled names"
        imports_s = _median_process([PY, "-c", "import pipelines.cli, SimpleITK; from imaging.io import load_volume, save_nifti"],
                                    small)
        rows.append(_row(stage="start-up: convert's imports", case="python -c 'import pipelines.cli, SimpleITK, imaging.io'",
                         ours_s=imports_s, peer="python -c pass", peer_s=floor_s, ratio=imports_s / floor_s,
                         ours_accuracy=None, peer_accuracy=None, accuracy_unit="-"))
        if exe is None:
            print("dcm2niix not found: pip install -e '.[bench]' (benchmark-only peer)", file=sys.stderr)
            return rows
        bl._warm(folder)
        version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip().splitlines()
        peer = f"dcm2niix -z n ({version[-1] if version else '?'})"
        d_out = work / "d2n"
        d_out.mkdir()
        d_cmd = [exe, "-z", "n", "-o", str(d_out), "-f", "vol", str(folder)]
        ours_out = work / "cli.nii"
        ours_cmd = [CLI, "convert", str(folder), str(ours_out)]
        _quiet(d_cmd)
        _quiet(ours_cmd)  # warm-up: .pyc, page cache
        d_s = bl._median_time(lambda: _quiet(d_cmd), repeats, before=lambda: bl._remove(d_out))
        d_err = bl._errors(next(d_out.glob("*.nii")), truth)[0]
        ours_s = bl._median_time(lambda: _quiet(ours_cmd), repeats, before=lambda: bl._remove(ours_out))
        ours_err = bl._errors(ours_out, truth)[0]
        rows.append(_row(stage="start-up: convert CLI (fresh process)", case=case, ours_s=ours_s, peer=peer, peer_s=d_s,
                         ratio=ours_s / d_s, ours_accuracy=ours_err, peer_accuracy=d_err,
                         accuracy_unit=f"max |voxel - truth| HU (target ratio <= {CONVERT_TARGET_RATIO})"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for r in run(args.slices, args.repeats):
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(f"{r['stage']}: ours {r['ours_s']} s, {r['peer']} {r['peer_s']} s, ratio {ratio}  ({r['case']})")


if __name__ == "__main__":
    main()
