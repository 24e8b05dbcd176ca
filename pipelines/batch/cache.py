"""Content-addressed cache of stage results.

A result is stored under a key made of its inputs' content hash, the stage's
configuration and the code version, so a rerun recomputes exactly what changed
and nothing else; entries are written atomically.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import xxhash

from pipelines.outputs.files import write_text_atomic

_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    """128-bit XXH3 of a file's content: a change detector (not a security hash), ~20x faster than blake2b,
    so hashing a study costs milliseconds next to loading it."""
    h = xxhash.xxh3_128()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def files_digest(paths: Iterable[Path]) -> str:
    """Digest of a set of files' contents, independent of their names and order."""
    h = xxhash.xxh3_128()
    for d in sorted(file_digest(p) for p in paths):
        h.update(d.encode())
    return h.hexdigest()


@cache
def code_version(*modules: str) -> str:
    """Package version plus a digest of the sources a stage runs.

    ``modules`` are dotted names of packages or modules (default: all of
    ``imaging`` and ``pipelines``); a change to any of their files invalidates
    the stage's cached results, a change elsewhere does not.
    """
    import importlib

    names = modules or ("imaging", "pipelines")
    h = hashlib.blake2b(digest_size=12)
    for name in sorted(names):
        mod = importlib.import_module(name)
        path = Path(mod.__file__ or "")
        files = sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]
        for p in files:
            h.update(f"{name}:{p.name}".encode())
            h.update(p.read_bytes())
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("tumor-response")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        v = "0+unknown"
    return f"{v}+{h.hexdigest()}"


def make_key(*parts: Any) -> str:
    h = hashlib.blake2b(digest_size=20)
    h.update(json.dumps(parts, sort_keys=True, default=str).encode())
    return h.hexdigest()


class ResultCache:
    """JSON results under ``<root>/<key[:2]>/<key>.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Any | None:
        p = self._path(key)
        try:
            return json.loads(p.read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError):
            # A damaged entry is a miss; it is rewritten by the recomputation.
            return None

    def put(self, key: str, value: Any) -> None:
        write_text_atomic(self._path(key), json.dumps(value, sort_keys=True))
