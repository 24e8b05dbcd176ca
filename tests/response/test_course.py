"""The course file: validation at the boundary, loaders, baseline choice, purity of the package."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from imaging.response import (
    CRITERIA,
    Course,
    CourseError,
    TargetLesion,
    Timepoint,
    assess,
    course_from_dict,
    load_course,
)
from tests.response.factory import START, calls, course, day, tp, week

VALID = {
    "context": {"treatment_start": "2024-01-08", "radiotherapy_end": None, "immunotherapy": False},
    "timepoints": [
        {"date": "2024-01-02", "target": [{"lesion": "T1", "organ": "lung", "long_axis_mm": 31.5}],
         "non_target": [{"lesion": "NT1", "organ": "liver", "status": "present"}]},
        {"date": "2024-02-19", "target": [{"lesion": "T1", "organ": "lung", "long_axis_mm": 20.0}],
         "non_target": [{"lesion": "NT1", "status": "present"}]},
        {"date": "2024-04-01", "target": [{"lesion": "T1", "organ": "lung", "long_axis_mm": 21.0}],
         "non_target": [{"lesion": "NT1", "status": "present"}]},
    ],
}


def _with(path, value):
    data = copy.deepcopy(VALID)
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


ERRORS = [
    ("negative_size", _with(["timepoints", 2, "target", 0, "long_axis_mm"], -3),
     "timepoint 3 (2024-04-01): target[T1].long_axis_mm: must be >= 0, got -3"),
    ("dates_not_increasing", _with(["timepoints", 2, "date"], "2024-02-19"),
     "timepoint 3 (2024-02-19): date: dates must be strictly increasing"),
    ("unknown_status", _with(["timepoints", 1, "non_target", 0, "status"], "bigger"),
     "timepoint 2 (2024-02-19): non_target[NT1].status: must be one of"),
    ("unknown_key", _with(["timepoints", 1, "target", 0, "diameter"], 3),
     "timepoint 2 (2024-02-19): target[T1].diameter: unknown key"),
    ("missing_context_key", _with(["context", "immunotherapy"], KeyError), "context.immunotherapy: required field is missing"),
    ("unknown_t2_flair", _with(["timepoints", 1, "clinical"], {"t2_flair": "worse"}), "clinical.t2_flair: must be one of"),
    ("negative_steroids", _with(["timepoints", 1, "clinical"], {"steroid_dose_mg": -1}), "clinical.steroid_dose_mg: must be >= 0"),
    ("duplicate_ids", _with(["timepoints", 1, "non_target"], [{"lesion": "T1"}]),
     "timepoint 2 (2024-02-19): non_target[T1].lesion: duplicate lesion id 'T1'"),
    ("no_timepoints", _with(["timepoints"], []), "timepoints: must not be empty"),
    ("nan", _with(["timepoints", 1, "target", 0, "long_axis_mm"], float("nan")), "must be a finite number"),
]


@pytest.mark.parametrize("case_id, data, message", ERRORS, ids=[e[0] for e in ERRORS])
def test_validation_errors_name_timepoint_and_field(case_id, data, message):
    with pytest.raises(CourseError) as info:
        course_from_dict(data, source="p.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("p.yaml: ")


def test_course_error_is_value_error():
    assert issubclass(CourseError, ValueError)


def test_direct_construction_raises_course_error():
    with pytest.raises(CourseError, match=r"target\[A\]\.long_axis_mm: must be >= 0"):
        Timepoint(date="2024-01-01", target=[{"lesion": "A", "long_axis_mm": -1}])
    with pytest.raises(CourseError):
        TargetLesion(lesion="A", split_from="B", coalesced_into="C")


def test_unknown_criterion_lists_valid_ones():
    with pytest.raises(CourseError) as info:
        assess(course_from_dict(VALID), "who")
    for name in CRITERIA:
        assert name in str(info.value)


def test_criteria_names():
    assert CRITERIA == ("recist", "irecist", "rano", "rano2", "mrano", "irano", "ranobm", "irrc", "ranolgg")


def test_load_yaml_and_json_patient_id_from_stem(tmp_path):
    import yaml

    yaml_path = tmp_path / "P007.yaml"
    yaml_path.write_text(yaml.safe_dump(VALID))
    json_path = tmp_path / "P008.json"
    json_path.write_text(json.dumps(VALID))
    a, b = load_course(yaml_path), load_course(json_path)
    assert isinstance(a, Course) and a.patient_id == "P007" and b.patient_id == "P008"
    assert a.timepoints == b.timepoints
    assert a.timepoints[0].date.isoformat() == "2024-01-02"


def test_yaml_dates_unquoted(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "context: {treatment_start: 2024-01-08, radiotherapy_end: null, immunotherapy: false}\n"
        "timepoints:\n  - date: 2024-01-02\n    target: [{lesion: T1, long_axis_mm: 20}]\n"
    )
    assert load_course(path).context.treatment_start == START


def test_load_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("context: [unclosed\n")
    with pytest.raises(CourseError, match="bad.yaml: not valid YAML"):
        load_course(path)
    with pytest.raises(CourseError, match="cannot read"):
        load_course(tmp_path / "missing.yaml")


def test_explicit_patient_id_kept(tmp_path):
    path = tmp_path / "file.json"
    path.write_text(json.dumps({**VALID, "patient_id": "X1"}))
    assert load_course(path).patient_id == "X1"


def test_follow_up_lesion_unknown_at_baseline_is_an_error():
    with pytest.raises(CourseError, match=r"timepoint 2 \(.*\): target\[T9\]: not a lesion of the baseline"):
        assess(course(tp(day(-3), T1=30), tp(week(6), T1=30, T9=12)), "recist")


def test_new_lesions_at_baseline_are_an_error():
    with pytest.raises(CourseError, match="new lesions at the baseline"):
        assess(course({**tp(day(-3), T1=30), "new_lesions": [{"lesion": "N1"}]}), "recist")


# ---- baseline choice (course-format.md) -------------------------------------------------------

def test_baseline_is_last_scan_on_or_before_treatment_start():
    result = assess(course(tp(day(-60), T1=20), tp(day(0), T1=30), tp(week(6), T1=30)), "recist")
    pre, base, follow = result.timepoints
    assert pre.response is None and "pre_baseline" in pre.flags and pre.days_since_baseline == -60
    assert base.response is None and "baseline" in base.flags and result.baseline_date.isoformat() == day(0)
    assert follow.response == "SD"


def test_no_scan_before_treatment_start_uses_first():
    result = assess(course(tp(day(3), T1=30), tp(week(6), T1=30)), "recist")
    assert result.baseline_date.isoformat() == day(3)
    assert "no scan on or before treatment start" in result.timepoints[0].reason


def test_one_row_per_input_timepoint_in_order():
    c = course(tp(day(-60), T1=20), tp(day(-3), T1=30), tp(week(6), T1=30), tp(week(12), T1=30))
    result = assess(c, "recist")
    assert [row.date for row in result.timepoints] == [t.date for t in c.timepoints]
    assert calls(result) == ["SD", "SD"]


# ---- purity ------------------------------------------------------------------------------------

def test_package_imports_no_imaging_library():
    code = (
        "import sys, imaging.response\n"
        "banned = ('numpy', 'SimpleITK', 'nibabel', 'pydicom', 'skimage', 'scipy', 'radiomics', 'torch', 'torchio')\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in banned)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_options_frozen_and_checked():
    import dataclasses

    from imaging.response import AssessmentOptions

    options = AssessmentOptions()
    assert (options.confirmation_min_weeks, options.sd_min_weeks, options.irecist_confirm_window_weeks,
            options.rano_pseudoprogression_window_weeks, options.rano2_volumetric) == (4, 6, (4, 8), 12, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.sd_min_weeks = 8  # type: ignore[misc]
    with pytest.raises(CourseError, match="irecist_confirm_window_weeks"):
        AssessmentOptions(irecist_confirm_window_weeks=(8, 4))
    with pytest.raises(CourseError, match="sd_min_weeks"):
        AssessmentOptions(sd_min_weeks=-1)


def test_assess_needs_a_course():
    with pytest.raises(CourseError, match="expected a Course"):
        assess({"context": {}}, "recist")  # type: ignore[arg-type]


@pytest.mark.parametrize("criterion", CRITERIA)
def test_every_criterion_gives_the_contract_shape(criterion):
    c = course(tp(day(-3), T1={"long_axis_mm": 30, "perpendicular_mm": 25, "volume_mm3": 9000}),
               tp(week(6), T1={"long_axis_mm": 20, "perpendicular_mm": 18, "volume_mm3": 3000}))
    out = assess(c, criterion).to_dict()
    assert out["criterion"] == criterion and out["patient_id"] == "TEST"
    assert len(out["timepoints"]) == 2
    for row in out["timepoints"]:
        assert {"date", "response", "flags", "reason", "sum_mm", "change_from_baseline_pct", "change_from_nadir_pct",
                "days_since_baseline"} <= set(row)
    assert {"response", "reason"} <= set(out["best_overall_response"])


def test_a_baseline_target_missing_at_a_follow_up_is_an_error():
    """Issue 8: an omitted target is ambiguous (gone? not looked at?): the error says how to write each."""
    import pytest as _pytest

    from imaging.response import CourseError
    from tests.response.factory import course, day, tp, week

    B = day(-3)  # baseline, before treatment start

    with _pytest.raises(CourseError, match=r"timepoint 2 .*target\[T2\]: baseline target 'T2' is missing at this scan; "
                                           r"give long_axis_mm: 0 if it has disappeared, null if it was not evaluated"):
        course(tp(B, T1=30, T2=20), tp(week(6), T1=28))
    # written explicitly, both readings are accepted
    course(tp(B, T1=30, T2=20), tp(week(6), T1=28, T2=None))
    course(tp(B, T1=30, T2=20), tp(week(6), T1=28, T2=0))
