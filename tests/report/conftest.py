from __future__ import annotations

from pathlib import Path

import pytest

from tests.report.factory import build_run


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """The hand-made run folder of :mod:`tests.report.factory`."""
    return build_run(tmp_path / "run")
