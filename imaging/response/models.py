"""The patient course: pydantic models of the course file, and its loaders.

The structure mirrors ``course-format.md`` (the contract of ``tumor-response
assess``) field for field; unknown keys are errors. Validation happens here, at
the boundary, and every failure is a :class:`~imaging.response.errors.CourseError`
naming the time point and the field. Inside the engine the models are trusted.

Documented extensions (docs/response.md, "The course file"):

* ``Timepoint.slice_thickness_mm`` (RECIST 1.1, Eisenhauer 2009, sec. 3.1: a lesion is
  measurable when its longest diameter is >= 10 mm, or >= twice the slice thickness when
  slices are thicker than 5 mm);
* ``Context.tumour`` (RANO 2.0, Wen 2023: enhancing, non-enhancing or mixed glioma),
  ``TargetLesion.component`` (which part of a glioma a measurement is of: enhancing on
  T1 post-contrast, or non-enhancing on T2/FLAIR) and ``Clinical.enhancement`` (RANO-LGG,
  van den Bent 2011: "new or increased enhancement").
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from imaging.response.errors import CourseError

NonTargetStatus = Literal["present", "absent", "increase", "unequivocal_progression", "not_evaluated"]
NON_TARGET_STATUSES: tuple[str, ...] = ("present", "absent", "increase", "unequivocal_progression", "not_evaluated")
NewLesionStatus = Literal["increase"]
T2FlairStatus = Literal["stable", "increased"]
#: Contrast enhancement of a (non-enhancing) glioma at a scan, compared with the earlier scans (RANO-LGG,
#: van den Bent 2011: "new or increased enhancement" is progression). ``None``: not assessed.
EnhancementStatus = Literal["none", "stable", "new", "increased"]
#: Which part of a glioma a target measurement is of: the contrast-enhancing tumour (T1 post-contrast) or the
#: non-enhancing tumour (T2/FLAIR). ``None``: the criterion's own (docs/response.md).
TumourComponent = Literal["enhancing", "non_enhancing"]
#: The kind of glioma (RANO 2.0, Wen 2023): enhancing, non-enhancing (e.g. IDH-mutant lower-grade), or mixed.
TumourKind = Literal["enhancing", "non_enhancing", "mixed"]

_SizeMm = float | None


class _Model(BaseModel):
    """Common configuration: unknown keys and non-finite numbers are errors."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        coerce_numbers_to_str=True,
    )

    def __init__(self, **data: Any) -> None:
        # Direct construction gets the same errors as course_from_dict.
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _course_error_from_validation(exc, data, model=type(self).__name__) from None


class TargetLesion(_Model):
    """A lesion measured at one time point (RECIST 1.1 sec. 4.2 / RANO).

    Sizes in mm (``volume_mm3`` in mm3). ``None`` means not evaluated at this
    scan; ``0`` means gone.

    ``component`` (extension, glioma criteria only): ``"enhancing"`` when measured on
    T1 post-contrast, ``"non_enhancing"`` when measured on T2/FLAIR; ``None`` takes
    the criterion's own (T2/FLAIR for RANO-LGG and RANO 2.0 non-enhancing tumours,
    enhancing otherwise). Required on every baseline target for RANO 2.0 with
    ``context.tumour: mixed`` (Wen 2023: both burdens are assessed in parallel).
    """

    lesion: str
    organ: str | None = None
    nodal: bool = False
    long_axis_mm: float | None = Field(default=None, ge=0)
    short_axis_mm: float | None = Field(default=None, ge=0)
    perpendicular_mm: float | None = Field(default=None, ge=0)
    volume_mm3: float | None = Field(default=None, ge=0)
    too_small_to_measure: bool = False
    split_from: str | None = None
    coalesced_into: str | None = None
    component: TumourComponent | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TargetLesion:
        if self.split_from is not None and self.coalesced_into is not None:
            raise CourseError("split_from and coalesced_into cannot both be set", field="split_from")
        if self.split_from == self.lesion:
            raise CourseError(f"a lesion cannot split from itself ({self.lesion})", field="split_from")
        if self.coalesced_into == self.lesion:
            raise CourseError(f"a lesion cannot coalesce into itself ({self.lesion})", field="coalesced_into")
        return self


class NonTargetLesion(_Model):
    """A non-target lesion and its status at one time point (RECIST 1.1 sec. 4.3.3)."""

    lesion: str
    organ: str | None = None
    status: NonTargetStatus = "present"


class NewLesion(_Model):
    """A lesion absent at baseline (RECIST 1.1 sec. 4.3.5; iRECIST NLT/NLNT).

    ``measurable=None`` lets the engine decide from the size rules.
    ``status='increase'`` records growth of a non-measurable new lesion.
    A new lesion listed with ``long_axis_mm: 0`` has resolved. One listed with
    ``long_axis_mm: null`` (nodes: and no short axis) is accepted: present but
    **not measured** at this scan -- not evaluated, never 0 mm (RECIST 1.1,
    Eisenhauer 2009, sec. 4.4.2, as for a target). Every criterion says so at
    that time point: flag ``new_lesion_not_measured`` and a reason naming the
    lesion (:func:`imaging.response.common.unmeasured_new_lesions`).
    """

    lesion: str
    organ: str | None = None
    nodal: bool = False
    measurable: bool | None = None
    long_axis_mm: float | None = Field(default=None, ge=0)
    short_axis_mm: float | None = Field(default=None, ge=0)
    perpendicular_mm: float | None = Field(default=None, ge=0)
    status: NewLesionStatus | None = None


class Clinical(_Model):
    """Clinical information used by the RANO family and by iRECIST.

    ``steroid_dose_mg`` is the dexamethasone-equivalent dose in mg/day
    (``None``: not recorded). ``enhancement`` (extension; RANO-LGG, van den Bent
    2011, and RANO 2.0 for non-enhancing tumours): contrast enhancement compared
    with the earlier scans -- ``"none"``, ``"stable"`` (present, not increased),
    ``"new"`` or ``"increased"``; ``None``: not assessed. ``t2_flair_source`` (extension): which
    source decided ``t2_flair`` (a visits CSV, or the images with the FLAIR burden's figures, as the
    pipeline fills it); the RANO calls' reasons state it.
    """

    steroid_dose_mg: float | None = Field(default=None, ge=0)
    clinically_stable: bool = True
    t2_flair: T2FlairStatus | None = None
    t2_flair_source: str | None = None
    outside_radiation_field: bool | None = None
    histologic_confirmation: bool | None = None
    enhancement: EnhancementStatus | None = None


class Context(_Model):
    """Treatment context of the course; the three keys of course-format.md are required (``null`` allowed for
    radiotherapy_end).

    ``tumour`` (extension, default ``None``): the kind of glioma, for RANO 2.0 (Wen 2023):
    ``"non_enhancing"`` switches ``rano2`` to its rules for non-enhancing tumours (T2/FLAIR
    sums of products, minor response), ``"mixed"`` to its rules for tumours with enhancing and
    non-enhancing parts (both assessed in parallel, then combined); ``None`` or ``"enhancing"``:
    the enhancing-tumour rules.
    """

    treatment_start: dt.date
    radiotherapy_end: dt.date | None
    immunotherapy: bool
    tumour: TumourKind | None = None


class Timepoint(_Model):
    """One scan: what was measured and seen at ``date``."""

    date: dt.date
    target: tuple[TargetLesion, ...] = ()
    non_target: tuple[NonTargetLesion, ...] = ()
    new_lesions: tuple[NewLesion, ...] = ()
    clinical: Clinical = Field(default_factory=Clinical)
    slice_thickness_mm: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _unique_ids(self) -> Timepoint:
        seen: dict[str, str] = {}
        for kind, lesions in (("target", self.target), ("non_target", self.non_target), ("new_lesions", self.new_lesions)):
            for lesion in lesions:
                if lesion.lesion in seen:
                    raise CourseError(
                        f"duplicate lesion id {lesion.lesion!r} (already in {seen[lesion.lesion]})",
                        field=f"{kind}[{lesion.lesion}].lesion",
                    )
                seen[lesion.lesion] = kind
        return self


class Course(_Model):
    """A patient's course: context and time points in strictly increasing date order."""

    patient_id: str | None = None
    context: Context
    timepoints: tuple[Timepoint, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _dates_increasing(self) -> Course:
        for index in range(1, len(self.timepoints)):
            previous, current = self.timepoints[index - 1].date, self.timepoints[index].date
            if current <= previous:
                raise CourseError(
                    f"dates must be strictly increasing, got {current} after {previous}",
                    timepoint_index=index + 1,
                    timepoint_date=current,
                    field="date",
                )
        return self

    @model_validator(mode="after")
    def _baseline_targets_followed(self) -> Course:
        """Every baseline target is accounted for at every later scan.

        A target absent from a follow-up's lists is ambiguous (gone? not looked at?), so
        it is an error: write ``long_axis_mm: 0`` when it has disappeared, ``null`` when it
        was not evaluated (RECIST 1.1 sec. 4.3.2 / 4.4.2 then apply), or list its fragments
        with ``split_from``. Baseline = the last scan on or before treatment_start, else the
        first (course-format.md).
        """
        dates = [tp.date for tp in self.timepoints]
        before = [i for i, d in enumerate(dates) if d <= self.context.treatment_start]
        b = before[-1] if before else 0
        targets = [t.lesion for t in self.timepoints[b].target]
        for index in range(b + 1, len(self.timepoints)):
            tp = self.timepoints[index]
            present = {t.lesion for t in tp.target} | {t.split_from for t in tp.target if t.split_from}
            present |= {n.lesion for n in tp.non_target}
            for lesion in targets:
                if lesion not in present:
                    raise CourseError(
                        f"baseline target {lesion!r} is missing at this scan; give long_axis_mm: 0 if it has "
                        "disappeared, null if it was not evaluated",
                        timepoint_index=index + 1,
                        timepoint_date=tp.date,
                        field=f"target[{lesion}]",
                    )
        return self

    @model_validator(mode="after")
    def _components_consistent(self) -> Course:
        """A target keeps the component it had at baseline (a lesion measured on T2/FLAIR at baseline is not
        measured on T1 post-contrast later): a follow-up entry that names another component is an error."""
        dates = [tp.date for tp in self.timepoints]
        before = [i for i, d in enumerate(dates) if d <= self.context.treatment_start]
        b = before[-1] if before else 0
        at_baseline = {t.lesion: t.component for t in self.timepoints[b].target}
        for index, tp in enumerate(self.timepoints):
            if index == b:
                continue
            for entry in tp.target:
                root = entry.lesion if entry.lesion in at_baseline else entry.split_from
                expected = at_baseline.get(root) if root is not None else None
                if entry.component is not None and expected is not None and entry.component != expected:
                    raise CourseError(
                        f"component {entry.component!r} differs from the baseline's {expected!r} for {root!r}",
                        timepoint_index=index + 1, timepoint_date=tp.date, field=f"target[{entry.lesion}].component",
                    )
        return self


# --------------------------------------------------------------------------- loaders


def course_from_dict(data: Any, source: str | None = None) -> Course:
    """Validate a course given as plain data (the parsed YAML/JSON).

    Parameters
    ----------
    data
        Mapping with ``context`` and ``timepoints`` (and optionally ``patient_id``).
    source
        Where the data came from (a file name), prefixed to error messages.

    Returns
    -------
    Course

    Raises
    ------
    CourseError
        Naming the time point and field of the first problem found.
    """
    if not isinstance(data, dict):
        raise CourseError(f"a course must be a mapping with 'context' and 'timepoints', got {type(data).__name__}", source=source)
    try:
        return Course.model_validate(data)
    except ValidationError as exc:
        raise _course_error_from_validation(exc, data, source=source) from None
    except CourseError as exc:
        raise exc.with_source(source) from None


def load_course(path: str | Path) -> Course:
    """Read a course file (YAML or JSON, the same structure).

    ``patient_id`` defaults to the file's stem.

    Parameters
    ----------
    path
        ``.yaml``/``.yml`` files are read with ``yaml.safe_load``, ``.json`` with
        :mod:`json`; other suffixes are tried as YAML (a superset of JSON).

    Raises
    ------
    CourseError
        Unreadable file, invalid syntax, or invalid content.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CourseError(f"cannot read course file: {exc.strerror or exc}", source=str(path)) from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise CourseError(f"not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {exc}", source=str(path)) from None
    if isinstance(data, dict) and data.get("patient_id") is None:
        data = {**data, "patient_id": path.stem}
    return course_from_dict(data, source=str(path))


# --------------------------------------------------------------------------- error formatting


def _fmt_value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _describe(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        bound = next(iter(v for k, v in ctx.items() if k in ("ge", "gt", "le", "lt")), "?")
        return f"must be {op} {_fmt_value(bound)}, got {_fmt_value(value)}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '?')}, got {_fmt_value(value)}"
    if kind == "extra_forbidden":
        return "unknown key (not in the course format)"
    if kind == "missing":
        return "required field is missing"
    if kind == "finite_number":
        return f"must be a finite number, got {_fmt_value(value)}"
    if kind == "too_short":
        return "must not be empty"
    msg = str(error.get("msg", "invalid"))
    if value is not None and not isinstance(value, (dict, list, tuple)):
        msg += f", got {_fmt_value(value)}"
    return msg[0].lower() + msg[1:] if msg else msg


def _course_error_from_validation(
    exc: ValidationError, data: Any, *, source: str | None = None, model: str = "Course"
) -> CourseError:
    """Turn the first pydantic error into a CourseError naming time point and field."""
    error = exc.errors(include_url=False)[0]
    original = (error.get("ctx") or {}).get("error")
    loc = tuple(error.get("loc", ()))
    index: int | None = None
    date: Any = None
    field_parts: list[str] = []
    node: Any = data
    i = 0
    if model in ("Course",) and len(loc) >= 2 and loc[0] == "timepoints" and isinstance(loc[1], int):
        index = loc[1] + 1
        try:
            node = data["timepoints"][loc[1]]
            date = node.get("date") if isinstance(node, dict) else None
        except (KeyError, IndexError, TypeError):
            node = None
        i = 2
    elif model == "Timepoint":
        date = data.get("date") if isinstance(data, dict) else None
    while i < len(loc):
        part = loc[i]
        if isinstance(part, int):
            label = str(part)
            try:
                item = node[part]
                if isinstance(item, dict) and item.get("lesion") is not None:
                    label = str(item["lesion"])
                node = item
            except (KeyError, IndexError, TypeError):
                node = None
            if field_parts:
                field_parts[-1] += f"[{label}]"
            else:
                field_parts.append(f"[{label}]")
        else:
            field_parts.append(str(part))
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                node = None
        i += 1
    field = ".".join(field_parts) or None
    if isinstance(original, CourseError):
        sub_field = original.field
        if field and sub_field:
            field = f"{field}.{sub_field}" if not sub_field.startswith(field) else sub_field
        elif sub_field:
            field = sub_field
        return CourseError(
            original.reason,
            timepoint_index=original.timepoint_index if original.timepoint_index is not None else index,
            timepoint_date=original.timepoint_date if original.timepoint_date is not None else date,
            field=field,
            source=source,
        )
    return CourseError(_describe(error), timepoint_index=index, timepoint_date=date, field=field, source=source)
