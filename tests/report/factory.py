"""A small run folder written by hand: the outputs of a run, without running one.

Patients (each with RECIST and iRECIST rows):

* ``PSEUDO-1``: iUPD later not confirmed (``pseudoprogression_confirmed``), then iSD and iPR;
  a value containing ``<script>`` in its reason and organ (must come out escaped).
* ``PROG-2``: progression with a new lesion L2 (``progression_confirmed``, ``hyperprogression``),
  then ``after_progression``; lesion snapshots on disk.
* ``FAIL-3``: the second scan failed in the pipeline (``failures.csv``), assessed NE.
* ``P&4``: a patient id that needs escaping, pre-baseline scan, partial response.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

SCRIPT = '<script>alert("x")</script>'

RESPONSE_COLUMNS = ["patient_id", "date", "criterion", "response", "flags", "reason", "sum_mm", "sum_products_mm2",
                    "sum_volume_mm3", "change_from_baseline_pct", "change_from_nadir_pct", "days_since_baseline",
                    "a_future_column"]
# (patient, date, days, sum_mm, % vs baseline, % vs nadir, recist call, recist flags, irecist call, irecist flags)
COURSES = [
    ("PSEUDO-1", "2024-01-01", 0, 50.0, None, None, "", "baseline", "", "baseline"),
    ("PSEUDO-1", "2024-02-12", 42, 65.0, 30.0, 30.0, "PD", "", "iUPD", "pseudoprogression_confirmed"),
    ("PSEUDO-1", "2024-03-25", 84, 45.0, -10.0, -10.0, "PD", "after_progression", "iSD", ""),
    ("PSEUDO-1", "2024-05-06", 126, 30.0, -40.0, -33.3, "PD", "after_progression", "iPR", ""),
    ("PROG-2", "2024-01-08", 0, 40.0, None, None, "", "baseline", "", "baseline"),
    ("PROG-2", "2024-02-19", 42, 42.0, 5.0, 5.0, "SD", "", "iSD", ""),
    ("PROG-2", "2024-04-01", 84, 80.0, 100.0, 100.0, "PD", "hyperprogression", "iUPD",
     "progression_confirmed;hyperprogression"),
    ("PROG-2", "2024-05-13", 126, 130.0, 225.0, 225.0, "PD", "after_progression", "iCPD", ""),
    ("FAIL-3", "2024-01-15", 0, 60.0, None, None, "", "baseline", "", "baseline"),
    ("FAIL-3", "2024-02-26", 42, None, None, None, "NE", "targets_not_all_evaluated", "iNE",
     "targets_not_all_evaluated"),
    ("FAIL-3", "2024-04-08", 84, 36.0, -40.0, -40.0, "PR", "", "iPR", ""),
    ("P&4", "2023-12-01", -31, 20.0, None, None, "", "pre_baseline", "", "pre_baseline"),
    ("P&4", "2024-01-01", 0, 22.0, None, None, "", "baseline", "", "baseline"),
    ("P&4", "2024-02-12", 42, 10.0, -54.5, -54.5, "PR", "", "iPR", ""),
    ("P&4", "2024-03-25", 84, 0.0, -100.0, -100.0, "CR", "", "iCR", ""),
]
BEST = [
    ("PSEUDO-1", "recist", "PD", "2024-02-12", "PD on 2024-02-12"),
    ("PSEUDO-1", "irecist", "iSD", "2024-03-25", "iSD on 2024-03-25 " + SCRIPT),
    ("PROG-2", "recist", "SD", "2024-02-19", "SD on 2024-02-19"),
    ("PROG-2", "irecist", "iCPD", "2024-05-13", "iCPD on 2024-05-13"),
    ("FAIL-3", "recist", "PR", "2024-04-08", "PR on 2024-04-08, not confirmed"),
    ("FAIL-3", "irecist", "iPR", "2024-04-08", "iPR on 2024-04-08, not confirmed"),
    ("P&4", "recist", "CR", "2024-03-25", "CR on 2024-03-25"),
    ("P&4", "irecist", "iCR", "2024-03-25", "iCR on 2024-03-25"),
]
FAILURE = {"patient_id": "FAIL-3", "date": "2024-02-26", "stage": "measure",
           "reason": "series 1.2.3: slice spacing varies (5.0 to 12.5 mm): gap in the series"}


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})


def build_run(root: Path) -> Path:
    """Write the run folder described in the module docstring under ``root`` and return it."""
    root.mkdir(parents=True, exist_ok=True)
    responses = []
    for pid, date, days, total, vs_base, vs_nadir, r_call, r_flags, i_call, i_flags in COURSES:
        for criterion, call, flags in (("recist", r_call, r_flags), ("irecist", i_call, i_flags)):
            reason = f"{criterion} {call or flags} at day {days}"
            if pid == "PSEUDO-1" and days == 42:
                reason += " " + SCRIPT
            responses.append({"patient_id": pid, "date": date, "criterion": criterion, "response": call,
                              "flags": flags, "reason": reason, "sum_mm": total,
                              "change_from_baseline_pct": vs_base, "change_from_nadir_pct": vs_nadir,
                              "days_since_baseline": days, "a_future_column": "ignored"})
    _write_csv(root / "responses.csv", RESPONSE_COLUMNS, responses)
    _write_csv(root / "best_overall_response.csv", ["patient_id", "criterion", "response", "date", "reason"],
               [dict(zip(["patient_id", "criterion", "response", "date", "reason"], b)) for b in BEST])

    lesion_columns = ["patient_id", "date", "lesion_id", "label", "organ", "nodal", "status", "n_voxels",
                      "volume_mm3", "long_axis_mm", "short_axis_mm", "perpendicular_mm",
                      "bidimensional_product_mm2", "max_3d_diameter_mm", "center_lps", "something_new"]
    lesions = []
    for pid, date, _, total, *_ in COURSES:
        if total is None:
            continue  # the failed scan has no measurement
        organ = SCRIPT if pid == "PSEUDO-1" else "lung"
        long_axis = total if pid != "PROG-2" or date < "2024-05-13" else total - 18.0
        lesions.append({"patient_id": pid, "date": date, "lesion_id": "L1", "label": 1, "organ": organ,
                        "nodal": False, "status": "present" if total else "absent", "n_voxels": int(total * 100),
                        "volume_mm3": total * 150.5, "long_axis_mm": long_axis, "short_axis_mm": long_axis * 0.6,
                        "perpendicular_mm": long_axis * 0.7, "bidimensional_product_mm2": long_axis ** 2 * 0.7,
                        "max_3d_diameter_mm": long_axis * 1.2, "center_lps": "1.0 2.0 3.0", "something_new": "x"})
        if pid == "PROG-2" and date >= "2024-05-13":
            lesions.append({"patient_id": pid, "date": date, "lesion_id": "L2", "label": 2, "organ": "liver",
                            "nodal": False, "status": "new", "n_voxels": 900, "volume_mm3": 1500.0,
                            "long_axis_mm": 18.0, "short_axis_mm": 12.0, "perpendicular_mm": 13.0,
                            "bidimensional_product_mm2": 234.0, "max_3d_diameter_mm": 19.5,
                            "center_lps": "4 5 6"})
    _write_csv(root / "lesions.csv", lesion_columns, lesions)
    _write_csv(root / "failures.csv", ["patient_id", "date", "stage", "reason"], [FAILURE])
    (root / "summary.json").write_text(json.dumps({
        "name": "hand-made", "patients": 4, "timepoints": 15, "failed": 1, "criteria": ["recist", "irecist"],
        "notes": ["note with " + SCRIPT]}))
    (root / "provenance.json").write_text(json.dumps({
        "config": {"name": "hand-made", "criteria": ["recist", "irecist"]}, "config_hash": "0123456789abcdef",
        "code_version": "0.1.0+test", "packages": {"numpy": "2"}, "started": "2024-06-01T10:00:00+00:00",
        "finished": "2024-06-01T10:05:00+00:00", "seconds": 300.0, "host": "test"}))

    import matplotlib.image

    rng = np.random.default_rng(7)
    snaps = root / "snapshots" / "PROG-2"
    snaps.mkdir(parents=True)
    for date, lesion in (("2024-01-08", "L1"), ("2024-04-01", "L1"), ("2024-05-13", "L1"), ("2024-05-13", "L2")):
        image = rng.uniform(0.0, 1.0, size=(48, 48))
        image[20:28, 8:40] = 1.0  # a bright bar standing in for the drawn long axis
        matplotlib.image.imsave(snaps / f"{date}_{lesion}.png", image, cmap="gray")
    return root
