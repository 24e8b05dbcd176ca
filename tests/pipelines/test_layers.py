"""The layers of ``pipelines/`` (see its docstring): each module imports only its own layer and the ones below it.

Every import counts, at module level or inside a function (the lazy ones too), so an arrow pointing up cannot
hide in a function body. ``imaging`` never imports ``pipelines``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: Lowest first. A module may import from its own layer and from any layer before it.
LAYERS = ("config", "outputs", "dataset", "dicom", "batch", "commands", "cli")


def _layer(module: str) -> str | None:
    """The layer of a ``pipelines`` module name (``pipelines.batch.run`` -> ``batch``), None outside ``pipelines``."""
    parts = module.split(".")
    if parts[0] != "pipelines" or len(parts) < 2:
        return None
    return parts[1]


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str | None = None) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, absolute names (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = (module or _module_name(path)).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            # ``from pipelines import batch`` names a layer in the alias
            if name == "pipelines":
                out.extend((node.lineno, f"pipelines.{alias.name}") for alias in node.names)
    return out


def _python_files(folder: str) -> list[Path]:
    return sorted(p for p in (REPO / folder).rglob("*.py") if "node_modules" not in p.parts)


def test_every_pipelines_module_is_in_a_layer():
    unplaced = [str(p.relative_to(REPO)) for p in _python_files("pipelines")
                if _layer(_module_name(p)) is not None and _layer(_module_name(p)) not in LAYERS]
    assert unplaced == []


def _upward(path: Path, module: str) -> list[str]:
    own = _layer(module)
    assert own is not None
    return [
        f"line {line}: {name}" for line, name in _imports(path, module)
        if _layer(name) is not None and LAYERS.index(_layer(name)) > LAYERS.index(own)
    ]


@pytest.mark.parametrize("path", _python_files("pipelines"), ids=lambda p: str(p.relative_to(REPO)))
def test_imports_point_down(path: Path):
    module = _module_name(path)
    if _layer(module) is None:  # pipelines/__init__.py: the package's docstring only
        assert _imports(path) == []
        return
    assert _upward(path, module) == [], f"{path.relative_to(REPO)} imports from a higher layer"


def test_the_library_does_not_import_the_orchestration():
    offenders = [f"{p.relative_to(REPO)} line {line}: {name}" for p in _python_files("imaging")
                 for line, name in _imports(p) if name == "pipelines" or name.startswith("pipelines.")]
    assert offenders == []


def test_a_misplaced_import_is_caught(tmp_path: Path):
    """The check itself: an upward import inside a function body, absolute or relative, is found."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from pipelines.batch.run import run_pipeline\n    from ..dicom import export\n"
                     "    from .stages import load_scan\n    return run_pipeline, export, load_scan\n")
    found = _upward(probe, "pipelines.dataset.probe")
    assert "line 2: pipelines.batch.run" in found and "line 3: pipelines.dicom" in found
    assert not any("stages" in f for f in found)
