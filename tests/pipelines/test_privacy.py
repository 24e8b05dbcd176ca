"""Privacy: no header identifier in any output; keyed pseudonyms; no path from a header escapes the output folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.config import PrivacyConfig
from pipelines.outputs.privacy import PrivacyError, Pseudonymiser
from tests.data_factory import write_mini_archive

PHI = {"PatientName": "SMITH^JOHN^Q", "PatientBirthDate": "19561203", "InstitutionName": "St Example Hospital",
       "ReferringPhysicianName": "HOUSE^GREGORY", "AccessionNumber": "ACC778899"}
KEY = "a-secret-key-of-some-length"


@pytest.fixture(scope="module")
def phi_archive(tmp_path_factory) -> Path:
    """The mini archive with real-looking identifiers written into every header."""
    config = write_mini_archive(tmp_path_factory.mktemp("phi"))
    for f in config.parent.rglob("dicom/*"):
        ds = pydicom.dcmread(f)
        for k, v in PHI.items():
            setattr(ds, k, v)
        ds.save_as(f)
    return config


def _all_output_text(out: Path) -> str:
    return "\n".join(p.read_bytes().decode("latin-1") for p in out.rglob("*") if p.is_file())


def test_no_header_identifier_in_any_output(phi_archive, tmp_path):
    """Every file of a run, DICOM SEG/SR included, read as bytes: no identifier from the headers."""
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(phi_archive), "--set", f"output_dir={out}", "--set", "outputs.dicom=true"])
    assert result.exit_code == 0, result.output
    assert len(list((out / "dicom").rglob("*.dcm"))) == 12  # SEG + SR for 2 patients x 3 time points
    text = _all_output_text(out) + result.output
    for value in (*PHI.values(), "SMITH", "19561203", "1956-12-03"):
        assert value not in text, value


def test_pseudonymised_run_has_no_patient_id_and_is_stable(phi_archive, tmp_path, monkeypatch):
    monkeypatch.setenv("TR_KEY", KEY)
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        result = CliRunner().invoke(app, ["run", str(phi_archive), "--set", f"output_dir={out}",
                                          "--set", "privacy.pseudonymise=true", "--set", "privacy.key_env=TR_KEY"])
        assert result.exit_code == 0, result.output
        outs.append(out)
        text = _all_output_text(out) + result.output
        assert "MINI01" not in text and "MINI02" not in text
        assert KEY not in text
    expected = Pseudonymiser(PrivacyConfig(pseudonymise=True, key=KEY)).patient("MINI01")
    assert (outs[0] / "courses" / f"{expected}.json").is_file()
    assert (outs[0] / "responses.csv").read_bytes() == (outs[1] / "responses.csv").read_bytes()
    provenance = json.loads((outs[0] / "provenance.json").read_text())
    assert provenance["config"]["privacy"]["key_env"] == "TR_KEY"


def test_pseudonyms_depend_on_the_key_and_uids_stay_valid():
    a = Pseudonymiser(PrivacyConfig(pseudonymise=True, key=KEY))
    b = Pseudonymiser(PrivacyConfig(pseudonymise=True, key=KEY + "x"))
    assert a.patient("P1") == a.patient("P1") != b.patient("P1")
    uid = a.uid("1.2.840.113619.2.55.3.1234")
    assert uid.startswith("2.25.") and len(uid) <= 64 and all(p.isdigit() for p in uid.split("."))
    with pytest.raises(PrivacyError, match="neither privacy.key nor privacy.key_env"):
        Pseudonymiser(PrivacyConfig(pseudonymise=True))
    with pytest.raises(PrivacyError, match="at least 16"):
        Pseudonymiser(PrivacyConfig(pseudonymise=True, key="short"))


def test_a_patient_id_that_is_a_path_cannot_escape_the_output_folder(tmp_path):
    archive = tmp_path / "archive"
    config = write_mini_archive(archive, n_patients=1)
    evil = "../../etc"
    # the header says ../../etc; the data live in a folder the mask template can still find
    for f in archive.rglob("dicom/*"):
        ds = pydicom.dcmread(f)
        ds.PatientID = evil
        ds.save_as(f)
    safe_dir = archive / "evil"
    shutil.move(str(archive / "MINI01"), safe_dir)
    config.write_text(config.read_text().replace('"{patient_id}/{study_date}/mask.nii.gz"', '"evil/{study_date}/mask.nii.gz"')
                      .replace('"{patient_id}/lesions.json"', '"evil/lesions.json"'))
    out = tmp_path / "deep" / "out"
    before = {p.resolve(): p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    result = CliRunner().invoke(app, ["run", str(config), "--set", f"output_dir={out}"])
    assert result.exit_code == 0, result.output
    written = [p.resolve() for p in tmp_path.rglob("*")
               if p.is_file() and before.get(p.resolve()) != p.stat().st_mtime_ns]
    outside = [p for p in written if out.resolve() not in p.parents and archive.resolve() not in p.parents]
    assert outside == []
    assert (out / "courses" / "etc.json").is_file()  # '../../etc' made safe


def test_unwritable_output_folder_is_reported_before_work(phi_archive, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder should be")
    result = CliRunner().invoke(app, ["run", str(phi_archive), "--set", f"output_dir={blocker / 'out'}"])
    assert result.exit_code == 2
    assert "is not writable" in result.output


# --- PS3.15 Basic Profile: a marker in every attribute it covers, searched for in every output ------------

def _png_text(data: bytes) -> str:
    """The text chunks of a PNG (tEXt as is, zTXt and iTXt decompressed): metadata a viewer shows."""
    import struct
    import zlib

    out, pos = [], 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"tEXt":
            out.append(body.decode("latin-1"))
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            out.append(key.decode("latin-1") + " " + zlib.decompress(rest[1:]).decode("latin-1"))
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            _, _, rest = rest.partition(b"\0")  # language tag
            _, _, text = rest.partition(b"\0")  # translated keyword
            out.append(key.decode("latin-1") + " " + (zlib.decompress(text) if compressed else text).decode("utf-8"))
        pos += 12 + length
    return "\n".join(out)


def _readable_text(path: Path) -> str:
    """What a file says, however it stores it: raw bytes, plus gzip, Parquet, SQLite and PNG text decoded."""
    import gzip
    import sqlite3

    data = path.read_bytes()
    parts = [data.decode("latin-1")]
    if data[:2] == b"\x1f\x8b":
        parts.append(gzip.decompress(data).decode("latin-1"))
    elif data[:4] == b"PAR1":
        import pyarrow.parquet as pq

        parts.append(str(pq.read_table(path).to_pylist()))
    elif data[:16] == b"SQLite format 3\0":
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            parts.append("\n".join(db.iterdump()))
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        parts.append(_png_text(data))
    return "\n".join(parts)


def _markers_found(out: Path, console: str, markers: dict[str, str]) -> dict[str, list[str]]:
    """Marker -> the files (and 'console') where it stands as a whole word."""
    import re

    pattern = re.compile(r"\b(ZQMK\d{4})\b")
    found: dict[str, list[str]] = {}
    texts = {str(p.relative_to(out)): _readable_text(p) for p in sorted(out.rglob("*")) if p.is_file()}
    texts["console"] = console
    for name, text in texts.items():
        for word in set(pattern.findall(text)):
            found.setdefault(word, []).append(name)
    unknown = set(found) - set(markers)
    assert not unknown, f"the scan found words it did not plant: {unknown}"
    return found


@pytest.fixture(scope="module")
def marker_archive(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    from tests.data_factory import write_marker_archive

    return write_marker_archive(tmp_path_factory.mktemp("markers"))


def _run(config: Path, out: Path, *settings: str) -> str:
    args = ["run", str(config), "--set", f"output_dir={out}", "--set", "outputs.dicom=true"]
    for s in settings:
        args += ["--set", s]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(list((out / "dicom").rglob("*.dcm"))) == 12  # SEG + SR for 2 patients x 3 time points
    return result.output


def test_no_basic_profile_attribute_reaches_any_output(marker_archive, tmp_path):
    """Every text attribute of PS3.15 Table E.1-1 holds a marker in the sources (top level, nested, private);
    no marker appears in any file the run writes (CSV, JSON, HTML, PNG metadata, SQLite, Parquet, DICOM)."""
    config, markers = marker_archive
    out = tmp_path / "out"
    console = _run(config, out)
    found = _markers_found(out, console, markers)
    assert found == {}, {markers[w]: where for w, where in found.items()}


def test_keep_identifiers_keeps_them_so_the_scan_can_see_them(marker_archive, tmp_path):
    """The same scan on a run told to keep identifiers: the source's patient and study attributes are in its
    DICOM objects (and only there), so the test above would see a leak."""
    config, markers = marker_archive
    out = tmp_path / "out"
    found = _markers_found(out, _run(config, out, "privacy.keep_identifiers=true"), markers)
    where = {markers[w] for w in found}
    assert {"PatientName", "AccessionNumber", "ReferringPhysicianName", "StudyDescription", "StudyID"} <= where, where
    elsewhere = {markers[w] for w, files in found.items() if any(not f.startswith("dicom/") for f in files)}
    assert elsewhere <= {"SeriesDescription", "ContrastBolusAgent"}, elsewhere  # header free text in series.csv


def test_pseudonymised_run_shows_no_identifier_and_no_source_uid(marker_archive, tmp_path, monkeypatch):
    """With privacy.pseudonymise, the patient id and every source UID are replaced too (keyed, consistent)."""
    import re

    config, markers = marker_archive
    monkeypatch.setenv("TR_KEY", KEY)
    out = tmp_path / "out"
    console = _run(config, out, "privacy.pseudonymise=true", "privacy.key_env=TR_KEY")
    assert _markers_found(out, console, markers) == {}
    source_uids = set()
    for f in config.parent.rglob("dicom/*"):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        source_uids |= {ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.FrameOfReferenceUID}
    text = "\n".join(_readable_text(p) for p in out.rglob("*") if p.is_file()) + console
    assert not {u for u in source_uids if re.search(rf"(?<![\d.]){re.escape(u)}(?![\d.])", text)}
    assert "MINI01" not in text and "MINI02" not in text
    # the objects still reference each other: the SR's SEG reference is the SEG's (pseudonymous) instance UID
    for folder in {p.parent for p in (out / "dicom").rglob("*.dcm")}:
        seg = pydicom.dcmread(folder / "lesions-seg.dcm", stop_before_pixels=True)
        sr = pydicom.dcmread(folder / "measurements-sr.dcm")
        assert seg.SOPInstanceUID in str(sr.CurrentRequestedProcedureEvidenceSequence)
        assert sr.PatientIdentityRemoved == "YES"


def test_free_text_disclosure_is_whole_word_and_idempotent():
    anon = Pseudonymiser(PrivacyConfig(pseudonymise=True, key=KEY))
    anon.register(["P1", "P10"])
    text = ("patient P1 and P10 (not XP1, not P1X); /data/P1/2024-01-02; series 1.2.840.113619.2.55.3.1234 v3.1.4; "
            "file /a/1.2.840.113619.2.55.3.99.dcm; instance 2.25.1234567890123.")
    once = anon.text(text)
    assert anon.patient("P1") in once and anon.patient("P10") in once
    assert "XP1" in once and "P1X" in once and "v3.1.4" in once  # other words and version numbers untouched
    assert "1.2.840.113619.2.55.3.1234" not in once and anon.uid("1.2.840.113619.2.55.3.1234") in once
    assert f"/a/{anon.uid('1.2.840.113619.2.55.3.99')}.dcm" in once  # a UID that names a file
    assert f"instance {anon.uid('2.25.1234567890123')}." in once  # a UUID-derived UID ending a sentence
    assert anon.text(once) == once  # a message disclosed by one writer and logged by another: the same
    plain = Pseudonymiser(PrivacyConfig())
    plain.register(["P1"])
    assert plain.text(text) == text and plain.row({"patient_id": "P1", "series_uid": "1.2.3.4.5"})["patient_id"] == "P1"


def test_deidentify_dicom_cleans_every_nesting_level_and_keeps_what_its_options_say():
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence

    from pipelines.outputs.privacy import deidentify_dicom

    def item(level: int) -> Dataset:
        ds = Dataset()
        ds.InstitutionName = f"HOSPITAL{level}"
        ds.OperatorsName = f"OPERATOR{level}"
        ds.ReferencedSOPInstanceUID = f"1.2.3.4.5.{level}"
        ds.add_new(0x00110010, "LO", "PRIVATE CREATOR")
        ds.add_new(0x00111001, "LO", f"PRIVATE{level}")
        return ds

    ds = item(0)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.99"
    ds.SOPInstanceUID = "1.2.3.4.5.99"
    ds.StudyDate, ds.ContentTime, ds.PatientBirthDate = "20240102", "101500", "19561203"
    ds.PatientName, ds.PatientID, ds.SeriesDescription = "SMITH^JOHN", "MRN123", "Lesions (tumor-response)"
    ds.StudyDescription = "CT for SMITH"
    level1 = item(1)
    level1.ContentSequence = Sequence([item(2)])  # cleaned, not replaced (Clean Structured Content)
    ds.ContributingEquipmentSequence = Sequence([level1])
    anon = Pseudonymiser(PrivacyConfig(pseudonymise=True, key=KEY))
    deidentify_dicom(ds, patient_id="anon-1", uid=anon.uid, identity_removed=True,
                     own_descriptors=("SeriesDescription",))
    text = str(ds) + str(ds.file_meta)
    for word in ("HOSPITAL", "OPERATOR", "PRIVATE", "SMITH", "MRN123", "19561203", "1.2.3.4.5."):
        assert word not in text, word
    assert (ds.StudyDate, ds.ContentTime, ds.PatientBirthDate) == ("20240102", "101500", "")
    assert ds.SeriesDescription == "Lesions (tumor-response)" and "StudyDescription" not in ds
    deep = ds.ContributingEquipmentSequence[0].ContentSequence[0]
    assert deep.ReferencedSOPInstanceUID == anon.uid("1.2.3.4.5.2")  # the same map at every level
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == anon.uid("1.2.3.4.5.99")
    assert (ds.PatientName, ds.PatientID, ds.PatientIdentityRemoved) == ("anon-1^", "anon-1", "YES")
    codes = [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113106", "113104", "113105"]  # no 113110: the UIDs were replaced


def test_a_logged_traceback_is_disclosed_like_its_message(tmp_path):
    import logging

    from pipelines.outputs.files import RunOutputs

    anon = Pseudonymiser(PrivacyConfig(pseudonymise=True, key=KEY))
    anon.register(["MRN0042"])
    handler = RunOutputs(tmp_path, anon).log_handler("t.log")
    log = logging.getLogger("tumor_response.test_privacy")
    log.addHandler(handler)
    try:
        try:
            raise ValueError("cannot read /archive/MRN0042/1.2.840.113619.2.55.3.7.dcm")
        except ValueError:
            log.exception("export of MRN0042 failed")
    finally:
        log.removeHandler(handler)
        handler.close()
    text = (tmp_path / "t.log").read_text()
    assert "Traceback" in text and "MRN0042" not in text and "1.2.840.113619.2.55.3.7" not in text
    assert anon.patient("MRN0042") in text
