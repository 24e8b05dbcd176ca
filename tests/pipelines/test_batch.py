"""Batch behaviour: failures isolated, cache reuse, resume after SIGKILL, local and dask executors."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from tests.data_factory import write_mini_archive

RESULT_FILES = ("lesions.csv", "lesions.parquet", "responses.csv", "best_overall_response.csv", "failures.csv",
                "summary.json", "courses/MINI01.json", "courses/MINI02.json")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return write_mini_archive(tmp_path_factory.mktemp("archive"))


def _run(config: Path, out: Path, *extra: str):
    return CliRunner().invoke(app, ["run", str(config), "--set", f"output_dir={out}", *extra])


def _results(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in RESULT_FILES}


@pytest.fixture(scope="module")
def reference(archive: Path, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("ref")
    result = _run(archive, out)
    assert result.exit_code == 0, result.output
    return _results(out)


def test_reference_run_calls(reference):
    rows = list(csv.DictReader(reference["responses.csv"].decode().splitlines()))
    calls = {(r["patient_id"], r["date"]): r["response"] for r in rows}
    # MINI01: 12 mm -> 7.2 mm (-40%) PR; MINI02: 12 -> 18 mm (+50%, +6 mm) PD
    assert calls[("MINI01", "2024-02-20")] == "PR"
    assert calls[("MINI02", "2024-02-20")] == "PD"


def test_rerun_reuses_the_cache_and_recomputes_what_changed(archive, tmp_path):
    out = tmp_path / "out"
    assert _run(archive, out).exit_code == 0
    again = _run(archive, out)
    assert "(6 from cache)" in again.output
    # a changed setting of the measure stage recomputes every time point
    changed = _run(archive, out, "--set", "lesions.min_volume_mm3=5")
    assert "(0 from cache)" in changed.output


def test_one_bad_timepoint_does_not_stop_the_batch(archive, tmp_path):
    import shutil

    broken = tmp_path / "archive"
    shutil.copytree(archive.parent, broken)
    (broken / "MINI02" / "2024-02-20" / "mask.nii.gz").write_bytes(b"not a nifti")
    out = tmp_path / "out"
    result = _run(broken / "config.yaml", out)
    assert result.exit_code == 1  # something failed, and the summary says so
    assert "1 failed" in result.output
    failures = list(csv.DictReader((out / "failures.csv").open()))
    assert len(failures) == 1
    assert failures[0]["patient_id"] == "MINI02" and failures[0]["date"] == "2024-02-20"
    assert "mask.nii.gz" in failures[0]["reason"]
    rows = list(csv.DictReader((out / "responses.csv").open()))
    calls = {(r["patient_id"], r["date"]): r["response"] for r in rows}
    assert calls[("MINI01", "2024-02-20")] == "PR"  # the other patient is complete
    assert calls[("MINI02", "2024-02-20")] == "NE"  # the unreadable scan is not evaluated
    assert calls[("MINI02", "2024-04-10")] == "PD"  # and the patient's next scan still assessed


def _finished_tasks(ledger: Path) -> int:
    """Tasks the run's ledger records as finished (read from another process, as a monitor would)."""
    import sqlite3

    if not ledger.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT count(*) FROM tasks WHERE state IN ('done', 'cached', 'failed')").fetchone()[0]
    except sqlite3.Error:  # the run is creating it
        return 0


@pytest.mark.parametrize("after_tasks", [0, 3, 8])
def test_sigkill_mid_run_then_resume_gives_identical_results(archive, reference, tmp_path, after_tasks):
    """SIGKILL once the ledger shows ``after_tasks`` finished tasks (0: as soon as the ledger exists; 8: among
    the last tasks, or while the outputs are written), then a rerun: the same results as an uninterrupted run.
    The kill points are states of the run, not fractions of a measured time, so each run tests the same thing."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipelines.cli", "run", str(archive), "--set", f"output_dir={out}",
           "--set", "executor.workers=2"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    ledger = out / "ledger.sqlite"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if ledger.is_file() and _finished_tasks(ledger) >= after_tasks:
            break
        time.sleep(0.005)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert killed, "the run ended before the kill point: choose an earlier one"
    resumed = subprocess.run(cmd, capture_output=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert _results(out) == reference
    assert not list(out.rglob("*.tmp")), "a temporary file was left behind"


def test_two_local_workers_give_the_same_results(archive, reference, tmp_path):
    out = tmp_path / "out"
    assert _run(archive, out, "--set", "executor.workers=2").exit_code == 0
    assert _results(out) == reference


def test_dask_local_cluster_gives_the_same_results(archive, reference, tmp_path):
    out = tmp_path / "out"
    result = _run(archive, out, "--set", "executor.kind=dask", "--set", "executor.workers=2", "--set", "cache=false")
    assert result.exit_code == 0, result.output
    assert _results(out) == reference


def test_stale_temporaries_are_cleaned_and_a_folder_in_use_is_refused(archive, tmp_path):
    import fcntl

    out = tmp_path / "out"
    (out / "cache" / "ab").mkdir(parents=True)
    stale = out / "cache" / "ab" / ".abcd.json.x1y2.tmp"  # what a SIGKILL between write and rename leaves
    stale.write_text("{half")
    assert _run(archive, out).exit_code == 0
    assert not stale.exists()
    with (out / ".lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        busy = _run(archive, out)
    assert busy.exit_code == 2 and "in use by another run" in busy.output


def test_lesion_metadata_target_false_and_a_bad_sidecar(archive, tmp_path):
    """A reader's ``target: false`` makes the lesion a non-target (RECIST 1.1 Table 2 then applies);
    a sidecar with an unknown field fails that patient's assessment, naming file, label and field."""
    import json
    import shutil

    root = tmp_path / "archive"
    shutil.copytree(archive.parent, root)
    (root / "MINI01" / "lesions.json").write_text(
        json.dumps({"1": {"lesion_id": "L1", "organ": "lung", "nodal": False, "target": False}}))
    (root / "MINI02" / "lesions.json").write_text(json.dumps({"1": {"lesion_id": "L1", "organs": "lung"}}))
    out = tmp_path / "out"
    result = _run(root / "config.yaml", out)
    assert result.exit_code == 1
    course = json.loads((out / "courses" / "MINI01.json").read_text())
    assert [tp["non_target"] for tp in course["timepoints"]][1] == [{"lesion": "L1", "organ": "lung", "status": "present"}]
    assert all(tp["target"] == [] for tp in course["timepoints"])
    calls = {(r["patient_id"], r["date"]): r["response"] for r in csv.DictReader((out / "responses.csv").open())}
    assert calls[("MINI01", "2024-02-20")] == "non-CR/non-PD"
    failures = list(csv.DictReader((out / "failures.csv").open()))
    assert [(f["patient_id"], f["stage"]) for f in failures] == [("MINI02", "assess")]
    assert "lesions.json: label 1: organs: unknown field" in failures[0]["reason"]


def test_local_workers_share_the_cores_for_their_filters():
    """Each local worker process starts with its share of the cores for ITK filters (and BLAS), not all of them."""
    import SimpleITK as sitk

    from pipelines.batch.executor import make_executor, worker_threads
    from pipelines.config import ExecutorConfig

    cores = os.cpu_count() or 1
    assert worker_threads(1) == cores and worker_threads(2) == max(1, cores // 2) and worker_threads(10 * cores) == 1
    with make_executor(ExecutorConfig(kind="local", workers=2)) as executor:
        seen = [outcome for _, outcome in executor.run([(i, _threads_here, ()) for i in range(4)])]
    assert seen == [(max(1, cores // 2), str(max(1, cores // 2)))] * 4
    assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() >= 1  # this process is left as it was


def _threads_here():
    import SimpleITK as sitk

    return sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(), os.environ.get("OMP_NUM_THREADS")
