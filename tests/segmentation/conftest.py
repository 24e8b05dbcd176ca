from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.measurement import radiomics_cases


@pytest.fixture(scope="session")
def radiomics_data() -> Path:
    """pyradiomics' five real cases (tests/measurement/radiomics_cases.py); skipped when the sdist is absent."""
    path = radiomics_cases.data_dir()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("pyradiomics sdist missing in CI: `make sample-data` should have downloaded it")
        pytest.skip("pyradiomics sdist not downloaded: run `make sample-data`")
    return path
