"""Slice geometry of one volume, from headers only.

A *slice* is one single-frame file or one frame of an enhanced multi-frame
object (:class:`SliceRef`). :func:`plan_stack` checks a set of slices that
should form one volume and decides the output grid, without reading pixel
data, so the crawl (``tumor-response index``) and the loader
(:func:`imaging.io.load_series`) report exactly the same geometry and problems.

Checks, in order: every slice has ImageOrientationPatient, ImagePositionPatient
and PixelSpacing; one image size; one orientation; one pixel spacing; row and
column cosines orthogonal; slices sorted by ImagePositionPatient projected on
the normal (row cosine x column cosine); duplicate positions; missing slices,
variable spacing by design and irregular spacing (:func:`classify_spacing`);
in-plane drift of the slice origins (a sheared stack, as a CT gantry tilt
produces).

Siemens mosaics (:mod:`imaging.io.mosaic`) contribute one slice per tile,
each at its own position, so they go through the same checks.

Spacing policy: a missing slice (a lone gap, or a stretch of wider gaps,
more than 1.5 times the regular spacing around it) and irregular spacing are
refused with the spacings found. Spacing that varies by design (regular runs
of different spacings, as a CT head protocol with thin posterior fossa and
thick supratentorial slices) is resampled along the normal, by linear
interpolation, onto a regular grid from the first to the last acquired slice
at the smallest spacing (at most twice the acquired slice count, as dcm2niix's
equidistant conversion), and a problem of the volume says so with the
spacings.

Tilt policy: a stack whose slice origins drift in-plane along a straight line
(a constant shear: the signature of a gantry tilt) by more than a tenth of a
pixel over the whole stack is resampled onto an orthogonal grid (per slice,
an in-plane bilinear shift; the grid widened so that no acquired pixel is
lost), and the fact is a problem of the volume. A shear whose angle exceeds
:data:`MAX_TILT_DEG`, or a drift that is not a straight line, is refused with
:class:`~imaging.io.errors.GeometryError`. ``tilt="refuse"`` refuses every
sheared stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from imaging.io.dicom import DicomHeader
from imaging.io.errors import GeometryError, ImagingError, SeriesError
from imaging.io.geometry import Geometry
from imaging.io.mosaic import MosaicError, MosaicLayout, is_mosaic, mosaic_layout

#: Positions closer than this along the normal are the same slice (mm).
DUPLICATE_TOLERANCE_MM = 1e-3
#: Allowed deviation of a slice gap from the median gap: relative, and absolute floor (mm).
SPACING_RELATIVE_TOLERANCE = 0.01
SPACING_ABSOLUTE_TOLERANCE_MM = 1e-2
#: Slice origins may deviate this much (mm) from a straight line before the stack is called irregular.
SHEAR_TOLERANCE_MM = 1e-2
#: A drift of the slice origins over the whole stack below this fraction of a pixel is ignored.
SHEAR_IGNORE_PIXEL_FRACTION = 0.1
#: CT gantries tilt at most about 30 degrees; a steeper shear is not a tilt but an error.
MAX_TILT_DEG = 30.0
#: Orientation cosines differing by more than this are different orientations.
ORIENTATION_TOLERANCE = 1e-4
#: Pixel spacings differing by more than this (mm) are different grids.
PIXEL_SPACING_TOLERANCE_MM = 1e-4

TiltPolicy = Literal["resample", "refuse"]


@dataclass(frozen=True)
class SliceRef:
    """One 2-D slice: a single-frame file, or frame ``frame`` (0-based) of a multi-frame file."""

    header: DicomHeader
    frame: int | None
    position_lps: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    pixel_spacing_mm: tuple[float, float] | None
    slice_thickness_mm: float | None
    rescale_slope: float
    rescale_intercept: float
    echo: tuple[str, float] | None
    temporal_position: int | None
    stack_id: str | None
    b_value: float | None
    diffusion_direction: tuple[float, float, float] | None
    #: For a tile of a Siemens mosaic: its 0-based index and the mosaic's layout (:mod:`imaging.io.mosaic`).
    tile: int | None = None
    mosaic: MosaicLayout | None = None
    #: A mosaic whose layout cannot be worked out: why (the plan refuses the volume with it).
    mosaic_error: str | None = None

    @property
    def rows(self) -> int | None:
        return self.mosaic.tile_rows if self.mosaic is not None else self.header.rows

    @property
    def columns(self) -> int | None:
        return self.mosaic.tile_columns if self.mosaic is not None else self.header.columns

    @property
    def name(self) -> str:
        """The file name, with the frame number (1-based, as DICOM counts) for a multi-frame file or the tile of a mosaic."""
        if self.tile is not None:
            return f"{self.header.path.name}[tile {self.tile + 1}]"
        return self.header.path.name if self.frame is None else f"{self.header.path.name}[frame {self.frame + 1}]"


def slices_of(header: DicomHeader) -> list[SliceRef]:
    """The slices a header contributes: itself, or one per frame of an enhanced multi-frame object."""
    h = header
    if not h.frames:
        echo = ("n", float(h.echo_number)) if h.echo_number is not None else (
            ("te", h.echo_time_ms) if h.echo_time_ms is not None else None
        )
        ref = SliceRef(
            header=h, frame=None, position_lps=h.position_lps, orientation=h.orientation,
            pixel_spacing_mm=h.pixel_spacing_mm, slice_thickness_mm=h.slice_thickness_mm,
            rescale_slope=h.rescale_slope, rescale_intercept=h.rescale_intercept, echo=echo,
            temporal_position=h.temporal_position, stack_id=None, b_value=h.b_value,
            diffusion_direction=h.diffusion_direction,
        )
        if not is_mosaic(h):
            return [ref]
        # A Siemens mosaic: one slice per tile, each at its own position (never the mosaic's corner).
        try:
            layout = mosaic_layout(h)
        except MosaicError as exc:
            return [replace(ref, mosaic_error=str(exc))]
        return [
            replace(ref, position_lps=layout.tile_position_lps(k), tile=k, mosaic=layout)
            for k in range(layout.n_tiles)
        ]
    return [
        SliceRef(
            header=h, frame=f.index, position_lps=f.position_lps, orientation=f.orientation,
            pixel_spacing_mm=f.pixel_spacing_mm or h.pixel_spacing_mm,
            slice_thickness_mm=f.slice_thickness_mm if f.slice_thickness_mm is not None else h.slice_thickness_mm,
            rescale_slope=f.rescale_slope, rescale_intercept=f.rescale_intercept,
            echo=("te", f.echo_time_ms) if f.echo_time_ms is not None else None,
            temporal_position=f.temporal_position, stack_id=f.stack_id, b_value=f.b_value,
            diffusion_direction=f.diffusion_direction,
        )
        for f in h.frames
    ]


def unit_axes(orientation: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row cosine, column cosine, normal) from ImageOrientationPatient, normalised."""
    iop = np.asarray(orientation, dtype=float)
    row_cos = iop[:3] / np.linalg.norm(iop[:3])  # direction of increasing column index (x)
    col_cos = iop[3:] / np.linalg.norm(iop[3:])  # direction of increasing row index (y)
    return row_cos, col_cos, np.cross(row_cos, col_cos)


@dataclass
class StackPlan:
    """The output grid of a volume and how its slices map onto it.

    ``slots[k]`` holds the slices found at output slice ``k`` (more than one:
    duplicate positions, resolved when the pixels are read). ``shift_px[k]``
    is, for a sheared stack, the (column, row) offset in pixels of input slice
    ``k`` within the widened output grid (zero otherwise).
    """

    label: str
    slots: list[list[SliceRef]] = field(default_factory=list)
    size: tuple[int, int, int] = (0, 0, 0)
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin_lps: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    shift_px: np.ndarray | None = None
    tilt_deg: float = 0.0
    #: Variable slice spacing by design: the acquired slices' positions along the normal, mm from the first
    #: (the output grid is ``size[2]`` slices ``spacing_mm[2]`` apart from the first); ``None`` when regular.
    slice_positions_mm: np.ndarray | None = None
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    error_type: type[ImagingError] = GeometryError

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def resampled(self) -> bool:
        return self.shift_px is not None

    @property
    def n_slices(self) -> int:
        """Acquired slices (positions); the output grid has ``size[2]``, more when the spacing varied."""
        return len(self.slots)

    @property
    def output_slices(self) -> int:
        if self.slice_positions_mm is None:
            return len(self.slots)
        return variable_spacing_grid(np.diff(self.slice_positions_mm), len(self.slots))[0]

    @property
    def geometry(self) -> Geometry:
        return Geometry(
            size=self.size,
            spacing_mm=self.spacing_mm,
            origin_lps=self.origin_lps,
            direction=tuple(float(v) for v in self.direction.flatten()),
        )

    def fail(self, message: str, error_type: type[ImagingError] = GeometryError) -> StackPlan:
        self.error, self.error_type = message, error_type
        return self

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error_type(f"{self.label}: {self.error}")


def plan_stack(slices: list[SliceRef], label: str, *, tilt: TiltPolicy = "resample") -> StackPlan:
    """Check that ``slices`` form one volume and work out its grid (headers only, never raises).

    Parameters
    ----------
    slices
        The slices of one volume (one orientation, image size, echo, ...).
    label
        Names the volume in messages, e.g. ``"series 1.2.3#echo2"``.
    tilt
        ``"resample"`` (default): a plausible gantry tilt is planned for
        resampling onto an orthogonal grid; ``"refuse"``: it is an error.

    Returns
    -------
    StackPlan
        ``plan.error`` is set (and ``plan.error_type``) when the slices
        cannot form a volume; ``plan.problems`` lists what is worth knowing.
    """
    plan = StackPlan(label=label)
    if not slices:
        return plan.fail("no image slices", SeriesError)
    first = slices[0]
    # Orientation and spacing checked for every slice at once (per-slice numpy calls were most of the cost of
    # indexing a large archive); the loop below still reports the first slice that fails, in the same order.
    bad_orientation = bad_spacing = None
    if first.orientation is not None and first.pixel_spacing_mm is not None and all(
        s.orientation is not None and s.pixel_spacing_mm is not None for s in slices
    ):
        try:
            orientations = np.asarray([s.orientation for s in slices], dtype=float)
            spacings = np.asarray([s.pixel_spacing_mm for s in slices], dtype=float)
        except ValueError:  # ragged values: the per-slice test below says which
            pass
        else:
            if orientations.ndim == 2 and spacings.ndim == 2:
                bad_orientation = np.max(np.abs(orientations - orientations[0]), axis=1) > ORIENTATION_TOLERANCE
                bad_spacing = np.max(np.abs(spacings - spacings[0]), axis=1) > PIXEL_SPACING_TOLERANCE_MM
    for i, s in enumerate(slices):
        if s.mosaic_error:
            return plan.fail(s.mosaic_error)
        missing = [
            name
            for name, value in (
                ("ImageOrientationPatient", s.orientation),
                ("ImagePositionPatient", s.position_lps),
                ("PixelSpacing", s.pixel_spacing_mm),
            )
            if value is None
        ]
        if missing:
            return plan.fail(f"{s.name} lacks {', '.join(missing)}")
        if s.rows != first.rows or s.columns != first.columns:
            return plan.fail(
                f"inconsistent image size: {first.name} is {first.rows}x{first.columns}, "
                f"{s.name} is {s.rows}x{s.columns} (rows x columns)"
            )
        if (
            bool(bad_orientation[i]) if bad_orientation is not None
            else np.max(np.abs(np.subtract(s.orientation, first.orientation))) > ORIENTATION_TOLERANCE  # type: ignore[arg-type]
        ):
            return plan.fail(
                f"more than one orientation ({first.name}: {first.orientation}, {s.name}: {s.orientation})"
            )
        if (
            bool(bad_spacing[i]) if bad_spacing is not None
            else np.max(np.abs(np.subtract(s.pixel_spacing_mm, first.pixel_spacing_mm))) > PIXEL_SPACING_TOLERANCE_MM  # type: ignore[arg-type]
        ):
            return plan.fail(
                f"PixelSpacing differs between {first.name} ({first.pixel_spacing_mm}) and {s.name} ({s.pixel_spacing_mm})"
            )
    assert first.orientation is not None and first.pixel_spacing_mm is not None
    iop = np.asarray(first.orientation, dtype=float)
    if min(np.linalg.norm(iop[:3]), np.linalg.norm(iop[3:])) < 1e-6:
        return plan.fail(f"ImageOrientationPatient of {first.name} has a zero-length cosine")
    row_cos, col_cos, normal = unit_axes(first.orientation)
    if abs(float(row_cos @ col_cos)) > 1e-3:
        return plan.fail(f"ImageOrientationPatient row and column cosines are not orthogonal (dot product {float(row_cos @ col_cos):.2e})")
    row_spacing, col_spacing = (float(v) for v in first.pixel_spacing_mm)  # DICOM order: between rows, between columns
    if row_spacing <= 0 or col_spacing <= 0:
        return plan.fail(f"PixelSpacing {first.pixel_spacing_mm} of {first.name} is not positive")
    nx, ny = int(first.columns or 0), int(first.rows or 0)
    plan.direction = np.stack([row_cos, col_cos, normal], axis=1)

    positions = np.array([s.position_lps for s in slices], dtype=float)
    along = positions @ normal
    order = np.argsort(along, kind="stable")

    # Group equal positions: duplicates are resolved (or refused) when their pixels are read.
    slots: list[list[SliceRef]] = []
    slot_pos: list[np.ndarray] = []
    slot_along: list[float] = []
    for i in order:
        if slot_along and along[i] - slot_along[-1] < DUPLICATE_TOLERANCE_MM:
            if np.linalg.norm(positions[i] - slot_pos[-1]) > 10 * DUPLICATE_TOLERANCE_MM:
                return plan.fail(
                    f"{slots[-1][0].name} and {slices[i].name} lie in the same plane ({along[i]:.3f} mm along the normal) "
                    "at different in-plane positions"
                )
            slots[-1].append(slices[i])
        else:
            slots.append([slices[i]])
            slot_pos.append(positions[i])
            slot_along.append(float(along[i]))
    plan.slots = slots
    n_dup = sum(len(s) - 1 for s in slots)
    duplicates = ""
    if n_dup:
        j = next(i for i, s in enumerate(slots) if len(s) > 1)
        duplicates = (
            f"{n_dup} duplicate slice position(s), e.g. {slots[j][0].name} and {slots[j][1].name} both at "
            f"{slot_along[j]:.3f} mm along the normal"
        )
        plan.problems.append(f"{duplicates}; identical copies are dropped when loading, differing ones are refused")

    pos = np.asarray(slot_pos)
    zs = np.asarray(slot_along)
    nz = len(slots)
    if nz == 1:
        h = first.header
        thickness = h.spacing_between_slices_mm or first.slice_thickness_mm
        slice_spacing = float(thickness) if thickness and thickness > 0 else 1.0
        plan.problems.append(
            f"single slice: slice spacing {slice_spacing:g} mm taken from "
            + ("SpacingBetweenSlices" if h.spacing_between_slices_mm else "SliceThickness" if thickness else "a default")
        )
    else:
        gaps = np.diff(zs)
        median = float(np.median(gaps))
        tol = max(SPACING_RELATIVE_TOLERANCE * median, SPACING_ABSOLUTE_TOLERANCE_MM)
        bad = np.nonzero(np.abs(gaps - median) > tol)[0]
        if bad.size:
            spacing = classify_spacing(gaps)
            if spacing.holes:
                i = spacing.holes[0]
                return plan.fail(
                    (f"{duplicates}, and " if duplicates else "")
                    + f"missing slice(s): gap of {gaps[i]:.3f} mm between positions {zs[i]:.3f} and "
                    f"{zs[i + 1]:.3f} mm (regular spacing {spacing.around_hole_mm:.3f} mm around it; "
                    f"{len(spacing.holes)} gap(s) in all; slice spacings found: {_spacings_text(gaps)}); "
                    "find the missing file(s) or load the complete export"
                )
            if not spacing.by_design:
                return plan.fail(
                    (f"{duplicates}, and " if duplicates else "")
                    + f"non-uniform slice spacing: {_spacings_text(gaps)} mm "
                    f"(median {median:.3f} mm, tolerance {tol:.3f} mm)"
                )
            # Variable spacing by design: resampled along the normal onto a regular grid (series.py).
            plan.slice_positions_mm = zs - zs[0]
            n_out, slice_spacing = variable_spacing_grid(gaps, nz)
            capped = slice_spacing > float(np.min(gaps)) + 1e-6
            plan.problems.append(
                f"variable slice spacing by design ({spacing.describe()}): resampled onto a regular grid of "
                f"{n_out} slices {slice_spacing:.4f} mm apart ("
                + (f"twice the {nz} acquired slices: the smallest spacing, {float(np.min(gaps)):.3f} mm, would make more"
                   if capped else "the smallest spacing")
                + "; first and last acquired slices kept) by linear interpolation along the slice normal"
            )
        else:
            # Least-squares slope: jitter in written positions does not accumulate along the stack.
            k = np.arange(nz, dtype=float)
            slice_spacing = float(np.polyfit(k, zs, 1)[0])

    # In-plane drift of slice origins: zero for an orthogonal stack, linear for a gantry tilt.
    offsets = pos - pos[0] - np.outer(zs - zs[0], normal)
    du, dv = offsets @ row_cos, offsets @ col_cos
    dz = zs - zs[0]
    shift_px = None
    if nz > 1:
        denom = float(dz @ dz)
        su, sv = float(dz @ du) / denom, float(dz @ dv) / denom
        residual = float(np.max(np.hypot(du - su * dz, dv - sv * dz)))
        total_drift = math.hypot(su, sv) * float(dz[-1])
        if residual > max(SHEAR_TOLERANCE_MM, SHEAR_IGNORE_PIXEL_FRACTION * min(row_spacing, col_spacing)):
            return plan.fail(
                f"irregular stack: slice origins wander up to {residual:.3f} mm in-plane off a straight line; "
                "not a gantry tilt, refused rather than stacked or resampled"
            )
        if total_drift > SHEAR_IGNORE_PIXEL_FRACTION * min(row_spacing, col_spacing):
            angle = math.degrees(math.atan(math.hypot(su, sv)))
            plan.tilt_deg = angle
            if tilt == "refuse":
                return plan.fail(
                    f"sheared stack (gantry tilt {angle:.2f} deg): slice origins drift {total_drift:.3f} mm in-plane "
                    "over the stack; refused (tilt='refuse') rather than stacked as if orthogonal"
                )
            if angle > MAX_TILT_DEG:
                return plan.fail(
                    f"sheared stack with an implausible shear of {angle:.1f} deg (more than {MAX_TILT_DEG:g} deg, "
                    "beyond any CT gantry tilt); refused"
                )
            u = su * dz
            v = sv * dz
            u0, v0 = min(0.0, float(u.min())), min(0.0, float(v.min()))
            extra_x = int(math.ceil((float(u.max()) - u0) / col_spacing - 1e-6))
            extra_y = int(math.ceil((float(v.max()) - v0) / row_spacing - 1e-6))
            shift_px = np.stack([(u - u0) / col_spacing, (v - v0) / row_spacing], axis=1)
            origin = pos[0] + u0 * row_cos + v0 * col_cos
            plan.problems.append(
                f"sheared stack (gantry tilt {angle:.2f} deg): resampled onto an orthogonal grid "
                f"(per-slice in-plane bilinear shift; grid widened from {nx}x{ny} to {nx + extra_x}x{ny + extra_y} "
                "so no acquired pixel is lost; voxels outside every slice hold the volume's minimum)"
            )
            plan.shift_px = shift_px
            plan.size = (nx + extra_x, ny + extra_y, plan.output_slices)
            plan.origin_lps = tuple(float(v) for v in origin)  # type: ignore[assignment]
            plan.spacing_mm = (col_spacing, row_spacing, slice_spacing)
            return plan
    plan.size = (nx, ny, plan.output_slices)
    plan.origin_lps = tuple(float(v) for v in pos[0])  # type: ignore[assignment]
    plan.spacing_mm = (col_spacing, row_spacing, slice_spacing)
    return plan


def _spacings_text(gaps: np.ndarray) -> str:
    values = sorted({round(float(g), 3) for g in gaps})
    if len(values) > 8:
        return f"{len(values)} distinct values from {values[0]} to {values[-1]}"
    return str(values)


@dataclass
class SpacingPattern:
    """How the gaps between consecutive slices of a stack vary (:func:`classify_spacing`).

    Attributes
    ----------
    runs
        (spacing in mm, number of consecutive gaps) in stack order.
    holes
        Indices of gaps that are missing slices: a lone gap more than 1.5x the
        spacing around it.
    around_hole_mm
        The spacing around the first hole.
    by_design
        True when the stack is made of regular runs of different spacings
        (two or more runs of at least two gaps, lone gaps only as the
        transition between two runs of different spacing, no hole): variable
        slice spacing by design, as a CT head protocol with thin posterior
        fossa and thick supratentorial slices.
    """

    runs: list[tuple[float, int]]
    holes: list[int] = field(default_factory=list)
    around_hole_mm: float = 0.0
    by_design: bool = False

    def describe(self) -> str:
        """E.g. ``"13 x 4.002 mm, 1 x 1.081 mm, 13 x 6.999 mm"`` (the runs in stack order)."""
        return ", ".join(f"{n} x {v:.3f} mm" for v, n in self.runs)


def _same_spacing(a: float, b: float) -> bool:
    return abs(a - b) <= max(SPACING_RELATIVE_TOLERANCE * max(a, b), SPACING_ABSOLUTE_TOLERANCE_MM)


def classify_spacing(gaps: np.ndarray) -> SpacingPattern:
    """Tell missing slices from variable slice spacing by design (and both from an irregular stack).

    Consecutive gaps equal within max(1 %, 0.01 mm) form a run. A lone gap
    (a run of one) next to a run of at least two gaps, inside one regular
    spacing or at an end of the stack, that is more than 1.5 times that
    spacing is a missing slice (or several); one that is not, or one with no
    run of two or more beside it, is an irregularity. A longer run of gaps
    more than 1.5 times the spacing on both its sides, when that spacing is
    the same on both sides, is missing slices too (every other slice lost
    over a stretch): a design changes spacing between zones, it does not
    come back to the spacing it left after a few wider gaps. A lone gap between two runs of
    different spacings is the transition between them. The stack has
    variable spacing by design when it has no hole and no irregularity and
    at least two runs of two or more gaps with different spacings.

    Parameters
    ----------
    gaps
        Distances between consecutive slices along the normal, mm, in stack order.

    Returns
    -------
    SpacingPattern
    """
    runs: list[list[float]] = []
    for g in (float(v) for v in gaps):
        if runs and _same_spacing(g, float(np.mean(runs[-1]))):
            runs[-1].append(g)
        else:
            runs.append([g])
    values = [float(np.mean(r)) for r in runs]
    pattern = SpacingPattern(runs=[(v, len(r)) for v, r in zip(values, runs)])
    irregular = False
    starts = np.cumsum([0] + [len(r) for r in runs])
    for j, run in enumerate(runs):
        if len(run) > 1 and 0 < j < len(runs) - 1:
            # A run of wider gaps inside one regular spacing (it resumes after it): slices lost, not a design.
            before, after = values[j - 1], values[j + 1]
            if _same_spacing(before, after) and values[j] > 1.5 * max(before, after):
                if not pattern.holes:
                    pattern.around_hole_mm = float(np.mean([before, after]))
                pattern.holes.extend(range(int(starts[j]), int(starts[j + 1])))
            continue
        if len(run) > 1 or len(runs) == 1:
            continue
        before = values[j - 1] if j > 0 else None
        after = values[j + 1] if j + 1 < len(runs) else None
        if not any(0 <= i < len(runs) and len(runs[i]) >= 2 for i in (j - 1, j + 1)):
            irregular = True  # no regular spacing around it to measure it against
            continue
        neighbours = [v for v in (before, after) if v is not None]
        transition = before is not None and after is not None and not _same_spacing(before, after)
        reference = max(neighbours) if transition else float(np.mean(neighbours))
        if values[j] > 1.5 * reference:
            if not pattern.holes:
                pattern.around_hole_mm = reference
            pattern.holes.append(int(starts[j]))
        elif not transition:
            irregular = True
    long_values = [v for v, r in zip(values, runs) if len(r) >= 2]
    distinct = []
    for v in long_values:
        if not any(_same_spacing(v, d) for d in distinct):
            distinct.append(v)
    pattern.by_design = not pattern.holes and not irregular and len(distinct) >= 2
    return pattern


#: A variable-spacing stack is resampled at its smallest spacing, but onto at most this many times its slices.
MAX_RESAMPLE_FACTOR = 2


def variable_spacing_grid(gaps: np.ndarray, n_acquired: int) -> tuple[int, float]:
    """(slices, spacing in mm) of the regular grid a variable-spacing stack is resampled onto.

    The grid runs from the first to the last acquired slice (both kept), at
    the smallest spacing found or, when that would make more than
    :data:`MAX_RESAMPLE_FACTOR` times the acquired slices, at that many
    slices (as dcm2niix's equidistant conversion does).
    """
    extent = float(np.sum(gaps))
    smallest = float(np.min(gaps))
    n_out = int(math.ceil(extent / smallest - 1e-6)) + 1
    n_out = max(2, min(n_out, MAX_RESAMPLE_FACTOR * n_acquired))
    return n_out, extent / (n_out - 1)
