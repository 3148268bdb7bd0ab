"""numba kernels for :mod:`capture.combine` (imported only when the numba engine is used).

Importing this module imports numba (see :mod:`._numba_setup` for the on-disk cache).

The kernels process a band of pixels in tiles of ``TILE`` pixels: the tile's N rows are copied
(decoded, dark-subtracted and scaled) into two small arrays (uint16 on the raw fast path, else
float32), one of which is sorted in place by a comparator network applied to whole rows, so
every step is a loop over pixels that LLVM vectorises. All statistics are float64 and follow
exactly the operation order of :func:`capture.combine.kernels.combine_block_numpy`.
``iparams`` / ``fparams`` are the packed :class:`~capture.combine.kernels.KernelPlan` (see
``KernelPlan.packed``; ``fparams`` = sigma low, sigma high, the two percentile weights, the
standard deviation's ddof).

Every kernel releases the GIL (``nogil=True``) and blocks until its pixels are done.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._numba_setup import INF
from ._numba_setup import MEDIAN
from ._numba_setup import MINMAX
from ._numba_setup import NONE
from ._numba_setup import PERCENTILE
from ._numba_setup import TILE
from ._numba_setup import jit
from ._numba_stats import _bounds
from ._numba_stats import _count_sum
from ._numba_stats import _count_sum_int
from ._numba_stats import _counts
from ._numba_stats import _lerp
from ._numba_stats import _masked_sum
from ._numba_stats import _sort_rows
from ._numba_stats import _sum
from ._numba_stats import _sum_int

__all__ = ["TILE", "combine_f32", "combine_u16"]


@jit
def _later_passes(
    x: Any,
    s: Any,
    m: int,
    lanes: Any,
    cx: Any,
    cs: Any,
    k: Any,
    f: Any,
    cf: Any,
    ck: Any,
    ki: Any,
    ip: Any,
    fp: Any,
    mean_comb: bool,
) -> None:
    """Passes 2.. of sigma / winsorized clipping for the ``m`` lanes listed in ``lanes``.

    Gathers those lanes of ``x``/``s`` and of the lane state (``k``: a, b, wa, wb; ``f``: lo,
    hi, sum) into the compact tile ``cx``/``cs``/``ck``/``cf``, runs the passes there until
    every lane converges (or the pass limit), and scatters a, b, lo, hi and the kept sum back.
    """
    n = x.shape[0]
    maxp = ip[4]
    for i in range(n):
        xi = x[i]
        si = s[i]
        cxi = cx[i]
        csi = cs[i]
        for j in range(m):
            cxi[j] = xi[lanes[j]]
            csi[j] = si[lanes[j]]
    for r in range(4):
        for j in range(m):
            ck[r, j] = k[r, lanes[j]]
    for r in range(2):
        for j in range(m):
            cf[r, j] = f[r, lanes[j]]
    a = ck[0]
    b = ck[1]
    wa = ck[2]
    wb = ck[3]
    act = ck[4]
    lo = cf[0]
    hi = cf[1]
    acc = cf[8]
    for j in range(m):
        act[j] = 1
    passes = 1
    while maxp == 0 or passes < maxp:
        anyact = False
        for t in range(m):
            if act[t]:
                nwa = max(wa[t], a[t])
                nwb = min(wb[t], b[t])
                if nwb - nwa == wb[t] - wa[t] or nwb <= nwa:
                    act[t] = 0
                else:
                    wa[t] = nwa
                    wb[t] = nwb
                    anyact = True
        if not anyact:
            break
        _bounds(cx, cs, m, wa, wb, act, False, ip, fp, cf, ki, False)
        _counts(cx, m, lo, hi, act, a, b)
        passes += 1
    if mean_comb:
        _masked_sum(cx, m, lo, hi, acc, False, acc)
    for j in range(m):
        t = lanes[j]
        k[0, t] = a[j]
        k[1, t] = b[j]
        f[0, t] = lo[j]
        f[1, t] = hi[j]
        f[8, t] = acc[j]


@jit
def _tile(
    x: Any,
    s: Any,
    tt: int,
    out: Any,
    q0: int,
    ip: Any,
    fp: Any,
    pairs: Any,
    f: Any,
    k: Any,
    ki: Any,
    is_int: bool,
    dlo: Any,
    dhi: Any,
    da: Any,
    db: Any,
    lanes: Any,
    cx: Any,
    cs: Any,
    cf: Any,
    ck: Any,
) -> tuple[int, int]:
    """Reject and combine one tile; x holds the samples in frame order, s a copy to sort.
    ``is_int``: the samples are integers (uint16 tiles), which allows exact integer sums.
    ``lanes``, ``cx``/``cs`` (like x/s), ``cf``/``ck`` (like f/k): scratch of the later passes."""
    n = x.shape[0]
    method = ip[0]
    mean_comb = ip[1] != MEDIAN
    maxp = ip[4]
    nlo = ip[5]
    nhi = ip[6]
    lo = f[0]
    hi = f[1]
    acc = f[8]
    a = k[0]
    b = k[1]
    wa = k[2]
    wb = k[3]
    act = k[4]
    if ip[11] != 0:
        _sort_rows(s, tt, pairs)
    if method == NONE:
        for t in range(tt):
            a[t] = 0
            b[t] = n
            lo[t] = -INF
            hi[t] = INF
        if mean_comb:
            if is_int:
                _sum_int(x, tt, acc, ki)
            else:
                _sum(x, tt, acc)
    elif method == MINMAX:
        for t in range(tt):
            a[t] = nlo
            b[t] = n - nhi
            lo[t] = s[nlo, t]
            hi[t] = s[n - nhi - 1, t]
            acc[t] = 0.0
        if mean_comb:
            for r in range(nlo, n - nhi):
                sr = s[r]
                for t in range(tt):
                    acc[t] += np.float64(sr[t])
    elif method == PERCENTILE:
        for t in range(tt):
            lo[t] = _lerp(np.float64(s[ip[7], t]), np.float64(s[ip[8], t]), fp[2])
            hi[t] = _lerp(np.float64(s[ip[9], t]), np.float64(s[ip[10], t]), fp[3])
        if is_int:
            _count_sum_int(x, tt, lo, hi, a, b, acc, ki)
        else:
            _count_sum(x, tt, lo, hi, a, b, acc)
    else:
        for t in range(tt):
            wa[t] = 0
            wb[t] = n
            act[t] = 1
        _bounds(x, s, tt, wa, wb, act, True, ip, fp, f, ki, is_int)
        if is_int:
            _count_sum_int(x, tt, lo, hi, a, b, acc, ki)
        else:
            _count_sum(x, tt, lo, hi, a, b, acc)
        if maxp != 1:
            # Later passes only for the lanes the first one narrowed (typically a few %):
            # gathered into a compact tile, so the passes do not sweep every lane each time.
            # Per-lane work is unchanged, so the results are identical.
            m = 0
            for t in range(tt):
                nwa = max(wa[t], a[t])
                nwb = min(wb[t], b[t])
                if not (nwb - nwa == wb[t] - wa[t] or nwb <= nwa):
                    lanes[m] = t
                    m += 1
            if m > 0:
                _later_passes(x, s, m, lanes, cx, cs, k, f, cf, ck, ki, ip, fp, mean_comb)
    low = 0
    high = 0
    for t in range(tt):
        kept = b[t] - a[t]
        if kept <= 0 or not mean_comb:
            aa = 0 if kept <= 0 else a[t]
            bb = n if kept <= 0 else b[t]
            val = 0.5 * (np.float64(s[(aa + bb - 1) // 2, t]) + np.float64(s[(aa + bb) // 2, t]))
        else:
            val = acc[t] / np.float64(kept)
        out[q0 + t] = np.float32(val)
        low += a[t]
        high += n - b[t]
    if dlo.shape[0] > 0:
        for t in range(tt):
            dlo[q0 + t] = lo[t]
            dhi[q0 + t] = hi[t]
            da[q0 + t] = a[t]
            db[q0 + t] = b[t]
    return low, high


@jit
def _scale_rows(x: Any, s: Any, tt: int, q0: int, sub: Any, scale: Any) -> None:
    """x -= sub, then x *= scale[frame] (float32, in that order); then s = x."""
    n = x.shape[0]
    if sub.shape[0] > 0:
        sb = sub[q0 : q0 + tt]
        for i in range(n):
            xi = x[i]
            for t in range(tt):
                xi[t] = xi[t] - sb[t]
    if scale.shape[0] > 0:
        for i in range(n):
            xi = x[i]
            sc = scale[i]
            for t in range(tt):
                xi[t] = xi[t] * sc
    for i in range(n):
        xi = x[i]
        si = s[i]
        for t in range(tt):
            si[t] = xi[t]


@jit
def combine_u16(
    raw: Any,
    p0: int,
    p1: int,
    sub: Any,
    scale: Any,
    out: Any,
    ip: Any,
    fp: Any,
    pairs: Any,
    dlo: Any,
    dhi: Any,
    da: Any,
    db: Any,
) -> tuple[int, int]:
    """Combine pixels p0..p1 of a raw block: uint16 ``(N, P)`` holding the file's big-endian
    int16 bytes as read (BZERO = 32768 decoded here). Returns (rejected low, rejected high).

    Without ``sub``/``scale`` the tiles stay uint16 (exact, half the memory traffic of float32,
    twice the lanes per comparator); otherwise they are decoded to float32 first.
    """
    n = raw.shape[0]
    f = np.empty((12, TILE), np.float64)
    k = np.empty((5, TILE), np.int64)
    ki = np.empty((5, TILE), np.int32)
    lanes = np.empty(TILE, np.int64)
    cf = np.empty((12, TILE), np.float64)
    ck = np.empty((5, TILE), np.int64)
    low = 0
    high = 0
    if sub.shape[0] == 0 and scale.shape[0] == 0:
        xu = np.empty((n, TILE), np.uint16)
        su = np.empty((n, TILE), np.uint16)
        cxu = np.empty((n, TILE), np.uint16)
        csu = np.empty((n, TILE), np.uint16)
        for q0 in range(p0, p1, TILE):
            tt = min(TILE, p1 - q0)
            for i in range(n):
                ri = raw[i, q0 : q0 + tt]
                xi = xu[i]
                si = su[i]
                for t in range(tt):
                    w = ri[t]
                    v = ((w >> 8) | (w << 8)) ^ 0x8000
                    xi[t] = v
                    si[t] = v
            lo_, hi_ = _tile(
                xu, su, tt, out, q0, ip, fp, pairs, f, k, ki, True, dlo, dhi, da, db,
                lanes, cxu, csu, cf, ck
            )
            low += lo_
            high += hi_
        return low, high
    x = np.empty((n, TILE), np.float32)
    s = np.empty((n, TILE), np.float32)
    cx = np.empty((n, TILE), np.float32)
    cs = np.empty((n, TILE), np.float32)
    for q0 in range(p0, p1, TILE):
        tt = min(TILE, p1 - q0)
        for i in range(n):
            ri = raw[i, q0 : q0 + tt]
            xi = x[i]
            for t in range(tt):
                w = np.int32(ri[t])
                xi[t] = np.float32(((w >> 8) | ((w & 0xFF) << 8)) ^ 0x8000)
        _scale_rows(x, s, tt, q0, sub, scale)
        lo_, hi_ = _tile(
            x, s, tt, out, q0, ip, fp, pairs, f, k, ki, False, dlo, dhi, da, db,
            lanes, cx, cs, cf, ck
        )
        low += lo_
        high += hi_
    return low, high


@jit
def combine_f32(
    block: Any,
    p0: int,
    p1: int,
    sub: Any,
    scale: Any,
    out: Any,
    ip: Any,
    fp: Any,
    pairs: Any,
    dlo: Any,
    dhi: Any,
    da: Any,
    db: Any,
) -> tuple[int, int]:
    """Combine pixels p0..p1 of a float32 block ``(N, P)``. Returns (rejected low, high)."""
    n = block.shape[0]
    x = np.empty((n, TILE), np.float32)
    s = np.empty((n, TILE), np.float32)
    f = np.empty((12, TILE), np.float64)
    k = np.empty((5, TILE), np.int64)
    ki = np.empty((5, TILE), np.int32)
    lanes = np.empty(TILE, np.int64)
    cx = np.empty((n, TILE), np.float32)
    cs = np.empty((n, TILE), np.float32)
    cf = np.empty((12, TILE), np.float64)
    ck = np.empty((5, TILE), np.int64)
    low = 0
    high = 0
    for q0 in range(p0, p1, TILE):
        tt = min(TILE, p1 - q0)
        for i in range(n):
            ri = block[i, q0 : q0 + tt]
            xi = x[i]
            for t in range(tt):
                xi[t] = ri[t]
        _scale_rows(x, s, tt, q0, sub, scale)
        lo_, hi_ = _tile(
            x, s, tt, out, q0, ip, fp, pairs, f, k, ki, False, dlo, dhi, da, db,
            lanes, cx, cs, cf, ck
        )
        low += lo_
        high += hi_
    return low, high
