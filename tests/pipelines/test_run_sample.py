"""The whole pipeline on the generated sample data, checked against truth.json.

Two truths per lesion: ``mask_long_axis_mm`` / ``mask_volume_mm3`` are the lesion as written
(brute-force corner Feret and voxel count of the written mask: an independent
implementation of the same convention), and ``long_axis_mm`` / ``volume_mm3`` are the
ideal scaled lesion, which the acquired slices may not sample (5-6.5 mm slices).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app

pytestmark = pytest.mark.sample_data


@pytest.fixture(scope="module")
def run_out(sample_root: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    config = Path(__file__).resolve().parents[2] / "configs" / "sample.yaml"
    result = CliRunner().invoke(app, ["run", str(config), "--set", f"output_dir={out}"])
    assert result.exit_code == 0, result.output
    assert "Time-point responses (recist)" in result.output
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_outputs_written(run_out: Path):
    for name in ("lesions.csv", "responses.csv", "best_overall_response.csv", "failures.csv", "summary.json"):
        assert (run_out / name).is_file(), name
    summary = json.loads((run_out / "summary.json").read_text())
    assert summary["patients"] == 3 and summary["timepoints"] == 16 and summary["failed"] == 0
    assert _rows(run_out / "failures.csv") == []
    assert sorted(p.name for p in (run_out / "courses").iterdir()) == ["P001.json", "P002.json", "P003.json"]


def test_one_row_per_lesion_and_timepoint_matching_truth(run_out: Path, sample_truth: dict):
    rows = {(r["patient_id"], r["date"], int(r["label"])): r for r in _rows(run_out / "lesions.csv")}
    n_truth = 0
    for pid, truth in sample_truth.items():
        for tp in truth["timepoints"]:
            for lesion in tp["lesions"]:
                n_truth += 1
                row = rows[(pid, tp["date"], lesion["label"])]
                assert row["lesion_id"] == lesion["lesion_id"]
                assert row["status"] == ("new" if lesion["new"] else "present")
                # As written: same convention, independent code; 0.01 mm covers the CSV's rounding.
                assert float(row["long_axis_mm"]) == pytest.approx(lesion["mask_long_axis_mm"], abs=0.01)
                assert float(row["volume_mm3"]) == pytest.approx(lesion["mask_volume_mm3"], abs=0.01)
    assert len(rows) == n_truth


def test_long_axis_against_the_ideal_lesion(run_out: Path, sample_truth: dict):
    """Against the ideal scaled lesion: within 1.5 in-plane pixels where the slices sample its
    largest section; never longer than ideal + 1.5 pixels (slice sampling can only lose length)."""
    rows = {(r["patient_id"], r["date"], int(r["label"])): r for r in _rows(run_out / "lesions.csv")}
    close = 0
    for pid, truth in sample_truth.items():
        for tp in truth["timepoints"]:
            pixel = max(tp["grid"]["spacing_mm"][:2])
            for lesion in tp["lesions"]:
                measured = float(rows[(pid, tp["date"], lesion["label"])]["long_axis_mm"])
                assert measured <= lesion["long_axis_mm"] + 1.5 * pixel
                close += abs(measured - lesion["long_axis_mm"]) <= 1.5 * pixel
    assert close >= 14  # of 18; the rest lose their largest section between 5-6.5 mm slices


def test_recist_calls_are_the_intended_course(run_out: Path, sample_truth: dict):
    calls: dict[str, dict[str, str]] = {}
    flags: dict[str, dict[str, str]] = {}
    for r in _rows(run_out / "responses.csv"):
        assert r["criterion"] == "recist"
        calls.setdefault(r["patient_id"], {})[r["date"]] = r["response"]
        flags.setdefault(r["patient_id"], {})[r["date"]] = r["flags"]
    for pid, truth in sample_truth.items():
        for tp, intended in zip(truth["timepoints"], truth["intended_recist"], strict=True):
            got = calls[pid][tp["date"]]
            if intended is None:
                assert got == "" and "pre_baseline" in flags[pid][tp["date"]]
            elif intended == "baseline":
                assert got == "" and "baseline" in flags[pid][tp["date"]].split(";")
            else:
                assert got == intended, (pid, tp["date"])


def test_sums_and_changes(run_out: Path):
    rows = [r for r in _rows(run_out / "responses.csv") if r["patient_id"] == "P003"]
    base = next(r for r in rows if r["date"] == "2024-01-02")
    tp = next(r for r in rows if r["date"] == "2024-04-01")
    # one target: the sum is its long axis; % change from the written values (0.1 % rounding)
    expected = 100.0 * (float(tp["sum_mm"]) - float(base["sum_mm"])) / float(base["sum_mm"])
    assert float(tp["change_from_baseline_pct"]) == pytest.approx(expected, abs=0.1)
    assert tp["response"] == "PD"
    assert "PD" in tp["reason"] and "nadir" in tp["reason"]


def test_nifti_layout_gives_the_same_measurements_as_dicom(run_out: Path, tmp_path):
    """The same scans read as a NIfTI dataset (folders + visits CSV): identical lesion measurements,
    so RAS->LPS at the NIfTI boundary and DICOM assembly agree; clinical data joined per visit."""
    config = Path(__file__).resolve().parents[2] / "configs" / "sample_nifti.yaml"
    result = CliRunner().invoke(app, ["run", str(config), "--set", f"output_dir={tmp_path}", "--set", "criteria=[recist, rano]"])
    assert result.exit_code == 0, result.output
    keys = ("patient_id", "date", "label", "status", "n_voxels", "volume_mm3", "long_axis_mm", "short_axis_mm",
            "bidimensional_product_mm2", "center_lps", "long_axis_end0_lps", "long_axis_end1_lps")
    dicom = [tuple(r[k] for k in keys) for r in _rows(run_out / "lesions.csv")]
    nifti = [tuple(r[k] for k in keys) for r in _rows(tmp_path / "lesions.csv")]
    assert nifti == dicom
    course = json.loads((tmp_path / "courses" / "P002.json").read_text())
    assert course["timepoints"][1]["clinical"] == {"steroid_dose_mg": 2.0, "clinically_stable": True, "t2_flair": "stable"}
