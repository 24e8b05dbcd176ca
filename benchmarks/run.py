"""`make bench`: run every benchmarks/bench_*.py, print one table, write benchmarks/results/latest.json.

Each module exposes ``run() -> list[dict]`` with rows
``{"stage", "case", "ours_s", "peer", "peer_s", "ratio", "ours_accuracy", "peer_accuracy", "accuracy_unit"}``
(ratio = ours_s / peer_s; times are medians of >= 3 runs). A module that fails is reported and the others go on.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLUMNS = ("stage", "case", "ours_s", "peer", "peer_s", "ratio", "ours_accuracy", "peer_accuracy", "accuracy_unit")


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("only", nargs="*", help="run only these benchmarks (e.g. batch load)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE.parent))
    rows, errors = [], []
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem.removeprefix("bench_")
        if args.only and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            got = _load(path).run()
        except Exception:
            errors.append({"benchmark": name, "error": traceback.format_exc(limit=3)})
            print(f"   FAILED\n{errors[-1]['error']}", flush=True)
            continue
        rows.extend(got)
        print(f"   {len(got)} row(s) in {time.perf_counter() - t0:.0f} s", flush=True)

    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in COLUMNS}
    print()
    print("  ".join(c.ljust(widths[c]) for c in COLUMNS))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in COLUMNS))
    out = HERE / "results" / "latest.json"
    if args.only and out.is_file():
        # A partial run replaces the rows of the stages it ran, where they stood, and keeps the others' figures.
        ran = {r["stage"] for r in rows} | set(args.only)
        fresh: dict[str, list[dict]] = {}
        for r in rows:
            fresh.setdefault(r["stage"], []).append(r)
        merged: list[dict] = []
        for old in json.loads(out.read_text()).get("rows", []):
            if old.get("stage") not in ran:
                merged.append(old)
            else:
                merged.extend(fresh.pop(old.get("stage"), []))
        rows = merged + [r for group in fresh.values() for r in group]
    result = {
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rows": rows,
        "errors": errors,
    }
    if args.only:
        result["rerun"] = sorted(args.only)  # "when" is theirs; the other rows come from earlier runs
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"\nwrote {out.relative_to(HERE.parent)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
