"""SR Measurement Reports written by other tools: what our reader must make of them.

The files are in ``tests/dicom_out/data/viewers/<source>/``, each folder with the upstream licence and a
SOURCE.md (repository, path, commit; how a generated file was written). The values stated below were read
from the files with pydicom:

- ``ohif_v2/structured_report.dcm``: dcmjs-org/dcmjs ``examples/data/structured_report.dcm`` (commit 0e1e292),
  written by dcmjs's legacy Cornerstone adapter (``cornerstoneTools@^4.0.0``, OHIF v2). Two EllipticalRoi
  groups code their *area* with the concept of a length, (SRT, G-D7FE) "AREA", unit mm2; a Bidirectional
  (Long Axis 93.9 mm, Short Axis 47.0 mm), two Lengths (G-D7FE, mm) and an ArrowAnnotate (a "Center" without
  a value). Tracking Identifiers are tool names; StudyDate is empty (SeriesDate 20200617).
- ``cornerstone3d/sample-sr.dcm``: dcmjs ``test/sample-sr.dcm`` (commit ee82d3a): a Cornerstone3D Bidirectional
  in UCUM ``1`` with meaning "px" (no pixel spacing): Long Axis 64.4505437946691, Short Axis 42.9670291964462.
- ``dcmqi_liver/sr-tid1500-ct-liver-example.dcm``: written by dcmqi 1.5.7 ``tid1500writer`` from QIICR/dcmqi
  ``doc/examples/sr-tid1500-ct-liver-example.json``: one group, Finding (SCT 113343008) "Organ", Finding Site
  Liver, Volume (SCT 118565006) 70361.9 mm3 *and* 70.3619 cm3, four attenuation values in HU.
- ``dcmqi_volume_only/report-tp{1,2,3}.dcm``: written by dcmqi 1.5.7 ``tid1500writer`` (make.py): the structure
  of TCIA's QIN-HEADNECK reports (volume-only groups in ml) without TCIA data, whose licence we could not confirm: three lesions with volumes in ml at 2003-04-17 / 06-19 / 08-21, no length.
- ``highdicom/sr_document_with_multiple_groups.dcm``: ImagingDataCommons/highdicom test file (commit 47ba4be),
  StudyDate 20040119: LungNodule0001 (category Morphologically Abnormal Structure, Nodule, Lung, Diameter 10.0
  mm), Aorta0001 (category Anatomical structure SCT 91723000, Aorta, Diameter 20.0 mm), Vertebra0001 (category
  Anatomical structure, Vertebra, Volume 200.0 mm3) and Image0001 (an intensity mean in HU).

Every test copies the files it uses into its own tmp folder. Where a source gives one report and the test
needs several time points, a follow-up is made with pydicom (:func:`follow_up`), as each docstring says.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from imaging.response import CourseError, course_from_dict
from pipelines.cli import app
from pipelines.dicom.sr_course import read_sr_course

DATA = Path(__file__).resolve().parent / "data" / "viewers"

OHIF_V2 = DATA / "ohif_v2" / "structured_report.dcm"
CORNERSTONE3D_PX = DATA / "cornerstone3d" / "sample-sr.dcm"
DCMQI_LIVER = DATA / "dcmqi_liver" / "sr-tid1500-ct-liver-example.dcm"
DCMQI_VOLUME_ONLY = tuple(DATA / "dcmqi_volume_only" / f"report-tp{n}.dcm" for n in (1, 2, 3))
HIGHDICOM = DATA / "highdicom" / "sr_document_with_multiple_groups.dcm"

# ohif_v2/structured_report.dcm, as written.
OHIF_SERIES_DATE = "20200617"
OHIF_ELLIPSE_AREAS_MM2 = (4806.42320110457, 3905.35929103307)
OHIF_BIDIRECTIONAL_MM = (93.9, 47.0)
OHIF_LENGTHS_MM = (39.3664929116140, 133.992062006165)

# dcmqi_liver: the same volume twice.
LIVER_MM3, LIVER_CM3 = 70361.9, 70.3619

#: Volume-only courses: ISO date -> sum of the reported volumes, mm3 (1 ml = 1000 mm3).
#: dcmqi_volume_only: 24.6+5.2+2.4 = 32.2 -> 7.1+2.0+1.1 = 10.2 (-68.3%: PR)
#: -> 11.8+2.6+1.3 = 15.7 ml (+53.9%: PD).
VOLUME_SUMS_MM3 = {
    "dcmqi_volume_only": {"2003-04-17": 32200.0, "2003-06-19": 10200.0, "2003-08-21": 15700.0},
}

TRACKING_ID = ("DCM", "112039")
IMAGING_MEASUREMENTS = ("DCM", "126010")
TIME_POINT = ("UMLS", "C2348792")


# --------------------------------------------------------------------------- helpers


@pytest.fixture()
def runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:  # click >= 8.2 keeps stderr apart already
        return CliRunner()


def _concept(item: Dataset) -> tuple[str, str]:
    code = item.ConceptNameCodeSequence[0]
    return str(code.CodingSchemeDesignator), str(code.CodeValue)


def groups(ds: Dataset) -> Iterator[tuple[str, Dataset]]:
    """(Tracking Identifier, measurement group) of every group of a TID 1500 report."""
    for container in ds.ContentSequence:
        if "ConceptNameCodeSequence" in container and _concept(container) == IMAGING_MEASUREMENTS:
            for group in container.get("ContentSequence", []):
                tracking = next((str(i.TextValue) for i in group.get("ContentSequence", [])
                                 if i.ValueType == "TEXT" and _concept(i) == TRACKING_ID), "")
                yield tracking, group


def numeric(ds: Dataset, tracking: str, concept: tuple[str, str], unit: str) -> Dataset:
    """The MeasuredValueSequence item of one NUM, found by group, concept and UCUM unit (exactly one)."""
    found = [mv for t, group in groups(ds) if t == tracking for item in group.ContentSequence
             if item.ValueType == "NUM" and _concept(item) == concept and "MeasuredValueSequence" in item
             for mv in item.MeasuredValueSequence if mv.MeasurementUnitsCodeSequence[0].CodeValue == unit]
    assert len(found) == 1, f"{tracking} {concept} {unit}: {len(found)} values"
    return found[0]


def copy_report(src: Path, folder: Path, name: str | None = None) -> Path:
    """Copy one public file, unchanged, into a test's folder."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(src, folder / (name or src.name)))


def edited(src: Path, dest: Path, **attributes: str) -> Dataset:
    """A copy of ``src`` saved at ``dest`` with top-level attributes set (the dataset is returned)."""
    ds = pydicom.dcmread(src)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    dest.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dest)
    return ds


def follow_up(src: Path, dest: Path, study_date: str, values: dict[tuple[str, tuple[str, str], str], str],
              time_point: str | None = None) -> Path:
    """A later time point made from a single public report with pydicom.

    New StudyDate (also SeriesDate and ContentDate), StudyInstanceUID, SeriesInstanceUID and SOPInstanceUID
    (deterministic, from the date), the Time Point text of TID 1411 groups if given, and the NUM values in
    ``values`` ((tracking identifier, concept, UCUM unit) -> decimal string); everything else, Tracking
    Identifiers and Tracking UIDs included (the same lesions, followed), is the public file's.
    """
    ds = pydicom.dcmread(src)
    seed = [src.name, study_date]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[*seed, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[*seed, "series"])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[*seed, "sop"])
    for (tracking, concept, unit), value in values.items():
        numeric(ds, tracking, concept, unit).NumericValue = value
    if time_point is not None:
        for _, group in groups(ds):
            for item in group.ContentSequence:
                if item.ValueType == "TEXT" and _concept(item) == TIME_POINT:
                    item.TextValue = time_point
    dest.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dest)
    return dest


def prose(text: str, folder: Path) -> str:
    """``text`` without the folder's path and its files' names.

    tmp_path carries the test's name and the files have names like ``sr-tid1500-ct-liver-example.dcm``:
    neither may satisfy a search for what a message or note says in words.
    """
    text = text.replace(str(folder), "<folder>")
    for path in folder.rglob("*"):
        text = text.replace(path.name, "<file>")
    return text


def noted(pattern: str, notes: list[str], folder: Path) -> bool:
    return any(re.search(pattern, prose(note, folder), re.IGNORECASE) for note in notes)


def timepoint(course: dict[str, Any], date: str) -> dict[str, Any]:
    return next(tp for tp in course["timepoints"] if tp["date"] == date)


def lesion_names(course: dict[str, Any]) -> set[str]:
    return {entry["lesion"] for tp in course["timepoints"]
            for key in ("target", "non_target", "new_lesions") for entry in tp.get(key, [])}


def numbers(value: Any) -> Iterator[float]:
    """Every number anywhere in a course dict."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield float(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from numbers(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from numbers(v)


def assess_json(runner: CliRunner, folder: Path, *options: str) -> Any:
    result = runner.invoke(app, ["assess", str(folder), *options, "--json"])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


# --------------------------------------------------------------------------- OHIF v2: ellipse area coded as a length


@pytest.fixture()
def ohif_folder(tmp_path: Path) -> Path:
    """The OHIF v2 report with StudyDate set to its own SeriesDate (20200617): the one edit, as the file has none."""
    folder = tmp_path / "reports"
    edited(OHIF_V2, folder / OHIF_V2.name, StudyDate=OHIF_SERIES_DATE)
    return folder


def test_ohif_v2_ellipse_area_is_not_read_as_a_length(ohif_folder: Path) -> None:
    """The report is read; its lengths (mm) are lengths; the two ellipse areas (mm2, coded G-D7FE) are not.

    The file measures three things with lengths: the Bidirectional (93.9 x 47.0 mm) and two Lengths. The
    ellipses measure only an area, which a diameter-based course has no field for: an ellipse may still be
    listed as a lesion (drawn, not measured: every size null), but its area is in no field, and the notes
    say it was left out. The ArrowAnnotate measures nothing.
    """
    result = read_sr_course(ohif_folder)
    course = result.course
    course_from_dict(course, source=str(ohif_folder))  # a valid course for the engine
    assert not result.volume_only
    (only,) = course["timepoints"]
    assert only["date"] == "2020-06-17"
    targets = only["target"]
    measured = [t for t in targets if t["long_axis_mm"] is not None]
    # Tolerance 1e-9 relative: the values are copied from the file, no conversion (mm to mm).
    assert sorted(t["long_axis_mm"] for t in measured) == pytest.approx(
        sorted((OHIF_BIDIRECTIONAL_MM[0], *OHIF_LENGTHS_MM)), rel=1e-9)
    for unmeasured in (t for t in targets if t["long_axis_mm"] is None):  # at most the two ellipses
        assert all(unmeasured[k] is None for k in ("short_axis_mm", "perpendicular_mm", "volume_mm3")), unmeasured
    assert len(targets) - len(measured) <= len(OHIF_ELLIPSE_AREAS_MM2)
    bidirectional = next(t for t in measured if t["long_axis_mm"] == pytest.approx(OHIF_BIDIRECTIONAL_MM[0]))
    assert bidirectional["short_axis_mm"] == pytest.approx(OHIF_BIDIRECTIONAL_MM[1], rel=1e-9)
    # Never an area read as a length, anywhere in the course (nor as a volume or perpendicular).
    for area in OHIF_ELLIPSE_AREAS_MM2:
        assert not any(v == pytest.approx(area, rel=1e-6) for v in numbers(course)), area
    assert only["new_lesions"] == []
    assert noted(r"area|mm2|ellip", result.notes, ohif_folder), result.notes


def test_ohif_v2_length_is_a_length_in_mm(ohif_folder: Path) -> None:
    """A Length line of the same report, (SRT, G-D7FE) "Length" in mm, is a target whose long axis is the value.

    Both Lengths are there with their exact values (mm, tolerance 1e-9 relative: no conversion), with no short
    axis, perpendicular or volume, whatever the reader names the lesions (the Tracking Identifiers are tool names,
    the same for both).
    """
    targets = read_sr_course(ohif_folder).course["timepoints"][0]["target"]
    for length in OHIF_LENGTHS_MM:
        (line,) = [t for t in targets if t["long_axis_mm"] is not None
                   and t["long_axis_mm"] == pytest.approx(length, rel=1e-9)]
        assert line["short_axis_mm"] is None and line["perpendicular_mm"] is None and line["volume_mm3"] is None
    assert len({t["lesion"] for t in targets}) == len(targets)  # two Lengths, one tool name: two lesions


def test_ohif_v2_report_as_published_is_refused_only_for_its_missing_study_date(tmp_path: Path) -> None:
    """The unmodified file has no StudyDate (a scan date nothing else in the report gives).

    Either the reader refuses it for that reason alone - naming the file and the StudyDate, never the area or
    its unit - or it dates it some other way, says so in the notes and reads the same three lengths.
    """
    folder = tmp_path / "reports"
    copy_report(OHIF_V2, folder)
    try:
        result = read_sr_course(folder)
    except CourseError as exc:
        message = str(exc)
        assert OHIF_V2.name in message and re.search(r"study ?date", prose(message, folder), re.IGNORECASE), message
        assert not re.search(r"mm2|area|ellip", prose(message, folder), re.IGNORECASE), message
        return
    assert noted(r"study ?date", result.notes, folder), result.notes
    targets = [t for t in result.course["timepoints"][0]["target"] if t["long_axis_mm"] is not None]
    assert sorted(t["long_axis_mm"] for t in targets) == pytest.approx(
        sorted((OHIF_BIDIRECTIONAL_MM[0], *OHIF_LENGTHS_MM)), rel=1e-9)


def test_cli_assess_ohif_v2_report_sums_lengths_only(runner: CliRunner, ohif_folder: Path) -> None:
    """`assess FOLDER --criteria recist --json` on the dated copy: exit 0, the baseline sum is made of lengths.

    Which of the three lengths RECIST takes as targets is the engine's choice (2 per organ; the organ is
    unknown), so the sum is checked against every subset; tolerance 0.01 mm, the JSON's rounding.
    """
    out = assess_json(runner, ohif_folder, "--criteria", "recist")
    (baseline,) = out["timepoints"]
    lengths = (OHIF_BIDIRECTIONAL_MM[0], *OHIF_LENGTHS_MM)
    sums = [sum(c) for n in range(1, 4) for c in itertools.combinations(lengths, n)]
    assert any(baseline["sum_mm"] == pytest.approx(s, abs=0.01) for s in sums), baseline


# --------------------------------------------------------------------------- lengths in pixels


@pytest.mark.parametrize(
    ("unit", "meaning", "says"),
    [
        (None, None, r"pixels|no unit|unitless|dimensionless"),  # the file as published: UCUM "1", meaning "px"
        ("{pixel}", "pixel", r"pixels"),
        ("pixel", "pixel", r"pixels"),
    ],
    ids=["as-published-1-px", "curly-pixel", "pixel"],
)
def test_lengths_in_pixels_are_refused_saying_what_the_unit_means(tmp_path: Path, unit: str | None,
                                                                   meaning: str | None, says: str) -> None:
    """Cornerstone3D's Bidirectional without pixel spacing: a CourseError naming the file and what the unit means.

    The first case is the public file unchanged (UCUM ``1``: no unit; dcmjs writes it for pixels); the other two
    are copies whose two units are changed to the other spellings of a pixel, ``{pixel}`` and ``pixel``.
    The message must say "pixels" (or, for ``1``, that there is no unit) in words, not only quote the code.
    """
    folder = tmp_path / "reports"
    if unit is None:
        copy_report(CORNERSTONE3D_PX, folder)
    else:
        ds = pydicom.dcmread(CORNERSTONE3D_PX)
        for axis in (("SRT", "G-A185"), ("SRT", "G-A186")):
            code = numeric(ds, "Cornerstone3DTools@^0.1.0:Bidirectional", axis, "1").MeasurementUnitsCodeSequence[0]
            code.CodeValue, code.CodeMeaning = unit, meaning
        folder.mkdir()
        ds.save_as(folder / CORNERSTONE3D_PX.name)
    with pytest.raises(CourseError) as caught:
        read_sr_course(folder)
    message = str(caught.value)
    assert CORNERSTONE3D_PX.name in message, message
    # Neither the unit's code nor the path and file name count as saying what the unit means.
    words = prose(message, folder)
    for quoted in ({f"'{unit}'", f'"{unit}"', f"`{unit}`"} if unit else set()):
        words = words.replace(quoted, "")
    assert re.search(says, words, re.IGNORECASE), message


def test_cli_pixel_lengths_exit_2_naming_the_file(runner: CliRunner, tmp_path: Path) -> None:
    """`assess` on the Cornerstone3D report as published: exit 2, the error on stderr names the file and pixels."""
    folder = tmp_path / "reports"
    copy_report(CORNERSTONE3D_PX, folder)
    result = runner.invoke(app, ["assess", str(folder), "--criteria", "recist"])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert CORNERSTONE3D_PX.name in result.stderr, result.stderr
    words = prose(result.stderr, folder)
    assert re.search(r"pixels|no unit|unitless|dimensionless", words, re.IGNORECASE), result.stderr


# --------------------------------------------------------------------------- dcmqi liver: one volume, two units


def liver_volume_seen(result: Any, folder: Path) -> None:
    """The liver group's volume is read once (70361.9 mm3) and kept: as a target's volume, or in the notes.

    Whether a whole organ (Finding "Organ", SCT 113343008; no Finding category) is a lesion is not what these
    tests are about: a target with the volume, or - if the reader counts an organ as an anatomical structure - a
    note naming the liver. Tolerance 1e-6 relative: 70.3619 cm3 is exactly 70361.9 mm3.
    """
    targets = result.course["timepoints"][0]["target"]
    if targets:
        (liver,) = targets
        assert liver["volume_mm3"] == pytest.approx(LIVER_MM3, rel=1e-6)
        assert liver["long_axis_mm"] is None
    else:
        assert noted(r"liver", result.notes, folder), result.notes


def test_dcmqi_liver_volume_in_mm3_and_cm3_is_one_measurement(tmp_path: Path) -> None:
    """dcmqi's liver example as written: the two Volume items (mm3, cm3) agree and make one volume, no refusal."""
    folder = tmp_path / "reports"
    copy_report(DCMQI_LIVER, folder)
    result = read_sr_course(folder)
    assert result.volume_only
    assert [tp["date"] for tp in result.course["timepoints"]] == ["2003-04-17"]
    liver_volume_seen(result, folder)


def test_dcmqi_liver_volume_rounded_by_a_writer_still_agrees(tmp_path: Path) -> None:
    """A copy whose cm3 value is written with 4 significant digits (70.36 cm3, 0.003% from 70361.9 mm3).

    DS values are decimal strings of limited precision; two renderings of one volume that differ by their
    rounding are the same measurement. (Tolerance the reader needs at least: the last digit written, 0.005
    cm3 here, 7e-5 relative.)
    """
    folder = tmp_path / "reports"
    ds = pydicom.dcmread(DCMQI_LIVER)
    numeric(ds, "Measurements group 1", ("SCT", "118565006"), "cm3").NumericValue = "70.36"
    folder.mkdir()
    ds.save_as(folder / DCMQI_LIVER.name)
    result = read_sr_course(folder)
    targets = result.course["timepoints"][0]["target"]
    if targets:
        # Either value may be kept: within 1e-4 relative of the mm3 one.
        assert targets[0]["volume_mm3"] == pytest.approx(LIVER_MM3, rel=1e-4)
    else:
        assert noted(r"liver", result.notes, folder), result.notes


def test_dcmqi_liver_volumes_that_disagree_are_refused_naming_both(tmp_path: Path) -> None:
    """A copy whose cm3 value is 10% larger (77.39809 cm3 vs 70361.9 mm3): CourseError naming both values and units."""
    folder = tmp_path / "reports"
    ds = pydicom.dcmread(DCMQI_LIVER)
    numeric(ds, "Measurements group 1", ("SCT", "118565006"), "cm3").NumericValue = "77.39809"
    folder.mkdir()
    ds.save_as(folder / DCMQI_LIVER.name)
    with pytest.raises(CourseError) as caught:
        read_sr_course(folder)
    message = str(caught.value)
    assert DCMQI_LIVER.name in message, message
    words = prose(message, folder)
    assert re.search(r"70361\.9", words) and re.search(r"77\.398", words), message
    assert "mm3" in words and "cm3" in words, message


def test_cli_liver_volumes_that_disagree_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    """The same disagreeing copy through `assess --criteria rano2 --volumetric`: exit 2, both values on stderr."""
    folder = tmp_path / "reports"
    ds = pydicom.dcmread(DCMQI_LIVER)
    numeric(ds, "Measurements group 1", ("SCT", "118565006"), "cm3").NumericValue = "77.39809"
    folder.mkdir()
    ds.save_as(folder / DCMQI_LIVER.name)
    result = runner.invoke(app, ["assess", str(folder), "--criteria", "rano2", "--volumetric"])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    words = prose(result.stderr, folder)
    assert re.search(r"70361\.9", words) and re.search(r"77\.398", words), result.stderr


# --------------------------------------------------------------------------- volume-only reports


@pytest.fixture(params=["dcmqi_volume_only"])
def volume_only_folder(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, dict[str, float]]:
    """A folder of volume-only reports at three time points, and the expected sum of volumes per date (mm3).

    ``dcmqi_volume_only``: the three dcmqi-written reports as they are.
    """
    folder = tmp_path / "reports"
    for src in DCMQI_VOLUME_ONLY:
        copy_report(src, folder)
    return folder, VOLUME_SUMS_MM3[request.param]


def test_volume_only_reports_give_a_course_of_volumes(volume_only_folder: tuple[Path, dict[str, float]]) -> None:
    """Volumes in ml become volume_mm3 (x 1000); no lengths are invented; the same lesions at every time point."""
    folder, sums = volume_only_folder
    result = read_sr_course(folder)
    assert result.volume_only
    course = result.course
    course_from_dict(course, source=str(folder))
    assert [tp["date"] for tp in course["timepoints"]] == list(sums)
    names = [t["lesion"] for t in course["timepoints"][0]["target"]]
    assert names and len(set(names)) == len(names)
    for date, expected in sums.items():
        tp = timepoint(course, date)
        assert [t["lesion"] for t in tp["target"]] == names
        assert all(t["long_axis_mm"] is None and t["short_axis_mm"] is None for t in tp["target"])
        # Tolerance 1e-6 mm3: ml -> mm3 is a factor of 1000 on values with <= 4 decimals.
        assert sum(t["volume_mm3"] for t in tp["target"]) == pytest.approx(expected, abs=1e-6)
        assert tp["new_lesions"] == []


def test_cli_recist_on_volume_only_reports_names_the_volumetric_criteria(
        runner: CliRunner, volume_only_folder: tuple[Path, dict[str, float]]) -> None:
    """`assess --criteria recist` on volume-only reports: exit 2, the error says they hold volumes only and names
    the criteria that can assess them (rano2 / mrano with --volumetric); never "non-target disease only"."""
    folder, _ = volume_only_folder
    result = runner.invoke(app, ["assess", str(folder), "--criteria", "recist"])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    error = prose(result.stderr, folder)
    assert re.search(r"volumes? only|only volumes?", error, re.IGNORECASE), error
    assert "rano2" in error and "mrano" in error and "--volumetric" in error, error
    assert "non-target disease only" not in result.stdout + error


@pytest.mark.parametrize("criterion", ["rano2", "mrano"])
def test_cli_volumetric_criteria_give_calls_on_volume_only_reports(
        runner: CliRunner, volume_only_folder: tuple[Path, dict[str, float]], criterion: str) -> None:
    """`assess --criteria rano2|mrano --volumetric --json`: the volumes are the burden and the calls follow them.

    Second scan about -70% (PR: >= 65% decrease, Wen 2023 / Ellingson 2017); third about +50% from that nadir
    (PD: >= 40% increase; mRANO's first PD is preliminary, hence "PD" in the call). Sums to 0.01 mm3, the JSON's
    rounding.
    """
    folder, sums = volume_only_folder
    out = assess_json(runner, folder, "--criteria", criterion, "--volumetric")
    assert out["criterion"] == criterion
    rows = out["timepoints"]
    assert [row["date"] for row in rows] == list(sums)
    assert [row["sum_volume_mm3"] for row in rows] == pytest.approx(list(sums.values()), abs=0.01)
    baseline, second, third = rows
    assert baseline["response"] is None
    assert second["response"] == "PR", second
    assert "PD" in (third["response"] or ""), third
    assert all("non-target disease only" not in row["reason"] for row in rows)


# --------------------------------------------------------------------------- anatomical structures


@pytest.fixture()
def highdicom_folder(tmp_path: Path) -> Path:
    """The highdicom report (2004-01-19) and a follow-up made from it with :func:`follow_up` (2004-03-15).

    Follow-up: nodule 6.0 mm (-40%: RECIST PR), aorta 35.0 mm, vertebra 260 mm3. Were the aorta a target the
    sum would go from 30 to 41 mm (+36.7%, +11 mm: PD); it is not, so the call is the nodule's.
    """
    folder = tmp_path / "reports"
    copy_report(HIGHDICOM, folder, "baseline.dcm")
    follow_up(HIGHDICOM, folder / "follow-up.dcm", "20040315", {
        ("LungNodule0001", ("SCT", "81827009"), "mm"): "6.0",
        ("Aorta0001", ("SCT", "81827009"), "mm"): "35.0",
        ("Vertebra0001", ("SCT", "118565006"), "mm3"): "260.0",
    })
    return folder


def test_anatomical_structure_is_not_a_target_and_is_in_the_notes(tmp_path: Path) -> None:
    """highdicom's report as published: the aorta (Finding category Anatomical structure, SCT 91723000) and the
    vertebra are not lesions; the lung nodule (10.0 mm) is the only target; the notes name the aorta."""
    folder = tmp_path / "reports"
    copy_report(HIGHDICOM, folder)
    result = read_sr_course(folder)
    course = result.course
    (baseline,) = course["timepoints"]
    assert [t["lesion"] for t in baseline["target"]] == ["LungNodule0001"]
    (nodule,) = baseline["target"]
    assert nodule["long_axis_mm"] == pytest.approx(10.0, rel=1e-9)  # copied, no conversion
    assert nodule["organ"].lower() == "lung"
    assert not {"Aorta0001", "Vertebra0001", "Image0001"} & lesion_names(course)
    assert not any(v == pytest.approx(20.0) for t in baseline["target"] for v in numbers(t))
    assert not result.volume_only
    assert noted(r"aorta", result.notes, folder), result.notes
    assert noted(r"vertebra", result.notes, folder), result.notes


def test_anatomical_structure_is_not_followed_over_time(highdicom_folder: Path) -> None:
    """With the follow-up: still one target (6.0 mm at the second scan); the aorta is no new lesion either."""
    course = read_sr_course(highdicom_folder).course
    assert [tp["date"] for tp in course["timepoints"]] == ["2004-01-19", "2004-03-15"]
    second = timepoint(course, "2004-03-15")
    assert [(t["lesion"], t["long_axis_mm"]) for t in second["target"]] == [("LungNodule0001", pytest.approx(6.0))]
    assert second["new_lesions"] == []
    assert not {"Aorta0001", "Vertebra0001"} & lesion_names(course)


def test_cli_anatomical_structure_does_not_change_the_call(runner: CliRunner, highdicom_folder: Path) -> None:
    """`assess --criteria recist --json`: SOD 10.0 -> 6.0 mm, PR (RECIST 1.1 sec. 4.3.1: >= 30% decrease).

    Sums to 0.01 mm (the JSON's rounding). With the aorta counted it would be 30 -> 41 mm and PD.
    """
    out = assess_json(runner, highdicom_folder, "--criteria", "recist")
    rows = out["timepoints"]
    assert [row["sum_mm"] for row in rows] == pytest.approx([10.0, 6.0], abs=0.01)
    assert [row["response"] for row in rows] == [None, "PR"]
