"""The HTML report of a hand-made run folder: content, escaping, images, atomic replacement."""

from __future__ import annotations

import html
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from imaging.report import html as report_html
from imaging.report import plots, write_report
from tests.report.factory import BEST, COURSES, FAILURE, SCRIPT, build_run


def _refs(page: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'(?:src|href)="([^"#][^"]*)"', page)]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One report for the read-only tests (built once: drawing the figures takes about a second)."""
    run = build_run(tmp_path_factory.mktemp("report") / "run")
    index = write_report(run, title="Test run")
    assert index == run / "report" / "index.html"
    return run


@pytest.fixture
def page(built: Path) -> str:
    return (built / "report" / "index.html").read_text(encoding="utf-8")


def test_every_patient_and_call_is_shown(page: str):
    for pid in {c[0] for c in COURSES}:
        assert f"Patient {html.escape(pid)}</h2>" in page, pid
    calls = {c[6] for c in COURSES} | {c[8] for c in COURSES} | {b[2] for b in BEST}
    for call in calls - {""}:
        assert f">{html.escape(call)}</span>" in page, call
    for flag in ("pseudoprogression confirmed", "progression confirmed", "hyperprogression", "after progression"):
        assert f">{flag}</span>" in page, flag
    assert "<title>Test run</title>" in page


def test_values_are_escaped_never_markup(page: str):
    assert "<script" not in page.lower()  # neither the data's nor any of ours: the page runs no script
    assert html.escape(SCRIPT) in page
    assert "P&amp;4" in page and "P&4" not in page


def test_failure_new_lesion_and_provenance(page: str):
    assert html.escape(FAILURE["reason"]) in page
    assert page.count("scan failed (measure)") >= 2  # in the timeline and the lesion table
    assert re.search(r"<td>L2</td><td>2</td><td>liver</td><td>False</td><td>new</td>", page)
    for value in ("0.1.0+test", "0123456789abcdef", "2024-06-01T10:00:00+00:00", "2024-06-01T10:05:00+00:00"):
        assert value in page
    assert "something_new" not in page and "a_future_column" not in page and "ignored" not in page


def test_referenced_files_exist_and_images_decode(built: Path, page: str):
    run_dir = built
    refs = _refs(page)
    images = [r for r in refs if r.endswith(".png")]
    # 2 criteria x (waterfall, spider, swimmer), 4 snapshots (each as img src and link href)
    assert len(set(images)) == 2 * 3 + 4, images
    for ref in refs:
        assert not re.match(r"^[a-z]+:", ref), f"external or absolute reference {ref}"  # renders offline
        target = (run_dir / "report" / ref).resolve()
        assert target.is_file(), ref
        assert (run_dir / "report").resolve() in target.parents, ref  # nothing outside the report folder
    for ref in set(images):
        pixels = matplotlib.image.imread(run_dir / "report" / ref)
        assert pixels.ndim == 3 and pixels.shape[0] > 40 and pixels.shape[1] > 40
        assert float(np.std(pixels[..., :3])) > 0.02, f"{ref} is blank"


def test_new_report_replaces_old_and_leaves_no_temp(run_dir: Path):
    write_report(run_dir)
    (run_dir / "report" / "stale.txt").write_text("from an older report")
    write_report(run_dir)
    assert not (run_dir / "report" / "stale.txt").exists()
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".report")) == []


def test_failed_build_keeps_the_good_report(run_dir: Path, monkeypatch: pytest.MonkeyPatch):
    good = write_report(run_dir).read_text(encoding="utf-8")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(plots, "swimmer_plot", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(run_dir)
    assert (run_dir / "report" / "index.html").read_text(encoding="utf-8") == good
    assert [p.name for p in run_dir.iterdir() if p.name.startswith(".report")] == []


def test_missing_outputs_are_reported_not_raised(tmp_path: Path):
    run = tmp_path / "empty"
    run.mkdir()
    page = write_report(run).read_text(encoding="utf-8")
    for name in ("responses.csv", "best_overall_response.csv", "lesions.csv", "summary.json"):
        assert f"{name} not found" in page
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "nowhere")


def test_snapshot_folder_outside_snapshots_is_never_read(tmp_path: Path):
    run = build_run(tmp_path / "run")
    (tmp_path / "run" / "evil").mkdir()
    (tmp_path / "run" / "evil" / "2024-01-01_L1.png").write_bytes(b"not a png")
    rows = (run / "responses.csv").read_text().replace("P&4", "../evil")
    (run / "responses.csv").write_text(rows)
    assert report_html._snapshot_files(run, "../evil") == []
    page = write_report(run).read_text(encoding="utf-8")
    assert "Patient ../evil</h2>" in page


@pytest.mark.parametrize(("call", "flags", "category"), [
    ("", ("baseline",), "baseline"),
    ("", ("pre_baseline",), "pre-baseline"),
    ("CR", (), "CR"), ("iCR", (), "CR"), ("irCR", (), "CR"),
    ("PR", (), "PR"), ("iPR", (), "PR"), ("irPR", (), "PR"),
    ("SD", (), "SD"), ("iSD", (), "SD"), ("irSD", (), "SD"),
    ("non-CR/non-PD", (), "non-CR/non-PD"),
    ("iUPD", (), "unconfirmed PD"), ("preliminary PD", (), "unconfirmed PD"),
    ("irPD (unconfirmed)", (), "unconfirmed PD"),
    ("PD", (), "PD"), ("iCPD", (), "PD"), ("confirmed PD", (), "PD"), ("irPD", (), "PD"),
    ("NE", (), "NE"), ("iNE", (), "NE"),
    ("something new", (), "other"),
])
def test_call_category(call: str, flags: tuple[str, ...], category: str):
    assert plots.call_category(call, flags) == category


def _call(days: float, pct: float | None, response: str = "SD", flags: tuple[str, ...] = (),
          measure: str = "sum_mm") -> plots.TimePointCall:
    return plots.TimePointCall("P", None, "", "c", response, flags, "", {measure: 1.0},
                               change_from_baseline_pct=pct, days_since_baseline=days)


def test_best_change_stops_at_progression():
    course = [_call(0, None, "", ("baseline",)), _call(42, 30.0, "PD"),
              _call(84, -50.0, "PR", ("after_progression",))]
    assert plots.best_change_pct(course) == 30.0
    assert plots.best_change_pct([_call(0, None, "", ("baseline",)), _call(42, -12.5), _call(84, -3.0)]) == -12.5
    assert plots.best_change_pct([_call(0, None, "", ("baseline",))]) is None


@pytest.mark.parametrize(("measure", "thresholds"), [
    ("sum_mm", (-30.0, 20.0)), ("sum_products_mm2", (-50.0, 25.0)), ("sum_volume_mm3", (-65.0, 40.0)),
])
def test_thresholds_follow_the_burden_column(measure: str, thresholds: tuple[float, float]):
    course = [_call(0, None, "", ("baseline",), measure=measure), _call(42, -10.0, measure=measure)]
    assert plots.measure_of(course) == measure
    assert plots.thresholds_for(plots.measure_of(course)) == thresholds


def test_many_patients_and_odd_values_still_plot(tmp_path: Path):
    """60 patients, a huge progression, a '$' in an id (mathtext) and a course with no follow-up."""
    rng = np.random.default_rng(3)
    courses: dict[str, list[plots.TimePointCall]] = {}
    for i in range(60):
        pid = f"PAT-{i:03d}" if i != 5 else "P$5$"
        rows = [_call(0, None, "", ("baseline",))]
        for k in range(1, int(rng.integers(0, 6))):
            rows.append(_call(42 * k, float(rng.normal(0, 40)) if i != 7 else 900.0, "SD"))
        courses[pid] = rows
    best = {pid: "SD" for pid in courses}
    bars = [(pid, v, "SD") for pid, rows in courses.items() if (v := plots.best_change_pct(rows)) is not None]
    for name, draw in (
        ("w.png", lambda p: plots.waterfall_plot(p, bars, criterion="recist", measure="sum_mm")),
        ("s.png", lambda p: plots.spider_plot(p, courses, best, criterion="recist", measure="sum_mm")),
        ("sw.png", lambda p: plots.swimmer_plot(p, courses, criterion="recist", failed_days={"PAT-001": [50.0]})),
    ):
        out = draw(tmp_path / name)
        assert matplotlib.image.imread(out).shape[0] > 100
