"""The static HTML report of a run: ``run_dir/report/index.html`` and its images.

Reads the run's outputs by column name (extra columns are ignored, missing ones are empty),
draws the figures of :mod:`imaging.report.plots`, and writes one self-contained page: no
server, no script, no external resource. Every value read from the run is escaped with
:func:`html.escape`: values are data, never markup.

The report is built in a temporary folder beside ``report/`` and renamed into place, so an
interrupted or failing build never replaces a good report with a half-written one.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imaging.report import plots
from imaging.report.plots import MEASURE_NAMES, MEASURES, TimePointCall

REPORT_DIR = "report"
# Leftovers of a build killed mid-way (temp folders) older than this are removed by the next build.
_STALE_SECONDS = 3600.0

# Lesion table: (column in lesions.csv, header, decimals or None for text).
LESION_COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("lesion_id", "lesion", None),
    ("label", "label", None),
    ("organ", "organ", None),
    ("nodal", "nodal", None),
    ("status", "status", None),
    ("tracking", "tracking", None),
    ("compartment", "compartment", None),
    ("sequence", "measured on", None),
    ("long_axis_mm", "long axis (mm)", 1),
    ("short_axis_mm", "short axis (mm)", 1),
    ("perpendicular_mm", "perpendicular (mm)", 1),
    ("bidimensional_product_mm2", "product (mm\u00b2)", 0),
    ("max_3d_diameter_mm", "max 3D diameter (mm)", 1),
    ("volume_mm3", "volume (mm\u00b3)", 0),
    ("n_voxels", "voxels", 0),
)
SUM_HEADERS: dict[str, str] = {
    "sum_mm": "sum of diameters (mm)",
    "sum_products_mm2": "sum of products (mm\u00b2)",
    "sum_volume_mm3": "sum of volumes (mm\u00b3)",
}


@dataclass
class RunData:
    """A run's outputs as read from its folder (CSV values as text, parsed where used)."""

    run_dir: Path
    calls: list[TimePointCall] = field(default_factory=list)
    best: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    lesions: list[dict[str, str]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    registrations: list[dict[str, str]] = field(default_factory=list)
    series: list[dict[str, str]] = field(default_factory=list)  # series.csv: every series considered, chosen or not
    summary: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def criteria(self) -> list[str]:
        """Criteria in the order the run listed them, then any other found in responses.csv."""
        listed = [str(c) for c in self.summary.get("criteria", []) or [] if isinstance(c, str)]
        found = list(dict.fromkeys(c.criterion for c in self.calls))
        return [c for c in listed if c in found] + [c for c in found if c not in listed]

    @property
    def patients(self) -> list[str]:
        ids = {c.patient_id for c in self.calls} | {p for p, _ in self.best}
        ids |= {r.get("patient_id", "") for r in self.lesions} | {r.get("patient_id", "") for r in self.failures}
        return sorted((i for i in ids if i), key=_natural_key)


def _natural_key(text: str) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def _number(text: str | None) -> float | None:
    if text is None or not str(text).strip():
        return None
    try:
        return plots.finite(float(text))
    except ValueError:
        return None


def _date(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(text or "").strip()[:10])
    except ValueError:
        return None


def _read_csv(path: Path, problems: list[str]) -> list[dict[str, str]]:
    if not path.is_file():
        problems.append(f"{path.name} not found")
        return []
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return [{k: (v or "") for k, v in row.items() if k is not None} for row in csv.DictReader(fh)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        problems.append(f"{path.name} unreadable: {exc}")
        return []


def _read_json(path: Path, problems: list[str]) -> dict[str, Any]:
    if not path.is_file():
        problems.append(f"{path.name} not found")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problems.append(f"{path.name} unreadable: {exc}")
        return {}
    return data if isinstance(data, dict) else {}


def _call_from_row(row: Mapping[str, str]) -> TimePointCall:
    return TimePointCall(
        patient_id=row.get("patient_id", ""),
        date=_date(row.get("date")),
        date_text=row.get("date", ""),
        criterion=row.get("criterion", ""),
        response=row.get("response", "").strip(),
        flags=tuple(f.strip() for f in row.get("flags", "").split(";") if f.strip()),
        reason=row.get("reason", ""),
        sums={m: _number(row.get(m)) for m in MEASURES},
        change_from_baseline_pct=_number(row.get("change_from_baseline_pct")),
        change_from_nadir_pct=_number(row.get("change_from_nadir_pct")),
        days_since_baseline=_number(row.get("days_since_baseline")),
    )


def load_run(run_dir: Path) -> RunData:
    """Read a run folder's outputs; a missing or unreadable file is noted in ``problems``."""
    data = RunData(run_dir=run_dir)
    data.calls = [_call_from_row(r) for r in _read_csv(run_dir / "responses.csv", data.problems)]
    for row in _read_csv(run_dir / "best_overall_response.csv", data.problems):
        data.best[(row.get("patient_id", ""), row.get("criterion", ""))] = row
    data.lesions = _read_csv(run_dir / "lesions.csv", data.problems)
    data.failures = _read_csv(run_dir / "failures.csv", data.problems)
    if (run_dir / "registrations.csv").is_file():  # runs that register their scans
        data.registrations = _read_csv(run_dir / "registrations.csv", data.problems)
    if (run_dir / "series.csv").is_file():  # DICOM runs: which series each time point measured, and why
        data.series = _read_csv(run_dir / "series.csv", data.problems)
    data.summary = _read_json(run_dir / "summary.json", data.problems)
    data.provenance = _read_json(run_dir / "provenance.json", data.problems)
    return data


# --------------------------------------------------------------------------- HTML pieces

def esc(value: Any) -> str:
    """Text for HTML (element content and quoted attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def _fmt(value: float | None, decimals: int = 1, sign: bool = False) -> str:
    if value is None:
        return ""
    return f"{value:+.{decimals}f}" if sign else f"{value:,.{decimals}f}"


def _badge(call: str, category: str) -> str:
    slug = re.sub(r"[^a-z]+", "-", category.lower()).strip("-")
    return f'<span class="call c-{slug}">{esc(call or category)}</span>'


def _best_badge(response: str) -> str:
    """The badge of a best overall response (none recorded reads as NE)."""
    return _badge(response, plots.call_category(response) if response else "NE")


def _flags(flags: Iterable[str]) -> str:
    shown = [f for f in flags if f not in ("baseline", "pre_baseline")]
    return " ".join(f'<span class="flag f-{esc(re.sub(r"[^a-z_]", "", f))}">{esc(f.replace("_", " "))}</span>'
                    for f in shown)


def _table(headers: Sequence[str], rows: Iterable[str], cls: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "\n".join(rows)
    return (f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead>\n'
            f"<tbody>{body}</tbody></table></div>")


def _safe_part(text: str) -> str:
    """A value made safe as one file-name component (no separators, no '..')."""
    return (re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x")[:80]


# --------------------------------------------------------------------------- sections

CSS = """
:root { --ink:#1b1b1b; --muted:#5a5a5a; --line:#d6d6d6; --bg:#fafafa; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif;
       color: var(--ink); background: #fff; margin: 0; line-height: 1.4; font-size: 15px; }
main { max-width: 1320px; margin: 0 auto; padding: 18px 28px 60px; }
h1 { font-size: 1.7em; margin: 0.2em 0 0.1em; }
h2 { font-size: 1.35em; border-bottom: 2px solid var(--ink); padding-bottom: 3px; margin-top: 1.8em; }
h3 { font-size: 1.1em; margin: 1.3em 0 0.4em; }
h4 { font-size: 1em; margin: 1em 0 0.3em; }
.sub { color: var(--muted); margin: 0 0 0.8em; }
nav { background: var(--bg); border: 1px solid var(--line); padding: 8px 12px; border-radius: 6px; margin: 10px 0; }
nav a { margin-right: 0.9em; white-space: nowrap; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 10px 0 6px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 6px 14px; background: var(--bg); min-width: 120px; }
.card b { display: block; font-size: 1.5em; }
.card.bad b { color: #b03a00; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 0.88em; }
th, td { border: 1px solid var(--line); padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #efefef; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.date { white-space: nowrap; }
td.reason { min-width: 22em; max-width: 48em; color: #333; }
tbody tr:nth-child(even) { background: #f7f7f7; }
tr.group td { background: #e9eef5; font-weight: 600; }
tr.failed td { background: #fff0e6; }
.call { display: inline-block; padding: 0 6px; border-radius: 4px; font-weight: 600; white-space: nowrap;
        border: 1px solid #444; color: #000; }
.c-cr { background: #0072B2; color: #fff; } .c-pr { background: #009E73; } .c-sd { background: #F0E442; }
.c-non-cr-non-pd { background: #56B4E9; } .c-unconfirmed-pd { background: #E69F00; }
.c-pd { background: #D55E00; } .c-ne { background: #bbbbbb; } .c-baseline { background: #000; color: #fff; }
.c-pre-baseline { background: #fff; } .c-other { background: #CC79A7; }
.flag { display: inline-block; font-size: 0.85em; padding: 0 5px; margin: 1px 2px 1px 0; border-radius: 9px;
        background: #eee; border: 1px solid #bbb; white-space: nowrap; }
.f-possible_pseudoprogression, .f-pseudoprogression_confirmed { background: #f3dcea; border-color: #CC79A7; }
.f-progression_confirmed, .f-hyperprogression { background: #fbe0cf; border-color: #D55E00; }
.fail { color: #9a3300; }
.series { color: #555; font-size: 0.9em; }
figure.plot { margin: 8px 0 18px; }
figure.plot img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: var(--muted); font-size: 0.88em; max-width: 75em; }
.gallery { display: flex; flex-wrap: wrap; gap: 10px; }
.gallery figure { margin: 0; width: 230px; }
.gallery img { width: 230px; height: auto; border: 1px solid var(--line); background: #000; }
details { margin: 4px 0 8px; }
summary { cursor: pointer; font-weight: 600; }
pre { background: var(--bg); border: 1px solid var(--line); padding: 8px; overflow-x: auto; font-size: 0.82em; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 6px 0; font-size: 0.92em; }
dl.kv dt { color: var(--muted); } dl.kv dd { margin: 0; overflow-wrap: anywhere; }
.note { color: var(--muted); font-size: 0.9em; }
.warn { background: #fff4d6; border: 1px solid #e0c060; padding: 6px 10px; border-radius: 5px; }
"""


class _Page:
    """Collects the page while figures and snapshots are written into ``out``."""

    def __init__(self, data: RunData, out: Path, title: str, figures: Path | None = None) -> None:
        self.data = data
        self.out = out
        self.title = title
        self.figures = figures  # figures rendered ahead (render_figures), copied instead of drawn again
        self.patients = data.patients
        self.anchor = {p: f"patient-{i + 1}" for i, p in enumerate(self.patients)}
        self.criteria = data.criteria
        self.by_crit_patient: dict[str, dict[str, list[TimePointCall]]] = defaultdict(lambda: defaultdict(list))
        for c in data.calls:
            self.by_crit_patient[c.criterion][c.patient_id].append(c)
        for per_patient in self.by_crit_patient.values():
            for rows in per_patient.values():
                rows.sort(key=_call_order)
        self.chosen_series: dict[tuple[str, str], dict[str, str]] = {
            (r.get("patient_id", ""), r.get("date", "")): r for r in data.series if r.get("chosen") == "True"}
        self.failures_by_patient: dict[str, list[dict[str, str]]] = defaultdict(list)
        for f in data.failures:
            self.failures_by_patient[f.get("patient_id", "")].append(f)
        # Days since baseline per (patient, date), from any criterion: dates of failed scans get theirs.
        self.days: dict[tuple[str, str], float] = {}
        self.baseline_date: dict[str, dt.date] = {}
        for c in data.calls:
            if c.days_since_baseline is not None:
                self.days.setdefault((c.patient_id, c.date_text), c.days_since_baseline)
            if c.category == "baseline" and c.date is not None:
                self.baseline_date.setdefault(c.patient_id, c.date)

    def days_of(self, patient: str, date_text: str) -> float | None:
        if (patient, date_text) in self.days:
            return self.days[(patient, date_text)]
        base, when = self.baseline_date.get(patient), _date(date_text)
        return float((when - base).days) if base and when else None

    def patient_link(self, patient: str) -> str:
        return f'<a href="#{self.anchor[patient]}">{esc(patient)}</a>' if patient in self.anchor else esc(patient)

    # ----------------------------------------------------------------- header
    def header(self) -> str:
        s, p, d = self.data.summary, self.data.provenance, self.data
        n_patients = s.get("patients", len(self.patients))
        n_tp = s.get("timepoints", len({(c.patient_id, c.date_text) for c in d.calls}))
        n_failed = s.get("failed", len(d.failures))
        cards = [("patients", n_patients, False), ("time points", n_tp, False),
                 ("failed", n_failed, bool(n_failed)), ("criteria", ", ".join(self.criteria) or "none", False)]
        parts = [f"<h1>{esc(self.title)}</h1>",
                 f'<p class="sub">run <b>{esc(s.get("name", d.run_dir.name))}</b> \u00b7 '
                 f"folder <code>{esc(d.run_dir)}</code></p>",
                 '<div class="cards">' + "".join(
                     f'<div class="card{" bad" if bad else ""}"><b>{esc(v)}</b>{esc(k)}</div>'
                     for k, v, bad in cards) + "</div>"]
        for problem in d.problems:
            parts.append(f'<p class="warn">{esc(problem)}</p>')
        nav = [f'<a href="#criterion-{i + 1}">{esc(c)}</a>' for i, c in enumerate(self.criteria)]
        nav += [f'<a href="#{self.anchor[pt]}">{esc(pt)}</a>' for pt in self.patients]
        parts.append("<nav><b>Go to:</b> <a href=\"#run\">run</a> " + " ".join(nav) + "</nav>")

        parts.append('<h2 id="run">Run</h2>')
        started, finished = p.get("started", ""), p.get("finished", "")
        seconds = p.get("seconds")
        kv = [("code version", p.get("code_version", "")), ("config hash", p.get("config_hash", "")),
              ("started", started), ("finished", finished),
              ("wall time", f"{seconds:.1f} s" if isinstance(seconds, (int, float)) else ""),
              ("host", p.get("host", "")), ("python", p.get("python", "")), ("platform", p.get("platform", ""))]
        parts.append('<dl class="kv">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in kv if v != "")
                     + "</dl>")
        notes = s.get("notes") or []
        if isinstance(notes, list) and notes:
            parts.append("<h3>Notes</h3><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
        parts.append(f"<h3>Failures ({len(d.failures)})</h3>")
        if d.failures:
            rows = [f'<tr class="failed"><td>{self.patient_link(f.get("patient_id", ""))}</td>'
                    f'<td class="date">{esc(f.get("date", ""))}</td><td>{esc(f.get("stage", ""))}</td>'
                    f'<td class="reason">{esc(f.get("reason", ""))}</td></tr>' for f in d.failures]
            parts.append(_table(["patient", "date", "stage", "reason"], rows))
        else:
            parts.append('<p class="note">No scan or patient failed.</p>')
        packages = p.get("packages")
        if isinstance(packages, dict) and packages:
            parts.append("<details><summary>Package versions</summary>" + '<dl class="kv">' + "".join(
                f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in packages.items()) + "</dl></details>")
        if "config" in p:
            parts.append("<details><summary>Configuration</summary><pre>"
                         + esc(json.dumps(p["config"], indent=2, default=str)) + "</pre></details>")
        return "\n".join(parts)

    # ----------------------------------------------------------------- per criterion
    def criterion_section(self, index: int, criterion: str) -> str:
        per_patient = self.by_crit_patient[criterion]
        all_points = [c for rows in per_patient.values() for c in rows]
        measure = plots.measure_of(all_points)
        low, high = plots.thresholds_for(measure)
        best_cat: dict[str, str] = {}
        best_text: dict[str, str] = {}
        for patient in per_patient:
            row = self.data.best.get((patient, criterion))
            best_text[patient] = (row or {}).get("response", "")
            best_cat[patient] = plots.call_category(best_text[patient]) if best_text[patient] else "NE"
        waterfall_rows = []
        no_change = []
        for patient, rows in per_patient.items():
            value = plots.best_change_pct(rows)
            if value is None:
                no_change.append(patient)
            else:
                waterfall_rows.append((patient, value, best_cat[patient]))
        stem = f"fig/{index + 1:02d}_{_safe_part(criterion)}"
        failed_days: dict[str, list[float]] = defaultdict(list)
        for f in self.data.failures:
            days = self.days_of(f.get("patient_id", ""), f.get("date", ""))
            if days is not None and f.get("patient_id", "") in per_patient:
                failed_days[f.get("patient_id", "")].append(days)

        name = MEASURE_NAMES.get(measure or "", "tumour burden")
        parts = [f'<h2 id="criterion-{index + 1}">Criterion: {esc(criterion)}</h2>',
                 f'<p class="sub">burden compared: {esc(name)}; thresholds drawn: response {low:+.0f}%, '
                 f"progression {high:+.0f}% change from baseline (progression is judged against the nadir "
                 "by most criteria, see each call's reason).</p>"]
        counts = Counter(best_text[p] or "none" for p in per_patient)
        parts.append('<p>Best overall response: ' + ", ".join(
            f"{_badge(k, plots.call_category(k) if k != 'none' else 'NE')} \u00d7 {v}"
            for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) + "</p>")
        if waterfall_rows:
            self._plot(f"{stem}_waterfall.png", plots.waterfall_plot, waterfall_rows, criterion=criterion,
                       measure=measure)
            caption = ("Waterfall: each bar is one patient's best (lowest) % change from baseline, up to and "
                       "including the first progression; bar colour is the best overall response. "
                       f"Bars above +{plots.WATERFALL_CAP_PCT:.0f}% are cut, with their value written on top.")
            if no_change:
                caption += " No evaluable follow-up: " + ", ".join(esc(p) for p in no_change) + "."
            parts.append(self._figure(f"{stem}_waterfall.png", f"Waterfall plot, {criterion}", caption))
        else:
            parts.append('<p class="note">No patient has a follow-up with a % change: no waterfall plot.</p>')
        if per_patient:
            self._plot(f"{stem}_spider.png", plots.spider_plot, per_patient, best_cat, criterion=criterion,
                       measure=measure)
            parts.append(self._figure(
                f"{stem}_spider.png", f"Spider plot, {criterion}",
                "Spider: % change from baseline at each assessment, one line per patient starting at 0 on the "
                "baseline day; line colour is the best overall response, the marker the call at that time point. "
                "Dashed lines: the response and progression thresholds."))
            self._plot(f"{stem}_swimmer.png", plots.swimmer_plot, per_patient, criterion=criterion,
                       failed_days=failed_days)
            parts.append(self._figure(
                f"{stem}_swimmer.png", f"Swimmer plot, {criterion}",
                "Swimmer: one lane per patient (longest follow-up on top) from the first scan to the last; "
                "the dotted line is the baseline (day 0). Each marker is an assessment and its call; symbols "
                "above a marker are flags of that assessment (written when a later scan settles it); a cross "
                "below the lane is a scan the pipeline could not read; the hatched part follows a progression."))
        return "\n".join(parts)

    def _plot(self, rel: str, draw: Any, *args: Any, **kwargs: Any) -> None:
        """Draw a figure into the page's folder, or take the one :func:`render_figures` drew from the same data."""
        ready = self.figures / rel if self.figures is not None else None
        if ready is not None and ready.is_file():
            (self.out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ready, self.out / rel)
            return
        draw(self.out / rel, *args, **kwargs)

    def _figure(self, rel: str, alt: str, caption: str) -> str:
        return (f'<figure class="plot"><a href="{esc(rel)}"><img src="{esc(rel)}" alt="{esc(alt)}"></a>'
                f"<figcaption>{caption}</figcaption></figure>")

    # ----------------------------------------------------------------- per patient
    def patient_section(self, index: int, patient: str) -> str:
        parts = [f'<h2 id="{self.anchor[patient]}">Patient {esc(patient)}</h2>']
        best_rows = [(c, self.data.best[(patient, c)]) for c in self.criteria if (patient, c) in self.data.best]
        if best_rows:
            rows = [f"<tr><td>{esc(c)}</td><td>{_best_badge(r.get('response', ''))}</td>"
                    f'<td class="date">{esc(r.get("date", ""))}</td>'
                    f'<td class="reason">{esc(r.get("reason", ""))}</td></tr>' for c, r in best_rows]
            parts.append("<h3>Best overall response</h3>"
                         + _table(["criterion", "best response", "date", "reason"], rows))
        failures = self.failures_by_patient.get(patient, [])
        if failures:
            parts.append("<h3>Failures</h3><ul>" + "".join(
                f'<li class="fail">{esc(f.get("date", "") or "(patient)")} \u00b7 {esc(f.get("stage", ""))}: '
                f'{esc(f.get("reason", ""))}</li>' for f in failures) + "</ul>")
        parts.append("<h3>Timeline</h3>")
        for k, criterion in enumerate(self.criteria):
            rows = self.by_crit_patient[criterion].get(patient, [])
            if not rows:
                continue
            open_attr = " open" if k == 0 else ""
            parts.append(f"<details{open_attr}><summary>{esc(criterion)}</summary>"
                         + self._timeline(patient, rows) + "</details>")
        parts.append(self._registrations(patient))
        parts.append(self._lesions(patient))
        parts.append(self._snapshots(index, patient))
        return "\n".join(parts)

    def _series_line(self, patient: str, date_text: str) -> str:
        """The series a time point measured and why (series.csv), as a line under the call's reason."""
        row = self.chosen_series.get((patient, date_text))
        if row is None:
            return ""
        return f'<br><span class="series">measured on {esc(row.get("reason", ""))}</span>'

    def _timeline(self, patient: str, rows: Sequence[TimePointCall]) -> str:
        measures = [m for m in MEASURES if any(r.sums.get(m) is not None for r in rows)]
        failed = {f.get("date", ""): f for f in self.failures_by_patient.get(patient, []) if f.get("date")}
        # Gliomas: the T2/FLAIR burden (lesions.csv rows of compartment flair_burden) beside the enhancing sum.
        flair = {r.get("date", ""): _number(r.get("volume_mm3")) for r in self.data.lesions
                 if r.get("patient_id") == patient and r.get("compartment") == "flair_burden"}
        lines: list[tuple[tuple[Any, ...], str]] = []
        for r in rows:
            fail = failed.get(r.date_text)
            reason = esc(r.reason) + self._series_line(patient, r.date_text)
            if fail:
                reason += (f'<br><span class="fail">scan failed ({esc(fail.get("stage", ""))}): '
                           f'{esc(fail.get("reason", ""))}</span>')
            cells = [f'<td class="date">{esc(r.date_text)}</td>',
                     f'<td class="num">{_fmt(r.days_since_baseline, 0)}</td>']
            cells += [f'<td class="num">{_fmt(r.sums.get(m), 1)}</td>' for m in measures]
            if flair:
                volume = flair.get(r.date_text)
                cells.append(f'<td class="num">{_fmt(volume / 1000.0 if volume is not None else None, 1)}</td>')
            cells += [f'<td class="num">{_fmt(r.change_from_baseline_pct, 1, sign=True)}</td>',
                      f'<td class="num">{_fmt(r.change_from_nadir_pct, 1, sign=True)}</td>',
                      f"<td>{_badge(r.response, r.category)}</td>", f"<td>{_flags(r.flags)}</td>",
                      f'<td class="reason">{reason}</td>']
            row_open = '<tr class="failed">' if fail else "<tr>"
            lines.append((_call_order(r), row_open + "".join(cells) + "</tr>"))
        seen = {r.date_text for r in rows}
        for date_text, fail in failed.items():
            if date_text in seen:
                continue
            days = self.days_of(patient, date_text)
            empty = '<td class="num"></td>' * (len(measures) + 2 + (1 if flair else 0))
            lines.append(((_date(date_text) or dt.date.max, date_text),
                          f'<tr class="failed"><td class="date">{esc(date_text)}</td>'
                          f'<td class="num">{_fmt(days, 0)}</td>{empty}<td></td><td></td>'
                          f'<td class="reason"><span class="fail">scan failed ({esc(fail.get("stage", ""))}): '
                          f'{esc(fail.get("reason", ""))}</span></td></tr>'))
        headers = ["date", "days"] + [SUM_HEADERS[m] for m in measures] + (["T2/FLAIR burden (ml)"] if flair else []) + [
            "vs baseline (%)", "vs nadir (%)", "call", "flags", "reason"]
        return _table(headers, (line for _, line in sorted(lines, key=lambda t: t[0])), cls="timeline")

    def _registrations(self, patient: str) -> str:
        """Each scan's registration to the baseline: status, motion, metric, landmark error (registrations.csv)."""
        rows = sorted((r for r in self.data.registrations if r.get("patient_id") == patient),
                      key=lambda r: (_date(r.get("date")) or dt.date.max, r.get("date", "")))
        if not rows:
            return ""
        body = []
        for r in rows:
            ok = r.get("status") == "ok"
            scales = f'{_fmt(_number(r.get("scale_min")), 4)}–{_fmt(_number(r.get("scale_max")), 4)}'
            landmarks = (f'{_fmt(_number(r.get("landmark_error_mm")), 2)} (max {_fmt(_number(r.get("landmark_error_max_mm")), 2)}, '
                         f'n={esc(r.get("landmarks", ""))})') if _number(r.get("landmark_error_mm")) is not None else ""
            body.append(
                ("<tr>" if ok else '<tr class="failed">')
                + f'<td class="date">{esc(r.get("date", ""))}</td>'
                + (f"<td>{esc(r.get('status', ''))}</td>" if ok else f'<td><span class="fail">{esc(r.get("status", ""))}</span></td>')
                + f'<td class="num">{_fmt(_number(r.get("rotation_deg")), 2)}</td>'
                + f'<td class="num">{_fmt(_number(r.get("translation_mm")), 1)}</td>'
                + f'<td class="num">{scales}</td>'
                + f'<td class="num">{_fmt(_number(r.get("metric_initial")), 3)} → {_fmt(_number(r.get("metric_final")), 3)}</td>'
                + f'<td class="num">{landmarks}</td>'
                + f'<td class="reason">{esc(r.get("problems", ""))}</td></tr>'
            )
        headers = ["scan", "status", "rotation (°)", "shift (mm)", "scales", "Mattes MI before → after",
                   "landmark error (mm)", "problems"]
        return ("<h3>Registration to the baseline</h3><p>Rigid + affine, lesions masked out; transforms in "
                "<code>transforms/</code>. A scan whose registration is not ok is not used as registered.</p>"
                + _table([esc(h) for h in headers], body, cls="registrations"))

    def _lesions(self, patient: str) -> str:
        rows = [r for r in self.data.lesions if r.get("patient_id") == patient]
        failed = {f.get("date", ""): f for f in self.failures_by_patient.get(patient, []) if f.get("date")}
        if not rows and not failed:
            return ""
        columns = [(c, h, d) for c, h, d in LESION_COLUMNS if any(r.get(c) not in (None, "") for r in rows)
                   and not (c == "sequence" and all(r.get(c) == "measure" for r in rows))]
        by_date: dict[str, list[dict[str, str]]] = defaultdict(list)
        for r in rows:
            by_date[r.get("date", "")].append(r)
        dates = sorted(set(by_date) | set(failed), key=lambda t: (_date(t) or dt.date.max, t))
        width = max(len(columns), 1)
        body: list[str] = []
        for date_text in dates:
            days = self.days_of(patient, date_text)
            label = esc(date_text) + (f" \u00b7 day {days:.0f}" if days is not None else "")
            body.append(f'<tr class="group"><td colspan="{width}">{label}</td></tr>')
            if date_text in failed:
                f = failed[date_text]
                body.append(f'<tr class="failed"><td colspan="{width}"><span class="fail">scan failed '
                            f'({esc(f.get("stage", ""))}): {esc(f.get("reason", ""))}</span></td></tr>')
            for r in sorted(by_date.get(date_text, []), key=lambda r: _natural_key(r.get("lesion_id", ""))):
                cells = []
                for col, _, decimals in columns:
                    value = r.get(col, "")
                    if decimals is None:
                        cells.append(f"<td>{esc(value)}</td>")
                    else:
                        number = _number(value)
                        shown = _fmt(number, decimals) if number is not None else esc(value)
                        cells.append(f'<td class="num">{shown}</td>')
                body.append("<tr>" + "".join(cells) + "</tr>")
        return "<h3>Lesions per time point</h3>" + _table([esc(h) for _, h, _ in columns], body, cls="lesions")

    def _snapshots(self, index: int, patient: str) -> str:
        found = _snapshot_files(self.data.run_dir, patient)
        if not found:
            return '<h3>Lesion snapshots</h3><p class="note">No snapshot for this patient.</p>'
        lesion_info = {(r.get("date", ""), r.get("lesion_id", "")): r
                       for r in self.data.lesions if r.get("patient_id") == patient}
        by_lesion: dict[str, list[tuple[str, Path]]] = defaultdict(list)
        for date_text, lesion_id, src in found:
            by_lesion[lesion_id].append((date_text, src))
        parts = ["<h3>Lesion snapshots</h3>",
                 '<p class="note">The long-axis slice of each lesion with its diameters drawn; '
                 "click for full size.</p>"]
        k = 0
        for lesion_id in sorted(by_lesion, key=_natural_key):
            parts.append(f"<h4>Lesion {esc(lesion_id)}</h4><div class=\"gallery\">")
            for date_text, src in sorted(by_lesion[lesion_id], key=lambda t: (_date(t[0]) or dt.date.max, t[0])):
                k += 1
                rel = f"snapshots/p{index + 1:04d}/{k:04d}_{_safe_part(date_text)}_{_safe_part(lesion_id)}.png"
                _link_or_copy(src, self.out / rel)
                info = lesion_info.get((date_text, lesion_id), {})
                days = self.days_of(patient, date_text)
                long_axis = _number(info.get("long_axis_mm"))
                detail = ", ".join(x for x in (
                    f"day {days:.0f}" if days is not None else "", info.get("status", ""),
                    f"long axis {long_axis:.1f} mm" if long_axis is not None else "",
                ) if x)
                parts.append(f'<figure><a href="{esc(rel)}"><img src="{esc(rel)}" loading="lazy" '
                             f'alt="{esc(f"{patient} {lesion_id} {date_text}")}"></a>'
                             f"<figcaption>{esc(date_text)} \u00b7 {esc(lesion_id)}"
                             f"{('<br>' + esc(detail)) if detail else ''}</figcaption></figure>")
            parts.append("</div>")
        return "\n".join(parts)

    # ----------------------------------------------------------------- whole page
    def render(self) -> str:
        body = [self.header()]
        if not self.criteria:
            body.append('<p class="warn">responses.csv has no row: no plot.</p>')
        for i, criterion in enumerate(self.criteria):
            body.append(self.criterion_section(i, criterion))
        for i, patient in enumerate(self.patients):
            body.append(self.patient_section(i, patient))
        return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
                # No script and nothing from the network, even if a value were to slip through unescaped;
                # file: is listed because browsers differ on whether 'self' covers file:// pages.
                "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                "img-src 'self' file: data:; style-src 'unsafe-inline'\">\n"
                f"<title>{esc(self.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
                + "\n".join(body) + "\n</main>\n</body>\n</html>\n")


def _call_order(call: TimePointCall) -> tuple[Any, ...]:
    return (call.date or dt.date.max, call.date_text)


def _snapshot_files(run_dir: Path, patient: str) -> list[tuple[str, str, Path]]:
    """(date, lesion_id, path) of ``run_dir/snapshots/<patient>/<date>_<lesion_id>.png``.

    The patient folder is looked up as written and as a safe file name; a patient id that
    would lead outside ``snapshots/`` (``..``, separators) is never followed.
    """
    root = (run_dir / "snapshots").resolve()
    if not root.is_dir():
        return []
    for name in dict.fromkeys((patient, _safe_part(patient), re.sub(r"[^A-Za-z0-9._-]+", "_", patient).strip("._"))):
        if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
            continue
        folder = (root / name).resolve()
        if folder.parent != root or not folder.is_dir():
            continue
        out = []
        for png in sorted(folder.glob("*.png")):
            date_text, sep, lesion_id = png.stem.partition("_")
            if sep and png.is_file():
                out.append((date_text, lesion_id, png))
        return out
    return []


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link when the file system allows it (no extra space), else a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _remove_stale(run_dir: Path) -> None:
    now = time.time()
    for leftover in run_dir.glob(f".{REPORT_DIR}-*"):
        try:
            if leftover.is_dir() and now - leftover.stat().st_mtime > _STALE_SECONDS:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            continue


def render_figures(run_dir: Path, dest: Path) -> Path:
    """Draw the report's figures (waterfall, spider, swimmer per criterion) into ``dest`` ahead of the page.

    A run draws them on a worker while the DICOM export runs, and :func:`write_report` (``figures=dest``) then
    takes them instead of drawing them again. They read only what is written before the export (responses,
    best overall responses, the scans' failures), so they are the figures the page would draw.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    page = _Page(load_run(run_dir), dest, "")
    for i, criterion in enumerate(page.criteria):
        page.criterion_section(i, criterion)
    return dest


def write_report(run_dir: Path, *, title: str = "tumor-response run", figures: Path | None = None) -> Path:
    """Write the static HTML report of a run: ``run_dir/report/index.html`` and its images.

    Parameters
    ----------
    run_dir : Path
        A run's output folder (``responses.csv``, ``best_overall_response.csv``, ``lesions.csv``,
        ``failures.csv``, ``summary.json``, ``provenance.json``, optional ``snapshots/``). Missing
        files are reported on the page, not raised.
    title : str
        Page title and heading.
    figures : Path, optional
        Figures :func:`render_figures` drew from this run ahead of the page: copied instead of drawn.

    Returns
    -------
    Path
        ``run_dir/report/index.html``.

    Raises
    ------
    FileNotFoundError
        ``run_dir`` is not a folder.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    _remove_stale(run_dir)
    data = load_run(run_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{REPORT_DIR}-tmp-", dir=run_dir))
    final = run_dir / REPORT_DIR
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the report is meant to be read
        page = _Page(data, tmp, title, figures).render()
        with open(tmp / "index.html", "w", encoding="utf-8") as fh:
            fh.write(page)
            fh.flush()
            os.fsync(fh.fileno())
        old = None
        if final.exists():
            old = run_dir / f".{REPORT_DIR}-old-{uuid.uuid4().hex[:12]}"
            os.replace(final, old)
        try:
            os.replace(tmp, final)
        except OSError:
            if old is not None:
                os.replace(old, final)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final / "index.html"
