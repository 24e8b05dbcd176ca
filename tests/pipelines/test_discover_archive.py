"""Discovery on an archive with segmentations inside: which read of a series is used."""

from __future__ import annotations

import pytest

from pipelines.config import DatasetConfig
from pipelines.dataset.discover import discover
from tests.io.test_segrefs import make_seg, write_ct_study

pytest.importorskip("highdicom")


def _archive(tmp_path, whens):
    files = write_ct_study(tmp_path)
    for k, when in enumerate(whens):
        make_seg(files["soft5"], when=when, labels=("L1",)).save_as(tmp_path / f"seg{k}.dcm")
    return DatasetConfig(root=tmp_path, segmentations={"source": "archive"})


def test_the_newest_read_is_used_and_the_older_named(tmp_path):
    found = discover(_archive(tmp_path, [("20240110", "101500"), ("20240112", "090000")]))
    (tp,) = found.patients["P1"]
    assert tp.problem is None and tp.segmentation.path.name == "seg1.dcm"
    assert tp.lesion_segments == ((1, 1, "L1"),)
    assert any("seg0.dcm" in n and "is the newest" in n for n in found.problems)


def test_two_reads_with_the_same_date_and_time_are_not_guessed(tmp_path):
    found = discover(_archive(tmp_path, [("20240110", "101500"), ("20240110", "101500")]))
    (tp,) = found.patients["P1"]
    assert tp.problem is not None and "same content date and time" in tp.problem
    assert "seg0.dcm" in tp.problem and "seg1.dcm" in tp.problem
