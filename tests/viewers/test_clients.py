"""The viewer harness itself, on a small known case independent of our SR writer.

Three CT slice headers (64 x 64, PixelSpacing 0.7 \\ 0.9 mm: non-square pixels, an oblique orientation); an SR
written the way OHIF v3 saves one, read back the way OHIF v3 (and v2) rehydrates one; PixelMed and dciodvfy
on that SR (what OHIF itself triggers, printed); dcmqi on highdicom-built TID 1500 SR and SEG.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from tests.dicom_out.helpers import dciodvfy, require_tool
from tests.viewers import clients
from tests.viewers.clients import (  # noqa: F401  (node_harness: the session fixture that runs `npm ci`)
    node_harness,
    ohif_read,
    ohif_write,
    pixelmed_validate,
    segimage2itkimage,
    tid1500reader,
)

ROW_SPACING, COLUMN_SPACING = 0.7, 0.9  # PixelSpacing: between rows (down a column), between columns (along a row)
SLICE_GAP = 2.5
ROWS = COLUMNS = 64


def _rotation(axis: str, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


@dataclass(frozen=True)
class Series:
    files: tuple[Path, ...]
    sops: tuple[str, ...]
    origins: tuple[np.ndarray, ...]
    row_cosines: np.ndarray  # along a row: column index grows
    column_cosines: np.ndarray  # down a column: row index grows

    def world(self, k: int, column: float, row: float) -> list[float]:
        """LPS of pixel (column, row) of slice k, pixel centres at integers (DICOM: IPP is the centre of (0, 0))."""
        point = self.origins[k] + column * COLUMN_SPACING * self.row_cosines + row * ROW_SPACING * self.column_cosines
        return [float(v) for v in point]


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> Series:
    folder = tmp_path_factory.mktemp("ct")
    rotation = _rotation("z", 20) @ _rotation("x", 15)
    row_cosines, column_cosines = rotation[:, 0], rotation[:, 1]
    normal = np.cross(row_cosines, column_cosines)
    study, series_uid, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    files, sops, origins = [], [], []
    for k in range(3):
        origin = np.array([-20.0, -30.0, 40.0]) + k * SLICE_GAP * normal
        sop = generate_uid()
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Harness^Test", "H001", "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series_uid, frame_of_reference
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID, ds.ReferringPhysicianName = "20240102", "101010", "A1", "1", ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = "CT", 1, k + 1, "tumor-response tests"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in origin]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row_cosines, *column_cosines)]
        ds.PixelSpacing = [str(ROW_SPACING), str(COLUMN_SPACING)]
        ds.SliceThickness = str(SLICE_GAP)
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = ROWS, COLUMNS, 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
        ds.PixelData = np.zeros((ROWS, COLUMNS), np.int16).tobytes()
        path = folder / f"ct{k}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        files.append(path)
        sops.append(sop)
        origins.append(np.array([float(v) for v in ds.ImagePositionPatient]))
    return Series(tuple(files), tuple(sops), tuple(origins), row_cosines, column_cosines)


def _annotations(series: Series) -> list[dict]:
    """Two Bidirectional (one labelled, one not) and one Length, each on its own slice."""
    w = series.world
    return [
        {"tool": "Bidirectional", "image": series.sops[1], "label": "T1", "length": None, "width": None,
         "points_lps": [w(1, 10, 20), w(1, 40, 30), w(1, 24, 12), w(1, 27, 36)]},
        {"tool": "Bidirectional", "image": series.sops[2], "label": None, "length": None, "width": None,
         "points_lps": [w(2, 5, 5), w(2, 30, 50), w(2, 20, 20), w(2, 14, 30)]},
        {"tool": "Length", "image": series.sops[0], "label": "L1", "length": None, "width": None,
         "points_lps": [w(0, 0, 0), w(0, 60, 50)]},
    ]


def _lengths(points: list[list[float]]) -> tuple[float, ...]:
    p = np.asarray(points)
    return tuple(float(np.linalg.norm(p[i] - p[i + 1])) for i in range(0, len(p), 2))


@pytest.fixture(scope="module")
def ohif_sr(series: Series, tmp_path_factory, node_harness) -> tuple[Path, list[dict]]:  # noqa: F811 (the fixture)
    spec = {"images": list(series.files), "annotations": _annotations(series),
            "options": {"SeriesDescription": "OHIF harness", "SeriesNumber": 99}}
    out = ohif_write(spec, tmp_path_factory.mktemp("ohif") / "ohif_sr.dcm")
    return out, spec["annotations"]


def _scoord_items(ds: Dataset):
    """(tracking identifier, NUM concept, SCOORD item) of every SCOORD under a NUM of a measurement group."""
    for container in ds.ContentSequence:
        if container.ConceptNameCodeSequence[0].CodeMeaning != "Imaging Measurements":
            continue
        for group in container.ContentSequence:
            tracking = next(i.TextValue for i in group.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "112039")
            for item in group.ContentSequence:
                if item.ValueType == "NUM":
                    for child in item.get("ContentSequence", []):
                        if child.ValueType == "SCOORD":
                            yield tracking, item.ConceptNameCodeSequence[0].CodeMeaning, child


def _scoords(sr: Path) -> dict[str, list[float]]:
    """SCOORD GraphicData of each referenced image, in content order (Long Axis then Short Axis)."""
    out: dict[str, list[float]] = {}
    for _, _, item in _scoord_items(pydicom.dcmread(sr)):
        sop = item.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        out.setdefault(sop, []).extend(float(v) for v in item.GraphicData)
    return out


def test_ohif_write_then_read_gives_the_points_back(series: Series, ohif_sr):
    sr, annotations = ohif_sr
    measurements = ohif_read(sr, list(series.files))
    print("ohif_read:", measurements)
    assert len(measurements) == len(annotations)
    by_image = {m["referencedSOPInstanceUID"]: m for m in measurements}
    assert set(by_image) == {a["image"] for a in annotations}, "each measurement back on its own slice"
    for annotation in annotations:
        got = by_image[annotation["image"]]
        assert got["toolType"] == annotation["tool"]
        assert got["frameNumber"] == 1
        assert got["referencedImageId"] == f"dicomfile:{annotation['image']}"
        assert got["trackingIdentifier"] == f"Cornerstone3DTools@^0.1.0:{annotation['tool']}"
        assert got["rehydratable"] is True
        assert got["trackingUniqueIdentifier"]
        np.testing.assert_allclose(got["points"], annotation["points_lps"], atol=1e-3, rtol=0)
        lengths = _lengths(annotation["points_lps"])
        assert got["unit"] == "mm"
        assert got["length"] == pytest.approx(max(lengths), abs=1e-9)
        if annotation["tool"] == "Bidirectional":
            assert got["width"] == pytest.approx(min(lengths), abs=1e-9)
        else:
            assert got["width"] is None
        assert got["label"] == annotation["label"]
        # OHIF v3 writes a label as a TEXT Comment (DCM 121106) in the group and reads it back from there.
        assert got["labelSource"] == ("comment" if annotation["label"] else None)
        assert got["finding"] is None and got["findingSites"] == []


def test_ohif_scoord_pairs_row_cosines_with_pixel_spacing_0(series: Series, ohif_sr):
    """What OHIF writes in SCOORD, and what it makes of SCOORD written per DICOM, with non-square pixels.

    cornerstone3D's worldToImageCoords/imageToWorldCoords (core 5.6.8) step along the row cosines (column index)
    by rowPixelSpacing = PixelSpacing[0] and down the column cosines by PixelSpacing[1], while DICOM (and
    cornerstone's own renderer) pair the row direction with PixelSpacing[1]: cornerstonejs/cornerstone3D#2758.
    The half pixel is right: SCOORD (0, 0) is the top-left corner of the top-left pixel, IPP is at (0.5, 0.5).
    OHIF reads its own SR back exactly (the previous test); an SR with DICOM's SCOORD lands elsewhere in OHIF."""
    sr, annotations = ohif_sr
    written = _scoords(sr)
    origins = {sop: series.origins[k] for k, sop in enumerate(series.sops)}

    def scoord(image: str, points: list[list[float]], along_row: float, down_column: float) -> list[float]:
        offsets = np.asarray(points) - origins[image]
        x = offsets @ series.row_cosines / along_row + 0.5
        y = offsets @ series.column_cosines / down_column + 0.5
        return [float(v) for pair in zip(x, y) for v in pair]

    worst = 0.0
    for annotation in annotations:
        image, points = annotation["image"], annotation["points_lps"]
        np.testing.assert_allclose(written[image], scoord(image, points, ROW_SPACING, COLUMN_SPACING), atol=1e-3)
        worst = max(worst, float(np.max(np.abs(np.asarray(written[image]) - scoord(image, points, COLUMN_SPACING, ROW_SPACING)))))
    print(f"OHIF's SCOORD and DICOM's for the same points: up to {worst:.3f} pixels apart")
    assert worst > 1.0

    # The pixel-centre convention on its own: the Length starts at the centre of pixel (0, 0), i.e. at IPP.
    length = next(a for a in annotations if a["tool"] == "Length")
    assert written[length["image"]][:2] == pytest.approx([0.5, 0.5], abs=1e-4)

    # The same SR with DICOM's SCOORD (as a correct writer puts them): where OHIF puts the points.
    ds = pydicom.dcmread(sr)
    correct = {a["image"]: scoord(a["image"], a["points_lps"], COLUMN_SPACING, ROW_SPACING) for a in annotations}
    used = {sop: 0 for sop in correct}
    for _, _, item in _scoord_items(ds):
        sop = item.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        n = len(item.GraphicData)
        item.GraphicData = correct[sop][used[sop]:used[sop] + n]
        used[sop] += n
    dicom_sr = sr.with_name("dicom_scoord_sr.dcm")
    ds.save_as(dicom_sr)
    read = {m["referencedSOPInstanceUID"]: m for m in ohif_read(dicom_sr, list(series.files))}
    shifts = [float(np.max(np.linalg.norm(np.asarray(read[a["image"]]["points"]) - np.asarray(a["points_lps"]), axis=1)))
              for a in annotations]
    print("OHIF's placement of DICOM-correct SCOORD (0.7 x 0.9 mm pixels), largest shift per measurement, mm:",
          [round(s, 2) for s in shifts])
    assert max(shifts) > 1.0
    # The numbers are not affected: OHIF shows the NUM values of the SR, not lengths from the points.
    first = annotations[0]
    assert read[first["image"]]["length"] == pytest.approx(max(_lengths(first["points_lps"])), abs=1e-9)


def test_ohif_v2_legacy_reader(series: Series, ohif_sr):
    """OHIF v2's dcmjs Cornerstone adapter knows only cornerstoneTools@^4.0.0 tracking identifiers: it recovers
    nothing from an OHIF v3 SR, and the SCOORD pixel coordinates (not world points) from one retagged for it."""
    sr, annotations = ohif_sr
    assert ohif_read(sr, list(series.files), legacy=True) == []
    print("legacy on an OHIF v3 SR:", clients.last_node_log.strip().splitlines()[-1])

    ds = pydicom.dcmread(sr)
    for container in ds.ContentSequence:
        if container.ConceptNameCodeSequence[0].CodeMeaning == "Imaging Measurements":
            for group in container.ContentSequence:
                for item in group.ContentSequence:
                    if item.ConceptNameCodeSequence[0].CodeValue == "112039":
                        item.TextValue = item.TextValue.replace("Cornerstone3DTools@^0.1.0:", "cornerstoneTools@^4.0.0:")
    retagged = sr.with_name("legacy_tagged_sr.dcm")
    ds.save_as(retagged)
    scoords = _scoords(retagged)
    legacy = ohif_read(retagged, list(series.files), legacy=True)
    print("legacy:", legacy)
    assert sorted(m["toolType"] for m in legacy) == sorted(a["tool"] for a in annotations)
    by_image = {m["referencedSOPInstanceUID"]: m for m in legacy}
    for annotation in annotations:
        got = by_image[annotation["image"]]
        assert got["points"] is None
        flat = [v for point in got["points_image"] for v in point]
        assert flat == pytest.approx(scoords[annotation["image"]], abs=1e-6)
        lengths = _lengths(annotation["points_lps"])
        assert got["length"] == pytest.approx(max(lengths), abs=1e-9)
        if annotation["tool"] == "Bidirectional":
            assert got["width"] == pytest.approx(min(lengths), abs=1e-9)
        # v2 reads the label only from a CORNERSTONEFREETEXT finding site: OHIF v3's TEXT Comment is lost.
        assert got["label"] is None
    # OHIF v3 reads the retagged SR too (its adapters register the v2 identifiers).
    again = ohif_read(retagged, list(series.files))
    assert len(again) == len(annotations)
    assert all(m["rehydratable"] for m in again)


def test_validators_on_an_ohif_written_sr(ohif_sr):
    """PixelMed and dciodvfy on an SR as OHIF v3 writes it: their messages are printed (what OHIF itself
    triggers); only that the tools ran is asserted."""
    sr, _ = ohif_sr
    pixelmed = pixelmed_validate(sr)
    print("PixelMed DicomSRValidator:\n  " + "\n  ".join(pixelmed.lines))
    assert pixelmed.iod == "EnhancedSR"
    assert pixelmed.root_template.startswith("TID_1500")
    verdict = dciodvfy(require_tool("dciodvfy", "dicom3tools"), sr)
    print("dciodvfy:", verdict.iod, *verdict.errors, *verdict.warnings, sep="\n  ")
    assert verdict.iod == "EnhancedSR"
    dcmqi = tid1500reader(sr)
    print("tid1500reader:", dcmqi)
    assert len(dcmqi["Measurements"]) == 3


def _highdicom_sr(series: Series, out: Path) -> Path:
    import highdicom as hd
    from highdicom.sr import (
        Comprehensive3DSR,
        GraphicTypeValues,
        ImageRegion,
        Measurement,
        MeasurementReport,
        ObservationContext,
        ObserverContext,
        PersonObserverIdentifyingAttributes,
        PlanarROIMeasurementsAndQualitativeEvaluations,
        SourceImageForRegion,
        TrackingIdentifier,
    )
    from pydicom.sr.codedict import codes

    images = [pydicom.dcmread(p) for p in series.files]
    region = ImageRegion(graphic_type=GraphicTypeValues.POLYLINE,
                         graphic_data=np.array([[10.5, 10.5], [30.5, 10.5], [30.5, 30.5], [10.5, 30.5], [10.5, 10.5]]),
                         source_image=SourceImageForRegion.from_source_image(images[1]))
    group = PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(identifier="lesion 1", uid=hd.UID()),
        referenced_region=region,
        finding_type=codes.SCT.Lesion,
        measurements=[Measurement(name=codes.SCT.LongAxis, value=23.4, unit=codes.UCUM.Millimeter)],
    )
    observer = ObserverContext(observer_type=codes.DCM.Person,
                               observer_identifying_attributes=PersonObserverIdentifyingAttributes(name="Reader^A"))
    report = MeasurementReport(observation_context=ObservationContext(observer_person_context=observer),
                               procedure_reported=codes.LN.CTUnspecifiedBodyRegion, imaging_measurements=[group])
    sr = Comprehensive3DSR(evidence=images, content=report, series_number=5, series_instance_uid=hd.UID(),
                           sop_instance_uid=hd.UID(), instance_number=1, manufacturer="tumor-response tests")
    sr.save_as(out)
    return out


def test_tid1500reader_reads_a_planar_roi_measurement(series: Series, tmp_path):
    sr = _highdicom_sr(series, tmp_path / "highdicom_sr.dcm")
    metadata = tid1500reader(sr)
    print("tid1500reader:", metadata)
    (measurement,) = metadata["Measurements"]
    assert measurement["TrackingIdentifier"] == "lesion 1"
    (item,) = measurement["measurementItems"]
    assert item["quantity"]["CodeValue"] == "103339001"
    assert item["units"]["CodeValue"] == "mm"
    assert float(item["value"]) == pytest.approx(23.4)
    # The control for the validators: highdicom's SR is clean for PixelMed.
    pixelmed = pixelmed_validate(sr)
    print("PixelMed on highdicom's SR:", *pixelmed.lines, sep="\n  ")
    assert pixelmed.errors == () and pixelmed.iod == "Comprehensive3DSR"


def test_segimage2itkimage_reads_a_seg(series: Series, tmp_path):
    import highdicom as hd
    import SimpleITK as sitk
    from pydicom.sr.codedict import codes

    images = [pydicom.dcmread(p) for p in series.files]
    mask = np.zeros((3, ROWS, COLUMNS), bool)
    mask[1, 20:30, 10:40] = True
    mask[2, 22:28, 12:30] = True
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label="lesion", segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    seg = hd.seg.Segmentation(
        source_images=images, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment], series_instance_uid=hd.UID(), series_number=2, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="tumor-response tests", manufacturer_model_name="tests", software_versions="0",
        device_serial_number="0")
    seg_path = tmp_path / "seg.dcm"
    seg.save_as(seg_path)
    (image_path,) = segimage2itkimage(seg_path, tmp_path / "dcmqi")
    image = sitk.ReadImage(str(image_path))
    assert int(sitk.GetArrayFromImage(image).sum()) == int(mask.sum())
    # dcmqi pairs the row direction with PixelSpacing[1], as DICOM does.
    assert image.GetSpacing()[:2] == pytest.approx((COLUMN_SPACING, ROW_SPACING), abs=1e-5)
