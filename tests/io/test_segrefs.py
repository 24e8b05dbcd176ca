"""Segmentation objects of an archive: what a SEG / RTSTRUCT references, and which series it is linked to.

The archive is written with known truth: a CT study as a PACS exports it (localizer,
5 mm soft-tissue and 1.25 mm lung reconstructions, a MIP, a dose screen capture)
with SEGs written by highdicom from the 5 mm series, and RTSTRUCTs written by hand
with pydicom (references put in, or left out, on purpose).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from imaging.io import (
    MaskError,
    SegmentationRefError,
    group_series,
    link_segmentations,
    read_segmentation_ref,
    scan_archive,
)
from imaging.io.segrefs import segmentation_ref_from_dict
from tests.io.io_factory import read_sorted, rtstruct, save, volume_slices, write_datasets

hd = pytest.importorskip("highdicom")

STUDY = "1.2.826.0.1.3680043.10.999.1"
FOR_CT = "1.2.826.0.1.3680043.10.999.2"
UIDS = {
    "localizer": "1.2.826.0.1.3680043.10.999.10",
    "soft5": "1.2.826.0.1.3680043.10.999.11",
    "lung125": "1.2.826.0.1.3680043.10.999.12",
    "mip": "1.2.826.0.1.3680043.10.999.13",
    "dose": "1.2.826.0.1.3680043.10.999.14",
}
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
CORONAL = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])
SAGITTAL = np.array([[0, 0, 1.0], [1.0, 0, 0], [0, 1.0, 0]])


def _series(name: str, n: int, thickness: float, extra: dict, *, direction=None, study=STUDY, size=16, seed=0):
    hu = np.random.default_rng(seed).integers(-200, 200, size=(n, size, size)).astype(np.int16)
    base = {"FrameOfReferenceUID": FOR_CT, "SliceThickness": f"{thickness:g}", "PatientID": "P1"}
    return volume_slices(hu, (0.8, 0.8, thickness), (-6.0, -6.0, 0.0), np.eye(3) if direction is None else direction,
                         series_uid=UIDS.get(name, name), study_uid=study, extra={**base, **extra})


def write_ct_study(root: Path) -> dict[str, list[Path]]:
    """Localizer (coronal + sagittal), 5 mm B30f, 1.25 mm B70f, MIP (DERIVED\\SECONDARY), single-slice dose screen."""
    loc = _series("localizer", 1, 1.0, {"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"], "SeriesNumber": 1,
                                         "SeriesDescription": "Topogram 0.6 T20f", "ConvolutionKernel": "T20f"},
                  direction=CORONAL)
    loc += _series("localizer", 1, 1.0, {"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"], "SeriesNumber": 1,
                                          "SeriesDescription": "Topogram 0.6 T20f", "ConvolutionKernel": "T20f"},
                   direction=SAGITTAL, seed=1)
    common = {"ContrastBolusAgent": "Iomeron 400", "BodyPartExamined": "ABDOMEN"}
    soft = _series("soft5", 12, 5.0, {**common, "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"], "SeriesNumber": 2,
                                      "SeriesDescription": "Abdomen 5.0 B30f", "ConvolutionKernel": "B30f"})
    lung = _series("lung125", 48, 1.25, {**common, "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"], "SeriesNumber": 3,
                                         "SeriesDescription": "Thorax 1.25 B70f", "ConvolutionKernel": "B70f"})
    mip = _series("mip", 12, 5.0, {**common, "ImageType": ["DERIVED", "SECONDARY", "AXIAL", "MIP"], "SeriesNumber": 4,
                                   "SeriesDescription": "MIP 10 mm", "ConvolutionKernel": "B30f"})
    dose = _series("dose", 1, 1.0, {"ImageType": ["DERIVED", "SECONDARY", "OTHER"], "SeriesNumber": 501,
                                    "SeriesDescription": "Patient Protocol", "SOPClassUID": SC_STORAGE})
    out = {}
    for name, datasets in (("localizer", loc), ("soft5", soft), ("lung125", lung), ("mip", mip), ("dose", dose)):
        out[name] = write_datasets(root / "CT" / name, datasets, seed=len(out))
    return out


def make_seg(source_paths: list[Path], *, when: tuple[str, str] = ("20240110", "101500"), labels=("liver lesion",),
             series_description: str = "Reader 1") -> Dataset:
    """A binary SEG of highdicom on the given slices: one box per segment."""
    from pydicom.sr.codedict import codes

    sources = sorted(read_sorted(source_paths), key=lambda ds: float(ds.ImagePositionPatient[2]))
    pixels = np.zeros((len(sources), int(sources[0].Rows), int(sources[0].Columns)), dtype=np.uint8)
    for k in range(len(labels)):
        pixels[2 + k : 4 + k, 3 + 4 * k : 6 + 4 * k, 3:7] = k + 1
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=k + 1, segment_label=name, segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Neoplasm, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            anatomic_regions=[codes.SCT.Liver],
        )
        for k, name in enumerate(labels)
    ]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=90, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="test", manufacturer_model_name="test", software_versions="1",
        device_serial_number="1", series_description=series_description,
    )
    seg.ContentDate, seg.ContentTime = when
    return seg


def make_rtstruct(image_paths: list[Path], *, series_ref: bool = True, contour_refs: bool = True,
                  frame_ref: bool = True, for_uid: str | None = None) -> Dataset:
    """An RTSTRUCT by hand on the given slices: one GTV contour on one slice, references as asked."""
    refs = [pydicom.dcmread(p, stop_before_pixels=True) for p in image_paths]
    refs.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    target = refs[len(refs) // 2]
    z = float(target.ImagePositionPatient[2])
    square = np.array([[-2.0, -2.0, z], [2.0, -2.0, z], [2.0, 2.0, z], [-2.0, 2.0, z]])
    ds = rtstruct(refs, [(1, "GTV", [square]), (2, "Brainstem", [square * [0.5, 0.5, 1.0]])])
    ds.StructureSetDate, ds.StructureSetTime = "20240111", "083000"
    ds.SeriesDescription = "RT plan structures"
    obs = []
    for number, kind in ((1, "GTV"), (2, "ORGAN")):
        o = Dataset()
        o.ObservationNumber, o.ReferencedROINumber, o.RTROIInterpretedType, o.ROIInterpreter = number, number, kind, ""
        obs.append(o)
    ds.RTROIObservationsSequence = DicomSequence(obs)
    if for_uid is not None:
        ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = for_uid
        for roi in ds.StructureSetROISequence:
            roi.ReferencedFrameOfReferenceUID = for_uid
    if not frame_ref:
        for roi in ds.StructureSetROISequence:
            del roi.ReferencedFrameOfReferenceUID
        del ds.ReferencedFrameOfReferenceSequence
    if series_ref:
        series = Dataset()
        series.SeriesInstanceUID = refs[0].SeriesInstanceUID
        images = []
        for r in refs:
            item = Dataset()
            item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = r.SOPClassUID, r.SOPInstanceUID
            images.append(item)
        series.ContourImageSequence = DicomSequence(images)
        study = Dataset()
        study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
        study.ReferencedSOPInstanceUID = refs[0].StudyInstanceUID
        study.RTReferencedSeriesSequence = DicomSequence([series])
        ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence = DicomSequence([study])
    if contour_refs:
        for rc in ds.ROIContourSequence:
            for contour in rc.ContourSequence:
                item = Dataset()
                item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = target.SOPClassUID, target.SOPInstanceUID
                contour.ContourImageSequence = DicomSequence([item])
    return ds


def _crawl(root: Path):
    scan = scan_archive(root, workers=1)
    volumes = group_series(scan.headers)
    return scan, volumes


# ---------------------------------------------------------------------------------------------
# reading


def test_seg_reference_fields_and_segments(tmp_path):
    paths = write_ct_study(tmp_path)
    seg = save(make_seg(paths["soft5"], labels=("lesion A", "lesion B")), tmp_path / "SEG" / "seg.dcm")
    ref = read_segmentation_ref(seg)
    truth = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths["soft5"]}
    assert ref.kind == "SEG" and ref.path == seg
    assert ref.patient_id == "P1" and ref.study_uid == STUDY
    assert ref.referenced_series_uids == (UIDS["soft5"],)
    assert ref.referenced_sop_uids == truth
    assert ref.frame_of_reference_uid == FOR_CT
    assert ref.content_datetime == "20240110101500"
    assert ref.description == "Reader 1"
    assert [(i.number, i.name, i.kind, i.category, i.organ) for i in ref.items] == [
        (1, "lesion A", "Neoplasm", "Morphologically Abnormal Structure", "Liver"),
        (2, "lesion B", "Neoplasm", "Morphologically Abnormal Structure", "Liver"),
    ]
    assert ref.items[0].property_code == ("SCT", "108369006")
    assert segmentation_ref_from_dict(ref.to_dict()) == ref


def test_rtstruct_reference_fields_and_rois(tmp_path):
    paths = write_ct_study(tmp_path)
    rt = save(make_rtstruct(paths["soft5"]), tmp_path / "RT" / "rt.dcm")
    ref = read_segmentation_ref(rt)
    assert ref.kind == "RTSTRUCT"
    assert ref.referenced_series_uids == (UIDS["soft5"],)
    assert len(ref.referenced_sop_uids) == 12
    assert ref.frame_of_reference_uid == FOR_CT
    assert ref.content_datetime == "20240111083000"  # StructureSetDate/Time
    assert [(i.number, i.name, i.kind, i.category) for i in ref.items] == [(1, "GTV", "GTV", ""), (2, "Brainstem", "ORGAN", "")]
    assert ref.description == "RT plan structures"


def test_an_unreadable_segmentation_names_the_file(tmp_path):
    paths = write_ct_study(tmp_path)
    with pytest.raises(SegmentationRefError, match="not a DICOM SEG or RTSTRUCT") as exc:
        read_segmentation_ref(paths["soft5"][0])
    assert str(paths["soft5"][0]) in str(exc.value) and isinstance(exc.value, MaskError)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\x00" * 10)
    with pytest.raises(SegmentationRefError, match=str(junk)):
        read_segmentation_ref(junk)


# ---------------------------------------------------------------------------------------------
# crawl + link


def test_crawl_reads_segmentations_and_links_them(tmp_path):
    paths = write_ct_study(tmp_path)
    old = save(make_seg(paths["soft5"], when=("20240105", "090000"), series_description="first read"), tmp_path / "SEG" / "a.dcm")
    new = save(make_seg(paths["soft5"], when=("20240110", "101500"), series_description="second read"), tmp_path / "SEG" / "b.dcm")
    scan, volumes = _crawl(tmp_path)
    assert sorted(s.path for s in scan.segmentations) == [old, new]
    # Still accounted for among the non-image files, but not as "skipped" in what users read.
    assert {p for p, _ in scan.skipped} >= {old, new} and all(p not in (old, new) for p, _ in scan.skipped_other)
    assert all("segmentation" in r for p, r in scan.skipped if p in (old, new))
    links = link_segmentations(volumes, scan.segmentations, scan.headers)
    assert [s.path for s in links.by_series[UIDS["soft5"]]] == [new, old]  # newest first
    assert links.newest(UIDS["soft5"]).description == "second read"
    assert set(links.how.values()) == {"ReferencedSeriesSequence"} and not links.unlinked
    assert list(links.by_series) == [UIDS["soft5"]]
    # Without the headers, the SOP Instance UIDs kept in each volume do the same.
    assert link_segmentations(volumes, scan.segmentations).by_series == links.by_series


def test_seg_with_references_only_per_frame_is_linked_by_its_source_images(tmp_path):
    paths = write_ct_study(tmp_path)
    ds = make_seg(paths["soft5"])
    del ds.ReferencedSeriesSequence
    if "SourceImageSequence" in ds:
        del ds.SourceImageSequence
    assert all("DerivationImageSequence" in f for f in ds.PerFrameFunctionalGroupsSequence)
    seg = save(ds, tmp_path / "SEG" / "perframe.dcm")
    scan, volumes = _crawl(tmp_path)
    (ref,) = scan.segmentations
    # highdicom leaves out empty frames: the two frames holding the box reference slices 2 and 3 (by position).
    by_z = sorted((pydicom.dcmread(p, stop_before_pixels=True) for p in paths["soft5"]), key=lambda d: float(d.ImagePositionPatient[2]))
    assert ref.referenced_series_uids == ()
    assert ref.referenced_sop_uids == {str(by_z[2].SOPInstanceUID), str(by_z[3].SOPInstanceUID)}
    links = link_segmentations(volumes, scan.segmentations, scan.headers)
    assert links.how[ref.sop_uid] == "source images"
    assert links.by_series == {UIDS["soft5"]: [ref]} and ref.path == seg


def test_rtstruct_linked_only_through_contour_image_sequence(tmp_path):
    paths = write_ct_study(tmp_path)
    save(make_rtstruct(paths["soft5"], series_ref=False, contour_refs=True), tmp_path / "RT" / "rt.dcm")
    scan, volumes = _crawl(tmp_path)
    (ref,) = scan.segmentations
    assert ref.referenced_series_uids == () and len(ref.referenced_sop_uids) == 1
    links = link_segmentations(volumes, scan.segmentations, scan.headers)
    assert links.how[ref.sop_uid] == "ContourImageSequence"
    assert list(links.by_series) == [UIDS["soft5"]]


def test_rtstruct_through_its_referenced_series(tmp_path):
    paths = write_ct_study(tmp_path)
    save(make_rtstruct(paths["lung125"], contour_refs=False), tmp_path / "RT" / "rt.dcm")
    scan, volumes = _crawl(tmp_path)
    links = link_segmentations(volumes, scan.segmentations, scan.headers)
    assert list(links.how.values()) == ["RTReferencedSeriesSequence"] and list(links.by_series) == [UIDS["lung125"]]


def _mr_series(name: str, for_uid: str, number: int, description: str, seed: int) -> list:
    hu = np.random.default_rng(seed).integers(0, 500, size=(12, 16, 16)).astype(np.int16)
    return volume_slices(hu, (0.9, 0.9, 5.0), (0, 0, 0), np.eye(3), series_uid=name, study_uid="1.2.826.0.1.3680043.10.999.50",
                         modality="MR", intercept=0.0, extra={"FrameOfReferenceUID": for_uid, "SeriesNumber": number,
                                                               "SeriesDescription": description, "PatientID": "P2",
                                                               "ImageType": ["ORIGINAL", "PRIMARY", "M"]})


def test_frame_of_reference_fallback_with_one_candidate(tmp_path):
    t1 = _mr_series("1.2.826.0.1.3680043.10.999.51", "1.2.826.0.1.3680043.10.999.61", 3, "T1 AX POST", 1)
    t2 = _mr_series("1.2.826.0.1.3680043.10.999.52", "1.2.826.0.1.3680043.10.999.62", 4, "T2 AX", 2)
    t1_paths = write_datasets(tmp_path / "MR" / "t1", t1)
    write_datasets(tmp_path / "MR" / "t2", t2, seed=1)
    save(make_rtstruct(t1_paths, series_ref=False, contour_refs=False), tmp_path / "RT" / "rt.dcm")
    scan, volumes = _crawl(tmp_path)
    (ref,) = scan.segmentations
    assert ref.referenced_series_uids == () and not ref.referenced_sop_uids
    links = link_segmentations(volumes, scan.segmentations, scan.headers)
    assert links.how[ref.sop_uid] == "FrameOfReferenceUID"
    assert list(links.by_series) == ["1.2.826.0.1.3680043.10.999.51"]


def test_frame_of_reference_fallback_with_two_candidates_is_unlinked(tmp_path):
    shared = "1.2.826.0.1.3680043.10.999.61"
    t1 = _mr_series("1.2.826.0.1.3680043.10.999.51", shared, 3, "T1 AX POST", 1)
    t2 = _mr_series("1.2.826.0.1.3680043.10.999.52", shared, 4, "T2 AX", 2)
    t1_paths = write_datasets(tmp_path / "MR" / "t1", t1)
    write_datasets(tmp_path / "MR" / "t2", t2, seed=1)
    save(make_rtstruct(t1_paths, series_ref=False, contour_refs=False), tmp_path / "RT" / "rt.dcm")
    scan, volumes = _crawl(tmp_path)
    links = link_segmentations(volumes, scan.segmentations, scan.headers)
    assert not links.by_series and not links.how
    ((ref, reason),) = links.unlinked
    assert "2 image series" in reason and "FrameOfReferenceUID" in reason
    assert "T1 AX POST" in reason and "T2 AX" in reason  # names both candidates


def test_references_to_series_absent_from_the_archive_leave_it_unlinked(tmp_path):
    paths = write_ct_study(tmp_path)
    ds = make_rtstruct(paths["soft5"])
    gone = generate_uid()
    rs = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    rs.SeriesInstanceUID = gone
    for item in rs.ContourImageSequence:
        item.ReferencedSOPInstanceUID = generate_uid()
    for rc in ds.ROIContourSequence:
        for contour in rc.ContourSequence:
            contour.ContourImageSequence[0].ReferencedSOPInstanceUID = generate_uid()
    save(ds, tmp_path / "RT" / "rt.dcm")
    scan, volumes = _crawl(tmp_path)
    links = link_segmentations(volumes, scan.segmentations, scan.headers)
    ((_, reason),) = links.unlinked
    assert gone in reason and "none of which is an image series of the archive" in reason
    # The FrameOfReferenceUID is not used when the object names its series: FOR_CT is shared, but it stays unlinked.
    assert not links.by_series


def test_a_copy_of_a_segmentation_is_linked_once(tmp_path):
    paths = write_ct_study(tmp_path)
    seg = make_seg(paths["soft5"])
    a = save(seg, tmp_path / "SEG" / "a.dcm")
    b = save(seg, tmp_path / "SEG" / "b.dcm")
    scan, volumes = _crawl(tmp_path)
    links = link_segmentations(volumes, list(reversed(scan.segmentations)), scan.headers)
    assert [s.path for s in links.by_series[UIDS["soft5"]]] == [a]
    ((dup, reason),) = links.unlinked
    assert dup.path == b and "duplicate" in reason and str(a) in reason


def test_linking_is_independent_of_input_order(tmp_path):
    """Linking is a pure function: shuffled inputs, same result."""
    paths = write_ct_study(tmp_path)
    for k, day in enumerate(("20240103", "20240109", "20240106")):
        save(make_seg(paths["soft5"], when=(day, "120000")), tmp_path / "SEG" / f"s{k}.dcm")
    scan, volumes = _crawl(tmp_path)
    a = link_segmentations(volumes, scan.segmentations, scan.headers)
    b = link_segmentations(list(reversed(volumes)), list(reversed(scan.segmentations)), list(reversed(scan.headers)))
    assert a == b
    assert [s.content_datetime for s in a.by_series[UIDS["soft5"]]] == ["20240109120000", "20240106120000", "20240103120000"]


def test_a_segmentation_of_another_patient_is_not_linked_to_these_images(tmp_path):
    """The same series UIDs under another PatientID (a merged or re-identified export): never attached."""
    files = write_ct_study(tmp_path)
    seg = make_seg(files["soft5"])
    seg.PatientID = "P2"
    save(seg, tmp_path / "seg.dcm")
    scan, volumes = _crawl(tmp_path)
    links = link_segmentations(volumes, scan.segmentations, headers=scan.headers)
    assert links.by_series == {}
    ((ref, why),) = links.unlinked
    assert "patient P1" in why and "patient P2" in why
