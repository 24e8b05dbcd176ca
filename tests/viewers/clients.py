"""Real viewers' and toolkits' own code, driven from pytest, to check the DICOM SR (and SEG) we write.

- OHIF v3 (``ohif_read``, ``ohif_write``): the cornerstone3D adapters OHIF reads and saves SR with, run in
  node (``ohif_read.mjs``, ``ohif_write.mjs``; packages pinned in ``package.json``/``package-lock.json``,
  installed with ``npm ci`` by the ``node_harness`` session fixture, or on first use).
- PixelMed's ``DicomSRValidator`` (``pixelmed_validate``): the SR content tree against its templates
  (Debian ``libpixelmed-java`` and a Java runtime).
- dcmqi (``tid1500reader``, ``segimage2itkimage``): the binaries of the ``dcmqi`` wheel (the ``test`` extra).

A missing tool skips the test locally and fails it under CI (the environment variable ``CI`` set), with a
message naming what to install, as ``tests/dicom_out/helpers.require_tool`` does for the Debian tools.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE / "node_modules"
LOCK_FILE = HERE / "package-lock.json"
PACKAGE_JSON = HERE / "package.json"
#: Written into node_modules after a successful `npm ci`; node_modules older than the lock file is reinstalled.
INSTALLED_STAMP = NODE_MODULES / ".harness-installed"
NODE_TIMEOUT = 180
NPM_CI_TIMEOUT = 900

PIXELMED_JAR = Path("/usr/share/java/pixelmed.jar")
PIXELMED_VALIDATOR = "com.pixelmed.validate.DicomSRValidator"
#: JDK >= 17 refuses PixelMed's compiled SR-template XSLT (JAXP0801003: "accumulated '10,001' operators exceeds
#: the '10,000' limit set by FEATURE_SECURE_PROCESSING") and DicomSRValidator then prints the stack trace and
#: exits 0 having validated nothing. These lift the JAXP XPath limits for that one process.
JAVA_XPATH_LIMITS = ("-Djdk.xml.xpathExprOpLimit=0", "-Djdk.xml.xpathExprGrpLimit=0", "-Djdk.xml.xpathTotalOpLimit=0")


def missing(reason: str):
    """Skip locally, fail under CI."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _which(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/bin/{name}", f"/usr/local/bin/{name}") if os.access(p, os.X_OK)),
                                      None)


# --------------------------------------------------------------------------------------------- OHIF (node)

def _node() -> str:
    node = _which("node")
    if not node:
        missing("node not installed (Node.js >= 20 with npm: Debian packages nodejs and npm, or nodejs.org); "
                "the OHIF harness in tests/viewers runs cornerstone3D's SR adapters in it")
    return node


def _npm() -> str:
    npm = _which("npm")
    if not npm:
        missing("npm not installed (Debian package npm, or Node.js from nodejs.org); it installs tests/viewers/package-lock.json")
    return npm


def _installed() -> bool:
    if not INSTALLED_STAMP.is_file():
        return False
    stamp = INSTALLED_STAMP.stat().st_mtime
    return stamp >= LOCK_FILE.stat().st_mtime and stamp >= PACKAGE_JSON.stat().st_mtime


@contextlib.contextmanager
def _install_lock():
    """One `npm ci` at a time (pytest-xdist workers, two checkouts' sessions)."""
    key = str(HERE).replace(os.sep, "_")
    with open(Path(tempfile.gettempdir()) / f"tumor-response-npm-ci{key}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


#: Seconds the last `npm ci` of this process took (None when node_modules was already up to date).
npm_ci_seconds: float | None = None


def ensure_node_harness() -> Path:
    """tests/viewers with its node_modules installed from the lock file (`npm ci`) when missing or older than it."""
    global npm_ci_seconds
    _node()
    if _installed():
        return HERE
    npm = _npm()
    with _install_lock():
        if not _installed():
            start = time.monotonic()
            proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True,
                                  timeout=NPM_CI_TIMEOUT)
            if proc.returncode != 0:
                raise RuntimeError(f"`npm ci` in {HERE} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
            INSTALLED_STAMP.write_text(f"npm ci {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
            npm_ci_seconds = time.monotonic() - start
    return HERE


@pytest.fixture(scope="session")
def node_harness() -> Path:
    """The node harness, installed once per session (`npm ci --no-audit --no-fund` when needed)."""
    path = ensure_node_harness()
    if npm_ci_seconds is not None:
        print(f"tests/viewers: npm ci took {npm_ci_seconds:.1f} s")
    return path


def _run_node(script: str, args: list[str]) -> subprocess.CompletedProcess:
    node = _node()
    ensure_node_harness()
    proc = subprocess.run([node, str(HERE / script), *args], cwd=HERE, capture_output=True, text=True,
                          timeout=NODE_TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed ({proc.returncode}):\n{proc.stderr[-8000:]}")
    return proc


#: stderr of the last ohif_read/ohif_write (the adapters log every measurement they rebuild, and the groups
#: they could not: "Unable to generate tool state for ...").
last_node_log: str = ""


def ohif_read(sr: Path, images: list[Path], legacy: bool = False) -> list[dict]:
    """The measurements OHIF v3 rehydrates from ``sr`` (cornerstone3D adapter, images' headers as its metadata);
    ``legacy``: what OHIF v2's dcmjs Cornerstone adapter recovers (image coordinates in ``points_image``).

    Each: toolType, label, labelSource ('comment' | 'findingSite' | 'finding' | None), trackingIdentifier,
    trackingUniqueIdentifier, rehydratable, referencedSOPInstanceUID, frameNumber, referencedImageId, points
    (world LPS mm, as the adapter returns them), points_image, length, width, unit, finding, findingSites."""
    global last_node_log
    args = (["--legacy"] if legacy else []) + [str(sr), *(str(p) for p in images)]
    proc = _run_node("ohif_read.mjs", args)
    last_node_log = proc.stderr
    if "Unable to generate tool state" in proc.stderr:
        print(proc.stderr[-8000:], file=sys.stderr)
    return json.loads(proc.stdout)


def ohif_write(spec: dict, out: Path) -> Path:
    """An SR written as OHIF v3 saves one (``MeasurementReport.generateReport`` of the cornerstone3D adapters).

    spec: {images: [file...], annotations: [{tool: "Bidirectional"|"Length", image: SOPInstanceUID,
    points_lps: [[x, y, z], ...], label: str|None, length: float|None, width: float|None}], options: {...}}"""
    global last_node_log
    out = Path(out)
    payload = dict(spec)
    payload["images"] = [str(p) for p in spec.get("images", [])]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(payload, handle)
        spec_path = handle.name
    try:
        proc = _run_node("ohif_write.mjs", [spec_path, str(out)])
    finally:
        os.unlink(spec_path)
    last_node_log = proc.stderr
    return out


# --------------------------------------------------------------------------------------------- PixelMed

@dataclass(frozen=True)
class Validation:
    """PixelMed's verdict: its ``Error:`` and ``Warning:`` lines, and every line it printed."""

    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    lines: tuple[str, ...]
    iod: str = ""  # "EnhancedSR" from "Found EnhancedSR IOD"
    root_template: str = ""  # "TID_1500 (MeasurementReport)" from "Found Root Template ..."


def pixelmed_classpath() -> str:
    """pixelmed.jar and the jars its manifest's Class-Path names that are installed (Debian's manifest also lists
    bcprov.jar, which libpixelmed-java does not depend on and the SR validator does not use)."""
    if not PIXELMED_JAR.is_file():
        missing(f"{PIXELMED_JAR} not installed (Debian package libpixelmed-java; "
                "`make system-deps` or .ci/system-deps.sh installs it)")
    with zipfile.ZipFile(PIXELMED_JAR) as jar:
        manifest = jar.read("META-INF/MANIFEST.MF").decode("utf-8")
    unfolded = manifest.replace("\r\n", "\n").replace("\n ", "")
    entries = next((line.split(":", 1)[1].split() for line in unfolded.splitlines() if line.startswith("Class-Path:")), [])
    jars = [str(PIXELMED_JAR)] + [entry for entry in entries if Path(entry).is_file()]
    return os.pathsep.join(jars)


def _java() -> str:
    java = _which("java")
    if not java:
        missing("java not installed (Debian package default-jre-headless; `make system-deps` or .ci/system-deps.sh "
                "installs it); PixelMed's DicomSRValidator runs in it")
    return java


def pixelmed_validate(path: Path, *options: str) -> Validation:
    """PixelMed's DicomSRValidator on ``path`` (options such as ``-checkcontentitemorder``, ``-checktemplateid``,
    ``-checkambiguoustemplate``, ``-describe`` are passed through)."""
    classpath = pixelmed_classpath()
    java = _java()
    proc = subprocess.run([java, *JAVA_XPATH_LIMITS, "-cp", classpath, PIXELMED_VALIDATOR, *options, str(path)],
                          capture_output=True, text=True, timeout=300)
    lines = tuple(line.rstrip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip())
    # It exits 0 whatever happened: a run that ended in a Java exception has no closing line.
    if proc.returncode != 0 or "IOD validation complete" not in lines or any("Exception" in line for line in lines):
        raise RuntimeError(f"PixelMed {PIXELMED_VALIDATOR} did not run to the end on {path}:\n" + "\n".join(lines))
    errors = tuple(line for line in lines if line.startswith("Error:") or line == "IOD (SOP Class) unrecognized")
    warnings = tuple(line for line in lines if line.startswith("Warning:"))
    iod = next((line[len("Found "):-len(" IOD")] for line in lines if line.startswith("Found ") and line.endswith(" IOD")), "")
    root = next((line[len("Found Root Template "):] for line in lines if line.startswith("Found Root Template ")), "")
    return Validation(errors, warnings, lines, iod, root)


# --------------------------------------------------------------------------------------------- dcmqi

def dcmqi_binary(name: str) -> str:
    """A binary of the dcmqi wheel (inside the package; its console-script wrapper may not be on PATH)."""
    spec = importlib.util.find_spec("dcmqi")
    if spec is None or not spec.submodule_search_locations:
        missing("dcmqi not installed (PyPI package dcmqi, in the test extra: pip install -e '.[test]')")
    for folder in spec.submodule_search_locations:
        binary = Path(folder) / "bin" / name
        if os.access(binary, os.X_OK):
            return str(binary)
    missing(f"dcmqi installed without its {name} binary (PyPI package dcmqi: reinstall it)")


def tid1500reader(sr: Path) -> dict:
    """dcmqi's reading of a TID 1500 SR: its JSON (Measurements, imageLibrary, observerContext ...)."""
    binary = dcmqi_binary("tid1500reader")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "metadata.json"
        proc = subprocess.run([binary, "--inputDICOM", str(sr), "--outputMetadata", str(out)],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"tid1500reader failed ({proc.returncode}) on {sr}:\n{proc.stdout}\n{proc.stderr}")
        return json.loads(out.read_text())


def segimage2itkimage(seg: Path, out_dir: Path, fmt: str = "nifti") -> list[Path]:
    """dcmqi's conversion of a DICOM SEG to images (one per segment group), written into ``out_dir``; the
    images, sorted (its metadata JSON, ``seg-meta.json``, is left beside them)."""
    binary = dcmqi_binary("segimage2itkimage")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([binary, "--inputDICOM", str(seg), "--outputDirectory", str(out_dir), "-t", fmt, "-p", "seg"],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"segimage2itkimage failed ({proc.returncode}) on {seg}:\n{proc.stdout}\n{proc.stderr}")
    return sorted(p for p in out_dir.glob("seg-*") if p.name != "seg-meta.json")
