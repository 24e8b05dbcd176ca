"""Figures of a run's responses: waterfall, spider and swimmer plots.

Plain functions from a sequence of :class:`TimePointCall` (one row of ``responses.csv``)
to a PNG file. Matplotlib is imported inside the drawing functions (object API on an Agg
canvas, no pyplot and so no global state), so importing :mod:`imaging.report` stays cheap
for the command line.

Colours are the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies); every colour-coded call also has its own marker shape, so no reading
depends on colour alone.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 110

# Response categories every criterion's calls map onto (iRECIST's iPR, irRC's irPR, ... -> PR).
CATEGORIES: tuple[str, ...] = (
    "CR", "PR", "MR", "SD", "non-CR/non-PD", "unconfirmed PD", "PD", "NE", "baseline", "pre-baseline", "other",
)

# Okabe & Ito (2008), "Color Universal Design". Yellow is drawn with a dark edge everywhere.
COLOURS: dict[str, str] = {
    "CR": "#0072B2",             # blue
    "PR": "#009E73",             # bluish green
    "MR": "#7FC9A8",             # lighter green: minor response (RANO-LGG, RANO 2.0 non-enhancing)
    "SD": "#F0E442",             # yellow
    "non-CR/non-PD": "#56B4E9",  # sky blue
    "unconfirmed PD": "#E69F00",  # orange
    "PD": "#D55E00",             # vermillion
    "NE": "#999999",             # grey
    "baseline": "#000000",
    "pre-baseline": "#FFFFFF",
    "other": "#CC79A7",          # reddish purple
}

# Marker per category: up = better, down/square = worse, so shape alone tells the direction.
MARKERS: dict[str, str] = {
    "CR": "*", "PR": "^", "MR": "^", "SD": "o", "non-CR/non-PD": "h", "unconfirmed PD": "v", "PD": "s",
    "NE": "X", "baseline": "|", "pre-baseline": "o", "other": "d",
}

# Flags drawn on the swimmer plot, above the assessment they belong to: (marker, colour, label).
FLAG_STYLES: dict[str, tuple[str, str, str]] = {
    "possible_pseudoprogression": ("$?$", "#CC79A7", "possible pseudoprogression"),
    "pseudoprogression_confirmed": ("D", "#CC79A7", "pseudoprogression confirmed"),
    "progression_confirmed": ("P", "#000000", "progression confirmed"),
    "hyperprogression": ("$H$", "#D55E00", "hyperprogression"),
}

# Columns of responses.csv that hold the tumour burden a criterion compares, and the
# thresholds of its percentage change: (response at or below, progression at or above).
MEASURES: tuple[str, ...] = ("sum_mm", "sum_products_mm2", "sum_volume_mm3")
THRESHOLDS_PCT: dict[str, tuple[float, float]] = {
    "sum_mm": (-30.0, 20.0),             # RECIST 1.1 sec. 4.3.1; RANO-BM; iRECIST
    "sum_products_mm2": (-50.0, 25.0),   # RANO, mRANO, iRANO, RANO 2.0, irRC
    "sum_volume_mm3": (-65.0, 40.0),     # volumetric equivalents of -30 % / +20 % in diameter
}
MEASURE_NAMES: dict[str, str] = {
    "sum_mm": "sum of diameters",
    "sum_products_mm2": "sum of products of diameters",
    "sum_volume_mm3": "sum of volumes",
}

# Waterfall bars above this are drawn at this height with their value written on top,
# so one explosive progression does not flatten every other bar.
WATERFALL_CAP_PCT = 100.0


@dataclass(frozen=True)
class TimePointCall:
    """One row of ``responses.csv``: a patient's time point under one criterion.

    Attributes
    ----------
    date : datetime.date or None
        Study date; ``None`` when the CSV value is not an ISO date (``date_text`` keeps it).
    sums : mapping
        ``sum_mm`` (mm), ``sum_products_mm2`` (mm2), ``sum_volume_mm3`` (mm3), ``None`` if empty.
    change_from_baseline_pct, change_from_nadir_pct : float or None
        Percentage change of the criterion's burden.
    days_since_baseline : float or None
        Days from the baseline scan (negative before it).
    """

    patient_id: str
    date: dt.date | None
    date_text: str
    criterion: str
    response: str
    flags: tuple[str, ...]
    reason: str
    sums: Mapping[str, float | None] = field(default_factory=dict)
    change_from_baseline_pct: float | None = None
    change_from_nadir_pct: float | None = None
    days_since_baseline: float | None = None

    @property
    def category(self) -> str:
        return call_category(self.response, self.flags)

    @property
    def is_follow_up(self) -> bool:
        return self.category not in ("baseline", "pre-baseline")


def call_category(response: str, flags: Iterable[str] = ()) -> str:
    """The response category of a call as written by any criterion.

    ``iUPD``, ``preliminary PD`` and ``irPD (unconfirmed)`` are unconfirmed progression;
    ``iCPD``, ``confirmed PD`` and ``irPD`` are progression; the ``i``/``ir`` prefixes of the
    immune criteria are dropped. An empty call is the baseline or a pre-baseline scan.
    """
    text = response.strip()
    if not text:
        return "pre-baseline" if "pre_baseline" in set(flags) else "baseline"
    low = text.lower()
    if low in ("non-cr/non-pd", "inn", "non-cr/non-pd (nt)") or low.startswith("non-cr"):
        return "non-CR/non-PD"
    if "unconfirmed" in low or low.startswith("preliminary") or low == "iupd":
        return "unconfirmed PD"
    if low in ("icpd", "confirmed pd"):
        return "PD"
    for prefix in ("ir", "i", ""):
        if low.startswith(prefix):
            rest = low[len(prefix):].strip()
            if rest in ("cr", "pr", "mr", "sd", "pd", "ne"):
                return rest.upper()
    return "other"


def measure_of(points: Iterable[TimePointCall]) -> str | None:
    """The burden column a criterion's rows fill (``sum_mm`` ...), ``None`` if none is."""
    filled = {m for p in points for m in MEASURES if p.sums.get(m) is not None}
    return next((m for m in MEASURES if m in filled), None)


def thresholds_for(measure: str | None) -> tuple[float, float]:
    """(response, progression) thresholds in % change from baseline for a burden column."""
    return THRESHOLDS_PCT.get(measure or "sum_mm", THRESHOLDS_PCT["sum_mm"])


def best_change_pct(points: Iterable[TimePointCall]) -> float | None:
    """Best (lowest) % change from baseline of one patient, up to the first progression.

    Follow-ups flagged ``after_progression`` are left out, so a shrinkage after a
    progression does not draw a response bar for a patient whose best response is PD.
    """
    follow = [p for p in points if p.is_follow_up and p.change_from_baseline_pct is not None]
    before = [p for p in follow if "after_progression" not in p.flags]
    values = [p.change_from_baseline_pct for p in (before or follow) if p.change_from_baseline_pct is not None]
    return min(values) if values else None


def _natural(text: str) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def mpl_text(value: str) -> str:
    """A data value made literal for matplotlib (``$`` would start mathtext)."""
    return value.replace("$", r"\$")


def _figure(width_in: float, height_in: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.15, metadata={"Software": None})
    return path


def _threshold_lines(ax: Axes, thresholds: tuple[float, float]) -> list[Any]:
    """Dashed response/progression lines; returns their legend handles (labels in the plot would hide data)."""
    from matplotlib.lines import Line2D

    handles: list[Any] = []
    low, high = thresholds
    for value, label, colour in ((high, "progression", COLOURS["PD"]), (low, "response", COLOURS["PR"])):
        ax.axhline(value, color=colour, linestyle="--", linewidth=1.3, zorder=1)
        handles.append(Line2D([], [], color=colour, linestyle="--", linewidth=1.3,
                              label=f"{label} {value:+.0f}%".replace("-", "\u2212")))
    ax.axhline(0.0, color="#444444", linewidth=0.8, zorder=1)
    return handles


def _category_handles(categories: Iterable[str], *, bar: bool) -> list[Any]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = []
    for c in CATEGORIES:
        if c not in set(categories):
            continue
        if bar:
            handles.append(Patch(facecolor=COLOURS[c], edgecolor="#333333", label=c))
        else:
            handles.append(Line2D([], [], linestyle="none", **_marker_style(c, legend=True), label=c))
    return handles


def _marker_style(category: str, *, legend: bool = False, scale: float = 1.0) -> dict[str, Any]:
    """Marker keywords of one call category (same look on every plot and in every legend)."""
    marker = MARKERS[category]
    size = (16.0 if marker == "|" else 12.0 if category == "CR" else 8.5) * scale
    if legend:
        size = min(size, 10.0)
    edge = "#000000" if category == "baseline" else "#777777" if category == "pre-baseline" else "#222222"
    return {"marker": marker, "markersize": size, "markerfacecolor": COLOURS[category],
            "markeredgecolor": edge, "markeredgewidth": 2.0 if marker == "|" else 0.8}


def _line_effects(category: str) -> list[Any]:
    """A dark outline for the light colours (yellow, sky blue), which vanish on white alone."""
    from matplotlib import patheffects

    if category in ("SD", "non-CR/non-PD", "pre-baseline"):
        return [patheffects.Stroke(linewidth=3.4, foreground="#555555"), patheffects.Normal()]
    return []


def waterfall_plot(path: Path, rows: Sequence[tuple[str, float, str]], *, criterion: str,
                   measure: str | None) -> Path:
    """Bars of each patient's best % change from baseline, sorted, coloured by best overall response.

    Parameters
    ----------
    path : Path
        PNG to write.
    rows : sequence of (patient_id, best_change_pct, best_response_category)
        One bar per patient; ``best_change_pct`` in % (see :func:`best_change_pct`).
    criterion : str
        Name for the title.
    measure : str or None
        The burden column (``sum_mm`` ...): chooses the thresholds drawn and the axis label.

    Returns
    -------
    Path
        ``path``.
    """
    ordered = sorted(rows, key=lambda r: (-r[1], _natural(r[0])))
    n = len(ordered)
    fig = _figure(min(max(7.0, 3.5 + 0.32 * n), 18.0), 4.6)
    ax = fig.add_subplot()
    thresholds = thresholds_for(measure)
    heights = [min(v, WATERFALL_CAP_PCT) for _, v, _ in ordered]
    x = list(range(n))
    ax.bar(x, heights, width=0.8, color=[COLOURS.get(c, COLOURS["other"]) for _, _, c in ordered],
           edgecolor="#333333", linewidth=0.6, zorder=2)
    threshold_handles = _threshold_lines(ax, thresholds)
    label_values = n <= 40
    for xi, (_, value, _), h in zip(x, ordered, heights):
        capped = value > WATERFALL_CAP_PCT
        if label_values or capped:
            text = f"{value:+.0f}%".replace("-", "\u2212") + (" (cut)" if capped else "")
            ax.annotate(text, xy=(xi, h), xytext=(0, 3 if h >= 0 else -3), textcoords="offset points",
                        ha="center", va="bottom" if h >= 0 else "top", fontsize=8,
                        bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85})
    ax.set_ylim(min(-105.0, min(heights, default=0.0) - 12), max([thresholds[1], *heights]) + 18)
    ax.set_xlim(-0.7, max(n - 0.3, 0.7))
    ax.set_xticks(x)
    if n <= 60:
        ax.set_xticklabels([mpl_text(p) for p, _, _ in ordered], rotation=45 if n > 8 else 0,
                           ha="right" if n > 8 else "center", fontsize=9)
    else:
        ax.set_xticklabels([])
    ax.set_xlabel(f"patient (n = {n}), sorted by best change")
    name = MEASURE_NAMES.get(measure or "sum_mm", "tumour burden")
    ax.set_ylabel(f"best change from baseline (%)\n{name}")
    ax.set_title(f"{mpl_text(criterion)}: best % change from baseline", fontsize=11, loc="left")
    ax.grid(axis="y", color="#e5e5e5", zorder=0)
    _sectioned_legend(ax, [("bar: best overall response", _category_handles({c for _, _, c in ordered}, bar=True)),
                           ("dashed: threshold", threshold_handles)])
    return _save(fig, path)


def _spread(values: Sequence[float], gap: float) -> list[float]:
    """Positions as close to ``values`` as possible but at least ``gap`` apart (keeps the order)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = list(values)
    for k in range(1, len(order)):
        out[order[k]] = max(out[order[k]], out[order[k - 1]] + gap)
    # Centre the pushed-up block again so labels stay around their line ends.
    shift = (sum(out) - sum(values)) / len(values) if values else 0.0
    return [v - shift for v in out] if shift > gap / 2 else out


def spider_plot(path: Path, courses: Mapping[str, Sequence[TimePointCall]], best: Mapping[str, str], *,
                criterion: str, measure: str | None) -> Path:
    """% change from baseline over days since baseline, one line per patient.

    Parameters
    ----------
    path : Path
        PNG to write.
    courses : mapping patient_id -> time point calls
        The patient's rows for this criterion (pre-baseline scans, with no change, are skipped).
    best : mapping patient_id -> best overall response category
        Colours the patient's line; each marker shows the call at that time point.
    criterion, measure : str
        As for :func:`waterfall_plot`.

    Returns
    -------
    Path
        ``path``.
    """
    from matplotlib.lines import Line2D

    fig = _figure(9.8, 5.2)
    ax = fig.add_subplot()
    thresholds = thresholds_for(measure)
    label_ends = len(courses) <= 25
    calls_seen: set[str] = set()
    lines_seen: set[str] = set()
    ends: list[tuple[float, float, str]] = []
    y_all: list[float] = [0.0]
    x_all: list[float] = [0.0]
    for patient, points in courses.items():
        pts = sorted((p for p in points if p.is_follow_up and p.days_since_baseline is not None
                      and p.change_from_baseline_pct is not None), key=lambda p: p.days_since_baseline or 0.0)
        xs = [0.0] + [float(p.days_since_baseline or 0.0) for p in pts]
        ys = [0.0] + [float(p.change_from_baseline_pct or 0.0) for p in pts]
        best_cat = best.get(patient, "other")
        if len(xs) > 1:
            lines_seen.add(best_cat)
        ax.plot(xs, ys, color=COLOURS.get(best_cat, COLOURS["other"]), linewidth=1.9, zorder=2,
                path_effects=_line_effects(best_cat))
        for p in pts:
            calls_seen.add(p.category)
            ax.plot([p.days_since_baseline], [p.change_from_baseline_pct], linestyle="none",
                    **_marker_style(p.category), zorder=3)
        if len(xs) > 1:
            ends.append((xs[-1], ys[-1], patient))
        x_all += xs
        y_all += ys
    threshold_handles = _threshold_lines(ax, thresholds)
    ax.axvline(0.0, color="#444444", linewidth=0.8, zorder=1)
    span = max(x_all) - min(x_all) or 1.0
    longest = max((len(p) for _, _, p in ends), default=0) if label_ends else 0
    ax.set_xlim(min(x_all) - 0.03 * span, max(x_all) + (0.05 + 0.016 * min(longest, 24)) * span)
    y_low, y_high = min(-105.0, min(y_all) - 8), max(thresholds[1] + 15, max(y_all) * 1.06 + 8)
    ax.set_ylim(y_low, y_high)
    if label_ends and ends:
        # Only labels whose lines end on about the same day can collide: spread each such group.
        ends.sort(key=lambda e: e[0])
        groups: list[list[tuple[float, float, str]]] = [[ends[0]]]
        for e in ends[1:]:
            if e[0] - groups[-1][-1][0] < 0.08 * span:
                groups[-1].append(e)
            else:
                groups.append([e])
        placed = [(e, yl) for g in groups for e, yl in zip(g, _spread([y for _, y, _ in g], 0.05 * (y_high - y_low)))]
        for (xe, ye, patient), yl in placed:
            moved = abs(yl - ye) > 1e-9
            ax.annotate(mpl_text(patient), xy=(xe, ye), xytext=(xe + 0.025 * span, yl), textcoords="data",
                        va="center", ha="left", fontsize=8.5, color="#222222",
                        arrowprops={"arrowstyle": "-", "color": "#999999", "linewidth": 0.6,
                                    "shrinkA": 0, "shrinkB": 5} if moved else None)
    ax.set_xlabel("days since baseline")
    name = MEASURE_NAMES.get(measure or "sum_mm", "tumour burden")
    ax.set_ylabel(f"change from baseline (%)\n{name}")
    ax.set_title(f"{mpl_text(criterion)}: % change from baseline over time", fontsize=11, loc="left")
    ax.grid(color="#ececec", zorder=0)
    line_handles = [Line2D([], [], color=COLOURS[c], linewidth=2.2, label=c, path_effects=_line_effects(c))
                    for c in CATEGORIES if c in lines_seen]
    _sectioned_legend(ax, [("line: best overall response", line_handles),
                           ("marker: call at the time point", _category_handles(calls_seen, bar=False)),
                           ("dashed: threshold", threshold_handles)])
    return _save(fig, path)


def _sectioned_legend(ax: Axes, sections: Sequence[tuple[str, Sequence[Any]]]) -> None:
    """One legend right of the axes, a bold heading row before each non-empty group of handles."""
    from matplotlib.patches import Rectangle

    handles: list[Any] = []
    labels: list[str] = []
    headings: set[int] = set()
    for heading, group in sections:
        if not group:
            continue
        headings.add(len(labels))
        handles.append(Rectangle((0, 0), 0, 0, visible=False))
        labels.append(heading)
        handles += list(group)
        labels += [h.get_label() for h in group]
    legend = ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8.5,
                       frameon=False, handletextpad=0.6, borderaxespad=0.0)
    for i, text in enumerate(legend.get_texts()):
        if i in headings:
            text.set_fontweight("bold")


def swimmer_plot(path: Path, courses: Mapping[str, Sequence[TimePointCall]], *, criterion: str,
                 failed_days: Mapping[str, Sequence[float]] | None = None) -> Path:
    """One lane per patient: follow-up time, the call at each assessment, and its flags.

    Parameters
    ----------
    path : Path
        PNG to write.
    courses : mapping patient_id -> time point calls
        The patient's rows for this criterion.
    criterion : str
        Name for the title.
    failed_days : mapping patient_id -> days since baseline, optional
        Scans that failed in the pipeline (``failures.csv``), marked with a cross under the lane.

    Returns
    -------
    Path
        ``path``.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    failed_days = failed_days or {}

    def extent(points: Sequence[TimePointCall]) -> float:
        return max((p.days_since_baseline for p in points if p.days_since_baseline is not None), default=0.0)

    # Longest follow-up on top (matplotlib's y grows upwards).
    patients = sorted(courses, key=lambda pid: (-extent(courses[pid]), _natural(pid)))[::-1]
    n = len(patients)
    lane_in = 0.42 if n <= 60 else max(0.12, 25.0 / n)
    scale = lane_in / 0.42  # markers shrink with the lanes of a long list
    fig = _figure(10.5, min(2.0 + lane_in * max(n, 1), 100.0))
    ax = fig.add_subplot()
    every_x = [0.0] + [d for pts in courses.values() for p in pts if (d := p.days_since_baseline) is not None]
    every_x += [d for ds in failed_days.values() for d in ds]
    span = (max(every_x) - min(every_x)) or 1.0
    dx = 0.012 * span
    calls_seen: set[str] = set()
    flags_seen: set[str] = set()
    any_after = any_failed = False
    for y, patient in enumerate(patients):
        pts = sorted((p for p in courses[patient] if p.days_since_baseline is not None),
                     key=lambda p: p.days_since_baseline or 0.0)
        days = [float(p.days_since_baseline or 0.0) for p in pts]
        start = min([0.0, *days])
        end = max([0.0, *days, *failed_days.get(patient, ())])
        # The progression is the assessment before the first one flagged "after_progression".
        first_after = next((i for i, p in enumerate(pts) if "after_progression" in p.flags), None)
        progression = None if first_after is None else days[max(first_after - 1, 0)]
        solid_end = end if progression is None else progression
        ax.barh(y, solid_end - start, left=start, height=0.42, color="#d9d9d9", edgecolor="#9a9a9a",
                linewidth=0.6, zorder=1)
        if progression is not None:
            any_after = True
            ax.barh(y, end - progression, left=progression, height=0.42, color="white", edgecolor="#9a9a9a",
                    hatch="////", linewidth=0.6, zorder=1)
        for p, xv in zip(pts, days):
            calls_seen.add(p.category)
            ax.plot([xv], [y], linestyle="none", **_marker_style(p.category, scale=scale), zorder=3)
            shown = [f for f in FLAG_STYLES if f in p.flags]
            for k, flag in enumerate(shown):
                flags_seen.add(flag)
                ax.plot([xv + (k - (len(shown) - 1) / 2) * 1.8 * dx], [y + 0.38], linestyle="none",
                        **_flag_style(flag), zorder=4)
        for d in failed_days.get(patient, ()):
            any_failed = True
            ax.plot([d], [y - 0.38], linestyle="none", **_FAILED_STYLE, zorder=4)
    ax.axvline(0.0, color="#000000", linewidth=0.9, linestyle=":", zorder=0)
    ax.set_yticks(range(n))
    ax.set_yticklabels([mpl_text(p) for p in patients], fontsize=9 if n <= 60 else 6)
    ax.set_ylim(-0.8, n - 0.2 if n else 0.8)
    ax.set_xlim(min(every_x) - 0.04 * span, max(every_x) + 0.04 * span)
    ax.set_xlabel("days since baseline (0 = baseline scan)")
    ax.set_ylabel("patient")
    ax.set_title(f"{mpl_text(criterion)}: assessments and flags over time", fontsize=11, loc="left")
    ax.grid(axis="x", color="#ececec", zorder=0)
    flag_handles = [Line2D([], [], linestyle="none", **_flag_style(f), label=FLAG_STYLES[f][2])
                    for f in FLAG_STYLES if f in flags_seen]
    if any_failed:
        flag_handles.append(Line2D([], [], linestyle="none", **_FAILED_STYLE, label="scan failed (pipeline)"))
    lanes = [Patch(facecolor="#d9d9d9", edgecolor="#9a9a9a", label="follow-up")]
    if any_after:
        lanes.append(Patch(facecolor="white", edgecolor="#9a9a9a", hatch="////", label="after progression"))
    _sectioned_legend(ax, [("call", _category_handles(calls_seen, bar=False)),
                           ("flag (above the call)", flag_handles), ("lane", lanes)])
    return _save(fig, path)


_FAILED_STYLE: dict[str, Any] = {"marker": "x", "markersize": 7, "color": "#000000", "markeredgewidth": 1.8}


def _flag_style(flag: str) -> dict[str, Any]:
    marker, colour, _ = FLAG_STYLES[flag]
    text = marker.startswith("$")
    return {"marker": marker, "markersize": 9.5 if text else 7.0, "color": colour,
            "markeredgecolor": colour if text else "#222222", "markeredgewidth": 0.5}


def finite(value: float | None) -> float | None:
    """``value`` if it is a finite number, else ``None``."""
    return value if value is not None and math.isfinite(value) else None
