"""Slice geometry of one volume, from headers only.

A *slice* is one single-frame file or one frame of an enhanced multi-frame
object (:class:`SliceRef`). :func:`plan_stack` checks a set of slices that
should form one volume and decides the output grid, without reading pixel
data, so the crawl (``tumor-response index``) and the loader
(:func:`imaging.io.load_series`) report exactly the same geometry and problems.

Checks, in order: every slice has ImageOrientationPatient, ImagePositionPatient
and PixelSpacing; one image size; one orientation; one pixel spacing; row and
column cosines orthogonal; slices sorted by ImagePositionPatient projected on
the normal (row cosine x column cosine); duplicate positions; missing slices
and non-uniform spacing; in-plane drift of the slice origins (a sheared stack,
as a CT gantry tilt produces).

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
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from imaging.io.dicom import DicomHeader
from imaging.io.errors import GeometryError, ImagingError, SeriesError
from imaging.io.geometry import Geometry

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

    @property
    def rows(self) -> int | None:
        return self.header.rows

    @property
    def columns(self) -> int | None:
        return self.header.columns

    @property
    def name(self) -> str:
        """The file name, with the frame number (1-based, as DICOM counts) for a multi-frame file."""
        return self.header.path.name if self.frame is None else f"{self.header.path.name}[frame {self.frame + 1}]"


def slices_of(header: DicomHeader) -> list[SliceRef]:
    """The slices a header contributes: itself, or one per frame of an enhanced multi-frame object."""
    h = header
    if not h.frames:
        echo = ("n", float(h.echo_number)) if h.echo_number is not None else (
            ("te", h.echo_time_ms) if h.echo_time_ms is not None else None
        )
        return [
            SliceRef(
                header=h, frame=None, position_lps=h.position_lps, orientation=h.orientation,
                pixel_spacing_mm=h.pixel_spacing_mm, slice_thickness_mm=h.slice_thickness_mm,
                rescale_slope=h.rescale_slope, rescale_intercept=h.rescale_intercept, echo=echo,
                temporal_position=h.temporal_position, stack_id=None, b_value=h.b_value,
                diffusion_direction=h.diffusion_direction,
            )
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
        return len(self.slots)

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
    for s in slices:
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
        if np.max(np.abs(np.subtract(s.orientation, first.orientation))) > ORIENTATION_TOLERANCE:  # type: ignore[arg-type]
            return plan.fail(
                f"more than one orientation ({first.name}: {first.orientation}, {s.name}: {s.orientation})"
            )
        if np.max(np.abs(np.subtract(s.pixel_spacing_mm, first.pixel_spacing_mm))) > PIXEL_SPACING_TOLERANCE_MM:  # type: ignore[arg-type]
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
            holes = [int(i) for i in bad if gaps[i] > 1.5 * median]
            if holes:
                i = holes[0]
                return plan.fail(
                    (f"{duplicates}, and " if duplicates else "")
                    + f"missing slice(s): gap of {gaps[i]:.3f} mm between positions {zs[i]:.3f} and "
                    f"{zs[i + 1]:.3f} mm (median spacing {median:.3f} mm; {len(holes)} gap(s) in all; "
                    f"slice spacings found: {_spacings_text(gaps)})"
                )
            return plan.fail(
                (f"{duplicates}, and " if duplicates else "")
                + f"non-uniform slice spacing: {_spacings_text(gaps)} mm "
                f"(median {median:.3f} mm, tolerance {tol:.3f} mm)"
            )
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
            plan.size = (nx + extra_x, ny + extra_y, nz)
            plan.origin_lps = tuple(float(v) for v in origin)  # type: ignore[assignment]
            plan.spacing_mm = (col_spacing, row_spacing, slice_spacing)
            return plan
    plan.size = (nx, ny, nz)
    plan.origin_lps = tuple(float(v) for v in pos[0])  # type: ignore[assignment]
    plan.spacing_mm = (col_spacing, row_spacing, slice_spacing)
    return plan


def _spacings_text(gaps: np.ndarray) -> str:
    values = sorted({round(float(g), 3) for g in gaps})
    if len(values) > 8:
        return f"{len(values)} distinct values from {values[0]} to {values[-1]}"
    return str(values)
