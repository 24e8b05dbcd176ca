"""Pull throughput on loopback: the whole sample data from a throw-away Orthanc, by DICOMweb and DIMSE.

    .venv/bin/python -m tests.pacs.bench_pull [WORKERS ...]     (default: 1 2 4)

Not a test (pytest does not collect it): the figures of docs/pacs.md come from it.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from pipelines.dicom.pacs import StudyQuery, pull
from tests.pacs.orthanc import Orthanc, dicomweb_plugin, orthanc_binary

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "generated"


def main(workers: list[int]) -> None:
    binary, plugin = orthanc_binary(), dicomweb_plugin()
    if binary is None or plugin is None:
        sys.exit("Orthanc and its DICOMweb plugin are needed (Debian packages orthanc, orthanc-dicomweb)")
    work = Path(tempfile.mkdtemp(prefix="bench-pull-"))
    server = Orthanc(work, binary, plugin)
    server.start()
    try:
        files = sorted(SAMPLE.glob("*/*/dicom/*"))
        t0 = time.perf_counter()
        server.upload(files)
        print(f"uploaded {len(files)} instances in {time.perf_counter() - t0:.1f} s")
        print("route     workers instances    MB   seconds   MB/s  instances/s")
        for n in workers:
            for name, address in (("dicomweb", server.dicomweb), ("dimse", server.dimse)):
                archive = work / "archive"
                shutil.rmtree(archive, ignore_errors=True)
                r = pull(address, archive, StudyQuery(), workers=n)
                print(f"{name:9} {n:7} {r.fetched:9} {r.bytes / 2**20:6.1f} {r.seconds:8.2f} {r.mb_per_s:6.1f} "
                      f"{r.instances_per_s:12.1f}")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1, 2, 4])
