"""`tumor-response assess`: table, JSON, several criteria, errors on stderr with exit code 2."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from pipelines.cli import app

COURSE = {
    "patient_id": "P001",
    "context": {"treatment_start": "2024-01-08", "radiotherapy_end": None, "immunotherapy": True},
    "timepoints": [
        {"date": "2024-01-02", "target": [{"lesion": "T1", "organ": "lung", "long_axis_mm": 40.0},
                                          {"lesion": "T2", "organ": "liver", "long_axis_mm": 10.0}]},
        {"date": "2024-03-04", "target": [{"lesion": "T1", "organ": "lung", "long_axis_mm": 52.0},
                                          {"lesion": "T2", "organ": "liver", "long_axis_mm": 10.0}]},
        {"date": "2024-04-15", "target": [{"lesion": "T1", "organ": "lung", "long_axis_mm": 30.0},
                                          {"lesion": "T2", "organ": "liver", "long_axis_mm": 10.0}]},
    ],
}


@pytest.fixture()
def runner():
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 keeps stderr apart already
        return CliRunner()


@pytest.fixture()
def course_file(tmp_path):
    path = tmp_path / "P001.yaml"
    path.write_text(yaml.safe_dump(COURSE, sort_keys=False))
    return path


def test_json_one_criterion_is_the_contract_object(runner, course_file):
    result = runner.invoke(app, ["assess", str(course_file), "--criteria", "recist", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["patient_id"] == "P001" and out["criterion"] == "recist"
    assert [tp["response"] for tp in out["timepoints"]] == [None, "PD", "SD"]
    first = out["timepoints"][1]
    for key in ("date", "response", "flags", "reason", "sum_mm", "change_from_baseline_pct", "change_from_nadir_pct",
                "days_since_baseline"):
        assert key in first
    assert first["sum_mm"] == 62.0 and first["change_from_nadir_pct"] == 24.0 and first["days_since_baseline"] == 62
    assert set(out["best_overall_response"]) >= {"response", "reason"}


def test_json_several_criteria_is_a_list(runner, course_file):
    result = runner.invoke(app, ["assess", str(course_file), "--criteria", "recist,irecist", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [item["criterion"] for item in out] == ["recist", "irecist"]


def test_table_output(runner, course_file):
    result = runner.invoke(app, ["assess", str(course_file), "--criteria", "recist"])
    assert result.exit_code == 0, result.output
    assert "Best overall response" in result.stdout and "PD" in result.stdout


def test_course_error_exit_2_on_stderr(runner, tmp_path):
    bad = json.loads(json.dumps(COURSE))
    bad["timepoints"][1]["target"][0]["long_axis_mm"] = -3
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    result = runner.invoke(app, ["assess", str(path), "--json"])
    assert result.exit_code == 2
    assert "timepoint 2 (2024-03-04): target[T1].long_axis_mm: must be >= 0, got -3" in result.stderr
    assert result.stdout == ""


def test_unknown_criterion_exit_2(runner, course_file):
    result = runner.invoke(app, ["assess", str(course_file), "--criteria", "who"])
    assert result.exit_code == 2
    assert "valid: recist, irecist" in result.stderr
