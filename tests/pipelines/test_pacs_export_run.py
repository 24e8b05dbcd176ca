"""`run configs/pacs_export.yaml` on a PACS-shaped export: every time point assessed, on the series its
segmentation references, each lesion segment measured on its own mask, no organ or oedema counted."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app

pytestmark = pytest.mark.sample_data

REPO = Path(__file__).resolve().parents[2]
#: The generator's truth is the longest in-plane distance between pixel corners; the pipeline measures
#: between boundary points of the lesion, which is shorter by up to about one pixel diagonal (0.9 mm here).
LONG_AXIS_TOLERANCE_MM = 1.0


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _run(root: Path, out: Path, *settings: str):
    args = ["run", str(REPO / "configs" / "pacs_export.yaml"), "--set", f"dataset.root={root}",
            "--set", f"dataset.clinical={root / 'clinical.csv'}", "--set", f"output_dir={out}",
            "--set", "outputs.snapshots=false"]
    for s in settings:
        args += ["--set", s]
    return CliRunner().invoke(app, args)


@pytest.fixture(scope="module")
def run(pacs_export_archive, tmp_path_factory) -> tuple[Path, dict]:
    root, truth = pacs_export_archive
    out = tmp_path_factory.mktemp("pacs_run") / "out"
    result = _run(root, out)
    assert result.exit_code == 0, result.output
    return out, truth


def test_every_time_point_is_assessed_on_the_referenced_series(run) -> None:
    out, truth = run
    assert _rows(out / "failures.csv") == []
    calls = {(r["patient_id"], r["date"]): r["response"] or r["flags"] for r in _rows(out / "responses.csv")}
    series = [r for r in _rows(out / "series.csv") if r["chosen"] == "True"]
    for patient in truth["patients"]:
        for study in patient["studies"]:
            key = (patient["patient_id"], study["date"])
            assert calls[key] in (("baseline",) if study["is_baseline"] else ("CR", "PR", "SD", "PD")), key
            measured = next(s for s in study["series"] if s["role"] == "measure")
            chosen = [r for r in series if (r["patient_id"], r["date"]) == key]
            assert [r["series_uid"] for r in chosen] == [measured["series_uid"]]
            assert "segmentation" in chosen[0]["reason"]  # chosen because the segmentation references it
    report = (out / "report" / "index.html").read_text()
    assert report.count("measured on series") == sum(len(p["studies"]) for p in truth["patients"])
    # every other series of every study has a row saying why it was not measured
    others = [r for r in _rows(out / "series.csv") if r["chosen"] == "False"]
    assert others and all(r["reason"] for r in others)


def test_long_axes_match_the_truth_and_no_organ_or_oedema_is_a_lesion(run) -> None:
    out, truth = run
    lesions = _rows(out / "lesions.csv")
    # not 'Right lung', 'Edema', 'Brainstem', 'Eyes'; the RTSTRUCT's GTV is R1 (ROI names are free text the Basic
    # Profile empties), the SEG's segment label L1 stays
    assert {r["lesion_id"] for r in lesions} == {"L1", "R1"}
    for patient in truth["patients"]:
        for study in patient["studies"]:
            (lesion,) = study["lesions"]
            (row,) = [r for r in lesions if (r["patient_id"], r["date"]) == (patient["patient_id"], study["date"])]
            assert row["lesion_id"] == {"GTV": "R1"}.get(lesion["lesion_id"], lesion["lesion_id"])
            assert float(row["long_axis_mm"]) == pytest.approx(lesion["long_axis_mm"], abs=LONG_AXIS_TOLERANCE_MM)
            assert float(row["volume_mm3"]) == pytest.approx(lesion["volume_mm3"], rel=1e-4)  # voxel for voxel


def test_no_roi_name_reaches_an_output_unless_identifiers_are_kept(run) -> None:
    import re

    out, _ = run
    names = re.compile(r"\b(GTV|Edema|Brainstem|Eyes)\b")
    hits = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()
            and names.search(p.read_bytes().decode("latin-1"))}
    assert hits == set()


def test_the_newest_read_is_used_and_the_other_listed(run) -> None:
    out, truth = run
    ct = next(p for p in truth["patients"] if p["modality"] == "CT")
    study = next(s for s in ct["studies"] if len(s["segmentations"]) == 2)
    newest = max(study["segmentations"], key=lambda s: s["content_datetime"])
    older = min(study["segmentations"], key=lambda s: s["content_datetime"])
    notes = (out / "summary.json").read_text()
    assert Path(older["path"]).name in notes and "is the newest" in notes
    assert Path(newest["path"]).name in notes


def test_overlapping_lesion_segments_are_measured_each_on_its_own_mask(pacs_export_archive, tmp_path) -> None:
    """Told that the oedema is a lesion too, the run measures the GTV on its own mask (not the oedema painted
    over it: the 35 %-too-large sums of a flattened label map) and reports the overlap."""
    root, truth = pacs_export_archive
    out = tmp_path / "out"
    result = _run(root, out, "dataset.segmentations.exclude=[]", "dataset.segmentations.include=[GTV, Edema, L1]",
                  "privacy.keep_identifiers=true")
    assert result.exit_code == 0, result.output
    lesions = _rows(out / "lesions.csv")
    mr = next(p for p in truth["patients"] if p["modality"] == "MR")
    for study in mr["studies"]:
        rows = {r["lesion_id"]: r for r in lesions if (r["patient_id"], r["date"]) == (mr["patient_id"], study["date"])}
        assert set(rows) == {"GTV", "Edema"}
        (gtv,) = study["lesions"]
        assert float(rows["GTV"]["volume_mm3"]) == pytest.approx(gtv["volume_mm3"], rel=1e-4)
        assert float(rows["Edema"]["volume_mm3"]) > 1.5 * gtv["volume_mm3"]
    report = (out / "report" / "index.html").read_text()
    for text in ((out / "summary.json").read_text(), report.replace("&#x27;", "'")):
        assert "lesion segments 'GTV' and 'Edema' overlap" in text or "lesion segments 'Edema' and 'GTV' overlap" in text


def test_a_study_the_rules_cannot_decide_is_refused_with_the_candidates(pacs_export_archive, tmp_path) -> None:
    """Without its segmentations (source: files, no mask), an MR study holds several series the default policy
    cannot choose between: the time point fails naming them and a rule that would separate them."""
    root, _ = pacs_export_archive
    out = tmp_path / "out"
    result = _run(root, out, "dataset.segmentations.source=files", "dataset.segmentations.exclude=[]",
                  "dataset.mask={patient_id}/{study_date}/none.nii.gz")
    failures = _rows(out / "failures.csv")
    mr = [f for f in failures if "MR" in f["reason"] and "dataset.series.measure" in f["reason"]]
    assert mr, failures
    assert "series" in mr[0]["reason"] and result.exit_code == 1


def test_a_follow_up_without_its_segmentation_gets_the_baseline_lesions_carried_over(pacs_export_archive, tmp_path):
    """The last CT study's SEG is missing: its series is chosen by the policy (the soft-tissue 5 mm
    reconstruction, not the lung kernel), and the baseline's L1 is carried over by registration and measured."""
    import shutil

    root, truth = pacs_export_archive
    copy = tmp_path / "archive"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns(".tumor-response-index*"))
    ct = next(p for p in truth["patients"] if p["modality"] == "CT")
    last = ct["studies"][-1]
    for seg in last["segmentations"]:
        (copy / seg["path"]).unlink()
    out = tmp_path / "out"
    result = _run(copy, out)
    assert result.exit_code == 0, result.output
    key = (ct["patient_id"], last["date"])
    measured = next(s for s in last["series"] if s["role"] == "measure")
    (chosen,) = [r for r in _rows(out / "series.csv") if (r["patient_id"], r["date"]) == key and r["chosen"] == "True"]
    assert chosen["series_uid"] == measured["series_uid"] and "soft-tissue" in chosen["reason"]
    (row,) = [r for r in _rows(out / "lesions.csv") if (r["patient_id"], r["date"]) == key]
    (lesion,) = last["lesions"]
    assert row["lesion_id"] == "L1" and row["status"] == "present"
    # segmented afresh from the carried-over outline: close to the reader's, not identical
    assert float(row["long_axis_mm"]) == pytest.approx(lesion["long_axis_mm"], rel=0.15)
    assert (out / "masks").is_dir()


def test_dicom_export_of_an_archive_run_holds_the_lesions_only(pacs_export_archive, tmp_path) -> None:
    """outputs.dicom on an archive run: each exported SEG holds the run's lesion segments under their names,
    not the reader's organs or oedema, and its volume is the run's."""
    import highdicom as hd
    import numpy as np

    root, truth = pacs_export_archive
    out = tmp_path / "out"
    result = _run(root, out, "outputs.dicom=true", "tracking.method=labels")
    assert result.exit_code == 0, result.output
    lesions = {(r["patient_id"], r["date"]): r for r in _rows(out / "lesions.csv")}
    segs = sorted((out / "dicom").rglob("lesions-seg.dcm"))
    assert len(segs) == sum(len(p["studies"]) for p in truth["patients"])
    for path in segs:
        seg = hd.seg.segread(path)
        (number,) = seg.segment_numbers
        label = seg.get_segment_description(number).segment_label
        row = lesions[(path.parent.parent.name, path.parent.name)]
        assert label == row["lesion_id"]
        voxels = int(np.count_nonzero(seg.get_volume(combine_segments=True, allow_missing_positions=True).array))
        assert voxels == int(row["n_voxels"])
