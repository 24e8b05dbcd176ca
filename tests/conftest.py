from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

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
def sample_truth(sample_root: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sample_root.glob("*/truth.json"))}
