"""PNG snapshot of a lesion measurement, for a reader to check it at a glance.

The slice of the long axis, displayed in millimetres (pixels drawn with their true aspect),
in radiological orientation when the grid allows (axial: patient left on the image right,
anterior at the top; coronal: left on the right, superior at the top; sagittal: anterior on
the left, superior at the top; an oblique grid is shown in the orientation nearest to these,
without resampling, and its edge letters say so), cropped around the lesion, with the mask's
outline (the iso-0.5 contour the diameters are measured on), the long axis and the short axis
with their lengths, and a scale bar. Rendered with matplotlib's Agg canvas, no pyplot state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from skimage import measure as skmeasure

from imaging.io.geometry import Geometry
from imaging.measurement.lesions import LesionMeasurement

_LETTERS = {(0, 1): "L", (0, -1): "R", (1, 1): "P", (1, -1): "A", (2, 1): "S", (2, -1): "I"}
# screen right and screen down, in LPS, for each acquisition plane (by the dominant axis of its normal)
_SCREEN = {
    2: (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])),  # axial: right = L, down = P
    1: (np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0])),  # coronal: right = L, down = I
    0: (np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])),  # sagittal: right = P, down = I
}


@dataclass(frozen=True)
class _View:
    """How the slice's index axes map onto the screen."""

    transpose: bool  # screen horizontal is the image's y index axis
    flip_h: bool
    flip_v: bool
    spacing_h: float
    spacing_v: float
    n_h: int
    n_v: int
    letters: tuple[str, str, str, str]  # left, right, top, bottom

    def array(self, a: np.ndarray) -> np.ndarray:
        """Slice (y, x) -> screen (row, col)."""
        out = a.T if self.transpose else a
        if self.flip_h:
            out = out[:, ::-1]
        if self.flip_v:
            out = out[::-1, :]
        return out

    def point(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Continuous slice indices -> screen mm (horizontal, vertical-down)."""
        h, v = (y, x) if self.transpose else (x, y)
        if self.flip_h:
            h = self.n_h - 1 - h
        if self.flip_v:
            v = self.n_v - 1 - v
        return h * self.spacing_h, v * self.spacing_v


def _letter(vec: np.ndarray) -> str:
    k = int(np.argmax(np.abs(vec)))
    return _LETTERS[(k, 1 if vec[k] > 0 else -1)]


def _view(geom: Geometry) -> _View:
    d = geom.direction_matrix
    d0, d1 = d[:, 0], d[:, 1]
    normal = np.cross(d0, d1)
    right, down = _SCREEN[int(np.argmax(np.abs(normal)))]
    transpose = abs(d1 @ right) > abs(d0 @ right)
    dh, dv = (d1, d0) if transpose else (d0, d1)
    flip_h, flip_v = bool(dh @ right < 0), bool(dv @ down < 0)
    sx, sy, _ = geom.spacing_mm
    nx, ny, _ = geom.size
    sh, sv, nh, nv = (sy, sx, ny, nx) if transpose else (sx, sy, nx, ny)
    screen_right = -dh if flip_h else dh
    screen_down = -dv if flip_v else dv
    letters = (_letter(-screen_right), _letter(screen_right), _letter(-screen_down), _letter(screen_down))
    return _View(bool(transpose), flip_h, flip_v, sh, sv, nh, nv, letters)


def _nice_length(span_mm: float) -> float:
    """A round scale-bar length near a fifth of the view."""
    target = span_mm / 5.0
    for v in (1, 2, 5, 10, 20, 50, 100, 200):
        if v >= target:
            return float(v)
    return 500.0


def snapshot_png(
    image: sitk.Image,
    labels: sitk.Image,
    measurement: LesionMeasurement,
    path: str | os.PathLike[str],
    *,
    window: tuple[float, float] | None = None,
    margin_mm: float = 15.0,
    dpi: int = 150,
) -> Path:
    """Write a PNG of the lesion's long-axis slice with its outline and diameters.

    Parameters
    ----------
    image : the scan, with its geometry.
    labels : the label map on the same grid.
    measurement : the lesion's :class:`LesionMeasurement` (from ``measure_lesions(labels)``).
    path : the PNG to write (folders are created).
    window : display window ``(centre, width)`` in image units (e.g. ``(-600, 1500)`` lung,
        ``(40, 400)`` soft tissue in HU); default the 1st-99th percentile of the view.
    margin_mm : view = the lesion's box in this slice plus this margin (at least 20 % of it).
    dpi : resolution of the PNG.

    Returns
    -------
    The path written.

    Raises
    ------
    ValueError
        The label map is not on the image's grid, or the lesion is absent from its long-axis slice.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    geom = Geometry.of(image)
    if not geom.same_grid(Geometry.of(labels)):
        raise ValueError("snapshot_png: the label map is not on the image's grid")
    k = int(measurement.long_axis_slice)
    slice_img = np.asarray(sitk.GetArrayViewFromImage(image)[k], dtype=float)
    slice_mask = np.asarray(sitk.GetArrayViewFromImage(labels)[k] == measurement.label)
    if not slice_mask.any():
        raise ValueError(f"snapshot_png: label {measurement.label} is absent from slice {k}")
    view = _view(geom)
    shown = view.array(slice_img)
    mask_shown = view.array(slice_mask)

    # View box (screen mm) around the lesion.
    rows, cols = np.nonzero(mask_shown)
    h0, h1 = cols.min() * view.spacing_h, cols.max() * view.spacing_h
    v0, v1 = rows.min() * view.spacing_v, rows.max() * view.spacing_v
    margin = max(margin_mm, 0.2 * max(h1 - h0, v1 - v0))
    h_lim = (max(h0 - margin, -0.5 * view.spacing_h), min(h1 + margin, (view.n_h - 0.5) * view.spacing_h))
    v_lim = (max(v0 - margin, -0.5 * view.spacing_v), min(v1 + margin, (view.n_v - 0.5) * view.spacing_v))

    if window is None:
        c0, c1 = int(max(0, np.floor(h_lim[0] / view.spacing_h))), int(np.ceil(h_lim[1] / view.spacing_h)) + 1
        r0, r1 = int(max(0, np.floor(v_lim[0] / view.spacing_v))), int(np.ceil(v_lim[1] / view.spacing_v)) + 1
        lo, hi = (float(x) for x in np.percentile(shown[r0:r1, c0:c1], [1, 99]))
    else:
        centre, width = window
        lo, hi = centre - width / 2.0, centre + width / 2.0
    if hi <= lo:
        hi = lo + 1.0

    fig = Figure(figsize=(6.4, 6.4 * (v_lim[1] - v_lim[0]) / max(h_lim[1] - h_lim[0], 1e-6) + 0.6), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.88))
    extent = (-0.5 * view.spacing_h, (view.n_h - 0.5) * view.spacing_h, (view.n_v - 0.5) * view.spacing_v, -0.5 * view.spacing_v)
    ax.imshow(shown, cmap="gray", vmin=lo, vmax=hi, extent=extent, interpolation="nearest", aspect="equal")

    # Outline: the iso-0.5 contour of the mask, as measured.
    for c in skmeasure.find_contours(np.pad(mask_shown, 1).astype(np.float32), 0.5, fully_connected="high"):
        ax.plot((c[:, 1] - 1) * view.spacing_h, (c[:, 0] - 1) * view.spacing_v, color="#ffd400", lw=1.0)

    h_mid = 0.5 * (h_lim[0] + h_lim[1])

    def draw(ends_lps, colour: str, text: str, offset: float) -> None:
        idx = geom.lps_to_index(np.asarray(ends_lps, dtype=float))
        h, v = view.point(idx[:, 0], idx[:, 1])
        ax.plot(h, v, color=colour, lw=1.6, marker="+", markersize=9, mew=1.6)
        # label beyond the end nearer the view's side, off the lesion; written back towards the
        # centre when that end is close to the view's edge, so it always stays inside
        i = int(np.argmax(np.abs(h - h_mid)))
        outward = 1 if h[i] > h_mid else -1
        room = (h_lim[1] - h[i]) if outward > 0 else (h[i] - h_lim[0])
        direction = outward if room > 0.3 * (h_lim[1] - h_lim[0]) else -outward
        ax.annotate(text, (h[i], v[i]), xytext=(8 * direction, offset), textcoords="offset points", color=colour,
                    ha="left" if direction > 0 else "right", va="center", fontsize=10, fontweight="bold",
                    bbox={"facecolor": "black", "alpha": 0.55, "lw": 0, "pad": 1.5})

    draw(measurement.long_axis_ends_lps, "#ff3b30", f"long {measurement.long_axis_mm:.1f} mm", 10)
    if measurement.short_axis_mm > 0:
        draw(measurement.short_axis_ends_lps, "#00d7ff", f"short {measurement.short_axis_mm:.1f} mm", -10)

    ax.set_xlim(*h_lim)
    ax.set_ylim(v_lim[1], v_lim[0])
    ax.set_xticks([])
    ax.set_yticks([])

    # Scale bar, bottom left.
    span = h_lim[1] - h_lim[0]
    bar = _nice_length(span)
    bx = h_lim[0] + 0.05 * span
    by = v_lim[1] - 0.06 * (v_lim[1] - v_lim[0])
    ax.plot([bx, bx + bar], [by, by], color="white", lw=3, solid_capstyle="butt")
    ax.text(bx + bar / 2, by - 0.015 * (v_lim[1] - v_lim[0]), f"{bar:g} mm", color="white", ha="center", va="bottom", fontsize=9)

    left, right, top, bottom = view.letters
    style: dict[str, Any] = {"color": "white", "fontsize": 11, "fontweight": "bold", "transform": ax.transAxes,
             "bbox": {"facecolor": "black", "alpha": 0.6, "lw": 0, "pad": 1.0}}
    ax.text(0.01, 0.5, left, ha="left", va="center", **style)
    ax.text(0.99, 0.5, right, ha="right", va="center", **style)
    ax.text(0.5, 0.99, top, ha="center", va="top", **style)
    ax.text(0.5, 0.01, bottom, ha="center", va="bottom", **style)
    fig.suptitle(
        f"label {measurement.label}   slice {k}   long {measurement.long_axis_mm:.1f} mm   "
        f"short {measurement.short_axis_mm:.1f} mm   {measurement.volume_mm3 / 1000:.2f} mL",
        fontsize=10, y=0.97, color="white",
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, facecolor="black")
    return out
