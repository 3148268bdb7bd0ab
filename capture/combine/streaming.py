"""The band loop: worker threads that read row bands of every frame, run a kernel, and hand
the combined rows to a sink.

Each worker owns one band buffer (N frames x rows x columns: the files' raw uint16 bytes on the
numba fast path, float32 otherwise), takes the next band from a queue, reads those rows from
every frame, combines them and writes them to the sink (an array or the FITS file being
written), so peak memory is ``threads`` x band, whatever N is. Errors in a worker stop the
others and are re-raised in the calling thread. numba is imported only when its engine runs.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from typing import Protocol

import numpy as np
import numpy.typing as npt

from .kernels import NUMPY_CHUNK
from .kernels import CombineMethod
from .kernels import Diagnostics
from .kernels import Engine
from .kernels import KernelPlan
from .kernels import combine_block_numpy
from .kernels import make_plan
from .kernels import resolve_engine
from .reader import RowSource
from .rejection import Rejection

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
U16 = npt.NDArray[np.uint16]
Progress = Callable[[float], None]

#: Upper bound of one band buffer: small bands stay in the CPU caches between read and kernel.
_BAND_TARGET_BYTES = 6 * 2**20


class ArraySource:
    """One frame of an in-memory stack ``(N, rows, columns)``, behaving like a FrameSource."""

    def __init__(self, stack: F32, index: int) -> None:
        self._stack = stack
        self._index = index

    @property
    def label(self) -> str:
        return f"array[{self._index}]"

    @property
    def shape(self) -> tuple[int, int]:
        return int(self._stack.shape[1]), int(self._stack.shape[2])

    @property
    def fast_u16(self) -> bool:
        return False

    def read_rows(self, r0: int, r1: int, out: F32, scratch: npt.NDArray[np.uint8]) -> None:
        out.reshape(-1)[:] = self._stack[self._index, r0:r1].reshape(-1)

    def read_raw_rows(self, r0: int, r1: int, out: U16) -> None:
        raise ValueError("in-memory frames have no raw form")

    def close(self) -> None:
        pass


class Sink(Protocol):
    def write_rows(self, r0: int, rows: F32) -> None: ...


class ArraySink:
    def __init__(self, shape: tuple[int, int]) -> None:
        self.data = np.empty(shape, dtype=np.float32)

    def write_rows(self, r0: int, rows: F32) -> None:
        k = rows.size // self.data.shape[1]
        self.data[r0 : r0 + k] = rows.reshape(k, self.data.shape[1])


class NullSink:
    def write_rows(self, r0: int, rows: F32) -> None:
        pass


def _numba_module() -> ModuleType:
    from . import _numba

    return _numba


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _band_rows(
    n: int, shape: tuple[int, int], item: int, threads: int, budget: int, numpy_engine: bool
) -> int:
    rows, cols = shape
    # per thread and row: the band (n * cols * item), float32 out + big-endian copy (8 * cols),
    # and a read scratch for one frame's rows (8 * cols)
    per_row = n * cols * item + 16 * cols
    fixed = 0
    if numpy_engine:  # float64 temporaries of one chunk, per thread
        fixed = 12 * n * NUMPY_CHUNK * 8
    share = max(0, budget // threads - fixed)
    by_budget = share // per_row
    by_cache = _BAND_TARGET_BYTES // max(1, n * cols * item)
    band = max(1, min(by_budget, max(by_cache, 1), rows))
    # enough bands to keep every thread busy until the end
    if rows >= 4 * threads:
        band = min(band, max(1, rows // (4 * threads)))
    return band


@dataclass
class _Job:
    sources: Sequence[RowSource]
    shape: tuple[int, int]
    plan: KernelPlan
    engine: str
    subtract: F32 | None
    scales: F32 | None
    sink: Sink
    diag: Diagnostics | None
    band: int
    threads: int


def _worker(
    job: _Job,
    bands: queue.SimpleQueue[tuple[int, int] | None],
    done: queue.SimpleQueue[Any],
    stop: threading.Event,
) -> None:
    try:
        n = len(job.sources)
        cols = job.shape[1]
        raw = job.engine == "numba" and all(s.fast_u16 for s in job.sources)
        block: npt.NDArray[Any] = np.empty(
            (n, job.band * cols), dtype=np.uint16 if raw else np.float32
        )
        out = np.empty(job.band * cols, dtype=np.float32)
        scratch = np.empty(job.band * cols * 8, dtype=np.uint8)
        empty_f = np.empty(0, dtype=np.float32)
        ip, fp = job.plan.packed()
        nb = _numba_module() if job.engine == "numba" else None
        dlo = np.empty(0, np.float64)
        dhi = np.empty(0, np.float64)
        da = np.empty(0, np.int64)
        db = np.empty(0, np.int64)
        low = high = 0
        while not stop.is_set():
            item = bands.get()
            if item is None:
                break
            r0, r1 = item
            p = (r1 - r0) * cols
            for i, src in enumerate(job.sources):
                if raw:
                    src.read_raw_rows(r0, r1, block[i, :p])
                else:
                    src.read_rows(r0, r1, block[i, :p], scratch)
            sub = job.subtract[r0:r1].reshape(-1) if job.subtract is not None else None
            if job.diag is not None:
                q0 = r0 * cols
                dlo, dhi = job.diag.lo[q0 : q0 + p], job.diag.hi[q0 : q0 + p]
                da, db = job.diag.a[q0 : q0 + p], job.diag.b[q0 : q0 + p]
            if nb is not None:
                kernel = nb.combine_u16 if raw else nb.combine_f32
                lo_, hi_ = kernel(
                    block,
                    0,
                    p,
                    sub if sub is not None else empty_f,
                    job.scales if job.scales is not None else empty_f,
                    out,
                    ip,
                    fp,
                    job.plan.pairs,
                    dlo,
                    dhi,
                    da,
                    db,
                )
            else:
                lo_, hi_ = combine_block_numpy(
                    block,
                    0,
                    p,
                    sub,
                    job.scales,
                    out,
                    job.plan,
                    Diagnostics(dlo, dhi, da, db) if job.diag is not None else None,
                )
            low += int(lo_)
            high += int(hi_)
            job.sink.write_rows(r0, out[:p])
            done.put(("rows", r1 - r0))
        done.put(("counts", (low, high)))
    except BaseException as err:  # reported to the calling thread
        stop.set()
        done.put(("error", err))


def _run(job: _Job, progress: Progress | None) -> tuple[int, int]:
    """Run the band loop on ``job.threads`` threads; blocks until done. Returns (low, high)."""
    rows = job.shape[0]
    bands: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
    for r0 in range(0, rows, job.band):
        bands.put((r0, min(rows, r0 + job.band)))
    for _ in range(job.threads):
        bands.put(None)
    done: queue.SimpleQueue[Any] = queue.SimpleQueue()
    stop = threading.Event()
    workers = [
        threading.Thread(
            target=_worker, args=(job, bands, done, stop), name=f"combine-{i}", daemon=True
        )
        for i in range(job.threads)
    ]
    for w in workers:
        w.start()
    low = high = 0
    finished = rows_done = 0
    error: BaseException | None = None
    try:
        while finished < len(workers):
            kind, value = done.get()
            if kind == "rows":
                rows_done += value
                if progress is not None:
                    progress(rows_done / rows)
            elif kind == "counts":
                finished += 1
                low += value[0]
                high += value[1]
            else:
                finished += 1
                error = error or value
    except BaseException:
        stop.set()
        raise
    finally:
        stop.set()
        for w in workers:
            w.join()
    if error is not None:
        raise error
    return low, high


def execute(
    sources: Sequence[RowSource],
    shape: tuple[int, int],
    *,
    method: CombineMethod,
    rejection: Rejection,
    subtract: F32 | None,
    scales: F32 | None,
    budget: int,
    engine: Engine,
    progress: Progress | None,
    threads: int | None,
    sink: Sink,
    diag: Diagnostics | None = None,
) -> tuple[int, int, str]:
    plan = make_plan(len(sources), method, rejection)
    chosen = resolve_engine(engine)
    raw = chosen == "numba" and all(s.fast_u16 for s in sources)
    if chosen == "numba":
        _warm_kernel("u16" if raw else "f32")
    nthreads = max(1, threads if threads is not None else _default_threads())
    nthreads = min(nthreads, shape[0])
    band = _band_rows(len(sources), shape, 2 if raw else 4, nthreads, budget, chosen == "numpy")
    log.debug(
        "combining %d frames of %dx%d: %s, %s; engine %s, %d thread(s), %d-row bands",
        len(sources),
        shape[1],
        shape[0],
        method,
        rejection.describe(),
        chosen,
        nthreads,
        band,
    )
    t0 = time.perf_counter()
    job = _Job(sources, shape, plan, chosen, subtract, scales, sink, diag, band, nthreads)
    low, high = _run(job, progress)
    log.debug("combined in %.2f s; rejected %d low, %d high", time.perf_counter() - t0, low, high)
    return low, high, chosen


def warm_up(engine: Engine = "auto") -> str:
    """Load (or compile, the first time on a machine) the numba kernels; returns the engine
    ``"auto"`` resolves to. Call it at daemon start so the first master does not wait.
    Blocks: milliseconds with a warm cache, a few seconds without. Raises like
    :func:`~capture.combine.kernels.resolve_engine`."""
    chosen = resolve_engine(engine)
    if chosen != "numba":
        return chosen
    _warm_kernel("u16")
    _warm_kernel("f32")
    return chosen


_warmed: set[str] = set()
_warm_lock = threading.Lock()


def _warm_kernel(kind: str) -> None:
    """Compile or load one numba kernel in the calling thread (once per process)."""
    with _warm_lock:
        if kind in _warmed:
            return
        t0 = time.perf_counter()
        nb = _numba_module()
        plan = make_plan(3, "mean", Rejection())
        ip, fp = plan.packed()
        e32 = np.empty(0, np.float32)
        e64 = np.empty(0, np.float64)
        ei = np.empty(0, np.int64)
        out = np.empty(4, np.float32)
        if kind == "u16":
            block: npt.NDArray[Any] = np.zeros((3, 4), np.uint16)
            kernel = nb.combine_u16
        else:
            block = np.zeros((3, 4), np.float32)
            kernel = nb.combine_f32
        kernel(block, 0, 4, e32, e32, out, ip, fp, plan.pairs, e64, e64, ei, ei)
        _warmed.add(kind)
        log.debug("numba kernel %s ready in %.2f s", kind, time.perf_counter() - t0)
