"""Header indexing: ours vs a plain pydicom walk over 10,000 slice files.

The archive (generated once under ``benchmarks/.cache/``): 50 series of 200
small CT slices (64 x 64 pixels, the realistic ~120-element header of
``bench_load``), 5 patients, nested folders, random names, plus some junk.

Stages (median of 3, warm page cache):

- ``index (no catalogue)``: ``scan_archive`` + ``group_series`` (volumes with
  their geometry checked) vs the peer, a plain walk that ``pydicom.dcmread``\\s
  every header (``stop_before_pixels``) and groups by SeriesInstanceUID;
- ``index (catalogue, first run)``: the same, writing the SQLite catalogue;
- ``index (catalogue, rerun)``: nothing changed, every header from the catalogue.

Accuracy columns: the number of volumes found (50 expected).

Usage: ``python benchmarks/bench_index.py [--files N]``; ``run()`` returns the rows.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
CACHE = HERE / ".cache"
SERIES_SIZE = 200


def cached_archive(n_files: int) -> Path:
    from bench_load import ct_header
    from pydicom.uid import generate_uid

    root = CACHE / f"archive{n_files}"
    done = CACHE / f"archive{n_files}.complete"
    if done.is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    print(f"generating {root} (once) ...", file=sys.stderr)
    rng = random.Random(3)
    pixels = np.random.default_rng(0).integers(0, 2000, size=(64, 64)).astype(np.int16).tobytes()
    n_series = max(1, n_files // SERIES_SIZE)
    for s in range(n_series):
        patient = f"PAT{s % 5:03d}"
        series_uid, study_uid, for_uid = generate_uid(), generate_uid(), generate_uid()
        folder = root / patient / f"study{s // 5}" / f"series{s}"
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(SERIES_SIZE):
            ds = ct_header(k, SERIES_SIZE, series_uid=series_uid, study_uid=study_uid, for_uid=for_uid, size=64, patient=patient)
            ds.PixelData = pixels
            ds.save_as(folder / f"{rng.getrandbits(48):012x}", enforce_file_format=True)
    for i in range(20):  # what real exports carry besides images
        (root / f"notes{i}.txt").write_text("export log")
    done.write_text("ok")
    return root


def _median_time(fn, repeats: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def plain_pydicom_walk(root: Path) -> int:
    """The peer: what a script would do with pydicom alone."""
    import pydicom

    series: dict[str, list[str]] = defaultdict(list)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for dirpath, _, filenames in os.walk(root):
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    ds = pydicom.dcmread(path, stop_before_pixels=True)
                    series[str(ds.SeriesInstanceUID)].append(path)
                except Exception:  # noqa: BLE001 - the peer skips whatever fails, as such scripts do
                    continue
    return len(series)


def run(n_files: int = 10_000) -> list[dict]:
    from bench_load import _row

    from imaging.io import group_series, scan_archive

    root = cached_archive(n_files)
    for p in root.rglob("*"):
        if p.is_file():
            p.read_bytes()
    case = f"{n_files} CT slice files ({n_files // SERIES_SIZE} series), nested, random names, {os.cpu_count()} CPUs"
    peer = "pydicom walk (dcmread stop_before_pixels, group by series)"
    peer_s, peer_n = _median_time(lambda: plain_pydicom_walk(root))
    rows = []

    ours_s, volumes = _median_time(lambda: group_series(scan_archive(root).headers))
    rows.append(_row(stage="index (no catalogue)", case=case, ours_s=ours_s, peer=peer, peer_s=peer_s,
                     ratio=ours_s / peer_s, ours_accuracy=len(volumes), peer_accuracy=peer_n, accuracy_unit="volumes found"))

    work = Path(tempfile.mkdtemp(prefix="bench_index_"))
    try:
        firsts = []
        for i in range(3):
            cat = work / f"cat{i}.sqlite"
            t0 = time.perf_counter()
            volumes = group_series(scan_archive(root, catalogue=cat).headers)
            firsts.append(time.perf_counter() - t0)
        first_s = statistics.median(firsts)
        rows.append(_row(stage="index (catalogue, first run)", case=case, ours_s=first_s, peer=peer, peer_s=peer_s,
                         ratio=first_s / peer_s, ours_accuracy=len(volumes), peer_accuracy=peer_n,
                         accuracy_unit="volumes found"))
        rerun_s, volumes = _median_time(lambda: group_series(scan_archive(root, catalogue=work / "cat0.sqlite").headers))
        rows.append(_row(stage="index (catalogue, rerun unchanged)", case=case, ours_s=rerun_s, peer=peer, peer_s=peer_s,
                         ratio=rerun_s / peer_s, ours_accuracy=len(volumes), peer_accuracy=peer_n,
                         accuracy_unit="volumes found"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> None:
    from bench_load import print_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    print_table(run(args.files))


if __name__ == "__main__":
    main()
