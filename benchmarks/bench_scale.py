"""Scale benchmark: end-to-end runs of a generated archive at growing sizes, a resume after SIGKILL, and the crawl
of 100,000 files.

Targets (issue "Scale"): time per time point constant within 15 % from 50 to 2,000 time points; the main
process's peak memory flat (< 1 GB, independent of the archive size); the crawl of 100,000 files <= 15 s cold and
<= 2 s on an unchanged rerun.

- runs: ``tumor-response run config.yaml`` (a fresh process, 2 local workers, a fresh output folder outside the
  archive, the archive's header catalogue removed first: everything cold) on the archive of
  benchmarks/scale_archive.py (patients x 4 CT studies of 64 x 64 x 24, tracking by registration, RECIST, no DICOM
  export, no snapshots, no radiomics) at SIZES time points. Wall time per time point, and the main process's peak
  RSS: its kernel high-water mark (``VmHWM`` of /proc/<pid>/status, polled every 0.1 s; the workers are separate
  processes, their own peak reported beside it). One run per size (a 500-tp run takes minutes), so the figures
  carry the VM's +-10 % drift. Phases of each run from its run.log (discovery, tasks, assessment and outputs).
- resume: the largest size once more, SIGKILLed (main process and its workers) once its run.log records half of its
  registrations (submitted first, most of the work: about half-way in time), then rerun on the same output
  folder; the resumed run's time against the uninterrupted run's, its responses.csv compared with the latter's.
- crawl: ``tumor-response index ROOT`` on 100,000 one-frame CT files (400 series of 250): cold (catalogue file
  removed) with the files evicted from the page cache (posix_fadvise DONTNEED, per file: nobody else's cache is
  touched), cold with a warm page cache, and the unchanged rerun (median of 3 each).

Environment: ``BENCH_SCALE_SIZES`` (comma-separated, default ``50,200,500``); ``BENCH_SCALE_FULL=1`` adds 2000
(about 30 min for the run, as much again for the kill and resume, on 2 vCPUs); ``BENCH_SCALE_CRAWL`` (files,
default 100000; 0 skips the crawl); ``BENCH_SCALE_RESUME=0`` skips the kill/resume, ``BENCH_SCALE_RESUME_AT=N``
does it at size N (default: the largest); ``BENCH_SCALE_REUSE=1`` keeps the figures scale.json already holds.
Writes benchmarks/results/scale.json (every figure) and benchmarks/results/scale.png (the plot).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"
OUT_ROOT = HERE / ".cache" / "scale_out"
CLI = [sys.executable, "-m", "pipelines.cli"]
WORKERS = 2
CATALOGUE = ".tumor-response-index.sqlite"
TARGET_TP_DRIFT = 1.15
TARGET_RSS_MB = 1024.0
TARGET_CRAWL_COLD_S = 15.0
TARGET_CRAWL_RERUN_S = 2.0


def _sizes() -> list[int]:
    sizes = [int(s) for s in os.environ.get("BENCH_SCALE_SIZES", "50,200,500").split(",") if s.strip()]
    if os.environ.get("BENCH_SCALE_FULL") == "1" and 2000 not in sizes:
        sizes.append(2000)
    return sorted(sizes)


def _hwm_kb(pid: int) -> int | None:
    """Peak resident set (VmHWM, kB) of one process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def _children(pid: int) -> list[int]:
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _done_tasks(log: Path, kind: str = "") -> int:
    """Tasks (of ``kind``, e.g. ``align:``) the run's log records as finished."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return 0
    return len(re.findall(rf"{kind}\S* (?:done|cached) in [0-9.]+ s", text))


def _run(cmd: list[str], *, kill_at_tasks: int | None = None, kill_kind: str = "", log: Path | None = None) -> dict:
    """Run ``cmd`` in a new session, polling the main process's (and its workers') peak RSS; optionally SIGKILL the
    main process and its workers once ``log`` records ``kill_at_tasks`` finished tasks of ``kill_kind``."""
    load_before = os.getloadavg()[0]
    t0, wall0 = time.perf_counter(), time.time()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    main_kb, worker_kb, killed, kids = 0, 0, False, set()
    import threading

    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    while proc.poll() is None:
        main_kb = max(main_kb, _hwm_kb(proc.pid) or 0)
        kids.update(_children(proc.pid))
        for c in list(kids):
            worker_kb = max(worker_kb, _hwm_kb(c) or 0)
        if kill_at_tasks is not None and log is not None and _done_tasks(log, kill_kind) >= kill_at_tasks:
            pids = [proc.pid, *_children(proc.pid)]
            for p in pids:  # the main process and its own workers only, by id
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            killed = True
            proc.wait()
            break
        time.sleep(0.1)
    seconds = time.perf_counter() - t0
    reader.join(timeout=10)
    output = b"".join(chunks).decode(errors="replace")
    if not killed and proc.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{output[-3000:]}")
    return {"seconds": seconds, "started": wall0, "ended": wall0 + seconds, "main_peak_mb": main_kb / 1024, "worker_peak_mb": worker_kb / 1024,
            "returncode": proc.returncode, "killed": killed,
            "loadavg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)], "output_tail": output[-1500:]}


_STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?)")


def _phases(log: Path, started: float, ended: float) -> dict:
    """Phases of a run from its run.log stamps: process start to the first finished task (imports, discovery,
    staging), the tasks, the last task to the process's end (tracking results, assessment, outputs)."""
    first_task = last_task = None
    for line in log.read_text(errors="replace").splitlines():
        m = _STAMP.match(line)
        if m and re.search(r" (?:done|cached) in [0-9.]+ s", line):
            t = dt.datetime.fromisoformat(m.group(1).replace(",", ".")).timestamp()
            first_task = first_task or t
            last_task = t
    if first_task is None:
        return {}
    return {"start_to_first_task_s": round(first_task - started, 2), "tasks_s": round(last_task - first_task, 2),
            "last_task_to_end_s": round(ended - last_task, 2)}


def _run_cmd(config: Path, out: Path) -> list[str]:
    return [*CLI, "run", str(config), "--set", f"output_dir={out}", "--set", f"executor.workers={WORKERS}"]


def scale_run(n_tp: int) -> dict:
    from scale_archive import subset_archive

    root = subset_archive(n_tp)
    (root / CATALOGUE).unlink(missing_ok=True)
    out = OUT_ROOT / f"run_{n_tp}"
    shutil.rmtree(out, ignore_errors=True)
    got = _run(_run_cmd(root / "config.yaml", out))
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
    failures = (out / "failures.csv").read_text().count("\n") - 1 if (out / "failures.csv").is_file() else None
    got.update({"n_tp": n_tp, "s_per_tp": got["seconds"] / n_tp, "failures": failures,
                "phases": _phases(out / "run.log", got["started"], got["ended"]), "summary_keys": sorted(summary)[:20]})
    print(f"   scale: {n_tp} tp in {got['seconds']:.1f} s ({got['s_per_tp']:.3f} s/tp), main peak "
          f"{got['main_peak_mb']:.0f} MB, worker peak {got['worker_peak_mb']:.0f} MB, failures {failures}, phases {got['phases']}",
          file=sys.stderr, flush=True)
    return got


def resume_run(n_tp: int, full: dict) -> dict:
    from scale_archive import subset_archive

    root = subset_archive(n_tp)
    (root / CATALOGUE).unlink(missing_ok=True)
    out = OUT_ROOT / f"resume_{n_tp}"
    shutil.rmtree(out, ignore_errors=True)
    total_tasks = _done_tasks(OUT_ROOT / f"run_{n_tp}" / "run.log")
    # Registrations are submitted first and are most of the work: half of them done is about half-way in time.
    n_align = _done_tasks(OUT_ROOT / f"run_{n_tp}" / "run.log", "align:")
    killed = _run(_run_cmd(root / "config.yaml", out), kill_at_tasks=n_align // 2, kill_kind="align:", log=out / "run.log")
    done_before = _done_tasks(out / "run.log")
    log_len = len((out / "run.log").read_text(errors="replace"))
    resumed = _run(_run_cmd(root / "config.yaml", out))
    resumed_log = (out / "run.log").read_text(errors="replace")[log_len:]
    cached = len(re.findall(r" cached in [0-9.]+ s", resumed_log))
    recomputed = len(re.findall(r" done in [0-9.]+ s", resumed_log))
    same = ((out / "responses.csv").read_text() == (OUT_ROOT / f"run_{n_tp}" / "responses.csv").read_text()
            if (out / "responses.csv").is_file() else False)
    print(f"   scale: {n_tp} tp killed after {killed['seconds']:.1f} s ({done_before}/{total_tasks} tasks), resumed in "
          f"{resumed['seconds']:.1f} s ({cached} cached, {recomputed} computed; responses identical: {same}); "
          f"uninterrupted {full['seconds']:.1f} s", file=sys.stderr, flush=True)
    return {"n_tp": n_tp, "killed_after_s": killed["seconds"], "tasks_before_kill": done_before,
            "total_tasks": total_tasks, "resumed_s": resumed["seconds"], "resumed_cached": cached,
            "resumed_computed": recomputed, "responses_identical": same, "uninterrupted_s": full["seconds"],
            "resumed_main_peak_mb": resumed["main_peak_mb"]}


def _evict(root: Path) -> None:
    """Drop the archive's files from the page cache (their clean pages only; root not needed)."""
    os.sync()
    for dirpath, _, names in os.walk(root):
        for name in names:
            try:
                fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def crawl(n_files: int, repeats: int = 3) -> dict:
    from scale_archive import crawl_archive

    root = crawl_archive(n_files)
    cmd = [*CLI, "index", str(root)]
    cold_evicted, cold_warm, rerun = [], [], []
    for _ in range(repeats):
        (root / CATALOGUE).unlink(missing_ok=True)
        _evict(root)
        cold_evicted.append(_run(cmd))
    for _ in range(repeats):
        (root / CATALOGUE).unlink(missing_ok=True)
        cold_warm.append(_run(cmd))
    for _ in range(repeats):
        rerun.append(_run(cmd))
    m = {k: statistics.median(r["seconds"] for r in v) for k, v in
         (("cold_evicted", cold_evicted), ("cold_warm", cold_warm), ("rerun", rerun))}
    tail = rerun[-1]["output_tail"]
    print(f"   crawl {n_files}: cold (evicted) {m['cold_evicted']:.2f} s, cold (page cache warm) {m['cold_warm']:.2f} s, "
          f"rerun {m['rerun']:.2f} s; main peak {max(r['main_peak_mb'] for r in cold_warm):.0f} MB", file=sys.stderr,
          flush=True)
    return {"n_files": n_files, **{f"{k}_s": v for k, v in m.items()},
            "all_s": {k: [round(r["seconds"], 3) for r in v] for k, v in
                      (("cold_evicted", cold_evicted), ("cold_warm", cold_warm), ("rerun", rerun))},
            "main_peak_mb_cold": max(r["main_peak_mb"] for r in cold_warm + cold_evicted),
            "worker_peak_mb_cold": max(r["worker_peak_mb"] for r in cold_warm + cold_evicted),
            "rerun_tail": tail[-400:]}


def plot(runs: list[dict], resume: dict | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["n_tp"] for r in runs]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ref = runs[0]["s_per_tp"]
    ax1.plot(n, [r["s_per_tp"] for r in runs], "o-", label="end-to-end run, 2 workers")
    ax1.axhspan(ref / TARGET_TP_DRIFT, ref * TARGET_TP_DRIFT, color="tab:green", alpha=0.15,
                label=f"target: within 15 % of the {n[0]}-tp figure")
    if resume:
        ax1.plot([resume["n_tp"]], [resume["resumed_s"] / resume["n_tp"]], "s", color="tab:orange",
                 label="resumed run after SIGKILL at half-way (s / all tp)")
    ax1.set_xscale("log")
    ax1.set_xticks(n, [str(v) for v in n])
    ax1.minorticks_off()
    ax1.set_xlabel("archive size (patient-time points)")
    ax1.set_ylabel("wall time per time point (s)")
    ax1.set_ylim(bottom=0)
    ax1.legend(fontsize=8, loc="lower left")
    ax1.set_title("time per time point")
    ax2.plot(n, [r["main_peak_mb"] for r in runs], "o-", label="main process (VmHWM)")
    ax2.plot(n, [r["worker_peak_mb"] for r in runs], "^--", color="tab:gray", label="largest worker (VmHWM)")
    ax2.axhline(TARGET_RSS_MB, color="tab:red", ls=":", label="target: < 1 GB")
    ax2.set_xscale("log")
    ax2.set_xticks(n, [str(v) for v in n])
    ax2.minorticks_off()
    ax2.set_xlabel("archive size (patient-time points)")
    ax2.set_ylabel("peak resident memory (MB)")
    ax2.set_ylim(0, max(TARGET_RSS_MB * 1.1, *(r["main_peak_mb"] * 1.1 for r in runs)))
    ax2.legend(fontsize=8, loc="center right")
    ax2.set_title("peak memory")
    fig.suptitle(f"tumor-response run on a generated archive (64x64x24 CT, 4 tp/patient, {os.cpu_count()} CPUs)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _row(case: str, ours_s, peer, peer_s, ratio, ours_acc, peer_acc, unit) -> dict:
    r = lambda v, d=4: None if v is None else round(v, d)  # noqa: E731
    return {"stage": "scale", "case": case, "ours_s": r(ours_s), "peer": peer, "peer_s": r(peer_s), "ratio": r(ratio, 3),
            "ours_accuracy": r(ours_acc, 2) if isinstance(ours_acc, float) else ours_acc,
            "peer_accuracy": peer_acc, "accuracy_unit": unit}


def rows_of(runs: list[dict], resume: dict | None, crawl_res: dict | None) -> list[dict]:
    rows = []
    ref = runs[0] if runs else None
    for r in runs:
        rows.append(_row(f"{r['n_tp']} tp: s per tp (end to end, {WORKERS} workers)", r["s_per_tp"],
                         f"{ref['n_tp']} tp run (target ratio <= {TARGET_TP_DRIFT})", ref["s_per_tp"],
                         r["s_per_tp"] / ref["s_per_tp"], round(r["seconds"], 1), None, "wall s of the whole run"))
        rows.append(_row(f"{r['n_tp']} tp: peak main RSS MB", r["seconds"], f"target < {TARGET_RSS_MB:.0f} MB", None,
                         r["main_peak_mb"] / TARGET_RSS_MB, round(r["main_peak_mb"], 1), round(r["worker_peak_mb"], 1),
                         "MB: main process VmHWM (peer column: largest worker's); ratio = main / 1024 MB"))
    if resume:
        rows.append(_row(f"{resume['n_tp']} tp: resumed after SIGKILL at {resume['tasks_before_kill']}/"
                         f"{resume['total_tasks']} tasks", resume["resumed_s"], "uninterrupted run", resume["uninterrupted_s"],
                         resume["resumed_s"] / resume["uninterrupted_s"], resume["resumed_cached"],
                         resume["total_tasks"], f"tasks from cache in the resumed run (of all); responses identical: "
                         f"{resume['responses_identical']}"))
    if crawl_res:
        k = crawl_res["n_files"] // 1000
        rows.append(_row(f"crawl {k}k cold (no catalogue, files evicted from page cache)", crawl_res["cold_evicted_s"],
                         "target", TARGET_CRAWL_COLD_S, crawl_res["cold_evicted_s"] / TARGET_CRAWL_COLD_S,
                         round(crawl_res["main_peak_mb_cold"], 1), None, "MB peak main RSS"))
        rows.append(_row(f"crawl {k}k cold (no catalogue, page cache warm)", crawl_res["cold_warm_s"], "target",
                         TARGET_CRAWL_COLD_S, crawl_res["cold_warm_s"] / TARGET_CRAWL_COLD_S, None, None, None))
        rows.append(_row(f"crawl {k}k rerun (unchanged)", crawl_res["rerun_s"], "target", TARGET_CRAWL_RERUN_S,
                         crawl_res["rerun_s"] / TARGET_CRAWL_RERUN_S, None, None, None))
    return rows


def run() -> list[dict]:
    sizes = _sizes()
    results: dict = {"sizes": sizes, "workers": WORKERS, "cpus": os.cpu_count(), "runs": [], "resume": None, "crawl": None}
    out_json = RESULTS / "scale.json"

    def save() -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(results, indent=2, default=str) + "\n")

    # BENCH_SCALE_REUSE=1: keep the figures of scale.json for what it already holds (sizes, crawl), measure the rest.
    old = json.loads(out_json.read_text()) if os.environ.get("BENCH_SCALE_REUSE") == "1" and out_json.is_file() else {}
    reused = {r["n_tp"]: r for r in old.get("runs", [])}
    n_crawl = int(os.environ.get("BENCH_SCALE_CRAWL", "100000"))
    if n_crawl:
        results["crawl"] = old["crawl"] if (old.get("crawl") or {}).get("n_files") == n_crawl else crawl(n_crawl)
        save()
    resume_at = int(os.environ.get("BENCH_SCALE_RESUME_AT", "0") or 0) or (sizes[-1] if sizes else 0)
    if (old.get("resume") or {}).get("n_tp") == resume_at:
        results["resume"] = old["resume"]
    for n in sizes:
        results["runs"].append(reused[n] if n in reused else scale_run(n))
        save()
        if n == resume_at and results["resume"] is None and os.environ.get("BENCH_SCALE_RESUME", "1") != "0":
            results["resume"] = resume_run(n, results["runs"][-1])
            save()
        if len(results["runs"]) >= 2:
            plot(results["runs"], results["resume"], RESULTS / "scale.png")
    if results["runs"]:
        plot(results["runs"], results["resume"], RESULTS / "scale.png")
    rows = rows_of(results["runs"], results["resume"], results["crawl"])
    results["rows"] = rows
    save()
    return rows


if __name__ == "__main__":
    for row in run():
        print(json.dumps(row))
