"""Which image series of a study to measure: a rule, a default policy, and an explanation for every volume.

A real study holds more than the series a reader measured: localizers, a soft-tissue
and a lung-kernel reconstruction of one CT, a MIP, a dose screen, the T1, T1
post-contrast, T2, FLAIR and DWI/ADC of a brain MR. :func:`select_series` picks one
volume of a study's volumes, and says why it chose it and why it left out each of
the others; when it cannot choose, it says which candidates remain and which rule
would separate them. It never guesses: ties are errors.

Order of the decision
---------------------
(a) **Referenced series.** When a segmentation of the study references a series
    (``referenced``, e.g. from :func:`imaging.io.segrefs.link_segmentations`), that
    series is chosen whatever else the study holds, provided it passes the default
    policy (b); if it does not, or is not among the volumes, it is an error.
(b) **Default policy, always applied.** Never a localizer (ImageType value
    ``LOCALIZER``, or a description containing scout, localizer/localiser, topogram,
    surview, survey or scanogram, or the word loc/locs/pilot/3pl/3plane/triplane);
    never a derived or secondary image (ImageType value 1 ``DERIVED`` or value 2
    ``SECONDARY``, or a description word mip/minip/mpr/mprs/reformat/reformats/
    reformatted/vrt); never a screen capture, dose report or other non-scan object
    (a Secondary Capture SOP class, or a description with the word dose or
    "patient protocol"); never a single slice, nor fewer than ``rule.min_slices``.
(c) **The rule's filters** (:class:`SeriesRule`): modality, rejected and required
    descriptions, ImageType values, contrast, kernel, slice thickness, plane; then
    ``prefer``.
(d) **Among the rest, for CT only:** the best kernel class (soft tissue, then not
    recognised, then lung/bone/sharp; :func:`kernel_class`), then the thinnest slice
    thickness, at most 5 mm when any is (thicker ones and those without a thickness
    are left out then). For MR and every other modality only (a) and (c) decide: two
    or more series left is an error.

Contrast
--------
:func:`contrast_state` reads the series description first, normalised to lower
case with every character other than a letter, digit or ``+`` turned into a space.
A word saying *no* contrast wins: pre, precontrast, nc, non/noncontrast, "non con",
without, wo (``w/o``), "no contrast", native/nativ, unenhanced, "non enhanced",
plain. Then a word saying contrast: post, postcontrast, postgad, postgd, postc, a
word starting with gad (gad, gado, gadolinium, gadovist), gd, a word starting with
contrast or kontrast, ce, enhanced, or the marks ``+c`` / ``c+``. Failing both, a
non-empty ContrastBolusAgent (other than none/no/n/a/na/nil/0) means contrast.

Counting: every message counts series (distinct SeriesInstanceUID), not volumes.
Everything here is a pure function of :class:`~imaging.io.grouping.SeriesInfo`
records (crawled headers): no pixel data, no SimpleITK.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from imaging.io.grouping import SeriesInfo

#: RECIST 1.1 assumes CT slices of at most 5 mm: thicker ones are used only when no series is that thin.
MAX_PREFERRED_THICKNESS_MM = 5.0
#: Slice thicknesses closer than this (mm) are the same.
THICKNESS_TOLERANCE_MM = 0.01
PLANES = ("axial", "coronal", "sagittal", "oblique")
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"

_LOCALIZER_SUBSTRINGS = ("scout", "localizer", "localiser", "topogram", "surview", "survey", "scanogram")
_LOCALIZER_WORDS = {"loc", "locs", "pilot", "3pl", "3plane", "triplane"}
_DERIVED_WORDS = {"mip", "minip", "mpr", "mprs", "reformat", "reformats", "reformatted", "vrt"}
_NO_AGENT = {"", "none", "no", "n/a", "na", "nil", "0"}
_CONTRAST_NO = re.compile(
    r"\b(pre|precontrast|nc|noncontrast|non contrast|non con|without|wo|w o|no contrast|native|nativ|unenhanced"
    r"|non enhanced|nonenhanced|plain)\b"
)
_CONTRAST_YES = re.compile(
    r"\b(post|postcontrast|postgad|postgd|postc|gad\w*|gd|contrast\w*|kontrast\w*|ce|enhanced)\b|\+ ?c\b|\bc ?\+"
)


@dataclass(frozen=True)
class SeriesRule:
    """What to measure in a study; every field narrows the candidates (empty = no constraint).

    Attributes
    ----------
    modality
        Allowed modalities (e.g. ``("CT",)``).
    prefer
        Description glob patterns (case-insensitive), in order of preference: the
        first pattern that matches any remaining candidate keeps the candidates it
        matches and leaves out the others.
    reject
        Description glob patterns (case-insensitive) left out.
    image_type
        ImageType values every candidate must hold, e.g. ``("ORIGINAL", "PRIMARY")``.
    contrast
        ``"required"``: only series with contrast; ``"forbidden"``: only series without
        (see :func:`contrast_state`).
    kernel
        ConvolutionKernel glob patterns (case-insensitive), matched against each value
        and the whole text; a series without a kernel fails them.
    slice_thickness_mm
        Inclusive (low, high) range of SliceThickness (the slice spacing when absent).
    plane
        ``"axial"``, ``"coronal"``, ``"sagittal"`` or ``"oblique"``
        (:func:`imaging.io.dicom.acquisition_plane`).
    min_slices
        Fewer slices than this is not a measurable volume (a single slice never is).
    """

    modality: tuple[str, ...] = ()
    prefer: tuple[str, ...] = ()
    reject: tuple[str, ...] = ()
    image_type: tuple[str, ...] = ()
    contrast: Literal["required", "forbidden"] | None = None
    kernel: tuple[str, ...] = ()
    slice_thickness_mm: tuple[float, float] | None = None
    plane: str | None = None
    min_slices: int = 10

    def __post_init__(self) -> None:
        for name in ("modality", "prefer", "reject", "image_type", "kernel"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            object.__setattr__(self, name, tuple(str(v) for v in value))
        if self.contrast not in (None, "required", "forbidden"):
            raise ValueError(f"SeriesRule.contrast: 'required', 'forbidden' or None, not {self.contrast!r}")
        if self.plane is not None and self.plane not in PLANES:
            raise ValueError(f"SeriesRule.plane: one of {', '.join(PLANES)}, not {self.plane!r}")
        if self.slice_thickness_mm is not None:
            lo, hi = (float(v) for v in self.slice_thickness_mm)
            if lo > hi:
                raise ValueError(f"SeriesRule.slice_thickness_mm: low {lo} above high {hi}")
            object.__setattr__(self, "slice_thickness_mm", (lo, hi))
        if self.min_slices < 1:
            raise ValueError(f"SeriesRule.min_slices: at least 1, not {self.min_slices}")


@dataclass
class Candidate:
    """One volume under consideration and why it was left out (empty: still in)."""

    volume: SeriesInfo
    reasons_rejected: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.reasons_rejected


@dataclass
class SeriesChoice:
    """The outcome of :func:`select_series`.

    Attributes
    ----------
    chosen
        The volume to measure, or None (then ``error`` says why).
    why
        Why it was chosen, one sentence ("" when none was).
    rejected
        Every other volume, with why it was left out (or, on a tie, that it remains).
    error
        When nothing or more than one series remains: the remaining candidates with
        description, image type, kernel, thickness and contrast, and the rule that
        would separate them.
    """

    chosen: SeriesInfo | None
    why: str = ""
    rejected: list[tuple[SeriesInfo, str]] = field(default_factory=list)
    error: str | None = None


# ---------------------------------------------------------------------------------------------
# attributes


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9+]+", " ", text.lower()).split()


def _values(multi: str) -> list[str]:
    return [v.strip() for v in multi.split("\\") if v.strip()]


def contrast_state(volume: SeriesInfo) -> bool | None:
    """True: contrast; False: the description says without; None: no sign either way (see the module docstring)."""
    text = " ".join(_words(volume.series_description))
    if text and _CONTRAST_NO.search(text):
        return False
    if text and _CONTRAST_YES.search(text):
        return True
    if volume.contrast_agent.strip().lower() not in _NO_AGENT:
        return True
    return None


_KERNEL_SHARP_WORDS = {"lung", "lungs", "bone", "boneplus", "detail", "edge", "chest", "sharp", "sharper", "ultra"}
_KERNEL_SOFT_WORDS = {"soft", "standard", "stnd", "std", "smooth", "body", "abdomen", "brain"}
_CANON = re.compile(r"^F([CL])(\d{2})")
_SIEMENS = re.compile(r"^([A-Za-z]{1,2})(\d{2})([a-z]*)$")
_PHILIPS = re.compile(r"^[A-Z]{1,2}$")


def kernel_class(kernel: str) -> Literal["soft", "sharp", ""]:
    """Whether a CT ConvolutionKernel is a soft-tissue or a lung/bone/sharp kernel ("" when not recognised).

    Read from the first value (Siemens writes e.g. ``Br40d\\3``: kernel, then iterative strength):

    - words, any vendor (GE, United Imaging ...): lung, bone, boneplus, detail, edge, chest,
      sharp, ultra -> sharp; soft, standard, stnd, std, smooth, body, abdomen, brain -> soft
      (GE STANDARD, SOFT, "HD STANDARD" vs LUNG, BONE, BONEPLUS, DETAIL, EDGE, CHEST);
    - Canon/Toshiba ``FCnn``: FC00-FC19 soft (body and head), FC50-FC89 sharp (lung, bone,
      high resolution), others not recognised; ``FLnn`` (lung) sharp;
    - Siemens letters + two digits (+ suffix): B30f, B31f, Br40, Bv40, Hr38, I30f, Qr40, D30f ...:
      strength <= 45 soft, >= 50 sharp, 46-49 not recognised; code ``Bl`` (lung, e.g. Bl57) and
      ``U`` (ultra high resolution) sharp whatever the number (B60f, B70f, Br64, I70f: sharp);
    - Philips one or two capital letters: A, B, C (and CB ...) soft; D, E, L, Y (YA, YB, YC ...) sharp;
      others (e.g. UB) not recognised.

    Examples
    --------
    >>> kernel_class("B30f"), kernel_class("B70f"), kernel_class("STANDARD"), kernel_class("FC52")
    ('soft', 'sharp', 'soft', 'sharp')
    """
    values = _values(kernel)
    if not values:
        return ""
    first = values[0]
    words = set(re.split(r"[^a-z0-9]+", first.lower()))
    if words & _KERNEL_SHARP_WORDS:
        return "sharp"
    if words & _KERNEL_SOFT_WORDS:
        return "soft"
    m = _CANON.match(first.upper())
    if m:
        if m.group(1) == "L":
            return "sharp"
        n = int(m.group(2))
        return "soft" if n <= 19 else ("sharp" if 50 <= n <= 89 else "")
    m = _SIEMENS.match(first)
    if m:
        code, n = m.group(1).lower(), int(m.group(2))
        if code == "bl" or code.startswith("u") or n >= 50:
            return "sharp"
        return "soft" if n <= 45 else ""
    if _PHILIPS.match(first):
        return "soft" if first[0] in "ABC" else ("sharp" if first[0] in "DELY" else "")
    return ""


def _kernel_rank(v: SeriesInfo) -> tuple[int, str]:
    """(0 soft, 1 not recognised, 2 sharp; how it is known); without a kernel, lung/bone/sharp in the description count."""
    cls = kernel_class(v.convolution_kernel)
    if not cls and not v.convolution_kernel.strip():
        if set(_words(v.series_description)) & {"lung", "lungs", "bone", "sharp"}:
            return 2, "no kernel; the description names a lung/bone/sharp reconstruction"
    return {"soft": 0, "": 1, "sharp": 2}[cls], (f"kernel {v.convolution_kernel}" if v.convolution_kernel else "no kernel")


def thickness_mm(v: SeriesInfo) -> float | None:
    """SliceThickness, else the slice spacing of its grid, else None."""
    if v.slice_thickness_mm is not None and v.slice_thickness_mm > 0:
        return float(v.slice_thickness_mm)
    if v.geometry is not None and len(v.geometry.spacing_mm) == 3 and v.n_slices > 1:
        return float(v.geometry.spacing_mm[2])
    return None


def _n_slices(v: SeriesInfo) -> int:
    if v.n_slices:
        return v.n_slices
    return sum(len(f) for f in v.frames) if v.frames else len(v.files)


def _fmt_mm(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}".rstrip("0").rstrip(".")


def describe_volume(v: SeriesInfo) -> dict[str, Any]:
    """The selection-relevant fields of one volume, for tables (``index``, the pipeline's series.csv).

    Returns
    -------
    dict
        volume_id, series_uid, series_number, modality, description, image_type,
        slice_thickness_mm (SliceThickness, else the slice spacing; None if neither),
        kernel, kernel_class ("soft" | "sharp" | ""), contrast_agent, contrast
        ("yes" | "no" | "": :func:`contrast_state`), plane, n_slices, body_part.
    """
    state = contrast_state(v)
    return {
        "volume_id": v.volume_id,
        "series_uid": v.series_uid,
        "series_number": v.series_number,
        "modality": v.modality,
        "description": v.series_description,
        "image_type": v.image_type,
        "slice_thickness_mm": thickness_mm(v),
        "kernel": v.convolution_kernel,
        "kernel_class": kernel_class(v.convolution_kernel),
        "contrast_agent": v.contrast_agent,
        "contrast": {True: "yes", False: "no", None: ""}[state],
        "plane": v.plane,
        "n_slices": _n_slices(v),
        "body_part": v.body_part,
    }


def _label(v: SeriesInfo) -> str:
    """``series 3 'Abdomen 5mm'`` (or the UID when there is no series number)."""
    who = f"series {v.series_number}" if v.series_number is not None else f"series {v.series_uid}"
    return f"{who} '{v.series_description}'" if v.series_description else who


def _summary(v: SeriesInfo) -> str:
    d = describe_volume(v)
    contrast = {"yes": "contrast", "no": "no contrast", "": "contrast unknown"}[d["contrast"]]
    if v.contrast_agent:
        contrast += f" (agent '{v.contrast_agent}')"
    parts = [
        v.modality or "?", f"ImageType {v.image_type or '-'}", f"kernel {v.convolution_kernel or '-'}",
        f"{_fmt_mm(d['slice_thickness_mm'])} mm", contrast, v.plane or "no plane", f"{d['n_slices']} slices",
    ]
    vol = f" volume {v.volume_id}" if v.volume_id != v.series_uid else ""
    return f"{_label(v)}{vol} ({', '.join(parts)})"


def _glob(text: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(text.lower(), pattern.lower())


# ---------------------------------------------------------------------------------------------
# the policy and the rule


def default_exclusions(v: SeriesInfo, min_slices: int = 10, *, allow_derived: bool = False) -> list[str]:
    """Why the default policy leaves ``v`` out (empty: it stays); see the module docstring (b).

    ``allow_derived``: a rule that asks for DERIVED or SECONDARY images (``image_type``) takes them
    (a curated or processed archive); localizers, screen captures and dose reports stay out.
    """
    reasons = []
    types = [t.upper() for t in _values(v.image_type)]
    desc = v.series_description.lower()
    words = set(_words(v.series_description))
    if "LOCALIZER" in types:
        reasons.append(f"a localizer (ImageType {v.image_type})")
    elif any(s in desc for s in _LOCALIZER_SUBSTRINGS) or words & _LOCALIZER_WORDS:
        reasons.append(f"a localizer (description '{v.series_description}')")
    if v.sop_class_uid.startswith(SECONDARY_CAPTURE_PREFIX):
        reasons.append("a secondary capture (screen capture or report, not a scan)")
    elif "dose" in words or "patient protocol" in " ".join(_words(v.series_description)):
        reasons.append(f"a dose report (description '{v.series_description}')")
    if allow_derived:
        pass
    elif (types[:1] == ["DERIVED"]) or (types[1:2] == ["SECONDARY"]):
        reasons.append(f"a derived or secondary image (ImageType {v.image_type}; a rule with image_type [DERIVED] "
                       "takes derived series)")
    elif words & _DERIVED_WORDS:
        reasons.append(f"a derived image (description '{v.series_description}': MIP, MPR or reformat)")
    n = _n_slices(v)
    if n <= 1:
        reasons.append("a single slice")
    elif n < min_slices:
        reasons.append(f"{n} slices, fewer than min_slices {min_slices}")
    return reasons


def _allows_derived(rule: SeriesRule) -> bool:
    return any(t.upper() in ("DERIVED", "SECONDARY") for t in rule.image_type)


def rule_exclusions(v: SeriesInfo, rule: SeriesRule) -> list[str]:
    """Why ``rule``'s filters leave ``v`` out (``prefer`` aside, it compares candidates)."""
    reasons = []
    if rule.modality and v.modality not in rule.modality:
        reasons.append(f"modality {v.modality or '(none)'} not in {list(rule.modality)}")
    hit = next((p for p in rule.reject if _glob(v.series_description, p)), None)
    if hit is not None:
        reasons.append(f"description '{v.series_description}' matches reject pattern '{hit}'")
    if rule.image_type:
        have = {t.upper() for t in _values(v.image_type)}
        missing = [t for t in rule.image_type if t.upper() not in have]
        if missing:
            reasons.append(f"ImageType {v.image_type or '(none)'} lacks {'/'.join(missing)}")
    if rule.contrast is not None:
        state = contrast_state(v)
        if rule.contrast == "required" and state is not True:
            reasons.append("no contrast (contrast: required)" if state is False else "no sign of contrast (contrast: required)")
        if rule.contrast == "forbidden" and state is True:
            reasons.append("contrast (contrast: forbidden)")
    if rule.kernel:
        values = [*_values(v.convolution_kernel), v.convolution_kernel]
        if not any(_glob(k, p) for k in values if k for p in rule.kernel):
            reasons.append(f"kernel {v.convolution_kernel or '(none)'} matches none of {list(rule.kernel)}")
    if rule.slice_thickness_mm is not None:
        t = thickness_mm(v)
        lo, hi = rule.slice_thickness_mm
        if t is None:
            reasons.append("no slice thickness (slice_thickness_mm set)")
        elif not lo - 1e-6 <= t <= hi + 1e-6:
            reasons.append(f"slice thickness {_fmt_mm(t)} mm outside [{_fmt_mm(lo)}, {_fmt_mm(hi)}] mm")
    if rule.plane is not None and v.plane != rule.plane:
        reasons.append(f"plane {v.plane or '(none)'}, not {rule.plane}")
    return reasons


def _series_count(volumes: Sequence[SeriesInfo]) -> int:
    return len({v.series_uid for v in volumes})


def _one_per_series(volumes: Sequence[SeriesInfo]) -> list[SeriesInfo]:
    seen: dict[str, SeriesInfo] = {}
    for v in volumes:
        seen.setdefault(v.series_uid, v)
    return sorted(seen.values(), key=lambda v: (v.series_number if v.series_number is not None else 1 << 30, v.series_uid))


def _plural(n: int) -> str:
    return f"{n} series"


def _and(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


# ---------------------------------------------------------------------------------------------
# separating a tie


def _escape_glob(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)


def _suggestions(remaining: list[SeriesInfo], rule: SeriesRule, rule_path: str) -> list[str]:
    """Rule settings that keep exactly one of ``remaining`` (one per series), checked by applying them."""
    target = remaining[0]
    prefix = f"{rule_path}." if rule_path else ""

    def keeps(new: SeriesRule) -> list[SeriesInfo]:
        return [v for v in remaining if not rule_exclusions(v, new) and not _prefer_loses(v, remaining, new)]

    states = {contrast_state(v) is True for v in remaining}

    def by_contrast() -> tuple[str, SeriesRule] | None:
        if len(states) < 2:
            return None
        with_c = [v for v in remaining if contrast_state(v) is True]
        which = "required" if len(with_c) == 1 else "forbidden"
        return f"contrast: {which}", replace(rule, contrast=which)  # type: ignore[arg-type]

    def by_kernel() -> tuple[str, SeriesRule] | None:
        kernels = {v.convolution_kernel for v in remaining}
        first = _values(target.convolution_kernel)[:1]
        if len(kernels) < 2 or not first:
            return None
        for pattern in (f"*{_escape_glob(first[0])}*", _escape_glob(target.convolution_kernel)):
            new = replace(rule, kernel=(pattern,))
            if keeps(new) == [target]:
                return f"kernel: ['{pattern}']", new
        return None

    def by_thickness() -> tuple[str, SeriesRule] | None:
        t = thickness_mm(target)
        others = [thickness_mm(v) for v in remaining[1:]]
        if t is None or any(o is None for o in others) or all(abs(t - o) <= THICKNESS_TOLERANCE_MM for o in others):  # type: ignore[operator]
            return None
        gap = min(abs(t - o) for o in others)  # type: ignore[operator]
        half = min(1.0, gap / 2)
        lo, hi = round(t - half, 2), round(t + half, 2)
        return f"slice_thickness_mm: [{_fmt_mm(lo)}, {_fmt_mm(hi)}]", replace(rule, slice_thickness_mm=(lo, hi))

    def by_plane() -> tuple[str, SeriesRule] | None:
        if len({v.plane for v in remaining}) < 2 or not target.plane:
            return None
        return f"plane: {target.plane}", replace(rule, plane=target.plane)

    def by_image_type() -> tuple[str, SeriesRule] | None:
        mine = _values(target.image_type)
        for value in mine:
            if not all(value.upper() in {t.upper() for t in _values(v.image_type)} for v in remaining[1:]):
                return f"image_type: ['{value}']", replace(rule, image_type=(*rule.image_type, value))
        return None

    def by_description() -> tuple[str, SeriesRule] | None:
        if not target.series_description or len({v.series_description.lower() for v in remaining}) < 2:
            return None
        pattern = _escape_glob(target.series_description)
        return f"prefer: ['{pattern}']", replace(rule, prefer=(pattern, *rule.prefer))

    options: list[tuple[str, Callable[[], tuple[str, SeriesRule] | None]]] = [("contrast", by_contrast), ("kernel", by_kernel), ("slice thickness", by_thickness),
               ("plane", by_plane), ("image type", by_image_type), ("description", by_description)]
    out = []
    for _, make in options:
        made = make()
        if made is None:
            continue
        text, new = made
        kept = keeps(new)
        if len({v.series_uid for v in kept}) == 1:
            out.append(f"set {prefix}{text} (keeps {_label(kept[0])})")
    return out


def _differences(remaining: list[SeriesInfo]) -> list[str]:
    checks = (
        ("contrast", lambda v: contrast_state(v)), ("kernel", lambda v: v.convolution_kernel),
        ("slice thickness", lambda v: None if thickness_mm(v) is None else round(thickness_mm(v) / THICKNESS_TOLERANCE_MM)),  # type: ignore[operator]
        ("plane", lambda v: v.plane), ("image type", lambda v: v.image_type.upper()),
        ("description", lambda v: v.series_description.lower()),
    )
    return [name for name, get in checks if len({get(v) for v in remaining}) > 1]


def _prefer_loses(v: SeriesInfo, pool: Sequence[SeriesInfo], rule: SeriesRule) -> str | None:
    """Why ``prefer`` leaves ``v`` out of ``pool`` (None: it stays)."""
    for pattern in rule.prefer:
        winners = [w for w in pool if _glob(w.series_description, pattern)]
        if winners:
            if _glob(v.series_description, pattern):
                return None
            return f"description does not match prefer pattern '{pattern}' ({_label(winners[0])} does)"
    return None


# ---------------------------------------------------------------------------------------------


def select_series(
    volumes: Sequence[SeriesInfo],
    rule: SeriesRule,
    *,
    referenced: Collection[str] = (),
    rule_path: str = "rule",
) -> SeriesChoice:
    """Choose the volume to measure among one study's volumes (order of the decision: module docstring).

    Parameters
    ----------
    volumes
        The volumes of one study (patient + study), as :func:`imaging.io.group_series` makes them.
    rule
        The series rule.
    referenced
        SeriesInstanceUIDs that a segmentation of the study references; such a
        series is chosen over any other, provided the default policy accepts it.
    rule_path
        How the rule is named in suggestions, e.g. ``"dataset.series.measure"``
        gives "set dataset.series.measure.kernel: ['*B30f*'] (keeps series 3 ...)".

    Returns
    -------
    SeriesChoice
        ``chosen`` and ``why``, or ``error``; ``rejected`` lists every other volume with its reason.
        Deterministic: the same volumes in any order give the same choice and messages.
    """
    ordered = sorted(volumes, key=lambda v: (v.series_number if v.series_number is not None else 1 << 30, v.series_uid, v.volume_id))
    if not ordered:
        return SeriesChoice(None, error="no image series to choose from")
    referenced = set(referenced)
    if referenced:
        return _select_referenced(ordered, rule, referenced)
    cands = [Candidate(v, default_exclusions(v, rule.min_slices, allow_derived=_allows_derived(rule))) for v in ordered]
    for c in cands:
        if c.ok:
            c.reasons_rejected.extend(rule_exclusions(c.volume, rule))
    pool = [c.volume for c in cands if c.ok]
    for c in cands:
        if c.ok:
            why_not = _prefer_loses(c.volume, pool, rule)
            if why_not:
                c.reasons_rejected.append(why_not)
    steps = ["the default policy", "the rule"]
    remaining = [c for c in cands if c.ok]
    # Scans with and without contrast are different examinations, not reconstructions of one: a kernel or a
    # thickness never chooses between them (nor would one follow-up then be measured on the other phase).
    phases = {contrast_state(c.volume) for c in remaining}
    if remaining and all(c.volume.modality == "CT" for c in remaining) and not {True, False} <= phases:
        _rank_ct(remaining)
        steps.append("the CT preferences (soft-tissue kernel, thinnest slices up to 5 mm)")
    remaining = [c for c in cands if c.ok]
    n_considered = _series_count(ordered)
    if not remaining:
        listing = "; ".join(f"{_label(c.volume)}: {'; '.join(c.reasons_rejected)}" for c in _first_per_series(cands))
        return SeriesChoice(
            None, rejected=[(c.volume, "; ".join(c.reasons_rejected)) for c in cands],
            error=f"none of the {_plural(n_considered)} can be measured: {listing}",
        )
    series_left = _one_per_series([c.volume for c in remaining])
    if len(series_left) == 1 and len(remaining) == 1:
        chosen = remaining[0].volume
        why = f"{_summary(chosen)}: the only series of {n_considered} left after {_and(steps)}"
        return SeriesChoice(chosen, why=why, rejected=[(c.volume, "; ".join(c.reasons_rejected)) for c in cands if c.volume is not chosen])
    rejected = [(c.volume, "; ".join(c.reasons_rejected) if c.reasons_rejected else "remains: the rules cannot separate it")
                for c in cands]
    if len(series_left) == 1:
        ids = ", ".join(c.volume.volume_id for c in remaining)
        return SeriesChoice(None, rejected=rejected, error=(
            f"{_label(series_left[0])} holds {len(remaining)} volumes that remain ({ids}); the rules choose series, "
            "not volumes of one series: reference the volume's series with a segmentation or split the export"
        ))
    listing = "; ".join(_summary(v) for v in series_left)
    differ = _differences(series_left)
    hints = _suggestions(series_left, rule, rule_path)
    if hints:
        how = f"they differ in {', '.join(differ)}: {'; or '.join(hints)}"
    elif differ:
        how = f"they differ in {', '.join(differ)}, but no single rule setting keeps one of them"
    else:
        how = "nothing the rules look at differs (same description, image type, kernel, thickness, contrast and plane)"
    mr = "" if all(v.modality == "CT" for v in series_left) else " (for MR, only a referencing segmentation or the rules decide)"
    return SeriesChoice(None, rejected=rejected, error=(
        f"{len(series_left)} of {_plural(n_considered)} remain after {_and(steps)}{mr}: {listing}; {how}"
    ))


def _first_per_series(cands: list[Candidate]) -> list[Candidate]:
    seen: dict[str, Candidate] = {}
    for c in cands:
        seen.setdefault(c.volume.series_uid, c)
    return list(seen.values())


def _rank_ct(remaining: list[Candidate]) -> None:
    """CT preferences (d), in place: best kernel class, then the thinnest slices (at most 5 mm when any is)."""
    ranks = {id(c): _kernel_rank(c.volume) for c in remaining}
    best = min(r[0] for r in ranks.values())
    winners = [c for c in remaining if ranks[id(c)][0] == best]
    names = {0: "a soft-tissue kernel", 1: "a kernel not recognised as lung/bone/sharp"}
    for c in remaining:
        rank, how = ranks[id(c)]
        if rank > best:
            what = "a lung/bone/sharp kernel" if rank == 2 else "a kernel not recognised as soft-tissue"
            c.reasons_rejected.append(f"{how}: {what}, and {_label(winners[0].volume)} has {names[best]}")
    left = [c for c in remaining if c.ok]
    known = [(c, thickness_mm(c.volume)) for c in left]
    thin = [(c, t) for c, t in known if t is not None and t <= MAX_PREFERRED_THICKNESS_MM + THICKNESS_TOLERANCE_MM]
    pool = thin or [(c, t) for c, t in known if t is not None]
    if not pool:
        return
    t_min = min(t for _, t in pool)
    best_c = next(c for c, t in pool if abs(t - t_min) <= THICKNESS_TOLERANCE_MM)
    for c, t in known:
        if t is None:
            c.reasons_rejected.append(f"no slice thickness, and {_label(best_c.volume)} has {_fmt_mm(t_min)} mm")
        elif t - t_min > THICKNESS_TOLERANCE_MM:
            over = " (over 5 mm)" if thin and t > MAX_PREFERRED_THICKNESS_MM + THICKNESS_TOLERANCE_MM else ""
            c.reasons_rejected.append(f"slices of {_fmt_mm(t)} mm{over}, thicker than {_label(best_c.volume)} ({_fmt_mm(t_min)} mm)")


def _select_referenced(ordered: list[SeriesInfo], rule: SeriesRule, referenced: set[str]) -> SeriesChoice:
    """(a): the series a segmentation references, if the default policy accepts it."""
    refs = [v for v in ordered if v.series_uid in referenced]
    uids = ", ".join(sorted(referenced))
    if not refs:
        names = "; ".join(_label(v) for v in _one_per_series(ordered))
        return SeriesChoice(None, rejected=[(v, "not the series the segmentation references") for v in ordered], error=(
            f"the segmentation references series {uids}, which is not among the {_plural(_series_count(ordered))} "
            f"of the study ({names})"
        ))
    verdict = {id(v): default_exclusions(v, rule.min_slices, allow_derived=_allows_derived(rule)) for v in refs}
    ok = [v for v in refs if not verdict[id(v)]]
    ok_series = _one_per_series(ok)
    rejected: list[tuple[SeriesInfo, str]] = []
    if len(ok) == 1:
        chosen = ok[0]
        for v in ordered:
            if v is chosen:
                continue
            reason = "; ".join(verdict[id(v)]) if id(v) in verdict and verdict[id(v)] else (
                f"not the series the segmentation references ({_label(chosen)})" if v.series_uid != chosen.series_uid
                else "another volume of the referenced series")
            rejected.append((v, reason))
        off_rule = rule_exclusions(chosen, rule)
        note = f" (although the rule would leave it out: {'; '.join(off_rule)})" if off_rule else ""
        return SeriesChoice(chosen, why=f"{_summary(chosen)}: the series the segmentation references{note}", rejected=rejected)
    rejected = [(v, "; ".join(verdict.get(id(v)) or []) or "not the series the segmentation references") for v in ordered]
    if not ok:
        why = "; ".join(f"{_label(v)}: {'; '.join(verdict[id(v)])}" for v in refs)
        return SeriesChoice(None, rejected=rejected, error=(
            f"the segmentation references {_plural(_series_count(refs))} that cannot be measured: {why}"
        ))
    if len(ok_series) == 1:
        ids = ", ".join(v.volume_id for v in ok)
        return SeriesChoice(None, rejected=rejected, error=(
            f"the segmentation references {_label(ok_series[0])}, which holds {len(ok)} volumes ({ids}); "
            "the rules choose series, not volumes of one series"
        ))
    listing = "; ".join(_summary(v) for v in ok_series)
    return SeriesChoice(None, rejected=rejected, error=(
        f"the segmentations reference {len(ok_series)} series that can be measured: {listing}; "
        "keep one segmentation per study, or remove the others from the archive"
    ))


__all__ = [
    "MAX_PREFERRED_THICKNESS_MM", "Candidate", "SeriesChoice", "SeriesRule", "contrast_state", "default_exclusions",
    "describe_volume", "kernel_class", "rule_exclusions", "select_series", "thickness_mm",
]
