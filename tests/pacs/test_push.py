"""Push SEG and SR to a real Orthanc (STOW-RS and C-STORE), find them there, pull them back."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from typer.testing import CliRunner

from imaging.io import group_series, load_label_map, load_series, scan_archive
from imaging.report.dicom_seg import write_seg
from imaging.report.dicom_sr import CriterionCall, LesionRecord, write_sr
from pipelines.cli import app
from pipelines.dicom.pacs import PacsError, StudyQuery, pull, push
from tests.pacs.conftest import source_files
from tests.pacs.orthanc import HOST, SERVER_AET, free_port

pytestmark = pytest.mark.sample_data

DATES = ("2024-03-25", "2024-05-06")


@pytest.fixture
def loaded(fresh_orthanc, sample_root: Path):
    """A server holding P002's two studies."""
    for date in DATES:
        fresh_orthanc.upload(source_files(sample_root, "P002", date))
    return fresh_orthanc


def _objects(sample_root: Path, date: str, out: Path) -> tuple[Path, Path]:
    """A SEG and an SR of one of P002's time points."""
    series = group_series(scan_archive(sample_root / "P002" / date / "dicom").headers)[0]
    image = load_series(series)
    labels = load_label_map(sample_root / "P002" / date / "mask.nii.gz", image)
    seg, segments = write_seg(series.files, labels, {1: "L1"}, out / "seg.dcm")
    write_sr(series.files, out / "sr.dcm", [LesionRecord("L1", long_axis_mm=40.0, short_axis_mm=30.0)],
             [CriterionCall("recist", "SD", (), "test")], seg=seg, segments=segments, time_point=date)
    return out / "seg.dcm", out / "sr.dcm"


def _uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_push_by_both_routes_then_pull_back(loaded, sample_root: Path, tmp_path: Path) -> None:
    web = _objects(sample_root, DATES[0], tmp_path / "a")
    dimse = _objects(sample_root, DATES[1], tmp_path / "b")
    sent = push(loaded.dicomweb, list(web))
    assert sent.sent == 2
    folder = CliRunner().invoke(app, ["push", loaded.dimse, str(tmp_path / "b")])  # a folder: its *.dcm
    assert folder.exit_code == 0, folder.output
    assert "2 file(s) sent" in folder.output
    on_server = loaded.instance_uids()
    assert {_uid(p) for p in web + dimse} <= on_server

    # Back from the server, the objects land in their source study and read as they were written.
    archive = tmp_path / "archive"
    result = pull(loaded.dicomweb, archive, StudyQuery(patient_id="P002"))
    assert result.found == 50 + 4
    for original in web + dimse:
        pulled = next(archive.rglob(f"{_uid(original)}.dcm"))
        src = pydicom.dcmread(original)
        assert pydicom.dcmread(pulled).StudyInstanceUID == src.StudyInstanceUID
    seg = hd.seg.segread(next(archive.rglob(f"{_uid(web[0])}.dcm")))
    assert seg.get_segment_description(1).SegmentLabel == "L1"
    sr = hd.sr.srread(next(archive.rglob(f"{_uid(web[1])}.dcm")))
    group = sr.content.get_volumetric_roi_measurement_groups()[0]
    assert group.tracking_identifier == "L1"
    # The crawl still finds the two MR volumes: SEG and SR in the study do not disturb `run`.
    volumes = [s for s in group_series(scan_archive(archive).headers) if s.modality == "MR"]
    assert len(volumes) == 2


@pytest.mark.parametrize("route", ("dicomweb", "dimse"))
def test_push_to_unreachable_server(route: str, sample_root: Path, tmp_path: Path) -> None:
    port = free_port()
    server = f"http://{HOST}:{port}/dicom-web" if route == "dicomweb" else f"dimse://{SERVER_AET}@{HOST}:{port}"
    seg, _ = _objects(sample_root, DATES[0], tmp_path)
    with pytest.raises(PacsError) as err:
        push(server, [seg], timeout_s=5)
    assert server in str(err.value) and "reach" in str(err.value)


def test_push_refuses_non_dicom(tmp_path: Path) -> None:
    junk = tmp_path / "notes.dcm"
    junk.write_text("not DICOM")
    result = CliRunner().invoke(app, ["push", "http://127.0.0.1:1/dicom-web", str(junk)])
    assert result.exit_code == 1 and "notes.dcm is not readable DICOM" in result.output
