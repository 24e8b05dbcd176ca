"""DICOM SEG + SR export of a run: validated by dciodvfy, re-read by highdicom, voxel-exact against the masks."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.sr.codedict import codes
from typer.testing import CliRunner

from imaging.io import group_series, load_label_map, load_series, scan_archive
from imaging.report.dicom_sr import FLAG_CONCEPT, OHIF_BIDIRECTIONAL, REASON_CONCEPT, RESPONSE_CONCEPT
from imaging.segmentation import lesion_label_map
from pipelines.cli import app
from pipelines.dicom.export import SEG_NAME, SR_NAME, ExportError, export_run
from tests.dicom_out.conftest import EXPORTED, REPO
from tests.dicom_out.helpers import dciodvfy, seg_on_grid

pytestmark = pytest.mark.sample_data

#: What the SEG and SR copy from the source as it is (see docs/pacs.md): the study's UID (Retain UIDs option)
#: and its date and time (Retain Longitudinal Temporal Information with Full Dates option).
KEPT_FIELDS = ("StudyInstanceUID", "StudyDate", "StudyTime")
#: Emptied or removed by PS3.15's Basic Profile unless privacy.keep_identifiers (the sources hold a value).
IDENTIFYING_FIELDS = ("PatientBirthDate", "AccessionNumber", "ReferringPhysicianName", "PatientSex", "StudyID",
                      "StudyDescription")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _objects(exported: Path) -> list[Path]:
    return sorted(exported.rglob("*.dcm"))


def _timepoints(exported: Path) -> list[tuple[str, str, Path]]:
    return sorted((d.parent.name, d.name, d) for d in exported.glob("*/*") if d.is_dir())


def _source(sample_root: Path, patient: str, date: str):
    series = group_series(scan_archive(sample_root / patient / date / "dicom").headers)
    assert len(series) == 1
    return series[0]


def test_one_seg_and_one_sr_per_timepoint(exported: Path, sample_run: Path) -> None:
    expected = {(r["patient_id"], r["date"]) for r in _rows(sample_run / "lesions.csv") if r["patient_id"] in EXPORTED}
    found = {(p, d) for p, d, _ in _timepoints(exported)}
    assert found == expected
    for _, _, folder in _timepoints(exported):
        assert sorted(p.name for p in folder.iterdir()) == sorted([SEG_NAME, SR_NAME])
    assert not list(exported.rglob(".*")), "no temporary left behind"


def test_every_object_passes_dciodvfy(exported: Path, dciodvfy_bin: str) -> None:
    """No error from dicom3tools' validator; the warnings are reported (only the private coding scheme is expected)."""
    warnings_by_kind: dict[str, set[str]] = defaultdict(set)
    for path in _objects(exported):
        result = dciodvfy(dciodvfy_bin, path)
        assert result.iod in ("Segmentation", "Comprehensive3DSR"), (path, result)
        assert result.errors == (), (path, result.errors)
        warnings_by_kind[result.iod].update(result.warnings)
    print("dciodvfy warnings:", json.dumps({k: sorted(v) for k, v in warnings_by_kind.items()}, indent=1))
    # Study ID is emptied by the Basic Profile (Z); dciodvfy notes that a DICOMDIR would want one.
    dicomdir = "Warning - Missing attribute or value that would be needed to build DICOMDIR - Study ID"
    assert warnings_by_kind["Segmentation"] <= {dicomdir}
    # The responses, flags and criteria other than RECIST 1.1 have no standard code: 99TUMORRESP (private) codes.
    assert all("99TUMORRESP" in w or w == dicomdir for w in warnings_by_kind["Comprehensive3DSR"]), warnings_by_kind


def test_seg_matches_mask_voxel_for_voxel(exported: Path, sample_run: Path, sample_root: Path) -> None:
    rows = _rows(sample_run / "lesions.csv")
    for patient, date, folder in _timepoints(exported):
        series = _source(sample_root, patient, date)
        image = load_series(series)
        mask = lesion_label_map(load_label_map(sample_root / patient / date / "mask.nii.gz", image), min_volume_mm3=10)
        seg = hd.seg.segread(folder / SEG_NAME)
        label_of = {r["lesion_id"]: int(r["label"]) for r in rows if r["patient_id"] == patient and r["date"] == date}
        label_of_segment = {n: label_of[seg.get_segment_description(n).SegmentLabel] for n in seg.segment_numbers}
        back = seg_on_grid(folder / SEG_NAME, image, label_of_segment)
        # Exact: the SEG is on the source grid, so nearest neighbour lands on voxel centres.
        np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(mask),
                                      err_msg=f"{patient} {date}")


def test_seg_references_source_series_and_carries_lesion_ids(exported: Path, sample_root: Path) -> None:
    tracking: dict[tuple[str, str], set[str]] = defaultdict(set)
    for patient, date, folder in _timepoints(exported):
        series = _source(sample_root, patient, date)
        src = pydicom.dcmread(series.files[0], stop_before_pixels=True)
        seg = hd.seg.segread(folder / SEG_NAME)
        assert seg.SegmentationType == "BINARY"
        assert seg.FrameOfReferenceUID == src.FrameOfReferenceUID
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series.series_uid
        referenced = {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
        assert referenced == {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in series.files}
        for field in KEPT_FIELDS:
            assert seg.get(field) == src.get(field), field
        assert str(seg.PatientName) == f"{patient}^" and seg.PatientID == patient
        for field in IDENTIFYING_FIELDS:
            assert src.get(field) and not seg.get(field), field
        for number in seg.segment_numbers:
            desc = seg.get_segment_description(number)
            assert desc.tracking_id == desc.segment_label
            tracking[(patient, desc.tracking_id)].add(desc.tracking_uid)
    assert {k: len(v) for k, v in tracking.items()} == {k: 1 for k in tracking}, "one Tracking UID per lesion"
    assert ("P003", "L2") in tracking  # the new lesion


def _groups(sr_path: Path):
    sr = hd.sr.srread(sr_path)
    report = sr.content
    return sr, report.get_volumetric_roi_measurement_groups(), report.get_image_measurement_groups()


LONG = hd.sr.CodedConcept("103339001", "SCT", "Long Axis")
SHORT = hd.sr.CodedConcept("103340004", "SCT", "Short Axis")


def _scoord_to_lps(image: pydicom.Dataset, graphic_data) -> np.ndarray:
    """SCOORD (column, row; (0, 0) = top left corner of the top left pixel) -> LPS, by the image's plane."""
    xy = np.asarray(graphic_data, float).reshape(-1, 2) - 0.5
    iop = np.asarray(image.ImageOrientationPatient, float)
    row_spacing, column_spacing = (float(v) for v in image.PixelSpacing)
    return (np.asarray(image.ImagePositionPatient, float) + np.outer(xy[:, 0] * column_spacing, iop[:3])
            + np.outer(xy[:, 1] * row_spacing, iop[3:]))


def _value(group, concept) -> float | None:
    found = group.get_measurements(name=concept)
    return found[0].value if found else None


def test_sr_values_tracking_and_calls(exported: Path, sample_run: Path, sample_root: Path) -> None:
    lesions = _rows(sample_run / "lesions.csv")
    responses = _rows(sample_run / "responses.csv")
    perpendicular = hd.sr.CodedConcept("131189007", "SCT", "Perpendicular axis")
    uids: dict[tuple[str, str], set[str]] = defaultdict(set)
    for patient, date, folder in _timepoints(exported):
        source = _source(sample_root, patient, date)
        src = pydicom.dcmread(source.files[0], stop_before_pixels=True)
        slices = {str(d.SOPInstanceUID): d for d in (pydicom.dcmread(f, stop_before_pixels=True) for f in source.files)}
        sr, volumetric, other = _groups(folder / SR_NAME)
        seg = pydicom.dcmread(folder / SEG_NAME, stop_before_pixels=True)
        for field in KEPT_FIELDS:
            assert sr.get(field) == src.get(field), field
        assert str(sr.PatientName) == f"{patient}^" and sr.PatientID == patient
        for field in IDENTIFYING_FIELDS:
            assert not sr.get(field), field
        by_id = {g.tracking_identifier: g for g in volumetric}
        lines = {g.tracking_uid: g for g in other if g.tracking_identifier == OHIF_BIDIRECTIONAL}
        expected = [r for r in lesions if r["patient_id"] == patient and r["date"] == date]
        assert set(by_id) == {r["lesion_id"] for r in expected if r["status"] in ("present", "new")}
        for row in expected:
            group = by_id[row["lesion_id"]]
            uids[(patient, row["lesion_id"])].add(group.tracking_uid)
            # The SR holds the course's values (3 decimals), the CSV the same rounded to 2.
            line = lines[group.tracking_uid]
            assert _value(line, LONG) == pytest.approx(float(row["long_axis_mm"]), abs=0.006)
            assert _value(line, SHORT) == pytest.approx(float(row["short_axis_mm"]), abs=0.006)
            assert _value(group, perpendicular) == pytest.approx(float(row["perpendicular_mm"]), abs=0.006)
            assert _value(group, codes.SCT.Volume) == pytest.approx(float(row["volume_mm3"]), abs=0.006)
            units = {m.name.meaning: m.unit.value for m in [*group.get_measurements(), *line.get_measurements()]
                     if m.name.meaning not in ("Time Point Order", "Longitudinal Temporal Offset from Event")}  # TID 1502
            assert units == {"Long Axis": "mm", "Short Axis": "mm", "Perpendicular axis": "mm", "Volume": "mm3"}
            # Each axis is drawn on the source slice that holds its end points (lesions.csv, LPS).
            for axis, concept in (("long_axis", LONG), ("short_axis", SHORT)):
                num = next(i for i in line[0].ContentSequence if i.ValueType == "NUM"
                           and i.ConceptNameCodeSequence[0].CodeValue == concept.value)
                scoord = next(i for i in num.ContentSequence if i.ValueType == "SCOORD")
                sop = scoord.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
                image = slices[sop]
                ends = np.array([[float(v) for v in row[f"{axis}_end{k}_lps"].split()] for k in (0, 1)])
                assert np.allclose(_scoord_to_lps(image, scoord.GraphicData), ends, atol=0.01), (patient, date, axis)
            assert line.get_qualitative_evaluations()  # the lesion's role in the course
            ref = group.referenced_segment
            assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID
            number = ref.referenced_segment_numbers[0]
            segment = next(s for s in seg.SegmentSequence if s.SegmentNumber == number)
            assert segment.SegmentLabel == row["lesion_id"]
            assert segment.TrackingUID == group.tracking_uid
        calls = [g for g in other if g.method is not None]
        expected_calls = [r for r in responses if r["patient_id"] == patient and r["date"] == date]
        assert len(calls) == len(expected_calls)  # one group per assessed criterion
        recist = [g for g in calls if g.method.meaning == "RECIST 1.1"]
        assert len(recist) == 1
        group, row = recist[0], next(r for r in expected_calls if r["criterion"] == "recist")
        evaluations = group.get_qualitative_evaluations()
        response = [q.value.value for q in evaluations if q.name.value == RESPONSE_CONCEPT[0]]
        flags = sorted(q.value.value for q in evaluations if q.name.value == FLAG_CONCEPT[0])
        assert response == [row["response"] or ("pre-baseline" if "pre_baseline" in row["flags"] else "baseline")]
        assert flags == sorted(f for f in row["flags"].split(";") if f)
        reasons = [i.TextValue for i in group[0].ContentSequence
                   if i.ValueType == "TEXT" and i.ConceptNameCodeSequence[0].CodeValue == REASON_CONCEPT[0]]
        assert reasons == [row["reason"]]
    assert {k: len(v) for k, v in uids.items()} == {k: 1 for k in uids}, "Tracking UID identical across time points"
    assert len([k for k in uids if k[0] == "P003"]) == 2


def test_export_is_deterministic(sample_run: Path, exported: Path, tmp_path: Path) -> None:
    """Same run, same UIDs: pushing a re-export to a PACS replaces instead of duplicating."""
    export_run(sample_run, tmp_path, patients=["P002"])
    for again in sorted(tmp_path.rglob("*.dcm")):
        first = exported / again.relative_to(tmp_path)
        a, b = (pydicom.dcmread(p, stop_before_pixels=True) for p in (first, again))
        assert (a.SOPInstanceUID, a.SeriesInstanceUID) == (b.SOPInstanceUID, b.SeriesInstanceUID)


def test_nifti_run_is_refused_with_nothing_written(tmp_path: Path) -> None:
    from pipelines.config import load_config

    run = tmp_path / "run"
    run.mkdir()
    config = load_config(REPO / "configs" / "sample_nifti.yaml")
    (run / "provenance.json").write_text(json.dumps({"config": json.loads(config.model_dump_json())}))
    out = tmp_path / "dicom"
    with pytest.raises(ExportError, match="nifti.*only for DICOM sources.*Nothing was written"):
        export_run(run, out)
    assert not out.exists()
    result = CliRunner().invoke(app, ["export", str(run), str(out)])
    assert result.exit_code == 2
    assert "only for DICOM sources" in result.output


def test_export_command(sample_run: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export", str(sample_run), str(tmp_path), "--patient", "P002"])
    assert result.exit_code == 0, result.output
    assert "10 DICOM object(s) written" in result.output
    assert len(list(tmp_path.rglob("*.dcm"))) == 10


def test_missing_run_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export", str(tmp_path / "nope"), str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "provenance" in result.output


def test_timepoint_without_lesion_gets_an_sr_only(sample_root: Path, tmp_path: Path, dciodvfy_bin: str) -> None:
    """Every lesion gone: no SEG can exist (no segment), the SR states zeros and passes the validator."""
    from imaging.report.dicom_seg import DicomExportError, write_seg
    from imaging.report.dicom_sr import CriterionCall, LesionRecord, write_sr

    series = _source(sample_root, "P002", "2024-03-25")
    empty = sitk.Image(load_series(series).GetSize(), sitk.sitkUInt16)
    with pytest.raises(DicomExportError, match="no lesion voxel"):
        write_seg(series.files, empty, {}, tmp_path / "seg.dcm")
    assert not list(tmp_path.iterdir()), "nothing half-made"
    write_sr(series.files, tmp_path / "sr.dcm", [LesionRecord("L1", status="absent")],
             [CriterionCall("irecist", "iCR", (), "all gone")], time_point="2024-03-25")
    result = dciodvfy(dciodvfy_bin, tmp_path / "sr.dcm")
    assert result.errors == ()
    sr, volumetric, other = _groups(tmp_path / "sr.dcm")
    assert volumetric == []
    lesion = next(g for g in other if g.tracking_identifier == "L1")
    assert [m.value for m in lesion.get_measurements()] == [0.0, 0.0, 0.0, 0.0]
    call = next(g for g in other if g.method is not None)
    assert call.method.value == "iRECIST"


def test_pseudonymised_run(sample_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outputs name patients by pseudonym: the export follows them with the key, and refuses without it."""
    from rich.console import Console

    from pipelines.batch.run import run_pipeline
    from pipelines.config import load_config
    from pipelines.outputs.privacy import Pseudonymiser

    monkeypatch.setenv("TR_TEST_PRIVACY_KEY", "a-test-key-of-sufficient-length")
    config = load_config(REPO / "configs" / "sample.yaml", [
        f"output_dir={tmp_path / 'run'}", "executor.workers=2", "privacy.pseudonymise=true",
        "privacy.key_env=TR_TEST_PRIVACY_KEY"])
    run_pipeline(config, Console(stderr=True, quiet=True))
    pseudonym = Pseudonymiser(config.privacy).patient("P002")
    summary = export_run(tmp_path / "run", tmp_path / "dicom", patients=[pseudonym])
    assert not summary.failed and len(summary.written) == 10
    assert sorted(p.name for p in (tmp_path / "dicom").iterdir()) == [pseudonym]
    monkeypatch.delenv("TR_TEST_PRIVACY_KEY")
    with pytest.raises(ExportError, match="TR_TEST_PRIVACY_KEY"):
        export_run(tmp_path / "run", tmp_path / "dicom2")
    # `run` passes its live config (the key inline), as with `outputs.dicom: true`.
    from pydantic import SecretStr

    live = config.model_copy(update={"privacy": config.privacy.model_copy(
        update={"key": SecretStr("a-test-key-of-sufficient-length"), "key_env": None})})
    summary = export_run(tmp_path / "run", tmp_path / "dicom3", config=live, patients=[pseudonym])
    assert len(summary.written) == 10


def test_keep_identifiers_copies_the_patient_module(sample_run: Path, sample_root: Path, tmp_path: Path) -> None:
    from pipelines.config import load_config
    from pipelines.dicom.export import export_run

    config = load_config(REPO / "configs" / "sample.yaml", [f"output_dir={sample_run}", "privacy.keep_identifiers=true"])
    summary = export_run(sample_run, tmp_path, config=config, patients=["P002"])
    assert summary.written and not summary.failed
    for patient, date, folder in _timepoints(tmp_path):
        src = pydicom.dcmread(_source(sample_root, patient, date).files[0], stop_before_pixels=True)
        seg = pydicom.dcmread(folder / SEG_NAME, stop_before_pixels=True)
        for field in ("PatientName", "PatientID", *IDENTIFYING_FIELDS):
            assert seg.get(field) == src.get(field), field


def test_the_same_run_exported_twice_gives_the_same_bytes(exported: Path, sample_run: Path, tmp_path: Path) -> None:
    """Creation and content dates and times come from the run (provenance.json `started`), not the clock."""
    import datetime as dt
    import hashlib
    import time

    from pipelines.dicom.export import export_run

    time.sleep(1.1)  # a clock-dated object would now differ in its seconds
    again = tmp_path / "again"
    summary = export_run(sample_run, again, patients=("P002",))
    assert summary.written
    for path in summary.written:
        first = exported / path.relative_to(again)
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(first.read_bytes()).digest(), path
    started = dt.datetime.fromisoformat(json.loads((sample_run / "provenance.json").read_text())["started"])
    ds = pydicom.dcmread(summary.written[0], stop_before_pixels=True)
    assert (ds.ContentDate, ds.ContentTime) == (started.strftime("%Y%m%d"), started.strftime("%H%M%S"))
    assert (ds.InstanceCreationDate, ds.InstanceCreationTime) == (ds.ContentDate, ds.ContentTime)
