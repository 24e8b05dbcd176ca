"""Import boundaries of the console script: each command imports only what it uses.

Every case runs the command's typical path in a fresh interpreter (a subprocess:
this test process has imported everything already) and asserts which modules are
*not* in ``sys.modules`` afterwards, and, where it matters, which ones are, so the
case is known to have gone down the path it names. No timing here: the start-up
figures are measured by ``benchmarks/bench_startup.py`` (``make bench``).

The sets, from what each command needs:

* ``tumor-response --help``: the static one-line helps of pipelines/cli.py only; no
  command module, no imaging package, no numpy, pydantic or YAML.
* ``<command> --help``: its own module (``index`` registers ``convert`` too) and
  typer; no other command module, no numpy, no imaging library. ``assess --help`` imports ``imaging.response``
  (pure Python + pydantic): the help of ``--criteria`` lists its CRITERIA.
* ``assess COURSE.yaml``: ``imaging.response`` and YAML; no numpy, scipy, pydicom,
  no imaging I/O, registration, SimpleITK, dask, highdicom, matplotlib or pyradiomics.
* ``assess SR_FOLDER`` with unlabelled lines in a shared frame (linked by position):
  pydicom, numpy and scipy (``imaging.registration.assignment``); still no
  SimpleITK (it registers images only when the scans have frames of their own),
  no highdicom, dask, matplotlib or pyradiomics.
* ``import imaging.registration.assignment`` alone: numpy and scipy, no SimpleITK.
* ``convert IN OUT.nii.gz``: SimpleITK and the loaders; no pydantic (typer < 0.29 coerces
  parameters without it, see pyproject.toml), YAML or run configuration, no dask,
  highdicom, matplotlib, pyradiomics or scikit-image.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

#: Libraries no light command needs (module names as imported).
IMAGING_LIBS = frozenset({"SimpleITK", "dask", "distributed", "highdicom", "matplotlib", "radiomics", "nibabel",
                          "skimage", "pyarrow", "pynetdicom", "dicomweb_client"})
NUMERIC = frozenset({"numpy", "scipy", "pydicom"})
COMMAND_MODULES = {"run", "assess", "index", "convert", "export", "pull", "push", "measure", "register"}

_PROBE = r"""
import json, os, sys
from pipelines.cli import app
try:
    app(sys.argv[1:], prog_name="tumor-response")
    code = 0
except SystemExit as exc:
    code = exc.code
with open(os.environ["IMPORT_PROBE_OUT"], "w") as fh:
    json.dump({"code": code, "modules": sorted(sys.modules)}, fh)
"""


def _probe(tmp_path: Path, *args: str, code: str = _PROBE) -> tuple[int, set[str], str]:
    """Run ``tumor-response ARGS`` (or ``code``) in a fresh interpreter: (exit code, modules imported, output)."""
    out = tmp_path / "probe.json"
    env = {**os.environ, "IMPORT_PROBE_OUT": str(out), "COLUMNS": "120"}
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert out.is_file(), f"probe failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    got = json.loads(out.read_text())
    return got["code"], set(got["modules"]), proc.stdout + proc.stderr


def _loaded(modules: set[str], names: frozenset[str] | set[str]) -> list[str]:
    """Which of ``names`` (packages: a submodule counts) were imported."""
    return sorted(n for n in names if n in modules or any(m.startswith(n + ".") for m in modules))


def test_top_level_help_imports_no_command(tmp_path: Path) -> None:
    code, modules, out = _probe(tmp_path, "--help")
    assert code == 0
    for name in COMMAND_MODULES:
        assert name in out  # every command listed, from the static helps
    forbidden = IMAGING_LIBS | NUMERIC | {"pydantic", "yaml", "imaging", "pipelines.commands", "pipelines.config"}
    assert _loaded(modules, forbidden) == []


@pytest.mark.parametrize("command", sorted(COMMAND_MODULES))
def test_command_help_imports_its_module_only(tmp_path: Path, command: str) -> None:
    code, modules, out = _probe(tmp_path, command, "--help")
    assert code == 0, out
    assert f"pipelines.commands.{command}" in modules
    own = {command, "convert"} if command == "index" else {command}
    others = {f"pipelines.commands.{m}" for m in COMMAND_MODULES - own}
    allowed_imaging = {"imaging.response"} if command == "assess" else set()
    imaging = {m for m in modules if m == "imaging" or m.startswith("imaging.")}
    assert _loaded(modules, IMAGING_LIBS | NUMERIC | others | {"pipelines.config", "pipelines.batch.run"}) == []
    assert {m for m in imaging if m != "imaging" and not any(m == a or m.startswith(a + ".") for a in allowed_imaging)} \
        == set()


def test_assess_course_file_imports_no_imaging_library(tmp_path: Path) -> None:
    course = {
        "patient_id": "P001",
        "context": {"treatment_start": "2024-01-08", "radiotherapy_end": None, "immunotherapy": True},
        "timepoints": [
            {"date": d, "target": [{"lesion": "T1", "organ": "lung", "long_axis_mm": a, "volume_mm3": v},
                                   {"lesion": "T2", "organ": "liver", "long_axis_mm": 10.0, "volume_mm3": 500.0}]}
            for d, a, v in (("2024-01-02", 40.0, 30000.0), ("2024-03-04", 52.0, 60000.0), ("2024-04-15", 30.0, 9000.0))
        ],
    }
    path = tmp_path / "P001.yaml"
    path.write_text(yaml.safe_dump(course, sort_keys=False))
    code, modules, out = _probe(tmp_path, "assess", str(path), "--criteria", "recist,irecist,mrano")
    assert code == 0, out
    assert "Best overall response" in out
    assert {"pipelines.commands.assess", "imaging.response", "yaml"} <= modules
    forbidden = IMAGING_LIBS | NUMERIC | {"imaging.io", "imaging.registration", "imaging.measurement",
                                          "imaging.segmentation", "imaging.report", "pipelines.dicom.sr_course",
                                          "pipelines.batch.run", "pipelines.config"}
    assert _loaded(modules, forbidden) == []


def test_assess_sr_folder_links_by_position_without_simpleitk(tmp_path: Path) -> None:
    pytest.importorskip("highdicom")  # writes the reports here, in this process
    from pydicom.uid import generate_uid

    from tests.dicom_out.test_sr_course import _ohif_3d_report

    folder = tmp_path / "reports"
    frame = generate_uid()
    _ohif_3d_report(folder, "1.dcm", "20240110", [((0.0, 0.0, 0.0), 30.0), ((100.0, 0.0, 0.0), 20.0)], frame)
    _ohif_3d_report(folder, "2.dcm", "20240301", [((101.0, 2.0, 0.0), 15.0), ((2.0, 1.0, 0.0), 25.0)], frame)
    code, modules, out = _probe(tmp_path, "assess", str(folder), "--criteria", "recist", "--json")
    assert code == 0, out
    assert {"pydicom", "imaging.registration.assignment"} <= modules  # the position path ran
    assert _loaded(modules, IMAGING_LIBS | {"imaging.registration.rigid", "imaging.registration.tracking",
                                            "imaging.measurement", "pipelines.batch.run"}) == []


def test_registration_assignment_does_not_import_simpleitk(tmp_path: Path) -> None:
    probe = ("import json, os, sys\nimport imaging.registration.assignment\n"
             "json.dump({'code': 0, 'modules': sorted(sys.modules)}, open(os.environ['IMPORT_PROBE_OUT'], 'w'))\n")
    _, modules, _ = _probe(tmp_path, code=probe)
    assert "scipy.optimize" in modules
    assert _loaded(modules, IMAGING_LIBS | {"imaging.io"}) == []


def test_registration_public_names_still_import() -> None:
    import imaging.registration as registration
    from imaging.registration import tracking  # a submodule, as before

    for name in registration.__all__:
        assert getattr(registration, name) is not None
    assert tracking.track_lesions is registration.track_lesions
    assert set(registration.__all__) <= set(dir(registration))
    with pytest.raises(AttributeError):
        registration.no_such_name  # noqa: B018


def test_static_helps_match_the_commands() -> None:
    """The lazy group's names, order and one-line helps are those of the commands' own definitions."""
    from typer.main import get_command

    from pipelines.cli import COMMANDS, app, load_command

    group = get_command(app)
    ctx = group.make_context("tumor-response", ["--help"], resilient_parsing=True)
    assert group.list_commands(ctx) == list(COMMANDS)
    for name, (_, short) in COMMANDS.items():
        real = load_command(name)
        assert real.name == name
        assert (real.help or "").strip().splitlines()[0] == short
        assert [p.name for p in group.get_command(ctx, name).params] == [p.name for p in real.params]


def test_convert_imports_the_loaders_only(tmp_path: Path) -> None:
    import numpy as np
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6))
    image.SetSpacing((0.7, 0.8, 2.5))
    sitk.WriteImage(image, str(tmp_path / "in.nii.gz"))
    code, modules, out = _probe(tmp_path, "convert", str(tmp_path / "in.nii.gz"), str(tmp_path / "out.nii.gz"))
    assert code == 0, out
    assert (tmp_path / "out.nii.gz").is_file() and "wrote" in out
    assert _loaded(modules, {"SimpleITK", "imaging.io"}) == ["SimpleITK", "imaging.io"]
    forbidden = (IMAGING_LIBS - {"SimpleITK", "nibabel"}) | {"pydantic", "yaml", "pipelines.config", "imaging.response"}
    assert _loaded(modules, forbidden) == []
