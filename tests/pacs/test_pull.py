"""Pull from a real Orthanc by DICOMweb and by DIMSE: identical volumes, filters, resume, errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from imaging.io import group_series, load_series, scan_archive
from pipelines.cli import app
from pipelines.dicom.pacs import PacsError, StudyQuery, pull
from tests.pacs.conftest import UPLOADED, source_files
from tests.pacs.orthanc import HOST, SERVER_AET, free_port

pytestmark = pytest.mark.sample_data

ROUTES = ("dicomweb", "dimse")


def _address(orthanc, route: str) -> str:
    return orthanc.dicomweb if route == "dicomweb" else orthanc.dimse


def _volumes(root: Path) -> dict[str, sitk.Image]:
    """Every volume under ``root`` by SeriesInstanceUID, loaded by the pipeline's own loader."""
    return {s.series_uid: load_series(s) for s in group_series(scan_archive(root).headers)}


def _assert_identical(pulled: dict[str, sitk.Image], originals: dict[str, sitk.Image]) -> None:
    assert set(pulled) == set(originals)
    for uid, original in originals.items():
        got = pulled[uid]
        # Exact: the same files' values, so the same geometry to the last bit and the same voxels.
        assert got.GetSize() == original.GetSize()
        assert got.GetSpacing() == original.GetSpacing()
        assert got.GetOrigin() == original.GetOrigin()
        assert got.GetDirection() == original.GetDirection()
        assert got.GetPixelID() == original.GetPixelID()
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(got), sitk.GetArrayViewFromImage(original))


@pytest.fixture(scope="module")
def originals(sample_root: Path) -> dict[str, dict[str, sitk.Image]]:
    """The uploaded volumes as loaded from the sample data, by patient."""
    out: dict[str, dict[str, sitk.Image]] = {}
    for patient, date in UPLOADED:
        out.setdefault(patient, {}).update(_volumes(sample_root / patient / date / "dicom"))
    return out


@pytest.mark.parametrize("route", ROUTES)
def test_pull_gives_identical_volumes(orthanc, route: str, tmp_path: Path, originals) -> None:
    calls = []
    result = pull(_address(orthanc, route), tmp_path, StudyQuery(patient_id="P002"), workers=2,
                  progress=lambda done, total, nbytes: calls.append((done, total)))
    assert result.found == result.fetched == 50 and result.already_present == 0
    assert len(result.studies) == 2
    assert calls[-1] == (50, 50)
    assert result.bytes == sum(p.stat().st_size for p in tmp_path.rglob("*.dcm"))
    _assert_identical(_volumes(tmp_path), originals["P002"])
    # The layout: <PatientID>/<StudyUID>/<SeriesUID>/<SOPUID>.dcm, and nothing else.
    files = sorted(tmp_path.rglob("*"))
    assert all(p.is_dir() or p.suffix == ".dcm" for p in files)
    one = next(p for p in files if p.suffix == ".dcm")
    ds = pydicom.dcmread(one, stop_before_pixels=True)
    assert one.relative_to(tmp_path).parts == ("P002", ds.StudyInstanceUID, ds.SeriesInstanceUID,
                                               f"{ds.SOPInstanceUID}.dcm")


@pytest.mark.parametrize("route", ROUTES)
def test_pull_is_resumable(orthanc, route: str, tmp_path: Path, originals) -> None:
    query = StudyQuery(patient_id="P003")
    first = pull(_address(orthanc, route), tmp_path, query)
    assert first.fetched == first.found == 48
    files = sorted(tmp_path.rglob("*.dcm"))
    again = pull(_address(orthanc, route), tmp_path, query)
    assert (again.fetched, again.already_present) == (0, 48)
    # Lose a few files (one as a killed pull leaves it: a temporary) and pull again: only those come back.
    lost = files[5:8]
    mtimes = {p: p.stat().st_mtime_ns for p in files if p not in lost}
    for p in lost:
        p.rename(p.with_name(f".{p.name}.abc123.tmp"))
    resumed = pull(_address(orthanc, route), tmp_path, query)
    assert (resumed.fetched, resumed.already_present) == (3, 45)
    assert {p: p.stat().st_mtime_ns for p in files if p not in lost} == mtimes, "present files are not rewritten"
    assert not list(tmp_path.rglob("*.tmp")), "a killed pull's temporaries are cleaned up"
    _assert_identical(_volumes(tmp_path), originals["P003"])


@pytest.mark.parametrize("route", ROUTES)
def test_study_and_date_filters(orthanc, route: str, tmp_path: Path) -> None:
    one_day = pull(_address(orthanc, route), tmp_path / "a", StudyQuery(since=dt.date(2024, 5, 1),
                                                                        until=dt.date(2024, 5, 31)))
    assert one_day.found == 25
    study_uid = one_day.studies[0]
    dates = {pydicom.dcmread(p, stop_before_pixels=True).StudyDate for p in (tmp_path / "a").rglob("*.dcm")}
    assert dates == {"20240506"}
    by_uid = pull(_address(orthanc, route), tmp_path / "b", StudyQuery(study_uid=study_uid))
    assert by_uid.studies == [study_uid] and by_uid.found == 25
    open_ended = pull(_address(orthanc, route), tmp_path / "c", StudyQuery(since=dt.date(2024, 3, 1)))
    assert len(open_ended.studies) == 2  # P002 2024-03-25 and 2024-05-06; P003's 2024-01-02 is before


def test_pull_command(orthanc, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    args = ["pull", orthanc.dicomweb, "--into", str(archive), "--patient", "P002", "--until", "2024-04-01"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "1 study(ies), 25 instance(s): 25 fetched" in result.output
    again = CliRunner().invoke(app, args)
    assert "0 fetched" in again.output and "25 already" in again.output
    # The archive is a dataset like any other: `index` reads it.
    indexed = CliRunner().invoke(app, ["index", str(archive)])
    assert indexed.exit_code == 0, indexed.output


def test_bad_arguments(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["pull", "ftp://example", "--into", str(tmp_path)])
    assert result.exit_code == 2 and "unknown scheme" in result.output
    result = CliRunner().invoke(app, ["pull", "http://127.0.0.1:1/dicom-web", "--into", str(tmp_path),
                                      "--since", "05/01/2024"])
    assert result.exit_code == 2 and "YYYY-MM-DD" in result.output


# ------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("route", ROUTES)
def test_unreachable_server(route: str, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    server = f"http://{HOST}:{port}/dicom-web" if route == "dicomweb" else f"dimse://{SERVER_AET}@{HOST}:{port}"
    with pytest.raises(PacsError) as err:
        pull(server, tmp_path, StudyQuery(patient_id="P002"), timeout_s=5)
    message = str(err.value)
    assert server in message and "P002" in message and "reach" in message
    assert not list(tmp_path.rglob("*.dcm"))


def test_wrong_ae_title(orthanc, tmp_path: Path) -> None:
    server = f"dimse://NOT-ORTHANC@{HOST}:{orthanc.dicom_port}"
    with pytest.raises(PacsError, match=r"rejected the association \(called AE title 'NOT-ORTHANC'") as err:
        pull(server, tmp_path, StudyQuery(patient_id="P002"))
    assert server in str(err.value) and "C-FIND" in str(err.value)


def test_calling_ae_title_unknown_to_the_server(orthanc, tmp_path: Path) -> None:
    with pytest.raises(PacsError, match=r"aborted the association \(does it allow our AE title 'STRANGER' to C-FIND"):
        pull(orthanc.dimse, tmp_path, StudyQuery(patient_id="P002"), calling_aet="STRANGER")


@pytest.mark.parametrize("route", ROUTES)
def test_unknown_patient(orthanc, route: str, tmp_path: Path) -> None:
    server = _address(orthanc, route)
    with pytest.raises(PacsError, match="no study matches PatientID=NOBODY") as err:
        pull(server, tmp_path, StudyQuery(patient_id="NOBODY"))
    assert server in str(err.value)
    result = CliRunner().invoke(app, ["pull", server, "--into", str(tmp_path), "--patient", "NOBODY"])
    assert result.exit_code == 1 and "no study matches PatientID=NOBODY" in result.output


@pytest.mark.parametrize("route", ROUTES)
def test_transfer_cut_half_way_then_resumed(fresh_orthanc, route: str, tmp_path: Path, sample_root: Path,
                                            originals) -> None:
    """The server dies mid-series: a clear error, only complete files; once it is back, the same pull completes."""
    fresh_orthanc.upload(source_files(sample_root, "P003", "2024-01-02"))
    server = _address(fresh_orthanc, route)
    archive = tmp_path / "archive"

    def kill_after_ten(done: int, total: int, nbytes: int) -> None:
        if done == 10:
            fresh_orthanc.kill()

    with pytest.raises(PacsError) as err:
        pull(server, archive, StudyQuery(patient_id="P003"), workers=1, timeout_s=10, progress=kill_after_ten)
    message = str(err.value)
    assert server in message and "series" in message, message
    written = sorted(archive.rglob("*.dcm"))
    assert 10 <= len(written) < 48
    assert not [p for p in archive.rglob("*") if p.name.startswith(".")], "no temporary left"
    for p in written:  # every file that is there is whole
        ds = pydicom.dcmread(p)
        assert ds.pixel_array.shape == (ds.Rows, ds.Columns)

    fresh_orthanc.start()
    resumed = pull(server, archive, StudyQuery(patient_id="P003"))
    assert (resumed.fetched, resumed.already_present) == (48 - len(written), len(written))
    _assert_identical(_volumes(archive), originals["P003"])
