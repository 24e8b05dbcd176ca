"""The report renders in a real browser: Debian's ``chromium``, headless, with a screenshot.

Needs the ``chromium`` package (``apt-get install -y chromium``); nothing is installed here.
Skipped when ``chromium`` is not on PATH, except under CI (``CI`` set), where it fails.
Set ``REPORT_SCREENSHOT=/some/file.png`` to keep the screenshot for a look.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from imaging.report import plots, write_report

WIDTH, HEIGHT = 1400, 2000


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        message = "chromium not on PATH (Debian package `chromium`: apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must install it")
        pytest.skip(message)
    return path


def _chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _near(pixels: np.ndarray, hex_colour: str, tolerance: float = 0.06) -> int:
    """How many pixels are within ``tolerance`` (per channel, 0-1 scale) of a colour."""
    rgb = np.array([int(hex_colour[i:i + 2], 16) / 255.0 for i in (1, 3, 5)])
    return int(np.all(np.abs(pixels[..., :3] - rgb) < tolerance, axis=-1).sum())


def test_report_renders_in_headless_chromium(chromium: str, run_dir: Path, tmp_path: Path):
    index = write_report(run_dir, title="Browser check")
    url = index.resolve().as_uri()

    dom = _chromium(chromium, tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<title>Browser check</title>" in dom.stdout
    assert "Criterion: recist" in dom.stdout and "Patient PROG-2" in dom.stdout

    shot = tmp_path / "screenshot.png"
    result = _chromium(chromium, tmp_path / "profile-shot", f"--screenshot={shot}", url)
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    if os.environ.get("REPORT_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["REPORT_SCREENSHOT"])

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    # Not blank: a rendered page has text (dark pixels) on a light background and real variation.
    assert float(np.std(pixels[..., :3])) > 0.05
    grey = pixels[..., :3].mean(axis=-1)
    assert (grey < 0.3).mean() > 0.002, "no text on the page"
    assert (grey > 0.9).mean() > 0.5, "the page background is not light"
    # The first criterion's plots were loaded from disk and drawn: their bar/marker colours are on screen
    # (PD vermillion and PR bluish green, ~100s of pixels each; tolerance allows for image scaling).
    assert _near(pixels, plots.COLOURS["PD"]) > 200
    assert _near(pixels, plots.COLOURS["PR"]) > 200
