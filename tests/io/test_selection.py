"""Series selection: the volume to measure in a study as a PACS exports it, and why each other one is not.

End to end on written archives (crawl -> group -> link -> select) for the CT study of
the issue and a brain MR study; unit cases on hand-built volumes for the kernel
classes, contrast, planes, ties and their suggested rules.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from imaging.io import (
    SeriesInfo,
    SeriesRule,
    describe_volume,
    group_series,
    link_segmentations,
    scan_archive,
    select_series,
)
from imaging.io.dicom import OBLIQUE_THRESHOLD_DEG, acquisition_plane
from imaging.io.selection import contrast_state, kernel_class
from tests.io.io_factory import save, volume_slices, write_datasets
from tests.io.test_segrefs import UIDS, make_rtstruct, make_seg, write_ct_study

CT_RULE = SeriesRule(modality=("CT",))
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _ct_volumes(tmp_path):
    paths = write_ct_study(tmp_path)
    scan = scan_archive(tmp_path, workers=1)
    return paths, scan, group_series(scan.headers)


def test_the_5mm_soft_tissue_series_is_chosen_and_every_other_volume_has_its_reason(tmp_path):
    _, _, volumes = _ct_volumes(tmp_path)
    assert len({v.series_uid for v in volumes}) == 5 and len(volumes) == 6  # the localizer: coronal + sagittal volumes
    choice = select_series(volumes, CT_RULE)
    assert choice.error is None and choice.chosen is not None
    assert choice.chosen.series_uid == UIDS["soft5"]
    assert "Abdomen 5.0 B30f" in choice.why and "kernel B30f" in choice.why and "5 mm" in choice.why
    reasons = {v.volume_id: why for v, why in choice.rejected}
    assert len(reasons) == 5 and all(reasons.values())
    assert all("localizer" in why for vid, why in reasons.items() if vid.startswith(UIDS["localizer"]))
    assert "lung/bone/sharp kernel" in reasons[UIDS["lung125"]] and "B70f" in reasons[UIDS["lung125"]]
    assert "derived or secondary" in reasons[UIDS["mip"]]
    assert "secondary capture" in reasons[UIDS["dose"]] and "single slice" in reasons[UIDS["dose"]]


def test_the_volume_fields_for_tables(tmp_path):
    _, _, volumes = _ct_volumes(tmp_path)
    by_uid = {v.volume_id: describe_volume(v) for v in volumes}
    soft = by_uid[UIDS["soft5"]]
    assert soft == {
        "volume_id": UIDS["soft5"], "series_uid": UIDS["soft5"], "series_number": 2, "modality": "CT",
        "description": "Abdomen 5.0 B30f", "image_type": "ORIGINAL\\PRIMARY\\AXIAL", "slice_thickness_mm": 5.0,
        "kernel": "B30f", "kernel_class": "soft", "contrast_agent": "Iomeron 400", "contrast": "yes", "plane": "axial",
        "n_slices": 12, "body_part": "ABDOMEN",
    }
    assert by_uid[UIDS["lung125"]]["slice_thickness_mm"] == 1.25 and by_uid[UIDS["lung125"]]["kernel_class"] == "sharp"
    assert {by_uid[f"{UIDS['localizer']}#{p}"]["plane"] for p in ("coronal", "sagittal")} == {"coronal", "sagittal"}


def test_a_referenced_series_is_chosen_over_a_better_one(tmp_path):
    paths, _, volumes = _ct_volumes(tmp_path)
    choice = select_series(volumes, CT_RULE, referenced={UIDS["lung125"]})
    assert choice.chosen is not None and choice.chosen.series_uid == UIDS["lung125"]
    assert "references" in choice.why
    reasons = {v.volume_id: why for v, why in choice.rejected}
    assert "not the series the segmentation references" in reasons[UIDS["soft5"]]
    # Through the links: a SEG drawn on the 1.25 mm series.
    save(make_seg(paths["lung125"]), tmp_path / "SEG" / "seg.dcm")
    scan = scan_archive(tmp_path, workers=1)
    volumes = group_series(scan.headers)
    links = link_segmentations(volumes, scan.segmentations, scan.headers)
    assert select_series(volumes, CT_RULE, referenced=links.by_series.keys()).chosen.series_uid == UIDS["lung125"]


def test_a_referenced_series_the_policy_refuses_is_an_error(tmp_path):
    _, _, volumes = _ct_volumes(tmp_path)
    choice = select_series(volumes, CT_RULE, referenced={UIDS["mip"]})
    assert choice.chosen is None
    assert "references 1 series that cannot be measured" in choice.error and "MIP 10 mm" in choice.error
    assert "derived or secondary" in choice.error
    missing = select_series(volumes, CT_RULE, referenced={"1.2.3.4.5"})
    assert missing.chosen is None and "not among the 5 series" in missing.error


def test_the_choice_does_not_depend_on_the_order(tmp_path):
    _, _, volumes = _ct_volumes(tmp_path)
    first = select_series(volumes, CT_RULE)
    for seed in range(3):
        shuffled = list(volumes)
        random.Random(seed).shuffle(shuffled)
        again = select_series(shuffled, CT_RULE)
        assert again.chosen == first.chosen and again.why == first.why
        assert sorted((v.volume_id, w) for v, w in again.rejected) == sorted((v.volume_id, w) for v, w in first.rejected)


# ---------------------------------------------------------------------------------------------
# a brain MR study


def _mr(uid: str, number: int, description: str, *, agent: str = "", image_type=("ORIGINAL", "PRIMARY", "M"),
        extra: dict | None = None, n: int = 12, seed: int = 0):
    hu = np.random.default_rng(seed).integers(0, 500, size=(n, 16, 16)).astype(np.int16)
    fields = {"SeriesNumber": number, "SeriesDescription": description, "PatientID": "P2", "ImageType": list(image_type),
              "FrameOfReferenceUID": "1.2.826.0.1.3680043.10.998.9", "SliceThickness": "5"}
    if agent:
        fields["ContrastBolusAgent"] = agent
    return volume_slices(hu, (0.9, 0.9, 5.0), (0, 0, 0), np.eye(3), series_uid=uid, study_uid="1.2.826.0.1.3680043.10.998.1",
                         modality="MR", intercept=0.0, extra={**fields, **(extra or {})})


def _brain_study(root: Path) -> dict[str, list[Path]]:
    """T1, T1 post-contrast, T2, FLAIR, DWI (b0 + b1000 in one series), ADC (DERIVED)."""
    series = {
        "t1": _mr("1.2.826.0.1.3680043.10.998.11", 3, "T1 SE AX", seed=1),
        "t1post": _mr("1.2.826.0.1.3680043.10.998.12", 8, "T1 SE AX +C", agent="Gadovist", seed=2),
        "t2": _mr("1.2.826.0.1.3680043.10.998.13", 4, "T2 TSE AX", seed=3),
        "flair": _mr("1.2.826.0.1.3680043.10.998.14", 5, "FLAIR AX", seed=4),
        "dwi": _mr("1.2.826.0.1.3680043.10.998.15", 6, "DWI b0 b1000", extra={"DiffusionBValue": 0.0}, seed=5)
        + _mr("1.2.826.0.1.3680043.10.998.15", 6, "DWI b0 b1000", extra={"DiffusionBValue": 1000.0}, seed=6),
        "adc": _mr("1.2.826.0.1.3680043.10.998.16", 7, "DWI ADC", image_type=("DERIVED", "PRIMARY", "DIFFUSION", "ADC"), seed=7),
    }
    return {name: write_datasets(root / "MR" / name, ds, seed=k) for k, (name, ds) in enumerate(series.items())}


def test_brain_mr_rtstruct_on_the_post_contrast_t1_decides(tmp_path):
    paths = _brain_study(tmp_path)
    save(make_rtstruct(paths["t1post"]), tmp_path / "RT" / "rt.dcm")
    scan = scan_archive(tmp_path, workers=1)
    volumes = group_series(scan.headers)
    assert len(volumes) == 7 and len({v.series_uid for v in volumes}) == 6  # DWI split by b-value
    links = link_segmentations(volumes, scan.segmentations, scan.headers)
    assert list(links.by_series) == ["1.2.826.0.1.3680043.10.998.12"]
    choice = select_series(volumes, SeriesRule(modality=("MR",)), referenced=links.by_series.keys())
    assert choice.chosen.series_description == "T1 SE AX +C" and "references" in choice.why
    # Without the RTSTRUCT, MR is never guessed: 5 series remain (the ADC is DERIVED); counted in series, not volumes.
    unguided = select_series(volumes, SeriesRule(modality=("MR",)))
    assert unguided.chosen is None and unguided.error.startswith("5 of 6 series remain")
    assert "DWI ADC" not in unguided.error.split(":", 1)[1].split("; they differ")[0]
    reasons = {v.series_description: why for v, why in unguided.rejected}
    assert "derived or secondary" in reasons["DWI ADC"]
    # The rules separate them: contrast required among the T1s.
    by_rule = select_series(volumes, SeriesRule(modality=("MR",), prefer=("*t1*",), contrast="required"))
    assert by_rule.chosen.series_description == "T1 SE AX +C" and by_rule.error is None


def test_two_mr_series_the_rules_cannot_separate_name_a_rule_that_would(tmp_path):
    _brain_study(tmp_path)
    scan = scan_archive(tmp_path, workers=1)
    volumes = group_series(scan.headers)
    choice = select_series(volumes, SeriesRule(modality=("MR",), prefer=("t1*",)), rule_path="dataset.series.measure")
    assert choice.chosen is None
    error = choice.error
    assert error.startswith("2 of 6 series remain")
    assert "series 3 'T1 SE AX'" in error and "series 8 'T1 SE AX +C'" in error
    assert "agent 'Gadovist'" in error and "ImageType ORIGINAL\\PRIMARY\\M" in error and "5 mm" in error
    assert "they differ in contrast, description" in error
    assert "set dataset.series.measure.contrast: required (keeps series 8 'T1 SE AX +C')" in error
    # The suggestion works.
    fixed = select_series(volumes, SeriesRule(modality=("MR",), prefer=("t1*",), contrast="required"))
    assert fixed.chosen.series_description == "T1 SE AX +C"
    forbidden = select_series(volumes, SeriesRule(modality=("MR",), prefer=("t1*",), contrast="forbidden"))
    assert forbidden.chosen.series_description == "T1 SE AX"


# ---------------------------------------------------------------------------------------------
# hand-built volumes


def _vol(uid: str, number: int, description: str, *, modality: str = "CT", kernel: str = "", agent: str = "",
         thickness: float | None = 5.0, n: int = 24, image_type: str = "ORIGINAL\\PRIMARY\\AXIAL", plane: str = "axial",
         volume_id: str = "") -> SeriesInfo:
    return SeriesInfo(
        patient_id="P", study_uid="S", study_date=None, series_uid=uid, modality=modality, series_description=description,
        files=tuple(Path(f"/a/{uid}/{k}") for k in range(n)), slice_thickness_mm=thickness, volume_id=volume_id,
        series_number=number, n_slices=n, image_type=image_type, convolution_kernel=kernel, contrast_agent=agent,
        plane=plane, sop_class_uid=CT_STORAGE if modality == "CT" else MR_STORAGE,
    )


def test_ct_ties_name_the_attribute_that_separates_them():
    a = _vol("1.1", 2, "Abdomen 5.0", kernel="B30f")
    b = _vol("1.2", 3, "Abdomen 5.0 B31f", kernel="B31f")
    choice = select_series([b, a], CT_RULE, rule_path="dataset.series.measure")
    assert choice.chosen is None and choice.error.startswith("2 of 2 series remain")
    assert "set dataset.series.measure.kernel: ['*B30f*'] (keeps series 2 'Abdomen 5.0')" in choice.error
    assert select_series([a, b], SeriesRule(modality=("CT",), kernel=("*B30f*",))).chosen is a
    # Same kernel, thickness differs: the thinnest (<= 5 mm) wins, no tie.
    thin = _vol("1.3", 4, "Abdomen 2.0", kernel="B30f", thickness=2.0)
    assert select_series([a, thin], CT_RULE).chosen is thin
    # Over 5 mm only when nothing is thinner.
    thick = _vol("1.4", 5, "Abdomen 8.0", kernel="B30f", thickness=8.0)
    choice = select_series([thick, a], CT_RULE)
    assert choice.chosen is a and "over 5 mm" in dict((v.volume_id, w) for v, w in choice.rejected)["1.4"]


def test_mr_thickness_tie_suggests_a_range():
    a = _vol("2.1", 3, "T1 AX", modality="MR", thickness=5.0)
    b = _vol("2.2", 4, "T1 AX", modality="MR", thickness=1.0)
    choice = select_series([a, b], SeriesRule(modality=("MR",)))
    assert "they differ in slice thickness" in choice.error
    assert "set rule.slice_thickness_mm: [4, 6] (keeps series 3 'T1 AX')" in choice.error
    assert select_series([a, b], SeriesRule(modality=("MR",), slice_thickness_mm=(4, 6))).chosen is a


def test_identical_series_say_that_nothing_separates_them():
    a = _vol("3.1", 3, "T1 AX", modality="MR")
    b = _vol("3.2", 4, "T1 AX", modality="MR")
    choice = select_series([a, b], SeriesRule())
    assert "nothing the rules look at differs" in choice.error


def test_counts_are_series_not_volumes():
    a1 = _vol("4.1", 3, "T2 dual echo", modality="MR", volume_id="4.1#echo1")
    a2 = _vol("4.1", 3, "T2 dual echo", modality="MR", volume_id="4.1#echo2")
    b = _vol("4.2", 4, "T1", modality="MR")
    choice = select_series([a1, a2, b], SeriesRule())
    assert choice.error.startswith("2 of 2 series remain")
    one = select_series([a1, a2], SeriesRule())
    assert "holds 2 volumes that remain" in one.error and "4.1#echo1" in one.error
    nothing = select_series([_vol("5.1", 1, "scout", n=1), _vol("5.2", 2, "3 plane loc", n=3)], SeriesRule())
    assert nothing.error.startswith("none of the 2 series can be measured")


def test_rule_filters_each_give_their_reason():
    v = _vol("6.1", 2, "Thorax 1.25", kernel="B70f", thickness=1.25, agent="Iomeron", plane="axial")
    rule = SeriesRule(modality=("MR",), reject=("thorax*",), image_type=("PRIMARY", "HELICAL"), contrast="forbidden",
                      kernel=("B3*",), slice_thickness_mm=(3, 6), plane="coronal")
    choice = select_series([v], rule)
    text = choice.rejected[0][1]
    assert choice.error.startswith("none of the 1 series can be measured")
    for part in ("modality CT not in ['MR']", "matches reject pattern 'thorax*'", "lacks HELICAL",
                 "contrast (contrast: forbidden)", "matches none of ['B3*']", "outside [3, 6] mm", "plane axial, not coronal"):
        assert part in text, part


def test_prefer_patterns_are_ordered():
    a = _vol("7.1", 2, "T1 AX POST", modality="MR", agent="Gd")
    b = _vol("7.2", 3, "T1 MPRAGE POST", modality="MR", agent="Gd")
    assert select_series([a, b], SeriesRule(prefer=("*mprage*", "*ax*"))).chosen is b
    assert select_series([a, b], SeriesRule(prefer=("*ax*", "*mprage*"))).chosen is a
    assert select_series([a, b], SeriesRule(prefer=("*flair*", "*ax*"))).chosen is a


@pytest.mark.parametrize(
    "kernel, expected",
    [
        ("B30f", "soft"), ("B31f", "soft"), ("Br40", "soft"), ("Br40d\\3", "soft"), ("Hr38", "soft"), ("I30f\\3", "soft"),
        ("B60f", "sharp"), ("B70f", "sharp"), ("Bl57", "sharp"), ("Br64", "sharp"), ("I70f\\3", "sharp"),
        ("STANDARD", "soft"), ("SOFT", "soft"), ("HD STANDARD", "soft"), ("LUNG", "sharp"), ("BONE", "sharp"),
        ("BONEPLUS", "sharp"), ("DETAIL", "sharp"), ("EDGE", "sharp"),
        ("B", "soft"), ("C", "soft"), ("L", "sharp"), ("D", "sharp"), ("E", "sharp"), ("YB", "sharp"), ("YC", "sharp"),
        ("FC03", "soft"), ("FC13", "soft"), ("FC18", "soft"), ("FC52", "sharp"), ("FC86", "sharp"), ("FL04", "sharp"),
        ("FC30", ""), ("B46f", ""), ("UB", ""), ("", ""), ("XYZ123", ""),
    ],
)
def test_kernel_classes(kernel, expected):
    assert kernel_class(kernel) == expected


@pytest.mark.parametrize(
    "description, agent, expected",
    [
        ("T1 AX POST", "", True), ("T1+C", "", True), ("T1 C+ AX", "", True), ("T1_GAD", "", True), ("T1 Gd", "", True),
        ("ax t1 postcontrast", "", True), ("T1 CE", "", True), ("Venous contrast", "", True),
        ("T1 PRE", "Gadovist", False), ("T1 AX precontrast", "", False), ("CT non-contrast", "", False),
        ("T1 w/o", "", False), ("NATIVE", "", False), ("T1 AX", "Gadovist", True), ("T1 AX", "none", None),
        ("T1 AX", "", None), ("Postural", "", None),
    ],
)
def test_contrast_state(description, agent, expected):
    assert contrast_state(_vol("8.1", 1, description, agent=agent)) is expected


def test_acquisition_plane_threshold():
    def tilted(deg: float) -> tuple[float, ...]:
        t = np.radians(deg)
        return (1.0, 0.0, 0.0, 0.0, float(np.cos(t)), float(np.sin(t)))

    assert OBLIQUE_THRESHOLD_DEG == 15.0
    assert acquisition_plane(tilted(0)) == "axial"
    assert acquisition_plane(tilted(14.5)) == "axial"
    assert acquisition_plane(tilted(15.5)) == "oblique"
    assert acquisition_plane(tilted(80)) == "coronal"
    assert acquisition_plane((0, 1, 0, 0, 0, -1)) == "sagittal"
    assert acquisition_plane(None) == "" and acquisition_plane((0, 0, 0, 0, 0, 0)) == ""


def test_rule_validation():
    with pytest.raises(ValueError, match="plane"):
        SeriesRule(plane="transverse")
    with pytest.raises(ValueError, match="contrast"):
        SeriesRule(contrast="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="slice_thickness_mm"):
        SeriesRule(slice_thickness_mm=(6, 4))
    assert SeriesRule(kernel="B30f").kernel == ("B30f",)  # type: ignore[arg-type]


def test_ct_with_and_without_contrast_is_not_chosen_by_kernel_or_thickness():
    """A native 2 mm and a portal-venous 5 mm series are two examinations: the thinner one is not taken
    for being thinner; the time point is refused with `contrast` as the rule that decides."""
    native = _vol("native", 1, "Abdomen nativ 2.0 B30f", kernel="B30f", thickness=2.0)
    venous = _vol("venous", 2, "Abdomen PV 5.0 B30f", kernel="B30f", thickness=5.0, agent="Iomeron")
    choice = select_series([native, venous], SeriesRule(), rule_path="dataset.series.measure")
    assert choice.chosen is None
    assert "dataset.series.measure.contrast" in choice.error
    picked = select_series([native, venous], SeriesRule(contrast="required"))
    assert picked.chosen is venous
