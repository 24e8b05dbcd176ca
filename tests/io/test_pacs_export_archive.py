"""The PACS-shaped export (sample_data/pacs_export.py): same bytes every build, every file parses and is in the
DICOMDIR, dciodvfy finds no error, and the SEGs and RTSTRUCTs hold what its truth.json says."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from tests.dicom_out.helpers import dciodvfy, require_tool

pytestmark = pytest.mark.sample_data

REPO = Path(__file__).resolve().parents[2]
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


def _load(name: str, path: Path):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pacs_export():
    return _load("tumor_response_pacs_export", REPO / "sample_data" / "pacs_export.py")


@pytest.fixture(scope="module")
def sample_generator():
    return _load("tumor_response_sample_generate_ref", REPO / "sample_data" / "generate.py")


@pytest.fixture(scope="module")
def builds(sample_root: Path, pacs_export, pacs_export_archive, tmp_path_factory) -> tuple[Path, Path, dict]:
    """The archive built twice: the session's build and one more, in one process (1 or 2 workers, the same bytes)."""
    first, truth = pacs_export_archive
    second = tmp_path_factory.mktemp("pacs_b") / "export"
    pacs_export.build_pacs_export(sample_root, second, jobs=1)
    return first, second, truth


@pytest.fixture(scope="module")
def archive(builds) -> Path:
    return builds[0]


@pytest.fixture(scope="module")
def truth(builds) -> dict:
    return builds[2]


@pytest.fixture(scope="module")
def headers(archive: Path) -> dict[str, pydicom.Dataset]:
    """Every DICOM file of the archive (not the DICOMDIR), fully parsed, by path relative to the root."""
    out = {}
    for p in sorted(archive.rglob("*")):
        if not p.is_file() or p.name == "DICOMDIR":
            continue
        with open(p, "rb") as fh:
            head = fh.read(132)
        if head[128:132] == b"DICM":
            out[p.relative_to(archive).as_posix()] = pydicom.dcmread(p)
    return out


def _series(study: dict, role: str) -> list[dict]:
    return [s for s in study["series"] if s["role"] == role]


def _studies(truth: dict):
    for patient in truth["patients"]:
        for study in patient["studies"]:
            yield patient, study


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_builds_are_byte_identical(builds) -> None:
    first, second, truth = builds
    a, b = _digests(first), _digests(second)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    assert json.loads((first / "truth.json").read_text()) == truth


def test_layout_is_pacs_like(archive: Path, truth: dict, headers: dict) -> None:
    files = [p.relative_to(archive).as_posix() for p in archive.rglob("*") if p.is_file()]
    assert {"DICOMDIR", "README.TXT", "AUTORUN.INF", "clinical.csv", "truth.json"} <= set(files)
    assert any(f.upper().endswith(".JPG") for f in files)
    names = [f.rsplit("/", 1)[-1] for f in headers]
    assert any(n.startswith("IM0000") for n in names) and any(len(n) == 8 and "." not in n for n in names)
    assert all("." not in n for n in names)  # DICOMDIR File IDs: A-Z, 0-9 and _ only (PS3.10)
    folders: dict[str, set[str]] = {}
    for rel, ds in headers.items():
        folders.setdefault(rel.rsplit("/", 1)[0], set()).add(str(ds.SeriesInstanceUID))
    assert max(len(v) for v in folders.values()) >= 2  # a folder holding several series
    assert len(truth["patients"]) == 2
    for patient in truth["patients"]:
        assert len(patient["studies"]) == 3
        assert [s["is_baseline"] for s in patient["studies"]].count(True) == 1
        assert patient["baseline_date"] <= patient["clinical"]["treatment_start"]


def test_every_dicom_file_parses_and_is_in_the_truth(archive: Path, truth: dict, headers: dict,
                                                     sample_root: Path) -> None:
    listed = {f for _, study in _studies(truth) for s in study["series"] for f in s["files"]}
    assert set(headers) == listed
    assert truth["n_dicom_files"] == len(headers)
    non_dicom = {p.relative_to(archive).as_posix() for p in archive.rglob("*") if p.is_file()} - set(headers)
    assert non_dicom == set(truth["non_dicom_files"]) | {"DICOMDIR"}
    for rel, ds in headers.items():
        if str(ds.SOPClassUID) in (SEG_CLASS, RTSTRUCT_CLASS):
            continue
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        assert len(ds.PixelData) == ds.Rows * ds.Columns * ds.BitsAllocated // 8 * frames, rel
    # Every UID is new: none of the sample data's study, series or frame of reference UIDs is reused.
    sample_uids = set()
    for p in sample_root.glob("*/truth.json"):
        for tp in json.loads(p.read_text())["timepoints"]:
            sample_uids |= {tp["study_instance_uid"], tp["series_instance_uid"], tp["frame_of_reference_uid"]}
    ours = {str(ds.StudyInstanceUID) for ds in headers.values()} | {str(ds.SeriesInstanceUID) for ds in headers.values()}
    assert not ours & sample_uids


def test_dicomdir_references_every_dicom_file(archive: Path, headers: dict) -> None:
    from pydicom.fileset import FileSet

    fs = FileSet(pydicom.dcmread(archive / "DICOMDIR"))
    referenced = {}
    for instance in fs:
        rel = Path(instance.path).resolve().relative_to(archive.resolve()).as_posix()
        referenced[rel] = str(instance.ReferencedSOPInstanceUIDInFile)
    assert set(referenced) == set(headers)
    assert all(referenced[rel] == str(ds.SOPInstanceUID) for rel, ds in headers.items())


def test_dciodvfy_finds_no_error(archive: Path, truth: dict) -> None:
    binary = require_tool("dciodvfy", "dicom3tools")
    checked, errors, warnings = 0, {}, set()
    for _, study in _studies(truth):
        for series in study["series"]:
            # Every segmentation object, and the first file of every image series (the others are alike).
            for rel in series["files"] if series["role"] in ("seg", "rtstruct") else series["files"][:1]:
                result = dciodvfy(binary, archive / rel)
                checked += 1
                if result.errors:
                    errors[rel] = result.errors
                warnings |= {f"{series['role']}: {w}" for w in result.warnings}
    result = dciodvfy(binary, archive / "DICOMDIR")  # the media directory too
    if result.errors:
        errors["DICOMDIR"] = result.errors
    print(f"dciodvfy: {checked + 1} files; warnings:", json.dumps(sorted(warnings), indent=1))
    assert errors == {}


def test_segs_read_by_highdicom_as_the_truth_says(archive: Path, truth: dict) -> None:
    import highdicom as hd

    n_segs = 0
    for patient, study in _studies(truth):
        segs = [s for s in study["segmentations"] if s["kind"] == "SEG"]
        if patient["modality"] != "CT":
            assert not segs
            continue
        measure = _series(study, "measure")[0]
        for s in segs:
            seg = hd.seg.segread(archive / s["path"])
            n_segs += 1
            assert str(seg.SOPInstanceUID) == s["sop_uid"]
            assert f"{seg.ContentDate}{seg.ContentTime}"[:14] == s["content_datetime"]
            assert [str(r.SeriesInstanceUID) for r in seg.ReferencedSeriesSequence] == [measure["series_uid"]]
            assert s["referenced_series_uid"] == measure["series_uid"]
            for item in s["items"]:
                desc = seg.get_segment_description(item["number"])
                assert desc.segment_label == item["name"]
                category = desc.segmented_property_category.meaning
                assert (category == "Morphologically Abnormal Structure") == item["is_lesion"], item
            volume = seg.get_volume(combine_segments=False, allow_missing_positions=True)
            counts = np.asarray(volume.array).reshape(-1, len(s["items"])).sum(axis=0)
            assert counts.tolist() == [i["voxels"] for i in s["items"]]
        newest = [s for s in segs if s["is_newest"]]
        assert len(newest) == 1 and newest[0]["content_datetime"] == max(s["content_datetime"] for s in segs)
        (lesion,) = study["lesions"]
        assert lesion["segmentation_sop_uid"] == newest[0]["sop_uid"]
        if len(segs) == 2:  # the second study: an older and a revised read of the same series
            old, new = sorted(segs, key=lambda s: s["content_datetime"])
            assert old["referenced_series_uid"] == new["referenced_series_uid"]
            assert new["items"][0]["voxels"] > old["items"][0]["voxels"]
            assert old["items"][0]["long_axis_mm"] == lesion["sample_mask_long_axis_mm"]
    assert n_segs == 4


def test_ct_lesion_long_axis_is_that_of_the_seg_as_written(archive: Path, truth: dict, sample_generator) -> None:
    """The revised read's L1, read back with the project's reader onto the 5 mm series, measured with the
    sample generator's own (brute-force) long_axis_mm."""
    from imaging.io import read_label_map, read_series

    patient = truth["patients"][0]
    study = patient["studies"][1]
    (lesion,) = study["lesions"]
    seg = next(s for s in study["segmentations"] if s["sop_uid"] == lesion["segmentation_sop_uid"])
    image = read_series([archive / f for f in _series(study, "measure")[0]["files"]]).image
    labels = sitk.GetArrayFromImage(read_label_map(archive / seg["path"], image).image)
    grid = sample_generator.Grid(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    l1 = (labels == 1).astype(np.uint8)
    assert int(l1.sum()) == lesion["voxels"]
    assert sample_generator.long_axis_mm(l1, grid) == pytest.approx(lesion["long_axis_mm"], abs=1e-3)


def test_rtstructs_reference_the_t1c_and_edema_contains_gtv(archive: Path, truth: dict, headers: dict,
                                                            sample_generator) -> None:
    from imaging.io import read_label_map, read_series

    n = 0
    for patient, study in _studies(truth):
        structs = [s for s in study["segmentations"] if s["kind"] == "RTSTRUCT"]
        if patient["modality"] != "MR":
            assert not structs
            continue
        (rt,) = structs
        t1c = _series(study, "measure")[0]
        assert "Gadobutrol" in str(headers[t1c["files"][0]].ContrastBolusAgent)
        t1c_sops = {str(headers[f].SOPInstanceUID) for f in t1c["files"]}
        ds = headers[rt["path"]]
        assert str(ds.SOPInstanceUID) == rt["sop_uid"]
        ref_series = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence
        assert [str(r.SeriesInstanceUID) for r in ref_series] == [t1c["series_uid"]] == [rt["referenced_series_uid"]]
        assert {str(i.ReferencedSOPInstanceUID) for i in ref_series[0].ContourImageSequence} == t1c_sops
        in_contours = {str(i.ReferencedSOPInstanceUID) for roi in ds.ROIContourSequence for c in roi.ContourSequence
                       for i in c.ContourImageSequence}
        assert in_contours and in_contours <= t1c_sops
        interpreted = {int(o.ReferencedROINumber): str(o.RTROIInterpretedType) for o in ds.RTROIObservationsSequence}
        names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
        assert [(names[i["number"]], interpreted[i["number"]]) for i in rt["items"]] == \
            [(i["name"], i["interpreted_type"]) for i in rt["items"]]
        assert [i["name"] for i in rt["items"] if i["is_lesion"]] == ["GTV"]

        image = read_series([archive / f for f in t1c["files"]]).image
        masks = {i["name"]: sitk.GetArrayFromImage(read_label_map(archive / rt["path"], image, roi_names=[i["name"]]).image) > 0
                 for i in rt["items"]}
        gtv, edema = masks["GTV"], masks["Edema"]
        assert gtv.any() and (gtv <= edema).all() and edema.sum() > 2 * gtv.sum()
        for name in ("Brainstem", "Eyes"):
            assert masks[name].any() and not (masks[name] & edema).any()
        assert [int(m.sum()) for m in masks.values()] == [i["voxels"] for i in rt["items"]]
        (lesion,) = study["lesions"]
        grid = sample_generator.Grid(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())
        measured = sample_generator.long_axis_mm(gtv.astype(np.uint8), grid)
        assert measured == pytest.approx(lesion["long_axis_mm"], abs=1e-3)
        assert abs(measured - lesion["sample_mask_long_axis_mm"]) < 0.5
        n += 1
    assert n == 3
