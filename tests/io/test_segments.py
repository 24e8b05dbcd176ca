"""Which segments of a reader's segmentation are lesions, and each segment as its own mask."""

from __future__ import annotations

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
