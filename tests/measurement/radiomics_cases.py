"""pyradiomics' five real test cases (image + tumour mask, NRRD) and its shape baseline.

They ship in the sdist of pyradiomics-bhklab 3.1.4 that ``make sample-data`` downloads into
``sample_data/.cache`` (checked by SHA-256 there). The images and masks are extracted with
``sample_data/generate.py``'s own ``fetch_sources`` (into ``sample_data/.cache/pyradiomics_data``);
the baseline CSVs, which it does not extract, are read straight from the archive.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import sys
import tarfile
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CASES = ("brain1", "brain2", "breast1", "lung1", "lung2")


@lru_cache(maxsize=1)
def _generate_module():
    name = "sample_data_generate"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "sample_data" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def sdist_path() -> Path:
    gen = _generate_module()
    return Path(gen.CACHE_DIR) / gen.SDIST_FILE


@lru_cache(maxsize=1)
def data_dir() -> Path | None:
    """Folder holding ``<case>_image.nrrd`` and ``<case>_label.nrrd``; None when the sdist is absent."""
    if not sdist_path().is_file():
        return None
    return Path(_generate_module().fetch_sources(list(CASES)))


@lru_cache(maxsize=4)
def baseline(name: str = "baseline_shape.csv") -> dict[str, dict[str, str]]:
    """``{featureName: {column: value}}`` of one baseline CSV of the sdist (columns: case names)."""
    gen = _generate_module()
    member = f"{gen.SDIST_PREFIX}data/baseline/{name}"
    with tarfile.open(sdist_path(), "r:gz") as tar:
        fh = tar.extractfile(member)
        if fh is None:
            raise FileNotFoundError(f"{sdist_path()}: no member {member}")
        text = fh.read().decode("utf-8")
    return {row["featureName"]: row for row in csv.DictReader(io.StringIO(text))}
