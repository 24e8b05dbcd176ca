"""Assemble one DICOM volume (single-frame series or enhanced multi-frame object) into a SimpleITK image.

Slices are ordered by ImagePositionPatient projected on the slice normal,
never by file name or InstanceNumber (:mod:`imaging.io.stack` checks the
geometry and plans the grid). The output image is allocated once, and each
slice is written into it in place: an uncompressed slice is read from its
recorded offset into a small buffer and rescaled straight into the volume,
by a small thread pool (file reads and numpy release the GIL). Peak memory is
therefore the volume plus a few slices.

Values are RescaleSlope x stored + RescaleIntercept, slice by slice: int16
when every slice's rescale is integral and the values fit (int32 when they do
not), float32 otherwise.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from imaging.io.dicom import DicomHeader, read_header
from imaging.io.errors import GeometryError, SeriesError
from imaging.io.geometry import LoadedVolume
from imaging.io.grouping import SeriesInfo, split_volumes
from imaging.io.mosaic import cut_tile
from imaging.io.pixels import read_stored
from imaging.io.stack import SliceRef, StackPlan, TiltPolicy, plan_stack, slices_of

log = logging.getLogger(__name__)

_SITK_TYPES = {np.dtype(np.int16): sitk.sitkInt16, np.dtype(np.int32): sitk.sitkInt32, np.dtype(np.float32): sitk.sitkFloat32}


class _Int16Overflow(Exception):
    """Internal: a slice's values do not fit the output type; the volume is refilled a size up (int32, float32)."""


def _new_image(size_xyz: tuple[int, int, int], dtype: np.dtype) -> tuple[sitk.Image, np.ndarray]:
    """A zeroed SimpleITK image and a writable numpy view (z, y, x) on its own pixel buffer.

    SimpleITK only hands out read-only views; writing through this one fills
    the image without the extra full-size copy that ``GetImageFromArray``
    makes. The image must stay referenced while the view is used.
    """
    image = sitk.Image([int(v) for v in size_xyz], _SITK_TYPES[np.dtype(dtype)])
    view = sitk.GetArrayViewFromImage(image)  # also makes the buffer unique to this image
    address = view.__array_interface__["data"][0]
    buffer = (ctypes.c_char * view.nbytes).from_address(address)
    array = np.frombuffer(memoryview(buffer).cast("B"), dtype=dtype).reshape(view.shape)
    return image, array


def _store(raw: np.ndarray, ref: SliceRef, out: np.ndarray) -> None:
    """Rescale ``raw`` (stored values) of ``ref`` into ``out`` (one output slice)."""
    slope, intercept = ref.rescale_slope, ref.rescale_intercept
    if out.dtype.kind == "f":
        if slope == 1.0 and intercept == 0.0:
            out[...] = raw
        else:
            out[...] = raw * float(slope) + float(intercept)
        return
    inter = int(intercept)
    limits, stored = np.iinfo(out.dtype), np.iinfo(raw.dtype)
    if stored.min + inter < limits.min or stored.max + inter > limits.max:
        # Possible overflow for this bit depth: look at the actual values (cheap next to the read).
        lo, hi = int(raw.min()), int(raw.max())
        if lo + inter < limits.min or hi + inter > limits.max:
            raise _Int16Overflow
    if inter == 0:
        np.copyto(out, raw, casting="unsafe")
    else:
        np.add(raw, np.int32(inter) if raw.dtype.itemsize < 4 else np.int64(inter), out=out, casting="unsafe")


def _output_dtype(plan: StackPlan) -> np.dtype:
    refs = [r for slot in plan.slots for r in slot]
    integral = all(r.rescale_slope == 1.0 and float(r.rescale_intercept).is_integer() for r in refs)
    if not integral:
        return np.dtype(np.float32)
    if any((r.header.bits_allocated or 16) > 16 for r in refs):
        return np.dtype(np.int32)
    return np.dtype(np.int16)


class _SliceReader:
    """Stored values of one slice: a file, a frame, or a tile of a Siemens mosaic (each mosaic read once)."""

    def __init__(self) -> None:
        self._mosaics: dict[Path, np.ndarray] = {}
        self._lock = threading.Lock()

    def __call__(self, ref: SliceRef) -> np.ndarray:
        if ref.tile is None or ref.mosaic is None:
            return read_stored(ref.header, ref.frame)
        path = ref.header.path
        with self._lock:
            mosaic = self._mosaics.get(path)
            if mosaic is None:
                mosaic = read_stored(ref.header, None)
                if mosaic.shape[:2] != (ref.header.rows, ref.header.columns):
                    raise SeriesError(f"{path}: mosaic pixel array {mosaic.shape}, header says {ref.header.rows}x{ref.header.columns}")
                self._mosaics[path] = mosaic
        return cut_tile(mosaic, ref.mosaic, ref.tile)


def _repeats_hint(plan: StackPlan) -> str:
    """When every position holds the same number of slices: say that this looks like an unlabelled 4-D series."""
    counts = {len(slot) for slot in plan.slots}
    if len(plan.slots) < 2 or len(counts) != 1 or min(counts) < 2:
        return ""
    k = counts.pop()
    return (
        f" (every one of the {len(plan.slots)} positions holds {k} slices: {k} volumes of a 4-D series, e.g. fMRI, "
        "with nothing in the headers - TemporalPositionIdentifier, AcquisitionNumber, TriggerTime, ImageType - "
        "that tells them apart; refused rather than guessing the volumes from InstanceNumber or file order)"
    )


def _fill(plan: StackPlan, out: np.ndarray, workers: int) -> list[str]:
    """Read every slot's slice(s) into ``out[k]``; returns the names of dropped identical duplicates."""
    rows, cols = out.shape[1], out.shape[2]
    read = _SliceReader()

    def job(k: int) -> list[tuple[str, str]]:
        refs = plan.slots[k]
        first = refs[0]
        raw = read(first)
        if raw.shape != (rows, cols):
            if raw.ndim == 3:
                raise SeriesError(
                    f"{plan.label}: {first.name} is a colour image ({first.header.photometric}); a scalar volume is required"
                )
            raise SeriesError(f"{plan.label}: {first.name} has pixel array {raw.shape}, header says {rows}x{cols}")
        if raw.dtype.kind == "f" and out.dtype.kind != "f":
            raise _Int16Overflow  # float pixel data: refill as float32 (handled by the caller)
        _store(raw, first, out[k])
        dropped = []
        for other in refs[1:]:
            raw2 = read(other)
            same = raw2.shape == (rows, cols)
            if same:
                tmp = np.empty_like(out[k])
                _store(raw2, other, tmp)
                same = bool(np.array_equal(tmp, out[k]))
            if not same:
                raise GeometryError(
                    f"{plan.label}: duplicate slice position with different pixel data: {first.name} and "
                    f"{other.name} are at the same position; refused rather than choosing one" + _repeats_hint(plan)
                )
            dropped.append((other.name, first.name))
        return dropped

    dropped: list[tuple[str, str]] = []
    if workers <= 1 or len(plan.slots) < 8:
        for k in range(len(plan.slots)):
            dropped.extend(job(k))
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for result in pool.map(job, range(len(plan.slots))):
                dropped.extend(result)
    if not dropped:
        return []
    return [
        f"dropped {len(dropped)} duplicate slice(s) identical to the slice at the same position "
        f"(e.g. {dropped[0][0]}, identical to {dropped[0][1]})"
    ]


def _resample_sheared(plan: StackPlan, stack: np.ndarray, dtype: np.dtype, out: np.ndarray) -> None:
    """Shift each slice in-plane onto the widened orthogonal grid (bilinear), into ``out`` (acquired slices, y, x)."""
    from scipy import ndimage

    assert plan.shift_px is not None
    ny, nx = out.shape[1], out.shape[2]
    fill = float(stack.min())
    work = np.empty((ny, nx), dtype=np.float32)
    for k in range(stack.shape[0]):
        sx, sy = plan.shift_px[k]
        ndimage.affine_transform(
            stack[k].astype(np.float32, copy=False), matrix=[1.0, 1.0], offset=(-sy, -sx),
            output_shape=(ny, nx), output=work, order=1, mode="constant", cval=fill,
        )
        if dtype.kind == "f":
            out[k] = work
        else:
            np.rint(work, out=work)
            out[k] = work


def _resample_along_normal(plan: StackPlan, stack: np.ndarray, dtype: np.dtype, out: np.ndarray) -> None:
    """Linear interpolation between the acquired slices (variable spacing) onto the regular output slices."""
    assert plan.slice_positions_mm is not None
    z = np.asarray(plan.slice_positions_mm, dtype=float)
    spacing = plan.spacing_mm[2]
    work = np.empty(stack.shape[1:], dtype=np.float32)
    for j in range(out.shape[0]):
        t = min(j * spacing, float(z[-1]))
        i = int(np.clip(np.searchsorted(z, t, side="right") - 1, 0, len(z) - 2))
        f = (t - z[i]) / (z[i + 1] - z[i])
        if f <= 1e-9:
            out[j] = stack[i]
            continue
        if f >= 1 - 1e-9:
            out[j] = stack[i + 1]
            continue
        np.multiply(stack[i], np.float32(1.0 - f), out=work, casting="unsafe")
        work += stack[i + 1] * np.float32(f)
        if dtype.kind != "f":
            np.rint(work, out=work)
        out[j] = work


def _describe_choice(volumes: list[tuple[str, str, list[SliceRef]]]) -> str:
    parts = []
    for suffix, _, members in volumes:
        s = members[0]
        parts.append(f"#{suffix} ({len(members)} slices, {s.columns}x{s.rows})")
    return ", ".join(parts)


def read_series(
    series: SeriesInfo | Sequence[str | os.PathLike[str]],
    *,
    tilt: TiltPolicy = "resample",
    volume: str | None = None,
    workers: int | None = None,
    headers: Mapping[Path, DicomHeader] | None = None,
) -> LoadedVolume:
    """Assemble one DICOM volume and report what was found on the way.

    Parameters
    ----------
    series
        A :class:`SeriesInfo` from :func:`imaging.io.group_series`, or file
        paths (single-frame slices of one series, or one multi-frame object).
    tilt
        Gantry tilt policy: ``"resample"`` (default) or ``"refuse"`` (see
        :mod:`imaging.io.stack`).
    volume
        When the files hold several volumes (echoes, temporal positions ...),
        the one to load: its name within the series (``"echo2"``) or its full
        volume id (``"<series_uid>#echo2"``).
    workers
        Threads reading slices (default: up to 4).
    headers
        Headers the caller has just read from these files (a fresh crawl), by path: they are not parsed
        again. Headers from a catalogue of an earlier crawl must not be passed (the files may have changed).

    Returns
    -------
    LoadedVolume
        ``image`` in DICOM LPS: spacing (column, row, slice) in mm, origin at
        the first slice along the normal, direction columns = row cosine,
        column cosine, normal; ``problems`` lists what was resampled, dropped
        or worth knowing.

    Raises
    ------
    DicomFileError, SeriesError, GeometryError
        Naming the file or series and the reason.
    """
    if isinstance(series, SeriesInfo):
        files = list(series.files)
        label = f"series {series.volume_id}"
    else:
        files = [Path(f) for f in series]
        label = f"series in {files[0].parent}" if files else "series"
    if not files:
        raise SeriesError("empty series: no files given")
    known = headers or {}
    headers: list[DicomHeader] = [known.get(Path(f)) or read_header(f) for f in files]  # type: ignore[no-redef]
    for h in headers:
        reason = h.not_image_reason
        if reason:
            raise SeriesError(f"{label}: {h.path.name}: {reason}")
    uids = {h.series_uid for h in headers}
    if len(uids) > 1:
        raise SeriesError(f"{label}: files from {len(uids)} different series given as one")
    series_uid = headers[0].series_uid

    slices: list[SliceRef] = []
    for i, h in enumerate(headers):
        refs = slices_of(h)
        if isinstance(series, SeriesInfo) and series.frames and series.frames[i]:
            wanted = set(series.frames[i])
            refs = [r for r in refs if r.frame in wanted]
        slices.extend(refs)

    volumes = split_volumes(slices)
    chosen = None
    wanted_id = volume or (series.volume_id if isinstance(series, SeriesInfo) else None)
    if len(volumes) == 1 and volume is None:
        chosen = volumes[0]
    elif wanted_id is not None:
        for v in volumes:
            if wanted_id in (v[0], f"{series_uid}#{v[0]}", series_uid if not v[0] else None):
                chosen = v
                break
    if chosen is None:
        reason = volumes[0][1] if volumes else "no slices"
        raise GeometryError(
            f"{label}: the files hold {len(volumes)} volumes ({reason}): {_describe_choice(volumes)}"
            + (f"; none is {wanted_id!r}" if wanted_id else "; choose one (volume=...) or load the volumes group_series lists")
        )
    suffix, _, members = chosen
    if suffix and not isinstance(series, SeriesInfo):
        label = f"{label} (volume #{suffix})"
    plan = plan_stack(members, label, tilt=tilt)
    plan.raise_if_failed()

    first = members[0].header
    problems = list(plan.problems)
    if first.samples_per_pixel != 1:
        raise SeriesError(f"{label}: colour image ({first.photometric}, {first.samples_per_pixel} samples per pixel); a scalar volume is required")
    if first.photometric == "MONOCHROME1":
        problems.append("MONOCHROME1: values are the stored (rescaled) values; only the display is inverted")
    rescales = {(r.rescale_slope, r.rescale_intercept) for slot in plan.slots for r in slot}
    if len(rescales) > 1:
        problems.append(f"RescaleSlope/RescaleIntercept vary between slices ({len(rescales)} pairs); applied slice by slice")

    n_workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    nx_in, ny_in = int(members[0].columns or 0), int(members[0].rows or 0)  # a mosaic's tile, not the whole mosaic
    dtype = _output_dtype(plan)
    for _attempt in range(3):
        try:
            if plan.resampled or plan.slice_positions_mm is not None:
                stack = np.empty((plan.n_slices, ny_in, nx_in), dtype=dtype)
                problems_fill = _fill(plan, stack, n_workers)
                image, view = _new_image(plan.size, dtype)
                if plan.slice_positions_mm is None:
                    _resample_sheared(plan, stack, dtype, view)
                else:
                    if plan.resampled:
                        shifted = np.empty((plan.n_slices, view.shape[1], view.shape[2]), dtype=dtype)
                        _resample_sheared(plan, stack, dtype, shifted)
                        stack = shifted
                    _resample_along_normal(plan, stack, dtype, view)
                del stack, view
            else:
                image, view = _new_image(plan.size, dtype)
                problems_fill = _fill(plan, view, n_workers)
                del view
            break
        except _Int16Overflow:
            # Values outside int16 (or float pixel data): refill at the next width.
            dtype = np.dtype(np.int32) if dtype == np.int16 else np.dtype(np.float32)
    else:  # pragma: no cover - float32 never overflows
        raise SeriesError(f"{label}: could not choose a pixel type")
    problems.extend(problems_fill)

    image.SetSpacing(tuple(float(v) for v in plan.spacing_mm))
    image.SetOrigin(tuple(float(v) for v in plan.origin_lps))
    image.SetDirection(tuple(float(v) for v in plan.direction.flatten()))
    return LoadedVolume(image=image, problems=tuple(problems), source=label)


def load_series(
    series: SeriesInfo | Sequence[str | os.PathLike[str]],
    *,
    tilt: TiltPolicy = "resample",
    volume: str | None = None,
    workers: int | None = None,
) -> sitk.Image:
    """Assemble one DICOM volume into a 3-D SimpleITK image in LPS.

    As :func:`read_series`, returning only the image; the problems found are
    logged as warnings (``imaging.io.series`` logger).

    Returns
    -------
    SimpleITK.Image
        Voxel values after RescaleSlope/RescaleIntercept (int16/int32 when they
        stay integral, float32 otherwise); spacing (column, row, slice) in mm;
        origin at the first slice along the normal; direction columns = row
        cosine, column cosine, normal.

    Raises
    ------
    SeriesError, GeometryError, DicomFileError
        Naming the series (or file) and the reason.
    """
    loaded = read_series(series, tilt=tilt, volume=volume, workers=workers)
    for problem in loaded.problems:
        log.warning("%s: %s", loaded.source, problem)
    return loaded.image
