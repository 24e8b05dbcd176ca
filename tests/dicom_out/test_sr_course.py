"""Courses from SR Measurement Reports as viewers write them (3D Slicer / OHIF style, built with highdicom)."""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from imaging.response import CourseError, assess, course_from_dict
from pipelines.dicom.sr_course import course_from_sr_folder, read_sr_course

PATIENT = "LAB-007"
STUDIES = {d: generate_uid() for d in ("20240110", "20240301", "20240501")}
FRAME_OF_REFERENCE = generate_uid()

LENGTH = codes.SCT.Length if hasattr(codes.SCT, "Length") else hd.sr.CodedConcept("410668003", "SCT", "Length")
#: Older dcmjs/OHIF reports code the axes in SNOMED-RT.
SRT_LONG = hd.sr.CodedConcept("G-A185", "SRT", "Long Axis")
SRT_SHORT = hd.sr.CodedConcept("G-A186", "SRT", "Short Axis")
CM = hd.sr.CodedConcept("cm", "UCUM", "centimeter")


@dataclass(frozen=True)
class Drawn:
    """One measurement as a reader draws it."""

    lesion: str
    length: float | None = None  # a single line (Slicer markups line / OHIF Length)
    long_axis: float | None = None  # bidirectional
    short_axis: float | None = None
    unit: str = "mm"
    style: str = "slicer"  # "slicer": Tracking Identifier = lesion; "ohif": tool name + free-text label


def _image(patient: str, study_date: str, study_uid: str) -> Dataset:
    """A minimal CT slice header: what the report references (the viewers' evidence)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = pydicom.uid.CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "LAB^SUBJECT", patient, "19600101", "F"
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = study_uid, study_date, "100000"
    ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "ACC1", "", "1"
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.Modality = generate_uid(), 2, "CT"
    ds.InstanceNumber = 1
    ds.FrameOfReferenceUID = FRAME_OF_REFERENCE
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 0], [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.Rows, ds.Columns = [0.7, 0.7], 512, 512
    return ds


def _group(d: Drawn, image: Dataset) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    unit = CM if d.unit == "cm" else codes.UCUM.Millimeter
    if d.length is not None:
        measurements = [hd.sr.Measurement(name=LENGTH, value=d.length, unit=unit)]
    else:
        long_name, short_name = (SRT_LONG, SRT_SHORT) if d.style == "ohif" else (codes.SCT.LongAxis, codes.SCT.ShortAxis)
        measurements = [hd.sr.Measurement(name=long_name, value=d.long_axis, unit=unit),
                        hd.sr.Measurement(name=short_name, value=d.short_axis, unit=unit)]
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=np.array([[100.0, 100.0], [140.0, 120.0]]),
        source_image=hd.sr.SourceImageForRegion.from_source_image(image),
    )
    if d.style == "ohif":
        tracking = hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="Cornerstone3DTools@^0.1.0:Bidirectional")
        sites = [hd.sr.FindingSite(hd.sr.CodedConcept("CORNERSTONEFREETEXT", "CORNERSTONEJS", d.lesion))]
    else:
        tracking = hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=d.lesion)
        sites = None
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, referenced_region=region, finding_type=codes.SCT.Lesion,
        finding_sites=sites, measurements=measurements,
    )


def write_report(folder: Path, name: str, study_date: str, drawn: list[Drawn], *, patient: str = PATIENT,
                 content_time: str = "120000") -> Path:
    """A TID 1500 report of one study, as a viewer saves it."""
    image = _image(patient, study_date, STUDIES.get(study_date, generate_uid()))
    observer = hd.sr.ObservationContext(
        observer_person_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name="Reader^One"),
        )
    )
    report = hd.sr.MeasurementReport(
        observation_context=observer, procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=[_group(d, image) for d in drawn],
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[image], content=report, series_instance_uid=generate_uid(), series_number=99,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="viewer", is_complete=True,
    )
    sr.ContentDate, sr.ContentTime = study_date, content_time
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    sr.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def lab_folder(tmp_path: Path) -> Path:
    """Three studies: two lesions at baseline, T2 not measured at the first follow-up, a new lesion at the second."""
    folder = tmp_path / "reports"
    write_report(folder, "baseline/sr.dcm", "20240110",
                 [Drawn("T1", length=30.0), Drawn("T2", long_axis=20.0, short_axis=12.0, style="ohif")])
    write_report(folder, "fu1/sr.dcm", "20240301", [Drawn("T1", length=25.0)])
    # An earlier revision of the second follow-up's report, superseded by the later one below.
    write_report(folder, "fu2/sr-draft.dcm", "20240501", [Drawn("T1", length=99.0)], content_time="090000")
    write_report(folder, "fu2/sr.dcm", "20240501",
                 [Drawn("T1", length=2.0, unit="cm"), Drawn("T2", long_axis=14.0, short_axis=9.0, style="ohif"),
                  Drawn("N1", length=12.0)], content_time="150000")
    image = _image(PATIENT, "20240501", STUDIES["20240501"])  # images beside the reports are not reports
    image.save_as(folder / "fu2" / "image.dcm", enforce_file_format=True)
    (folder / "notes.txt").write_text("reader notes")
    (folder / "context.yaml").write_text("treatment_start: 2024-01-15\nradiotherapy_end: null\nimmunotherapy: true\n")
    return folder


def test_course_from_viewer_reports(lab_folder: Path) -> None:
    course = course_from_sr_folder(lab_folder)
    assert course["patient_id"] == PATIENT
    assert course["context"] == {"treatment_start": "2024-01-15", "radiotherapy_end": None, "immunotherapy": True}
    assert [t["date"] for t in course["timepoints"]] == ["2024-01-10", "2024-03-01", "2024-05-01"]
    base, fu1, fu2 = course["timepoints"]
    assert [(t["lesion"], t["long_axis_mm"], t["short_axis_mm"]) for t in base["target"]] == [
        ("T1", 30.0, None), ("T2", 20.0, 12.0)]
    # T2 was not measured at the first follow-up: not evaluated, not gone.
    assert [(t["lesion"], t["long_axis_mm"]) for t in fu1["target"]] == [("T1", 25.0), ("T2", None)]
    # 2.0 cm read as 20 mm; the later revision of the report wins over the draft (T1 = 99 mm).
    assert [(t["lesion"], t["long_axis_mm"]) for t in fu2["target"]] == [("T1", pytest.approx(20.0)), ("T2", 14.0)]
    assert [(n["lesion"], n["long_axis_mm"], n["measurable"]) for n in fu2["new_lesions"]] == [("N1", 12.0, True)]
    assert base["new_lesions"] == fu1["new_lesions"] == []


def test_recist_and_irecist_calls_on_viewer_reports(lab_folder: Path) -> None:
    course = course_from_dict(course_from_sr_folder(lab_folder), source=str(lab_folder))
    recist = {t.date.isoformat(): t for t in assess(course, "recist").timepoints}
    assert recist["2024-01-10"].response is None and "baseline" in recist["2024-01-10"].flags
    # One of two targets not evaluated and the measured one alone does not show progression: NE (RECIST 1.1 4.3.4).
    assert recist["2024-03-01"].response == "NE"
    # Sum 34 mm vs 50 mm baseline would be PR, but a new lesion is progression.
    assert recist["2024-05-01"].response == "PD"
    irecist = {t.date.isoformat(): t for t in assess(course, "irecist").timepoints}
    assert irecist["2024-05-01"].response == "iUPD"


def test_context_argument_overrides_the_folder(lab_folder: Path) -> None:
    course = course_from_sr_folder(lab_folder, context={"treatment_start": "2024-03-05", "radiotherapy_end": None,
                                                        "immunotherapy": False})
    # Baseline = the last scan on or before treatment start: the first follow-up; T2 is not a target there.
    second, third = course["timepoints"][1:]
    assert [t["lesion"] for t in second["target"]] == ["T1"]
    assert sorted(n["lesion"] for n in third["new_lesions"]) == ["N1", "T2"]


def test_reports_of_two_patients_are_refused(tmp_path: Path) -> None:
    write_report(tmp_path, "a.dcm", "20240110", [Drawn("T1", length=30.0)])
    write_report(tmp_path, "b.dcm", "20240301", [Drawn("T1", length=20.0)], patient="OTHER")
    with pytest.raises(CourseError, match="2 patients.*LAB-007.*OTHER"):
        course_from_sr_folder(tmp_path)


def test_folder_without_reports_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("nothing")
    with pytest.raises(CourseError, match="no DICOM SR Measurement Report"):
        course_from_sr_folder(tmp_path)


def test_unknown_unit_names_the_report(tmp_path: Path) -> None:
    path = write_report(tmp_path, "a.dcm", "20240110", [Drawn("T1", length=3.0)])
    ds = pydicom.dcmread(path)
    for item in ds.ContentSequence:
        for group in item.get("ContentSequence", []):
            for sub in group.get("ContentSequence", []):
                if sub.ValueType == "NUM":
                    sub.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue = "[in_i]"
    ds.save_as(path)
    with pytest.raises(CourseError, match=r"a\.dcm.*unit '\[in_i\]'"):
        course_from_sr_folder(tmp_path)


@pytest.mark.sample_data
def test_exported_reports_give_back_the_runs_calls(exported: Path, sample_run: Path, sample_root: Path) -> None:
    """Our own SRs are viewer-readable reports too: reading P003's back reproduces the run's RECIST calls."""
    with (sample_root / "clinical.csv").open(newline="") as fh:
        clinical = {r["patient_id"]: r for r in csv.DictReader(fh)}
    with (sample_run / "responses.csv").open(newline="") as fh:
        expected = [(r["date"], r["response"] or None) for r in csv.DictReader(fh)
                    if r["patient_id"] == "P003" and r["criterion"] == "recist"]
    c = clinical["P003"]
    course = course_from_sr_folder(exported / "P003", context={
        "treatment_start": c["treatment_start"], "radiotherapy_end": c["radiotherapy_end"] or None,
        "immunotherapy": c["immunotherapy"] == "true"})
    calls = [(t.date.isoformat(), t.response) for t in assess(course_from_dict(course), "recist").timepoints]
    assert calls == expected
    assert dt.date.fromisoformat(course["timepoints"][0]["date"]) < dt.date(2024, 1, 8)  # the pre-baseline scan


def _ohif_3d_report(folder: Path, name: str, study_date: str, centres: list[tuple[tuple[float, float, float], float]],
                    frame: str, labels: list[str] | None = None) -> None:
    """Lines in one shared frame of reference (SCOORD3D), each with a Tracking UID of its own, as OHIF's 3-D
    viewports save them: unlabelled, or with ``labels`` as their tracking identifiers (a reader's lesion names)."""
    image = _image(PATIENT, study_date, STUDIES.get(study_date, generate_uid()))
    image.FrameOfReferenceUID = frame
    groups = []
    for k, ((x, y, z), length) in enumerate(centres):
        region = hd.sr.ImageRegion3D(graphic_type=hd.sr.GraphicTypeValues3D.POLYLINE,
                                     graphic_data=np.array([[x - length / 2, y, z], [x + length / 2, y, z]]),
                                     frame_of_reference_uid=frame)
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=generate_uid(), identifier=labels[k] if labels else "Cornerstone3DTools@^0.1.0:Length"),
            referenced_region=region, finding_type=codes.SCT.Lesion,
            measurements=[hd.sr.Measurement(name=LENGTH, value=length, unit=codes.UCUM.Millimeter)]))
    observer = hd.sr.ObservationContext(observer_person_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name="Reader^One")))
    report = hd.sr.MeasurementReport(observation_context=observer, procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
                                     imaging_measurements=groups)
    sr = hd.sr.Comprehensive3DSR(evidence=[image], content=report, series_instance_uid=generate_uid(), series_number=99,
                                 sop_instance_uid=generate_uid(), instance_number=1, manufacturer="viewer")
    sr.ContentDate, sr.ContentTime = study_date, "120000"
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    sr.save_as(folder / name, enforce_file_format=True)


def test_unlabelled_lines_in_a_shared_frame_are_linked_by_position(tmp_path: Path) -> None:
    """Two lesions drifting by a few mm, listed in another order at each scan, and a new one 100 mm away."""
    frame = generate_uid()
    a, b, far = (0.0, 0.0, 0.0), (100.0, 0.0, 0.0), (0.0, 100.0, 0.0)
    _ohif_3d_report(tmp_path, "1.dcm", "20240110", [(a, 30.0), (b, 20.0)], frame)
    _ohif_3d_report(tmp_path, "2.dcm", "20240301", [((101.0, 2.0, 0.0), 15.0), ((2.0, 1.0, 0.0), 25.0)], frame)
    _ohif_3d_report(tmp_path, "3.dcm", "20240501",
                    [((3.0, 1.0, 1.0), 20.0), (far, 12.0), ((102.0, 2.0, 0.0), 10.0)], frame)
    read = read_sr_course(tmp_path, {"treatment_start": "2024-01-15", "radiotherapy_end": None, "immunotherapy": False})
    tps = read.course["timepoints"]
    sizes = [{t["lesion"]: t["long_axis_mm"] for t in tp["target"]} for tp in tps]
    assert sizes == [{"L1": 30.0, "L2": 20.0}, {"L1": 25.0, "L2": 15.0}, {"L1": 20.0, "L2": 10.0}]
    assert [len(tp["new_lesions"]) for tp in tps] == [0, 0, 1]
    assert tps[2]["new_lesions"][0]["long_axis_mm"] == 12.0
    assert sum("by position" in n for n in read.notes) == 4
    calls = [t.response for t in assess(course_from_dict(read.course), "recist").timepoints]
    assert calls == [None, "SD", "PD"]  # -20%: SD; then a new lesion: PD


CONTEXT = {"treatment_start": "2024-01-15", "radiotherapy_end": None, "immunotherapy": False}


def test_a_new_name_beside_a_lesion_the_report_no_longer_names_is_not_taken_for_a_new_lesion(tmp_path: Path) -> None:
    """'Liver 1' at baseline, 'liver lesion 1' 2 mm from it at follow-up and no 'Liver 1': renamed or new? Read as
    new it would be a progression that did not happen; the time point is not evaluated, saying how to resolve it."""
    frame = generate_uid()
    _ohif_3d_report(tmp_path, "1.dcm", "20240110", [((0.0, 0.0, 0.0), 30.0), ((100.0, 0.0, 0.0), 20.0)], frame,
                    labels=["Liver 1", "Lung 1"])
    _ohif_3d_report(tmp_path, "2.dcm", "20240301", [((2.0, 0.0, 0.0), 28.0), ((100.0, 1.0, 0.0), 19.0)], frame,
                    labels=["liver lesion 1", "Lung 1"])
    read = read_sr_course(tmp_path, CONTEXT)
    follow = read.course["timepoints"][1]
    assert follow["new_lesions"] == [] and all(t["long_axis_mm"] is None for t in follow["target"])
    reason = read.timepoint_notes["2024-03-01"]
    assert "'liver lesion 1'" in reason and "2.0 mm from Liver 1" in reason and "Name the measurement 'Liver 1'" in reason
    calls = [t.response for t in assess(course_from_dict(read.course), "recist").timepoints]
    assert calls == [None, "NE"]


def test_a_new_name_is_a_new_lesion_when_every_known_lesion_is_named_or_it_lies_far_from_the_missing_one(
        tmp_path: Path) -> None:
    frame = generate_uid()
    _ohif_3d_report(tmp_path, "1.dcm", "20240110", [((0.0, 0.0, 0.0), 30.0), ((100.0, 0.0, 0.0), 20.0)], frame,
                    labels=["Liver 1", "Lung 1"])
    # Every known lesion named: a new name 10 mm from Liver 1 is a new lesion.
    _ohif_3d_report(tmp_path, "2.dcm", "20240301", [((0.0, 0.0, 0.0), 30.0), ((100.0, 0.0, 0.0), 20.0),
                                                    ((10.0, 0.0, 0.0), 12.0)], frame,
                    labels=["Liver 1", "Lung 1", "Liver 2"])
    # 'Lung 1' not measured, and the new name lies 100 mm from it: a new lesion too.
    _ohif_3d_report(tmp_path, "3.dcm", "20240501", [((0.0, 0.0, 0.0), 30.0), ((100.0, 100.0, 0.0), 15.0)], frame,
                    labels=["Liver 1", "Bone 1"])
    read = read_sr_course(tmp_path, CONTEXT)
    tps = read.course["timepoints"]
    assert read.timepoint_notes == {}
    assert [[n["lesion"] for n in tp["new_lesions"]] for tp in tps] == [[], ["Liver 2"], ["Bone 1"]]
    calls = [t.response for t in assess(course_from_dict(read.course), "recist").timepoints]
    assert calls == [None, "PD", "PD"]


def test_a_new_name_with_no_position_to_compare_is_not_taken_for_a_new_lesion(lab_folder: Path) -> None:
    """Labelled lines without a frame to place them in: a report that drops a lesion's name and brings a new one
    cannot say which it is."""
    reports = sorted(lab_folder.rglob("*.dcm"))
    ds = pydicom.dcmread(reports[-1])
    renamed = []

    def rename(items) -> None:
        for item in items:
            if getattr(item, "ValueType", "") == "TEXT" and getattr(item, "TextValue", "") == "T1":
                item.TextValue = "Target one"
                renamed.append(item)
            rename(item.get("ContentSequence", []))

    rename(ds.ContentSequence)
    assert renamed, "the lab report's T1 was not found"
    ds.save_as(reports[-1])
    read = read_sr_course(lab_folder)
    date = read.course["timepoints"][-1]["date"]
    assert "'Target one', a name no earlier report uses, may be T1 renamed" in read.timepoint_notes[date]
    assert read.course["timepoints"][-1]["new_lesions"] == []


def test_excluded_findings_are_not_assessed_and_are_noted(lab_folder: Path) -> None:
    read = read_sr_course(lab_folder, exclude_findings=["T2"])
    assert all(t["lesion"] != "T2" for tp in read.course["timepoints"] for t in tp["target"] + tp["new_lesions"])
    assert any("T2 excluded" in n for n in read.notes)
