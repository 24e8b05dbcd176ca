"""Lesions from label maps (labels or connected components, minimum size) and lesion metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from imaging.segmentation import (
    LesionMetadata,
    LesionMetadataError,
    lesion_label_map,
    lesion_metadata_from_mapping,
    load_lesion_metadata,
)
from tests.data_factory import make_image


def _map() -> sitk.Image:
    a = np.zeros((4, 20, 20), dtype=np.uint16)
    a[1:3, 2:8, 2:8] = 3  # 72 voxels
    a[1, 12:14, 12:14] = 5  # 4 voxels: a speck
    a[0:4, 15:19, 2:6] = 3  # 64 voxels, same label, not connected to the first
    return make_image(a, (0.5, 0.5, 2.0), (1.0, 2.0, 3.0), np.eye(3))


def test_labels_mode_keeps_ids_and_drops_specks():
    out = lesion_label_map(_map(), mode="labels", min_volume_mm3=2.0)  # voxel 0.5 mm3: the 4-voxel speck is 2 mm3
    assert sorted(np.unique(sitk.GetArrayViewFromImage(out))) == [0, 3, 5]
    out = lesion_label_map(_map(), mode="labels", min_volume_mm3=2.5)
    assert sorted(np.unique(sitk.GetArrayViewFromImage(out))) == [0, 3]
    assert out.GetSpacing() == (0.5, 0.5, 2.0) and out.GetOrigin() == (1.0, 2.0, 3.0)


def test_components_mode_numbers_by_decreasing_size():
    out = sitk.GetArrayFromImage(lesion_label_map(_map(), mode="components", min_volume_mm3=10.0))
    assert sorted(np.unique(out)) == [0, 1, 2]
    assert np.count_nonzero(out == 1) == 72 and np.count_nonzero(out == 2) == 64


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="unknown lesion mode"):
        lesion_label_map(_map(), mode="blobs")  # type: ignore[arg-type]


def test_metadata_from_json_and_yaml(tmp_path):
    data = {"1": {"lesion_id": "L1", "organ": "lung", "nodal": False, "target": True}, "2": {"lesion_id": "N1", "nodal": True}}
    (tmp_path / "lesions.json").write_text(json.dumps(data))
    (tmp_path / "lesions.yaml").write_text("1: {lesion_id: L1, organ: lung, nodal: false, target: true}\n2: {lesion_id: N1, nodal: true}\n")
    for name in ("lesions.json", "lesions.yaml"):
        meta = load_lesion_metadata(tmp_path / name)
        assert meta == {1: LesionMetadata("L1", "lung", False, True), 2: LesionMetadata("N1", "unknown", True, None)}
    assert load_lesion_metadata(tmp_path / "absent.json") == {}
    assert load_lesion_metadata(None) == {}


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"x": {"lesion_id": "L1"}}, "key 'x' is not a label value"),
        ({"0": {"lesion_id": "L1"}}, "label 0: label values start at 1"),
        ({"1": {"organ": "lung"}}, "label 1: lesion_id: field required"),
        ({"1": {"lesion_id": "L1", "size": 3}}, "label 1: size: unknown field"),
        ({"1": {"lesion_id": "L1", "nodal": "yes"}}, "label 1: nodal: expected bool"),
        ({"1": {"lesion_id": "L1", "target": 1}}, "label 1: target: expected bool or null"),
        ({"1": {"lesion_id": "L1"}, "2": {"lesion_id": "L1"}}, "lesion_id 'L1' is given to more than one label"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_invalid_metadata_names_the_label_and_field(mapping, message):
    with pytest.raises(LesionMetadataError, match=message):
        lesion_metadata_from_mapping(mapping, source="config lesions.metadata")


def test_unreadable_file(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(LesionMetadataError, match="bad.json: unreadable"):
        load_lesion_metadata(tmp_path / "bad.json")
