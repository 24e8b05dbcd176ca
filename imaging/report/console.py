"""Terminal tables of a run's results."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.table import Table


def _pct(value: Any) -> str:
    return "" if value in (None, "") else f"{float(value):+.1f}%"


def _mm(value: Any) -> str:
    return "" if value in (None, "") else f"{float(value):.1f}"


def _call(row: dict[str, Any]) -> str:
    """The call, or what the time point is when it has none (baseline, pre-baseline)."""
    if row.get("response"):
        return str(row["response"])
    flags = str(row.get("flags") or "").split(";")
    if "baseline" in flags:
        return "baseline"
    return "pre-baseline"


def timeline_table(rows: Iterable[dict[str, Any]], criterion: str) -> Table:
    """Per patient and time point: date, the criterion's burden, % change vs baseline and nadir, the call and flags."""
    rows = [r for r in rows if r["criterion"] == criterion]
    # The burden the criterion sums: diameters (RECIST family), products (RANO family) or volumes.
    burden, heading = "sum_mm", "sum (mm)"
    for key, label in (("sum_mm", "sum (mm)"), ("sum_products_mm2", "SPD (mm²)"), ("sum_volume_mm3", "volume (mm³)")):
        if any(r.get(key) not in (None, "") for r in rows):
            burden, heading = key, label
            break
    table = Table(title=f"Time-point responses ({criterion})", show_lines=False)
    for name, justify in (("patient", "left"), ("date", "left"), ("days", "right"), (heading, "right"),
                          ("vs baseline", "right"), ("vs nadir", "right"), ("response", "left")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("flags", overflow="fold")
    last = None
    for r in rows:
        if last is not None and r["patient_id"] != last:
            table.add_section()
        last = r["patient_id"]
        table.add_row(
            str(r["patient_id"]), str(r["date"]),
            "" if r.get("days_since_baseline") in (None, "") else str(r["days_since_baseline"]),
            _mm(r.get(burden)), _pct(r.get("change_from_baseline_pct")), _pct(r.get("change_from_nadir_pct")),
            _call(r),
            (r.get("flags") or "").replace(";", ", "),
        )
    return table
