"""RANO from the images: a generated glioma with post-contrast T1, a FLAIR on its own grid and BraTS labels.

The enhancing lesion stays the same size beside a resection cavity (never counted); the oedema grows from 30 to 30.6 mm radius (+6% in volume: stable)
and then to 36 mm (+73%: increased). RANO 2010 calls PD on that T2/FLAIR increase, read from the images,
outside the 12-week window after radiotherapy; RANO 2.0 and mRANO, which do not use T2/FLAIR for enhancing
tumours, do not.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from tests.glioma_factory import Scan, write_glioma_dataset

SCANS = [
    Scan("2024-01-10", (14.0, 10.0, 9.0), 30.0, cavity=(5.0, 21.0)),  # a resection cavity (label 6) in the oedema
    Scan("2024-03-20", (14.0, 10.0, 9.0), 30.6, cavity=(5.0, 21.0)),
    Scan("2024-05-29", (14.0, 10.0, 9.0), 36.0, cavity=(5.0, 21.0)),
]

CONFIG = """\
name: glioma-test
dataset:
  kind: nifti
  root: {root}
  timepoints: "{{patient_id}}/{{timepoint}}"
  image: t1c.nii.gz
  mask: labels.nii.gz
  sequences: {{flair: flair.nii.gz}}
  clinical: {root}/clinical.csv
  visits: {root}/visits.csv
lesions:
  compartments: {{enhancing: [4], necrosis: [1], non_enhancing: [2], cavity: [6]}}
output_dir: {out}
executor: {{workers: 1}}
criteria: [rano, rano2, mrano, ranolgg]
outputs: {{snapshots: false}}
"""


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def glioma_run(tmp_path_factory) -> tuple[Path, dict]:
    from rich.console import Console

    from pipelines.batch.run import run_pipeline
    from pipelines.config import load_config

    root = tmp_path_factory.mktemp("glioma")
    truth = write_glioma_dataset(root / "data", SCANS, treatment_start="2024-01-15", radiotherapy_end="2023-12-22")
    cfg = root / "glioma.yaml"
    cfg.write_text(CONFIG.format(root=root / "data", out=root / "out"))
    summary = run_pipeline(load_config(cfg), Console(stderr=True, quiet=True))
    assert not summary.failures, summary.failures
    return root / "out", truth


def test_enhancing_lesion_and_flair_burden_against_the_truth(glioma_run) -> None:
    out, truth = glioma_run
    rows = _rows(out / "lesions.csv")
    for date, t in truth.items():
        enhancing = [r for r in rows if r["date"] == date and r["compartment"] == "enhancing"]
        assert len(enhancing) == 1, enhancing  # the nodule-free shell with its necrosis: one lesion
        e = enhancing[0]
        # Digitised on 1 x 1 x 3 mm: diameters within 1.5 mm, the product within 8%.
        assert float(e["long_axis_mm"]) == pytest.approx(t["long_axis_mm"], abs=1.5)
        assert float(e["bidimensional_product_mm2"]) == pytest.approx(t["product_mm2"], rel=0.08)
        assert e["sequence"] == "measure"
        flair = [r for r in rows if r["date"] == date and r["compartment"] == "flair_burden"]
        assert len(flair) == 1 and flair[0]["sequence"] == "flair"
        # Measured on the FLAIR grid (1.2 x 1.2 x 4 mm) after the rigid fit, the cavity left out: volume within 4%.
        assert float(flair[0]["volume_mm3"]) == pytest.approx(t["flair_volume_mm3"], rel=0.04)
        volumes = {r["compartment"]: float(r["volume_mm3"]) for r in rows
                   if r["date"] == date and r["compartment"] in ("necrosis", "non_enhancing", "cavity")}
        assert volumes["cavity"] == pytest.approx(4.0 / 3.0 * math.pi * 5.0**3, rel=0.1)  # on the 1 x 1 x 3 mm grid


def test_t2_flair_status_read_from_the_images(glioma_run) -> None:
    import json

    out, _ = glioma_run
    course = json.loads((out / "courses" / "G001.json").read_text())
    clinical = [tp.get("clinical", {}) for tp in course["timepoints"]]
    assert clinical[0].get("t2_flair") is None  # nothing earlier to compare with
    assert [c.get("t2_flair") for c in clinical[1:]] == ["stable", "increased"]
    assert clinical[2]["t2_flair_source"].startswith("images: FLAIR burden")


def test_rano_calls_pd_on_the_flair_increase_rano2_and_mrano_do_not(glioma_run) -> None:
    out, _ = glioma_run
    calls = {(r["criterion"], r["date"]): r for r in _rows(out / "responses.csv")}
    rano = calls[("rano", "2024-05-29")]
    assert rano["response"] == "PD"
    assert "T2/FLAIR" in rano["reason"] and "images: FLAIR burden" in rano["reason"]
    assert calls[("rano", "2024-03-20")]["response"] == "SD"
    for criterion in ("rano2", "mrano"):
        assert calls[(criterion, "2024-05-29")]["response"] == "SD", calls[(criterion, "2024-05-29")]


def test_report_timeline_shows_the_flair_burden(glioma_run) -> None:
    out, _ = glioma_run
    html = (out / "report" / "index.html").read_text()
    assert "T2/FLAIR burden (ml)" in html
    volumes = [float(r["volume_mm3"]) for r in _rows(out / "lesions.csv") if r["compartment"] == "flair_burden"]
    assert len(volumes) == 3
    for mm3 in volumes:
        assert f'<td class="num">{mm3 / 1000:.1f}</td>' in html


def test_flair_registration_recorded_and_near_the_known_motion(glioma_run) -> None:
    """The FLAIR's rigid fit to the T1c of its exam: a row in registrations.csv and a transform file that maps
    FLAIR points where the known motion does (within 0.5 mm over the head)."""
    import numpy as np
    import SimpleITK as sitk

    from tests.glioma_factory import HEAD, flair_to_t1c

    out, truth = glioma_run
    rows = [r for r in _rows(out / "registrations.csv") if r["registered"].startswith("FLAIR")]
    assert [r["date"] for r in rows] == list(truth)
    known = flair_to_t1c()
    for r in rows:
        assert r["status"] == "ok"
        fitted = sitk.ReadTransform(str(out / r["transform_file"]))
        corners = [np.array(HEAD) * np.array(s) * 0.8 for s in np.ndindex(2, 2, 2)]
        points = [tuple(float(v) for v in c - np.array(HEAD) * 0.4) for c in corners]
        errors = [np.linalg.norm(np.subtract(fitted.TransformPoint(p), known.TransformPoint(p))) for p in points]
        assert max(errors) < 0.5, errors


NON_ENHANCING = [
    Scan("2024-01-10", None, 25.0),
    Scan("2024-03-20", None, 24.0),
    Scan("2024-05-29", None, 20.0),
    Scan("2024-08-07", (6.0, 5.0, 5.0), 20.0),  # new enhancement, the T2/FLAIR lesion unchanged
]


def test_non_enhancing_glioma_by_ranolgg_and_rano2_from_the_images(tmp_path: Path) -> None:
    """A lower-grade glioma measured on T2/FLAIR alone: SD, then a minor response (-36% of the T2/FLAIR product),
    then PD by new enhancement -- RANO-LGG (van den Bent 2011) and RANO 2.0's non-enhancing rules."""
    import json

    from rich.console import Console

    from pipelines.batch.run import run_pipeline
    from pipelines.config import load_config

    truth = write_glioma_dataset(tmp_path / "data", NON_ENHANCING, treatment_start="2024-01-15",
                                 radiotherapy_end=None, tumour="non_enhancing")
    cfg = tmp_path / "lgg.yaml"
    cfg.write_text(CONFIG.format(root=tmp_path / "data", out=tmp_path / "out")
                   .replace("[rano, rano2, mrano, ranolgg]", "[ranolgg, rano2]"))
    summary = run_pipeline(load_config(cfg), Console(stderr=True, quiet=True))
    assert not summary.failures, summary.failures
    out = tmp_path / "out"
    course = json.loads((out / "courses" / "G001.json").read_text())
    assert course["context"]["tumour"] == "non_enhancing"
    flair = [next(t for t in tp["target"] if t["lesion"] == "FLAIR") for tp in course["timepoints"]]
    for target, t in zip(flair, truth.values(), strict=True):
        assert target["component"] == "non_enhancing"
        # The burden's product in its largest slice (1.2 x 1.2 x 4 mm FLAIR grid): within 8% of (2r)^2.
        assert target["long_axis_mm"] * target["perpendicular_mm"] == pytest.approx(t["flair_product_mm2"], rel=0.08)
    assert [tp["clinical"]["enhancement"] for tp in course["timepoints"]] == ["none", "none", "none", "new"]
    calls = {(r["criterion"], r["date"]): r["response"] for r in _rows(out / "responses.csv")}
    dates = [s.date for s in NON_ENHANCING]
    assert [calls[("ranolgg", d)] for d in dates] == ["", "SD", "MR", "PD"]
    assert [calls[("rano2", d)] for d in dates] == ["", "SD", "MR", "PD"]


def test_a_flair_that_cannot_be_registered_fails_that_assessment_only(tmp_path: Path) -> None:
    """A FLAIR with nothing in common with the T1c (all zeros): its registration fails, the T2/FLAIR burden is not
    measured at that scan (with the reason), and the scan's enhancing lesion is still assessed."""
    import numpy as np
    import SimpleITK as sitk
    from rich.console import Console

    from pipelines.batch.run import run_pipeline
    from pipelines.config import load_config

    write_glioma_dataset(tmp_path / "data", SCANS, treatment_start="2024-01-15", radiotherapy_end="2023-12-22")
    broken = tmp_path / "data" / "G001" / "2024-03-20" / "flair.nii.gz"
    flair = sitk.ReadImage(str(broken))
    blank = sitk.GetImageFromArray(np.zeros(sitk.GetArrayViewFromImage(flair).shape, np.float32))
    blank.CopyInformation(flair)
    sitk.WriteImage(blank, str(broken))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.format(root=tmp_path / "data", out=tmp_path / "out"))
    summary = run_pipeline(load_config(cfg), Console(stderr=True, quiet=True))
    assert not summary.failures, summary.failures
    out = tmp_path / "out"
    row = next(r for r in _rows(out / "lesions.csv") if r["date"] == "2024-03-20" and r["compartment"] == "flair_burden")
    assert row["status"] == "not_evaluated" and "registration" in row["tracking"]
    calls = {(r["criterion"], r["date"]): r for r in _rows(out / "responses.csv")}
    assert calls[("rano2", "2024-03-20")]["response"] == "SD"  # the enhancing lesion: assessed
    assert calls[("rano", "2024-05-29")]["response"] == "PD"  # the next scan still compares with the baseline


def test_a_t2_flair_status_in_the_visits_csv_wins(tmp_path: Path) -> None:
    """The reader said 'stable' at the scan whose FLAIR burden grew 73%: their value decides, and the reason says so."""
    from rich.console import Console

    from pipelines.batch.run import run_pipeline
    from pipelines.config import load_config

    write_glioma_dataset(tmp_path / "data", SCANS, treatment_start="2024-01-15", radiotherapy_end="2023-12-22",
                         visits_extra={"2024-05-29": "stable"})
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.format(root=tmp_path / "data", out=tmp_path / "out"))
    summary = run_pipeline(load_config(cfg), Console(stderr=True, quiet=True))
    assert not summary.failures, summary.failures
    rano = next(r for r in _rows(tmp_path / "out" / "responses.csv")
                if r["criterion"] == "rano" and r["date"] == "2024-05-29")
    assert rano["response"] == "SD"
    assert "T2/FLAIR stable (visits CSV)" in rano["reason"]
