"""The header fields series selection needs, both parsers, the catalogue, and what `index` shows of them."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from typer.testing import CliRunner

from imaging.io import crawl as crawl_module
from imaging.io import dicom as dicom_module
from imaging.io import read_header, scan_archive
from imaging.io.dicom import dicom_datetime
from pipelines.cli import app
from tests.io.io_factory import enhanced_ct, save, volume_slices, write_datasets
from tests.io.test_segrefs import UIDS, make_rtstruct, make_seg, write_ct_study

NEW_FIELDS = ("convolution_kernel", "contrast_agent", "body_part", "content_datetime", "acquisition_plane")


def _fields(header) -> dict:
    return {name: getattr(header, name) for name in NEW_FIELDS}


def _slow(path: Path, monkeypatch):
    """The header as pydicom reads it (the lean parser switched off)."""
    with monkeypatch.context() as m:
        m.setattr(dicom_module, "_fast_parse", lambda fp, size: None)
        return read_header(path)


def test_new_fields_from_both_parsers(tmp_path, monkeypatch):
    hu = np.zeros((1, 8, 8), dtype=np.int16)
    extra = {"ConvolutionKernel": ["Br40d", "3"], "ContrastBolusAgent": "Iomeron 400 \u00b5g", "SpecificCharacterSet": "ISO_IR 100",
             "BodyPartExamined": "CHEST", "ContentDate": "20240102", "ContentTime": "093015.250"}
    (path,) = write_datasets(tmp_path, volume_slices(hu, (0.7, 0.7, 2.0), (0, 0, 0), np.eye(3), extra=extra))
    fast = read_header(path)
    assert _fields(fast) == {
        "convolution_kernel": "Br40d\\3", "contrast_agent": "Iomeron 400 \u00b5g", "body_part": "CHEST",
        "content_datetime": "20240102093015.250", "acquisition_plane": "axial",
    }
    assert fast == _slow(path, monkeypatch)


def test_rtstruct_date_from_both_parsers(tmp_path, monkeypatch):
    paths = write_ct_study(tmp_path)
    rt = save(make_rtstruct(paths["soft5"]), tmp_path / "rt.dcm")
    fast = read_header(rt)
    assert fast.content_datetime == "20240111083000" and fast.is_segmentation
    assert fast == _slow(rt, monkeypatch)


def test_both_parsers_agree_on_pydicoms_test_files(monkeypatch):
    root = Path(pydicom.__file__).parent / "data" / "test_files"
    compared = with_kernel = 0
    for path in sorted(p for p in root.iterdir() if p.is_file()):
        try:
            fast = read_header(path)
        except Exception:  # noqa: BLE001 - unreadable files are the crawl tests' business
            continue
        slow = _slow(path, monkeypatch)
        assert _fields(fast) == _fields(slow), path
        compared += 1
        with_kernel += bool(fast.convolution_kernel)
    assert compared > 50 and with_kernel >= 1


def test_enhanced_ct_kernel_and_contrast_from_functional_groups(tmp_path):
    ds = enhanced_ct(np.zeros((3, 6, 6)), (0.5, 0.5, 1.0), (0, 0, 0), np.eye(3))
    recon = Dataset()
    recon.ConvolutionKernel = "FC08"
    ds.SharedFunctionalGroupsSequence[0].CTReconstructionSequence = DicomSequence([recon])
    agent = Dataset()
    agent.CodeValue, agent.CodingSchemeDesignator, agent.CodeMeaning = "C-B0300", "SRT", "Iodine"
    ds.ContrastBolusAgentSequence = DicomSequence([agent])
    header = read_header(save(ds, tmp_path / "mf.dcm"))
    assert header.convolution_kernel == "FC08" and header.contrast_agent == "Iodine"
    assert header.acquisition_plane == "axial"


@pytest.mark.parametrize(
    "date, time, expected",
    [
        ("20240102", "093015.25", "20240102093015.25"), ("20240102", "", "20240102000000"), ("20240102", "09", "20240102090000"),
        ("20240102", "0930", "20240102093000"), ("20240102", "09:30:15", "20240102093015"), ("", "093015", ""),
        ("20241302", "093015", ""), ("20240102", "9x", "20240102000000"),
    ],
)
def test_dicom_datetime(date, time, expected):
    assert dicom_datetime(date, time) == expected


# ---------------------------------------------------------------------------------------------
# the catalogue


def test_segmentations_are_cached_and_old_catalogues_rebuilt(tmp_path, monkeypatch):
    archive = tmp_path / "archive"
    paths = write_ct_study(archive)
    seg = save(make_seg(paths["soft5"]), archive / "SEG" / "seg.dcm")
    save(make_rtstruct(paths["soft5"]), archive / "RT" / "rt.dcm")
    calls: list[Path] = []
    real = crawl_module.read_segmentation_ref
    monkeypatch.setattr(crawl_module, "read_segmentation_ref", lambda p: calls.append(p) or real(p))
    catalogue = tmp_path / "cat.sqlite"

    first = scan_archive(archive, catalogue=catalogue, workers=1)
    assert len(first.segmentations) == 2 and len(calls) == 2
    calls.clear()
    second = scan_archive(archive, catalogue=catalogue, workers=1)
    assert second.n_read == 0 and calls == []
    assert second.segmentations == first.segmentations and second.headers == first.headers
    # A changed segmentation file is read again; the others are not.
    os.utime(seg, ns=(seg.stat().st_atime_ns, seg.stat().st_mtime_ns + 10**9))
    third = scan_archive(archive, catalogue=catalogue, workers=1)
    assert calls == [seg] and third.n_read == 1 and third.segmentations == first.segmentations
    # A catalogue of the previous schema is rebuilt, not misread.
    db = sqlite3.connect(catalogue)
    with db:
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.close()
    rebuilt = scan_archive(archive, catalogue=catalogue, workers=1)
    assert rebuilt.n_read == rebuilt.n_files and rebuilt.n_cached == 0


# ---------------------------------------------------------------------------------------------
# the index command


def test_index_json_shows_selection_fields_and_segmentations(tmp_path):
    archive = tmp_path / "archive"
    paths = write_ct_study(archive)
    save(make_seg(paths["soft5"], labels=("lesion A", "lesion B")), archive / "SEG" / "seg.dcm")
    save(make_rtstruct(paths["soft5"], series_ref=False, contour_refs=False, for_uid="1.2.826.0.1.3680043.10.999.77"),
         archive / "RT" / "lost.dcm")
    result = CliRunner().invoke(app, ["index", str(archive), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    by_id = {v["volume_id"]: v for v in out["volumes"]}
    soft = by_id[UIDS["soft5"]]
    assert (soft["image_type"], soft["slice_thickness_mm"], soft["kernel"], soft["contrast_agent"], soft["plane"], soft["n_slices"]) == (
        "ORIGINAL\\PRIMARY\\AXIAL", 5.0, "B30f", "Iomeron 400", "axial", 12)
    assert by_id[UIDS["lung125"]]["kernel"] == "B70f" and by_id[UIDS["lung125"]]["slice_thickness_mm"] == 1.25
    assert by_id[UIDS["mip"]]["image_type"] == "DERIVED\\SECONDARY\\AXIAL\\MIP"
    assert out["counts"]["series"] == 5 and out["counts"]["volumes"] == 6 and out["counts"]["segmentations"] == 2
    assert out["counts"]["unlinked_segmentations"] == 1 and out["counts"]["studies_without_segmentation"] == 0
    segs = {Path(s["path"]).name: s for s in out["segmentations"]}
    seg = segs["seg.dcm"]
    assert seg["kind"] == "SEG" and seg["linked_by"] == "ReferencedSeriesSequence" and seg["unlinked_reason"] is None
    assert [s["series_uid"] for s in seg["linked_series"]] == [UIDS["soft5"]]
    assert seg["linked_series"][0]["series_description"] == "Abdomen 5.0 B30f"
    assert [(i["number"], i["name"], i["kind"]) for i in seg["items"]] == [(1, "lesion A", "Neoplasm"), (2, "lesion B", "Neoplasm")]
    assert soft["segmentations"] == [seg["sop_uid"]]
    lost = segs["lost.dcm"]
    assert lost["linked_series"] == [] and "FrameOfReferenceUID" in lost["unlinked_reason"]
    assert [(i["number"], i["name"], i["kind"]) for i in lost["items"]] == [(1, "GTV", "GTV"), (2, "Brainstem", "ORGAN")]
    # Segmentations are not "skipped".
    assert not any(Path(f["path"]).name in segs for f in out["skipped"]["files"])

    table = CliRunner().invoke(app, ["index", str(archive), "--no-catalogue"])
    assert table.exit_code == 0, table.output
    text = table.stdout
    assert "5 series in 6 volumes" in text and "2 segmentation(s)" in text and "unlinked:" in text
    assert "B70f" in text and "lesion A (Neoplasm)" in text and "ReferencedSeriesSequence" in text
    assert "skipped" not in text  # nothing in this archive is skipped


def test_index_says_no_segmentation_found(tmp_path):
    slices = volume_slices(np.zeros((3, 6, 6), dtype=np.int16), (0.8, 0.8, 2.0), (0, 0, 0), np.eye(3))
    write_datasets(tmp_path, slices)
    table = CliRunner().invoke(app, ["index", str(tmp_path), "--no-catalogue"])
    assert table.exit_code == 0 and "no segmentation found" in table.stdout and "1 series" in table.stdout
    out = json.loads(CliRunner().invoke(app, ["index", str(tmp_path), "--no-catalogue", "--json"]).stdout)
    assert out["segmentations"] == [] and out["counts"]["studies_without_segmentation"] == 1
