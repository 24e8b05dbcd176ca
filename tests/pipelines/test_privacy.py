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
from pipelines.privacy import PrivacyError, Pseudonymiser
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
    result = CliRunner().invoke(app, ["run", str(config), "--set", f"output_dir={out}"])
    assert result.exit_code == 0, result.output
    written = [p.resolve() for p in tmp_path.rglob("*") if p.is_file() and p.stat().st_mtime > config.stat().st_mtime]
    outside = [p for p in written if out.resolve() not in p.parents and archive.resolve() not in p.parents]
    assert outside == []
    assert (out / "courses" / "etc.json").is_file()  # '../../etc' made safe


def test_unwritable_output_folder_is_reported_before_work(phi_archive, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder should be")
    result = CliRunner().invoke(app, ["run", str(phi_archive), "--set", f"output_dir={blocker / 'out'}"])
    assert result.exit_code == 2
    assert "is not writable" in result.output
