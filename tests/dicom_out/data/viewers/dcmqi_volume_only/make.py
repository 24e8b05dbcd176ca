"""Write the three volume-only reports of this folder with dcmqi's own ``tid1500writer``.

Not run by the tests (the .dcm files are committed); kept so the files can be rebuilt::

    python3 -m venv /tmp/dcmqi && /tmp/dcmqi/bin/pip install dcmqi==1.5.7
    git clone https://github.com/QIICR/dcmqi /tmp/dcmqi-src   # data/segmentations/partial_overlaps.dcm
    .venv/bin/python tests/dicom_out/data/viewers/dcmqi_volume_only/make.py \
        --tid1500writer /tmp/dcmqi/bin/tid1500writer \
        --seg /tmp/dcmqi-src/data/segmentations/partial_overlaps.dcm

The reports mirror the structure of the QIN-HEADNECK measurement reports (TCIA; written by
QIICR's Iowa2DICOM, the predecessor of dcmqi): one TID 1411 volumetric group per lesion, the
lesion's volume in ml beside a non-size quantity (here a mean attenuation in HU, where QIN has
SUVs), no length anywhere, one report per time point. dcmqi copies the Patient and Study modules
from its composite context, so each time point gets its own copy of dcmqi's example SEG
(``partial_overlaps.dcm``, 5 segments over 3 CT slices) with a new StudyDate, StudyInstanceUID,
SeriesInstanceUID and SOPInstanceUID (deterministic UIDs); the reports' groups reference
segments 1-3 of that copy. The writer's output is not edited afterwards.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

HERE = Path(__file__).resolve().parent

#: (tracking identifier, fixed Tracking UID, segment number, finding, finding site)
LESIONS = (
    ("primary tumor", "2.25.118402851239907162301537645117840563001", 1,
     ("86049000", "SCT", "Neoplasm, Primary"), ("55940004", "SCT", "pharyngeal tonsil (adenoid)")),
    ("metastasis 1", "2.25.118402851239907162301537645117840563002", 2,
     ("14799000", "SCT", "Neoplasm, Metastatic"), ("45048000", "SCT", "Neck")),
    ("metastasis 2", "2.25.118402851239907162301537645117840563003", 3,
     ("14799000", "SCT", "Neoplasm, Metastatic"), ("45048000", "SCT", "Neck")),
)

#: (time point, study date, volumes in ml per lesion, mean HU per lesion)
TIMEPOINTS = (
    ("1", "20030417", ("24.6", "5.2", "2.4"), ("41.2", "38.5", "36.9")),
    ("2", "20030619", ("7.1", "2.0", "1.1"), ("35.0", "33.1", "31.8")),
    ("3", "20030821", ("11.8", "2.6", "1.3"), ("43.7", "39.0", "35.2")),
)


def _code(value: tuple[str, str, str]) -> dict[str, str]:
    return {"CodeValue": value[0], "CodingSchemeDesignator": value[1], "CodeMeaning": value[2]}


def metadata(timepoint: str, volumes: tuple[str, ...], means: tuple[str, ...], seg: pydicom.Dataset) -> dict:
    """dcmqi's JSON for one report (schema: doc/schemas/sr-tid1500-schema.json)."""
    groups = []
    for (tracking, uid, segment, finding, site), volume, mean in zip(LESIONS, volumes, means):
        groups.append({
            "TrackingIdentifier": tracking,
            "TrackingUniqueIdentifier": uid,
            "ReferencedSegment": segment,
            "SourceSeriesForImageSegmentation": str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID),
            "segmentationSOPInstanceUID": str(seg.SOPInstanceUID),
            "Finding": _code(finding),
            "FindingSite": _code(site),
            "measurementItems": [
                {"value": volume, "quantity": _code(("118565006", "SCT", "Volume")),
                 "units": _code(("ml", "UCUM", "milliliter"))},
                {"value": mean, "quantity": _code(("112031", "DCM", "Attenuation Coefficient")),
                 "units": _code(("[hnsf'U]", "UCUM", "Hounsfield unit")),
                 "derivationModifier": _code(("373098007", "SCT", "Mean"))},
            ],
        })
    return {
        "SeriesDescription": "tumor measurements", "SeriesNumber": "1001", "InstanceNumber": "1",
        "compositeContext": ["seg.dcm"],
        "observerContext": {"ObserverType": "PERSON", "PersonObserverName": "Reader1"},
        "VerificationFlag": "VERIFIED", "CompletionFlag": "COMPLETE",
        "activitySession": "1", "timePoint": timepoint,
        "Measurements": groups,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tid1500writer", required=True)
    parser.add_argument("--seg", required=True, type=Path, help="dcmqi data/segmentations/partial_overlaps.dcm")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for timepoint, date, volumes, means in TIMEPOINTS:
            context = Path(tmp) / f"tp{timepoint}"
            context.mkdir()
            seg = pydicom.dcmread(args.seg)
            seed = f"tumor-response dcmqi_volume_only tp{timepoint}"
            seg.StudyDate = seg.SeriesDate = seg.ContentDate = date
            seg.StudyInstanceUID = generate_uid(entropy_srcs=[seed, "study"])
            seg.SeriesInstanceUID = generate_uid(entropy_srcs=[seed, "series"])
            seg.SOPInstanceUID = seg.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[seed, "sop"])
            seg.save_as(context / "seg.dcm")
            meta = HERE / f"tp{timepoint}.json"
            meta.write_text(json.dumps(metadata(timepoint, volumes, means, seg), indent=2) + "\n")
            out = HERE / f"report-tp{timepoint}.dcm"
            subprocess.run([args.tid1500writer, "--inputMetadata", str(meta),
                            "--inputCompositeContextDirectory", str(context), "--outputDICOM", str(out)], check=True)
            print(out, out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
