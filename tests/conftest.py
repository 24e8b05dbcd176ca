from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests import hypothesis_profiles  # noqa: F401  (loads the suite's hypothesis profile before any test module)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data" / "generated"


@pytest.fixture(scope="session")
def sample_root() -> Path:
    """The generated sample data (built by `make sample-data`, which `make test` runs first)."""
    if not (SAMPLE / ".complete").is_file():
        if os.environ.get("CI"):
            pytest.fail("sample data missing in CI: `make test` should have generated it")
        pytest.skip("sample data not generated: run `make sample-data`")
    return SAMPLE


@pytest.fixture(scope="session")
def glioma_root() -> Path:
    """The sample data's glioma patient (sample_data/glioma.py, built by `make sample-data`)."""
    root = REPO / "sample_data" / "glioma"
    if not (root / ".complete").is_file():
        if os.environ.get("CI"):
            pytest.fail("glioma sample data missing in CI: `make test` should have generated it")
        pytest.skip("glioma sample data not generated: run `make sample-data`")
    return root


@pytest.fixture(scope="session")
def sample_truth(sample_root: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sample_root.glob("*/truth.json"))}


@pytest.fixture(scope="session")
def radiomics_data() -> Path:
    """pyradiomics' five real cases (tests/measurement/radiomics_cases.py); skipped when the sdist is absent
    locally, a failure in CI (where `make test` downloads it)."""
    from tests.measurement import radiomics_cases

    path = radiomics_cases.data_dir()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("pyradiomics sdist missing in CI: `make sample-data` should have downloaded it")
        pytest.skip("pyradiomics sdist not downloaded: run `make sample-data`")
    return path


@pytest.fixture(scope="session")
def pacs_export_archive(sample_root: Path, tmp_path_factory) -> tuple[Path, dict]:
    """The PACS-shaped export of the sample data (sample_data/pacs_export.py), built once per session:
    (its root, its truth)."""
    import importlib.util
    import sys

    name = "tumor_response_pacs_export"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, REPO / "sample_data" / "pacs_export.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    root = tmp_path_factory.mktemp("pacs_export") / "export"
    return root, module.build_pacs_export(sample_root, root, jobs=2)
