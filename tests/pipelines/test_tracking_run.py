"""Lesion tracking inside `run` (issue 5): ids follow the lesions, not the label values; splits, merges,
disappearance and too-small lesions enter the course with RECIST's conventions; a scan without a mask
gets the baseline's lesions carried over; a registration that fails is reported and not used.

Known truth: analytic ellipsoids (semi-axes in mm) on a 0.8 x 0.8 x 2.5 mm grid, so a lesion's long axis
is 2 x its largest in-plane semi-axis, to within a voxel.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from imaging.io import save_nifti
from pipelines.cli import app
from tests.data_factory import ellipsoid_labels, write_mini_archive, write_run_config, write_series

SPACING = (0.8, 0.8, 2.5)
SIZE = (96, 96, 20)
ORIGIN = (-38.0, -38.0, -25.0)
VOXEL_MM = 0.8  # tolerance of a long axis against the analytic ellipsoid: one in-plane voxel


def _write_patient(root: Path, scans: dict[dt.date, list[tuple[int, tuple[float, float, float], tuple[float, float, float]]]],
                   sidecar: dict, *, without_mask: tuple[dt.date, ...] = (), method: str = "scanner") -> Path:
    """One patient, TRK01: per scan, lesions as (label, centre (x, y, z) index, semi-axes mm)."""
    pid = "TRK01"
    for k, (date, lesions) in enumerate(sorted(scans.items())):
        folder = root / pid / date.isoformat()
        labels = ellipsoid_labels(SIZE, SPACING, np.eye(3), [(v, c, a, 0.0) for v, c, a in lesions], origin_lps=ORIGIN)
        hu = np.where(sitk.GetArrayFromImage(labels) > 0, 40, -800).astype(np.int16)
        write_series(folder / "dicom", hu, SPACING, ORIGIN, np.eye(3), study_date=date, patient_id=pid, seed=100 + k)
        if date not in without_mask:
            save_nifti(labels, folder / "mask.nii.gz")
    (root / pid / "lesions.json").write_text(json.dumps(sidecar))
    first = min(scans)
    (root / "clinical.csv").write_text(f"patient_id,treatment_start,radiotherapy_end,immunotherapy\n{pid},{first + dt.timedelta(days=3)},,false\n")
    return write_run_config(root, "tracking", tracking=method)


def _run(config: Path, *extra: str):
    return CliRunner().invoke(app, ["run", str(config), *extra])


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


D0, D1, D2 = dt.date(2024, 1, 2), dt.date(2024, 2, 20), dt.date(2024, 4, 10)
LEFT, RIGHT = (28.0, 48.0, 10.0), (68.0, 48.0, 10.0)  # 32 mm apart


def test_ids_follow_the_lesions_not_the_label_values(tmp_path):
    """The follow-up's labels are swapped; tracking gives each lesion its own measurements back, and the
    next scan's disappeared and too-small lesions count 0 and 5 mm."""
    scans = {
        D0: [(1, LEFT, (8.0, 6.0, 5.0)), (2, RIGHT, (6.0, 5.0, 5.0))],  # 16 + 12 mm
        D1: [(2, LEFT, (4.0, 3.0, 5.0)), (1, RIGHT, (6.0, 5.0, 5.0))],  # labels swapped: 8 + 12 mm
        D2: [(1, LEFT, (2.0, 2.0, 2.5))],  # LEFT 4 mm (too small to measure), RIGHT gone
    }
    config = _write_patient(tmp_path, scans, {"1": {"lesion_id": "LEFT", "organ": "lung"},
                                              "2": {"lesion_id": "RIGHT", "organ": "lung"}})
    result = _run(config, "--set", "tracking.too_small_mm=5")
    assert result.exit_code == 0, result.output
    rows = {(r["date"], r["lesion_id"]): r for r in _rows(tmp_path / "out" / "lesions.csv")}
    left1, right1 = rows[(D1.isoformat(), "LEFT")], rows[(D1.isoformat(), "RIGHT")]
    assert left1["label"] == "2" and abs(float(left1["long_axis_mm"]) - 8.0) <= VOXEL_MM
    assert right1["label"] == "1" and abs(float(right1["long_axis_mm"]) - 12.0) <= VOXEL_MM
    assert left1["tracking"] == "matched" and left1["tracked_by"] == "scanner"
    assert rows[(D2.isoformat(), "RIGHT")]["status"] == "absent"
    assert rows[(D2.isoformat(), "RIGHT")]["tracking"] == "disappeared"
    assert rows[(D2.isoformat(), "LEFT")]["tracking"] == "matched;too_small_to_measure"
    course = json.loads((tmp_path / "out" / "courses" / "TRK01.json").read_text())
    last = {t["lesion"]: t for t in course["timepoints"][2]["target"]}
    assert last["LEFT"]["too_small_to_measure"] is True and last["RIGHT"]["long_axis_mm"] == 0.0
    responses = {r["date"]: r for r in _rows(tmp_path / "out" / "responses.csv")}
    assert float(responses[D2.isoformat()]["sum_mm"]) == pytest.approx(5.0)  # 5 mm (too small) + 0 mm (gone)
    assert responses[D2.isoformat()]["response"] == "PR"

    # By default a measured lesion is recorded as measured, however small (RECIST 1.1 Appendix I).
    _run(config, "--set", "output_dir=out_measured")
    last = {t["lesion"]: t for t in json.loads((tmp_path / "out_measured" / "courses" / "TRK01.json").read_text())["timepoints"][2]["target"]}
    assert "too_small_to_measure" not in last["LEFT"] and abs(last["LEFT"]["long_axis_mm"] - 4.0) <= VOXEL_MM

    # Trusting the label values instead (tracking.method: labels) swaps the two lesions at D1.
    _run(config, "--set", "tracking.method=labels", "--set", "output_dir=out_labels")
    wrong = {(r["date"], r["lesion_id"]): r for r in _rows(tmp_path / "out_labels" / "lesions.csv")}
    assert abs(float(wrong[(D1.isoformat(), "LEFT")]["long_axis_mm"]) - 12.0) <= VOXEL_MM


def test_split_and_merged_lesions_enter_the_course_with_recist_conventions(tmp_path):
    """L1 and L2 coalesce: measured once under one of them, the other counts 0 (coalesced_into; which one
    keeps the measurement is the assignment's choice: the merged lesion is centred between the two). L3
    splits in two: the fragments are summed (split_from). RECIST 1.1 Appendix I."""
    l3 = (48.0, 76.0, 10.0)
    scans = {
        D0: [(1, (30.0, 28.0, 10.0), (6.0, 6.0, 5.0)), (2, (56.0, 28.0, 10.0), (6.0, 6.0, 5.0)),
             (3, l3, (14.0, 5.0, 5.0))],  # 12 + 12 + 28 mm
        D1: [(7, (43.0, 28.0, 10.0), (16.0, 7.0, 5.0)),  # one lesion over both: 32 mm
             (4, (38.0, 76.0, 10.0), (4.0, 4.0, 5.0)), (5, (58.0, 76.0, 10.0), (4.0, 4.0, 5.0))],  # 8 + 8 mm
    }
    config = _write_patient(tmp_path, scans, {"1": {"lesion_id": "L1", "organ": "lung"}, "2": {"lesion_id": "L2", "organ": "liver"},
                                              "3": {"lesion_id": "L3", "organ": "lung"}})  # 3 targets (<= 2 per organ)
    result = _run(config)
    assert result.exit_code == 0, result.output
    course = json.loads((tmp_path / "out" / "courses" / "TRK01.json").read_text())
    follow = {t["lesion"]: t for t in course["timepoints"][1]["target"]}
    kept, gone = ("L1", "L2") if "coalesced_into" in follow["L2"] else ("L2", "L1")
    assert follow[gone]["coalesced_into"] == kept and follow[gone]["long_axis_mm"] == 0.0
    assert "coalesced_into" not in follow[kept] and abs(follow[kept]["long_axis_mm"] - 32.0) <= VOXEL_MM
    fragments = sorted(k for k, v in follow.items() if v.get("split_from") == "L3")
    assert fragments == ["L3.1", "L3.2"]
    assert all(abs(follow[f]["long_axis_mm"] - 8.0) <= VOXEL_MM for f in fragments)
    assert course["timepoints"][1]["new_lesions"] == []
    rows = {r["lesion_id"]: r for r in _rows(tmp_path / "out" / "lesions.csv") if r["date"] == D1.isoformat()}
    assert rows[gone]["tracking"] == f"merged;coalesced_into:{kept}" and rows[gone]["status"] == "coalesced"
    assert rows[kept]["tracking"] == "merged" and rows[kept]["label"] == rows[gone]["label"] == "7"
    assert rows["L3.1"]["tracking"] == "split;fragment_of:L3"
    response = {r["date"]: r for r in _rows(tmp_path / "out" / "responses.csv")}[D1.isoformat()]
    expected = float(follow[kept]["long_axis_mm"]) + sum(float(follow[f]["long_axis_mm"]) for f in fragments)
    assert float(response["sum_mm"]) == pytest.approx(expected, abs=0.01)  # ~49 mm vs 52 at baseline
    assert response["response"] == "SD"


def test_a_scan_without_a_mask_gets_the_baseline_lesions_carried_over(tmp_path):
    scans = {D0: [(1, LEFT, (8.0, 6.0, 5.0))], D1: [(1, (31.0, 46.0, 10.0), (10.0, 7.0, 5.0))]}  # grew 16 -> 20 mm
    config = _write_patient(tmp_path, scans, {"1": {"lesion_id": "L1", "organ": "lung"}}, without_mask=(D1,))
    result = _run(config)
    assert result.exit_code == 0, result.output
    carried = tmp_path / "out" / "masks" / "TRK01" / f"{D1.isoformat()}.nii.gz"
    assert carried.is_file()
    rows = {r["date"]: r for r in _rows(tmp_path / "out" / "lesions.csv")}
    assert abs(float(rows[D1.isoformat()]["long_axis_mm"]) - 20.0) <= 2 * VOXEL_MM
    truth = 4.0 / 3.0 * np.pi * 10.0 * 7.0 * 5.0
    assert float(rows[D1.isoformat()]["volume_mm3"]) == pytest.approx(truth, rel=0.1)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert any("carried over" in n for n in summary["notes"])


def test_a_lesion_the_carried_over_segmentation_cannot_find_is_not_evaluated(tmp_path):
    """Not finding a lesion automatically is no evidence that it is gone: the target is not evaluated (NE),
    never 0 mm (which would read as a response)."""
    scans = {D0: [(1, LEFT, (8.0, 6.0, 5.0))], D1: []}
    config = _write_patient(tmp_path, scans, {"1": {"lesion_id": "L1", "organ": "lung"}}, without_mask=(D1,))
    result = _run(config)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert any("label 1" in n and "review" in n for n in summary["notes"]), summary["notes"]
    rows = {r["date"]: r for r in _rows(tmp_path / "out" / "lesions.csv")}
    assert rows[D1.isoformat()]["status"] == "not found"
    course = json.loads((tmp_path / "out" / "courses" / "TRK01.json").read_text())
    assert course["timepoints"][1]["target"][0]["long_axis_mm"] is None
    response = {r["date"]: r for r in _rows(tmp_path / "out" / "responses.csv")}[D1.isoformat()]
    assert response["response"] == "NE"


def test_a_failed_registration_is_reported_and_not_used(tmp_path):
    """The mini archive is a lesion on a blank field: nothing to register once the lesions are masked out.
    The scans are then not evaluated (their lesions recorded); on request, matched in scanner coordinates."""
    config = write_mini_archive(tmp_path)
    result = _run(config, "--set", "tracking.method=registration")
    assert result.exit_code == 1, result.output
    out = tmp_path / "out"
    failures = _rows(out / "failures.csv")
    assert [f["stage"] for f in failures] == ["register"] * 4  # one row per scan, nothing counted twice
    assert all("not used: this scan is not evaluated" in f["reason"] for f in failures)
    registrations = _rows(out / "registrations.csv")
    assert len(registrations) == 4 and {r["status"] for r in registrations} == {"failed"}
    assert not list(out.rglob("transforms/*/*[0-9].tfm"))
    calls = {(r["patient_id"], r["date"]): r["response"] for r in _rows(out / "responses.csv")}
    assert calls[("MINI01", "2024-02-20")] == "NE" and calls[("MINI02", "2024-02-20")] == "NE"
    rows = _rows(out / "lesions.csv")
    assert {r["tracking"] for r in rows if r["date"] != "2024-01-02"} == {"untracked"}
    assert all(float(r["long_axis_mm"]) > 0 for r in rows)  # measured all the same

    _run(config, "--set", "tracking.method=registration", "--set", "registration.on_failure=scanner",
         "--set", "output_dir=out_scanner")
    calls = {(r["patient_id"], r["date"]): r["response"] for r in _rows(tmp_path / "out_scanner" / "responses.csv")}
    assert calls[("MINI01", "2024-02-20")] == "PR" and calls[("MINI02", "2024-02-20")] == "PD"
    rows = _rows(tmp_path / "out_scanner" / "lesions.csv")
    assert {r["tracked_by"] for r in rows if r["tracking"] != "baseline"} == {"scanner"}
