"""Batch benchmark: the sample run on 1 and 2 local workers, and the orchestration overhead.

- speed-up: wall time of `run` with 1 worker / with 2 workers, cold cache, on the sample set
  replicated REPLICAS times (new PatientIDs and UIDs; 3 x 16 = 48 patient-time points);
- overhead: (orchestrated run on 1 worker - the same stages called in a plain loop) / orchestrated,
  where "orchestrated" includes the ledger, content hashing, the cache and scheduling.
Each figure is the median of REPEATS runs, in a fresh process per run (whole process, as a user runs it).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data" / "generated"
ARCHIVE = REPO / "benchmarks" / ".cache" / "batch_archive"
REPEATS = 3
REPLICAS = 3


def replicated_archive() -> Path:
    """The sample set REPLICAS times over, each copy with its own PatientID and UIDs; built once, cached."""
    import pydicom
    from pydicom.uid import generate_uid

    config = ARCHIVE / "config.yaml"
    if (ARCHIVE / ".complete").is_file():
        return config
    shutil.rmtree(ARCHIVE, ignore_errors=True)
    ARCHIVE.mkdir(parents=True)
    clinical = (SAMPLE / "clinical.csv").read_text().splitlines()
    out_clinical = [clinical[0]]
    for r in range(REPLICAS):
        for patient_dir in sorted(p for p in SAMPLE.iterdir() if p.is_dir()):
            pid = f"{patient_dir.name}R{r}"
            out_clinical += [pid + line[len(patient_dir.name):] for line in clinical[1:] if line.startswith(patient_dir.name + ",")]
            shutil.copy(patient_dir / "lesions.json", (ARCHIVE / pid).mkdir(parents=True) or ARCHIVE / pid / "lesions.json")
            for tp in sorted(p for p in patient_dir.iterdir() if p.is_dir()):
                dst = ARCHIVE / pid / tp.name
                (dst / "dicom").mkdir(parents=True)
                shutil.copy(tp / "mask.nii.gz", dst / "mask.nii.gz")
                uids = {}
                for f in (tp / "dicom").iterdir():
                    ds = pydicom.dcmread(f)
                    ds.PatientID = pid
                    for tag in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
                        old = str(getattr(ds, tag))
                        setattr(ds, tag, uids.setdefault(old, generate_uid(entropy_srcs=[old, pid])))
                    ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(ds.SOPInstanceUID), pid])
                    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                    ds.save_as(dst / "dicom" / f.name, enforce_file_format=True)
    (ARCHIVE / "clinical.csv").write_text("\n".join(out_clinical) + "\n")
    config.write_text((REPO / "configs" / "sample.yaml").read_text()
                      .replace("../sample_data/generated/clinical.csv", "clinical.csv")
                      .replace("../sample_data/generated", ".").replace("output_dir: ../out", "output_dir: out"))
    (ARCHIVE / ".complete").touch()
    return config

# The same stages and the same output files, called in a plain loop: no ledger, cache, hashing or executor.
_PLAIN = r"""
import sys
from pipelines.config import load_config
from pipelines.discover import discover, load_clinical, load_lesion_metadata
from pipelines.stages import measure_timepoint
from pipelines.course_builder import build_course
from pipelines.outputs import write_csv_atomic, write_parquet_atomic
from pipelines.run import LESION_COLUMNS, RESPONSE_COLUMNS
from imaging.response import assess, course_from_dict
cfg = load_config(sys.argv[1], [f"output_dir={sys.argv[2]}"])
found = discover(cfg.dataset)
clinical = load_clinical(cfg.dataset.clinical)
lesions, responses = [], []
for pid, tps in sorted(found.patients.items()):
    measured = [measure_timepoint(tp, cfg.lesions) for tp in tps]
    meta = load_lesion_metadata(cfg.dataset.root / cfg.dataset.lesion_metadata.format(patient_id=pid, study_date=""))
    course, rows, _ = build_course(pid, measured, clinical.get(pid), meta)
    lesions += rows
    for c in cfg.criteria:
        for t in assess(course_from_dict(course), c).timepoints:
            responses.append({"patient_id": pid, "date": t.date.isoformat(), "criterion": c, "response": t.response,
                              "reason": t.reason, "sum_mm": t.sum_mm})
write_csv_atomic(cfg.output_dir / "lesions.csv", lesions, LESION_COLUMNS)
write_parquet_atomic(cfg.output_dir / "lesions.parquet", lesions, LESION_COLUMNS)
write_csv_atomic(cfg.output_dir / "responses.csv", responses, RESPONSE_COLUMNS)
"""


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
    return time.perf_counter() - t0


def _run_cmd(config: Path, out: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "run", str(config), "--set", f"output_dir={out}",
            "--set", f"executor.workers={workers}"]


def run() -> list[dict]:
    config = replicated_archive()
    n_tp = sum(1 for _ in ARCHIVE.glob("*/*/dicom"))
    rows = []
    times: dict[str, list[float]] = {"w1": [], "w2": [], "plain": []}
    for _ in range(REPEATS):
        for key, workers in (("w1", 1), ("w2", 2)):
            out = Path(tempfile.mkdtemp(prefix="bench_batch_"))
            times[key].append(_timed(_run_cmd(config, out, workers)))
            shutil.rmtree(out)
        out = Path(tempfile.mkdtemp(prefix="bench_batch_"))
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", _PLAIN, str(config), str(out)], check=True, capture_output=True, cwd=REPO)
        times["plain"].append(time.perf_counter() - t0)
        shutil.rmtree(out)
    w1, w2, plain = (statistics.median(times[k]) for k in ("w1", "w2", "plain"))
    rows.append({"stage": "batch", "case": f"sample run, {n_tp} patient-time points, 2 workers vs 1",
                 "ours_s": round(w2, 3), "peer": "same run, 1 worker", "peer_s": round(w1, 3),
                 "ratio": round(w2 / w1, 3), "ours_accuracy": round(w1 / w2, 3), "peer_accuracy": 1.0,
                 "accuracy_unit": "speed-up (x)"})
    rows.append({"stage": "batch", "case": "orchestration overhead (ledger, hashing, cache, scheduling), 1 worker",
                 "ours_s": round(w1, 3), "peer": "plain loop over the same stages", "peer_s": round(plain, 3),
                 "ratio": round(w1 / plain, 3), "ours_accuracy": round(100 * (w1 - plain) / w1, 2),
                 "peer_accuracy": 0.0, "accuracy_unit": "overhead % of wall time"})
    return rows


if __name__ == "__main__":
    for row in run():
        print(json.dumps(row))
