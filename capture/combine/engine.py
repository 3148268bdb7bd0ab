"""Streaming combination of N frames into a master under a fixed memory budget.

Validation (shapes, exclusions, frame counts, subtract/scales) and the public entry points. The
work itself is the band loop of :mod:`capture.combine.streaming`: the image is processed in
bands of whole rows whose buffers fit the memory budget, so peak memory does not grow with the
number of frames beyond N x band (at least one row of every frame is always held). Nothing is
imported from numba at import time.

Public entry points: :func:`combine_files`, :func:`combine_to_fits`, :func:`combine_arrays`
(all three take the keyword options of :class:`CombineOptions`), :func:`rejection_mask`,
:func:`warm_up`.
"""

from __future__ import annotations

import functools
import logging
import os
from collections import Counter
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import TypedDict
from typing import Unpack

import numpy as np
import numpy.typing as npt
from astropy.io import fits

from calibd.capture.textsafe import shown

from .kernels import CombineMethod
from .kernels import Diagnostics
from .kernels import Engine
from .reader import FrameReadError
from .reader import FrameSource
from .reader import RowSource
from .rejection import Rejection
from .results import CombineResult
from .results import CombineStats
from .streaming import ArraySink
from .streaming import ArraySource
from .streaming import NullSink
from .streaming import Sink
from .streaming import execute
from .streaming import warm_up
from .writer import MasterWriter

__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_REJECTION",
    "CombineOptions",
    "CombineResult",
    "CombineStats",
    "combine_arrays",
    "combine_files",
    "combine_to_fits",
    "rejection_mask",
    "warm_up",
]

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
Progress = Callable[[float], None]
Scales = Sequence[float] | npt.ArrayLike

#: Checked sources, excluded (path, reason), shape, prepared ``subtract`` and ``scales``.
_Prepared = tuple[
    Sequence[RowSource], list[tuple[str, str]], tuple[int, int], F32 | None, F32 | None
]
#: Checks the frames against (rejection, subtract, scales) and returns them :data:`_Prepared`.
_Preparer = Callable[[Rejection, npt.ArrayLike | None, Scales | None], _Prepared]

DEFAULT_BUDGET = 128 * 2**20
#: 3-sigma clipping around the median, one pass (immutable, shared).
DEFAULT_REJECTION = Rejection()


class CombineOptions(TypedDict, total=False):
    """The keyword options of :func:`combine_files`, :func:`combine_to_fits` and
    :func:`combine_arrays`. Each may be left out; its default is in brackets.

    ``method`` (``"mean"``)
        How the kept samples of a pixel are combined: ``"mean"`` or ``"median"``.
    ``rejection`` (:data:`DEFAULT_REJECTION`: 3-sigma clipping around the median, one pass)
        The per-pixel outlier rejection (:class:`Rejection`), applied before combining.
    ``subtract`` (None)
        A 2-D image of the frames' shape (e.g. a master dark flat), subtracted from every frame
        in float32; must be finite.
    ``scales`` (None)
        One factor per input (per *input path* for files, excluded ones included; e.g.
        1/median for flats) by which each frame is multiplied after ``subtract``, in float32;
        must be finite.
    ``memory_budget_bytes`` (:data:`DEFAULT_BUDGET`, 128 MiB)
        [bytes] What the row-band buffers of all frames may hold together (the output image
        and ``subtract`` come on top; at least one row of every frame is always held).
    ``engine`` (``"auto"``)
        ``"numba"``, ``"numpy"`` (the same results) or ``"auto"`` (numba when available).
    ``progress`` (None)
        Called as ``progress(fraction)`` (0 to 1) from the calling thread after each band.
    ``threads`` (None: one per available CPU)
        How many worker threads combine the bands.
    """

    method: CombineMethod
    rejection: Rejection
    subtract: npt.ArrayLike | None
    scales: Scales | None
    memory_budget_bytes: int
    engine: Engine
    progress: Progress | None
    threads: int | None


# --------------------------------------------------------------------------- validation


def _open_sources(
    paths: Sequence[str | os.PathLike[str]],
) -> tuple[list[FrameSource], list[int], list[tuple[str, str]]]:
    """Open every path; unreadable ones are excluded with a warning."""
    sources: list[FrameSource] = []
    indices: list[int] = []
    excluded: list[tuple[str, str]] = []
    for i, path in enumerate(paths):
        try:
            sources.append(FrameSource(path))
            indices.append(i)
        except FrameReadError as err:
            log.warning("excluding %s: %s", shown(err.path), shown(err.reason, 300))
            excluded.append((err.path, err.reason))
    return sources, indices, excluded


def _check_shapes(sources: Sequence[RowSource]) -> tuple[int, int]:
    """The common shape; raises ValueError naming every frame that differs from the majority."""
    counts = Counter(s.shape for s in sources)
    best = max(counts.values())
    shape = next(s.shape for s in sources if counts[s.shape] == best)  # ties: first file wins
    odd = [s for s in sources if s.shape != shape]
    if odd:
        ref = next(s for s in sources if s.shape == shape)

        def fmt(sh: tuple[int, int]) -> str:
            return f"{sh[1]}x{sh[0]}"

        names = "; ".join(f"{s.label} is {fmt(s.shape)}" for s in odd[:5])
        more = f" (and {len(odd) - 5} more)" if len(odd) > 5 else ""
        raise ValueError(
            f"frames differ in shape: {names}{more}, but {best} of {len(sources)} frames are "
            f"{fmt(shape)} (columns x rows), e.g. {ref.label}"
        )
    return shape


def _check_count(n: int, rejection: Rejection, excluded: Sequence[tuple[str, str]]) -> None:
    if n >= max(1, rejection.min_frames):
        return
    why = ""
    if excluded:
        names = "; ".join(f"{shown(os.path.basename(p))}: {shown(r, 200)}"
                          for p, r in excluded[:5])
        why = f" ({len(excluded)} excluded: {names})"
    raise ValueError(
        f"{rejection.describe()} needs at least {rejection.min_frames} frame(s), "
        f"but only {n} usable{why}"
    )


def _prepare_subtract(subtract: npt.ArrayLike | None, shape: tuple[int, int]) -> F32 | None:
    if subtract is None:
        return None
    image = np.ascontiguousarray(subtract, dtype=np.float32)
    if image.shape != shape:
        raise ValueError(
            f"subtract image is {image.shape[-1]}x{image.shape[0]} but the frames are "
            f"{shape[1]}x{shape[0]} (columns x rows)"
        )
    if not np.isfinite(image).all():
        raise ValueError("subtract image contains NaN or inf")
    return image


def _prepare_scales(scales: Scales | None, n_inputs: int, used: Sequence[int]) -> F32 | None:
    if scales is None:
        return None
    values = np.asarray(scales, dtype=np.float64).reshape(-1)
    if values.size != n_inputs:
        raise ValueError(f"{values.size} scale factor(s) for {n_inputs} input frame(s)")
    if not np.isfinite(values).all():
        raise ValueError("scale factors must be finite")
    return np.ascontiguousarray(values[list(used)], dtype=np.float32)


# --------------------------------------------------------------------------- public API


def _stats(
    n: int,
    shape: tuple[int, int],
    used: Sequence[str],
    excluded: Sequence[tuple[str, str]],
    low: int,
    high: int,
    method: CombineMethod,
    rejection: Rejection,
    engine: str,
) -> dict[str, Any]:
    return {
        "ncombine": n,
        "shape": shape,
        "used_paths": tuple(used),
        "excluded": tuple(excluded),
        "rejected_low": low,
        "rejected_high": high,
        "method": method,
        "rejection": rejection,
        "engine": engine,
    }


def _close_all(sources: Sequence[RowSource]) -> None:
    for s in sources:
        s.close()


def combine_files(
    paths: Sequence[str | os.PathLike[str]], **options: Unpack[CombineOptions]
) -> CombineResult:
    """Combine FITS frames into a float32 master held in memory.

    Each frame (float32, after decoding BZERO/BSCALE) has ``subtract`` subtracted and is then
    multiplied by its ``scales`` factor; then outliers are rejected per pixel (``rejection``)
    and the kept samples combined by ``method``; ``options`` are those of
    :class:`CombineOptions` (all optional).

    The frames are streamed in row bands whose buffers fit ``memory_budget_bytes``. Unreadable,
    truncated or non-FITS frames are excluded with a warning and listed in ``excluded``. Blocks
    until done.

    Raises :class:`ValueError` if the frames differ in shape (naming the odd files), if fewer
    usable frames remain than the rejection needs, or for bad ``subtract``/``scales``;
    :class:`~capture.combine.reader.FrameReadError` (a ValueError) if a frame fails while being
    read; :class:`RuntimeError` if ``engine="numba"`` is unavailable; :class:`TypeError` for an
    unknown option.
    """
    with _Job(functools.partial(_prepare, paths), options) as job:
        sink = ArraySink(job.shape)
        return CombineResult(**job.stats(*job.run(sink)), data=sink.data)


def _prepare(
    paths: Sequence[str | os.PathLike[str]],
    rejection: Rejection,
    subtract: npt.ArrayLike | None,
    scales: Scales | None,
) -> _Prepared:
    """Open and check the frames (shapes, enough of them for the method) and the calibration
    inputs. The caller closes the sources. Raises ValueError."""
    if not paths:
        raise ValueError("no frames to combine")
    sources, used, excluded = _open_sources(paths)
    try:
        if not sources:
            _check_count(0, rejection, excluded)
        shape = _check_shapes(sources)
        _check_count(len(sources), rejection, excluded)
        sub = _prepare_subtract(subtract, shape)
        sc = _prepare_scales(scales, len(paths), used)
    except BaseException:
        _close_all(sources)
        raise
    return sources, list(excluded), shape, sub, sc


def combine_to_fits(
    paths: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    header: fits.Header | None = None,
    **options: Unpack[CombineOptions],
) -> CombineStats:
    """Like :func:`combine_files` (the same :class:`CombineOptions`), but stream the master
    straight into the FITS file ``output`` (float32, ``header``'s cards plus the provenance of
    :meth:`CombineStats.header_cards`), so the image is never held in memory.

    The file appears atomically (temporary file in the same directory, fsync, rename) and only
    on success: on any error nothing is left behind and an existing ``output`` is untouched.
    Blocks until the file is durable. Raises as :func:`combine_files`, plus :class:`OSError`
    for write failures.
    """
    with _Job(functools.partial(_prepare, paths), options) as job:

        def make_header(low: int, high: int, chosen: str) -> tuple[fits.Header, CombineStats]:
            stats = CombineStats(**job.stats(low, high, chosen))
            hdr = fits.Header() if header is None else header.copy()
            return stats.apply_to(hdr), stats

        # Provisional header with the same cards (counts filled in at the end).
        provisional, _ = make_header(10**15, 10**15, "numba")
        with MasterWriter(output, job.shape, provisional) as writer:
            final, stats = make_header(*job.run(writer))
            writer.commit(final)
    return stats


class _Job:
    """One combine: ``options`` with their defaults (the one place they are applied), and the
    sources and calibration inputs ``prepare`` (:func:`_prepare` for files, :func:`_prepare_stack`
    for an array) checked against them. A context manager that closes the sources on exit.

    Raises :class:`TypeError` for an unknown option (before anything is opened), else what
    ``prepare`` raises."""

    def __init__(self, prepare: _Preparer, options: CombineOptions) -> None:
        unknown = sorted(options.keys() - CombineOptions.__optional_keys__)
        if unknown:
            raise TypeError(f"unknown combine option(s): {', '.join(unknown)}")
        self._method = options.get("method", "mean")
        self._rejection = options.get("rejection", DEFAULT_REJECTION)
        prepared = prepare(self._rejection, options.get("subtract"), options.get("scales"))
        self.sources, self.excluded, self.shape, self.subtract, self.scales = prepared
        self._execute = functools.partial(
            execute,
            self.sources,
            self.shape,
            method=self._method,
            rejection=self._rejection,
            subtract=self.subtract,
            scales=self.scales,
            budget=options.get("memory_budget_bytes", DEFAULT_BUDGET),
            engine=options.get("engine", "auto"),
            progress=options.get("progress"),
            threads=options.get("threads"),
        )

    def __enter__(self) -> _Job:
        return self

    def __exit__(self, *exc: object) -> None:
        _close_all(self.sources)

    def run(self, sink: Sink, diag: Diagnostics | None = None) -> tuple[int, int, str]:
        """Stream every band into ``sink`` (blocking); returns (rejected low, high, engine)."""
        return self._execute(sink=sink, diag=diag)

    def stats(self, low: int, high: int, engine: str) -> dict[str, Any]:
        """The :class:`CombineStats` fields of a finished :meth:`run`."""
        labels = [s.label for s in self.sources]
        return _stats(
            len(self.sources),
            self.shape,
            labels,
            self.excluded,
            low,
            high,
            self._method,
            self._rejection,
            engine,
        )


def _as_stack(stack: npt.ArrayLike) -> F32:
    arr = np.asarray(stack)
    if arr.ndim == 2:  # N frames of one row
        arr = arr[:, None, :]
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1 or arr.shape[2] < 1:
        raise ValueError(f"expected a stack of frames (N, rows, columns), got shape {arr.shape}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        raise ValueError("the stack contains NaN or inf")
    return out


def _prepare_stack(
    data: F32, rejection: Rejection, subtract: npt.ArrayLike | None, scales: Scales | None
) -> _Prepared:
    """:func:`_prepare` for a stack checked by :func:`_as_stack`. Raises ValueError."""
    n = data.shape[0]
    _check_count(n, rejection, [])
    sources = [ArraySource(data, i) for i in range(n)]
    shape = sources[0].shape
    sub = _prepare_subtract(subtract, shape)
    return sources, [], shape, sub, _prepare_scales(scales, n, range(n))


def combine_arrays(stack: npt.ArrayLike, **options: Unpack[CombineOptions]) -> CombineResult:
    """Combine an in-memory stack ``(N, rows, columns)`` (or ``(N, pixels)``) with the same
    kernels, band loop and :class:`CombineOptions` as :func:`combine_files`. Values are
    converted to float32 first. Blocks; raises :class:`ValueError` for a malformed stack (also
    NaN/inf), too few frames or bad ``subtract``/``scales``, :class:`TypeError` for an unknown
    option."""
    job = _Job(functools.partial(_prepare_stack, _as_stack(stack)), options)
    sink = ArraySink(job.shape)
    stats = job.stats(*job.run(sink))
    result = sink.data if np.asarray(stack).ndim == 3 else sink.data.reshape(-1)
    return CombineResult(**stats, data=result)


def rejection_mask(
    stack: npt.ArrayLike,
    rejection: Rejection,
    *,
    subtract: npt.ArrayLike | None = None,
    scales: Scales | None = None,
    engine: Engine = "auto",
) -> npt.NDArray[np.bool_]:
    """Per-sample keep (True) / reject (False) decisions of ``rejection`` on a stack, as the
    kernels take them (for tests and diagnostics; holds the whole stack in memory).

    For ``"minmax"`` ties are broken by frame order (the earlier frame is dropped first).
    Blocks; raises like :func:`combine_arrays`.
    """
    data = _as_stack(stack)
    n = data.shape[0]
    options = CombineOptions(
        rejection=rejection, subtract=subtract, scales=scales, engine=engine, threads=1
    )
    job = _Job(functools.partial(_prepare_stack, data), options)
    sub, sc = job.subtract, job.scales
    npix = job.shape[0] * job.shape[1]
    diag = Diagnostics(
        np.empty(npix, np.float64),
        np.empty(npix, np.float64),
        np.empty(npix, np.int64),
        np.empty(npix, np.int64),
    )
    job.run(NullSink(), diag)
    x = data.reshape(n, npix)
    if sub is not None:
        x = x - sub.reshape(1, npix)
    if sc is not None:
        x = x * sc[:, None]
    if rejection.method == "minmax":
        ranks = np.argsort(np.argsort(x, axis=0, kind="stable"), axis=0, kind="stable")
        keep = (ranks >= diag.a) & (ranks < diag.b)
    else:
        x64 = x.astype(np.float64)
        keep = (x64 >= diag.lo) & (x64 <= diag.hi)
    mask: npt.NDArray[np.bool_] = keep.reshape(
        np.asarray(stack).shape if np.asarray(stack).ndim == 3 else (n, npix)
    )
    return mask
