"""The report of a real run on the generated sample data (three patients, three criterion families)."""

from __future__ import annotations

import csv
import html
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imaging.report import write_report
from pipelines.cli import app

pytestmark = pytest.mark.sample_data

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "sample.yaml"


@pytest.fixture(scope="module")
def sample_run(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report_run")
    result = CliRunner().invoke(app, ["run", str(CONFIG), "--set", f"output_dir={out}",
                                      "--set", "criteria=[recist,irecist,rano]"])
    assert result.exit_code == 0, result.output
    return out


def test_sample_run_report(sample_run: Path):
    page = write_report(sample_run, title="sample").read_text(encoding="utf-8")
    with (sample_run / "best_overall_response.csv").open(newline="") as fh:
        best = list(csv.DictReader(fh))
    assert {row["criterion"] for row in best} == {"recist", "irecist", "rano"}
    for row in best:
        assert f"Patient {html.escape(row['patient_id'])}</h2>" in page
        assert f">{html.escape(row['response'])}</span>" in page, row
    for criterion in ("recist", "irecist", "rano"):
        assert f"Criterion: {criterion}</h2>" in page
        for kind in ("waterfall", "spider", "swimmer"):
            assert list((sample_run / "report" / "fig").glob(f"*_{criterion}_{kind}.png")), (criterion, kind)
    assert "sum of products of diameters" in page  # RANO's burden and its -50 % / +25 % thresholds


def test_sample_report_shows_registration_and_tracking(sample_run: Path):
    page = write_report(sample_run, title="sample").read_text(encoding="utf-8")
    assert page.count("<h3>Registration to the baseline</h3>") == 3  # one table per patient
    with (sample_run / "registrations.csv").open(newline="") as fh:
        registrations = list(csv.DictReader(fh))
    assert len(registrations) == 13
    for row in registrations:
        assert f'<td class="date">{row["date"]}</td><td>ok</td>' in page, row
    assert "<th>tracking</th>" in page and "<td>new</td>" in page  # P003's new lesion
