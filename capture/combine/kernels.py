"""Per-block combination kernels: the plan they share, the pure-numpy kernel, engine choice.

A *block* is a float32 array ``(N, P)``: N frames, P pixels (a band of whole image rows,
flattened). A kernel combines pixels ``p0 .. p1`` of a block into ``out[p0:p1]`` (float32) and
returns how many samples it rejected below and above. Both kernels (this module's numpy one and
:mod:`capture.combine._numba`) implement :mod:`capture.combine.rejection` with the same float64
operations in the same order, so they take identical keep/reject decisions and produce identical
output; the tests hold them to that.

Sorting: after sorting a pixel's samples once, every statistic the methods need is cheap, and the
kept samples are a contiguous range of ranks. The numba kernel sorts with a Batcher odd-even
merge network applied to whole rows of a pixel tile (vectorised across pixels); when only some
ranks are needed (e.g. the median for one pass of sigma clipping) the network is pruned to the
comparators those ranks depend on. The numpy kernel uses ``np.sort``.

Nothing here imports numba; :func:`resolve_engine` does, lazily, when asked to.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from .rejection import MAD_TO_SIGMA
from .rejection import WINSOR_CLAMP_SIGMA
from .rejection import WINSOR_CORRECTION
from .rejection import WINSOR_MAX_ROUNDS
from .rejection import WINSOR_TOLERANCE
from .rejection import Rejection

log = logging.getLogger(__name__)

Engine = Literal["auto", "numba", "numpy"]
CombineMethod = Literal["mean", "median"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# Integer codes shared with the numba kernel.
M_NONE, M_SIGMA, M_WINSOR, M_MINMAX, M_PERCENTILE = 0, 1, 2, 3, 4
C_MEAN, C_MEDIAN = 0, 1
_METHOD_CODES = {
    "none": M_NONE,
    "sigma": M_SIGMA,
    "winsorized": M_WINSOR,
    "minmax": M_MINMAX,
    "percentile": M_PERCENTILE,
}

#: Environment variable that disables numba (``CALIBD_NO_NUMBA=1``).
NO_NUMBA_ENV = "CALIBD_NO_NUMBA"
#: Pixels per numpy chunk (bounds the float64 temporaries to ~N * 64 KiB * 8 bytes * a few).
NUMPY_CHUNK = 1 << 14


# --------------------------------------------------------------------------- sorting networks


@functools.lru_cache(maxsize=64)
def sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """Comparators ``(i, j)``, ``i < j``, of Batcher's odd-even merge sort for ``n`` inputs.

    Applying them in order (``a[i], a[j] = min, max``) sorts any ``n`` values ascending.
    """
    pairs: list[tuple[int, int]] = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return tuple(pairs)


def prune_network(
    pairs: tuple[tuple[int, int], ...], ranks: frozenset[int]
) -> tuple[tuple[int, int], ...]:
    """Keep only the comparators that the values at ``ranks`` depend on.

    After the pruned network, positions in ``ranks`` hold exactly the values the full network
    would put there; other positions hold some permutation of the rest.
    """
    needed = set(ranks)
    kept: list[tuple[int, int]] = []
    for i, j in reversed(pairs):
        if i in needed or j in needed:
            kept.append((i, j))
            needed.add(i)
            needed.add(j)
    kept.reverse()
    return tuple(kept)


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class KernelPlan:
    """Everything a kernel needs to know about the job, as plain numbers.

    ``iparams``/``fparams`` carry the same numbers packed for the numba kernel (see
    :meth:`packed`), so one compiled signature serves every setting.
    """

    n: int
    method: int
    combine: int
    sigma_low: float
    sigma_high: float
    center_median: bool
    spread_mad: bool
    ddof: float  # 0.0 population / 1.0 sample standard deviation ("sigma" with "std")
    max_passes: int
    n_low: int
    n_high: int
    plo_i0: int
    plo_i1: int
    plo_g: float
    phi_i0: int
    phi_i1: int
    phi_g: float
    full_sort: bool
    sort_needed: bool
    pairs: I64

    def packed(self) -> tuple[I64, F64]:
        """``(iparams, fparams)`` for the numba kernel (layout documented in ``_numba``)."""
        ip = np.array(
            [
                self.method,
                self.combine,
                int(self.center_median),
                int(self.spread_mad),
                self.max_passes,
                self.n_low,
                self.n_high,
                self.plo_i0,
                self.plo_i1,
                self.phi_i0,
                self.phi_i1,
                int(self.sort_needed),
            ],
            dtype=np.int64,
        )
        fp = np.array(
            [self.sigma_low, self.sigma_high, self.plo_g, self.phi_g, self.ddof], dtype=np.float64
        )
        return ip, fp


def _percentile_rank(n: int, percent: float) -> tuple[int, int, float]:
    """numpy's "linear" percentile position: neighbour ranks and interpolation weight."""
    q = float(np.true_divide(percent, 100))
    # numpy: n * q + (alpha + q * (1 - alpha - beta)) - 1 with alpha = beta = 1
    virtual = n * q + (1 + q * (1 - 1 - 1)) - 1
    if virtual >= n - 1:
        return n - 1, n - 1, 0.0
    if virtual < 0:
        return 0, 0, 0.0
    i0 = int(np.floor(virtual))
    return i0, i0 + 1, float(virtual - i0)


def make_plan(n: int, method: CombineMethod, rejection: Rejection) -> KernelPlan:
    """Build the kernel plan for ``n`` frames. Raises :class:`ValueError` if ``n`` is too small."""
    if n < rejection.min_frames:
        raise ValueError(
            f"{rejection.describe()} needs at least {rejection.min_frames} frames, got {n}"
        )
    if method not in ("mean", "median"):
        raise ValueError(f"combine method must be 'mean' or 'median', not {method!r}")
    code = _METHOD_CODES[rejection.method]
    combine = C_MEAN if method == "mean" else C_MEDIAN
    mid = frozenset({(n - 1) // 2, n // 2})
    plo = _percentile_rank(n, rejection.percentile_low)
    phi = _percentile_rank(n, rejection.percentile_high)
    ranks: frozenset[int] | None  # None = full sort
    if combine == C_MEDIAN or code == M_MINMAX:
        ranks = None
    elif code == M_NONE:
        ranks = frozenset()
    elif code == M_PERCENTILE:
        ranks = mid | {plo[0], plo[1], phi[0], phi[1]}
    elif rejection.max_passes == 1 and not (code == M_SIGMA and rejection.spread == "mad"):
        ranks = mid
    else:
        ranks = None
    full = sorting_network(n)
    pairs = full if ranks is None else prune_network(full, ranks)
    return KernelPlan(
        n=n,
        method=code,
        combine=combine,
        sigma_low=float(rejection.sigma_low),
        sigma_high=float(rejection.sigma_high),
        center_median=rejection.center == "median" or code == M_WINSOR,
        spread_mad=rejection.spread == "mad" and code == M_SIGMA,
        ddof=float(rejection.ddof) if code == M_SIGMA else 0.0,
        max_passes=rejection.max_passes,
        n_low=rejection.n_low,
        n_high=rejection.n_high,
        plo_i0=plo[0],
        plo_i1=plo[1],
        plo_g=plo[2],
        phi_i0=phi[0],
        phi_i1=phi[1],
        phi_g=phi[2],
        full_sort=ranks is None,
        sort_needed=ranks is None or len(ranks) > 0,
        pairs=np.asarray(pairs, dtype=np.int64).reshape(-1, 2),
    )


# --------------------------------------------------------------------------- engine choice


def numba_disabled() -> bool:
    """True when ``CALIBD_NO_NUMBA`` is set to something other than ``""``/``0``."""
    return os.environ.get(NO_NUMBA_ENV, "").strip() not in ("", "0")


def numba_available() -> bool:
    """True when numba is installed and not disabled by ``CALIBD_NO_NUMBA`` (no import)."""
    return not numba_disabled() and importlib.util.find_spec("numba") is not None


def resolve_engine(engine: Engine) -> Literal["numba", "numpy"]:
    """Turn ``"auto"`` into a concrete engine.

    ``"auto"`` is numba when it is installed and ``CALIBD_NO_NUMBA`` is not set, else numpy.
    Raises :class:`RuntimeError` if ``"numba"`` is asked for but unavailable or disabled, and
    :class:`ValueError` for an unknown name.
    """
    if engine == "numpy":
        return "numpy"
    if engine not in ("auto", "numba"):
        raise ValueError(f"engine must be 'auto', 'numba' or 'numpy', not {engine!r}")
    if numba_available():
        return "numba"
    if engine == "numba":
        why = f"disabled by {NO_NUMBA_ENV}" if numba_disabled() else "not installed"
        raise RuntimeError(f"numba engine requested but numba is {why}")
    return "numpy"


# --------------------------------------------------------------------------- numpy kernel


@dataclass
class Diagnostics:
    """Optional per-pixel outputs: kept value bounds and kept rank range ``[a, b)``."""

    lo: F64
    hi: F64
    a: I64
    b: I64


def _range_median(s: F64, a: I64, b: I64, cols: I64) -> F64:
    lo_mid = s[(a + b - 1) // 2, cols]
    hi_mid = s[(a + b) // 2, cols]
    out: F64 = 0.5 * (lo_mid + hi_mid)
    return out


def _masked_sum(x: F64, inset: npt.NDArray[np.bool_] | None) -> F64:
    """Sequential (frame-order) sum of the rows of ``x``, skipping samples outside ``inset``."""
    acc = np.zeros(x.shape[1], dtype=np.float64)
    for i in range(x.shape[0]):
        acc += x[i] if inset is None else np.where(inset[i], x[i], 0.0)
    return acc


def _mad(s: F64, wa: I64, wb: I64, med: F64, cols: I64) -> F64:
    n = s.shape[0]
    ranks = np.arange(n)[:, None]
    dev = np.abs(s - med)
    dev[(ranks < wa) | (ranks >= wb)] = np.inf
    dev.sort(axis=0)
    cnt = wb - wa
    out: F64 = 0.5 * (dev[(cnt - 1) // 2, cols] + dev[cnt // 2, cols])
    return out


def _sigma_bounds(
    x: F64, s: F64, wa: I64, wb: I64, first: bool, plan: KernelPlan, cols: I64
) -> tuple[F64, F64]:
    """One pass of sigma / winsorized clipping on the working ranks ``[wa, wb)``."""
    inset = None if first else (x >= s[wa, cols]) & (x <= s[wb - 1, cols])
    cnt = (wb - wa).astype(np.float64)
    med = _range_median(s, wa, wb, cols)
    mean = _masked_sum(x, inset) / cnt
    if plan.method == M_WINSOR:
        var = _masked_sum((x - mean) * (x - mean), inset) / cnt
        sd = np.sqrt(var)
        done = np.zeros(x.shape[1], dtype=bool)
        for _ in range(WINSOR_MAX_ROUNDS):
            clo = med - WINSOR_CLAMP_SIGMA * sd
            chi = med + WINSOR_CLAMP_SIGMA * sd
            w = np.minimum(np.maximum(x, clo), chi)
            wmean = _masked_sum(w, inset) / cnt
            wvar = _masked_sum((w - wmean) * (w - wmean), inset) / cnt
            new = WINSOR_CORRECTION * np.sqrt(wvar)
            now = np.abs(new - sd) <= WINSOR_TOLERANCE * sd
            sd = np.where(done, sd, new)
            done |= now
            if done.all():
                break
        return med - plan.sigma_low * sd, med + plan.sigma_high * sd
    if plan.spread_mad:
        sd = _mad(s, wa, wb, med, cols) * MAD_TO_SIGMA
    else:
        sd = np.sqrt(_masked_sum((x - mean) * (x - mean), inset) / np.maximum(cnt - plan.ddof, 1.0))
    cen = med if plan.center_median else mean
    return cen - plan.sigma_low * sd, cen + plan.sigma_high * sd


def _counts(x: F64, lo: F64, hi: F64) -> tuple[I64, I64]:
    na = np.count_nonzero(x < lo, axis=0).astype(np.int64)
    nb = np.count_nonzero(x <= hi, axis=0).astype(np.int64)
    return na, nb


def _lerp(a: F64, b: F64, g: float) -> F64:
    diff = b - a
    out: F64 = b - diff * (1 - g) if g >= 0.5 else a + diff * g
    return out


def _numpy_chunk(x32: F32, plan: KernelPlan, out: F32) -> tuple[F64, F64, I64, I64]:
    """Combine one chunk ``(N, C)``; returns the per-pixel ``lo, hi, a, b``."""
    n, c = x32.shape
    cols = np.arange(c)
    x = x32.astype(np.float64)
    s = np.sort(x, axis=0) if plan.sort_needed else x
    zeros = np.zeros(c, dtype=np.int64)
    full = np.full(c, n, dtype=np.int64)
    if plan.method == M_NONE:
        a, b = zeros, full
        lo, hi = np.full(c, -np.inf), np.full(c, np.inf)
    elif plan.method == M_MINMAX:
        a = np.full(c, plan.n_low, dtype=np.int64)
        b = np.full(c, n - plan.n_high, dtype=np.int64)
        lo, hi = s[plan.n_low], s[n - plan.n_high - 1]
    elif plan.method == M_PERCENTILE:
        lo = _lerp(s[plan.plo_i0], s[plan.plo_i1], plan.plo_g)
        hi = _lerp(s[plan.phi_i0], s[plan.phi_i1], plan.phi_g)
        a, b = _counts(x, lo, hi)
    else:
        lo, hi = _sigma_bounds(x, s, zeros, full, True, plan, cols)
        a, b = _counts(x, lo, hi)
        wa, wb = zeros, full
        active = np.ones(c, dtype=bool)
        passes = 1
        while plan.max_passes == 0 or passes < plan.max_passes:
            nwa = np.maximum(wa, a)
            nwb = np.minimum(wb, b)
            active &= ~(((nwb - nwa) == (wb - wa)) | (nwb <= nwa))
            if not active.any():
                break
            wa = np.where(active, nwa, wa)
            wb = np.where(active, nwb, wb)
            nlo, nhi = _sigma_bounds(x, s, wa, wb, False, plan, cols)
            lo = np.where(active, nlo, lo)
            hi = np.where(active, nhi, hi)
            na, nb = _counts(x, lo, hi)
            a = np.where(active, na, a)
            b = np.where(active, nb, b)
            passes += 1
    kept = b - a
    empty = kept <= 0
    if plan.combine == C_MEDIAN:
        res = _range_median(s, np.where(empty, 0, a), np.where(empty, n, b), cols)
    else:
        if plan.method == M_NONE:
            total = _masked_sum(x, None)
        elif plan.method == M_MINMAX:
            total = np.zeros(c, dtype=np.float64)
            for k in range(plan.n_low, n - plan.n_high):
                total += s[k]
        else:
            total = _masked_sum(x, (x >= lo) & (x <= hi))
        with np.errstate(invalid="ignore", divide="ignore"):
            res = total / kept.astype(np.float64)
        if empty.any():
            res = np.where(empty, _range_median(s, zeros, full, cols), res)
    out[:] = res.astype(np.float32)
    return lo, hi, a, b


def combine_block_numpy(
    block: F32,
    p0: int,
    p1: int,
    sub: F32 | None,
    scale: F32 | None,
    out: F32,
    plan: KernelPlan,
    diag: Diagnostics | None = None,
) -> tuple[int, int]:
    """Combine pixels ``p0..p1`` of ``block`` (float32 ``(N, P)``) into ``out[p0:p1]``.

    ``sub`` (float32, length P) is subtracted from every frame and then each frame ``i`` is
    multiplied by ``scale[i]``, both in float32, before rejection. Returns the numbers of samples
    rejected low and high. Runs in the calling thread (numpy releases the GIL in its loops).
    """
    n = block.shape[0]
    if n != plan.n:
        raise ValueError(f"block has {n} frames but the plan was made for {plan.n}")
    low = high = 0
    for c0 in range(p0, p1, NUMPY_CHUNK):
        c1 = min(p1, c0 + NUMPY_CHUNK)
        x32 = np.array(block[:, c0:c1], dtype=np.float32, copy=True)
        if sub is not None:
            np.subtract(x32, sub[c0:c1], out=x32)
        if scale is not None:
            np.multiply(x32, scale[:, None], out=x32)
        lo, hi, a, b = _numpy_chunk(x32, plan, out[c0:c1])
        low += int(a.sum())
        high += int((n - b).sum())
        if diag is not None:
            diag.lo[c0:c1] = lo
            diag.hi[c0:c1] = hi
            diag.a[c0:c1] = a
            diag.b[c0:c1] = b
    return low, high
