"""Which segments of a reader's segmentation are lesions, and each segment as its own mask."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from imaging.io.segments import lesion_segment


@pytest.mark.parametrize(
    ("name", "kind", "category", "include", "exclude", "lesion"),
    [
        ("GTV", "GTV", "", (), (), True),
        ("tumour", "", "", (), (), True),  # an RT ROI with no type: nothing says it is not a lesion
        ("Brainstem", "ORGAN", "", (), (), False),
        ("Optic chiasm", "AVOIDANCE", "", (), (), False),
        ("PTV 60", "PTV", "", (), (), False),  # a planning margin, not the tumour
        ("Edema", "", "", (), ("edema*", "oedema*"), False),
        ("EDEMA_T2", "", "", (), ("edema*",), False),  # case-insensitive
        ("L1", "Neoplasm", "Morphologically Abnormal Structure", (), (), True),
        ("Right lung", "Lung", "Anatomical Structure", (), (), False),
        ("Liver", "Liver", "Anatomical Structure", ("liver",), (), True),  # included by name, whatever its type
        ("L2", "Lesion", "Morphologically Abnormal Structure", ("L1",), (), False),  # include is a list of lesions
        ("Node 4R", "ORGAN", "", ("node*",), (), True),
        ("Node 4R", "", "", ("node*",), ("node 4*",), False),  # exclude wins
    ],
)
def test_lesion_or_not(name, kind, category, include, exclude, lesion):
    ok, why = lesion_segment(name, kind, category, include=include, exclude=exclude)
    assert ok is lesion, why
    assert repr(name) in why  # the reason names the segment


# --- each segment as its own mask, placed by its frames' positions -------------------------------------

def _soft_series(tmp_path):
    from tests.io.test_segrefs import write_ct_study

    files = write_ct_study(tmp_path)["soft5"]
    from imaging.io import group_series, load_series, scan_archive

    (volume,) = [v for v in group_series(scan_archive(tmp_path / "CT" / "soft5").headers)]
    return files, load_series(volume)


def _seg_of(files, pixels, labels, tmp_path):
    """A highdicom SEG of ``pixels`` (slices, rows, columns; value k = segment k) drawn on ``files``."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from tests.io.io_factory import read_sorted

    sources = sorted(read_sorted(files), key=lambda ds: float(ds.ImagePositionPatient[2]))
    descriptions = [hd.seg.SegmentDescription(
        segment_number=k + 1, segment_label=name, segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for k, name in enumerate(labels)]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=90, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="test", manufacturer_model_name="test", software_versions="1",
        device_serial_number="1", omit_empty_frames=True)
    # SpacingBetweenSlices is optional in a SEG (Pixel Measures); without it the frames alone do not tell
    # the spacing, which is what makes placing frames by their own positions necessary.
    for group in seg.SharedFunctionalGroupsSequence:
        for measures in group.get("PixelMeasuresSequence", []):
            if "SpacingBetweenSlices" in measures:
                del measures.SpacingBetweenSlices
    path = tmp_path / "seg.dcm"
    seg.save_as(path)
    return path


def test_a_segment_that_skips_a_slice_stays_on_the_slices_it_was_drawn_on(tmp_path):
    """Frames on slices 3 and 5 only (nothing on 4): a SEG's frames alone suggest a 10 mm spacing; placed by
    their positions on the 5 mm image, the segment is on slices 3 and 5, not resampled onto 3-6."""
    import SimpleITK as sitk

    from imaging.io.segments import read_segment_masks

    files, image = _soft_series(tmp_path)
    pixels = np.zeros((12, 16, 16), dtype=np.uint8)
    pixels[3, 4:9, 4:8] = 1
    pixels[5, 4:9, 4:8] = 1
    (mask,), problems = read_segment_masks(_seg_of(files, pixels, ["L1"], tmp_path), image, [1])
    on = sitk.GetArrayFromImage(mask.mask) > 0
    assert mask.n_voxels == 2 * 5 * 4 and problems == []
    assert sorted(set(np.nonzero(on)[0].tolist())) == [3, 5]
    assert np.array_equal(on[3], pixels[3] > 0)


def test_overlapping_segments_each_keep_their_own_voxels(tmp_path):
    """A small segment inside a large one: both read whole (a label map would let one hide the other)."""
    import SimpleITK as sitk

    from imaging.io.segments import read_segment_masks

    files, image = _soft_series(tmp_path)
    pixels = np.zeros((12, 16, 16, 2), dtype=np.uint8)
    pixels[4:7, 3:12, 3:12, 1] = 1  # 'Edema': 3 x 9 x 9
    pixels[5, 6:9, 6:9, 0] = 1  # 'GTV' inside it: 1 x 3 x 3
    masks, _ = read_segment_masks(_seg_of(files, pixels, ["GTV", "Edema"], tmp_path), image, [1, 2])
    assert [m.n_voxels for m in masks] == [9, 243]
    gtv, edema = (sitk.GetArrayFromImage(m.mask) > 0 for m in masks)
    assert np.all(edema[gtv])


def test_a_segmentation_that_does_not_fit_its_image_is_refused(tmp_path):
    """The image lost its last slices (an incomplete export): the segment's pixels there are not dropped silently."""
    from imaging.io import MaskError, group_series, load_series, scan_archive
    from imaging.io.segments import read_segment_masks

    files, _ = _soft_series(tmp_path)
    pixels = np.zeros((12, 16, 16), dtype=np.uint8)
    pixels[9:12, 4:9, 4:8] = 1
    seg = _seg_of(files, pixels, ["L1"], tmp_path)
    ordered = sorted(files, key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))
    for f in ordered[10:]:
        f.unlink()
    (volume,) = group_series(scan_archive(tmp_path / "CT" / "soft5").headers)
    with pytest.raises(MaskError, match="outside the image"):
        read_segment_masks(seg, load_series(volume), [1])
