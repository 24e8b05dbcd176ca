"""The sample glioma (P004, sample_data/glioma.py) run as `make demo` runs it: RANO from the images.

The enhancing lesion stays the same; the T2/FLAIR abnormality grows from 77 ml to 164 ml, outside the 12 weeks
after chemoradiotherapy. RANO 2010 calls PD on that increase, read from the FLAIR series of the archive (chosen by
``dataset.series.flair``, registered to the T1c within each exam); RANO 2.0 and mRANO do not.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def glioma_run(glioma_root: Path, tmp_path_factory) -> Path:
    from rich.console import Console

    from pipelines.batch.run import run_pipeline
    from pipelines.config import load_config

    out = tmp_path_factory.mktemp("glioma-run")
    config = load_config(REPO / "configs" / "sample_glioma.yaml", [f"output_dir={out}", "executor.workers=2"])
    summary = run_pipeline(config, Console(stderr=True, quiet=True))
    assert not summary.failures, summary.failures
    return out


def test_calls_are_the_intended_ones(glioma_run: Path, glioma_root: Path) -> None:
    truth = json.loads((glioma_root / "truth.json").read_text())
    rows = _rows(glioma_run / "responses.csv")
    for criterion in ("rano", "rano2", "mrano"):
        got = [r["response"] or None for r in rows if r["criterion"] == criterion]
        assert got == truth["intended"][criterion], criterion
    pd = next(r for r in rows if r["criterion"] == "rano" and r["response"] == "PD")
    assert "T2/FLAIR increased (images: FLAIR burden" in pd["reason"]


def test_flair_burden_measured_on_the_flair_series_against_the_truth(glioma_run: Path, glioma_root: Path) -> None:
    truth = {t["date"]: t for t in json.loads((glioma_root / "truth.json").read_text())["timepoints"]}
    flair = {r["date"]: r for r in _rows(glioma_run / "lesions.csv") if r["compartment"] == "flair_burden"}
    assert set(flair) == set(truth)
    for date, row in flair.items():
        assert row["sequence"] == "flair"
        # The FLAIR's 0.9 x 0.9 x 5 mm grid against the label map's 0.78 x 0.78 x 6.5 mm: within 3%.
        assert float(row["volume_mm3"]) == pytest.approx(truth[date]["flair_burden_mm3"], rel=0.03), date
    chosen = [r for r in _rows(glioma_run / "series.csv") if r["role"] == "flair" and r["chosen"] == "True"]
    assert len(chosen) == len(truth)
    registered = [r for r in _rows(glioma_run / "registrations.csv") if r["registered"].startswith("FLAIR")]
    assert len(registered) == len(truth) and all(r["status"] == "ok" for r in registered)
    # The head moved 3.5 degrees and 2.7 mm between the two sequences (sample_data/glioma.py FLAIR_MOTION).
    for r in registered:
        assert float(r["rotation_deg"]) == pytest.approx(3.5, abs=0.3)
        assert float(r["translation_mm"]) == pytest.approx(2.69, abs=0.5)
