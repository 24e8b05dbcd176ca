"""A real Orthanc for the PACS tests: started once per session on 127.0.0.1, loaded with a few sample studies.

Never a mock. When Debian's Orthanc (or its DICOMweb plugin) is missing the tests
skip with the reason, except under CI (env ``CI`` set), where they fail:
``.ci/system-deps.sh`` installs it there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.pacs.orthanc import Orthanc, dicomweb_plugin, orthanc_binary

#: Patient-time points uploaded: two MR studies of one patient (date filters) and one CT study of another.
UPLOADED = (("P002", "2024-03-25"), ("P002", "2024-05-06"), ("P003", "2024-01-02"))


def _missing(reason: str) -> None:
    reason += " (Debian packages orthanc + orthanc-dicomweb; `make system-deps` or .ci/system-deps.sh installs them)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def orthanc_parts() -> tuple[str, str]:
    binary = orthanc_binary()
    if binary is None:
        _missing("the Orthanc binary is not installed")
    plugin = dicomweb_plugin()
    if plugin is None:
        _missing("Orthanc's DICOMweb plugin is not installed")
    return binary, plugin


def source_files(sample_root: Path, patient: str, date: str) -> list[Path]:
    return sorted((sample_root / patient / date / "dicom").iterdir())


@pytest.fixture(scope="session")
def orthanc(orthanc_parts: tuple[str, str], sample_root: Path, tmp_path_factory) -> Orthanc:
    """The session's server, holding the UPLOADED studies (uploaded through Orthanc's own REST API)."""
    server = Orthanc(tmp_path_factory.mktemp("orthanc"), *orthanc_parts)
    server.start()
    try:
        server.upload([f for patient, date in UPLOADED for f in source_files(sample_root, patient, date)])
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_orthanc(orthanc_parts: tuple[str, str], tmp_path: Path) -> Orthanc:
    """A server of its own, for tests that kill it."""
    server = Orthanc(tmp_path / "orthanc", *orthanc_parts)
    server.start()
    try:
        yield server
    finally:
        server.stop()
