"""A run of the sample data (DICOM) and its DICOM export, shared by the tests of this folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dicom_out.helpers import require_tool

REPO = Path(__file__).resolve().parents[2]
#: Patients exported: all three (a CT responding, P001; an MR, P002, 5 time points; a CT with a pre-baseline scan
#: and a new lesion, P003).
EXPORTED = ("P001", "P002", "P003")


@pytest.fixture(scope="session")
def dciodvfy_bin() -> str:
    return require_tool("dciodvfy", "dicom3tools")


@pytest.fixture(scope="session")
def sample_run(sample_root: Path, tmp_path_factory) -> Path:
    """Output folder of `run configs/sample.yaml` (all three patients)."""
    from rich.console import Console

    from pipelines.batch.run import run_pipeline
    from pipelines.config import load_config

    out = tmp_path_factory.mktemp("run")
    config = load_config(REPO / "configs" / "sample.yaml", [f"output_dir={out}", "executor.workers=2", "outputs.dicom=false"])
    summary = run_pipeline(config, Console(stderr=True, quiet=True))
    assert not summary.failures, summary.failures
    return out


@pytest.fixture(scope="session")
def exported(sample_run: Path, tmp_path_factory) -> Path:
    """`export_run` of the sample run, for the patients in EXPORTED."""
    from pipelines.dicom.export import export_run

    out = tmp_path_factory.mktemp("dicom")
    summary = export_run(sample_run, out, patients=EXPORTED)
    assert not summary.failed and not summary.skipped, (summary.failed, summary.skipped)
    return out
