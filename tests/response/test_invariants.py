"""Hypothesis invariants of the engine, for every implemented criterion.

* any valid course is assessed without error, one row per input time point;
* no NaN/inf anywhere in the JSON output;
* adding a new lesion at a follow-up never improves that time point's call nor the best overall response.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imaging.response import AssessmentOptions, assess, course_from_dict
from imaging.response.engine import _assessors

IMPLEMENTED = tuple(_assessors())

#: Worse calls rank higher. NE ranks below any progression.
RANK = {
    "CR": 0, "iCR": 0, "irCR": 0,
    "PR": 1, "iPR": 1, "irPR": 1,
    "SD": 2, "iSD": 2, "irSD": 2, "non-CR/non-PD": 2, "iNN": 2,
    "NE": 3,
    "iUPD": 4, "preliminary PD": 4,
    "PD": 5, "iCPD": 5, "confirmed PD": 5, "irPD": 5,
}

SIZE = st.one_of(
    st.none(),
    st.just(0.0),
    st.just("too_small"),
    st.floats(min_value=0.0, max_value=150.0, allow_nan=False).map(lambda x: round(x, 1)),
)
STATUS = st.sampled_from(["present", "absent", "increase", "unequivocal_progression", "not_evaluated"])


@st.composite
def courses(draw):
    n_targets = draw(st.integers(0, 4))
    n_nt = draw(st.integers(0, 2))
    nodal = [draw(st.booleans()) and i == 0 for i in range(n_targets)]
    start = dt.date(2024, 1, 8)
    pre = draw(st.booleans())
    dates = []
    if pre:
        dates.append(start - dt.timedelta(days=draw(st.integers(20, 90))))
    dates.append(start - dt.timedelta(days=draw(st.integers(0, 10))))
    base_index = len(dates) - 1
    day = dates[-1]
    for _ in range(draw(st.integers(1, 5))):
        day = day + dt.timedelta(days=draw(st.integers(14, 80)))
        dates.append(day)
    rt_end = draw(st.one_of(st.none(), st.just(start - dt.timedelta(days=30))))
    timepoints = []
    new_counter = 0
    for index, date in enumerate(dates):
        baseline = index == base_index
        targets = []
        for i in range(n_targets):
            entry = {"lesion": f"T{i}", "organ": f"o{i % 3}", "nodal": nodal[i]}
            if baseline:
                long_axis = draw(st.floats(10.0, 80.0).map(lambda x: round(x, 1)))
                entry.update(long_axis_mm=long_axis, perpendicular_mm=round(long_axis * 0.8, 1),
                             short_axis_mm=round(max(15.0, long_axis * 0.6), 1), volume_mm3=round(long_axis ** 3 / 2, 1))
            else:
                size = draw(SIZE)
                if size == "too_small":
                    entry["too_small_to_measure"] = True
                else:
                    entry.update(long_axis_mm=size, short_axis_mm=None if size is None else round(size * 0.6, 1),
                                 perpendicular_mm=None if size is None else round(size * 0.8, 1),
                                 volume_mm3=None if size is None else round(size ** 3 / 2, 1))
            targets.append(entry)
        non_targets = [{"lesion": f"NT{i}", "status": "present" if baseline else draw(STATUS)} for i in range(n_nt)]
        new_lesions = []
        if index > base_index:
            for _ in range(draw(st.integers(0, 1))):
                new_counter += 1
                new_lesions.append({"lesion": f"N{new_counter}", "organ": "liver",
                                    "long_axis_mm": draw(st.floats(3.0, 30.0).map(lambda x: round(x, 1))),
                                    "perpendicular_mm": 6.0})
        clinical = {
            "steroid_dose_mg": draw(st.sampled_from([None, 0.0, 2.0, 8.0])),
            "clinically_stable": draw(st.booleans()) if index > base_index else True,
            "t2_flair": draw(st.sampled_from([None, "stable", "increased"])),
            "outside_radiation_field": draw(st.sampled_from([None, True, False])),
            "histologic_confirmation": draw(st.sampled_from([None, True, False])),
        }
        timepoints.append({"date": date.isoformat(), "target": targets, "non_target": non_targets,
                           "new_lesions": new_lesions, "clinical": clinical})
    return {
        "patient_id": "H",
        "context": {"treatment_start": start.isoformat(), "radiotherapy_end": rt_end.isoformat() if rt_end else None,
                    "immunotherapy": draw(st.booleans())},
        "timepoints": timepoints,
    }


def _finite(obj):
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite(v) for v in obj)
    return True


#: More examples with RESPONSE_HYPOTHESIS_EXAMPLES=2000 for a longer search.
SETTINGS = settings(max_examples=int(os.environ.get("RESPONSE_HYPOTHESIS_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("criterion", IMPLEMENTED)
@SETTINGS
@given(data=courses())
def test_any_valid_course_assesses_cleanly(criterion, data):
    course = course_from_dict(data)
    for options in (AssessmentOptions(), AssessmentOptions(rano2_volumetric=True, mrano_volumetric=True)):
        result = assess(course, criterion, options)
        assert len(result.timepoints) == len(course.timepoints)
        out = result.to_dict()
        assert _finite(out)
        json.dumps(out, allow_nan=False)
        for row in result.timepoints[:]:
            assert row.response is None or row.response in RANK, row.response
        assert result.best_overall_response.response in RANK


@pytest.mark.parametrize("criterion", IMPLEMENTED)
@SETTINGS
@given(data=courses(), where=st.integers(0, 10), size=st.floats(5.0, 40.0).map(lambda x: round(x, 1)))
def test_a_new_lesion_never_improves_a_call(criterion, data, where, size):
    course = course_from_dict(data)
    before = assess(course, criterion)
    data = copy.deepcopy(data)
    first = next(i for i, row in enumerate(before.timepoints) if "baseline" in row.flags) + 1
    index = first + where % (len(data["timepoints"]) - first)
    data["timepoints"][index]["new_lesions"] = list(data["timepoints"][index]["new_lesions"]) + [
        {"lesion": "EXTRA", "organ": "bone", "long_axis_mm": size, "perpendicular_mm": size}
    ]
    after = assess(course_from_dict(data), criterion)
    call_before, call_after = before.timepoints[index].response, after.timepoints[index].response
    assert RANK[call_after] >= RANK[call_before], (call_before, call_after)
    if criterion == "irrc":
        # irRC adds new lesions to the burden, so a new lesion at the nadir raises the nadir and can
        # make a later irPD an irSD (Wolchok 2009): the best response is not monotone there.
        return
    bor_before, bor_after = before.best_overall_response.response, after.best_overall_response.response
    assert RANK[bor_after] >= RANK[bor_before], (bor_before, bor_after)
