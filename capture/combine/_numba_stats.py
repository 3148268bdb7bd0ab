"""numba building blocks of the tile kernel: comparator network, frame-order sums and counts,
MAD, winsorized sigma and the clipping bounds of one pass.

Every loop runs over the pixels (lanes) of a tile so LLVM vectorises it; sums run over the
frames in frame order, in float64, exactly like :mod:`capture.combine.kernels`'s numpy code.
``f`` is the tile's float64 scratch (rows: 0 lo, 1 hi, 2/3 working-set value range, 4 count,
5 median, 6 mean, 7 sigma, 8 sum, 9/10 clamp range, 11 flags); ``ki`` int32 scratch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._numba_setup import INF
from ._numba_setup import MAD_TO_SIGMA
from ._numba_setup import SORT_CHUNK
from ._numba_setup import W_CLAMP
from ._numba_setup import W_CORR
from ._numba_setup import W_ROUNDS
from ._numba_setup import W_TOL
from ._numba_setup import WINSOR
from ._numba_setup import jit


@jit
def _sort_rows(s: Any, tt: int, pairs: Any) -> None:
    """Apply the comparator network to lanes 0..tt, SORT_CHUNK lanes at a time (L1-sized)."""
    for c0 in range(0, tt, SORT_CHUNK):
        c1 = min(tt, c0 + SORT_CHUNK)
        for c in range(pairs.shape[0]):
            ri = s[pairs[c, 0], c0:c1]
            rj = s[pairs[c, 1], c0:c1]
            for t in range(c1 - c0):
                a = ri[t]
                b = rj[t]
                ri[t] = a if a < b else b
                rj[t] = b if a < b else a


@jit
def _sum(x: Any, tt: int, acc: Any) -> None:
    """acc[t] = sum over frames, in frame order, of x."""
    for t in range(tt):
        acc[t] = 0.0
    for i in range(x.shape[0]):
        xi = x[i]
        for t in range(tt):
            acc[t] += np.float64(xi[t])


@jit
def _sum_sq(x: Any, tt: int, centre: Any, acc: Any) -> None:
    """acc[t] = sum over frames, in frame order, of (x - centre)**2."""
    for t in range(tt):
        acc[t] = 0.0
    for i in range(x.shape[0]):
        xi = x[i]
        for t in range(tt):
            d = np.float64(xi[t]) - centre[t]
            acc[t] += d * d


@jit
def _masked_sum(x: Any, tt: int, wlo: Any, whi: Any, centre: Any, squares: bool, acc: Any) -> None:
    """Like _sum (or _sum_sq if squares), counting only samples within [wlo, whi]."""
    for t in range(tt):
        acc[t] = 0.0
    n = x.shape[0]
    if not squares:
        for i in range(n):
            xi = x[i]
            for t in range(tt):
                v = np.float64(xi[t])
                ok = (v >= wlo[t]) & (v <= whi[t])
                acc[t] += v if ok else 0.0
    else:
        for i in range(n):
            xi = x[i]
            for t in range(tt):
                v = np.float64(xi[t])
                ok = (v >= wlo[t]) & (v <= whi[t])
                d = v - centre[t]
                acc[t] += d * d if ok else 0.0


@jit
def _clamped_sum(
    x: Any, tt: int, wlo: Any, whi: Any, clo: Any, chi: Any, centre: Any, sq: bool, acc: Any
) -> None:
    """Like _masked_sum, for values clamped into [clo, chi] (winsorization)."""
    for t in range(tt):
        acc[t] = 0.0
    n = x.shape[0]
    for i in range(n):
        xi = x[i]
        for t in range(tt):
            v = np.float64(xi[t])
            ok = (v >= wlo[t]) & (v <= whi[t])
            w = min(max(v, clo[t]), chi[t])
            if sq:
                d = w - centre[t]
                w = d * d
            acc[t] += w if ok else 0.0


@jit
def _counts(x: Any, tt: int, lo: Any, hi: Any, act: Any, a: Any, b: Any) -> None:
    """For lanes with act != 0: a = #(x < lo), b = #(x <= hi)."""
    n = x.shape[0]
    for t in range(tt):
        if act[t]:
            na = 0
            nb = 0
            for i in range(n):
                v = np.float64(x[i, t])
                na += 1 if v < lo[t] else 0
                nb += 1 if v <= hi[t] else 0
            a[t] = na
            b[t] = nb


@jit
def _count_sum(x: Any, tt: int, lo: Any, hi: Any, a: Any, b: Any, acc: Any) -> None:
    """a = #(x < lo), b = #(x <= hi), acc = sum (frame order) of x within [lo, hi]."""
    for t in range(tt):
        a[t] = 0
        b[t] = 0
        acc[t] = 0.0
    for i in range(x.shape[0]):
        xi = x[i]
        for t in range(tt):
            v = np.float64(xi[t])
            below = v < lo[t]
            above = v > hi[t]
            a[t] += 1 if below else 0
            b[t] += 0 if above else 1
            acc[t] += 0.0 if below | above else v


@jit
def _sum_int(x: Any, tt: int, acc: Any, ki: Any) -> None:
    """_sum for integer samples: exact int32 accumulation (N * 65535 < 2**31)."""
    ia = ki[0]
    for t in range(tt):
        ia[t] = 0
    for i in range(x.shape[0]):
        xi = x[i]
        for t in range(tt):
            ia[t] += np.int32(xi[t])
    for t in range(tt):
        acc[t] = np.float64(ia[t])


@jit
def _count_sum_int(x: Any, tt: int, lo: Any, hi: Any, a: Any, b: Any, acc: Any, ki: Any) -> None:
    """_count_sum for integer samples. For an integer v: v < lo <=> v < ceil(lo) and
    v <= hi <=> v <= floor(hi), so integer compares and an exact int32 sum give the same
    result as the float64 version."""
    ilo = ki[0]
    ihi = ki[1]
    ia = ki[2]
    ib = ki[3]
    isum = ki[4]
    for t in range(tt):
        ilo[t] = np.int32(min(max(np.ceil(lo[t]), -1.0), 65536.0))
        ihi[t] = np.int32(min(max(np.floor(hi[t]), -1.0), 65536.0))
        ia[t] = 0
        ib[t] = 0
        isum[t] = 0
    for i in range(x.shape[0]):
        xi = x[i]
        for t in range(tt):
            v = np.int32(xi[t])
            below = v < ilo[t]
            above = v > ihi[t]
            ia[t] += np.int32(below)
            ib[t] += np.int32(not above)
            isum[t] += 0 if below | above else v
    for t in range(tt):
        a[t] = ia[t]
        b[t] = ib[t]
        acc[t] = np.float64(isum[t])


@jit
def _mad_lane(s: Any, wa: int, wb: int, m: float, t: int) -> float:
    """Median of |s[k] - m| over the sorted ranks [wa, wb) (m = their median)."""
    c = wb - wa
    k1 = (c - 1) // 2
    k2 = c // 2
    i = (wa + wb - 1) // 2
    j = i + 1
    d1 = 0.0
    d2 = 0.0
    for r in range(k2 + 1):
        dl = m - np.float64(s[i, t]) if i >= wa else INF
        dr = np.float64(s[j, t]) - m if j < wb else INF
        if dl <= dr:
            d = dl
            i -= 1
        else:
            d = dr
            j += 1
        if r == k1:
            d1 = d
        if r == k2:
            d2 = d
    return 0.5 * (d1 + d2)


@jit
def _lerp(a: float, b: float, g: float) -> float:
    diff = b - a
    if g >= 0.5:
        return b - diff * (1 - g)
    return a + diff * g


@jit
def _winsor_sigma(x: Any, tt: int, wlo: Any, whi: Any, f: Any) -> None:
    """Robust sigma by iterated winsorization into f[7] (uses med f[5], cnt f[4])."""
    cnt = f[4]
    med = f[5]
    mean = f[6]
    sd = f[7]
    acc = f[8]
    clo = f[9]
    chi = f[10]
    done = f[11]
    _masked_sum(x, tt, wlo, whi, mean, True, acc)
    for t in range(tt):
        sd[t] = np.sqrt(acc[t] / cnt[t])
        done[t] = 0.0
    for _ in range(W_ROUNDS):
        for t in range(tt):
            clo[t] = med[t] - W_CLAMP * sd[t]
            chi[t] = med[t] + W_CLAMP * sd[t]
        _clamped_sum(x, tt, wlo, whi, clo, chi, mean, False, acc)
        for t in range(tt):
            mean[t] = acc[t] / cnt[t]
        _clamped_sum(x, tt, wlo, whi, clo, chi, mean, True, acc)
        alldone = True
        for t in range(tt):
            new = W_CORR * np.sqrt(acc[t] / cnt[t])
            now = abs(new - sd[t]) <= W_TOL * sd[t]
            if done[t] == 0.0:
                sd[t] = new
                if now:
                    done[t] = 1.0
                else:
                    alldone = False
        if alldone:
            break


@jit
def _bounds(
    x: Any,
    s: Any,
    tt: int,
    wa: Any,
    wb: Any,
    act: Any,
    first: bool,
    ip: Any,
    fp: Any,
    f: Any,
    ki: Any,
    is_int: bool,
) -> None:
    """One sigma / winsorized pass on ranks [wa, wb); writes f[0]/f[1] (lo/hi) where act.

    On the first pass the working set is every sample and ``s`` may be sorted only partially
    (the middle ranks are right); later passes need it fully sorted.
    """
    method = ip[0]
    cmed = ip[2] != 0
    smad = ip[3] != 0
    sl = fp[0]
    sh = fp[1]
    lo = f[0]
    hi = f[1]
    wlo = f[2]
    whi = f[3]
    cnt = f[4]
    med = f[5]
    mean = f[6]
    sd = f[7]
    acc = f[8]
    for t in range(tt):
        cnt[t] = np.float64(wb[t] - wa[t])
        med[t] = 0.5 * (
            np.float64(s[(wa[t] + wb[t] - 1) // 2, t]) + np.float64(s[(wa[t] + wb[t]) // 2, t])
        )
        if first:
            wlo[t] = -INF
            whi[t] = INF
        else:
            wlo[t] = s[wa[t], t]
            whi[t] = s[wb[t] - 1, t]
    if first and is_int:
        _sum_int(x, tt, acc, ki)
    elif first:
        _sum(x, tt, acc)
    else:
        _masked_sum(x, tt, wlo, whi, mean, False, acc)
    for t in range(tt):
        mean[t] = acc[t] / cnt[t]
    if method == WINSOR:
        _winsor_sigma(x, tt, wlo, whi, f)
        for t in range(tt):
            if act[t]:
                lo[t] = med[t] - sl * sd[t]
                hi[t] = med[t] + sh * sd[t]
        return
    if smad:
        for t in range(tt):
            sd[t] = _mad_lane(s, wa[t], wb[t], med[t], t) * MAD_TO_SIGMA
    else:
        if first:
            _sum_sq(x, tt, mean, acc)
        else:
            _masked_sum(x, tt, wlo, whi, mean, True, acc)
        ddof = fp[4]
        for t in range(tt):
            sd[t] = np.sqrt(acc[t] / max(cnt[t] - ddof, 1.0))
    for t in range(tt):
        if act[t]:
            c = med[t] if cmed else mean[t]
            lo[t] = c - sl * sd[t]
            hi[t] = c + sh * sd[t]
