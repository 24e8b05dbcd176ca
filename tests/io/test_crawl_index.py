"""Archive crawl and index: any depth, junk survives, series split into volumes, catalogue reuse."""

from __future__ import annotations

import json
import os
import sqlite3

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from imaging.io import (
    CATALOGUE_NAME,
    ArchiveError,
    CatalogueError,
    Geometry,
    group_series,
    load_series,
    read_header,
    scan_archive,
)
from imaging.io import crawl as crawl_module
from pipelines.cli import app
from tests.io.io_factory import save, text_sr, volume_slices, write_datasets

GRID = dict(spacing_xyz=(0.8, 0.8, 2.0), origin_lps=(-10.0, 5.0, 20.0), direction=np.eye(3))


def _vol(seed: int, shape=(5, 8, 9)) -> np.ndarray:
    return np.random.default_rng(seed).integers(-500, 1500, size=shape).astype(np.int16)


def _messy_archive(root):
    """Two patients, a split series, junk, a DICOMDIR, an SR and a truncated file, nested at any depth."""
    a = volume_slices(_vol(1), **GRID, series_uid="1.2.826.0.1.10")
    write_datasets(root / "PAT1" / "study" / "series", a, nested=True)
    b = volume_slices(_vol(2), spacing_xyz=(0.5, 0.5, 3.0), origin_lps=(0, 0, 0), direction=np.eye(3), series_uid="1.2.826.0.1.20")
    for ds in b:
        ds.PatientID = "PAT2"
    write_datasets(root / "x" / "y" / "z", b, seed=1)
    (root / "README.txt").write_text("exported by PACS")
    (root / "x" / "thumbs.db").write_bytes(np.random.default_rng(7).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    (root / "DICOMDIR").write_bytes(b"\x00" * 128 + b"DICM" + b"\x00" * 64)
    save(text_sr(), root / "x" / "report")
    broken = root / "x" / "broken.dcm"
    save(volume_slices(_vol(3)[:1], **GRID)[0], broken)
    broken.write_bytes(broken.read_bytes()[:300])  # header cut short
    (root / "empty").mkdir()
    return a, b


def test_crawl_survives_junk_and_lists_every_skip_with_a_reason(tmp_path):
    a, b = _messy_archive(tmp_path)
    scan = scan_archive(tmp_path)
    assert len(scan.headers) == len(a) + len(b)
    reasons = {p.name: r for p, r in scan.skipped}
    assert set(reasons) == {"README.txt", "thumbs.db", "DICOMDIR", "report", "broken.dcm"}
    assert "not a DICOM file" in reasons["README.txt"]
    assert "DICOMDIR" in reasons["DICOMDIR"]
    assert "Basic Text SR" in reasons["report"]
    assert reasons["broken.dcm"]  # whatever broke, it is said
    volumes = group_series(scan.headers)
    assert [v.patient_id for v in volumes] == ["PAT2", "TEST001"] or {v.patient_id for v in volumes} == {"PAT2", "TEST001"}
    pat1 = next(v for v in volumes if v.series_uid == "1.2.826.0.1.10")
    assert pat1.n_slices == 5 and pat1.problems == ()
    assert pat1.geometry == Geometry.of(load_series(pat1))


def test_missing_archive_is_an_error(tmp_path):
    with pytest.raises(ArchiveError, match="not a folder"):
        scan_archive(tmp_path / "nope")


def _split_series(tmp_path, **per_slice):
    """One SeriesInstanceUID whose slices differ by the given attribute, 4 slices per value."""
    slices = []
    for value in per_slice["values"]:
        vol = volume_slices(_vol(int(value) if isinstance(value, int) else 5), **GRID, series_uid="1.2.826.0.1.77",
                            study_uid="1.2.826.0.1.7", extra={per_slice["attr"]: value})
        slices.extend(vol)
    write_datasets(tmp_path, slices)
    return group_series(scan_archive(tmp_path).headers)


@pytest.mark.parametrize(
    "attr, values, names",
    [
        ("EchoNumbers", [1, 2], ["1.2.826.0.1.77#echo1", "1.2.826.0.1.77#echo2"]),
        ("TemporalPositionIdentifier", [1, 2, 3], ["1.2.826.0.1.77#t1", "1.2.826.0.1.77#t2", "1.2.826.0.1.77#t3"]),
        ("AcquisitionNumber", [3, 4], ["1.2.826.0.1.77#acq3", "1.2.826.0.1.77#acq4"]),
    ],
)
def test_a_series_mixing_volumes_is_split_and_named(tmp_path, attr, values, names):
    volumes = _split_series(tmp_path, attr=attr, values=values)
    assert [v.volume_id for v in volumes] == names
    for v in volumes:
        assert v.n_slices == 5 and v.geometry is not None
        assert any("series split into volumes" in p for p in v.problems)
        image = load_series(v)  # each loads alone
        assert image.GetSize() == (9, 8, 5)


def test_acquisition_numbers_along_one_regular_stack_are_not_split(tmp_path):
    slices = volume_slices(_vol(1, (8, 8, 9)), **GRID, series_uid="1.2.826.0.1.78")
    for k, ds in enumerate(slices):
        ds.AcquisitionNumber = 1 if k < 4 else 2  # e.g. two table positions of one helical scan
    write_datasets(tmp_path, slices)
    (volume,) = group_series(scan_archive(tmp_path).headers)
    assert volume.volume_id == "1.2.826.0.1.78" and volume.n_slices == 8


def test_orientations_and_sizes_are_split(tmp_path):
    axial = volume_slices(_vol(1), **GRID, series_uid="1.2.826.0.1.80", study_uid="1.2.826.0.1.8")
    coronal_dir = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])
    coronal = volume_slices(_vol(2, (3, 8, 9)), spacing_xyz=(1.0, 1.0, 5.0), origin_lps=(0, -30, 40), direction=coronal_dir,
                            series_uid="1.2.826.0.1.80", study_uid="1.2.826.0.1.8")
    small = volume_slices(_vol(3, (4, 6, 6)), spacing_xyz=(2.0, 2.0, 2.0), origin_lps=(0, 0, 100), direction=np.eye(3),
                          series_uid="1.2.826.0.1.81", study_uid="1.2.826.0.1.8")
    small_b = volume_slices(_vol(4, (4, 7, 7)), spacing_xyz=(2.0, 2.0, 2.0), origin_lps=(0, 0, 200), direction=np.eye(3),
                            series_uid="1.2.826.0.1.81", study_uid="1.2.826.0.1.8")
    write_datasets(tmp_path, axial + coronal + small + small_b)
    ids = [v.volume_id for v in group_series(scan_archive(tmp_path).headers)]
    assert ids == [
        "1.2.826.0.1.80#axial", "1.2.826.0.1.80#coronal", "1.2.826.0.1.81#6x6", "1.2.826.0.1.81#7x7",
    ]


def test_catalogue_rereads_only_changed_files(tmp_path, monkeypatch):
    archive = tmp_path / "archive"
    a, b = _messy_archive(archive)
    calls = []
    real = crawl_module.read_header
    monkeypatch.setattr(crawl_module, "read_header", lambda p: calls.append(p) or real(p))
    catalogue = tmp_path / "cat.sqlite"

    first = scan_archive(archive, catalogue=catalogue, workers=1)
    n_files = first.n_files
    assert first.n_read == n_files and first.n_cached == 0
    assert len(calls) == n_files - 1  # the DICOMDIR is skipped by name, never parsed

    calls.clear()
    second = scan_archive(archive, catalogue=catalogue, workers=1)
    assert (second.n_read, second.n_cached, len(calls)) == (0, n_files, 0)
    assert [h.sop_uid for h in second.headers] == [h.sop_uid for h in first.headers]
    assert second.headers == first.headers  # the catalogue round-trips every header field
    assert [(p, r) for p, r in second.skipped] == [(p, r) for p, r in first.skipped]

    # Touch one file (mtime), rewrite another (size), delete a third: only the first two are read.
    changed = sorted(archive.rglob("*.dcm"))[0]
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    (archive / "README.txt").write_text("exported by PACS, twice")
    removed = next(h.path for h in second.headers if h.path != changed)
    removed.unlink()
    calls.clear()
    third = scan_archive(archive, catalogue=catalogue, workers=1)
    assert sorted(p.name for p in calls) == sorted([changed.name, "README.txt"])
    assert third.n_read == 2 and third.n_files == n_files - 1
    rows = sqlite3.connect(catalogue).execute("SELECT COUNT(*) FROM files").fetchone()[0]
    assert rows == n_files - 1


def test_catalogue_refuses_a_foreign_sqlite_file(tmp_path):
    foreign = tmp_path / "mine.sqlite"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE important (x)")
    db.commit()
    db.close()
    with pytest.raises(CatalogueError, match="not a tumor-response catalogue"):
        scan_archive(tmp_path, catalogue=foreign)
    assert sqlite3.connect(foreign).execute("SELECT name FROM sqlite_master").fetchall() == [("important",)]


def test_parallel_crawl_matches_serial(tmp_path, monkeypatch):
    monkeypatch.setattr(crawl_module, "PARALLEL_THRESHOLD", 4)
    slices = volume_slices(_vol(1, (12, 4, 4)), **GRID)
    write_datasets(tmp_path, slices)
    (tmp_path / "junk").write_text("x")
    serial = scan_archive(tmp_path, workers=1)
    parallel = scan_archive(tmp_path, workers=2)
    assert parallel.headers == serial.headers and parallel.skipped == serial.skipped


def test_index_command_json_and_catalogue(tmp_path):
    archive = tmp_path / "archive"
    a, b = _messy_archive(archive)
    runner = CliRunner()
    result = runner.invoke(app, ["index", str(archive), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["catalogue"] == str(archive / CATALOGUE_NAME) and (archive / CATALOGUE_NAME).is_file()
    assert out["skipped"]["count"] == 5 == len(out["skipped"]["files"])
    assert all(f["reason"] for f in out["skipped"]["files"])
    by_series = {v["series_uid"]: v for v in out["volumes"]}
    v = by_series["1.2.826.0.1.20"]
    expected_keys = {"patient_id", "study_uid", "study_date", "series_uid", "modality", "series_description", "n_slices",
                     "size", "spacing_mm", "origin_lps", "direction", "problems"}
    assert expected_keys <= set(v)
    assert v["patient_id"] == "PAT2" and v["modality"] == "CT" and v["study_date"] == "2024-01-02"
    assert v["n_slices"] == 5 and v["size"] == [9, 8, 5]
    np.testing.assert_allclose(v["spacing_mm"], [0.5, 0.5, 3.0], atol=1e-6)
    np.testing.assert_allclose(v["origin_lps"], [0, 0, 0], atol=1e-6)
    assert v["direction"] == [1, 0, 0, 0, 1, 0, 0, 0, 1] and v["problems"] == []
    # The rerun takes every header from the catalogue; the volume table is kept there too.
    again = json.loads(runner.invoke(app, ["index", str(archive), "--json"]).stdout)
    assert again["files"]["read"] == 0 and again["volumes"] == out["volumes"]
    rows = sqlite3.connect(archive / CATALOGUE_NAME).execute("SELECT volume_id FROM volumes").fetchall()
    assert sorted(r[0] for r in rows) == sorted(v["volume_id"] for v in out["volumes"])
    # The human-readable form runs too.
    table = runner.invoke(app, ["index", str(archive), "--no-catalogue"])
    assert table.exit_code == 0 and "1.2.826.0.1.20" in table.stdout and "5 file(s) skipped" in table.stdout


def test_an_unchanged_archive_is_shown_from_the_stored_index_and_any_change_recomputes_it(tmp_path, monkeypatch):
    from pipelines.commands import index as index_module

    archive = tmp_path / "archive"
    _messy_archive(archive)
    runner = CliRunner()
    computed = []
    real = index_module._compute_index
    monkeypatch.setattr(index_module, "_compute_index", lambda scan, tilt: computed.append(tilt) or real(scan, tilt))

    def index(*extra):
        result = runner.invoke(app, ["index", str(archive), "--json", *extra])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    first = index()
    again = index()
    assert len(computed) == 1  # the rerun neither read a header nor grouped a series
    assert again["files"] == {"seen": first["files"]["seen"], "read": 0, "from_catalogue": first["files"]["seen"]}
    assert {k: v for k, v in again.items() if k != "files"} == {k: v for k, v in first.items() if k != "files"}
    # Without a catalogue the same index is computed from the files.
    fresh = json.loads(runner.invoke(app, ["index", str(archive), "--json", "--no-catalogue"]).stdout)
    assert fresh["volumes"] == first["volumes"] and fresh["skipped"] == first["skipped"]
    assert len(computed) == 2

    # Another tilt policy is another index.
    index("--tilt", "refuse")
    assert computed[-1] == "refuse" and len(computed) == 3
    index("--tilt", "refuse")
    assert len(computed) == 3

    # A touched file (mtime only) and a removed one: recomputed, with one header read and the slice gone.
    slices = sorted((archive / "x" / "y" / "z").rglob("*"))
    slices = [p for p in slices if p.is_file()]
    touched, removed = slices[0], slices[1]
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    removed.unlink()
    after = index()
    assert len(computed) == 4 and after["files"]["read"] == 1
    assert after["files"]["seen"] == first["files"]["seen"] - 1
    n_before = {v["series_uid"]: v["n_slices"] for v in first["volumes"]}
    n_after = {v["series_uid"]: v["n_slices"] for v in after["volumes"]}
    assert n_after["1.2.826.0.1.20"] == n_before["1.2.826.0.1.20"] - 1
    # A file added is seen too.
    (archive / "notes.txt").write_text("added later")
    assert any(f["path"].endswith("notes.txt") for f in index()["skipped"]["files"]) and len(computed) == 5


def test_index_command_reports_a_missing_archive(tmp_path):
    result = CliRunner().invoke(app, ["index", str(tmp_path / "nope"), "--no-catalogue"])
    assert result.exit_code == 2 and "not a folder" in result.output


def test_header_without_preamble_is_read(tmp_path):
    """Old exports without the 128-byte preamble and 'DICM' still index."""
    ds = volume_slices(_vol(1)[:1], **GRID)[0]
    del ds.file_meta
    path = tmp_path / "raw"
    ds.save_as(path, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert path.read_bytes()[:2] == b"\x08\x00"  # no preamble, no 'DICM': starts with group 0008
    header = read_header(path)
    assert header.sop_uid == ds.SOPInstanceUID and header.is_image
    image = load_series([path])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image)[0], _vol(1)[0])


def test_folder_symlinks_are_followed_once_and_the_catalogue_is_not_indexed(tmp_path):
    slices = volume_slices(_vol(1), **GRID, series_uid="1.2.826.0.1.90")
    write_datasets(tmp_path / "real", slices)
    (tmp_path / "real" / "loop").symlink_to(tmp_path, target_is_directory=True)  # a link back up the tree
    scan = scan_archive(tmp_path, catalogue=tmp_path / "real" / "my-index.db")
    assert len(scan.headers) == len(slices)  # each file once, the loop not walked again
    again = scan_archive(tmp_path, catalogue=tmp_path / "real" / "my-index.db")
    assert again.n_cached == again.n_files and not any("my-index" in str(p) for p, _ in again.skipped)
